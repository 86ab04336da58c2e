"""Ability estimates for many subjects at once from sparse responses (no model calls).

Each subject's log-likelihood on the θ grid is a sum over its observations of
log P(score | θ, item): the rows of the (item-categories × grid) table of log
probabilities that its observations name, added up. Items and observations
are taken in blocks, so memory grows with the blocks and subjects × grid
points, never with subjects × items or the whole bank's table.

For one dimension the grid is dense and shared (default 601 points on
[−6, 6], spacing 0.02) because offline data can hold hundreds of responses per
subject, with posterior SDs far below the live CAT grid's 0.15 spacing. A
dense shared grid over D > 1 dimensions is unaffordable (601² points), so
there each subject gets the CAT's own adaptive grid posterior
(:meth:`~orchestrator.irt.posterior.GridPosterior.observe_all`: the product grid,
narrowed around each subject's mass until its spacing is below the SDs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.irt.model import GradedResponseModel
from orchestrator.irt.posterior import (
    GridPosterior,
    GridSpec,
    grid_summaries,
    make_grid,
    normal_log_prior,
)

__all__ = ["AbilityEstimates", "estimate_abilities", "estimate_theta", "subject_log_likelihood"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class AbilityEstimates:
    """θ and SE per subject; ``n_items`` counts each subject's observations.

    From :func:`estimate_abilities` ``theta`` and ``se`` are ``(S,)``; from
    :func:`estimate_theta` they are ``(S, D)`` and ``cov`` is the posterior
    covariance ``(S, D, D)`` (None for MAP).
    """

    theta: FloatArray
    se: FloatArray
    n_items: IntArray
    method: str
    cov: FloatArray | None = None


_BLOCK = 1 << 22
"""Numbers per temporary block (items × categories × grid points, or observations × grid)."""


def subject_log_likelihood(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    n_subjects: int,
    grid: FloatArray,
    log_probs: FloatArray | None = None,
    model: GradedResponseModel | None = None,
    lapse: float = 0.0,
) -> FloatArray:
    """Log-likelihood of each subject's responses at each grid point, ``(n_subjects, n_grid)``.

    ``log_probs``: the model's ``log_category_probs`` on ``grid``, ``(grid, items, K)``,
    when the caller has it already (with the same ``lapse``); ``model``: the model of
    ``a`` and ``b`` when the caller holds it (its blocks of the table are computed from
    it). ``lapse``: the robust likelihood's lapse rate (0 = the plain GRM).

    Works in blocks of items (the table of one block at a time) and, within a
    block, in chunks of observations sorted by subject (their table rows
    gathered and summed per subject), so memory is bounded by the blocks and
    the result, whatever the bank's size.
    """
    n_items, k_max, n_grid = len(a), b.shape[1] + 1, len(grid)
    out = np.zeros((n_subjects, n_grid))
    if len(score) == 0:
        return out
    if model is None and log_probs is None:
        model = GradedResponseModel.from_difficulty(a, b)
    subject_idx, item_idx = np.asarray(subject_idx), np.asarray(item_idx)
    per_block = max(1, _BLOCK // (n_grid * (k_max + 1)))
    block = item_idx // per_block
    order = np.lexsort((subject_idx, block))  # by item block, then by subject
    edges = np.searchsorted(block[order], np.arange(0, n_items // per_block + 2))
    chunk = max(1, _BLOCK // n_grid)
    for blk in range(len(edges) - 1):
        obs = order[edges[blk] : edges[blk + 1]]
        if obs.size == 0:
            continue
        lo, hi = blk * per_block, min(n_items, (blk + 1) * per_block)
        if log_probs is None:
            assert model is not None
            block_logp = model.log_category_probs(grid[:, None], np.arange(lo, hi), lapse=lapse)
        else:
            block_logp = log_probs[:, lo:hi]
        table = np.moveaxis(block_logp, 0, -1).reshape((hi - lo) * k_max, n_grid)
        cols = (item_idx[obs] - lo) * k_max + np.asarray(score)[obs]
        subjects = subject_idx[obs]
        for c in range(0, obs.size, chunk):  # a subject's rows are adjacent: sum them
            sub, col = subjects[c : c + chunk], cols[c : c + chunk]
            starts = np.flatnonzero(np.r_[True, sub[1:] != sub[:-1]])
            out[sub[starts]] += np.add.reduceat(table[col], starts, axis=0)
    return out


def estimate_abilities(
    a: FloatArray,
    b: FloatArray,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    n_subjects: int,
    *,
    method: Literal["eap", "map"] = "eap",
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
    grid: FloatArray | None = None,
    model: GradedResponseModel | None = None,
    lapse: float = 0.0,
) -> AbilityEstimates:
    """EAP (with posterior SD) or MAP (with SE from the posterior's curvature) per subject.

    Args:
        a, b: Item slopes ``(n_items,)`` and thresholds ``(n_items, K_max − 1)`` padded with +inf.
        subject_idx, item_idx, score: One entry per observation; indices into
            ``range(n_subjects)`` and into ``a``.
        n_subjects: Number of subjects (rows of the result); subjects without
            observations get the prior's mean and SD.
        method: ``"eap"`` (default) or ``"map"``.
        prior_mean, prior_sd: Normal prior on θ.
        grid: Quadrature points; default 601 points on [−6, 6].
        model: The model of ``a`` and ``b`` when the caller holds it already.
        lapse: Lapse rate of the robust likelihood (0 = the plain GRM).
    """
    if method not in ("eap", "map"):
        raise ValueError(f"method must be 'eap' or 'map'; got {method!r}")
    pts = make_grid(-6.0, 6.0, 601) if grid is None else np.asarray(grid, dtype=float)
    loglik = subject_log_likelihood(
        a, b, subject_idx, item_idx, score, n_subjects, pts, model=model, lapse=lapse
    )
    log_post = loglik + normal_log_prior(pts, prior_mean, prior_sd)
    n_items = np.bincount(subject_idx, minlength=n_subjects).astype(np.int64)
    if method == "eap":
        theta, se = grid_summaries(pts, log_post)
        return AbilityEstimates(theta, se, n_items, method)
    theta, se = _map_from_grid(pts, log_post)
    return AbilityEstimates(theta, se, n_items, method)


def estimate_theta(
    model: GradedResponseModel,
    subject_idx: IntArray,
    item_idx: IntArray,
    score: IntArray,
    n_subjects: int,
    *,
    method: Literal["eap", "map"] = "eap",
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = 1.0,
    prior_correlation: ArrayLike | None = None,
    grid: GridSpec | None = None,
    lapse: float = 0.0,
) -> AbilityEstimates:
    """θ vectors ``(S, D)`` with SEs and posterior covariances for a model of any D.

    D = 1 is :func:`estimate_abilities` on its dense shared grid (the same
    numbers), with the trailing axis added; D > 1 is the adaptive grid
    posterior per subject (EAP only).

    Args:
        model: The items (``item_idx`` indexes them).
        subject_idx, item_idx, score: One entry per observation.
        n_subjects: Number of subjects; those without observations get the prior.
        method: ``"eap"``; ``"map"`` for one dimension only.
        prior_mean, prior_sd: The normal prior per dimension (numbers or ``(D,)``).
        prior_correlation: Its latent correlation ``(D, D)`` (None: identity).
        grid: Per-axis starting grid for D > 1 (default: the CAT's).
        lapse: Lapse rate of the robust likelihood (0 = the plain GRM).

    Raises:
        ValueError: ``method="map"`` for D > 1, or a bad prior.
    """
    d = model.n_dims
    if d == 1:
        intercepts = model.intercepts
        a = model.slopes[:, 0]
        with np.errstate(invalid="ignore"):
            b = np.where(np.isfinite(intercepts), -intercepts / a[:, None], np.inf)
        est = estimate_abilities(
            a,
            b,
            subject_idx,
            item_idx,
            score,
            n_subjects,
            method=method,
            prior_mean=float(np.asarray(prior_mean).reshape(-1)[0]),
            prior_sd=float(np.asarray(prior_sd).reshape(-1)[0]),
            model=model,
            lapse=lapse,
        )
        cov = None if method == "map" else (est.se**2)[:, None, None]
        return AbilityEstimates(est.theta[:, None], est.se[:, None], est.n_items, method, cov)
    if method != "eap":
        raise ValueError(f"the {method.upper()} estimate is for one dimension; θ has {d} (use eap)")
    n_items = np.bincount(subject_idx, minlength=n_subjects).astype(np.int64)
    order = np.argsort(subject_idx, kind="stable")
    s_sorted = np.asarray(subject_idx)[order]
    starts = np.concatenate([[0], np.cumsum(n_items)[:-1]])
    position = np.arange(len(order)) - starts[s_sorted]
    width = int(n_items.max(initial=0))
    items = np.full((n_subjects, max(1, width)), -1, dtype=np.int64)
    scores = np.full_like(items, -1)
    items[s_sorted, position] = np.asarray(item_idx)[order]
    scores[s_sorted, position] = np.asarray(score)[order]
    post = GridPosterior(
        model,
        n_subjects,
        prior_mean=prior_mean,
        prior_sd=prior_sd,
        prior_correlation=prior_correlation,
        grid=grid,
        lapse=lapse,
    )
    post.observe_all(items, scores)
    return AbilityEstimates(post.eap, post.sd, n_items, method, post.cov)


def _map_from_grid(pts: FloatArray, log_post: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mode by a parabola through the grid maximum and its neighbours; SE = curvature^(−1/2)."""
    n = len(pts)
    h = pts[1] - pts[0]
    i = np.clip(np.argmax(log_post, axis=1), 1, n - 2)
    rows = np.arange(log_post.shape[0])
    lm, l0, lp = log_post[rows, i - 1], log_post[rows, i], log_post[rows, i + 1]
    curv = (lp - 2 * l0 + lm) / h**2  # second derivative (negative at a maximum)
    slope = (lp - lm) / (2 * h)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(curv < 0, -slope / curv, 0.0)
        se = np.where(curv < 0, 1.0 / np.sqrt(-curv), np.nan)
    theta = pts[i] + np.clip(step, -h, h)
    return theta, se
