"""GRM calibration: recovery, exclusions, priors, ordering, information, errors.

Fast tests use small problems; the full-size recovery runs are marked slow.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from orchestrator.bank import bank_from_calibration
from orchestrator.errors import (
    CalibrationConvergenceWarning,
    CalibrationError,
    ConfigError,
    DataError,
    NotFittedError,
    PrerequisiteError,
)
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.calibrate import torch_grm as T
from orchestrator.irt.calibrate._threads import WORK_PER_THREAD, choose_threads
from orchestrator.irt.grm import sample_responses


def simulate(
    n_subjects: int,
    n_items: int,
    k: int | list[int],
    *,
    frac: float = 1.0,
    seed: int = 0,
    log_a_mean: float = 0.0,
):
    """Known GRM items, N(0,1) abilities, responses observed with probability ``frac``."""
    r = np.random.default_rng(seed)
    ks = np.full(n_items, k) if isinstance(k, int) else np.resize(np.asarray(k), n_items)
    kmax = int(ks.max())
    a = np.exp(r.normal(log_a_mean, 0.3, n_items))
    centre = r.normal(0.0, 1.0, n_items)
    b = np.full((n_items, kmax - 1), np.inf)
    for j in range(n_items):  # test set-up only
        steps = np.sort(r.uniform(-1.5, 1.5, ks[j] - 1)) if ks[j] > 2 else np.zeros(1)
        b[j, : ks[j] - 1] = centre[j] + steps
    theta = r.normal(size=n_subjects)
    x = sample_responses(theta, a, b, r)
    s, i = np.nonzero(r.random((n_subjects, n_items)) < frac)
    return a, b, ks, theta, s, i, x[s, i]


def corr(u, v) -> float:
    return float(np.corrcoef(np.ravel(u), np.ravel(v))[0, 1])


# ------------------------------------------------------------------------ recovery
def test_recovers_grm_k4_small() -> None:
    a, b, ks, _, s, i, x = simulate(800, 25, 4, seed=1)
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert cal.converged_ and cal.n_iter_ < 100
    assert corr(a, cal.a_) > 0.85
    assert corr(b, cal.b_) > 0.97
    assert np.isfinite(cal.a_se_).all() and np.isfinite(cal.b_se_).all()
    assert cal.loglik_ < 0 and cal.logpost_ < cal.loglik_


def test_recovers_2pl_small() -> None:
    a, b, _ks, _, s, i, x = simulate(1000, 25, 2, seed=2)
    cal = GRMCalibrator().fit(s, i, x)
    assert cal.b_.shape == (25, 1)
    assert corr(a, cal.a_) > 0.85
    assert corr(b, cal.b_) > 0.97


def test_mixed_k_in_one_bank() -> None:
    a, b, ks, _, s, i, x = simulate(1000, 30, [2, 3, 4], seed=3)
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert list(cal.n_categories_) == list(ks)
    assert np.array_equal(np.isinf(cal.b_), np.isinf(b))  # padding where K is smaller
    assert np.isnan(cal.b_se_[np.isinf(b)]).all()
    assert corr(a, cal.a_) > 0.8
    assert corr(b[np.isfinite(b)], cal.b_[np.isfinite(b)]) > 0.97
    bank = bank_from_calibration(cal, "mixed")
    assert [len(it.b) + 1 for it in bank.spec.items] == list(ks)


def test_sparse_data_30_percent_observed() -> None:
    a, b, ks, _, s, i, x = simulate(2500, 25, 4, frac=0.3, seed=4)
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert cal.n_observations_ == len(x)
    assert corr(a, cal.a_) > 0.85
    assert corr(b, cal.b_) > 0.97


_PEAK_MEMORY_FIT = """
import resource, sys, warnings
import numpy as np
from orchestrator.errors import CalibrationConvergenceWarning
from orchestrator.irt.calibrate import GRMCalibrator

r = np.random.default_rng(5)
n_s, n_i, n_obs = 100_000, 4_000, 120_000
pair = np.unique(r.integers(0, n_s, n_obs) * n_i + r.integers(0, n_i, n_obs))
s, i = pair // n_i, pair % n_i
x = (r.random(len(s)) < 0.5).astype(np.int64)
cal = GRMCalibrator(max_iter=3, compute_se=False, n_quad=21)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CalibrationConvergenceWarning)
    cal.fit(s, i, x, n_subjects=n_s)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, len(cal.a_) + len(cal.excluded_))
