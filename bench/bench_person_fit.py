"""Person-fit detection under CAT: false alarms and power per misfit type, and what misfit costs θ̂.

    nice .venv/bin/python bench/bench_person_fit.py [--banks atlas_arc shell-safety]
        [--n 400] [--replicates 300] [--probe 0 1 2] [--seed 0]

For each bank and selection rule (``max_info``, and ``max_info`` with
``probe=r``), simulees with θ drawn from the bank's prior take 30-item CATs:
well-fitting ones (the false-alarm rate is measured on them) and one group per
misfit type of :mod:`orchestrator.sim.aberrant` (sandbagger, eval_aware,
random_responder, gamer with k = 5). The person-fit p-value of every test
after 10, 20 and 30 items comes from a null simulated with the same rule
(:func:`orchestrator.cat.fit.simulate_fit_null`, a different seed). Reported:
the false-alarm rate at p < 0.05, power at p < 0.05, power at an empirical
5 % false-alarm rate (threshold = the 5 % quantile of the well-fitting
simulees' p-values; tests tied at it count with the share that makes the rate
exactly 5 %), and bias / RMSE of θ̂ against the true θ.

atlas_arc has no item text, so a seeded 30 % of its items carry the tag
``looks_like_test`` for the eval-aware type; shell-safety uses the prompt cue
(7 of 44 items). Writes bench/results/person_fit.json.

Also reported, per statistic of :data:`~orchestrator.irt.personfit.FIT_COMPONENTS`
alone, the sandbagger's power at 5 % false alarms (does a directional
statistic beat the combination?), and the *ceiling* of any design on the
bank: a sandbagger (``easy`` = 0.5, ``rate`` = 1) scores above 0 only on items
harder than its level, so a test in which it passes nothing cannot tell it
from a weak honest model (its p-value is then ~uniform: power ≈ the
false-alarm rate). ``ceiling`` = E over the prior of P(≥ 1 success) on the
30 items most favourable to a success *chosen knowing its θ* (an oracle; no
adaptive test does better), and on the whole bank.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bank import ItemBank, load_bank
from orchestrator.cat import make_selection
from orchestrator.cat.fit import simulate_fit_null, simulate_tests
from orchestrator.irt.fit import observation_probs
from orchestrator.irt.personfit import FIT_COMPONENTS, FitStatistics
from orchestrator.sim.aberrant import Aberrance, make_aberrance

REPO = Path(__file__).resolve().parents[1]
TYPES: dict[str, Any] = {
    "fitting": None,
    "sandbagger": "sandbagger",
    "eval_aware": "eval_aware",
    "random_responder": "random_responder",
    "gamer": {"rule": "gamer", "args": {"k": 5}},
}
CHECKPOINTS = (10, 20, 30)
BANDS = ((-np.inf, -1.0), (-1.0, 1.0), (1.0, np.inf))  # true θ in prior SDs (prior N(0, 1))


def _bank(name: str, seed: int) -> ItemBank:
    bank = load_bank(REPO / "item_banks" / name)
    if any(t is not None for t in bank.tag_values("looks_like_test")):
        return bank
    cue = np.random.default_rng([seed, 7]).random(len(bank)) < 0.3
    items = [
        it.model_copy(update={"tags": {**it.tags, "looks_like_test": "true" if c else "false"}})
        for it, c in zip(bank.spec.items, cue, strict=True)
    ]
    return ItemBank(bank.spec.model_copy(update={"items": items}))


def _modifier(bank: ItemBank, kind: Aberrance | None, theta: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    if kind is None:
        return None
    rng = np.random.default_rng([seed, 3])

    def modify(rows, items, positions, honest):  # type: ignore[no-untyped-def]
        return kind.modify(bank, theta[rows], items, positions, honest, rng)

    return modify


def sandbagger_ceiling(bank: ItemBank, n_items: int, seed: int) -> dict[str, float]:
    """P(a default sandbagger passes ≥ 1 of the n items best for that, chosen knowing θ)."""
    prior = bank.spec.prior
    theta = prior.mean + prior.sd * np.random.default_rng([seed, 5]).standard_normal(2000)
    n = len(bank)
    probs = observation_probs(
        np.repeat(theta, n), np.tile(bank.a, theta.size), np.tile(bank.b, (theta.size, 1))
    ).reshape(theta.size, n, -1)
    share = (probs @ np.arange(probs.shape[-1])) / (bank.n_categories - 1)
    success = np.where(share >= 0.5, 0.0, 1.0 - probs[..., 0])  # honest above its level only
    best = np.sort(success, axis=1)[:, -n_items:]
    top = theta > prior.mean + prior.sd
    at_least_one = 1.0 - np.prod(1.0 - best, axis=1)
    whole = 1.0 - np.prod(1.0 - success, axis=1)
    return {
        f"oracle_{n_items}_items": float(at_least_one.mean()),
        "whole_bank": float(whole.mean()),
        f"oracle_{n_items}_items_theta_above_1sd": float(at_least_one[top].mean()),
    }


def _hits_at_far(null_p: np.ndarray, p: np.ndarray, far: float = 0.05) -> np.ndarray:
    """Each test's chance of being flagged by the test of false-alarm rate exactly ``far``
    on ``null_p``: p below the cut flags, p at it flags with the probability that makes
    the rate exact (p-values tie, e.g. a statistic undefined or equal for many tests)."""
    cut = np.quantile(null_p, far, method="lower")
    below, at = np.mean(null_p < cut), np.mean(null_p == cut)
    share = (far - below) / at if at > 0 else 0.0
    return (p < cut) + share * (p == cut)


def run_bank(name: str, args: argparse.Namespace) -> dict[str, Any]:
    bank = _bank(name, args.seed)
    prior = bank.spec.prior
    steps = max(CHECKPOINTS)
    out: dict[str, Any] = {
        "bank": name,
        "items": len(bank),
        "sandbagger_ceiling": sandbagger_ceiling(bank, steps, args.seed),
        "rules": {},
    }
    for probe in args.probe:
        rule_spec = {"rule": "max_info", "args": {"probe": probe}}
        label = "max_info" if probe == 0 else f"max_info probe={probe}"
        print(f"{name} / {label}: null ({args.replicates} per node) …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        null = simulate_fit_null(
            bank, make_selection(rule_spec), steps, replicates=args.replicates, seed=args.seed + 1
        )
        null_s = time.perf_counter() - t0
        groups: dict[str, Any] = {}
        p_by: dict[str, dict[int, np.ndarray]] = {}
        comp_by: dict[str, dict[int, np.ndarray]] = {}
        for gi, (gname, spec) in enumerate(TYPES.items()):
            kind = None if spec is None else make_aberrance(spec)
            if kind is not None:
                kind.prepare(bank)
            rng = np.random.default_rng([args.seed, 11, gi])
            theta = prior.mean + prior.sd * rng.standard_normal(args.n)
            sims = simulate_tests(
                bank,
                make_selection(rule_spec),
                theta,
                steps,
                modify=_modifier(bank, kind, theta, args.seed + gi),
                seed=args.seed + 100 + gi,
            )
            p_by[gname], comp_by[gname] = {}, {}
            row: dict[str, Any] = {}
            for t in CHECKPOINTS:
                st = sims.stats[:, t - 1]
                stats = FitStatistics.from_stacked(st, np.full(args.n, t))
                comp, p = null.p_values(stats, sims.theta_hat[t])
                p_by[gname][t], comp_by[gname][t] = p, np.where(np.isnan(comp), 1.0, comp)
                err = sims.theta_hat[t] - theta
                row[str(t)] = {
                    "rate_p05": float(np.mean(p < 0.05)),
                    "bias": float(err.mean()),
                    "rmse": float(np.sqrt(np.mean(err**2))),
                }
            groups[gname] = row
            groups[gname]["theta"] = theta
        for t in CHECKPOINTS:
            for gname in TYPES:
                hit = _hits_at_far(p_by["fitting"][t], p_by[gname][t])
                groups[gname][str(t)]["power_at_far05"] = float(np.mean(hit))
                theta = groups[gname]["theta"]
                groups[gname][str(t)]["power_at_far05_by_theta"] = {
                    f"{lo:+g}..{hi:+g}": float(np.mean(hit[(theta >= lo) & (theta < hi)]))
                    for lo, hi in BANDS
                }
            groups["sandbagger"][str(t)]["power_at_far05_by_component"] = {
                c: float(
                    np.mean(_hits_at_far(comp_by["fitting"][t][i], comp_by["sandbagger"][t][i]))
                )
                for i, c in enumerate(FIT_COMPONENTS)
            }
        for gname in TYPES:
            del groups[gname]["theta"]
        out["rules"][label] = {"spec": rule_spec, "null_s": round(null_s, 1), "groups": groups}
        print(f"{name} / {label}: done", file=sys.stderr, flush=True)
    return out


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| bank | rule | type | false alarms / power at p<.05 @10/20/30 "
        "| power at 5% FAR @10/20/30 | θ̂ bias @30 | RMSE @30 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for label, rr in r["rules"].items():
            for gname, g in rr["groups"].items():
                nom = " / ".join(f"{g[str(t)]['rate_p05']:.2f}" for t in CHECKPOINTS)
                emp = (
                    "—"
                    if gname == "fitting"
                    else " / ".join(f"{g[str(t)]['power_at_far05']:.2f}" for t in CHECKPOINTS)
                )
                lines.append(
                    f"| {r['bank']} | {label} | {gname} | {nom} | {emp} | "
                    f"{g['30']['bias']:+.2f} | {g['30']['rmse']:.2f} |"
                )
    lines += ["", "| bank | rule | sandbagger power at 5% FAR @30 per statistic | ceiling |"]
    lines.append("|---|---|---|---|")
    for r in results:
        ceil = " / ".join(f"{k} {v:.2f}" for k, v in r["sandbagger_ceiling"].items())
        for label, rr in r["rules"].items():
            by = rr["groups"]["sandbagger"]["30"]["power_at_far05_by_component"]
            text = ", ".join(f"{c} {'—' if v is None else f'{v:.2f}'}" for c, v in by.items())
            lines.append(f"| {r['bank']} | {label} | {text} | {ceil} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", nargs="+", default=["atlas_arc", "shell-safety"])
    ap.add_argument("--n", type=int, default=400, help="simulees per type")
    ap.add_argument("--replicates", type=int, default=300, help="null simulees per ability node")
    ap.add_argument("--probe", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "person_fit.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = [run_bank(b, args) for b in args.banks]
    table = _table(results)
    print(table)
    doc = {
        "schema_version": 1,
        "n_per_type": args.n,
        "replicates": args.replicates,
        "seed": args.seed,
        "steps": list(CHECKPOINTS),
        "types": {k: v for k, v in TYPES.items()},
        "banks": results,
        "table": table,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
