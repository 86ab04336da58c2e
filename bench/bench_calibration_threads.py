"""Calibration wall time by torch thread count and problem size, on this machine now.

For each scenario (simulated sparse GRM K = 4 data, as ``bench_calibration.py``)
and each thread setting (``1``, ``2``, … or ``auto``: the calibrator's own
choice), one fit in a fresh child process; settings alternate their order
every round. Reported: median fit wall time per setting, its ratio to one
thread, the threads ``auto`` chose, the load average when each fit started,
and whether the fitted parameters are identical across settings. A fit that
runs past ``--timeout`` is recorded as such (threads under load can be that slow).

    nice python bench/bench_calibration_threads.py --scenarios 1k_x_500 10k_x_2k \\
        --threads 1 2 auto --rounds 2

Writes ``bench/results/calibration_threads.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import header, write_json
from bench_calibration import simulate_sparse

RESULTS = Path(__file__).resolve().parent / "results" / "calibration_threads.json"
SCENARIOS = {
    "300_x_100": (300, 100, 0.5),
    "1k_x_500": (1_000, 500, 0.5),
    "10k_x_2k": (10_000, 2_000, 0.2),
    "20k_x_5k": (20_000, 5_000, 0.1),
}
K = 4


def child(name: str, threads: str) -> dict[str, Any]:
    from orchestrator.irt.calibrate import GRMCalibrator

    n_s, n_i, frac = SCENARIOS[name]
    _, _, s, i, x = simulate_sparse(n_s, n_i, frac)
    load = os.getloadavg()[0]
    cal = GRMCalibrator(n_threads=None if threads == "auto" else int(threads))
    cal.fit(s, i, x, n_categories=np.full(n_i, K), n_subjects=n_s)
    digest = hashlib.sha256(np.concatenate([cal.a_, cal.b_.ravel(), cal.a_se_]).tobytes())
    return {
        "fit_wall_s": cal.wall_time_,
        "n_threads": cal.n_threads_,
        "load_at_start": load,
        "n_observations": len(x),
        "n_quad": cal.n_quad_,
        "params_sha256": digest.hexdigest()[:16],
    }


def run_child(name: str, threads: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--child-threads", threads]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timed_out_after_s": round(time.perf_counter() - t0, 1)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=["300_x_100", "1k_x_500", "10k_x_2k"])
    p.add_argument("--threads", nargs="+", default=["1", "2", "auto"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-threads", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.child_threads)))
        return 0
    rows = []
    for name in args.scenarios:
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in args.threads}
        for r in range(args.rounds):
            for t in args.threads if r % 2 == 0 else args.threads[::-1]:
                runs[t].append(run_child(name, t, args.timeout))
                print(f"{name} threads={t}: {runs[t][-1]}", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"scenario": name, "runs": runs, "median_s": {}}
        for t, rs in runs.items():
            done = [x["fit_wall_s"] for x in rs if "fit_wall_s" in x]
            row["median_s"][t] = statistics.median(done) if len(done) == len(rs) else None
        one = row["median_s"].get("1")
        row["ratio_to_1"] = {
            t: (m / one if m and one else None) for t, m in row["median_s"].items()
        }
        digests = {x["params_sha256"] for rs in runs.values() for x in rs if "params_sha256" in x}
        row["identical_params"] = len(digests) == 1
        rows.append(row)
        cells = "  ".join(
            f"{t}: {m:7.1f}s ({row['ratio_to_1'][t]:.2f}×)" if m else f"{t}: timeout"
            for t, m in row["median_s"].items()
        )
        print(f"{name:>10}  {cells}  identical={row['identical_params']}", flush=True)
    doc = {
        **header("calibration_threads", "bench_calibration_threads.py", argv),
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
