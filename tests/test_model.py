"""The response model object: definitions, table vs paired forms, D > 1, the torch twin."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.irt import GradedResponseModel, pad_thresholds


def _random_items(seed: int, n: int = 12, k: tuple[int, ...] = (2, 3, 4)):
    """Slopes, padded thresholds and K for ``n`` items of mixed K."""
    rng = np.random.default_rng(seed)
    a = np.exp(rng.normal(0.2, 0.4, n))
    ks = rng.choice(k, n)
    rows = [np.cumsum(rng.uniform(0.2, 1.5, kk - 1)) + rng.normal(-1.0, 0.7) for kk in ks]
    b, n_cat = pad_thresholds(rows)
    return a, b, n_cat


def _score_outer_product(model: GradedResponseModel, theta: np.ndarray, h: float = 1e-5):
    """Σ_k P_k ∇log P_k ∇log P_kᵀ at one point (central differences): the definition of I(θ)."""
    d = model.n_dims
    probs = model.category_probs(theta[None])[0]  # (N, K)
    grads = np.empty((*probs.shape, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        up = model.log_category_probs((theta + e)[None])[0]
        down = model.log_category_probs((theta - e)[None])[0]
        grads[..., j] = (up - down) / (2 * h)
    live = probs > 1e-12  # categories an item lacks carry no information
    weighted = np.where(live[..., None, None], probs[..., None, None], 0.0)
    return (weighted * grads[..., :, None] * grads[..., None, :]).sum(axis=1)  # (N, D, D)


@pytest.mark.parametrize("seed", [0, 1])
def test_information_is_the_expected_outer_product_of_the_score(seed: int) -> None:
    a, b, _ = _random_items(seed)
    model = GradedResponseModel.from_difficulty(a, b)
    for t in (-2.5, -0.3, 0.0, 1.7):
        theta = np.array([t])
        ref = _score_outer_product(model, theta)[:, 0, 0]
        np.testing.assert_allclose(model.information(theta[None])[0], ref, rtol=1e-6, atol=1e-9)


def test_categories_sum_to_one_and_missing_ones_are_exactly_zero() -> None:
    a, b, n_cat = _random_items(2, n=30)
    model = GradedResponseModel.from_difficulty(a, b)
    theta = np.linspace(-8, 8, 161)[:, None]
    p = model.category_probs(theta)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-15)
    missing = np.arange(model.k_max)[None, :] >= n_cat[:, None]
    assert np.all(p[:, missing] == 0.0)
    assert np.array_equal(model.n_categories, n_cat)
    # 2PL: information is a² P (1 − P)
    two = n_cat == 2
    p1 = p[:, two, 1]
    np.testing.assert_allclose(model.information(theta)[:, two], a[two] ** 2 * p1 * (1 - p1))


def test_paired_forms_give_the_bits_of_the_table_forms() -> None:
    a, b, _ = _random_items(3, n=20)
    model = GradedResponseModel.from_difficulty(a, b)
    rng = np.random.default_rng(4)
    theta = rng.normal(0, 2, (7, 1))
    items = rng.integers(0, 20, 7)
    scores = np.minimum(rng.integers(0, 4, 7), model.n_categories[items] - 1)
    rows = np.arange(7)
    table_lp = model.log_category_probs(theta)  # (7, N, K)
    np.testing.assert_array_equal(
        model.log_prob_at(theta, items, scores), table_lp[rows, items, scores]
    )
    np.testing.assert_array_equal(
        model.category_probs_at(theta, items), model.category_probs(theta)[rows, items]
    )
    np.testing.assert_array_equal(
        model.information_at(theta, items), model.information(theta)[rows, items]
    )
    np.testing.assert_array_equal(
        model.information(theta, items[:3]), model.information(theta)[:, items[:3]]
    )


@pytest.mark.parametrize("lapse", [0.0, 0.1])
def test_one_response_on_a_grid_gives_the_bits_of_the_general_form(lapse: float) -> None:
    """A live update's case (one item, one score, many points) takes scalar parameters
    and skips the σ of infinite bounds; every category gives the general path's bits."""
    a, b, _ = _random_items(5, n=20)
    model = GradedResponseModel.from_difficulty(a, b)
    points = np.linspace(-9.0, 9.0, 81)[:, None]  # far tails: probabilities near 0 and 1
    for item in range(20):
        for x in range(int(model.n_categories[item])):
            one = model.log_prob_at(points, item, x, lapse)
            # two responses at once take the general path; the first is this one
            both = model.log_prob_at(points[:, None, :], [item, 0], [x, 0], lapse)
            assert one.shape == (81,)
            np.testing.assert_array_equal(one, both[:, 0])


