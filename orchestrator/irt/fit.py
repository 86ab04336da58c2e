"""Model-fit diagnostics for the graded response model: items, pairs, persons, the test.

Pure numpy/scipy, no I/O, vectorised over observations, items and subjects.
Observations are sparse triples ``(subject_idx, item_idx, score)``; item
parameters are the bank arrays ``a`` ``(n_items,)`` and ``b``
``(n_items, K_max − 1)`` padded with +inf; ``theta`` is one ability estimate
per subject (EAP by default in the report).

What is here, and what each assumes:

* :func:`mean_squares` — infit/outfit mean squares (Wright & Masters) for
  polytomous items on sparse data, standardised with the Wilson–Hilferty cube
  root. The p-values treat θ̂ as the true θ; θ̂ is fitted to the same
  responses, which pulls residuals in (MS slightly below 1, p-values
  conservative), most so for subjects with few items. The cube-root normal
  approximation is rough for small n per item.
* :func:`summed_score_fit` — Orlando–Thissen S-X², generalised to polytomous
  items (Kang & Chen 2008). Expected category proportions given the summed
  score come from the Lord–Wingersky recursion integrated over the θ prior.
  It **needs complete data** (every subject answered every item in the set),
  because the summed score is only comparable across subjects who took the
  same items; callers pass the complete-case sub-matrix (see
  :func:`complete_case_matrix`). It is a large-sample χ² test: with fewer than
  ~100 complete subjects the score groups collapse and the test has little
  power. Degrees of freedom subtract the item's K parameters only when they
  were estimated from these very data.
* :func:`residual_correlations` — Yen's Q3, the correlation of residuals
  x − E[X | θ̂] over the subjects who answered both items (pairwise on sparse
  data). Q3 is biased negative (about −1/(n_items − 1)), hence the usual
  report of Q3 − mean(Q3). :func:`q3_null_max` simulates the null of the
  largest Q3 − mean from the model itself, because with few subjects and
  near-deterministic items residuals are far from normal and Fisher-z
  p-values are badly anti-conservative; :func:`flag_q3` flags pairs beyond
  both the conventional 0.2 and that simulated critical value, and
  :func:`group_dependence` tests whether items sharing a tag correlate more.
* :func:`person_fit_lz` — Drasgow's standardised log-likelihood l_z for
  polytomous items at θ̂. With estimated θ its null distribution is narrower
  than N(0, 1) (Snijders 2001), so a cut at −2 flags fewer than 2.3 % of
  fitting subjects: conservative, not anti-conservative.
* :func:`item_rest_correlation` — Pearson correlation of each item's score
  with θ estimated *without* that item. Unlike the calibrated slope (held
  positive by the bank schema and the calibrator's prior), it can come out
  negative, which is how a reversed or mislabelled item shows.
* :func:`category_max_prob`, :func:`information_curve`, :func:`below_target_intervals`
  — threshold spacing and information coverage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.model import GradedResponseModel
from orchestrator.irt.posterior import grid_summaries, make_grid, normal_log_prior

__all__ = [
    "GroupDependence",
    "MeanSquares",
    "Q3Flags",
    "Q3Result",
    "SX2Result",
    "below_target_intervals",
    "benjamini_hochberg",
    "category_max_prob",
    "complete_case_matrix",
    "flag_q3",
    "group_dependence",
    "information_curve",
    "item_rest_correlation",
    "mean_squares",
    "observation_moments",
    "observation_probs",
    "person_fit_lz",
    "q3_null_max",
    "q3_of_residuals",
    "residual_correlations",
    "rest_abilities",
    "summed_score_fit",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[str], None]

_TINY = 1e-300
_CHUNK = 2_000_000  # floats per chunk when a (observations × grid) array is built


# --------------------------------------------------------------------------- helpers
def observation_probs(theta_obs: FloatArray, a_obs: FloatArray, b_obs: FloatArray) -> FloatArray:
    """P(X = k | θ_o) for each observation's own item, shape ``(n_obs, K_max)``.

    ``a_obs``, ``b_obs``: the parameters of each observation's item (one row each).
    """
    model = GradedResponseModel.from_difficulty(a_obs, b_obs)
    return model.category_probs_at(theta_obs[:, None], np.arange(len(theta_obs)))


def observation_moments(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    theta: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per observation: category probabilities, E[X], Var[X] and E[(X − E)^4] at θ̂."""
    p = observation_probs(theta[subject_idx], a[item_idx], b[item_idx])
    k = np.arange(p.shape[1], dtype=float)
    mean = p @ k
    dev = k[None, :] - mean[:, None]
    var = (p * dev**2).sum(axis=1)
    kurt = (p * dev**4).sum(axis=1)
    return p, mean, var, kurt


