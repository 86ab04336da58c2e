"""Parameter recovery on simulated data (the numbers behind tests/test_calibrate.py's slow tests).

    nice .venv/bin/python bench/bench_recovery.py

Writes bench/results/recovery.json. Each row: correlation of true and
estimated a and b, mean bias of a (absolute and relative), iterations,
quadrature nodes used, wall time. The long test also runs with a fixed
61-node grid to show what the automatic grid refinement buys.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from orchestrator.irt.calibrate import GRMCalibrator
from tests.test_calibrate import simulate

OFF = {"prior_a": None, "prior_b": None, "prior_gap": None}
CASES = [
    ("2000x200 K=4", dict(n_subjects=2000, n_items=200, k=4, seed=20), {}),
    ("2000x200 2PL", dict(n_subjects=2000, n_items=200, k=2, seed=20), {}),
    ("2000x200 mixed K=2,3,4", dict(n_subjects=2000, n_items=200, k=[2, 3, 4], seed=23), {}),
    ("2000x200 K=4, 30% observed", dict(n_subjects=2000, n_items=200, k=4, frac=0.3, seed=21), {}),
    ("long 1000x500 K=4, default priors", dict(n_subjects=1000, n_items=500, k=4, seed=22,
                                               log_a_mean=0.5), {}),
    ("long 1000x500 K=4, no priors", dict(n_subjects=1000, n_items=500, k=4, seed=22,
                                          log_a_mean=0.5), OFF),
    ("long 1000x500 K=4, no priors, fixed 61 nodes", dict(n_subjects=1000, n_items=500, k=4,
                                                          seed=22, log_a_mean=0.5),
     {**OFF, "n_quad": 61}),
    ("long 1000x500 K=4, no priors, fixed 21 nodes", dict(n_subjects=1000, n_items=500, k=4,
                                                          seed=22, log_a_mean=0.5),
     {**OFF, "n_quad": 21}),
]  # fmt: skip


def main() -> None:
    rows = []
    for name, sim, kw in CASES:
        a, b, ks, theta, s, i, x = simulate(**sim)
        t0 = time.perf_counter()
        cal = GRMCalibrator(compute_se=False, **kw).fit(s, i, x, n_categories=ks)
        fin = np.isfinite(b)
        row = {
            "case": name,
            "corr_a": float(np.corrcoef(a, cal.a_)[0, 1]),
            "corr_b": float(np.corrcoef(b[fin], cal.b_[fin])[0, 1]),
            "mean_bias_a": float(np.mean(cal.a_ - a)),
            "mean_rel_bias_a": float(np.mean(cal.a_ / a - 1)),
            "sample_theta_sd": float(theta.std()),
            "iterations": cal.n_iter_,
            "n_quad": cal.n_quad_,
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        rows.append(row)
        print(
            f"{name:46s} corr a {row['corr_a']:.4f}  corr b {row['corr_b']:.4f}  "
            f"bias a {row['mean_bias_a']:+.4f} ({100 * row['mean_rel_bias_a']:+.1f} %)  "
            f"iter {row['iterations']:3d}  nodes {row['n_quad']:3d}  {row['wall_s']:.1f}s",
            flush=True,
        )
    out = Path(__file__).parent / "results" / "recovery.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
