"""agentcat's GRM calibration side by side with girth 0.8.0 (an independent MML implementation).

Same simulated data, fitted by both in one run; prints and saves parameter
agreement (correlations, mean absolute differences), recovery of the true
parameters, the marginal log-likelihood of each solution evaluated by one
independent function (``orchestrator.irt.ability``, numpy, 2001-node grid), and
wall times.

    nice .venv/bin/python bench/bench_calibration_vs_girth.py [--quick]

Parameterisation: girth's graded model is
``expit(a(θ − b_k)) − expit(a(θ − b_{k+1}))`` (``girth/unidimensional/polytomous/
partial_integrals_poly.py``): P(X ≥ k) = σ(a(θ − b_k)), no 1.702, θ ~ N(0, 1):
the same as agentcat's, so estimates are compared unchanged.

Missing data: girth takes a dense items × subjects array and marks unobserved
cells with its ``INVALID_RESPONSE`` (−99999), which its likelihood skips; agentcat
takes the sparse long triples. The sparse scenario is fed to girth that way.
girth also renumbers each item's categories to those observed, so an item with
an empty category gets fewer thresholds (NaN-padded); such items are left out
of the comparison and counted.

Both fits run without item priors (girth has none) on the same quadrature:
61 nodes on [−6, 6] (agentcat ``n_quad=61``); agentcat's default
``n_quad="auto"`` is reported as a second line. Numbers measured on a shared,
loaded 2-core machine are preliminary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import girth
import numpy as np
import torch
from scipy.special import logsumexp

from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.grm import sample_responses

INVALID = -99999


def simulate(n_subjects: int, n_items: int, k: int, frac: float, seed: int):
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    centre = r.normal(0.0, 0.8, n_items)
    if k == 2:
        b = centre[:, None]
    else:  # evenly spread thresholds so every category is used
        b = centre[:, None] + np.linspace(-1.2, 1.2, k - 1)[None, :] + r.normal(0, 0.1, (1, k - 1))
    theta = r.normal(size=n_subjects)
    x = sample_responses(theta, a, b, r)
    observed = r.random(x.shape) < frac
    return a, b, x, observed


def marginal_loglik(a, b, s, i, x, n_subjects) -> float:
    grid = np.linspace(-6, 6, 2001)
    log_w = -0.5 * grid**2
    log_w -= logsumexp(log_w)
    ll = subject_log_likelihood(a, b, s, i, x, n_subjects, grid)
    return float(logsumexp(ll + log_w, axis=1).sum())


def run(name: str, n_subjects: int, n_items: int, k: int, frac: float, seed: int) -> dict:
    a, b, x, observed = simulate(n_subjects, n_items, k, frac, seed)
    s, i = np.nonzero(observed)
    xs = x[s, i]
    dense = np.where(observed, x, INVALID).T.astype(int)  # girth: items x subjects
    opts = {"quadrature_n": 61, "quadrature_bounds": (-6.0, 6.0)}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = girth.grm_mml(dense, opts)  # twopl_mml is grm_mml with squeezed output
    t_girth = time.perf_counter() - t0
    ga = np.asarray(res["Discrimination"], dtype=float)
    gb = np.asarray(res["Difficulty"], dtype=float).reshape(n_items, -1)[:, : k - 1]

    fits = {}
    for label, n_quad in (("agentcat n_quad=61", 61), ("agentcat n_quad=auto", "auto")):
        t0 = time.perf_counter()
        cal = GRMCalibrator(n_quad=n_quad, prior_a=None, prior_b=None, compute_se=False)
        cal.fit(s, i, xs, n_categories=np.full(n_items, k))
        fits[label] = (cal, time.perf_counter() - t0)

    ok = np.isfinite(gb).all(axis=1) & np.isfinite(ga)
    rows = {}
    for label, (cal, secs) in fits.items():
        ca, cb = cal.a_[ok], cal.b_[ok]
        rows[label] = {
            "corr_a_vs_girth": float(np.corrcoef(ca, ga[ok])[0, 1]),
            "corr_b_vs_girth": float(np.corrcoef(cb.ravel(), gb[ok].ravel())[0, 1]),
            "mean_abs_diff_a": float(np.mean(np.abs(ca - ga[ok]))),
            "mean_abs_diff_b": float(np.mean(np.abs(cb - gb[ok]))),
            "corr_a_vs_truth": float(np.corrcoef(ca, a[ok])[0, 1]),
            "corr_b_vs_truth": float(np.corrcoef(cb.ravel(), b[ok].ravel())[0, 1]),
            "mean_bias_a": float(np.mean(ca - a[ok])),
            "marginal_loglik": marginal_loglik(cal.a_, cal.b_, s, i, xs, n_subjects),
            "n_quad_used": cal.n_quad_,
            "iterations": cal.n_iter_,
            "wall_s": secs,
            "girth_over_agentcat_time": t_girth / secs,
        }
    girth_ll = (
        marginal_loglik(ga, gb, s, i, xs, n_subjects) if ok.all() else None
    )  # girth's own solution, when every item kept all categories
    return {
        "scenario": name,
        "n_subjects": n_subjects,
        "n_items": n_items,
        "k": k,
        "observed_share": float(observed.mean()),
        "n_observations": len(xs),
        "girth": {
            "wall_s": t_girth,
            "corr_a_vs_truth": float(np.corrcoef(ga[ok], a[ok])[0, 1]),
            "corr_b_vs_truth": float(np.corrcoef(gb[ok].ravel(), b[ok].ravel())[0, 1]),
            "mean_bias_a": float(np.mean(ga[ok] - a[ok])),
            "marginal_loglik": girth_ll,
            "items_left_out_nan": int((~ok).sum()),
        },
        "agentcat": rows,
    }


def _fmt(v: float | None) -> str:
    return "n/a (items left out)" if v is None else f"{v:.3f}"


def _warm_up() -> None:
    """One tiny fit of each kind first: torch's and girth's first-call costs are not timed."""
    _, _, x, observed = simulate(50, 5, 3, 1.0, 0)
    s, i = np.nonzero(observed)
    GRMCalibrator(compute_se=False).fit(s, i, x[s, i])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        girth.grm_mml(x.T.astype(int), {"quadrature_n": 61, "quadrature_bounds": (-6.0, 6.0)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller problems (smoke run)")
    args = ap.parse_args()
    n = 300 if args.quick else 1000
    scenarios = [
        ("2PL complete", n, 40, 2, 1.0, 1),
        ("GRM K=4 complete", n, 40, 4, 1.0, 2),
        ("GRM K=3, 30% missing", n, 40, 3, 0.7, 3),
    ]
    _warm_up()
    results = []
    for sc in scenarios:
        r = run(*sc)
        results.append(r)
        g = r["girth"]
        print(
            f"\n{r['scenario']}: {r['n_subjects']} subjects x {r['n_items']} items, "
            f"{r['n_observations']} observations"
        )
        print(
            f"  girth 0.8.0          {g['wall_s']:7.2f}s  corr(a,true) {g['corr_a_vs_truth']:.4f}  "
            f"corr(b,true) {g['corr_b_vs_truth']:.4f}  bias a {g['mean_bias_a']:+.4f}  "
            f"loglik {_fmt(g['marginal_loglik'])}"
            f"  (items left out: {g['items_left_out_nan']})"
        )
        for label, row in r["agentcat"].items():
            print(
                f"  {label:20s} {row['wall_s']:7.2f}s  corr(a,true) {row['corr_a_vs_truth']:.4f}  "
                f"corr(b,true) {row['corr_b_vs_truth']:.4f}  bias a {row['mean_bias_a']:+.4f}  "
                f"loglik {row['marginal_loglik']:.3f}"
            )
            print(
                f"  {'':20s} vs girth: corr a {row['corr_a_vs_girth']:.5f}  corr b "
                f"{row['corr_b_vs_girth']:.5f}  mean|Δa| {row['mean_abs_diff_a']:.4f}  "
                f"mean|Δb| {row['mean_abs_diff_b']:.4f}  time ratio girth/agentcat "
                f"{row['girth_over_agentcat_time']:.1f}x"
            )
    out = Path(__file__).parent / "results" / "calibration_vs_girth.json"
    out.parent.mkdir(exist_ok=True)
    doc = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "note": "shared 2-core machine under load: times are preliminary",
        "results": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
