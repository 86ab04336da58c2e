"""Graded response model: probabilities, information, 2PL reduction, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from orchestrator.irt import (
    category_probs,
    expected_score,
    from_slope_intercept,
    item_information,
    log_category_probs,
    pad_thresholds,
    sample_responses,
    to_slope_intercept,
)

A = np.array([0.4, 1.0, 2.5, 8.0, 1.3])
B, K = pad_thresholds([[-1.0, 0.0, 1.5], [0.3], [-2.0, 2.0], [0.0, 0.1, 0.2], [1.0]])
THETA = np.linspace(-6, 6, 49)


def test_probabilities_sum_to_one_and_are_nonnegative() -> None:
    p = category_probs(THETA, A, B)
    assert p.shape == (49, 5, 4)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)


def test_missing_categories_have_zero_probability_and_information() -> None:
    p = category_probs(THETA, A, B)
    for i, k in enumerate(K):
        assert (p[:, i, k:] == 0).all()
    # an item's information does not change when the bank's padding widens
    wide = np.hstack([B, np.full((5, 2), np.inf)])
    np.testing.assert_allclose(item_information(THETA, A, wide), item_information(THETA, A, B))


def test_tiny_probabilities_survive_far_from_theta() -> None:
    # at theta = 6 the lowest category of a steep item is ~e^-48, not rounded to 0
    p = category_probs(np.array(6.0), np.array([8.0]), np.array([[0.0, 0.1, 0.2]]))
    assert 0 < p[0, 0] < 1e-15
    np.testing.assert_allclose(p[0, 0], expit(-8.0 * 6.0), rtol=1e-9)  # 1 - σ(48) underflows


def test_two_categories_reduce_to_2pl() -> None:
    a, b = np.array([1.7]), np.array([[0.4]])
    p = category_probs(THETA, a, b)[:, 0]
    p2pl = expit(1.7 * (THETA - 0.4))
    np.testing.assert_allclose(p[:, 1], p2pl, rtol=1e-12)
    np.testing.assert_allclose(item_information(THETA, a, b)[:, 0], 1.7**2 * p2pl * (1 - p2pl))


@pytest.mark.parametrize("theta", [-3.0, -0.7, 0.0, 0.45, 2.2])
def test_information_is_expected_negative_second_derivative(theta: float) -> None:
    """I(θ) = −E[∂² log P(X|θ) / ∂θ²], by central differences."""
    h = 1e-4
    lp = [log_category_probs(np.array(t), A, B) for t in (theta - h, theta, theta + h)]
    d2 = (lp[2] - 2 * lp[1] + lp[0]) / h**2
    p = category_probs(np.array(theta), A, B)
    numeric = -(p * np.where(p > 0, d2, 0.0)).sum(axis=-1)
    np.testing.assert_allclose(
        item_information(np.array(theta), A, B), numeric, rtol=2e-5, atol=1e-7
    )


def test_expected_score_and_slope_intercept_round_trip() -> None:
    p = category_probs(THETA, A, B)
    np.testing.assert_allclose(expected_score(THETA, A, B), (p * np.arange(4)).sum(-1), atol=1e-12)
    d = to_slope_intercept(A, B)
    np.testing.assert_allclose(from_slope_intercept(A, d), B)


def test_sampling_matches_model_frequencies() -> None:
    rng = np.random.default_rng(7)
    theta = np.full(40_000, 0.5)
    x = sample_responses(theta, A, B, rng)
    p = category_probs(np.array(0.5), A, B)
    for i, k in enumerate(K):
        freq = np.bincount(x[:, i], minlength=4) / len(theta)
        np.testing.assert_allclose(freq, p[i], atol=0.01)
        assert x[:, i].max() < k
