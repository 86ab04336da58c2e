"""What a model gains by failing its first k items on purpose, with and without gaming resistance.

    nice .venv/bin/python bench/bench_gaming.py [--banks atlas_arc shell-safety] [--n 200]

A gamer of true ability θ fails (score 0) its first k items of a CAT, then
answers honestly (``orchestrator.sim.aberrant.Gamer``). For θ ∈ {−1, 0, 1, 2}
and k ∈ {3, 5, 10}, n simulees per cell take 20- and 30-item tests under:

* ``plain`` — max-information selection, plain GRM likelihood;
* ``lapse`` — the same with the robust likelihood, lapse rate 0.05;
* ``probe`` — max information with ``probe=2`` (runs of below-expectation
  scores trigger items drawn from above θ̂), plain likelihood;
* ``probe+lapse`` — both.

Reported per cell: the mean θ̂ − θ (the gain: negative = the gamer looks
weaker, which in a capability evaluation is what sandbagging wants), its RMSE,
and the share flagged by person fit (p < 0.05, null simulated under the same
rule and posterior); honest simulees of the same θ give the baseline.
Writes bench/results/gaming.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bank import load_bank
from orchestrator.cat import make_selection
from orchestrator.cat.fit import simulate_fit_null, simulate_tests
from orchestrator.irt.personfit import FitStatistics
from orchestrator.sim.aberrant import make_aberrance

REPO = Path(__file__).resolve().parents[1]
THETAS = (-1.0, 0.0, 1.0, 2.0)
KS = (0, 3, 5, 10)  # 0: honest
CONFIGS = {
    "plain": ({"rule": "max_info", "args": {}}, 0.0),
    "lapse": ({"rule": "max_info", "args": {}}, 0.05),
    "probe": ({"rule": "max_info", "args": {"probe": 2}}, 0.0),
    "probe+lapse": ({"rule": "max_info", "args": {"probe": 2}}, 0.05),
}
STEPS = (20, 30)


def run_bank(name: str, args: argparse.Namespace) -> dict[str, Any]:
    bank = load_bank(REPO / "item_banks" / name)
    out: dict[str, Any] = {}
    for label, (spec, lapse) in CONFIGS.items():
        print(f"{name} / {label}", file=sys.stderr, flush=True)
        null = simulate_fit_null(
            bank, make_selection(spec), max(STEPS), replicates=args.replicates, seed=1, lapse=lapse
        )
        cells = []
        for theta in THETAS:
            for k in KS:
                th = np.full(args.n, theta)
                modify = None
                if k:
                    gamer = make_aberrance({"rule": "gamer", "args": {"k": k}})

                    def modify(rows, items, positions, honest, gamer=gamer, th=th):  # type: ignore[no-untyped-def]
                        return gamer.modify(bank, th[rows], items, positions, honest, None)

                sims = simulate_tests(
                    bank,
                    make_selection(spec),
                    th,
                    max(STEPS),
                    modify=modify,
                    seed=k + 7,
                    lapse=lapse,
                )
                row: dict[str, Any] = {"theta": theta, "k": k}
                for t in STEPS:
                    st = FitStatistics.from_stacked(sims.stats[:, t - 1], np.full(args.n, t))
                    _, p = null.p_values(st, sims.theta_hat[t])
                    err = sims.theta_hat[t] - th
                    row[str(t)] = {
                        "gain": round(float(err.mean()), 3),
                        "rmse": round(float(np.sqrt(np.mean(err**2))), 3),
                        "flagged": round(float(np.mean(p < 0.05)), 3),
                    }
                cells.append(row)
        out[label] = cells
    return out


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| bank | θ | k | θ̂ − θ @20 plain / lapse / probe / probe+lapse "
        "| @30 plain / lapse / probe / probe+lapse "
        "| flagged @30 plain / lapse / probe / probe+lapse |",
        "|---|---|---|---|---|---|",
    ]
    for bank, res in results.items():
        for i, cell in enumerate(res["plain"]):
            per = [res[c][i] for c in CONFIGS]
            lines.append(
                f"| {bank} | {cell['theta']:+g} | {cell['k'] or 'honest'} | "
                + " / ".join(f"{c['20']['gain']:+.2f}" for c in per)
                + " | "
                + " / ".join(f"{c['30']['gain']:+.2f}" for c in per)
                + " | "
                + " / ".join(f"{c['30']['flagged']:.2f}" for c in per)
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", nargs="+", default=["atlas_arc", "shell-safety"])
    ap.add_argument("--n", type=int, default=200, help="simulees per (θ, k) cell")
    ap.add_argument("--replicates", type=int, default=300)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gaming.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = {b: run_bank(b, args) for b in args.banks}
    table = _table(results)
    print(table)
    doc = {
        "schema_version": 1,
        "n_per_cell": args.n,
        "configs": {k: {"selection": v[0], "lapse": v[1]} for k, v in CONFIGS.items()},
        "results": results,
        "table": table,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
