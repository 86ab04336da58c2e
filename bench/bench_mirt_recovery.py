"""Multidimensional GRM: parameter recovery, time and peak memory on simulated data.

Data: 3,000 subjects x 100 items, K = 4, θ ~ N(0, R) with every latent
correlation 0.5; slopes log-normal (0, 0.3) on the dimensions an item loads on
(each item on one dimension in turn, the first 20 % on all of them),
thresholds along the item's direction (the bank's form). Scenarios:

* ``2d_conf_grid``: D = 2, confirmatory, auto quadrature (adaptive product grid);
* ``2d_conf_qmc2000`` / ``2d_conf_qmc5000``: the same data with QMC points
  instead (how much accuracy does QMC cost where the grid is exact?);
* ``2d_expl``: D = 2, exploratory (every item on both), oblimin;
* ``3d_conf_qmc2000`` / ``3d_conf_qmc5000``: D = 3, confirmatory, QMC;
* ``3d_expl``: D = 3, exploratory, QMC 5000, oblimin.

Reported per scenario (fresh child process each, so ``ru_maxrss`` is its own):
fit wall time (with SEs), iterations, nodes, peak RSS, the load average
before and after (the machine is shared), and vs truth: corr and RMSE of the
slopes (loaded entries; exploratory dimensions matched to the true ones by
permutation and sign), of the thresholds, and the latent correlations with
their SEs.

    nice .venv/bin/python bench/bench_mirt_recovery.py [--scenarios ...] [--threads 1] \
        [--subjects 3000] [--items 100] [--seed 0] [--out FILE.json]

(``--subjects``/``--items`` shrink the data on a loaded machine; the JSON says which.
``--seed`` draws another data set; each row records the sample correlation of
its drawn θs beside the estimate, so estimator bias and sampling are told apart.)

Writes bench/results/mirt_recovery.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_SUBJECTS, N_ITEMS, K, RHO = 3000, 100, 4, 0.5
SCENARIOS = {
    "2d_conf_grid": (2, "confirmatory", "auto", 5000),
    "2d_conf_qmc2000": (2, "confirmatory", "qmc", 2000),
    "2d_conf_qmc5000": (2, "confirmatory", "qmc", 5000),
    "2d_expl": (2, "exploratory", "auto", 5000),
    "3d_conf_qmc2000": (3, "confirmatory", "qmc", 2000),
    "3d_conf_qmc5000": (3, "confirmatory", "qmc", 5000),
    "3d_expl": (3, "exploratory", "qmc", 5000),
}


def simulate(n_dims: int, seed: int = 0, n_subjects: int = N_SUBJECTS, n_items: int = N_ITEMS):
    """Known items and N(0, R) abilities; complete responses.

    Returns the sample correlation of the drawn θs (not R): the estimator can only be
    asked to recover the correlation that is in the sample.
    """
    from orchestrator.irt.model import GradedResponseModel

    r = np.random.default_rng(seed)
    corr = np.full((n_dims, n_dims), RHO)
    np.fill_diagonal(corr, 1.0)
    theta = r.normal(size=(n_subjects, n_dims)) @ np.linalg.cholesky(corr).T
    load = np.zeros((n_items, n_dims), dtype=np.int64)
    load[np.arange(n_items), np.arange(n_items) % n_dims] = 1
    load[: n_items // 5] = 1
    a = np.exp(r.normal(0.0, 0.3, (n_items, n_dims))) * load
    centre = r.normal(0.0, 1.0, (n_items, 1))
    b = centre + np.sort(r.uniform(-1.5, 1.5, (n_items, K - 1)), axis=1)
    model = GradedResponseModel(a, -(np.linalg.norm(a, axis=1)[:, None] * b))
    x = model.sample(theta, r)
    s, i = np.nonzero(np.ones_like(x))
    return a, b, load, np.corrcoef(theta.T), s, i, x[s, i]


def _corr_rmse(est: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "corr": float(np.corrcoef(est, true)[0, 1]),
        "rmse": float(np.sqrt(np.mean((est - true) ** 2))),
        "bias": float(np.mean(est - true)),
    }


def _match_dimensions(est: np.ndarray, true: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Permutation and signs of the estimated dimensions that best match the true slopes."""
    d = true.shape[1]
    best = None
    for perm in itertools.permutations(range(d)):
        cand = est[:, perm]
        signs = np.sign((cand * true).sum(axis=0))
        signs[signs == 0] = 1.0
        score = float(((cand * signs - true) ** 2).sum())
        if best is None or score < best[0]:
            best = (score, perm, signs)
    assert best is not None
    return best[1], best[2]


