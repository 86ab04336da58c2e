"""Reversed items and the slope prior, decided with data (the tinybench banks).

    nice .venv/bin/python bench/reversed_items.py [--data /work/shared/data] [--banks tinyarc …]
        [--folds 5] [--slope-sds 0.25 0.5 1.0 1.5] [--skip-prior | --skip-treatments]

Banks require a > 0, so an item whose score *falls* with θ (a miskeyed or
reversed item) is fitted with a slope near 0 and carries no information. This
script measures, per bank:

1. **Evidence on all subjects.** The item–rest correlation (score vs the EAP
   from the *other* items, one-sided Fisher-z test of ρ ≥ 0, Benjamini–
   Hochberg q) and the unconstrained 2PL slope with its SE. The unconstrained
   fit is the bank's own calibrator with the items of negative item–rest
   correlation scored reversed (x → K−1−x), iterated until the set is stable:
   for a 2PL, a reversed item with slope a is the same model as the item with
   slope −a. *Flagged* = negative item–rest correlation with q < 0.05.
2. **Treatments, 5-fold cross-validated over subjects** (flags found on the
   training folds only): ``today`` (plain fit, a > 0), ``exclude`` (flagged
   items left out), ``reverse`` (flagged items reverse-keyed), and
   ``unconstrained`` (every item of negative item–rest correlation
   reversed). On the held-out subjects: a 10-item max-information CAT replay;
   RMSE@10 against each subject's full-data EAP under the same bank, divided
   by the SD of those EAPs (the θ scales differ by treatment); and the MAE of
   the accuracy on *all* items the subject answered, predicted from θ̂ after
   10 items (excluded items predicted by their training mean) against the
   observed accuracy — a criterion outside every model.
3. **The slope prior** log a ~ N(0, σ²), σ chosen by cross-validated
   predictive log-likelihood: for each held-out subject, θ's posterior from a
   random half of its responses predicts the other half (mean log predictive
   probability per response).

Writes bench/results/reversed_items.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from orchestrator.bank import ItemBank
from orchestrator.cat import make_selection
from orchestrator.data import Responses, read_responses
from orchestrator.errors import CalibrationConvergenceWarning
from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.fit import benjamini_hochberg, item_rest_correlation, rest_abilities
from orchestrator.irt.grm import category_probs, log_category_probs
from orchestrator.sim.replay import replay

REPO = Path(__file__).resolve().parents[1]
BANKS = ("tinyarc", "tinygsm8k", "tinyhellaswag", "tinytruthfulqa", "tinywinogrande")
TREATMENTS = ("today", "exclude", "reverse", "unconstrained")
FIT = {"compute_se": False, "n_quad": 61, "tol": 1e-3}
GRID = np.linspace(-6, 6, 241)


def _fit(s, i, x, k, n_sub, flip, prior_a=(0.0, 0.5), se=False):  # type: ignore[no-untyped-def]
    """Calibrate with the ``flip`` items reverse-keyed; returns (a, b, a_se, fitted item index)."""
    xs = np.where(flip[i], k[i] - 1 - x, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationConvergenceWarning)
        cal = GRMCalibrator(
            **{**FIT, "compute_se": se}, prior_a=prior_a, reversed_items="keep"
        ).fit(s, i, xs, n_categories=k, n_subjects=n_sub)
    return cal.a_, cal.b_, (cal.a_se_ if se else None), np.asarray(cal.item_index_)


def _item_rest(s, i, x, k, n_sub, a, b, fitted, flip):  # type: ignore[no-untyped-def]
    """Item–rest r of the *original* scores against θ from the other items (NaN: unfitted)."""
    pos = np.full(len(k), -1)
    pos[fitted] = np.arange(len(fitted))
    keep = pos[i] >= 0
    xs = np.where(flip[i], k[i] - 1 - x, x)
    theta = rest_abilities(a, b, s[keep], pos[i[keep]], xs[keep], n_sub, grid=GRID)
    r, p, _ = item_rest_correlation(pos[i[keep]], x[keep], theta, len(fitted), reference=0.0)
    # p above is for H0: ρ ≥ 0 with the alternative ρ < 0 (reversed)
    out_r = np.full(len(k), np.nan)
    out_p = np.full(len(k), np.nan)
    out_r[fitted], out_p[fitted] = r, p
    return out_r, out_p


def _orientation(s, i, x, k, n_sub, prior_a=(0.0, 0.5)):  # type: ignore[no-untyped-def]
    """Plain fit, item–rest evidence, and the unconstrained orientation (iterated)."""
    flip = np.zeros(len(k), dtype=bool)
    a, b, _, fitted = _fit(s, i, x, k, n_sub, flip, prior_a)
    r, p = _item_rest(s, i, x, k, n_sub, a, b, fitted, flip)
    plain = {"a": a, "b": b, "fitted": fitted, "r": r, "p": p}
    neg = np.nan_to_num(r) < 0
    for _ in range(3):  # the set moves little after the first refit
        if np.array_equal(neg, flip):
            break
        flip = neg
        a2, b2, _, fitted2 = _fit(s, i, x, k, n_sub, flip, prior_a)
        r2, _ = _item_rest(s, i, x, k, n_sub, a2, b2, fitted2, flip)
        neg = np.nan_to_num(r2) < 0
    q = np.full(len(k), np.nan)
    ok = np.isfinite(p)
    q[ok] = benjamini_hochberg(p[ok])
    flagged = (np.nan_to_num(r) < 0) & (np.nan_to_num(q, nan=1.0) < 0.05)
    return plain, flip, flagged, q


def _bank(name: str, ids: list[str], a, b) -> ItemBank:  # type: ignore[no-untyped-def]
    return ItemBank.from_params(name, ids, a, b)


def _evaluate(s, i, x, k, n_sub, test, item_ids, a, b, fitted, flip, train_mean, seed):  # type: ignore[no-untyped-def]
    """RMSE@10 / θ SD and accuracy MAE@10 on the ``test`` subjects."""
    sel = np.isin(s, test)
    pos = np.full(len(k), -1)
    pos[fitted] = np.arange(len(fitted))
    modelled = sel & (pos[i] >= 0)
    xs = np.where(flip[i], k[i] - 1 - x, x)
    ids = [item_ids[j] for j in fitted]
    bank = _bank("cv", ids, a, b)
    triples = zip(s[modelled].tolist(), i[modelled].tolist(), xs[modelled].tolist(), strict=True)
    resp = Responses.from_triples((f"s{u}", item_ids[j], int(v)) for u, j, v in triples)
    res = replay(
        bank, resp.for_bank(bank), {"cat": make_selection("max_info")}, max_items=10, seed=seed
    )
    theta10 = res.strategies[0].theta[10]
    err = theta10 - res.theta_full
    subj = np.array([int(u[1:]) for u in res.subjects])
    # accuracy on every answered item (original orientation), predicted from θ̂ after 10 items
    row_of = np.full(n_sub, -1)
    row_of[subj] = np.arange(len(subj))
    obs_rows = row_of[s[sel]]
    ok = obs_rows >= 0
    it, sc, rows = i[sel][ok], x[sel][ok], obs_rows[ok]
    share = (k[it] - 1).astype(float)
    pred = np.empty(len(it))
    mod = pos[it] >= 0
    probs = category_probs(0.0, a[pos[it[mod]]], b[pos[it[mod]]] - theta10[rows[mod]][:, None])
    e = (probs @ np.arange(probs.shape[-1])) / share[mod]
    pred[mod] = np.where(flip[it[mod]], 1.0 - e, e)
    pred[~mod] = train_mean[it[~mod]]
    n = np.bincount(rows, minlength=len(subj))
    acc = np.bincount(rows, weights=sc / share, minlength=len(subj)) / n
    acc_hat = np.bincount(rows, weights=pred, minlength=len(subj)) / n
    sd = float(np.std(res.theta_full))
    return {
        "rmse10": float(np.sqrt(np.mean(err**2))),
        "theta_sd": sd,
        "rmse10_over_sd": float(np.sqrt(np.mean(err**2)) / sd),
        "acc_mae10": float(np.mean(np.abs(acc_hat - acc))),
        "n_test": len(subj),
        "n_items": len(fitted),
    }


def _heldout_loglik(s, i, x, k, n_sub, test, a, b, fitted, rng):  # type: ignore[no-untyped-def]
    """Mean log predictive probability of a random half of each test subject's responses."""
    pos = np.full(len(k), -1)
    pos[fitted] = np.arange(len(fitted))
    sel = np.isin(s, test) & (pos[i] >= 0)
    ss, ii, xx = s[sel], pos[i[sel]], x[sel]
    half = rng.random(len(ss)) < 0.5
    table = log_category_probs(GRID, a, b)  # (G, n, K)
    ll = subject_log_likelihood(a, b, ss[half], ii[half], xx[half], n_sub, GRID, table)
    log_post = ll - 0.5 * GRID**2
    log_post -= logsumexp(log_post, axis=1, keepdims=True)
    pred = log_post[ss[~half]] + table[:, ii[~half], xx[~half]].T
    return float(np.mean(logsumexp(pred, axis=1)))


