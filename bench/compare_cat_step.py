"""Per-step CAT latency of two checkouts in one run: ``bench_cat_step.py`` interleaved.

Timings on a shared machine drift with its load, so a before/after claim
needs both sides measured together. This runs the candidate's
``bench/bench_cat_step.py`` against each tree's ``orchestrator`` (a
subprocess with that tree first on ``PYTHONPATH``), alternating the order
every round, and reports per bank size the median over rounds of each side's
median step time and their ratio (candidate / baseline; < 1 is faster), and
the ratio of each side's fastest round (the least disturbed one). The default
clock is each process's CPU time, which a busy machine disturbs less than
wall time, but not by nothing. ``--early 5 10 20`` adds, per case, the
8-item batch after that many steps of a second test (``batch8_early_ms``:
per step count, the median over rounds of each side and their ratio);
the other columns keep their meaning. ``--batches`` (default 20) is how many
8-item batches each run times per state (their median is the run's value).

    nice python bench/compare_cat_step.py --baseline /work/main --candidate . --rounds 5

Writes ``bench/results/compare_cat_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import header, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "compare_cat_step.json"
BENCH = Path(__file__).resolve().parent / "bench_cat_step.py"
KEYS = (
    "step_ms_median",
    "select_ms_median",
    "record_ms_median",
    "should_stop_ms_median",
    "batch8_ms_median",
    "vr1_ms_median",
)


def run_once(
    tree: Path,
    sizes: list[int],
    categories: list[int],
    steps: int,
    clock: str,
    early: list[int],
    batches: int,
    out: Path,
) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(BENCH), "--sizes", *map(str, sizes), "--steps", str(steps)]
    cmd += ["--clock", clock, "--categories", *map(str, categories)]
    cmd += ["--early", *map(str, early)] if early else []
    cmd += ["--batches", str(batches)]
    subprocess.run([*cmd, "--out", str(out)], env=env, check=True, capture_output=True)
    return json.loads(out.read_text())["results"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--categories", type=int, nargs="+", default=[4])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    p.add_argument("--early", type=int, nargs="*", default=[])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    runs: dict[str, list[list[dict[str, Any]]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for label in order:
                out = Path(tmp) / f"{label}{r}.json"
                cases = (args.sizes, args.categories, args.steps, args.clock, args.early)
                runs[label].append(run_once(trees[label], *cases, args.batches, out))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows = []
    cases = [(k, n) for k in args.categories for n in args.sizes]  # bench_cat_step's order
    for i, (k, n) in enumerate(cases):
        row: dict[str, Any] = {"k": k, "n_items": n}
        for key in KEYS:
            med = {k: statistics.median(run[i][key] for run in runs[k]) for k in trees}
            row[key] = {**med, "ratio": med["candidate"] / med["baseline"]}
        early = {}
        for n_steps in map(str, args.early):
            med = {
                k: statistics.median(run[i]["batch8_early_ms"][n_steps] for run in runs[k])
                for k in trees
            }
            early[n_steps] = {**med, "ratio": med["candidate"] / med["baseline"]}
        if early:
            row["batch8_early_ms"] = early
        # the target: an 8-item batch within 10 steps (both medians of this run)
        row["batch8_over_step"] = {
            k: row["batch8_ms_median"][k] / row["step_ms_median"][k] for k in trees
        }
        per_round = {k: [run[i]["step_ms_median"] for run in runs[k]] for k in trees}
        row["rounds_step_ms"] = per_round
        fastest = {k: min(v) for k, v in per_round.items()}  # the least disturbed round
        row["step_ms_min"] = {**fastest, "ratio": fastest["candidate"] / fastest["baseline"]}
        rows.append(row)
    head = (
        f"{'K':>2} {'items':>7} {'base ms':>8} {'cand ms':>8} {'ratio':>6}  {'min ratio':>9}"
        "   (select, record, stop, batch8, vr1 ratios)"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        st = row["step_ms_median"]
        print(
            f"{row['k']:>2} {row['n_items']:>7} {st['baseline']:>8.3f} {st['candidate']:>8.3f} "
            f"{st['ratio']:>6.3f}  {row['step_ms_min']['ratio']:>9.3f}   ("
            + ", ".join(f"{row[key]['ratio']:.3f}" for key in KEYS[1:])
            + ")"
        )
        b = row["batch8_over_step"]
        print(
            f"   batch8 / step: {b['baseline']:.1f} → {b['candidate']:.1f} "
            f"(batch8 {row['batch8_ms_median']['baseline']:.3f} → "
            f"{row['batch8_ms_median']['candidate']:.3f} ms)"
        )
        for n_steps, e in row.get("batch8_early_ms", {}).items():
            print(
                f"   batch8 after {n_steps:>3} steps: {e['baseline']:.2f} → "
                f"{e['candidate']:.2f} ms ({e['ratio']:.3f})"
            )
    doc = {
        **header("compare_cat_step", "compare_cat_step.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "rounds": args.rounds,
        "clock": args.clock,
        "steps": args.steps,
        "early": args.early,
        "batches": args.batches,
        "load_avg_1m": os.getloadavg()[0],
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
