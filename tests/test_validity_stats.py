"""Validity statistics: the disattenuated correlation on simulated data with a known true r.

Two banks measure two correlated abilities; EAPs are estimated from sampled
responses with the true parameters. The corrected correlation must recover
the true one (bias) and its bootstrap interval must cover it (coverage),
while the observed correlation is visibly attenuated.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import orchestrator.report._validity_stats as vs
from orchestrator.bank import ItemBank
from orchestrator.irt import sample_responses
from orchestrator.irt.ability import estimate_abilities
from tests.conftest import make_bank


def _eap(bank: ItemBank, theta: np.ndarray, rng: np.random.Generator):
    x = sample_responses(theta, bank.a, bank.b, rng)
    n, m = x.shape
    est = estimate_abilities(
        bank.a, bank.b, np.repeat(np.arange(n), m), np.tile(np.arange(m), n), x.ravel(), n
    )
    return est.theta, est.se


def _simulate(rho: float, n: int, reps: int, n_boot: int, seed: int) -> np.ndarray:
    """Per replication: observed r, corrected r, its interval, both reliabilities,
    corr(θ̂, θ)² on each bank, and the sample correlation of the true abilities."""
    bank_a, bank_b = make_bank(12, 2, seed=1), make_bank(8, 4, seed=2)  # rel ≈ 0.72 and 0.67
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        th = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
        ta, sa = _eap(bank_a, th[:, 0], rng)
        tb, sb = _eap(bank_b, th[:, 1], rng)
        ps = vs.pair_statistics(ta, sa, tb, sb, vs.bootstrap_indices(n, n_boot, rng))
        d = ps.disattenuated
        out.append(
            [
                ps.pearson.estimate,
                d.estimate,
                d.lo,
                d.hi,
                ps.reliability_a.estimate,
                ps.reliability_b.estimate,
                np.corrcoef(ta, th[:, 0])[0, 1] ** 2,
                np.corrcoef(tb, th[:, 1])[0, 1] ** 2,
            ]
        )
    return np.array(out, dtype=float)


def _check(
    sim: np.ndarray, rho: float, bias_tol: float, coverage: tuple[float, float], rel_tol: float
) -> None:
    observed, corrected, lo, hi = sim[:, 0], sim[:, 1], sim[:, 2], sim[:, 3]
    assert observed.mean() < rho - 0.15 * rho  # the attenuation the correction undoes
    assert abs(corrected.mean() - rho) < bias_tol
    covered = np.mean((lo <= rho) & (rho <= hi))
    assert coverage[0] <= covered <= coverage[1]
    # empirical reliability estimates corr(θ̂, θ)², the quantity the correction needs
    assert sim[:, 4].mean() == pytest.approx(sim[:, 6].mean(), abs=rel_tol)
    assert sim[:, 5].mean() == pytest.approx(sim[:, 7].mean(), abs=rel_tol)


def test_disattenuated_r_recovers_a_known_correlation() -> None:
    """40 replications (seeded): |bias| < 0.03, coverage of the 95 % interval ≥ 0.85."""
    sim = _simulate(0.6, 200, 40, 300, seed=0)
    _check(sim, 0.6, bias_tol=0.03, coverage=(0.85, 1.0), rel_tol=0.025)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_disattenuated_r_bias_and_coverage_large(rho: float) -> None:
    """300 replications per ρ; measured (seed 1): bias ≤ 0.01, coverage 0.93–0.96."""
    sim = _simulate(rho, 200, 300, 500, seed=1)
    _check(sim, rho, bias_tol=0.02, coverage=(0.90, 0.98), rel_tol=0.01)


def test_batched_correlations_match_scipy(rng: np.random.Generator) -> None:
    x = rng.normal(size=(6, 40))
    y = x + rng.normal(size=(6, 40))
    y[2, :5] = y[2, 0]  # ties
    for i in range(6):
        assert vs.pearson(x, y)[i] == pytest.approx(stats.pearsonr(x[i], y[i])[0], abs=1e-12)
        assert vs.spearman(x, y)[i] == pytest.approx(stats.spearmanr(x[i], y[i])[0], abs=1e-12)
    assert np.isnan(vs.pearson(np.ones(5), np.arange(5.0)))


def test_empirical_reliability_and_correction_formulas() -> None:
    theta = np.array([-1.0, 0.0, 1.0, 2.0])
    se = np.full(4, np.sqrt(np.var(theta, ddof=1)))  # error variance = observed variance
    assert vs.empirical_reliability(theta, se) == pytest.approx(0.5)
    assert vs.disattenuate(np.array(0.4), np.array(0.5), np.array(0.8)) == pytest.approx(
        0.4 / np.sqrt(0.4)
    )


def test_bootstrap_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    r = np.random.default_rng(3)
    x, y = r.normal(size=50), r.normal(size=50)
    ex, ey = np.full(50, 0.3), np.full(50, 0.4)
    idx = vs.bootstrap_indices(50, 400, np.random.default_rng(4))
    whole = vs.pair_statistics(x, ex, y, ey, idx)
    monkeypatch.setattr(vs, "_CHUNK", 120)  # 2 resamples per chunk
    assert vs.pair_statistics(x, ex, y, ey, idx) == whole


def test_degenerate_resamples_are_dropped_not_propagated() -> None:
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.5, 1.0])
    err = np.full(3, 0.1)
    idx = np.array([[0, 0, 0], [0, 1, 2], [2, 1, 0]])
    ps = vs.pair_statistics(x, err, y, err, idx)
    assert ps.pearson.n_valid == 2 and ps.pearson.lo is not None


def test_regression_leave_one_out_matches_refitting(rng: np.random.Generator) -> None:
    x = rng.normal(size=15)
    y = 0.7 * x + rng.normal(scale=0.5, size=15)
    reg = vs.fit_regression(x, y)
    loo, base = [], []
    for i in range(15):
        keep = np.arange(15) != i
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
        loo.append(y[i] - (intercept + slope * x[i]))
        base.append(y[i] - y[keep].mean())
    assert reg.rmse_loo == pytest.approx(np.sqrt(np.mean(np.square(loo))), rel=1e-10)
    assert reg.rmse_loo_mean_only == pytest.approx(np.sqrt(np.mean(np.square(base))), rel=1e-10)
    assert reg.slope == pytest.approx(np.polyfit(x, y, 1)[0])
    with pytest.raises(ValueError, match="at least 3"):
        vs.fit_regression(x[:2], y[:2])


def test_collateral_priors_are_cross_fitted_and_calibrated() -> None:
    """A model's prior ignores its own θ̂ on B, and covers the true θ as it claims."""
    bank_a, bank_b = make_bank(20, 2, seed=5), make_bank(15, 3, seed=6)
    rng = np.random.default_rng(8)
    n = 1500
    th = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]], size=n)
    ta, _ = _eap(bank_a, th[:, 0], rng)
    tb, sb = _eap(bank_b, th[:, 1], rng)
    folds = rng.permutation(n) % 5
    means, sds = vs.collateral_priors(ta, tb, sb, folds)
    z = (th[:, 1] - means) / sds
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.1)  # honest about the true θ on B
    assert np.all(sds < 1.0)  # and narrower than the bank's N(0, 1)
    moved = tb.copy()
    moved[folds == 0] += 5.0  # fold 0's own θ̂ on B must not shape fold 0's priors
    m2, s2 = vs.collateral_priors(ta, moved, sb, folds)
    assert np.array_equal(m2[folds == 0], means[folds == 0])
    assert np.array_equal(s2[folds == 0], sds[folds == 0])
