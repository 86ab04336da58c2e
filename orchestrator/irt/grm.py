"""The unidimensional GRM in difficulty form, as functions over (θ, a, b) arrays.

For an item with slope ``a`` and ordered thresholds ``b_1 < … < b_{K−1}``:

    P*(X ≥ k | θ) = σ(a(θ − b_k)),  P*_0 = 1,  P*_K = 0
    P(X = k | θ)  = P*_k − P*_{k+1}

K = 2 is the two-parameter logistic model. There is no 1.702 constant.
Thresholds are padded to the bank's largest K − 1 with ``+inf``
(:func:`pad_thresholds`), which makes P*_k = 0 for categories an item does
not have.

These are conveniences at the edge, for scalar θ of any shape: each builds a
:class:`~orchestrator.irt.model.GradedResponseModel` and asks it, so there is
one implementation of the arithmetic. Code that evaluates the same items
repeatedly should keep the model object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.irt.model import GradedResponseModel

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


def _points(theta: ArrayLike) -> FloatArray:
    return np.asarray(theta, dtype=float)[..., None]


def cumulative_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """P*(X ≥ k | θ) for k = 1..K_max−1, shape ``θ.shape + (n_items, K_max − 1)``."""
    return GradedResponseModel.from_difficulty(a, b).cumulative_probs(_points(theta))


def category_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """P(X = k | θ) for k = 0..K_max−1, shape ``θ.shape + (n_items, K_max)``."""
    return GradedResponseModel.from_difficulty(a, b).category_probs(_points(theta))


def log_category_probs(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """log P(X = k | θ), floored at log(1e-300) so impossible categories stay finite."""
    return GradedResponseModel.from_difficulty(a, b).log_category_probs(_points(theta))


def item_information(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Fisher information of each item at θ, shape ``θ.shape + (n_items,)``.

    Σ_k P'_k(θ)² / P_k(θ) with P'_k = a [P*_k(1 − P*_k) − P*_{k+1}(1 − P*_{k+1})];
    for K = 2 the 2PL's a² P (1 − P).
    """
    return GradedResponseModel.from_difficulty(a, b).information(_points(theta))


def expected_score(theta: ArrayLike, a: ArrayLike, b: ArrayLike) -> FloatArray:
    """E[X | θ] = Σ_k P*_k, shape ``θ.shape + (n_items,)``."""
    return GradedResponseModel.from_difficulty(a, b).expected_score(_points(theta))


def sample_responses(
    theta: ArrayLike, a: ArrayLike, b: ArrayLike, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Draw categories for every (subject, item): ``(n_subjects, n_items)`` integers."""
    points = np.asarray(theta, dtype=float).reshape(-1, 1)
    return GradedResponseModel.from_difficulty(a, b).sample(points, rng)


def to_slope_intercept(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Difficulty form → mirt's intercepts d_k = −a·b_k (padding stays ±inf)."""
    return -np.asarray(a, dtype=float)[:, None] * np.asarray(b, dtype=float)


def from_slope_intercept(a: ArrayLike, d: ArrayLike) -> FloatArray:
    """mirt's intercepts → thresholds b_k = −d_k / a."""
    return -np.asarray(d, dtype=float) / np.asarray(a, dtype=float)[:, None]
