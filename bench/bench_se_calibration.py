"""Are the reported standard errors calibrated? Replications on simulated data.

Fixed items (GRM, K = 3, 15 items), fresh N(0, 1) subjects per replication
(seeded). For each parameter: empirical SD of its estimates across
replications vs the mean SE the fits reported; the median ratio over
parameters should be near 1. Runs without priors (plain MML, where the
asymptotic SE applies) and with the default priors.

    nice .venv/bin/python bench/bench_se_calibration.py [--reps 20] [--subjects 800]

Writes bench/results/se_calibration.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.grm import sample_responses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--subjects", type=int, default=800)
    ap.add_argument("--items", type=int, default=15)
    args = ap.parse_args()
    r = np.random.default_rng(30)
    n_items, k = args.items, 3
    a = np.exp(r.normal(0, 0.3, n_items))
    b = r.normal(0, 1, n_items)[:, None] + np.sort(r.uniform(-1, 1, (n_items, k - 1)), 1)
    out = {}
    for label, kw in (
        ("no priors (ML)", {"prior_a": None, "prior_b": None, "prior_gap": None}),
        ("default priors", {}),
    ):
        est_a, est_b, se_a, se_b = [], [], [], []
        for rep in range(args.reps):
            rr = np.random.default_rng(100 + rep)
            x = sample_responses(rr.normal(size=args.subjects), a, b, rr)
            s, i = np.nonzero(np.ones_like(x))
            cal = GRMCalibrator(**kw).fit(s, i, x[s, i])
            est_a.append(cal.a_)
            est_b.append(cal.b_)
            se_a.append(cal.a_se_)
            se_b.append(cal.b_se_)
        ratio_a = np.std(est_a, axis=0, ddof=1) / np.mean(se_a, axis=0)
        ratio_b = np.std(est_b, axis=0, ddof=1) / np.mean(se_b, axis=0)
        out[label] = {
            "median_ratio_empirical_sd_over_mean_se_a": float(np.median(ratio_a)),
            "median_ratio_empirical_sd_over_mean_se_b": float(np.median(ratio_b)),
            "range_ratio_a": [float(ratio_a.min()), float(ratio_a.max())],
            "range_ratio_b": [float(ratio_b.min()), float(ratio_b.max())],
            "mean_se_a": float(np.mean(se_a)),
            "mean_se_b": float(np.mean(se_b)),
        }
        print(
            f"{label:16s} SD/SE  a: median {np.median(ratio_a):.3f} "
            f"[{ratio_a.min():.2f}, {ratio_a.max():.2f}]   b: median {np.median(ratio_b):.3f} "
            f"[{ratio_b.min():.2f}, {ratio_b.max():.2f}]   ({args.reps} replications, "
            f"{args.subjects} subjects x {n_items} items, K = {k})",
            flush=True,
        )
    path = Path(__file__).parent / "results" / "se_calibration.json"
    path.write_text(json.dumps({"settings": vars(args), "results": out}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