"""


def test_peak_memory_follows_observations_not_subjects_times_items() -> None:
    # 100,000 subjects x 4,000 items = 4e8 cells: 3.2 GB as a dense float64 matrix (and
    # several times that for Q = 21 nodes). Only 120,000 are observed. The fit runs in a
    # fresh process, so its peak resident memory is the fit's own, torch's included.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_FIT], capture_output=True, text=True, check=True
    )
    growth, n_items = (int(v) for v in out.stdout.split())
    assert n_items == 4_000
    assert growth < 400 * 2**20, f"the fit raised peak memory by {growth / 2**20:.0f} MiB"


# ------------------------------------------------------------------------ structure
def test_thresholds_ordered_even_with_an_unobserved_middle_category() -> None:
    _a, _b, ks, _, s, i, x = simulate(400, 12, 4, seed=6)
    x = np.where((i == 0) & (x == 1), 2, x)  # nobody gives category 1 to item 0
    x = np.where((i == 1) & (x == 3), 2, x)  # nobody reaches the top of item 1
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert (np.diff(cal.b_, axis=1) > 0).all()
    assert cal.unobserved_categories_["item0"] == [1]
    assert cal.unobserved_categories_["item1"] == [3]
    assert np.isfinite(cal.b_).all()  # the prior on b keeps the empty top finite
    bank_from_calibration(cal, "ordered")  # bank validation demands strictly increasing b


def test_excluded_items_are_reported_not_fitted() -> None:
    _a, _b, _ks, _, s, i, x = simulate(300, 8, 2, seed=7)
    x = np.where(i == 2, 1, x)  # item2: everyone scores 1
    keep = ~((i == 5) & (s >= 3))  # item5: only 3 observations
    s, i, x = s[keep], i[keep], x[keep]
    ids = [f"q{j}" for j in range(8)] + ["never_seen"]
    cal = GRMCalibrator(min_obs=5).fit(s, i, x, item_ids=ids)
    reasons = {e["id"]: e["reason"] for e in cal.excluded_}
    assert reasons == {
        "q2": "single observed category (every score = 1)",
        "q5": "fewer than min_obs = 5 observations",
        "never_seen": "no observations",
    }
    assert cal.item_ids_ == ["q0", "q1", "q3", "q4", "q6", "q7"]
    assert list(cal.item_index_) == [0, 1, 3, 4, 6, 7]
    bank = bank_from_calibration(cal, "x")
    assert [e["id"] for e in bank.spec.calibration.excluded_items] == ["q2", "q5", "never_seen"]
    assert "q2" not in bank.index


def test_all_items_excluded_is_a_clear_error() -> None:
    with pytest.raises(CalibrationError, match=r"no item can be calibrated.*'item0'"):
        GRMCalibrator().fit([0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1])


def test_priors_keep_a_near_step_item_finite() -> None:
    # 40 subjects; item 0 is a perfect step at theta = 0 (complete separation)
    _a, _b, _ks, theta, s, i, x = simulate(40, 30, 2, seed=8)
    x = np.where(i == 0, (theta[s] > 0).astype(np.int64), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationConvergenceWarning)
        free = GRMCalibrator(prior_a=None, prior_b=None, max_iter=300, compute_se=False)
        free.fit(s, i, x)
    shrunk = GRMCalibrator().fit(s, i, x)
    assert free.a_[0] > 3 * shrunk.a_[0]  # runs off without a prior
    assert free.a_[0] == free.a_.max()
    assert 1.0 < shrunk.a_[0] < 6.0  # finite, of the order of the steepest items
    assert shrunk.converged_
    details = bank_from_calibration(shrunk, "p").spec.calibration.details
    assert details["item_priors"]["log_a"] == {"dist": "normal", "mean": 0.0, "sd": 0.5}
    assert details["item_priors"]["estimate"] == "MAP (posterior mode)"


def test_px_em_increases_the_marginal_likelihood() -> None:
    _a, _b, _ks, _, s, i, x = simulate(500, 20, 3, seed=9)
    off = {"prior_a": None, "prior_b": None, "prior_gap": None}
    cal = GRMCalibrator(n_quad=61, tol=1e-7, **off).fit(s, i, x)
    ll = np.array([h.loglik for h in cal.history_])
    assert np.all(np.diff(ll) > -1e-7 * np.abs(ll[1:]))
    assert cal.history_[-1].change < 1e-7
    assert cal.n_iter_ < 60  # PX-EM: no crawl along the θ scale


def test_progress_callback_sees_every_iteration() -> None:
    seen = []
    _a, _b, _ks, _, s, i, x = simulate(200, 10, 2, seed=10)
    cal = GRMCalibrator(progress=seen.append).fit(s, i, x)
    assert [p.iteration for p in seen] == list(range(1, cal.n_iter_ + 1))
    assert seen[-1].change < cal.tol


def test_long_test_grid_is_refined_automatically() -> None:
    # 300 items per subject: posterior SDs ~0.05, far below the 61-node spacing of 0.2
    _a, _b, _ks, _, s, i, x = simulate(300, 300, 4, seed=11, log_a_mean=0.5)
    cal = GRMCalibrator(compute_se=False).fit(s, i, x)
    assert cal.n_quad_ > 90  # refined from the 61-node start
    assert cal.calibration_details()["quadrature"]["nodes"] == cal.n_quad_


# ------------------------------------------------------------------------ SEs
def test_standard_errors_invert_the_autograd_hessian_of_the_marginal_log_posterior() -> None:
    """Each item's SEs are sqrt(diag(−H_jj⁻¹)) of the marginal log posterior in (a, b)."""
    _a, _b, ks, _, s, i, x = simulate(150, 6, [3, 2, 4], frac=0.8, seed=12)
    cal = GRMCalibrator(n_quad=41, tol=1e-9).fit(s, i, x, n_categories=ks)
    assert cal.item_ids_ == [f"item{j}" for j in range(6)]  # nothing excluded
    # the marginal log posterior, written out densely from the torch GRM
    n_q, k_max = 41, int(ks.max())
    theta = torch.linspace(-6.0, 6.0, n_q, dtype=torch.float64)
    log_w = -0.5 * theta**2
    log_w = log_w - torch.logsumexp(log_w, 0)
    indicator = torch.zeros(int(s.max()) + 1, 6 * k_max, dtype=torch.float64)
    indicator[s, i * k_max + x] = 1.0
    mask = torch.from_numpy(np.isfinite(cal.b_).astype(float))
    priors = T.Priors(cal.prior_a, cal.prior_b, cal.prior_gap)

    def log_post(eta: torch.Tensor) -> torch.Tensor:  # eta = (a, b_1..b_T) per item
        eta = eta.reshape(6, k_max)
        aa, bb = eta[:, 0], eta[:, 1:]
        u = torch.log(torch.expm1(torch.clamp(bb[:, 1:] - bb[:, :-1], min=1e-12)))
        u = torch.where(mask[:, 1:] > 0, u, torch.zeros_like(u))
        psi = torch.cat([torch.log(aa)[:, None], bb[:, :1], u], dim=1)
        lp = T.log_probs(psi, theta, mask).reshape(-1, n_q)
        ll = torch.logsumexp(indicator @ lp + log_w, dim=1).sum()
        return ll + T.log_prior(psi, mask, priors).sum()

    b_fit = np.where(np.isfinite(cal.b_), cal.b_, np.nanmax(cal.b_[np.isfinite(cal.b_)]) + 5.0)
    eta = torch.from_numpy(np.concatenate([cal.a_[:, None], np.sort(b_fit, axis=1)], axis=1))
    hess = torch.autograd.functional.hessian(log_post, eta.ravel()).numpy()
    for j, k in enumerate(ks):
        idx = [j * k_max + t for t in range(k)]
        se = np.sqrt(np.diag(np.linalg.inv(-hess[np.ix_(idx, idx)])))
        np.testing.assert_allclose(cal.a_se_[j], se[0], rtol=1e-6)
        np.testing.assert_allclose(cal.b_se_[j, : k - 1], se[1:], rtol=1e-6)


