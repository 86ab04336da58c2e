"""Graded response model (Samejima), vectorised over θ × items.

Categories are 0..K-1, higher = safer/better. For an item with slope ``a``
and ordered thresholds ``b_1 < … < b_{K-1}``:

    P*(X ≥ k | θ) = σ(a(θ − b_k)),  P*_0 = 1,  P*_K = 0
    P(X = k | θ)  = P*_k − P*_{k+1}

K = 2 is the two-parameter logistic model. There is no 1.702 constant.

Items with different K live in one array: thresholds are padded to the
bank's largest K − 1 with ``+inf``, which makes P*_k = 0 for categories the
item does not have, so their probability and information are exactly 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

__all__ = [
    "category_probs",
    "cumulative_probs",
    "expected_score",
    "from_slope_intercept",
    "item_information",
    "log_category_probs",
    "pad_thresholds",
    "sample_responses",
    "to_slope_intercept",
]

FloatArray = NDArray[np.float64]
_TINY = 1e-300


def pad_thresholds(thresholds: Sequence[Sequence[float]]) -> tuple[FloatArray, NDArray[np.int64]]:
    """Stack ragged threshold lists into an ``(n_items, K_max − 1)`` array.

    Returns:
        ``(b, n_categories)`` with missing thresholds set to ``+inf``.
    """
    n_categories = np.array([len(t) + 1 for t in thresholds], dtype=np.int64)
    width = int(n_categories.max(initial=2)) - 1
    b = np.full((len(thresholds), width), np.inf)
    for i, t in enumerate(thresholds):  # I/O edge, once per bank load
        b[i, : len(t)] = t
    return b, n_categories


def _logits(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """a(θ − b_k) with shape ``θ.shape + (n_items, K_max − 1)``."""
    th = np.asarray(theta, dtype=float)[..., None, None]
    return np.asarray(a, dtype=float)[:, None] * (th - np.asarray(b, dtype=float))


def cumulative_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """P*(X ≥ k | θ) for k = 1..K_max−1, shape ``θ.shape + (n_items, K_max − 1)``."""
    return expit(_logits(theta, a, b))


def category_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """P(X = k | θ) for k = 0..K_max−1, shape ``θ.shape + (n_items, K_max)``.

    Differences of adjacent cumulative probabilities are taken on whichever
    side of 1/2 keeps precision (P* or 1 − P*), so tiny category
    probabilities far from θ are not lost to cancellation.
    """
    z = _logits(theta, a, b)
    upper = expit(z)  # P*_k
    lower = expit(-z)  # 1 - P*_k
    shape = (*z.shape[:-1], z.shape[-1] + 2)
    p_star = np.empty(shape)
    q_star = np.empty(shape)
    p_star[..., 0], q_star[..., 0] = 1.0, 0.0
    p_star[..., -1], q_star[..., -1] = 0.0, 1.0
    p_star[..., 1:-1], q_star[..., 1:-1] = upper, lower
    from_p = p_star[..., :-1] - p_star[..., 1:]
    from_q = q_star[..., 1:] - q_star[..., :-1]
    probs = np.where(p_star[..., 1:] > 0.5, from_q, from_p)
    return np.maximum(probs, 0.0)


def log_category_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """log P(X = k | θ), floored at log(1e-300) so impossible categories stay finite."""
    return np.log(np.maximum(category_probs(theta, a, b), _TINY))


def item_information(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Fisher information of each item at θ, shape ``θ.shape + (n_items,)``.

    Closed form I(θ) = Σ_k P'_k(θ)² / P_k(θ) with
    P'_k = a [P*_k(1 − P*_k) − P*_{k+1}(1 − P*_{k+1})]. For K = 2 this is
    the 2PL's a² P (1 − P).
    """
    z = _logits(theta, a, b)
    upper = expit(z)
    w = upper * expit(-z)  # P*(1 - P*), zero for padded thresholds
    pad = [(0, 0)] * (w.ndim - 1) + [(1, 1)]
    w_full = np.pad(w, pad)  # P*_0 = 1 and P*_K = 0 both have w = 0
    dprob = w_full[..., :-1] - w_full[..., 1:]
    probs = category_probs(theta, a, b)
    ratio = np.divide(dprob**2, probs, out=np.zeros_like(probs), where=probs > _TINY)
    return np.asarray(a, dtype=float) ** 2 * ratio.sum(axis=-1)


def expected_score(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """E[X | θ] = Σ_k P*_k, shape ``θ.shape + (n_items,)``."""
    return cumulative_probs(theta, a, b).sum(axis=-1)


def sample_responses(
    theta: ArrayLike, a: ArrayLike, b: ArrayLike, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Draw categories for every (subject, item): ``(n_subjects, n_items)`` integers.

    Inverse-CDF sampling: with u ~ U(0, 1), X = #{k : u < P*_k}, since
    P*_k = P(X ≥ k) decreases in k.
    """
    p_star = cumulative_probs(np.asarray(theta, dtype=float).reshape(-1), a, b)
    u = rng.random(p_star.shape[:2])
    return (u[..., None] < p_star).sum(axis=-1).astype(np.int64)


def to_slope_intercept(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Difficulty form → mirt's intercepts d_k = −a·b_k (padding stays ±inf)."""
    return -np.asarray(a, dtype=float)[:, None] * np.asarray(b, dtype=float)


def from_slope_intercept(a: ArrayLike, d: ArrayLike) -> FloatArray:
    """mirt's intercepts → thresholds b_k = −d_k / a."""
    return -np.asarray(d, dtype=float) / np.asarray(a, dtype=float)[:, None]