def benjamini_hochberg(p: FloatArray) -> FloatArray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN entries stay NaN and do not count."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return q
    order = ok[np.argsort(p[ok])]
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


def _group_sums(idx: IntArray, values: FloatArray, n: int) -> FloatArray:
    return np.bincount(idx, weights=values, minlength=n)


# --------------------------------------------------------------------------- infit / outfit
@dataclass(frozen=True)
class MeanSquares:
    """Infit and outfit per item (NaN where the item has no observations).

    ``*_t`` are Wilson–Hilferty standardised values (≈ N(0, 1) under the
    model); ``*_p`` their two-sided p-values.
    """

    n: IntArray
    infit: FloatArray
    outfit: FloatArray
    infit_t: FloatArray
    outfit_t: FloatArray
    infit_p: FloatArray
    outfit_p: FloatArray


def _wilson_hilferty(ms: FloatArray, var: FloatArray) -> FloatArray:
    q = np.sqrt(np.maximum(var, 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.cbrt(ms) - 1.0) * (3.0 / q) + q / 3.0


def mean_squares(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    theta: FloatArray,
) -> MeanSquares:
    """Outfit (unweighted) and infit (information-weighted) mean squares per item.

    With residual y = x − E, variance W and fourth central moment C at θ̂:
    outfit = mean(y²/W), Var = Σ(C/W²)/n² − 1/n; infit = Σy²/ΣW,
    Var = Σ(C − W²)/(ΣW)². Both have expectation 1 under the model; > 1 means
    noisier than the model allows (underfit), < 1 more deterministic (overfit).
    """
    n_items = a.shape[0]
    _, mean, var, kurt = observation_moments(a, b, subject_idx, item_idx, theta)
    w = np.maximum(var, 1e-10)
    y2 = (score - mean) ** 2
    n = np.bincount(item_idx, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        outfit = _group_sums(item_idx, y2 / w, n_items) / n
        out_var = _group_sums(item_idx, kurt / w**2, n_items) / n**2 - 1.0 / n
        sum_w = _group_sums(item_idx, var, n_items)
        infit = _group_sums(item_idx, y2, n_items) / sum_w
        in_var = _group_sums(item_idx, kurt - var**2, n_items) / sum_w**2
    infit_t = _wilson_hilferty(infit, in_var)
    outfit_t = _wilson_hilferty(outfit, out_var)
    empty = n == 0
    for arr in (infit, outfit, infit_t, outfit_t):
        arr[empty] = np.nan
    return MeanSquares(
        n=n.astype(np.int64),
        infit=infit,
        outfit=outfit,
        infit_t=infit_t,
        outfit_t=outfit_t,
        infit_p=2.0 * stats.norm.sf(np.abs(infit_t)),
        outfit_p=2.0 * stats.norm.sf(np.abs(outfit_t)),
    )


# --------------------------------------------------------------------------- S-X²
@dataclass(frozen=True)
class SX2Result:
    """Generalised S-X² per item over the complete-case subjects."""

    stat: FloatArray
    df: IntArray
    p: FloatArray
    n_groups: IntArray
    n_subjects: int


def complete_case_matrix(
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    n_subjects: int,
    items: IntArray,
) -> tuple[IntArray, IntArray]:
    """Dense scores of the subjects who answered every item in ``items``.

    Returns:
        ``(subjects, X)``: the complete subjects' indices and their
        ``(len(subjects), len(items))`` score matrix.
    """
    col = np.full(int(item_idx.max(initial=-1)) + 1, -1, dtype=np.int64)
    col[items] = np.arange(len(items))
    keep = (item_idx < col.size) & (col[np.minimum(item_idx, col.size - 1)] >= 0)
    s, c, x = subject_idx[keep], col[item_idx[keep]], score[keep]
    counts = np.bincount(s, minlength=n_subjects)
    complete = np.flatnonzero(counts == len(items))
    row = np.full(n_subjects, -1, dtype=np.int64)
    row[complete] = np.arange(complete.size)
    sel = row[s] >= 0
    dense = np.zeros((complete.size, len(items)), dtype=np.int64)
    dense[row[s[sel]], c[sel]] = x[sel]
    return complete, dense


def _add_items(dist: FloatArray, probs: FloatArray, n_cat: IntArray) -> FloatArray:
    """Convolve a summed-score distribution ``(T+1, Q)`` with items ``probs`` ``(m, Q, K)``."""
    for j in range(probs.shape[0]):  # Lord–Wingersky: one item at a time, vectorised over Q
        k_j = int(n_cat[j])
        new = np.zeros((dist.shape[0] + k_j - 1, dist.shape[1]))
        for k in range(k_j):
            new[k : k + dist.shape[0]] += dist * probs[j, :, k]
        dist = new
    return dist


def _leave_one_out_numerators(
    probs: FloatArray, n_cat: IntArray, weights: FloatArray, progress: Progress | None
) -> FloatArray:
    """num[i, s, k] = ∫ P_ik(θ) f_{−i}(s − k | θ) g(θ) dθ for every item, s and k.

    f_{−i} (the summed-score distribution without item i) for all i at once by
    divide and conquer: a node's "outside" distribution is passed to each half
    after convolving in the other half, so every item is added O(log n) times
    and memory stays O(log n) distributions (the alternative, dividing an item
    out of the full distribution, is numerically unstable).
    """
    n, q, k_max = probs.shape
    s_max = int((n_cat - 1).sum())
    num = np.zeros((n, s_max + 1, k_max))
    wp = probs * weights[None, :, None]  # (n, Q, K)
    done = [0]

    def rec(lo: int, hi: int, outside: FloatArray) -> None:
        if hi - lo == 1:
            m = outside @ wp[lo]  # (T+1, K)
            t = m.shape[0]
            for k in range(int(n_cat[lo])):
                num[lo, k : k + t, k] = m[:, k]
            done[0] += 1
            if progress is not None and (done[0] % 50 == 0 or done[0] == n):
                progress(f"S-X²: {done[0]}/{n} items")
            return
        mid = (lo + hi) // 2
        rec(lo, mid, _add_items(outside, probs[mid:hi], n_cat[mid:hi]))
        rec(mid, hi, _add_items(outside, probs[lo:mid], n_cat[lo:mid]))

    rec(0, n, np.ones((1, q)))
    return num


def summed_score_fit(
    x: IntArray,
    a: FloatArray,
    b: FloatArray,
    n_categories: IntArray,
    *,
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
    n_quad: int = 121,
    min_expected: float = 1.0,
    params_estimated: bool = True,
    progress: Progress | None = None,
) -> SX2Result:
    """Orlando–Thissen S-X² generalised to graded items, for a complete score matrix.

    Subjects are grouped by summed score s (the extremes, where every item's
    category is determined, are dropped). For item i, observed category
    counts in each group are compared with N_s · E[P(X_i = k) | S = s]:

        S-X²_i = Σ_groups Σ_k (O − E)² / E

    Adjacent score groups are pooled (low to high; the remainder joins the
    last group) until every expected count is ≥ ``min_expected``.
    df = Σ_groups (categories − 1) − K_i when the item's K_i parameters were
    estimated from these data (``params_estimated``), else without the
    subtraction; items with df < 1 get NaN p-values.

    Args:
        x: ``(n_subjects, n_items)`` scores, complete (no missing cells).
        a, b, n_categories: Parameters of exactly these items.
        prior_mean, prior_sd: Normal ability distribution integrated over.
        n_quad: Quadrature points on prior_mean ± 6 prior_sd.
    """
    n_sub, n_items = x.shape
    nodes = make_grid(prior_mean - 6 * prior_sd, prior_mean + 6 * prior_sd, n_quad)
    weights = stats.norm.pdf(nodes, prior_mean, prior_sd)
    weights /= weights.sum()
    model = GradedResponseModel.from_difficulty(a, b)
    probs = np.moveaxis(model.category_probs(nodes[:, None]), 0, 1)  # (n_items, Q, K)
    k_max = probs.shape[2]
    num = _leave_one_out_numerators(probs, n_categories, weights, progress)
    s_max = num.shape[1] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = num / np.maximum(num.sum(axis=2, keepdims=True), _TINY)  # P(X_i = k | S = s)

    total = x.sum(axis=1)
    n_s = np.bincount(total, minlength=s_max + 1).astype(float)
    flat = (np.arange(n_items)[None, :] * (s_max + 1) + total[:, None]) * k_max + x
    observed = np.bincount(flat.ravel(), minlength=n_items * (s_max + 1) * k_max).reshape(
        n_items, s_max + 1, k_max
    )
    expected = n_s[None, :, None] * cond
    valid_k = np.arange(k_max)[None, :] < n_categories[:, None]  # (n_items, K)

    def chi(o: FloatArray, e: FloatArray) -> tuple[FloatArray, FloatArray]:
        cells = (e > 0) & valid_k
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = np.where(cells, (o - e) ** 2 / np.where(cells, e, 1.0), 0.0)
        return terms.sum(axis=1), cells.sum(axis=1).astype(float)

    zeros = np.zeros((n_items, k_max))
    acc_o, acc_e = zeros.copy(), zeros.copy()
    last_o, last_e = zeros.copy(), zeros.copy()
    stat = np.zeros(n_items)
    dof = np.zeros(n_items)
    groups = np.zeros(n_items, dtype=np.int64)
    last_stat, last_dof = np.zeros(n_items), np.zeros(n_items)
    for s in np.flatnonzero(n_s[1:s_max] > 0) + 1:  # observed, non-extreme summed scores
        acc_o += observed[:, s]
        acc_e += expected[:, s]
        ready = np.all((acc_e >= min_expected) | ~valid_k, axis=1)
        if ready.any():
            c, cells = chi(acc_o, acc_e)
            stat[ready] += c[ready]
            dof[ready] += cells[ready] - 1
            groups[ready] += 1
            last_stat[ready], last_dof[ready] = c[ready], cells[ready] - 1
            last_o[ready], last_e[ready] = acc_o[ready], acc_e[ready]
            acc_o[ready], acc_e[ready] = 0.0, 0.0
    # the unfinished remainder joins the last closed group (or forms the only group)
    left = acc_e.sum(axis=1) > 0
    has_last = groups > 0
    merge = left & has_last
    c, cells = chi(last_o + acc_o, last_e + acc_e)
    stat[merge] += c[merge] - last_stat[merge]
    dof[merge] += (cells[merge] - 1) - last_dof[merge]
    alone = left & ~has_last
    c, cells = chi(acc_o, acc_e)
    stat[alone], dof[alone], groups[alone] = c[alone], cells[alone] - 1, 1
    if params_estimated:
        dof -= n_categories
    df = dof.astype(np.int64)
    with np.errstate(invalid="ignore"):
        p = np.where(df >= 1, stats.chi2.sf(stat, np.maximum(df, 1)), np.nan)
    stat = np.where(groups > 0, stat, np.nan)
    return SX2Result(stat=stat, df=df, p=p, n_groups=groups, n_subjects=n_sub)


# --------------------------------------------------------------------------- Q3
@dataclass(frozen=True)
class Q3Result:
    """Pairwise residual correlations; NaN where fewer than 3 common subjects or no variance."""

    q3: FloatArray
    """``(n_items, n_items)``, NaN on the diagonal."""
    n_common: IntArray
    """Subjects who answered both items."""


def _pairwise_corr(
    n: FloatArray, s_i: FloatArray, ss_i: FloatArray, s_j: FloatArray, ss_j: FloatArray,
    cross: FloatArray,
) -> FloatArray:  # fmt: skip
    """Pearson r from sums over each pair's common subjects; NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.where(n > 0, n, np.nan)
        cov = cross / nn - (s_i / nn) * (s_j / nn)
        var_i = ss_i / nn - (s_i / nn) ** 2
        var_j = ss_j / nn - (s_j / nn) ** 2
        corr = cov / np.sqrt(var_i * var_j)
    bad = (n < 3) | ~(var_i > 1e-12) | ~(var_j > 1e-12)
    return np.where(bad, np.nan, np.clip(corr, -1.0, 1.0))


def residual_correlations(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    theta: FloatArray,
    n_subjects: int,
    *,
    block: int = 256,
    dense_limit: int = 4_000_000,
    progress: Progress | None = None,
) -> Q3Result:
    """Yen's Q3 for every item pair, each over the subjects who answered both.

    Pairwise Pearson correlations on sparse data are matrix products of the
    (subjects × items) residual and indicator matrices (counts, sums, sums of
    squares and cross-products restricted to the common subjects). Up to
    ``dense_limit`` subject × item cells they are dense BLAS products (fast);
    beyond, sparse products in column blocks, so memory grows with
    observations plus items², never with subjects × items².
    """
    _, mean, _, _ = observation_moments(a, b, subject_idx, item_idx, theta)
    return q3_of_residuals(
        score - mean, subject_idx, item_idx, n_subjects, a.shape[0],
        block=block, dense_limit=dense_limit, progress=progress,
    )  # fmt: skip


def q3_of_residuals(
    r: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    n_subjects: int,
    n_items: int,
    *,
    block: int = 256,
    dense_limit: int = 4_000_000,
    progress: Progress | None = None,
) -> Q3Result:
    """Yen's Q3 from per-observation residuals x − E[X | θ̂] (any model, e.g. θ̂ ∈ R^D)."""
    shape = (n_subjects, n_items)
    if n_subjects * n_items <= dense_limit:
        res = np.zeros(shape)
        ind = np.zeros(shape)
        res[subject_idx, item_idx] = r
        ind[subject_idx, item_idx] = 1.0
        n = ind.T @ ind
        s_i = res.T @ ind  # [i, j]: Σ r_i over the subjects who also answered j
        ss_i = (res * res).T @ ind
        q3 = _pairwise_corr(n, s_i, ss_i, s_i.T, ss_i.T, res.T @ res)
        n_common = np.rint(n).astype(np.int64)
        if progress is not None:
            progress(f"Q3: {n_items}/{n_items} items")
    else:
        res_s = sparse.csc_matrix((r, (subject_idx, item_idx)), shape=shape)
        res2_s = sparse.csc_matrix((r * r, (subject_idx, item_idx)), shape=shape)
        ind_s = sparse.csc_matrix((np.ones_like(r), (subject_idx, item_idx)), shape=shape)
        res_t, res2_t, ind_t = res_s.T.tocsr(), res2_s.T.tocsr(), ind_s.T.tocsr()
        q3 = np.full((n_items, n_items), np.nan)
        n_common = np.zeros((n_items, n_items), dtype=np.int64)
        for start in range(0, n_items, block):
            cols = slice(start, min(start + block, n_items))
            ind_b = ind_s[:, cols].toarray()
            res_b = res_s[:, cols].toarray()
            n = np.asarray(ind_t @ ind_b)  # (items, block): common subjects
            q3[:, cols] = _pairwise_corr(
                n,
                np.asarray(res_t @ ind_b),
                np.asarray(res2_t @ ind_b),
                np.asarray(ind_t @ res_b),
                np.asarray(ind_t @ (res_b * res_b)),
                np.asarray(res_t @ res_b),
            )
            n_common[:, cols] = np.rint(n).astype(np.int64)
            if progress is not None:
                progress(f"Q3: {cols.stop}/{n_items} items")
    np.fill_diagonal(q3, np.nan)
    return Q3Result(q3=q3, n_common=n_common)


@dataclass(frozen=True)
class Q3Flags:
    """Pairs with excess residual correlation and the clusters they form."""

    mean_q3: float
    """Mean Q3 over the pairs with at least ``min_common`` common subjects."""
    threshold: float
    """Q3 − mean above which a pair is flagged (``excess``, raised to the null's critical value)."""
    pairs: IntArray
    """``(n_flagged, 2)`` item indices, i < j, sorted by adjusted Q3 (largest first)."""
    q3_adj: FloatArray
    """Q3 − mean Q3 of each flagged pair."""
    p_adjusted: FloatArray
    """Family-wise (max-statistic) bootstrap p of each flagged pair; NaN without a null."""
    clusters: list[list[int]]
    """Connected components (size ≥ 2) of the flagged-pair graph, largest first."""
    n_tested: int


def _tested_pairs(
    result: Q3Result, min_common: int
) -> tuple[IntArray, IntArray, FloatArray, NDArray[np.bool_]]:
    iu, ju = np.triu_indices(result.q3.shape[0], k=1)
    q = result.q3[iu, ju]
    tested = np.isfinite(q) & (result.n_common[iu, ju] >= max(min_common, 4))
    return iu, ju, q, tested


def q3_null_max(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    theta: FloatArray,
    n_subjects: int,
    *,
    n_boot: int = 50,
    min_common: int = 10,
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> FloatArray:
    """Parametric-bootstrap null of the largest Q3 over the tested pairs, ``(n_boot, 2)``.

    Column 0 is max(Q3 − mean Q3) of each simulated data set, column 1 its
    max raw Q3 (needed because Q3 is capped at 1: once identical response
    patterns occur by chance, a pair at Q3 = 1 cannot be told from noise).

    Each replicate redraws every observed (subject, item) score from the
    model at the subject's θ̂ (same missingness), re-estimates θ and
    recomputes Q3. The null therefore carries everything the normal
    approximation ignores: skewed residuals of near-deterministic items
    (with few subjects one surprising subject makes Q3 ≈ 1), θ estimated
    from the same items, and the number of pairs (Christensen, Makransky &
    Horton 2017 recommend simulated critical values for Q3 for these reasons).
    """
    from orchestrator.irt.ability import estimate_abilities

    p = observation_probs(theta[subject_idx], a[item_idx], b[item_idx])
    cdf = np.cumsum(p, axis=1)
    grid = make_grid(-6.0, 6.0, 241)
    out = np.full((n_boot, 2), np.nan)
    for r in range(n_boot):  # replicates, each fully vectorised
        u = rng.random(len(subject_idx))[:, None]
        x = np.minimum((u > cdf).sum(axis=1), p.shape[1] - 1).astype(np.int64)
        th = estimate_abilities(
            a, b, subject_idx, item_idx, x, n_subjects,
            prior_mean=prior_mean, prior_sd=prior_sd, grid=grid,
        ).theta  # fmt: skip
        res = residual_correlations(a, b, subject_idx, item_idx, x, th, n_subjects)
        _, _, q, tested = _tested_pairs(res, min_common)
        if tested.any():
            out[r] = (float((q[tested] - q[tested].mean()).max()), float(q[tested].max()))
        if progress is not None and ((r + 1) % 10 == 0 or r + 1 == n_boot):
            progress(f"Q3 null: {r + 1}/{n_boot} simulated data sets")
    return out


def flag_q3(
    result: Q3Result,
    *,
    excess: float = 0.2,
    min_common: int = 10,
    null_max: FloatArray | None = None,
    alpha: float = 0.05,
) -> Q3Flags:  # null_max: the (n_boot, 2) array of :func:`q3_null_max`
    """Flag pairs whose Q3 exceeds the mean by ``excess`` and, given a null, beyond chance.

    The effect-size rule (Q3 − mean > 0.2, Christensen et al. 2017) alone
    flags noise when few subjects are shared: the SE of a correlation is
    ≈ 1/√n (0.24 with 17 subjects) and skewed residuals make large Q3 common.
    With ``null_max`` (from :func:`q3_null_max`) a pair must also beat the
    simulated maximum: its family-wise p = (1 + #{null max ≥ Q3 − mean}) /
    (1 + B) must be ≤ ``alpha`` (single-step max-T, controls the chance of
    any false flag at ``alpha``). Redundant groups are the connected
    components of the flagged pairs.
    """
    n_items = result.q3.shape[0]
    iu, ju, q, tested = _tested_pairs(result, min_common)
    if not tested.any():
        return Q3Flags(np.nan, np.nan, np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0), [], 0)
    mean = float(q[tested].mean())
    adj = q - mean
    threshold = excess
    p_adj = np.full(q.shape, np.nan)
    flagged = tested & (adj > excess)
    null = None
    if null_max is not None:
        null = np.asarray(null_max, dtype=float).reshape(-1, 2)
        null = null[np.isfinite(null).all(axis=1)]
    if null is not None and null.size:
        # a simulated set "reaches" a pair if its max Q3 − mean is at least as large, or if
        # it also hit the Q3 = 1 cap that the pair sits on (ties at the cap are not evidence)
        cand = np.flatnonzero(flagged)
        reach = (null[None, :, 0] >= adj[cand, None] - 1e-9) | (
            (null[None, :, 1] >= 1.0 - 1e-9) & (q[cand, None] >= 1.0 - 1e-9)
        )
        p_adj[cand] = (1.0 + reach.sum(axis=1)) / (1.0 + len(null))
        flagged[cand] = p_adj[cand] <= alpha
        crit = np.sort(null[:, 0])
        k = int(np.floor(alpha * (len(crit) + 1))) - 1  # largest count of exceedances allowed
        critical = crit[len(crit) - 1 - k] if 0 <= k < len(crit) else np.inf
        threshold = max(excess, float(critical))
    order = np.flatnonzero(flagged)[np.argsort(-adj[flagged])]
    pairs = np.stack([iu[order], ju[order]], axis=1).astype(np.int64)
    clusters: list[list[int]] = []
    if order.size:
        graph = sparse.coo_matrix(
            (np.ones(order.size), (pairs[:, 0], pairs[:, 1])), shape=(n_items, n_items)
        )
        _, label = connected_components(graph, directed=False)
        sizes = np.bincount(label)
        for lab in np.flatnonzero(sizes >= 2)[np.argsort(-sizes[sizes >= 2], kind="stable")]:
            clusters.append(np.flatnonzero(label == lab).tolist())
    return Q3Flags(mean, threshold, pairs, adj[order], p_adj[order], clusters, int(tested.sum()))


@dataclass(frozen=True)
class GroupDependence:
    """Mean Q3 within vs between the groups an item label defines."""

    groups: list[str]
    within_by_group: FloatArray
    """Mean Q3 over pairs inside each group (NaN for groups with < 2 items)."""
    within: float
    between: float
    p_value: float
    """Permutation p of (within − between) under random relabelling of the items."""
    n_items: int


def group_dependence(
    q3: FloatArray,
    labels: list[str | None],
    *,
    n_perm: int = 999,
    rng: np.random.Generator,
) -> GroupDependence | None:
    """Do items that share a label (suite, item type …) correlate more in their residuals?

    Averages Q3 over many pairs, so unlike single-pair flags it has power
    with few subjects; a clear excess means the label marks a second
    dimension that one θ does not capture. Items without a label or without
    any finite Q3 are left out. Returns None when fewer than two groups have
    two items each.
    """
    keep = np.array([lab is not None for lab in labels]) & np.isfinite(q3).any(axis=1)
    idx = np.flatnonzero(keep)
    values = sorted({labels[i] for i in idx})  # type: ignore[type-var]
    code = np.array([values.index(labels[i]) for i in idx])
    counts = np.bincount(code, minlength=len(values))
    if (counts >= 2).sum() < 2:
        return None
    sub = q3[np.ix_(idx, idx)]
    finite = np.isfinite(sub)
    val = np.where(finite, sub, 0.0)
    fin = finite.astype(float)

    def stat(c: IntArray) -> tuple[float, float, FloatArray]:
        one_hot = np.eye(len(values))[c]  # (items, groups)
        s_g = np.einsum("ig,ij,jg->g", one_hot, val, one_hot)
        n_g = np.einsum("ig,ij,jg->g", one_hot, fin, one_hot)
        within_sum, within_n = s_g.sum(), n_g.sum()
        between = (val.sum() - within_sum) / max(fin.sum() - within_n, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_group = s_g / n_g
        return within_sum / max(within_n, 1.0), between, by_group

    within, between, by_group = stat(code)
    observed = within - between
    perm = np.array([np.subtract(*stat(rng.permutation(code))[:2]) for _ in range(n_perm)])
    p = (1.0 + (perm >= observed).sum()) / (1.0 + n_perm)
    return GroupDependence(values, by_group, float(within), float(between), float(p), idx.size)


# --------------------------------------------------------------------------- person fit
def person_fit_lz(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    theta: FloatArray,
    n_subjects: int,
) -> tuple[FloatArray, IntArray]:
    """Standardised log-likelihood l_z per subject (Drasgow, Levine & Williams 1985).

    l0 = Σ log P(x_i | θ̂); E[l0] = Σ_i Σ_k P_ik log P_ik;
    Var[l0] = Σ_i [Σ_k P_ik (log P_ik)² − (Σ_k P_ik log P_ik)²];
    l_z = (l0 − E) / √Var. Large negative values: a pattern less likely than
    the model allows at that θ (e.g. failing easy items while passing hard ones).

    Returns:
        ``(lz, n_items)``; lz is NaN for subjects without observations or
        with zero variance (every item's outcome certain).
    """
    p = observation_probs(theta[subject_idx], a[item_idx], b[item_idx])
    logp = np.log(np.maximum(p, _TINY))
    plogp = np.where(p > 0, p * logp, 0.0)
    e = plogp.sum(axis=1)
    v = np.where(p > 0, p * logp**2, 0.0).sum(axis=1) - e**2
    l0 = logp[np.arange(len(score)), score]
    n = np.bincount(subject_idx, minlength=n_subjects)
    big_l = _group_sums(subject_idx, l0, n_subjects)
    big_e = _group_sums(subject_idx, e, n_subjects)
    big_v = _group_sums(subject_idx, v, n_subjects)
    with np.errstate(invalid="ignore", divide="ignore"):
        lz = np.where(big_v > 1e-12, (big_l - big_e) / np.sqrt(big_v), np.nan)
    return lz, n.astype(np.int64)


# --------------------------------------------------------------------------- item–rest
def rest_abilities(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    n_subjects: int,
    *,
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
    grid: FloatArray | None = None,
) -> FloatArray:
    """EAP of each observation's subject with that observation's item left out, ``(n_obs,)``.

    The subject's grid log-likelihood minus the one item's term: O(obs × grid),
    processed in chunks so memory stays bounded.
    """
    pts = make_grid(-6.0, 6.0, 241) if grid is None else grid
    table = GradedResponseModel.from_difficulty(a, b).log_category_probs(pts[:, None])
    loglik = subject_log_likelihood(a, b, subject_idx, item_idx, score, n_subjects, pts, table)
    log_prior = normal_log_prior(pts, prior_mean, prior_sd)
    out = np.empty(len(score))
    step = max(1, _CHUNK // len(pts))
    for lo in range(0, len(score), step):
        sl = slice(lo, lo + step)
        own = table[:, item_idx[sl], score[sl]].T  # (chunk, G)
        out[sl], _ = grid_summaries(pts, loglik[subject_idx[sl]] - own + log_prior)
    return out


def item_rest_correlation(
    item_idx: IntArray,
    score: IntArray,
    theta_rest: FloatArray,
    n_items: int,
    *,
    reference: float = 0.1,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Pearson r of score with θ-without-the-item, per item, and a one-sided p-value.

    Returns:
        ``(r, p_below, n)``: r is NaN when the item has < 4 observations or
        no variance in score or θ; ``p_below`` is the Fisher-z p-value of
        H0: ρ ≥ ``reference`` (small = evidence that the item discriminates
        less than ``reference``, e.g. that it is reversed).
    """
    x = score.astype(float)
    t = theta_rest

    def s(v: FloatArray) -> FloatArray:
        return _group_sums(item_idx, v, n_items)

    n = np.bincount(item_idx, minlength=n_items).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, mt = s(x) / n, s(t) / n
        cov = s(x * t) / n - mx * mt
        vx = s(x * x) / n - mx**2
        vt = s(t * t) / n - mt**2
        r = cov / np.sqrt(vx * vt)
    r = np.where((n >= 4) & (vx > 1e-12) & (vt > 1e-12), np.clip(r, -1, 1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.arctanh(np.clip(r, -0.999999, 0.999999)) - np.arctanh(reference)
        p = stats.norm.cdf(z * np.sqrt(np.maximum(n - 3, 1)))
    return r, np.where(np.isfinite(r), p, np.nan), n.astype(np.int64)


# --------------------------------------------------------------------------- thresholds
def category_max_prob(a: FloatArray, b: FloatArray) -> FloatArray:
    """Largest probability that each *middle* category ever reaches, ``(n_items, K_max − 2)``.

    :meth:`GradedResponseModel.category_peaks`: tanh(a (b_{k+1} − b_k) / 4), NaN
    for categories an item lacks.
    """
    return GradedResponseModel.from_difficulty(a, b).category_peaks()


# --------------------------------------------------------------------------- information
def information_curve(
    theta: FloatArray, a: FloatArray, b: FloatArray, *, top_m: int | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-item, total and best-``top_m`` information at each θ.

    Returns:
        ``(item_info (G, n_items), total (G,), top (G,))`` where ``top`` sums
        the ``top_m`` largest item informations at each θ: the most that a
        test of ``top_m`` items (e.g. a CAT of that length) could reach there.
    """
    info = GradedResponseModel.from_difficulty(a, b).information(np.asarray(theta)[:, None])
    total = info.sum(axis=1)
    m = info.shape[1] if top_m is None else min(top_m, info.shape[1])
    top = -np.sort(-info, axis=1)[:, :m].sum(axis=1)
    return info, total, top


def below_target_intervals(
    theta: FloatArray, values: FloatArray, target: float
) -> list[tuple[float, float]]:
    """Maximal θ intervals where ``values < target`` (ends linearly interpolated).

    An interval touching an end of ``theta`` starts/ends at that end.
    """
    below = values < target
    if not below.any():
        return []
    edges = np.diff(below.astype(np.int8))
    starts = list(np.flatnonzero(edges == 1) + 1)
    ends = list(np.flatnonzero(edges == -1))
    if below[0]:
        starts.insert(0, 0)
    if below[-1]:
        ends.append(len(theta) - 1)

    def cross(i: int, j: int) -> float:
        v0, v1 = values[i] - target, values[j] - target
        if v0 == v1:
            return float(theta[i])
        return float(theta[i] + (theta[j] - theta[i]) * v0 / (v0 - v1))

    out = []
    for s, e in zip(starts, ends, strict=True):
        lo = float(theta[0]) if s == 0 else cross(s - 1, s)
        hi = float(theta[-1]) if e == len(theta) - 1 else cross(e, e + 1)
        out.append((lo, hi))
    return out
