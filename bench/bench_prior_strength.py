"""Which item priors predict held-out responses best on the real datasets?

For each dataset in ../shared/data, 20 % of the observed (subject, item)
cells are held out (seeded), the bank is calibrated on the rest under several
prior settings, and each held-out response is scored by its posterior
predictive log-probability (θ posterior from the subject's training responses,
N(0, 1) prior, 201-point grid). Higher is better. This is how the default
priors of ``GRMCalibrator`` were chosen.

    nice .venv/bin/python bench/bench_prior_strength.py [--data ../shared/data] [--folds 2]

Writes bench/results/prior_strength.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from orchestrator.data import read_responses
from orchestrator.errors import CalibrationConvergenceWarning
from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.grm import log_category_probs

DATASETS = {
    "xstest": "xstest/responses.csv",
    "agentdojo": "agentdojo/responses.csv",
    "jailbreakbench": "jailbreakbench/responses.csv",
    "alpaca_eval": "alpaca_eval/responses.csv",
    "alpaca_eval_3level": "alpaca_eval/responses_3level.csv",
    "atlas_arc": "atlas_arc/responses.csv",
    "tinyarc": "tinybench/tinyarc/responses.csv",
}
SETTINGS = {  # (prior on log a, prior on b, alpha of the gap prior)
    "none": (None, None, None),
    "a(0,1) b(0,3) gap1": ((0.0, 1.0), (0.0, 3.0), 1.0),
    "a(0,0.5) b(0,3)": ((0.0, 0.5), (0.0, 3.0), None),
    "a(0,0.5) b(0,3) gap1": ((0.0, 0.5), (0.0, 3.0), 1.0),
    "a(0,0.3) b(0,3) gap1": ((0.0, 0.3), (0.0, 3.0), 1.0),
}


def heldout_score(path: Path, folds: int, max_iter: int) -> dict[str, dict[str, float]]:
    resp = read_responses(path)
    n = resp.n_obs
    # K per item from all the data, so a category seen only in held-out cells exists
    k = np.zeros(len(resp.items), dtype=np.int64)
    np.maximum.at(k, resp.item_idx, resp.score)
    k = np.maximum(k + 1, 2)
    out: dict[str, dict[str, float]] = {}
    grid = np.linspace(-6, 6, 201)
    log_w = -0.5 * grid**2
    log_w -= logsumexp(log_w)
    for fold in range(folds):
        rng = np.random.default_rng(1000 + fold)
        test = rng.random(n) < 0.2
        tr = ~test
        # baseline without IRT: each item's training category shares (add-one smoothed)
        counts = np.ones((len(resp.items), int(k.max())))
        counts[np.arange(int(k.max()))[None, :] >= k[:, None]] = 0
        np.add.at(counts, (resp.item_idx[tr], resp.score[tr]), 1.0)
        shares = counts / counts.sum(axis=1, keepdims=True)
        base = float(np.log(shares[resp.item_idx[test], resp.score[test]]).mean())
        rec = out.setdefault("item shares (no IRT)", {"heldout_loglik_per_obs": 0.0})
        rec["heldout_loglik_per_obs"] += base / folds
        for name, (pa, pb, pg) in SETTINGS.items():
            cal = GRMCalibrator(
                prior_a=pa,
                prior_b=pb,
                prior_gap=pg,
                compute_se=False,
                max_iter=max_iter,
                min_obs=3,
            )
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CalibrationConvergenceWarning)
                cal.fit(
                    resp.subject_idx[tr],
                    resp.item_idx[tr],
                    resp.score[tr],
                    item_ids=list(resp.items),
                    n_categories=k,
                    n_subjects=len(resp.subjects),
                )
            fitted = np.full(len(resp.items), -1)
            fitted[cal.item_index_] = np.arange(len(cal.item_index_))
            keep_tr = tr & (fitted[resp.item_idx] >= 0)
            keep_te = test & (fitted[resp.item_idx] >= 0)
            ll = subject_log_likelihood(
                cal.a_,
                cal.b_,
                resp.subject_idx[keep_tr],
                fitted[resp.item_idx[keep_tr]],
                resp.score[keep_tr],
                len(resp.subjects),
                grid,
            )
            post = ll + log_w
            post -= logsumexp(post, axis=1, keepdims=True)
            lp = log_category_probs(grid, cal.a_, cal.b_)  # (grid, items, K)
            s, j, x = (
                resp.subject_idx[keep_te],
                fitted[resp.item_idx[keep_te]],
                resp.score[keep_te],
            )
            pred = logsumexp(post[s] + lp[:, j, x].T, axis=1)
            base_kept = float(np.log(shares[resp.item_idx[keep_te], resp.score[keep_te]]).mean())
            rec = out.setdefault(name, {"heldout_loglik_per_obs": 0.0, "max_a": 0.0})
            rec["baseline_same_cells"] = rec.get("baseline_same_cells", 0.0) + base_kept / folds
            rec["heldout_loglik_per_obs"] += float(pred.mean()) / folds
            rec["max_a"] = max(rec["max_a"], float(cal.a_.max()))
            rec["median_a"] = float(np.median(cal.a_))
            rec["converged"] = bool(cal.converged_)
            rec["fit_s"] = round(time.perf_counter() - t0, 2)
            rec["n_heldout"] = int(keep_te.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--only", nargs="*", help="dataset names to run")
    args = ap.parse_args()
    results = {}
    for name, rel in DATASETS.items():
        if args.only and name not in args.only:
            continue
        results[name] = heldout_score(Path(args.data) / rel, args.folds, args.max_iter)
        print(f"\n{name}")
        for setting, rec in results[name].items():
            if "max_a" not in rec:
                print(f"  {setting:22s} heldout loglik/obs {rec['heldout_loglik_per_obs']:.4f}")
                continue
            print(
                f"  {setting:22s} heldout loglik/obs {rec['heldout_loglik_per_obs']:.4f}  "
                f"(baseline on same cells {rec['baseline_same_cells']:.4f})  "
                f"max a {rec['max_a']:8.2f}  median a {rec['median_a']:.2f}  "
                f"conv {rec['converged']}  {rec['fit_s']}s",
                flush=True,
            )
    out = Path(__file__).parent / "results" / "prior_strength.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