def test_standard_errors_shrink_with_more_subjects() -> None:
    small = simulate(300, 10, 3, seed=13)
    large = simulate(2400, 10, 3, seed=13)
    se_small = GRMCalibrator().fit(*small[4:], n_categories=small[2]).a_se_
    se_large = GRMCalibrator().fit(*large[4:], n_categories=large[2]).a_se_
    ratio = np.median(se_small / se_large)
    assert 2.2 < ratio < 3.6  # ~sqrt(8) = 2.83


# ------------------------------------------------------------------------ API contract
def test_bank_before_fit_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\("):
        bank_from_calibration(GRMCalibrator(), "x")
    with pytest.raises(AttributeError):  # NotFittedError is also an AttributeError
        GRMCalibrator().summary()


def test_init_only_stores_and_get_params_round_trips() -> None:
    cal = GRMCalibrator(n_quad=3, tol=-1.0, device="nonsense")  # validated in fit, not here
    assert cal.get_params()["n_quad"] == 3
    assert GRMCalibrator(**cal.get_params()).get_params() == cal.get_params()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_quad": 5}, r"'n_quad' must be an integer >= 11 or 'auto'; got 5"),
        ({"tol": 0.0}, r"'tol' must be > 0; got 0.0"),
        ({"prior_a": (0.0, -1.0)}, r"'prior_a' must be None or \(mean, sd\) with sd > 0"),
        ({"min_obs": 0}, r"'min_obs' must be an integer >= 1; got 0"),
        ({"device": "tpu"}, r"'device' must be 'cpu' or 'cuda\[:N\]'; got 'tpu'"),
        ({"n_threads": 0}, r"'n_threads' must be None or an integer >= 1; got 0"),
    ],
)
def test_bad_parameters_are_rejected_in_fit(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        GRMCalibrator(**kwargs).fit([0, 1], [0, 0], [0, 1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_prerequisite_error() -> None:
    with pytest.raises(PrerequisiteError, match="CUDA is not available") as exc:
        GRMCalibrator(device="cuda").fit([0, 1], [0, 0], [0, 1])
    assert "--device cpu" in exc.value.hint


def test_bad_data_is_rejected() -> None:
    with pytest.raises(DataError, match="duplicate observation for subject 0, item 'item1'"):
        GRMCalibrator().fit([0, 0, 1], [1, 1, 0], [0, 1, 0])
    with pytest.raises(DataError, match="item 'item0' has a score of 3 but K = 2"):
        GRMCalibrator().fit([0, 1], [0, 0], [3, 0], n_categories=[2])
    with pytest.raises(DataError, match="equal length"):
        GRMCalibrator().fit([0, 1], [0], [1, 0])
    with pytest.raises(DataError, match="score must be non-negative"):
        GRMCalibrator().fit([0, 1], [0, 0], [-1, 0])


def test_thread_count_follows_size_and_free_cores_and_never_changes_the_numbers() -> None:
    """Small fits run on one thread; big ones on as many as torch allows and the load leaves
    free; the fit restores torch's setting and its parameters are bit-identical either way."""
    work = WORK_PER_THREAD
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert choose_threads(1_000, 61, load=0.0) == 1  # too small to pay for a thread
        assert choose_threads(work, 2, load=0.0) == 2
        assert choose_threads(work, 2, load=40.0) == 1  # every core busy
        torch.set_num_threads(1)  # OMP_NUM_THREADS=1 or the user's choice: an upper bound
        assert choose_threads(work, 2, load=0.0) == 1
        torch.set_num_threads(2)
        _a, _b, ks, _, s, i, x = simulate(400, 60, 4, seed=3)
        fits = [GRMCalibrator(n_threads=n).fit(s, i, x, n_categories=ks) for n in (1, 2)]
        assert [f.n_threads_ for f in fits] == [1, 2] and torch.get_num_threads() == 2
        for name in ("a_", "b_", "a_se_", "loglik_"):
            assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name)), name
        assert GRMCalibrator().fit(s, i, x).n_threads_ == 1  # auto: 24k obs × 61 nodes
    finally:
        torch.set_num_threads(before)


def test_not_converged_warns() -> None:
    _a, _b, _ks, _, s, i, x = simulate(200, 10, 2, seed=14)
    with pytest.warns(CalibrationConvergenceWarning, match="did not converge in 1 iterations"):
        cal = GRMCalibrator(max_iter=1).fit(s, i, x)
    assert not cal.converged_
    assert bank_from_calibration(cal, "nc").spec.calibration.converged is False


# ------------------------------------------------------------------------ slow, full size
@pytest.mark.slow
@pytest.mark.parametrize("k", [4, 2])
def test_recovery_2000_subjects_200_items(k: int) -> None:
    a, b, ks, _, s, i, x = simulate(2000, 200, k, seed=20)
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert cal.converged_
    assert corr(a, cal.a_) >= 0.95
    assert corr(b, cal.b_) >= 0.98


@pytest.mark.slow
def test_recovery_sparse_2000_by_200_30_percent() -> None:
    a, b, ks, _, s, i, x = simulate(2000, 200, 4, frac=0.3, seed=21)
    cal = GRMCalibrator().fit(s, i, x, n_categories=ks)
    assert corr(a, cal.a_) >= 0.9
    assert corr(b, cal.b_) >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("priors", ["default", "none"])
def test_long_test_slopes_not_biased(priors: str) -> None:
    # 1,000 subjects x 500 items, K = 4, steep items (median a 1.65): posterior SD ~0.04.
    # The default priors are centred on a = 1, yet must not shrink the common scale.
    a, _b, _ks, _theta, s, i, x = simulate(1000, 500, 4, seed=22, log_a_mean=0.5)
    off = {"prior_a": None, "prior_b": None, "prior_gap": None} if priors == "none" else {}
    cal = GRMCalibrator(compute_se=False, **off).fit(s, i, x)
    rel_bias = float(np.mean(cal.a_ / a - 1))
    assert abs(rel_bias) < 0.04, rel_bias
    assert corr(a, cal.a_) >= 0.95
    assert cal.n_quad_ > 150


@pytest.mark.slow
def test_standard_errors_are_calibrated_across_replications() -> None:
    """Empirical SD of estimates over seeded replications ≈ mean reported SE."""
    r = np.random.default_rng(30)
    n_items, k = 15, 3
    a = np.exp(r.normal(0, 0.3, n_items))
    b = r.normal(0, 1, n_items)[:, None] + np.sort(r.uniform(-1, 1, (n_items, k - 1)), 1)
    est_a, est_b, se_a, se_b = [], [], [], []
    for rep in range(12):
        rr = np.random.default_rng(100 + rep)
        theta = rr.normal(size=800)
        x = sample_responses(theta, a, b, rr)
        s, i = np.nonzero(np.ones_like(x))
        cal = GRMCalibrator(prior_a=None, prior_b=None).fit(s, i, x[s, i])
        est_a.append(cal.a_)
        est_b.append(cal.b_)
        se_a.append(cal.a_se_)
        se_b.append(cal.b_se_)
    ratio_a = np.median(np.std(est_a, axis=0, ddof=1) / np.mean(se_a, axis=0))
    ratio_b = np.median(np.std(est_b, axis=0, ddof=1) / np.mean(se_b, axis=0))
    assert 0.75 < ratio_a < 1.3, ratio_a
    assert 0.75 < ratio_b < 1.3, ratio_b


def _m_step_problem(seed: int) -> tuple:
    """A small M-step problem: 5 items with K = 4, 2, 3, 4, 4 (mask), random counts, all priors."""
    gen = torch.Generator().manual_seed(seed)
    n, k, q = 5, 4, 31
    theta = torch.linspace(-4, 4, q, dtype=torch.float64)
    psi = torch.randn(n, k, dtype=torch.float64, generator=gen) * 0.5
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]).double()
    valid = torch.cat([torch.ones(n, 1, dtype=torch.float64), mask], 1)
    counts = torch.rand(n, k, q, dtype=torch.float64, generator=gen) * valid[:, :, None]
    priors = T.Priors((0.0, 0.5), (0.0, 3.0), 1.0)
    return n, k, q, theta, psi, mask, valid, counts, priors


