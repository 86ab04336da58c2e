"""Grid posterior: EAP/SE against brute-force integration, MAP, regrid, one subject = one row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from orchestrator.irt import (
    GradedResponseModel,
    GridPosterior,
    Posterior,
    category_probs,
    pad_thresholds,
)
from orchestrator.irt.ability import estimate_abilities
from orchestrator.irt.posterior import grid_moments


def _posterior(a, b, **kwargs) -> Posterior:
    """A posterior over the items ``a``, ``b`` (ragged thresholds); update it by item index."""
    bb, _ = pad_thresholds(b)
    return Posterior(GradedResponseModel.from_difficulty(a, bb), **kwargs)


def _brute_force(a, b, x, mean=0.0, sd=1.0):
    bb, _ = pad_thresholds(b)

    def dens(t: float) -> float:
        p = category_probs(np.array(t), np.asarray(a), bb)
        return float(np.prod(p[np.arange(len(x)), x]) * np.exp(-0.5 * ((t - mean) / sd) ** 2))

    z = quad(dens, -12, 12, epsabs=0, epsrel=1e-13, limit=400)[0]
    m = quad(lambda t: t * dens(t), -12, 12, epsabs=0, epsrel=1e-13, limit=400)[0] / z
    v = quad(lambda t: (t - m) ** 2 * dens(t), -12, 12, epsabs=0, epsrel=1e-13, limit=400)[0] / z
    return m, np.sqrt(v)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eap_and_se_match_brute_force_integration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 12
    a = np.exp(rng.normal(0, 0.3, n))
    b = [sorted(rng.normal(0, 1, 3)) for _ in range(n)]
    x = rng.integers(0, 4, n)
    post = _posterior(a, b)
    for i in range(n):
        post.update(i, int(x[i]))
    m, s = _brute_force(a, b, x)
    assert abs(post.eap - m) < 1e-6
    assert abs(post.sd - s) < 1e-6


def test_long_test_regrids_and_keeps_se_honest() -> None:
    # 300 steep items: the posterior SD falls far below the 0.15 grid spacing
    rng = np.random.default_rng(3)
    n = 300
    a = np.full(n, 2.0)
    b = [[v] for v in rng.normal(0, 1, n)]
    x = (rng.random(n) < 1 / (1 + np.exp(-2.0 * (0.8 - np.ravel(b))))).astype(int)
    post = _posterior(a, b)
    for i in range(n):
        post.update(i, int(x[i]))
    m, s = _brute_force(a, b, x)
    assert post.sd < 0.1
    assert post.points[1] - post.points[0] < post.sd  # grid was narrowed
    assert abs(post.eap - m) < 1e-6
    assert abs(post.sd - s) < 1e-6


def test_map_is_the_mode() -> None:
    post = _posterior([1.2, 0.8, 2.0], [[-0.5, 0.5, 1.0], [0.0], [1.0, 2.0]])
    for i, x in enumerate([2, 1, 0]):
        post.update(i, x)
    mode = post.map()
    eps = 1e-4
    f = lambda t: float(post.loglik_at(np.array([t])) - 0.5 * t * t)  # noqa: E731
    assert f(mode) >= f(mode - eps) and f(mode) >= f(mode + eps)


@pytest.mark.parametrize("lapse", [0.0, 0.05])
def test_one_subject_posterior_is_bitwise_a_row_of_the_many_subject_posterior(
    lapse: float,
) -> None:
    """Subjects advanced together (different items, different lengths) = one at a time
    (the one-row update is a specialised branch: it must give the general path's bits)."""
    rng = np.random.default_rng(7)
    n_items, n_subj, steps = 60, 5, 45
    a = np.exp(rng.normal(0.3, 0.3, n_items))
    b, _ = pad_thresholds([sorted(rng.normal(0, 1, rng.integers(1, 4))) for _ in range(n_items)])
    model = GradedResponseModel.from_difficulty(a, b)
    order = np.array([rng.permutation(n_items)[:steps] for _ in range(n_subj)])
    x = rng.integers(0, 2, (n_subj, steps))  # categories 0/1 exist for every item
    settings = {"prior_mean": 0.2, "prior_sd": 1.5, "track_information": True, "lapse": lapse}
    many = GridPosterior(model, n_subj, **settings)  # type: ignore[arg-type]
    ones = [Posterior(model, **settings) for _ in x]  # type: ignore[arg-type]
    for t in range(steps):
        rows = np.arange(n_subj)[t < np.array([45, 45, 30, 45, 10])]  # some stop early
        many.update(rows, order[rows, t], x[rows, t])
        for s in rows:
            ones[s].update(int(order[s, t]), int(x[s, t]))
    for s, one in enumerate(ones):
        np.testing.assert_array_equal(one.eap, many.eap[s])
        np.testing.assert_array_equal(one.sd, many.sd[s])
        np.testing.assert_array_equal(one.points, many.points[s])
        np.testing.assert_array_equal(one.weights, many.weights(np.array([s]))[0])
        np.testing.assert_array_equal(one.batch.admin_info[0], many.admin_info[s])
        np.testing.assert_array_equal(one.cov, many.cov[s])
        np.testing.assert_array_equal(one.batch.loglik[0], many.loglik[s])
    assert many.points[0, -1] - many.points[0, 0] < 12.0  # the long tests regridded


def test_moments_of_one_posterior_are_the_bits_of_a_row_of_many() -> None:
    rng = np.random.default_rng(3)
    coords = np.sort(rng.normal(0.0, 2.0, (3, 1, 81)), axis=-1)
    log_post = rng.normal(0.0, 5.0, (3, 81))
    mean, cov = grid_moments(coords, log_post)
    for s in range(3):  # one row alone takes the flat-vector branch
        one_mean, one_cov = grid_moments(coords[s : s + 1], log_post[s : s + 1])
        assert one_mean.shape == (1, 1) and one_cov.shape == (1, 1, 1)
        np.testing.assert_array_equal(one_mean[0], mean[s])
        np.testing.assert_array_equal(one_cov[0], cov[s])


def test_bad_prior_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"prior_sd must be a positive number .*; got 0"):
        _posterior([1.0], [[0.0]], prior_sd=0)


def test_batch_estimates_agree_with_sequential_posterior() -> None:
    rng = np.random.default_rng(11)
    n_items, n_subj = 30, 25
    a = np.exp(rng.normal(0, 0.3, n_items))
    b, _ = pad_thresholds([sorted(rng.normal(0, 1, 3)) for _ in range(n_items)])
    s_idx = np.repeat(np.arange(n_subj), 10)
    i_idx = np.concatenate([rng.choice(n_items, 10, replace=False) for _ in range(n_subj)])
    x = rng.integers(0, 4, len(s_idx))
    est = estimate_abilities(a, b, s_idx, i_idx, x, n_subj + 1)
    for s in range(n_subj):
        post = Posterior(GradedResponseModel.from_difficulty(a, b))
        for o in np.flatnonzero(s_idx == s):
            post.update(int(i_idx[o]), int(x[o]))
        assert abs(est.theta[s] - post.eap) < 1e-6
        assert abs(est.se[s] - post.sd) < 1e-6
    # a subject with no observations gets the prior
    assert abs(est.theta[-1]) < 1e-9 and abs(est.se[-1] - 1) < 1e-6 and est.n_items[-1] == 0
    est_map = estimate_abilities(a, b, s_idx, i_idx, x, n_subj, method="map")
    assert np.all(np.abs(est_map.theta - est.theta[:n_subj]) < 0.5)
