"""Live per-item overhead and throughput of two checkouts, ``bench_live.py`` interleaved.

Each round runs this checkout's ``bench/bench_live.py`` once per tree (a fresh
process with the tree first on ``PYTHONPATH``, so it and its spawned workers
import that tree's ``orchestrator``), alternating the order; the same bank,
scenario images and simulated agent serve both. Reported per side: the median
over rounds of the per-item orchestration overhead (wall − model − agent
tools), the per-item wall time, and items per minute for each concurrency
level, with the ratio candidate / baseline, and each round's own ratio (its
two runs ran back to back, under similar load; the 1-minute load average
before and after each run is kept with it). Each tree runs with its own
``orchestrator`` (sessions, workers and the simulated agent server alike); a
tree before #15 journals absolute log paths, which ``bench_live.py`` accepts.

    nice python bench/compare_live.py --baseline /work/main --candidate . --rounds 2 \\
        --items 8 --sessions 1 8

Needs Docker and the scenario images. Writes ``bench/results/compare_live.json``.
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "compare_live.json"


def run_once(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(HERE / "bench_live.py"), "--items", str(args.items)]
    cmd += ["--sessions", *map(str, args.sessions), "--max-workers", str(args.max_workers)]
    load = os.getloadavg()[0]
    subprocess.run([*cmd, "--out", str(out)], env=env, check=True, cwd=tempfile.gettempdir())
    return {**json.loads(out.read_text()), "load_1min_before_after": [load, os.getloadavg()[0]]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-workers", type=int, default=4)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                out = Path(tmp) / f"{label}{r}.json"
                runs[label].append(run_once(trees[label], args, out))
                print(f"round {r + 1}/{args.rounds}: {label} done", file=sys.stderr, flush=True)

    def med(label: str, pick: Any) -> float:
        return statistics.median(pick(run) for run in runs[label])

    picks: dict[str, Any] = {
        "overhead_s": lambda run: run["per_item_median_s"]["overhead"],
        "wall_s": lambda run: run["per_item_median_s"]["wall"],
        "model_plus_tools_s": lambda run: (
            run["per_item_median_s"]["model"] + run["per_item_median_s"]["tool"]
        ),
    }
    for i, n in enumerate(args.sessions):
        picks[f"items_per_min_{n}_sessions"] = lambda run, i=i: run["concurrency"][i][
            "items_per_min"
        ]
    rows = {}
    for name, pick in picks.items():
        b, c = med("baseline", pick), med("candidate", pick)
        # each round's pair ran back to back: its ratio shares that round's load
        pairs = zip(runs["baseline"], runs["candidate"], strict=True)
        paired = [pick(rc) / pick(rb) for rb, rc in pairs]
        rows[name] = {"baseline": b, "candidate": c, "ratio": c / b, "round_ratios": paired}
        rounds = " ".join(f"{x:.3f}" for x in paired)
        print(f"{name:>26} {b:8.3f} {c:8.3f}  ratio {c / b:6.3f}  (by round: {rounds})")
    doc = {
        "schema_version": 1,
        "benchmark": "compare_live",
        "command": "python " + " ".join(["bench/compare_live.py", *(argv or sys.argv[1:])]),
        "trees": {k: str(v) for k, v in trees.items()},
        "load_avg": os.getloadavg(),
        "results": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
