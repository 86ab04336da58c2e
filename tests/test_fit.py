"""Fit statistics: exactness against brute force / direct formulas, null behaviour, power."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from orchestrator.irt import category_probs, pad_thresholds, sample_responses
from orchestrator.irt.ability import estimate_abilities
from orchestrator.irt.fit import (
    Q3Result,
    _leave_one_out_numerators,
    below_target_intervals,
    benjamini_hochberg,
    category_max_prob,
    complete_case_matrix,
    flag_q3,
    group_dependence,
    item_rest_correlation,
    mean_squares,
    person_fit_lz,
    q3_null_max,
    residual_correlations,
    rest_abilities,
    summed_score_fit,
)


def spaced_params(n: int, seed: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """a ~ 1.3·LogNormal(0, 0.25); thresholds centre ± evenly spaced (no near-merged categories)."""
    r = np.random.default_rng(seed)
    a = 1.3 * np.exp(r.normal(0, 0.25, n))
    centre = r.normal(0, 0.9, n)
    steps = np.linspace(-1.2, 1.2, k - 1) if k > 2 else np.zeros(1)
    return a, centre[:, None] + steps[None, :]


def simulate(a, b, n_sub: int, seed: int, theta=None):
    rng = np.random.default_rng(seed)
    th = rng.normal(size=n_sub) if theta is None else theta
    x = sample_responses(th, a, b, rng)
    s, i = np.indices(x.shape)
    return th, x, s.ravel(), i.ravel(), x.ravel()


@pytest.fixture(scope="module")
def clean():
    a, b = spaced_params(30, seed=1)
    _th, x, s, i, sc = simulate(a, b, 800, seed=2)
    est = estimate_abilities(a, b, s, i, sc, 800)
    return a, b, x, s, i, sc, est.theta


def test_leave_one_out_distributions_match_brute_force() -> None:
    b, k = pad_thresholds([[-1.0, 0.2, 1.0], [0.3], [-0.5, 0.8], [0.0, 0.4, 1.5], [-1.2]])
    a = np.array([0.7, 1.5, 1.1, 2.0, 0.9])
    nodes = np.linspace(-5, 5, 15)
    w = stats.norm.pdf(nodes)
    w /= w.sum()
    p = np.moveaxis(category_probs(nodes, a, b), 0, 1)
    num = _leave_one_out_numerators(p, k, w, None)
    brute = np.zeros_like(num)
    for pattern in itertools.product(*[range(int(c)) for c in k]):
        joint = np.prod([p[i, :, pattern[i]] for i in range(len(a))], axis=0) @ w
        for i, c in enumerate(pattern):
            brute[i, sum(pattern), c] += joint
    np.testing.assert_allclose(num, brute, atol=1e-15)


def test_sx2_is_roughly_uniform_under_the_model_and_catches_a_wrong_slope(clean) -> None:
    a, b, x, *_ = clean
    res = summed_score_fit(x, a, b, np.full(30, 4), params_estimated=False)
    assert np.isfinite(res.p).all() and (res.df > 5).all()
    assert (res.p < 0.05).mean() <= 0.15
    assert 0.3 < res.p.mean() < 0.7
    wrong = a.copy()
    wrong[0] = 0.3  # the data were generated with a ≈ 1.3
    bad = summed_score_fit(x, wrong, b, np.full(30, 4), params_estimated=False)
    assert bad.p[0] < 1e-6
    assert np.median(bad.p[1:]) > 0.1


def test_sx2_degrees_of_freedom_subtract_estimated_parameters(clean) -> None:
    a, b, x, *_ = clean
    free = summed_score_fit(x[:, :10], a[:10], b[:10], np.full(10, 4), params_estimated=False)
    est = summed_score_fit(x[:, :10], a[:10], b[:10], np.full(10, 4), params_estimated=True)
    np.testing.assert_array_equal(free.df - est.df, 4)
    np.testing.assert_allclose(free.stat, est.stat)


def test_mean_squares_near_one_and_reversed_item_underfits(clean) -> None:
    a, b, _x, s, i, sc, theta = clean
    ms = mean_squares(a, b, s, i, sc, theta)
    assert 0.85 < np.median(ms.infit) < 1.05 and 0.85 < np.median(ms.outfit) < 1.05
    rev = np.where(i == 0, 3 - sc, sc)
    ms_rev = mean_squares(a, b, s, i, rev, theta)
    assert ms_rev.outfit[0] > 2.0 and ms_rev.outfit_p[0] < 1e-10
    assert ms_rev.outfit_t[0] > 5


def test_q3_equals_direct_correlation_on_complete_and_sparse_data(clean) -> None:
    a, b, _x, s, i, sc, theta = clean
    keep = np.random.default_rng(3).random(sc.size) < 0.6  # sparse: 60 % observed
    s, i, sc = s[keep], i[keep], sc[keep]
    q = residual_correlations(a, b, s, i, sc, theta, 800, block=7, dense_limit=0)  # sparse
    q_dense = residual_correlations(a, b, s, i, sc, theta, 800)
    np.testing.assert_allclose(q.q3, q_dense.q3, atol=1e-10)
    np.testing.assert_array_equal(q.n_common, q_dense.n_common)
    expected = (category_probs(theta, a, b) * np.arange(4)).sum(-1)
    resid = np.full((800, 30), np.nan)
    resid[s, i] = sc - expected[s, i]
    for u, v in [(0, 1), (3, 17), (29, 5)]:
        both = np.isfinite(resid[:, u]) & np.isfinite(resid[:, v])
        direct = np.corrcoef(resid[both, u], resid[both, v])[0, 1]
        assert q.q3[u, v] == pytest.approx(direct, abs=1e-10)
        assert q.n_common[u, v] == both.sum()
    np.testing.assert_allclose(q.q3, q.q3.T, atol=1e-12, equal_nan=True)
    assert np.isnan(np.diag(q.q3)).all()


def test_q3_flags_a_duplicated_triple_as_one_cluster_and_nothing_on_clean_data(clean) -> None:
    a, b, x, s, i, sc, theta = clean
    clean_flags = flag_q3(residual_correlations(a, b, s, i, sc, theta, 800))
    assert len(clean_flags.pairs) == 0
    assert clean_flags.mean_q3 == pytest.approx(-1 / 29, abs=0.02)
    rng = np.random.default_rng(4)
    x2 = x.copy()
    for j in (7, 8):  # copies of item 6 with 10 % noise
        noise = rng.random(800) < 0.1
        x2[:, j] = np.where(noise, rng.integers(0, 4, 800), x2[:, 6])
    b2 = b.copy()
    b2[[7, 8]] = b[6]
    a2 = a.copy()
    a2[[7, 8]] = a[6]
    null = q3_null_max(a2, b2, s, i, theta, 800, n_boot=20, rng=np.random.default_rng(1))
    assert np.nanmax(null[:, 0]) < 0.2  # with 800 subjects the 0.2 convention is the binding cut
    flags = flag_q3(residual_correlations(a2, b2, s, i, x2.ravel(), theta, 800), null_max=null)
    assert {tuple(p) for p in flags.pairs} == {(6, 7), (6, 8), (7, 8)}
    assert flags.clusters == [[6, 7, 8]]
    assert (flags.q3_adj > 0.4).all()
    np.testing.assert_allclose(flags.p_adjusted, 1 / 21)  # beyond every simulated maximum


def test_q3_is_not_flagged_on_noise_with_few_subjects() -> None:
    a, b = spaced_params(40, seed=5)
    _, _, s, i, sc = simulate(a, b, 17, seed=6)  # agentdojo-sized: 17 subjects
    theta = estimate_abilities(a, b, s, i, sc, 17).theta
    q = residual_correlations(a, b, s, i, sc, theta, 17)
    loose = np.nansum(np.triu(q.q3 - np.nanmean(q.q3) > 0.2, 1))
    assert loose > 50  # the bare 0.2 rule flags many pairs of pure noise …
    assert len(flag_q3(q, min_common=10).pairs) == loose
    null = q3_null_max(a, b, s, i, theta, 17, n_boot=40, rng=np.random.default_rng(0))
    flags = flag_q3(q, min_common=10, null_max=null)
    assert len(flags.pairs) == 0  # … the simulated critical value does not
    assert flags.threshold > 0.5  # chance alone reaches this with 17 subjects


def test_lz_matches_definition_is_near_nominal_and_catches_a_gamer(clean) -> None:
    a, b, x, s, i, sc, theta = clean
    lz, n = person_fit_lz(a, b, s, i, sc, theta, 800)
    assert (n == 30).all()
    p = category_probs(theta[0], a, b)
    lp = np.log(p)
    l0 = lp[np.arange(30), x[0]].sum()
    e = (p * lp).sum()
    v = ((p * lp**2).sum(1) - (p * lp).sum(1) ** 2).sum()
    assert lz[0] == pytest.approx((l0 - e) / np.sqrt(v))
    assert 0.003 <= (lz < -2).mean() <= 0.05
    gamer = np.where(b[:, 1] < 0, 0, 3)  # fails easy items on purpose, passes hard ones
    theta_g = estimate_abilities(a, b, np.zeros(30, int), np.arange(30), gamer, 1).theta
    lz_g, _ = person_fit_lz(a, b, np.zeros(30, int), np.arange(30), gamer, theta_g, 1)
    assert lz_g[0] < -4


def test_item_rest_correlation_exposes_a_reversed_item(clean) -> None:
    a, b, _x, s, i, sc, _ = clean
    rev = np.where(i == 2, 3 - sc, sc)
    t_rest = rest_abilities(a, b, s, i, rev, 800)
    r, p_below, n = item_rest_correlation(i, rev, t_rest, 30)
    assert r[2] < -0.3 and p_below[2] < 1e-20
    assert np.delete(p_below, 2).min() > 0.05
    assert np.delete(r, 2).min() > 0.2
    assert (n == 800).all()


def test_rest_abilities_equal_a_refit_without_the_item(clean) -> None:
    a, b, _x, s, i, sc, _ = clean
    sub = s < 5
    t_rest = rest_abilities(a, b, s[sub], i[sub], sc[sub], 5)
    for obs in (0, 31, 77):
        keep = (s[sub] == s[sub][obs]) & (i[sub] != i[sub][obs])
        direct = estimate_abilities(
            a, b, np.zeros(keep.sum(), int), i[sub][keep], sc[sub][keep], 1,
            grid=np.linspace(-6, 6, 241),
        ).theta[0]  # fmt: skip
        assert t_rest[obs] == pytest.approx(direct, abs=1e-9)


def test_category_max_prob_closed_form_matches_numerical_peak() -> None:
    b, _ = pad_thresholds([[-1.0, 0.0, 0.05], [0.2, 1.4], [0.5]])
    a = np.array([1.3, 0.7, 2.0])
    cm = category_max_prob(a, b)
    theta = np.linspace(-6, 6, 120_001)
    p = category_probs(theta, a, b)
    assert cm[0, 0] == pytest.approx(p[:, 0, 1].max(), abs=1e-8)
    assert cm[0, 1] == pytest.approx(p[:, 0, 2].max(), abs=1e-8)
    assert cm[1, 0] == pytest.approx(p[:, 1, 1].max(), abs=1e-8)
    assert cm[0, 1] < 0.02  # b = 0.0 and 0.05: nearly merged
    assert np.isnan(cm[1, 1]) and np.isnan(cm[2]).all()


def test_benjamini_hochberg_matches_scipy_and_keeps_nan() -> None:
    p = np.random.default_rng(0).random(50) ** 3
    q = benjamini_hochberg(np.r_[p, np.nan])
    np.testing.assert_allclose(q[:-1], stats.false_discovery_control(p))
    assert np.isnan(q[-1])


def test_below_target_intervals_interpolates_crossings_and_keeps_open_ends() -> None:
    theta = np.linspace(-4, 4, 81)
    info = 20 * np.exp(-(theta**2) / 2)  # ≥ 10 for |θ| ≤ √(2 ln 2) ≈ 1.177
    gaps = below_target_intervals(theta, info, 10.0)
    assert len(gaps) == 2
    assert gaps[0][0] == -4 and gaps[1][1] == 4
    assert gaps[0][1] == pytest.approx(-1.1774, abs=0.01)
    assert gaps[1][0] == pytest.approx(1.1774, abs=0.01)
    assert below_target_intervals(theta, info + 100, 10.0) == []


def test_complete_case_matrix_keeps_only_subjects_with_every_item() -> None:
    s = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    i = np.array([0, 1, 2, 0, 2, 2, 1, 0])
    x = np.array([1, 2, 3, 1, 1, 0, 1, 2])
    subj, dense = complete_case_matrix(s, i, x, 3, np.array([0, 1, 2]))
    np.testing.assert_array_equal(subj, [0, 2])
    np.testing.assert_array_equal(dense, [[1, 2, 3], [2, 1, 0]])
    subj, dense = complete_case_matrix(s, i, x, 3, np.array([2, 0]))
    np.testing.assert_array_equal(subj, [0, 1, 2])
    np.testing.assert_array_equal(dense, [[3, 1], [1, 1], [0, 2]])


def test_group_dependence_detects_a_second_dimension_and_not_a_random_label() -> None:
    rng = np.random.default_rng(8)
    n_sub, n_items = 300, 24
    a, b = spaced_params(n_items, seed=9)
    t1 = rng.normal(size=n_sub)
    t2 = 0.3 * t1 + np.sqrt(1 - 0.09) * rng.normal(size=n_sub)  # weakly related 2nd ability
    x = sample_responses(t1, a, b, rng)
    x[:, 12:] = sample_responses(t2, a[12:], b[12:], rng)  # half the items measure θ2
    s, i = np.indices(x.shape)
    s, i, sc = s.ravel(), i.ravel(), x.ravel()
    theta = estimate_abilities(a, b, s, i, sc, n_sub).theta
    q = residual_correlations(a, b, s, i, sc, theta, n_sub).q3
    dims = ["first"] * 12 + ["second"] * 12
    res = group_dependence(q, dims, rng=np.random.default_rng(0), n_perm=199)
    assert res is not None and res.groups == ["first", "second"]
    assert res.within > res.between + 0.1 and res.p_value <= 0.01
    mixed = ["u", "v"] * 12  # a label unrelated to the dimensions
    res = group_dependence(q, mixed, rng=np.random.default_rng(0), n_perm=199)
    assert res is not None and res.p_value > 0.05
    assert group_dependence(q, ["only"] * 24, rng=np.random.default_rng(0)) is None


def test_q3_pairs_at_the_cap_are_not_flagged_when_chance_reaches_it_too() -> None:
    # two items with identical responses (Q3 = 1) among 18 subjects whose simulated
    # data also produce identical pairs: indistinguishable from chance
    q3 = np.full((3, 3), 0.0)
    q3[0, 1] = q3[1, 0] = 1.0
    np.fill_diagonal(q3, np.nan)
    res = Q3Result(q3=q3, n_common=np.full((3, 3), 18))
    mean = np.mean([1.0, 0.0, 0.0])
    null = np.column_stack([np.full(50, 1.0 - mean - 0.01), np.ones(50)])  # adj slightly lower
    assert len(flag_q3(res, null_max=null).pairs) == 0
    null[:, 1] = 0.9  # chance never reaches the cap: now the pair stands out
    null[:, 0] = 0.9 - mean
    flags = flag_q3(res, null_max=null)
    assert [tuple(p) for p in flags.pairs] == [(0, 1)]