def test_two_dimensions_compensatory_grm() -> None:
    rng = np.random.default_rng(5)
    n = 9
    slopes = np.abs(rng.normal(1.0, 0.4, (n, 2)))
    d = -np.sort(rng.normal(0, 1, (n, 3)), axis=1)  # decreasing intercepts, K = 4
    model = GradedResponseModel(slopes, d)
    assert model.n_dims == 2 and model.k_max == 4
    theta = np.array([0.4, -1.1])
    # P(X ≥ k | θ) = σ(aᵀθ + d_k)
    expected = 1 / (1 + np.exp(-(slopes @ theta)[:, None] - d))
    np.testing.assert_allclose(model.cumulative_probs(theta[None])[0], expected, rtol=1e-14)
    # information is a D × D matrix per item: c(θ) a aᵀ, the expected score outer product
    info = model.information(theta[None])[0]
    assert info.shape == (n, 2, 2)
    np.testing.assert_allclose(info, _score_outer_product(model, theta), rtol=1e-6, atol=1e-9)
    # a second dimension with zero slopes changes nothing about the first
    flat = GradedResponseModel(np.stack([slopes[:, 0], np.zeros(n)], axis=1), d)
    one = GradedResponseModel(slopes[:, :1], d)
    pts = np.stack([np.linspace(-3, 3, 13), np.full(13, 2.5)], axis=1)
    np.testing.assert_array_equal(flat.category_probs(pts), one.category_probs(pts[:, :1]))
    np.testing.assert_array_equal(flat.information(pts)[..., 0, 0], one.information(pts[:, :1]))


def test_theta_points_must_carry_the_dimension_axis() -> None:
    model = GradedResponseModel.from_difficulty([1.0, 2.0], [[0.0], [1.0]])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 1\)"):
        model.category_probs(np.zeros(3))  # (3,) is three points only if written (3, 1)
    with pytest.raises(ValueError, match=r"slopes must be \(N, D\)"):
        GradedResponseModel(np.ones(2), np.zeros((2, 1)))


def test_torch_calibration_model_agrees_to_machine_precision() -> None:
    """The calibration's autograd-friendly GRM computes what the model object computes."""
    torch = pytest.importorskip("torch")
    from orchestrator.irt.calibrate import torch_grm

    a, b, n_cat = _random_items(6, n=40)
    model = GradedResponseModel.from_difficulty(a, b)
    theta = np.linspace(-5, 5, 41)
    # ψ = (log a, b_1, u_2..): b_k = b_{k−1} + softplus(u_k)
    gaps = np.where(np.isfinite(b[:, 1:]), np.diff(np.where(np.isfinite(b), b, 0.0), axis=1), 1.0)
    psi = np.concatenate([np.log(a)[:, None], b[:, :1], np.log(np.expm1(gaps))], axis=1)
    thr_mask = torch.from_numpy(np.isfinite(b).astype(float))
    psi_t, theta_t = torch.from_numpy(psi), torch.from_numpy(theta)
    valid = np.arange(model.k_max)[None, :] < n_cat[:, None]  # (N, K)

    lp_torch = torch_grm.log_probs(psi_t, theta_t, thr_mask).numpy()  # (N, K, Q)
    lp_model = np.moveaxis(model.log_category_probs(theta[:, None]), 0, -1)  # (N, K, Q)
    np.testing.assert_allclose(lp_torch[valid], lp_model[valid], rtol=0, atol=1e-12)

    k_t = torch.from_numpy(n_cat)
    info_torch = torch_grm.item_information(psi_t, theta_t, thr_mask, k_t).numpy()  # (N, Q)
    info_model = model.information(theta[:, None]).T
    np.testing.assert_allclose(info_torch, info_model, rtol=1e-12, atol=1e-15)
