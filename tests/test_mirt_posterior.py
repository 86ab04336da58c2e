"""θ as a vector in the posterior and the estimates: D = 2 against brute force, D = 1 unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.irt import GradedResponseModel, GridPosterior, Posterior, pad_thresholds
from orchestrator.irt.ability import estimate_abilities, estimate_theta
from orchestrator.irt.posterior import GridSpec, default_grid

CORR = np.array([[1.0, 0.5], [0.5, 1.0]])
MEAN, SD = np.array([0.3, -0.2]), np.array([1.0, 1.3])


def _model(n: int, seed: int, scale: float = 1.0) -> GradedResponseModel:
    """Compensatory 2-D GRM: slopes on both axes, K in {2, 3, 4}."""
    rng = np.random.default_rng(seed)
    slopes = np.abs(rng.normal(0.0, 1.0, (n, 2))) * scale + 0.1
    b, _ = pad_thresholds([sorted(rng.normal(0, 1, rng.integers(1, 4))) for _ in range(n)])
    norm = np.linalg.norm(slopes, axis=1)
    return GradedResponseModel(slopes, -(norm[:, None] * b))


def _brute_force(model, items, scores, lo, hi, n=601):
    """EAP and covariance on a fine n × n grid over [lo, hi]² (per axis)."""
    ax = [np.linspace(lo[d], hi[d], n) for d in range(2)]
    pts = np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 2)
    z = (pts - MEAN) / SD
    logp = -0.5 * np.einsum("gd,de,ge->g", z, np.linalg.inv(CORR), z)
    for j, x in zip(items, scores, strict=True):
        logp += model.log_prob_at(pts, np.int64(j), np.int64(x))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = w @ pts
    c = pts - mean
    return mean, (w[:, None] * c).T @ c


def _posterior(model, **kw) -> Posterior:
    return Posterior(model, prior_mean=MEAN, prior_sd=SD, prior_correlation=CORR, **kw)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_dimensional_eap_and_covariance_match_brute_force(seed: int) -> None:
    model = _model(15, seed)
    rng = np.random.default_rng(seed)
    scores = [int(rng.integers(0, k)) for k in model.n_categories]
    post = _posterior(model)
    for j, x in enumerate(scores):
        post.update(j, x)
    mean, cov = _brute_force(model, range(15), scores, [-6, -6], [6, 6])
    np.testing.assert_allclose(post.eap, mean, atol=1e-6)
    np.testing.assert_allclose(post.cov, cov, atol=1e-6)
    np.testing.assert_allclose(post.sd, np.sqrt(np.diag(cov)), atol=1e-6)
    assert abs(post.cov[0, 1]) > 0.01  # the correlated prior and cross-loadings couple the axes


def test_long_two_dimensional_test_regrids_each_axis_and_keeps_se_honest() -> None:
    model = _model(150, 3, scale=2.0)  # steep items: the SDs fall far below the 0.3 spacing
    truth = np.array([[0.8, -0.4]])
    scores = model.sample(truth, np.random.default_rng(4))[0]
    post = _posterior(model)
    for j, x in enumerate(scores):
        post.update(j, int(x))
    spacing = [post.points[41, 0] - post.points[0, 0], post.points[1, 1] - post.points[0, 1]]
    assert post.sd.max() < 0.15 and max(spacing) < post.sd.min()  # narrowed on both axes
    lo, hi = post.eap - 8 * post.sd, post.eap + 8 * post.sd
    mean, cov = _brute_force(model, range(150), scores, lo, hi)
    np.testing.assert_allclose(post.eap, mean, atol=1e-6)
    np.testing.assert_allclose(post.cov, cov, atol=1e-7)


def test_without_responses_the_posterior_is_the_correlated_prior() -> None:
    post = _posterior(_model(3, 0))
    # up to the grid's box, whose nearest edge is (6 − 0.2) / 1.3 = 4.5 SDs away
    np.testing.assert_allclose(post.eap, MEAN, atol=2e-5)
    np.testing.assert_allclose(post.cov, CORR * np.outer(SD, SD), atol=1e-3)


def test_one_subject_is_bitwise_a_row_of_many_in_two_dimensions() -> None:
    model = _model(40, 5)
    rng = np.random.default_rng(6)
    order = np.array([rng.permutation(40)[:30] for _ in range(4)])
    x = rng.integers(0, 2, (4, 30))
    many = GridPosterior(model, 4, prior_mean=MEAN, prior_sd=SD, prior_correlation=CORR)
    ones = [_posterior(model) for _ in range(4)]
    for t in range(30):
        rows = np.arange(4)[t < np.array([30, 12, 30, 25])]
        many.update(rows, order[rows, t], x[rows, t])
        for s in rows:
            ones[s].update(int(order[s, t]), int(x[s, t]))
    for s, one in enumerate(ones):
        np.testing.assert_array_equal(one.eap, many.eap[s])
        np.testing.assert_array_equal(one.cov, many.cov[s])
        np.testing.assert_array_equal(one.points, many.points[s])


def test_grids_per_dimension_and_defaults() -> None:
    assert [default_grid(d).n for d in (1, 2, 3)] == [81, 41, 21]
    post = GridPosterior(_model(3, 0), 2, grid=[GridSpec(-4, 4, 9), GridSpec(-5, 5, 11)])
    assert post.points.shape == (2, 99, 2)
    assert np.array_equal(np.unique(post.points[0, :, 1]), np.linspace(-5, 5, 11))
    with pytest.raises(ValueError, match="give one GridSpec or 2"):
        GridPosterior(_model(3, 0), 1, grid=[GridSpec()] * 3)
    with pytest.raises(ValueError, match="positive definite"):
        GridPosterior(_model(3, 0), 1, prior_correlation=[[1, 1.2], [1.2, 1]])
    with pytest.raises(ValueError, match="prior_mean must be a number, one per dimension"):
        GridPosterior(_model(3, 0), 4, prior_mean=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="MAP is computed for one dimension"):
        _posterior(_model(3, 0)).map()


def test_estimate_theta_is_estimate_abilities_for_one_dimension() -> None:
    rng = np.random.default_rng(11)
    a = np.exp(rng.normal(0, 0.3, 30))
    b, _ = pad_thresholds([sorted(rng.normal(0, 1, 3)) for _ in range(30)])
    s = np.repeat(np.arange(20), 10)
    i = np.concatenate([rng.choice(30, 10, replace=False) for _ in range(20)])
    x = rng.integers(0, 4, len(s))
    old = estimate_abilities(a, b, s, i, x, 21, prior_mean=0.1, prior_sd=1.2)
    new = estimate_theta(
        GradedResponseModel.from_difficulty(a, b), s, i, x, 21, prior_mean=0.1, prior_sd=1.2
    )
    np.testing.assert_array_equal(new.theta[:, 0], old.theta)
    np.testing.assert_array_equal(new.se[:, 0], old.se)
    np.testing.assert_array_equal(new.cov[:, 0, 0], old.se**2)


def test_estimate_theta_in_two_dimensions_matches_sequential_posteriors() -> None:
    """The bulk estimate (all responses at once, regridded until settled) = brute force."""
    model = _model(60, 8)
    rng = np.random.default_rng(9)
    truth = rng.multivariate_normal(MEAN, CORR * np.outer(SD, SD), 6)
    x = model.sample(truth, rng)
    seen = rng.random(x.shape) < 0.7
    s, i = np.nonzero(seen)
    est = estimate_theta(
        model, s, i, x[s, i], 7, prior_mean=MEAN, prior_sd=SD, prior_correlation=CORR
    )
    for k in range(6):
        items = np.flatnonzero(seen[k])
        mean, cov = _brute_force(model, items, x[k, items], [-6, -6], [6, 6])
        np.testing.assert_allclose(est.theta[k], mean, atol=1e-6)
        np.testing.assert_allclose(est.cov[k], cov, atol=1e-6)
    np.testing.assert_allclose(est.theta[6], MEAN, atol=1e-4)  # no responses: the prior
    assert est.n_items[6] == 0
    with pytest.raises(ValueError, match="MAP estimate is for one dimension"):
        estimate_theta(model, s, i, x[s, i], 7, method="map")


def test_three_dimensional_eap_and_covariance_match_brute_force() -> None:
    """D = 3 on its default 21-node product grid against a 121³ grid over [−6, 6]³."""
    corr = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    mean0, sd0 = np.array([0.3, -0.2, 0.1]), np.array([1.0, 1.3, 0.8])
    rng = np.random.default_rng(0)
    slopes = np.abs(rng.normal(0.0, 1.0, (12, 3))) + 0.1
    b, _ = pad_thresholds([sorted(rng.normal(0, 1, rng.integers(1, 4))) for _ in range(12)])
    model = GradedResponseModel(slopes, -(np.linalg.norm(slopes, axis=1)[:, None] * b))
    scores = [int(rng.integers(0, k)) for k in model.n_categories]
    post = Posterior(model, prior_mean=mean0, prior_sd=sd0, prior_correlation=corr)
    for j, x in enumerate(scores):
        post.update(j, x)
    assert post.points.shape == (21**3, 3)
    ax = np.linspace(-6.0, 6.0, 121)
    pts = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    z = (pts - mean0) / sd0
    logp = -0.5 * np.einsum("gd,de,ge->g", z, np.linalg.inv(corr), z)
    for j, x in enumerate(scores):
        logp += model.log_prob_at(pts, np.int64(j), np.int64(x))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = w @ pts
    cov = (w[:, None] * (pts - mean)).T @ (pts - mean)
    # measured: |Δ EAP| 1.3e-7, |Δ cov| 1.3e-6
    np.testing.assert_allclose(post.eap, mean, atol=1e-5)
    np.testing.assert_allclose(post.cov, cov, atol=2e-5)
    assert np.all(post.sd < 0.9 * sd0)  # twelve items narrowed every axis (measured 0.51–0.84×)
