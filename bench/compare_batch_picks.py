"""Do two checkouts pick the same batches? Live 8-item batches of each tree, compared.

A speed-up of batch selection must not change a single choice. This runs the
same seeded tests through each tree's ``CatController`` (a subprocess with that
tree first on ``PYTHONPATH``): banks of ``--items`` items (K = each
``--categories``, one bank per ``--seeds`` seed, the true θ drawn from the
seed), one test per selection rule, scored from the model at the true θ. At
steps 0–11 and every 5th step to ``--steps`` the test takes an 8-item batch
(``next_items(8)``, seeded rule draws), then goes on with single steps. It
prints, per rule and K, how many batches (and single steps) are identical in
both trees, and writes the counts to ``bench/results/compare_batch_picks.json``.

    git archive main | tar -x -C /tmp/main_tree
    nice python bench/compare_batch_picks.py --baseline /tmp/main_tree --candidate .

Exits 1 when any pick differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import header, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "compare_batch_picks.json"
RULES: dict[str, Any] = {
    "max_info": "max_info",
    "randomesque": {"rule": "max_info", "args": {"randomesque": 5}},
    "variance_reduction": "variance_reduction",
}


def batch_steps(steps: int) -> list[int]:
    """The step counts a test takes a batch at: 0–11, then every 5th to ``steps``."""
    return sorted({*range(min(12, steps + 1)), *range(15, steps + 1, 5)})


def picks(items: int, categories: list[int], seeds: list[int], steps: int) -> dict[str, Any]:
    """Every batch and single step of every test, in the tree on ``sys.path`` (child side)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_cat_step import make_bank

    from orchestrator.cat import CatController

    at = set(batch_steps(steps))
    out: dict[str, Any] = {}
    for k in categories:
        for seed in seeds:
            bank = make_bank(items, seed=seed, categories=k)
            truth = np.random.default_rng(seed).normal(0.0, 1.0, (1, 1))
            x = bank.model.sample(truth, np.random.default_rng(seed + 1))[0]
            for name, rule in RULES.items():
                ctl = CatController(
                    bank, selection=rule, stopping={"rule": "se", "args": {"se": 0.01}}, rng=seed
                )
                batches, singles = [], []
                for n in range(steps + 1):
                    if n in at:
                        batches.append(ctl.next_items(8))
                    item = ctl.next_items(1)[0]
                    singles.append(item)
                    ctl.record(item, int(x[bank.index[item]]))
                out[f"{name} K={k} seed={seed}"] = {"batches": batches, "singles": singles}
    return out


def run_tree(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out)]
    cmd += ["--items", str(args.items), "--steps", str(args.steps)]
    cmd += ["--categories", *map(str, args.categories), "--seeds", *map(str, args.seeds)]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--categories", type=int, nargs="+", default=[2, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        doc = picks(args.items, args.categories, args.seeds, args.steps)
        args.child.write_text(json.dumps(doc))
        return 0
    if args.baseline is None:
        p.error("--baseline is required")
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    with tempfile.TemporaryDirectory() as tmp:
        got = {k: run_tree(t, args, Path(tmp) / f"{k}.json") for k, t in trees.items()}
    rows: dict[str, dict[str, int]] = {}
    for case, base in got["baseline"].items():
        cand = got["candidate"][case]
        rule, k = case.split(" seed=")[0].split(" K=")
        row = rows.setdefault(
            f"{rule} K={k}", {"batches": 0, "batches_same": 0, "singles": 0, "singles_same": 0}
        )
        for key in ("batches", "singles"):
            row[key] += len(base[key])
            row[f"{key}_same"] += sum(a == b for a, b in zip(base[key], cand[key], strict=True))
    print(f"{'rule, K':>24} {'batches identical':>18} {'steps identical':>16}")
    for name, row in rows.items():
        print(
            f"{name:>24} {row['batches_same']:>8} / {row['batches']:<7} "
            f"{row['singles_same']:>7} / {row['singles']:<6}"
        )
    same = all(
        r["batches_same"] == r["batches"] and r["singles_same"] == r["singles"]
        for r in rows.values()
    )
    doc = {
        **header("compare_batch_picks", "compare_batch_picks.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "items": args.items,
        "seeds": args.seeds,
        "batch_steps": batch_steps(args.steps),
        "batch_size": 8,
        "identical": same,
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"{'all identical' if same else 'PICKS DIFFER'}; wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
