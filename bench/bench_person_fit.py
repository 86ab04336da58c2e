"""Person-fit detection under CAT: false alarms and power per misfit type, and what misfit costs θ̂.

    nice .venv/bin/python bench/bench_person_fit.py [--banks atlas_arc shell-safety]
        [--n 400] [--replicates 300] [--probe 0 3] [--seed 0]

For each bank and selection rule (``max_info``, and ``max_info`` with
``probe=r``), simulees with θ drawn from the bank's prior take 30-item CATs:
well-fitting ones (the false-alarm rate is measured on them) and one group per
misfit type of :mod:`orchestrator.sim.aberrant` (sandbagger, eval_aware,
random_responder, gamer with k = 5). The person-fit p-value of every test
after 10, 20 and 30 items comes from a null simulated with the same rule
(:func:`orchestrator.cat.fit.simulate_fit_null`, a different seed). Reported:
the false-alarm rate at p < 0.05, power at p < 0.05, power at an empirical
5 % false-alarm rate (threshold = the 5 % quantile of the well-fitting
simulees' p-values), and bias / RMSE of θ̂ against the true θ.

atlas_arc has no item text, so a seeded 30 % of its items carry the tag
``looks_like_test`` for the eval-aware type; shell-safety uses the prompt cue
(7 of 44 items). Writes bench/results/person_fit.json.
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
from orchestrator.irt.personfit import FitStatistics
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


def run_bank(name: str, args: argparse.Namespace) -> dict[str, Any]:
    bank = _bank(name, args.seed)
    prior = bank.spec.prior
    steps = max(CHECKPOINTS)
    out: dict[str, Any] = {"bank": name, "items": len(bank), "rules": {}}
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
            p_by[gname] = {}
            row: dict[str, Any] = {}
            for t in CHECKPOINTS:
                st = sims.stats[:, t - 1]
                stats = FitStatistics.from_stacked(st, np.full(args.n, t))
                _, p = null.p_values(stats, sims.theta_hat[t])
                p_by[gname][t] = p
                err = sims.theta_hat[t] - theta
                row[str(t)] = {
                    "rate_p05": float(np.mean(p < 0.05)),
                    "bias": float(err.mean()),
                    "rmse": float(np.sqrt(np.mean(err**2))),
                }
            groups[gname] = row
            groups[gname]["theta"] = theta
        for t in CHECKPOINTS:
            cut = float(np.quantile(p_by["fitting"][t], 0.05))
            for gname in TYPES:
                hit = p_by[gname][t] <= cut
                groups[gname][str(t)]["power_at_far05"] = float(np.mean(hit))
                theta = groups[gname]["theta"]
                groups[gname][str(t)]["power_at_far05_by_theta"] = {
                    f"{lo:+g}..{hi:+g}": float(np.mean(hit[(theta >= lo) & (theta < hi)]))
                    for lo, hi in BANDS
                }
        for gname in TYPES:
            del groups[gname]["theta"]
        out["rules"][label] = {"spec": rule_spec, "null_s": round(null_s, 1), "groups": groups}
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
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", nargs="+", default=["atlas_arc", "shell-safety"])
    ap.add_argument("--n", type=int, default=400, help="simulees per type")
    ap.add_argument("--replicates", type=int, default=300, help="null simulees per ability node")
    ap.add_argument("--probe", type=int, nargs="+", default=[0, 2])
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
