"""Reading a large response CSV: wall time and peak memory, two checkouts interleaved.

The file is the calibration-scale case: 20,000 subjects × 5,000 items, 10 %
observed (10 M rows, ~0.25 GB), written once in a temporary folder, or any
``--csv`` given. Each read runs ``orchestrator.data.read_responses`` in a fresh
process in the tree's folder with the tree first on ``PYTHONPATH`` (``-c`` puts
the working directory first on ``sys.path``: the tree's package, whatever the
running Python has installed; the child reports the module it read with, and
a read from another tree is refused); reported per side are the
median wall time of the read and the peak RSS above the RSS before it
(``ru_maxrss`` minus the RSS after imports), with the ratio candidate /
baseline (< 1 is better).

    nice python bench/bench_read_responses.py --baseline /work/main --candidate . --rounds 2

Writes ``bench/results/read_responses.json``.
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

import numpy as np
from _results import header, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "read_responses.json"

CHILD = """
import json, resource, sys, time
import orchestrator.data
from orchestrator.data import read_responses
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024
before = rss()
t0 = time.perf_counter()
r = read_responses(sys.argv[1])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_above_start_mib": peak - before, "n_obs": r.n_obs,
                  "module": orchestrator.data.__file__}))
"""


def write_csv(path: Path, n_subjects: int, n_items: int, frac: float, seed: int = 0) -> int:
    """A sparse K = 4 response file, subjects in blocks (as sweeps and exports write them)."""
    rng = np.random.default_rng(seed)
    items = np.array([f"suite.task_{i}" for i in range(n_items)])
    n = 0
    with open(path, "w") as fh:
        fh.write("subject,item,score\n")
        for s in range(n_subjects):
            seen = np.flatnonzero(rng.random(n_items) < frac)
            scores = rng.integers(0, 4, seen.size)
            name = f"provider/model-{s}"
            fh.write("".join(f"{name},{i},{x}\n" for i, x in zip(items[seen], scores, strict=True)))
            n += seen.size
    return n


def read_once(tree: Path, csv: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(csv)],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(doc["module"]).resolve().is_relative_to(tree):
        raise SystemExit(f"{tree}: the read imported orchestrator from {doc['module']}")
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--csv", type=Path, help="read this file instead of the generated one")
    p.add_argument("--shape", type=float, nargs=3, default=[20_000, 5_000, 0.1])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        csv = args.csv
        if csv is None:
            csv = Path(tmp) / "responses.csv"
            n_s, n_i, frac = args.shape
            n = write_csv(csv, int(n_s), int(n_i), frac)
            print(f"wrote {n:,} rows ({csv.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
        for r in range(args.rounds):
            for label in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                runs[label].append(read_once(trees[label], csv.resolve()))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows: dict[str, Any] = {"n_obs": runs["baseline"][0]["n_obs"]}
    for key in ("wall_s", "peak_above_start_mib"):
        med = {k: statistics.median(run[key] for run in runs[k]) for k in trees}
        rows[key] = {**med, "ratio": med["candidate"] / med["baseline"]}
    rows["rounds"] = runs
    print(f"{'':>22} {'baseline':>10} {'candidate':>10} {'ratio':>6}   ({rows['n_obs']:,} rows)")
    for key in ("wall_s", "peak_above_start_mib"):
        v = rows[key]
        print(f"{key:>22} {v['baseline']:>10.2f} {v['candidate']:>10.2f} {v['ratio']:>6.3f}")
    doc = {
        **header("read_responses", "bench_read_responses.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "load_avg_1m": os.getloadavg()[0],
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
