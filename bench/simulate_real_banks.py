"""CAT vs random selection on the real banks: in-sample and cross-validated over subjects.

    python bench/simulate_real_banks.py [--data ../shared/data] [--folds 5] [--max-items 50]

In-sample replays use the shipped bank on the very responses it was calibrated
on (optimistic: the item parameters have seen these subjects). The
cross-validated replay splits the subjects into ``--folds`` groups; for each
group it calibrates a bank on the other subjects (same defaults as the shipped
banks, same K per item) and replays CAT and random selection on the held-out
subjects only. RMSE is against each held-out subject's EAP from all its
responses under that fold's bank. Prints a Markdown table and writes
bench/results/simulate_real_banks.json.

Responses come from the bank folder (``responses.csv``) or, for banks whose
data are not shipped, from ``--data/<name>/responses.csv``; missing data are
reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.api import calibrate, simulate
from orchestrator.bank import load_bank
from orchestrator.data import read_responses, write_responses
from orchestrator.errors import CalibrationError

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("cat", "random")


def _source(name: str, data: Path) -> Path | None:
    shipped = REPO / "item_banks" / name / "responses.csv"
    if shipped.exists():
        return shipped
    if name.startswith("tiny"):
        candidate = data / "tinybench" / name / "responses.csv"
    else:
        candidate = data / name / "responses.csv"
    return candidate if candidate.exists() else None


def _at(steps: list[dict[str, Any]], n: int, key: str) -> float | None:
    for s in steps:
        if s["n_items"] == n:
            return s[key]
    return None


def _summarise(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for strat in STRATEGIES:
        st = doc["strategies"][strat]
        out[strat] = {
            "items_to_se_median": st["items_to_se"]["median"],
            "reached": st["items_to_se"]["reached"],
            "rmse": {n: _at(st["steps"], n, "rmse") for n in (5, 10, 20, 50)},
        }
    return out


def _cross_validated(name: str, src: Path, folds: int, max_items: int, seed: int) -> dict:
    bank = load_bank(REPO / "item_banks" / name)
    resp = read_responses(src)
    k_of = dict(zip(bank.ids, bank.n_categories.tolist(), strict=True))
    observed_k = np.zeros(len(resp.items), dtype=int)
    np.maximum.at(observed_k, resp.item_idx, resp.score + 1)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(resp.subjects)) % folds
    rows = list(
        zip(resp.subject_idx.tolist(), resp.item_idx.tolist(), resp.score.tolist(), strict=True)
    )
    pooled: dict[str, dict[str, Any]] = {s: {"sq": {}, "n": {}, "items": []} for s in STRATEGIES}
    with tempfile.TemporaryDirectory() as tmp:
        items_csv = Path(tmp) / "items.csv"
        items_csv.write_text(
            "item,n_categories\n"
            + "".join(
                f"{i},{max(k_of.get(i, 2), int(observed_k[j]))}\n" for j, i in enumerate(resp.items)
            )
        )
        for f in range(folds):
            train = [(resp.subjects[s], resp.items[i], x) for s, i, x in rows if fold_of[s] != f]
            test = [(resp.subjects[s], resp.items[i], x) for s, i, x in rows if fold_of[s] == f]
            if not test:
                continue
            write_responses(Path(tmp) / "train.csv", train)
            write_responses(Path(tmp) / "test.csv", test)
            out = Path(tmp) / f"bank{f}"
            calibrate(
                Path(tmp) / "train.csv",
                out,
                name=f"{name}-fold{f}",
                items=items_csv,
                k_column="n_categories",
                force=True,
            )
            doc = simulate(
                out,
                Path(tmp) / "test.csv",
                strategies=STRATEGIES,
                max_items=max_items,
                seed=seed,
                drop_unknown_items=True,
                per_subject=True,
            )
            for strat in STRATEGIES:
                for step in doc["strategies"][strat]["steps"]:
                    n = step["n_items"]
                    if step["rmse"] is None or not math.isfinite(step["rmse"]):
                        continue
                    pooled[strat]["sq"][n] = pooled[strat]["sq"].get(n, 0.0) + (
                        step["rmse"] ** 2 * step["n_active"]
                    )
                    pooled[strat]["n"][n] = pooled[strat]["n"].get(n, 0) + step["n_active"]
                pooled[strat]["items"] += [s["items_to_se"][strat] for s in doc["subjects"]]
    out_doc: dict[str, Any] = {}
    for strat in STRATEGIES:
        p = pooled[strat]
        reached = [v for v in p["items"] if v is not None]
        out_doc[strat] = {
            "items_to_se_median": float(np.median(reached)) if reached else None,
            "reached": len(reached),
            "of": len(p["items"]),
            "rmse": {
                n: (math.sqrt(p["sq"][n] / p["n"][n]) if p["n"].get(n) else None)
                for n in (5, 10, 20, 50)
            },
        }
    return out_doc


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-items", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    results = []
    for folder in sorted((REPO / "item_banks").iterdir()):
        if not (folder / "bank.json").exists() or load_bank(folder).is_provisional:
            continue
        if args.only and folder.name not in args.only:
            continue
        src = _source(folder.name, args.data)
        if src is None:
            print(
                f"{folder.name}: no responses (not shipped, not under {args.data}); skipped",
                file=sys.stderr,
            )
            continue
        print(f"{folder.name} …", file=sys.stderr, flush=True)
        bank = load_bank(folder)
        doc = simulate(
            folder,
            src,
            strategies=STRATEGIES,
            max_items=args.max_items,
            seed=args.seed,
            drop_unknown_items=True,
            per_subject=False,
        )
        try:
            cv: dict[str, Any] | None = _cross_validated(
                folder.name, src, args.folds, args.max_items, args.seed
            )
        except CalibrationError as exc:  # e.g. xstest: 4 training subjects per fold
            print(f"  cross-validation impossible: {exc.message}", file=sys.stderr)
            cv = None
        row = {
            "bank": folder.name,
            "subjects": doc["n_subjects"],
            "items": len(bank),
            "in_sample": _summarise(doc),
            "cross_validated": cv,
        }
        results.append(row)
    head = (
        "| bank | subjects | items | items to SE 0.3, CAT / random (median; reached) "
        "| RMSE @10 CAT / random | RMSE @20 CAT / random |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for r in results:
        for kind in ("in_sample", "cross_validated"):
            if r[kind] is None:
                lines.append(
                    f"| {r['bank']} ({args.folds}-fold CV) | {r['subjects']} | "
                    f"{r['items']} | too few subjects to calibrate on a fold | — | — |"
                )
                continue
            c, rnd = r[kind]["cat"], r[kind]["random"]
            how = "in-sample" if kind == "in_sample" else f"{args.folds}-fold CV"
            label = f"{r['bank']} ({how})"
            of = f"/{c['of']}" if "of" in c else f"/{r['subjects']}"
            lines.append(
                f"| {label} | {r['subjects']} | {r['items']} | "
                f"{_fmt(c['items_to_se_median'], 0)} ({c['reached']}{of}) / "
                f"{_fmt(rnd['items_to_se_median'], 0)} ({rnd['reached']}{of}) | "
                f"{_fmt(c['rmse'][10])} / {_fmt(rnd['rmse'][10])} | "
                f"{_fmt(c['rmse'][20])} / {_fmt(rnd['rmse'][20])} |"
            )
    table = "\n".join(lines)
    print(table)
    out = REPO / "bench" / "results" / "simulate_real_banks.json"
    out.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "folds": args.folds,
                "max_items": args.max_items,
                "seed": args.seed,
                "banks": results,
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
