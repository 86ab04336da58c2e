"""Calibration wall time and peak memory at scale (sparse data, GRM K = 4).

Scenarios (subjects x items, observed share):

* ``1k_x_500``: 1,000 x 500, 50 % observed (250,000 observations)
* ``10k_x_2k``: 10,000 x 2,000, 20 % observed (4 M observations)
* ``10k_x_5k``: 10,000 x 5,000, 20 % observed (10 M observations): the memory check
  (must fit in 24 GiB; memory should grow with observations x quadrature nodes)

Each scenario runs in a fresh child process so its peak RSS (``ru_maxrss``) is
its own. Responses are simulated directly in sparse form (never a dense
matrix), in chunks. Reported: wall time of ``fit`` (including standard errors),
iterations, quadrature nodes, RSS before the fit and peak RSS, recovery.

    nice .venv/bin/python bench/bench_calibration.py [--scenarios 1k_x_500 10k_x_2k 10k_x_5k]
        [--device cpu|cuda] [--no-se]

Writes bench/results/calibration_<device>.json. Times on the shared 2-core dev
machine are preliminary (measured under load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SCENARIOS = {
    "1k_x_500": (1_000, 500, 0.5),
    "10k_x_2k": (10_000, 2_000, 0.2),
    "10k_x_5k": (10_000, 5_000, 0.2),
}
K = 4


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def simulate_sparse(n_subjects: int, n_items: int, frac: float, seed: int = 0):
    """Sparse GRM responses generated per chunk of subjects (no dense matrix)."""
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    b = r.normal(0, 1, n_items)[:, None] + np.sort(r.uniform(-1.5, 1.5, (n_items, K - 1)), 1)
    theta = r.normal(size=n_subjects)
    parts_s, parts_i, parts_x = [], [], []
    chunk = max(1, 2_000_000 // n_items)
    for lo in range(0, n_subjects, chunk):
        mask = r.random((min(chunk, n_subjects - lo), n_items)) < frac
        s, i = np.nonzero(mask)
        s = s + lo
        z = a[i, None] * (theta[s, None] - b[i])
        p_star = 1.0 / (1.0 + np.exp(-z))
        x = (r.random(len(s))[:, None] < p_star).sum(axis=1)
        parts_s.append(s)
        parts_i.append(i.astype(np.int64))
        parts_x.append(x.astype(np.int64))
    return a, b, np.concatenate(parts_s), np.concatenate(parts_i), np.concatenate(parts_x)


def child(name: str, device: str, compute_se: bool) -> dict:
    from orchestrator.irt.calibrate import GRMCalibrator  # imported in the child only

    n_s, n_i, frac = SCENARIOS[name]
    t0 = time.perf_counter()
    a, b, s, i, x = simulate_sparse(n_s, n_i, frac)
    t_sim = time.perf_counter() - t0
    rss_before = rss_mib()
    cal = GRMCalibrator(device=device, compute_se=compute_se)
    cal.fit(s, i, x, n_categories=np.full(n_i, K), n_subjects=n_s)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "scenario": name,
        "n_subjects": n_s,
        "n_items": n_i,
        "observed_share": frac,
        "n_observations": len(x),
        "device": cal.device_,
        "standard_errors": compute_se,
        "simulate_s": round(t_sim, 2),
        "fit_wall_s": round(cal.wall_time_, 2),
        "iterations": cal.n_iter_,
        "converged": bool(cal.converged_),
        "n_quad": cal.n_quad_,
        "rss_before_fit_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak, 1),
        "corr_a": float(np.corrcoef(a[cal.item_index_], cal.a_)[0, 1]),
        "corr_b": float(np.corrcoef(b[cal.item_index_].ravel(), cal.b_.ravel())[0, 1]),
        "n_excluded": len(cal.excluded_),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-se", action="store_true", help="skip standard errors")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.device, not args.no_se)))
        return
    import torch

    results = []
    for name in args.scenarios:
        cmd = [sys.executable, __file__, "--child", name, "--device", args.device]
        cmd += ["--no-se"] if args.no_se else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"scenario {name} failed (exit {proc.returncode})")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(row)
        print(
            f"{name:9s} {row['n_observations']:>10,d} obs  fit {row['fit_wall_s']:8.1f}s  "
            f"iter {row['iterations']:3d}  nodes {row['n_quad']:4d}  "
            f"RSS before {row['rss_before_fit_mib']:7.0f} MiB  "
            f"peak {row['peak_rss_mib']:7.0f} MiB  "
            f"corr a {row['corr_a']:.3f}  corr b {row['corr_b']:.4f}  [{row['device']}]",
            flush=True,
        )
    doc = {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "note": "preliminary: shared machine under load from other jobs",
        "results": results,
    }
    dev = args.device.replace(":", "")
    out = Path(__file__).parent / "results" / f"calibration_{dev}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