def child(name: str, threads: int, n_subjects: int, n_items: int, seed: int) -> dict:
    import torch

    from orchestrator.irt.calibrate import GRMCalibrator

    torch.set_num_threads(threads)
    n_dims, structure, quadrature, n_qmc = SCENARIOS[name]
    a, b, load, sample_corr, s, i, x = simulate(
        n_dims, seed=seed, n_subjects=n_subjects, n_items=n_items
    )
    load_before = os.getloadavg()
    cal = GRMCalibrator(
        n_dims=n_dims,
        loadings=load if structure == "confirmatory" else None,
        quadrature=quadrature,
        n_qmc=n_qmc,
    ).fit(s, i, x, n_categories=np.full(n_items, K))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    est, est_se = np.asarray(cal.a_), np.asarray(cal.a_se_)
    est_corr, corr_se = cal.latent_corr_, cal.latent_corr_se_
    matched = None
    if structure == "exploratory":  # rotation: dimensions in any order and sign
        perm, signs = _match_dimensions(est, a)
        est, est_se = est[:, perm] * signs, est_se[:, perm]
        est_corr = est_corr[np.ix_(perm, perm)] * np.outer(signs, signs)
        matched = {"permutation": list(perm), "signs": signs.tolist()}
        on = np.ones_like(load, dtype=bool)
    else:
        on = load > 0
    iu = np.triu_indices(n_dims, k=1)
    fin = np.isfinite(b)
    return {
        "scenario": name,
        "n_dims": n_dims,
        "structure": structure,
        "quadrature": cal.calibration_details()["quadrature"]["rule"],
        "n_subjects": n_subjects,
        "n_items": n_items,
        "seed": seed,
        "k": K,
        "true_correlation": RHO,
        "fit_wall_s": round(cal.wall_time_, 1),
        "iterations": cal.n_iter_,
        "converged": bool(cal.converged_),
        "nodes": cal.n_quad_,
        "peak_rss_mib": round(peak, 1),
        "torch_threads": threads,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "slopes": {**_corr_rmse(est[on], a[on]), "median_se": float(np.median(est_se[on]))},
        "slopes_zero_true": (
            {"rmse": float(np.sqrt(np.mean(est[load == 0] ** 2)))}
            if structure == "exploratory"
            else None
        ),
        "thresholds": {
            **_corr_rmse(cal.b_[fin], b[fin]),
            "median_se": float(np.nanmedian(cal.b_se_[fin])),
        },
        "latent_correlation": {
            "estimates": est_corr[iu].tolist(),
            "se": None if corr_se is None else corr_se[iu].tolist(),
            "rmse": float(np.sqrt(np.mean((est_corr[iu] - RHO) ** 2))),
            "sample_correlation": sample_corr[iu].tolist(),
            "rmse_vs_sample": float(np.sqrt(np.mean((est_corr[iu] - sample_corr[iu]) ** 2))),
        },
        "rotation": None
        if cal.rotation_ is None
        else {
            "method": cal.rotation_.method,
            "converged": cal.rotation_.converged,
            **(matched or {}),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on the shared 2-core machine two threads contend badly)",
    )
    ap.add_argument("--subjects", type=int, default=N_SUBJECTS)
    ap.add_argument("--items", type=int, default=N_ITEMS)
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated data")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "mirt_recovery.json"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.subjects, args.items, args.seed)))
        return
    out = args.out
    old = json.loads(out.read_text()) if out.exists() else {}
    results = {r["scenario"]: r for r in old.get("results", [])}
    for name in args.scenarios:
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
        cmd += ["--subjects", str(args.subjects), "--items", str(args.items)]
        cmd += ["--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"scenario {name} failed (exit {proc.returncode})")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name] = row
        lc = row["latent_correlation"]
        print(
            f"{name:16s} fit {row['fit_wall_s']:7.1f}s  iter {row['iterations']:3d}  "
            f"nodes {row['nodes']:5d}  peak {row['peak_rss_mib']:6.0f} MiB  "
            f"slopes r {row['slopes']['corr']:.3f} rmse {row['slopes']['rmse']:.3f}  "
            f"b r {row['thresholds']['corr']:.4f} rmse {row['thresholds']['rmse']:.3f}  "
            f"rho {np.round(lc['estimates'], 3).tolist()} (sample "
            f"{np.round(lc['sample_correlation'], 3).tolist()}) se "
            f"{None if lc['se'] is None else np.round(lc['se'], 3).tolist()}  "
            f"load {row['loadavg_before'][0]:.1f}  ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
        doc = {
            "machine": platform.node(),
            "cpus": os.cpu_count(),
            "command": "nice .venv/bin/python bench/bench_mirt_recovery.py "
            f"--subjects {args.subjects} --items {args.items} --threads {args.threads} "
            f"--seed {args.seed} "
            f"--out {out}",
            "results": [results[k] for k in SCENARIOS if k in results],
        }
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