def run_bank(name: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    resp = read_responses(args.data / "tinybench" / name / "responses.csv")
    s, i, x = resp.subject_idx, resp.item_idx, resp.score
    n_sub, n_items = len(resp.subjects), len(resp.items)
    k = np.full(n_items, 2, dtype=np.int64)
    np.maximum.at(k, i, x + 1)
    item_ids = list(resp.items)
    print(f"{name}: {n_sub} subjects × {n_items} items; all-data evidence …", file=sys.stderr)
    plain, unc_flip, flagged, q = _orientation(s, i, x, k, n_sub)
    a_u, _, a_u_se, fitted_u = _fit(s, i, x, k, n_sub, unc_flip, se=True)
    slope = np.full(n_items, np.nan)
    slope_se = np.full(n_items, np.nan)
    slope[fitted_u] = np.where(unc_flip[fitted_u], -a_u, a_u)
    slope_se[fitted_u] = a_u_se
    a_today = np.full(n_items, np.nan)
    a_today[plain["fitted"]] = plain["a"]
    evidence = [
        {
            "item": item_ids[j],
            "item_rest_r": round(float(plain["r"][j]), 4),
            "q": round(float(q[j]), 6),
            "slope_unconstrained": round(float(slope[j]), 4),
            "slope_se": round(float(slope_se[j]), 4),
            "slope_today": round(float(a_today[j]), 4),
            "flagged": bool(flagged[j]),
        }
        for j in np.argsort(np.nan_to_num(plain["r"]))
        if np.nan_to_num(plain["r"][j]) < 0
    ]
    out: dict[str, Any] = {
        "bank": name,
        "subjects": n_sub,
        "items": n_items,
        "negative_slope_unconstrained": int((slope < 0).sum()),
        "negative_slope_z_below_minus2": int((slope / slope_se < -2).sum()),
        "negative_item_rest": int((np.nan_to_num(plain["r"]) < 0).sum()),
        "flagged": int(flagged.sum()),
        "evidence": evidence,
    }
    # cross-validation over subjects
    rng = np.random.default_rng(args.seed)
    fold = rng.permutation(n_sub) % args.folds
    cv: dict[str, list[dict[str, float]]] = {t: [] for t in TREATMENTS}
    prior_ll: dict[str, list[float]] = {str(sd): [] for sd in args.slope_sds}
    for f in range(args.folds):
        print(f"  fold {f + 1}/{args.folds}", file=sys.stderr, flush=True)
        train = np.flatnonzero(fold != f)
        test = np.flatnonzero(fold == f)
        tr = np.isin(s, train)
        st, it_, xt = s[tr], i[tr], x[tr]
        pl, unc, flg, _ = _orientation(st, it_, xt, k, n_sub)
        train_mean = np.bincount(it_, weights=xt / (k[it_] - 1), minlength=n_items) / np.maximum(
            np.bincount(it_, minlength=n_items), 1
        )
        if args.skip_treatments:
            fits = {}
        else:
            fits = {"today": (pl["a"], pl["b"], pl["fitted"], np.zeros(n_items, dtype=bool))}
        if not args.skip_treatments:
            keep = ~flg[it_]
            a_e, b_e, _, f_e = _fit(
                st[keep], it_[keep], xt[keep], k, n_sub, np.zeros(n_items, bool)
            )
            fits["exclude"] = (a_e, b_e, f_e, np.zeros(n_items, dtype=bool))
            a_r, b_r, _, f_r = _fit(st, it_, xt, k, n_sub, flg)
            fits["reverse"] = (a_r, b_r, f_r, flg)
            a_n, b_n, _, f_n = _fit(st, it_, xt, k, n_sub, unc)
            fits["unconstrained"] = (a_n, b_n, f_n, unc)
        for t, (a_t, b_t, f_t, flip_t) in fits.items():
            cv[t].append(
                _evaluate(
                    s, i, x, k, n_sub, test, item_ids, a_t, b_t, f_t, flip_t, train_mean, args.seed
                )
            )
        if not args.skip_prior:
            for sd in args.slope_sds:
                a_p, b_p, _, f_p = _fit(st, it_, xt, k, n_sub, flg, prior_a=(0.0, sd))
                ll = _heldout_loglik(
                    s, i, np.where(flg[i], k[i] - 1 - x, x), k, n_sub, test, a_p, b_p, f_p,
                    np.random.default_rng([args.seed, f]),
                )  # fmt: skip
                prior_ll[str(sd)].append(ll)
    out["cv"] = {
        t: {
            key: float(np.average([r[key] for r in rows], weights=[r["n_test"] for r in rows]))
            for key in ("rmse10", "theta_sd", "rmse10_over_sd", "acc_mae10", "n_items")
        }
        for t, rows in cv.items()
        if rows
    }
    if not args.skip_prior:
        out["slope_prior_heldout_loglik"] = {sd: float(np.mean(v)) for sd, v in prior_ll.items()}
        out["slope_prior_best_sd"] = float(
            max(args.slope_sds, key=lambda sd: np.mean(prior_ll[str(sd)]))
        )
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| bank | items | a<0 unconstrained (z<−2) | flagged (item–rest r<0, q<.05) "
        "| RMSE@10/θSD today / exclude / reverse / unconstrained "
        "| accuracy MAE@10 today / exclude / reverse / unconstrained | best slope-prior σ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cv = r["cv"]
        if not cv:
            lines.append(
                f"| {r['bank']} | {r['items']} | {r['negative_slope_unconstrained']} "
                f"({r['negative_slope_z_below_minus2']}) | {r['flagged']} | — | — "
                f"| {r.get('slope_prior_best_sd', '—')} |"
            )
            continue
        lines.append(
            f"| {r['bank']} | {r['items']} | {r['negative_slope_unconstrained']} "
            f"({r['negative_slope_z_below_minus2']}) | {r['flagged']} | "
            + " / ".join(f"{cv[t]['rmse10_over_sd']:.3f}" for t in TREATMENTS)
            + " | "
            + " / ".join(f"{cv[t]['acc_mae10']:.4f}" for t in TREATMENTS)
            + f" | {r.get('slope_prior_best_sd', '—')} |"
        )
    return "\n".join(lines)


def _prior_table(results: list[dict[str, Any]], sds: list[float]) -> str:
    """Held-out log predictive probability per response, per slope-prior σ (best in bold)."""
    lines = [
        "| bank | " + " | ".join(f"σ = {sd:g}" for sd in sds) + " | best − σ 0.5 (default) |",
        "|---|" + "---|" * (len(sds) + 1),
    ]
    for r in results:
        ll = r["slope_prior_heldout_loglik"]
        best = max(ll.values())
        cells = [
            f"**{ll[str(sd)]:.5f}**" if ll[str(sd)] == best else f"{ll[str(sd)]:.5f}" for sd in sds
        ]
        gain = f"{best - ll['0.5']:+.5f}" if "0.5" in ll else "—"
        lines.append(f"| {r['bank']} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--banks", nargs="+", default=list(BANKS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--slope-sds", type=float, nargs="+", default=[0.25, 0.5, 1.0, 1.5])
    ap.add_argument("--skip-prior", action="store_true", help="skip the slope-prior search")
    ap.add_argument("--skip-treatments", action="store_true", help="only the slope-prior search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reversed_items.json")
    args = ap.parse_args()
    results = [run_bank(b, args) for b in args.banks]
    table = _table(results)
    if not args.skip_prior:
        table += "\n\n" + _prior_table(results, args.slope_sds)
    print(table)
    doc = {
        "schema_version": 1,
        "folds": args.folds,
        "seed": args.seed,
        "fit": FIT,
        "treatments": list(TREATMENTS),
        "banks": results,
        "table": table,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