def test_m_step_gradient_matches_autograd_with_all_priors() -> None:
    n, _k, q, theta, psi, mask, valid, counts, priors = _m_step_problem(0)
    g, fisher = T.score_and_fisher(psi, counts, mask, theta, priors)
    p = psi.clone().requires_grad_()
    obj = (counts * T.log_probs(p, theta, mask)).sum() + T.log_prior(p, mask, priors).sum()
    (g_auto,) = torch.autograd.grad(obj, p)
    torch.testing.assert_close(g * valid, g_auto * valid, rtol=1e-9, atol=1e-9)
    assert bool((torch.linalg.eigvalsh(fisher + torch.diag_embed(1 - valid)) > 0).all())
    probs = T.log_probs(psi, theta, mask).exp() * valid[:, :, None]
    torch.testing.assert_close(probs.sum(1), torch.ones(n, q, dtype=torch.float64))


def test_m_step_hessian_matches_autograd_with_all_priors() -> None:
    n, k, _q, theta, psi, mask, valid, counts, priors = _m_step_problem(1)
    _, _, neg_h = T.score_and_fisher(psi, counts, mask, theta, priors, hessian=True)

    def obj(p: torch.Tensor) -> torch.Tensor:
        p = p.reshape(n, k)
        lp = (counts * T.log_probs(p, theta, mask)).sum()
        return lp + T.log_prior(p, mask, priors).sum()

    full = torch.autograd.functional.hessian(obj, psi.ravel())
    for j in range(n):
        kk = int(valid[j].sum())
        block = -full[j * k : j * k + kk, j * k : j * k + kk]
        torch.testing.assert_close(neg_h[j, :kk, :kk], block, rtol=1e-8, atol=1e-8)
