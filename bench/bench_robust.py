"""Robust CAT: plain vs robust vs random on real banks, with and without aberrant subjects.

    nice .venv/bin/python bench/bench_robust.py [--data /work/shared/data]
        [--lapses 0 0.02 0.05 0.1 0.2] [--share 0.3] [--max-items 30] [--only alpaca_eval …]

Three selection strategies — ``random``, ``cat`` (max information) and
``cat+probe`` (max information with ``probe=2``) — are replayed with the
posterior's lapse rate ε (the robust likelihood) at each value of ``--lapses``.

* **alpaca_eval, 5-fold CV over subjects**: a bank is calibrated on 4/5 of the
  models (shipped defaults) and the held-out fifth is replayed, plus aberrant
  copies of a seeded ``--share`` of them per type (``simulate --aberrant …
  --aberrant-add``): sandbagger, random_responder, gamer (k = 5).
* **the tinybench banks** (shipped banks, in-sample; 2,400–3,300 subjects, so
  the optimism is small), with the same aberrant copies added.

Errors are against each subject's clean full-data EAP under the plain GRM
(an aberrant copy's is its original's). Reported per group (fitting, each
aberrant type, all): RMSE after 10 and 20 items and the first test length at
which the RMSE is ≤ 0.3 (pooled over folds). Writes bench/results/robust.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.api import calibrate, simulate
from orchestrator.data import read_responses, write_responses

REPO = Path(__file__).resolve().parents[1]
STRATEGIES: list[Any] = ["random", "cat", {"rule": "max_info", "args": {"probe": 2}}]
LABEL = {"random": "random", "cat": "cat", "max_info": "cat+probe"}
ABERRANT = ["sandbagger", "random_responder", "gamer:k=5"]
TINY = ("tinyarc", "tinygsm8k", "tinyhellaswag", "tinytruthfulqa", "tinywinogrande")


class Pool:
    """Squared errors pooled over folds: (strategy, lapse, group) → step → (Σ n·rmse², Σ n)."""

    def __init__(self) -> None:
        self.acc: dict[tuple[str, float, str], dict[int, list[float]]] = {}

    def add(self, doc: dict[str, Any], lapse: float) -> None:
        for name, strat in doc["strategies"].items():
            label = LABEL[name]
            groups = strat.get("groups") or {
                "fitting": {"n_subjects": doc["n_subjects"], "steps": strat["steps"]}
            }
            for g, info in [
                *groups.items(),
                ("all", {"n_subjects": doc["n_subjects"], "steps": strat["steps"]}),
            ]:
                acc = self.acc.setdefault((label, lapse, g), {})
                for step in info["steps"]:
                    if step["rmse"] is None or not math.isfinite(step["rmse"]):
                        continue
                    cell = acc.setdefault(step["n_items"], [0.0, 0.0])
                    cell[0] += info["n_subjects"] * step["rmse"] ** 2
                    cell[1] += info["n_subjects"]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (label, lapse, g), acc in sorted(self.acc.items()):
            rmse = {t: math.sqrt(v[0] / v[1]) for t, v in sorted(acc.items()) if v[1] > 0}
            reach = next((t for t, r in rmse.items() if r <= 0.3), None)
            out.setdefault(label, {}).setdefault(str(lapse), {})[g] = {
                "rmse10": rmse.get(10),
                "rmse20": rmse.get(20),
                "items_to_rmse_0.3": reach,
            }
        return out


def _run(bank: Path, resp: Path, args: argparse.Namespace, pool: Pool) -> None:
    for lapse in args.lapses:
        doc = simulate(
            bank,
            resp,
            strategies=STRATEGIES,
            max_items=args.max_items,
            seed=args.seed,
            drop_unknown_items=True,
            per_subject=False,
            aberrant=ABERRANT,
            aberrant_share=args.share,
            aberrant_add=True,
            lapse=lapse,
        )
        pool.add(doc, lapse)


def alpaca_cv(args: argparse.Namespace) -> dict[str, Any]:
    src = REPO / "item_banks" / "alpaca_eval" / "responses.csv"
    resp = read_responses(src)
    fold = np.random.default_rng(args.seed).permutation(len(resp.subjects)) % args.folds
    rows = list(
        zip(resp.subject_idx.tolist(), resp.item_idx.tolist(), resp.score.tolist(), strict=True)
    )
    pool = Pool()
    with tempfile.TemporaryDirectory() as tmp:
        for f in range(args.folds):
            print(f"alpaca_eval fold {f + 1}/{args.folds}", file=sys.stderr, flush=True)
            train = [(resp.subjects[s], resp.items[i], x) for s, i, x in rows if fold[s] != f]
            test = [(resp.subjects[s], resp.items[i], x) for s, i, x in rows if fold[s] == f]
            write_responses(Path(tmp) / "train.csv", train)
            write_responses(Path(tmp) / "test.csv", test)
            calibrate(
                Path(tmp) / "train.csv", Path(tmp) / f"bank{f}", name=f"alpaca-fold{f}", force=True
            )
            _run(Path(tmp) / f"bank{f}", Path(tmp) / "test.csv", args, pool)
    return pool.summary()


def tinybench(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    src = args.data / "tinybench" / name / "responses.csv"
    if not src.exists():
        print(f"{name}: no responses under {args.data}; skipped", file=sys.stderr)
        return None
    print(name, file=sys.stderr, flush=True)
    pool = Pool()
    _run(REPO / "item_banks" / name, src, args, pool)
    return pool.summary()


def _cells(cells: list[dict[str, Any]], key: str, digits: int = 2) -> str:
    return " / ".join(
        "—" if c[key] is None else f"{c[key]:.{digits}f}" if digits else str(c[key]) for c in cells
    )


def _table(results: dict[str, Any], lapses: list[float]) -> str:
    lines = [
        "| bank | group | ε | RMSE@10 random / cat / cat+probe | RMSE@20 random / cat / cat+probe "
        "| items to RMSE ≤ 0.3 random / cat / cat+probe |",
        "|---|---|---|---|---|---|",
    ]
    for bank, res in results.items():
        if res is None:
            continue
        for g in ("all", "fitting", "sandbagger", "random_responder", "gamer"):
            for lapse in lapses:
                cells = [res[s][str(lapse)].get(g) for s in ("random", "cat", "cat+probe")]
                if any(c is None for c in cells):
                    continue

                lines.append(
                    f"| {bank} | {g} | {lapse:g} | {_cells(cells, 'rmse10')} | "
                    f"{_cells(cells, 'rmse20')} | {_cells(cells, 'items_to_rmse_0.3', 0)} |"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--lapses", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--share", type=float, default=0.3, help="aberrant copies per type, share")
    ap.add_argument("--max-items", type=int, default=30)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "robust.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    if not args.only or "alpaca_eval" in args.only:
        results["alpaca_eval (5-fold CV)"] = alpaca_cv(args)
    for name in TINY:
        if not args.only or name in args.only:
            results[name] = tinybench(name, args)
    table = _table(results, args.lapses)
    print(table)
    doc = {
        "schema_version": 1,
        "lapses": args.lapses,
        "share": args.share,
        "aberrant": ABERRANT,
        "max_items": args.max_items,
        "seed": args.seed,
        "strategies": {LABEL[s] if isinstance(s, str) else "cat+probe": s for s in STRATEGIES},
        "results": results,
        "table": table,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
