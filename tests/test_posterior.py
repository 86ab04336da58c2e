"""Grid posterior: EAP/SE against brute-force integration, MAP, regrid, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import quad

from orchestrator.irt import Posterior, category_probs, pad_thresholds
from orchestrator.irt.ability import estimate_abilities


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
    post = Posterior()
    for i in range(n):
        post.update(a[i], b[i], int(x[i]))
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
    post = Posterior()
    for i in range(n):
        post.update(a[i], b[i], int(x[i]))
    m, s = _brute_force(a, b, x)
    assert post.sd < 0.1
    assert post.points[1] - post.points[0] < post.sd  # grid was narrowed
    assert abs(post.eap - m) < 1e-6
    assert abs(post.sd - s) < 1e-6


def test_map_is_the_mode() -> None:
    post = Posterior()
    for a, b, x in [(1.2, [-0.5, 0.5, 1.0], 2), (0.8, [0.0], 1), (2.0, [1.0, 2.0], 0)]:
        post.update(a, b, x)
    mode = post.map()
    eps = 1e-4
    f = lambda t: float(post._loglik_at(np.array([t]))[0] - 0.5 * t * t)  # noqa: E731
    assert f(mode) >= f(mode - eps) and f(mode) >= f(mode + eps)


def test_round_trip_through_json_is_identical() -> None:
    post = Posterior(prior_mean=0.2, prior_sd=1.5)
    for a, b, x in [(1.2, [-0.5, 0.5, 1.0], 3), (0.8, [0.0], 0)]:
        post.update(a, b, x)
    again = Posterior.from_dict(json.loads(json.dumps(post.to_dict())))
    assert again.eap == post.eap and again.sd == post.sd
    np.testing.assert_array_equal(again.weights, post.weights)


def test_bad_prior_is_rejected() -> None:
    with pytest.raises(ValueError, match="prior_sd must be a positive number; got 0"):
        Posterior(prior_sd=0)


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
        post = Posterior()
        for o in np.flatnonzero(s_idx == s):
            post.update(a[i_idx[o]], b[i_idx[o]], int(x[o]))
        assert abs(est.theta[s] - post.eap) < 1e-6
        assert abs(est.se[s] - post.sd) < 1e-6
    # a subject with no observations gets the prior
    assert abs(est.theta[-1]) < 1e-9 and abs(est.se[-1] - 1) < 1e-6 and est.n_items[-1] == 0
    est_map = estimate_abilities(a, b, s_idx, i_idx, x, n_subj, method="map")
    assert np.all(np.abs(est_map.theta - est.theta[:n_subj]) < 0.5)
