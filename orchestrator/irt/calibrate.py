"""Marginal maximum likelihood (with weak item priors) calibration of the graded response model.

Model (DESIGN.md): P(X ≥ k | θ) = σ(a(θ − b_k)), k = 1..K−1, θ ~ N(0, 1), no 1.702.
Items may have different K in one bank. Data are sparse long-format index
arrays (subject, item, score); a dense subjects × items matrix is never built.

Why EM (Bock–Aitkin) rather than direct maximisation with autograd
-------------------------------------------------------------------
The marginal likelihood integrates θ over a fixed quadrature grid. Written
with a sparse indicator matrix X (subjects × item-categories, one 1 per
observation), both halves of an EM iteration are one sparse matmul each:

* E-step: ``log L[s, q] = X @ log P[(item, k), q]`` gives every subject's
  log-likelihood at every node; the posterior over nodes follows by a
  log-sum-exp per subject.
* Expected counts: ``r[(item, k), q] = Xᵀ @ posterior``: how many subjects
  are expected at node q among those who gave category k to the item.

Memory is therefore O(observations + subjects × Q + items × K × Q) and time
O(observations × Q) per iteration, with no autograd graph over the
observations (direct maximisation would have to keep several observations × Q
tensors for the backward pass, or chunk and recompute them, and run a
quasi-Newton method over all items' parameters jointly). The M-step separates
into one tiny problem per item (K parameters, items × K × Q numbers,
independent of the number of observations), solved by Fisher scoring with a
per-item line search, vectorised over all items.

EM's known weakness is slow convergence along directions the data barely
identify. The worst one here is the common scale of θ on long tests: with
sharp posteriors, EM changes all slopes and thresholds together only very
slowly (hundreds of iterations, and a premature stop that looked like a −15 %
slope bias in our first version). Each iteration therefore ends with the
PX-EM step (Liu, Rubin & Wu 1998): the subjects' posteriors give the mean
and SD of θ, and the items are re-expressed so that this population is
N(0, 1) again. Fits then converge in about 5–20 iterations.

Parameterisation
----------------
Per item ψ = (log a, b_1, u_2, …, u_{K−1}) with b_k = b_{k−1} + softplus(u_k):
a > 0 and b_1 < … < b_{K−1} hold by construction, for every iterate.
Log category probabilities use
``log P_k = log σ(z_k) + log σ(−z_{k+1}) + log(1 − exp(−a(b_{k+1} − b_k)))``
with z_k = a(θ − b_k), exact without cancellation or flooring.

Priors (on by default, weak)
----------------------------
log a ~ N(μ_a, σ_a²) (a log-normal prior on a, stated on the log scale; its
mode is a = exp(μ_a)); every threshold b_k ~ N(μ_b, σ_b²); and, for K ≥ 3,
a density ∝ gap^α on every gap b_{k+1} − b_k, which keeps a rarely used middle
category from being squeezed to zero probability. Real LLM data have
near-step items and few subjects; without priors slopes run off to 10–100
and the fit predicts held-out responses far worse than item base rates
(``bench/bench_prior_strength.py``). The priors act *within* the θ scale that
the population N(0, 1) fixes: the PX-EM step re-standardises the subjects'
posteriors every iteration, so a prior whose centre does not suit the bank
cannot shrink or stretch the whole scale. (Letting the priors set the scale,
i.e. a plain joint posterior mode, biased all slopes by −25 % on a simulated
1,000 × 500 test: the many items' prior terms outweigh the population's
pull on the scale when items per subject are many.) The estimate is thus the
posterior mode of the items under the constraint that the subjects'
posteriors average to mean 0 and SD 1; without priors it is plain marginal
ML. ``loglik_`` is always the marginal log-likelihood without prior terms.

Quadrature
----------
Rectangle rule on an even grid over [−r, r] (default r = 6), N(0, 1) weights.
The rule is accurate while the spacing h is below the posterior SD of θ; on
long tests (hundreds of items per subject) that SD is ~0.05 while a 61-node
grid has h = 0.2 (DESIGN.md measured a −0.23 slope bias with mirt at 61 nodes).
In our runs (``bench/bench_recovery.py``, 1,000 × 500, K = 4) the grid barely
moved the slopes once PX-EM was in place (relative bias −0.2 / +2.8 / +3.0 %
with 21 / 61 / 234 nodes, sample θ SD 1.022), so mirt's bias was probably
EM's crawl more than quadrature; the grid still sets the accuracy of the
log-likelihood and of the posteriors behind the SEs, and refining it is cheap. With
``n_quad="auto"`` (default) the fit starts on 61 nodes and, once nearly
converged, computes each subject's posterior SD from the test information at
its EAP, 1/√(1 + Σ I_j(θ̂)); if the grid spacing exceeds ``quad_ratio`` × the
5th percentile of those SDs, the grid is refined to that spacing (at most
``max_quad`` nodes) and EM continues from the current parameters. The grid
actually used is reported (``n_quad_``).

Standard errors
---------------
Observed information by Louis's identity, per item block, in η = (a, b_1..):

    I_j = −Σ_s E_s[∂²log P] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ − ∂² log prior

with g = ∂ log P(x | θ)/∂η_j and E_s the posterior expectation over subject
s's θ. Since ∂²log P = ∂²P/P − g gᵀ, the first two sums collapse to
−Σ r ∂²P/P over the expected counts (items × K × Q, closed-form GRM
derivatives); the third takes one chunked pass over the observations. A
test checks the blocks against autograd's Hessian of the marginal log
posterior. This is the exact observed information restricted to each item's
block; cross-item blocks (coupled only through θ) are ignored, because
inverting the full (items·K)² matrix is infeasible for large banks and the
coupling is weak with many subjects. The cross-product (XPD) alternative
needs no second derivatives but is noisy and biased in small samples, which
is where SEs matter most. The SEs include the prior's curvature, so with few
subjects they are approximate posterior SDs, and they do not include the
uncertainty of the common θ scale. Replications on simulated data
(``tests/test_calibrate.py``, slow) check them against the empirical spread.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch.nn.functional import softplus

from orchestrator.errors import (
    CalibrationConvergenceWarning,
    CalibrationError,
    ConfigError,
    DataError,
    NotFittedError,
    PrerequisiteError,
)
from orchestrator.irt._calibration_defaults import (
    DEFAULT_PRIOR_A,
    DEFAULT_PRIOR_B,
    DEFAULT_PRIOR_GAP,
)

if TYPE_CHECKING:  # bank.py imports irt.grm; imported lazily in to_bank
    from orchestrator.bank import ItemBank

__all__ = ["METHOD", "GRMCalibrator", "IterationInfo", "format_progress"]

METHOD = "mml-em"
"""Method name written to ``bank.json`` (``calibration.method``)."""

_AUTO_START = 61
_SE_CHUNK_ELEMS = 4_000_000  # observations × Q × K per chunk in the SE pass
_ITEM_CHUNK_ELEMS = 2_000_000  # items × K × Q per vmap chunk (M-step, SEs)
_MAX_NEWTON = 4
_LINE_SEARCH = 12
_MAX_STEP = 2.0  # largest Newton step per parameter (log a, b, u units)
_MIN_GAP = 1e-9

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class IterationInfo:
    """What a progress callback receives after every EM iteration."""

    iteration: int
    """1-based EM iteration."""
    loglik: float
    """Marginal log-likelihood at the parameters entering this iteration."""
    logpost: float
    """``loglik`` plus the log prior density (what EM increases)."""
    change: float
    """Largest parameter change of this iteration on the (log a, b) scale."""
    n_quad: int
    """Quadrature nodes in use."""
    elapsed: float
    """Seconds since ``fit`` started."""


ProgressCallback = Callable[[IterationInfo], None]
_PARAM_NAMES = (
    "n_quad",
    "quad_range",
    "quad_ratio",
    "max_quad",
    "max_iter",
    "tol",
    "prior_a",
    "prior_b",
    "prior_gap",
    "min_obs",
    "compute_se",
    "device",
    "verbose",
    "progress",
)


class GRMCalibrator:
    """Estimate GRM item parameters from sparse responses (scikit-learn style).

    ``__init__`` only stores its arguments; :meth:`fit` validates them and
    learns attributes ending in ``_``.

    Args:
        n_quad: Quadrature nodes on [−quad_range, quad_range], or ``"auto"``
            (start at 61, refine while the grid is coarser than the subjects'
            posterior SDs; see the module docstring).
        quad_range: Half-width of the θ grid.
        quad_ratio: With ``"auto"``: target spacing as a multiple of the 5th
            percentile of the subjects' posterior SDs.
        max_quad: With ``"auto"``: upper bound on the number of nodes.
        max_iter: Maximum EM iterations (all grids together).
        tol: Convergence when no item's log a or b_k moves more than this in
            one iteration.
        prior_a: ``(μ, σ)`` of the normal prior on log a, or None.
        prior_b: ``(μ, σ)`` of the normal prior on every threshold, or None.
        prior_gap: α ≥ 0 of a gap^α prior on each b_{k+1} − b_k (K ≥ 3), or None.
            It keeps a middle category that few or no subjects gave from
            collapsing to zero probability (which would make one such answer
            in a live session an almost impossible event).
        min_obs: Items with fewer observations are excluded (reported in
            ``excluded_``), as are items with a single observed category.
        compute_se: Compute standard errors (one extra pass over the data).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        verbose: Print one progress line per iteration to stderr.
        progress: Called with an :class:`IterationInfo` after every iteration.

    Attributes (after ``fit``):
        item_ids_: Ids of the fitted items (excluded items left out).
        item_index_: Their positions in the item numbering given to ``fit``.
        n_categories_: K per fitted item.
        a_, b_: Slopes ``(n,)`` and thresholds ``(n, K_max − 1)`` padded with +inf.
        a_se_, b_se_: Standard errors (NaN where the information is singular;
            ``b_se_`` padded with NaN).
        loglik_: Marginal log-likelihood at the solution (without priors).
        logpost_: ``loglik_`` + log prior density.
        n_iter_, converged_, wall_time_, device_, n_quad_: Fit diagnostics.
        n_subjects_, n_observations_: Data used (after exclusions).
        excluded_: One dict per excluded item: ``id``, ``reason``, ``n_obs``.
        unobserved_categories_: ``{item id: [k, …]}`` for fitted items with a
            category nobody gave (its threshold rests on the prior).
        collapsed_categories_: ``{item id: {k: n_obs}}`` for middle categories
            that were observed but that the fit leaves below 2 % probability at
            every θ (nearly merged thresholds): usually categories out of order
            with respect to θ; consider merging them with a neighbour.
        history_: One :class:`IterationInfo` per iteration.
    """

    def __init__(
        self,
        *,
        n_quad: int | Literal["auto"] = "auto",
        quad_range: float = 6.0,
        quad_ratio: float = 1.0,
        max_quad: int = 1001,
        max_iter: int = 2000,
        tol: float = 1e-4,
        prior_a: tuple[float, float] | None = DEFAULT_PRIOR_A,
        prior_b: tuple[float, float] | None = DEFAULT_PRIOR_B,
        prior_gap: float | None = DEFAULT_PRIOR_GAP,
        min_obs: int = 5,
        compute_se: bool = True,
        device: str = "cpu",
        verbose: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.n_quad = n_quad
        self.quad_range = quad_range
        self.quad_ratio = quad_ratio
        self.max_quad = max_quad
        self.max_iter = max_iter
        self.tol = tol
        self.prior_a = prior_a
        self.prior_b = prior_b
        self.prior_gap = prior_gap
        self.min_obs = min_obs
        self.compute_se = compute_se
        self.device = device
        self.verbose = verbose
        self.progress = progress

    # ------------------------------------------------------------------ params
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, as scikit-learn's ``get_params`` returns them."""
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    def _check_params(self) -> torch.device:
        def bad(name: str, rule: str) -> ConfigError:
            return ConfigError(
                f"GRMCalibrator parameter {name!r} {rule}; got {getattr(self, name)!r}"
            )

        if not (self.n_quad == "auto" or (isinstance(self.n_quad, int) and self.n_quad >= 11)):
            raise bad("n_quad", "must be an integer >= 11 or 'auto'")
        if not (isinstance(self.max_quad, int) and self.max_quad >= _AUTO_START):
            raise bad("max_quad", f"must be an integer >= {_AUTO_START}")
        if not (math.isfinite(self.quad_range) and self.quad_range >= 3):
            raise bad("quad_range", "must be a finite number >= 3")
        if not (math.isfinite(self.quad_ratio) and self.quad_ratio > 0):
            raise bad("quad_ratio", "must be > 0")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise bad("max_iter", "must be an integer >= 1")
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise bad("tol", "must be > 0")
        if not (isinstance(self.min_obs, int) and self.min_obs >= 1):
            raise bad("min_obs", "must be an integer >= 1")
        if self.prior_gap is not None and not (
            isinstance(self.prior_gap, (int, float))
            and math.isfinite(self.prior_gap)
            and self.prior_gap >= 0
        ):
            raise bad("prior_gap", "must be None or a number >= 0")
        for name in ("prior_a", "prior_b"):
            p = getattr(self, name)
            if p is None:
                continue
            ok = isinstance(p, Sequence) and len(p) == 2
            ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)
            if not ok or p[1] <= 0:
                raise bad(name, "must be None or (mean, sd) with sd > 0")
        return _resolve_device(self.device)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        subject_idx: ArrayLike,
        item_idx: ArrayLike,
        score: ArrayLike,
        *,
        n_categories: ArrayLike | None = None,
        item_ids: Sequence[str] | None = None,
        n_subjects: int | None = None,
    ) -> GRMCalibrator:
        """Fit item parameters to observed ``(subject, item, score)`` triples.

        Args:
            subject_idx, item_idx, score: One entry per observation (integers;
                scores 0..K−1, higher = better/safer).
            n_categories: K per item (length = number of items). Default:
                highest observed score + 1 (at least 2). Give it when a top
                category may be unobserved, or the bank will lack it.
            item_ids: Item names (default ``item0``, ``item1``, …).
            n_subjects: Number of subjects (default ``max(subject_idx) + 1``).

        Raises:
            ConfigError: a constructor argument is invalid.
            PrerequisiteError: CUDA requested but not available.
            DataError: inconsistent arrays, duplicate pairs, scores ≥ K.
            CalibrationError: no item can be fitted.
        """
        dev = self._check_params()
        t0 = time.perf_counter()
        prob = _prepare(subject_idx, item_idx, score, n_categories, item_ids, n_subjects, self)
        self.excluded_ = prob.excluded
        if prob.n_items == 0:
            raise CalibrationError(
                f"no item can be calibrated: all {len(prob.excluded)} items were excluded "
                f"(e.g. {prob.excluded[0]['id']!r}: {prob.excluded[0]['reason']})",
                hint="items need at least min_obs observations and two observed categories",
            )
        model = _Model(prob, self, dev)
        psi = model.initial_psi()
        n_q = _AUTO_START if self.n_quad == "auto" else int(self.n_quad)
        grid = model.make_grid(n_q)
        history: list[IterationInfo] = []
        converged = False
        checked = False
        regrids = 0
        it = 0
        while it < self.max_iter:
            it += 1
            post_stats = model.e_step(psi, grid)
            new_psi = model.m_step(psi, post_stats.counts, grid)
            m1, m2 = post_stats.theta_m1, post_stats.theta_m2
            new_psi = model.rescale(new_psi, m1, math.sqrt(max(m2 - m1 * m1, 1e-12)))
            change = model.change(psi, new_psi)
            info = IterationInfo(
                iteration=it,
                loglik=post_stats.loglik,
                logpost=post_stats.loglik + model.log_prior(psi),
                change=change,
                n_quad=grid.n,
                elapsed=time.perf_counter() - t0,
            )
            history.append(info)
            self._report(info)
            psi = new_psi
            # auto quadrature: once nearly converged on a grid (and again at convergence),
            # refine it if it is coarser than the subjects' posterior SDs
            near = change < math.sqrt(self.tol) and not checked
            if self.n_quad == "auto" and (near or change < self.tol) and regrids < 4:
                checked = True
                n_new = model.needed_nodes(psi, grid, model.e_step(psi, grid))
                if n_new > grid.n:
                    grid = model.make_grid(n_new)
                    regrids += 1
                    checked = False
                    continue
            if change < self.tol:
                converged = True
                break
        final = model.e_step(psi, grid, keep_posterior=self.compute_se)
        self._set_results(model, psi, grid, final, history, converged, t0, dev)
        if not converged:
            warnings.warn(
                f"GRM calibration did not converge in {self.max_iter} iterations "
                f"(last parameter change {history[-1].change:.2e} > tol {self.tol:g}); "
                "raise max_iter or loosen tol",
                CalibrationConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _report(self, info: IterationInfo) -> None:
        if self.progress is not None:
            self.progress(info)
        if self.verbose:
            print(format_progress(info), file=sys.stderr, flush=True)

    def _set_results(
        self,
        model: _Model,
        psi: torch.Tensor,
        grid: _Grid,
        final: _EStep,
        history: list[IterationInfo],
        converged: bool,
        t0: float,
        dev: torch.device,
    ) -> None:
        prob = model.prob
        a, b = model.natural(psi)
        self.item_ids_ = list(prob.item_ids)
        self.item_index_ = prob.item_index.copy()
        self.n_categories_ = prob.k.copy()
        self.a_ = a
        self.b_ = b
        if self.compute_se:
            self.a_se_, self.b_se_ = model.standard_errors(psi, grid, final)
        else:
            self.a_se_ = np.full_like(a, np.nan)
            self.b_se_ = np.where(np.isfinite(b), np.nan, np.nan)
        self.loglik_ = final.loglik
        self.logpost_ = final.loglik + model.log_prior(psi)
        self.n_iter_ = len(history)
        self.converged_ = converged
        self.n_quad_ = grid.n
        self.history_ = history
        self.n_subjects_ = prob.n_subjects_used
        self.n_observations_ = prob.n_obs
        self.unobserved_categories_ = prob.unobserved
        self.collapsed_categories_ = _collapsed_categories(a, b, prob)
        self.device_ = str(dev)
        self.wall_time_ = time.perf_counter() - t0

    # ------------------------------------------------------------------ output
    def _check_fitted(self) -> None:
        if not hasattr(self, "a_"):
            raise NotFittedError(
                "this GRMCalibrator is not fitted yet; call fit(subject_idx, item_idx, score) "
                "before to_bank() or summary()"
            )

    def calibration_details(self) -> dict[str, Any]:
        """Settings and diagnostics for ``bank.json``'s ``calibration.details``."""
        self._check_fitted()
        prior = {
            "log_a": (
                {"dist": "normal", "mean": self.prior_a[0], "sd": self.prior_a[1]}
                if self.prior_a
                else None
            ),
            "b": (
                {"dist": "normal", "mean": self.prior_b[0], "sd": self.prior_b[1]}
                if self.prior_b
                else None
            ),
            "threshold_gap": (
                {"dist": "gap^alpha (b_{k+1} - b_k)", "alpha": self.prior_gap}
                if self.prior_gap
                else None
            ),
            "theta": {"dist": "normal", "mean": 0.0, "sd": 1.0},
            "estimate": (
                "MAP (posterior mode)" if (self.prior_a or self.prior_b or self.prior_gap) else "ML"
            ),
        }
        return {
            "model": "GRM P(X>=k|theta)=sigmoid(a(theta-b_k)), no 1.702",
            "algorithm": "Bock-Aitkin EM + PX-EM standardisation of theta, Fisher-scoring "
            "M-step per item",
            "item_priors": prior,
            "quadrature": {
                "rule": "rectangle, even grid, N(0,1) weights",
                "range": [-self.quad_range, self.quad_range],
                "requested": self.n_quad,
                "nodes": self.n_quad_,
                "auto_ratio": self.quad_ratio if self.n_quad == "auto" else None,
            },
            "tol": self.tol,
            "max_iter": self.max_iter,
            "min_obs": self.min_obs,
            "log_posterior": self.logpost_,
            "standard_errors": (
                "observed information (Louis), per-item blocks, incl. prior curvature"
                if self.compute_se
                else None
            ),
            "unobserved_categories": self.unobserved_categories_,
            "collapsed_categories": self.collapsed_categories_,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready fit statistics."""
        self._check_fitted()
        return {
            "n_items": len(self.item_ids_),
            "n_excluded": len(self.excluded_),
            "n_subjects": self.n_subjects_,
            "n_observations": self.n_observations_,
            "log_likelihood": self.loglik_,
            "iterations": self.n_iter_,
            "converged": self.converged_,
            "wall_time_s": self.wall_time_,
            "device": self.device_,
            "n_quad": self.n_quad_,
        }

    def to_bank(
        self,
        name: str,
        *,
        source: str | None = None,
        source_sha256: str | None = None,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        item_labels: Mapping[str, Sequence[str]] | None = None,
        scale_labels: Sequence[str] | None = None,
        description: str = "",
        extra_details: Mapping[str, Any] | None = None,
    ) -> ItemBank:
        """Build a validated :class:`~orchestrator.bank.ItemBank` with provenance.

        Args:
            name: Bank name.
            source, source_sha256: The response file and its hash (provenance).
            tags: Content tags per item id (items without an entry get none).
            item_labels: Category labels per item id where they differ from the scale.
            scale_labels: Labels of categories 0..K_max−1.
            description: Free text for ``bank.json``.
            extra_details: Merged into ``calibration.details``.

        Raises:
            NotFittedError: :meth:`fit` has not been called.
        """
        self._check_fitted()
        from orchestrator import __version__
        from orchestrator.bank import Calibration, ItemBank

        details = self.calibration_details()
        details.update(extra_details or {})
        cal = Calibration(
            status="calibrated",
            method=METHOD,
            data=source,
            data_sha256=source_sha256,
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            n_subjects=self.n_subjects_,
            n_observations=self.n_observations_,
            log_likelihood=self.loglik_,
            iterations=self.n_iter_,
            converged=self.converged_,
            wall_time_s=round(self.wall_time_, 3),
            device=self.device_,
            software=f"agentcat {__version__}; torch {torch.__version__}",
            excluded_items=list(self.excluded_),
            details=_json_safe(details),
        )
        return ItemBank.from_params(
            name,
            self.item_ids_,
            self.a_,
            self.b_,
            a_se=self.a_se_,
            b_se=self.b_se_,
            calibration=cal,
            tags=[dict((tags or {}).get(i, {})) for i in self.item_ids_],
            item_labels=[
                list(item_labels[i]) if item_labels and i in item_labels else None
                for i in self.item_ids_
            ],
            scale_labels=scale_labels,
            description=description,
        )


def _collapsed_categories(
    a: FloatArray, b: FloatArray, prob: _Problem
) -> dict[str, dict[str, int]]:
    """Observed middle categories that the fit squeezes below 2 % probability at every θ.

    A middle category k peaks at tanh(a(b_{k+1} − b_k)/4) (midway between its
    thresholds); when subjects gave it but the fit leaves it almost no room,
    it is out of order with respect to θ.
    """
    out: dict[str, dict[str, int]] = {}
    if b.shape[1] < 2:
        return out
    with np.errstate(invalid="ignore"):
        peak = np.tanh(a[:, None] * (b[:, 1:] - b[:, :-1]) / 4)
    counts = prob.category_counts[:, 1:-1]  # categories 1..K_max−2 sit between thresholds
    for j, t in zip(*np.nonzero((peak < 0.02) & (counts > 0)), strict=True):  # flagged only
        out.setdefault(prob.item_ids[j], {})[str(t + 1)] = int(counts[j, t])
    return out


def format_progress(info: IterationInfo) -> str:
    """One human-readable progress line."""
    return (
        f"iter {info.iteration:4d}  loglik {info.loglik:,.3f}  change {info.change:.2e}  "
        f"nodes {info.n_quad}  {info.elapsed:.1f}s"
    )


# =============================================================================== internals
def _resolve_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"GRMCalibrator parameter 'device' must be 'cpu' or 'cuda[:N]'; got {device!r}"
        ) from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"GRMCalibrator parameter 'device' must be 'cpu' or 'cuda[:N]'; got {device!r}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PrerequisiteError(
            f"device {device!r} requested but CUDA is not available to torch "
            f"{torch.__version__} on this machine",
            hint="use --device cpu (the default), or install a CUDA build of torch on a GPU host",
        )
    return dev


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


@dataclass(frozen=True)
class _Priors:
    """Item priors: normal on log a, normal on each b_k, gap^α on each b_{k+1} − b_k."""

    a: tuple[float, float] | None
    b: tuple[float, float] | None
    gap: float | None

    @property
    def any(self) -> bool:
        return self.a is not None or self.b is not None or bool(self.gap)


@dataclass
class _Problem:
    """Data after validation and exclusions, in fitted-item numbering."""

    item_ids: list[str]
    item_index: IntArray  # fitted item -> original item number
    k: IntArray  # K per fitted item
    subject: IntArray  # per observation (kept observations only)
    item: IntArray  # fitted item per observation
    score: IntArray
    n_subjects: int
    n_subjects_used: int
    excluded: list[dict[str, Any]]
    unobserved: dict[str, list[int]]
    category_counts: IntArray  # (fitted items, K_max) observations per category

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_obs(self) -> int:
        return int(self.score.shape[0])


def _as_int_array(x: ArrayLike, name: str) -> IntArray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional; got shape {arr.shape}")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)))
    ):
        raise DataError(f"{name} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _prepare(
    subject_idx: ArrayLike,
    item_idx: ArrayLike,
    score: ArrayLike,
    n_categories: ArrayLike | None,
    item_ids: Sequence[str] | None,
    n_subjects: int | None,
    est: GRMCalibrator,
) -> _Problem:
    s = _as_int_array(subject_idx, "subject_idx")
    i = _as_int_array(item_idx, "item_idx")
    x = _as_int_array(score, "score")
    if not (len(s) == len(i) == len(x)):
        raise DataError(
            f"subject_idx, item_idx and score must have equal length; "
            f"got {len(s)}, {len(i)}, {len(x)}"
        )
    if len(x) == 0:
        raise DataError("no observations to calibrate on")
    for arr, name in ((s, "subject_idx"), (i, "item_idx"), (x, "score")):
        if arr.min() < 0:
            raise DataError(f"{name} must be non-negative; found {int(arr.min())}")
    n_items = len(item_ids) if item_ids is not None else int(i.max()) + 1
    if int(i.max()) >= n_items:
        raise DataError(f"item_idx {int(i.max())} is out of range for {n_items} item ids")
    n_subj = int(s.max()) + 1 if n_subjects is None else int(n_subjects)
    if int(s.max()) >= n_subj:
        raise DataError(f"subject_idx {int(s.max())} is out of range for {n_subj} subjects")
    ids = [f"item{j}" for j in range(n_items)] if item_ids is None else [str(v) for v in item_ids]
    pair = s * n_items + i
    sorted_pair = np.sort(pair)
    dup = np.flatnonzero(sorted_pair[1:] == sorted_pair[:-1])
    if dup.size:
        p = int(sorted_pair[dup[0]])
        raise DataError(
            f"duplicate observation for subject {p // n_items}, item {ids[p % n_items]!r}",
            hint="keep one observation per (subject, item) pair",
        )
    n_obs_item = np.bincount(i, minlength=n_items)
    max_score = np.full(n_items, -1, dtype=np.int64)
    np.maximum.at(max_score, i, x)
    if n_categories is None:
        k = np.maximum(max_score + 1, 2)
    else:
        k = _as_int_array(n_categories, "n_categories")
        if len(k) != n_items:
            raise DataError(f"n_categories has {len(k)} entries for {n_items} items")
        bad = np.flatnonzero((max_score >= k) & (n_obs_item > 0))
        if bad.size:
            j = int(bad[0])
            raise DataError(
                f"item {ids[j]!r} has a score of {int(max_score[j])} but K = {int(k[j])} "
                f"(scores must be 0..{int(k[j]) - 1})",
                hint="check n_categories for this item or the scores in the data",
            )
        low = np.flatnonzero(k < 2)
        if low.size:
            raise DataError(f"item {ids[int(low[0])]!r} has K = {int(k[low[0]])}; K must be >= 2")
    k_max = int(k.max())
    # observed categories per item: one bincount over item * k_max + score
    cat_counts = np.bincount(i * k_max + x, minlength=n_items * k_max).reshape(n_items, k_max)
    seen = cat_counts > 0
    n_seen = seen.sum(axis=1)
    excluded: list[dict[str, Any]] = []
    keep = np.ones(n_items, dtype=bool)
    for j in np.flatnonzero((n_obs_item < est.min_obs) | (n_seen < 2)):  # excluded items only
        j = int(j)
        keep[j] = False
        if n_obs_item[j] == 0:
            reason = "no observations"
        elif n_obs_item[j] < est.min_obs:
            reason = f"fewer than min_obs = {est.min_obs} observations"
        else:
            only = int(np.flatnonzero(seen[j])[0])
            reason = f"single observed category (every score = {only})"
        excluded.append({"id": ids[j], "reason": reason, "n_obs": int(n_obs_item[j])})
    item_index = np.flatnonzero(keep)
    new_number = np.full(n_items, -1, dtype=np.int64)
    new_number[item_index] = np.arange(len(item_index))
    kept_obs = keep[i]
    unobserved = {
        ids[j]: [int(c) for c in np.flatnonzero(~seen[j, : k[j]])]
        for j in item_index
        if not seen[j, : k[j]].all()
    }
    return _Problem(
        item_ids=[ids[j] for j in item_index],
        item_index=item_index,
        k=k[item_index],
        subject=s[kept_obs],
        item=new_number[i[kept_obs]],
        score=x[kept_obs],
        n_subjects=n_subj,
        n_subjects_used=int(np.unique(s[kept_obs]).size),
        excluded=excluded,
        unobserved=unobserved,
        category_counts=cat_counts[item_index],
    )


@dataclass
class _Grid:
    theta: torch.Tensor  # (Q,)
    log_w: torch.Tensor  # (Q,) log N(0,1) weights, normalised

    @property
    def n(self) -> int:
        return int(self.theta.shape[0])

    @property
    def spacing(self) -> float:
        return float(self.theta[1] - self.theta[0])


@dataclass
class _EStep:
    loglik: float
    counts: torch.Tensor  # (items, K_max, Q) expected counts
    posterior: torch.Tensor | None  # (subjects, Q) when kept
    theta_m1: float  # mean of E_s[θ] and of E_s[θ²] over the subjects (PX-EM)
    theta_m2: float


def _csr(rows: IntArray, cols: IntArray, shape: tuple[int, int], dev: torch.device) -> torch.Tensor:
    """0/1 CSR matrix with ones at (rows, cols); duplicates are impossible here."""
    order = np.lexsort((cols, rows))
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(np.ascontiguousarray(cols[order])),
            torch.ones(len(rows), dtype=torch.float64),
            size=shape,
            check_invariants=False,
        ).to(dev)


class _Model:
    """Arrays on the device and the per-item math (log-probabilities, M-step, SEs)."""

    def __init__(self, prob: _Problem, est: GRMCalibrator, dev: torch.device) -> None:
        self.prob = prob
        self.est = est
        self.dev = dev
        self.k_max = int(prob.k.max())
        n, km = prob.n_items, self.k_max
        col = prob.item * km + prob.score
        self.X = _csr(prob.subject, col, (prob.n_subjects, n * km), dev)
        self.XT = _csr(col, prob.subject, (n * km, prob.n_subjects), dev)
        k = torch.from_numpy(prob.k).to(dev)
        # thr_mask[j, t] = 1 when threshold t + 1 exists for item j (t = 0..K_max−2)
        self.thr_mask = (torch.arange(km - 1, device=dev)[None, :] < (k[:, None] - 1)).double()
        # parameter mask: log a and b_1 always; u_t for t ≥ 2 when threshold t exists
        self.par_mask = torch.cat(
            [torch.ones(n, 1, dtype=torch.float64, device=dev), self.thr_mask], dim=1
        )
        self.n_obs_subject = torch.from_numpy(
            np.bincount(prob.subject, minlength=prob.n_subjects)
        ).to(dev)
        pa, pb, pg = est.prior_a, est.prior_b, est.prior_gap
        self.priors = _Priors(
            None if pa is None else (float(pa[0]), float(pa[1])),
            None if pb is None else (float(pb[0]), float(pb[1])),
            None if not pg else float(pg),
        )

    # -- grid ---------------------------------------------------------------
    def make_grid(self, n: int) -> _Grid:
        r = self.est.quad_range
        theta = torch.linspace(-r, r, n, dtype=torch.float64, device=self.dev)
        lw = -0.5 * theta**2
        return _Grid(theta, lw - torch.logsumexp(lw, 0))

    def needed_nodes(self, psi: torch.Tensor, grid: _Grid, stats: _EStep) -> int:
        """Nodes for spacing ≤ quad_ratio × 5th percentile of subjects' posterior SDs."""
        assert stats.posterior is not None
        eap = stats.posterior @ grid.theta
        node = torch.clamp(torch.round((eap - grid.theta[0]) / grid.spacing).long(), 0, grid.n - 1)
        info = self.item_information(psi, grid.theta)  # (items, Q)
        subj = torch.from_numpy(self.prob.subject).to(self.dev)
        itm = torch.from_numpy(self.prob.item).to(self.dev)
        test_info = torch.zeros(self.prob.n_subjects, dtype=torch.float64, device=self.dev)
        test_info.index_add_(0, subj, info[itm, node[subj]])
        used = self.n_obs_subject > 0
        sd = 1.0 / torch.sqrt(1.0 + test_info[used])
        h = self.est.quad_ratio * float(torch.quantile(sd, 0.05))
        if grid.spacing <= h * 1.05:
            return grid.n
        n = math.ceil(2 * self.est.quad_range / h) + 1
        return min(max(n, grid.n), self.est.max_quad)

    # -- parameters -----------------------------------------------------------
    def initial_psi(self) -> torch.Tensor:
        """log a = 0; thresholds from each item's cumulative category shares."""
        prob, km = self.prob, self.k_max
        counts = np.zeros((prob.n_items, km))
        np.add.at(counts, (prob.item, prob.score), 1.0)
        tail = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # n(X >= k)
        p = np.clip(tail[:, 1:] / tail[:, :1], 0.02, 0.98)
        b = -np.log(p / (1 - p)) * math.sqrt(1 + math.pi / 8)
        thr = np.arange(km - 1)[None, :] < (prob.k[:, None] - 1)
        b = np.where(thr, b, 0.0)
        gaps = np.maximum(np.diff(b, axis=1), 0.1)
        u = np.log(np.expm1(gaps))
        psi = np.concatenate([np.zeros((prob.n_items, 1)), b[:, :1], u], axis=1)
        psi[:, 2:] = np.where(thr[:, 1:], psi[:, 2:], 0.0)
        return torch.from_numpy(psi).to(self.dev)

    def natural(self, psi: torch.Tensor) -> tuple[FloatArray, FloatArray]:
        a = torch.exp(psi[:, 0])
        b = torch.where(self.thr_mask > 0, _thresholds(psi), torch.inf)
        return a.cpu().numpy(), b.cpu().numpy()

    def change(self, old: torch.Tensor, new: torch.Tensor) -> float:
        d_loga = (new[:, 0] - old[:, 0]).abs()
        d_b = ((_thresholds(new) - _thresholds(old)).abs() * self.thr_mask).amax(dim=1)
        return float(torch.maximum(d_loga, d_b).max())

    def log_prior(self, psi: torch.Tensor) -> float:
        return float(_log_prior(psi, self.thr_mask, self.priors).sum())

    # -- E-step ---------------------------------------------------------------
    def e_step(self, psi: torch.Tensor, grid: _Grid, keep_posterior: bool = True) -> _EStep:
        lp = _log_probs(psi, grid.theta, self.thr_mask)  # (items, K, Q)
        loglik_sq = self.X @ lp.reshape(-1, grid.n)  # (subjects, Q)
        joint = loglik_sq + grid.log_w
        ls = torch.logsumexp(joint, dim=1, keepdim=True)
        post = torch.exp(joint - ls)
        counts = (self.XT @ post).reshape(self.prob.n_items, self.k_max, grid.n)
        used = post[self.n_obs_subject > 0]
        m1 = float((used @ grid.theta).mean())
        m2 = float((used @ grid.theta**2).mean())
        return _EStep(float(ls.sum()), counts, post if keep_posterior else None, m1, m2)

    def rescale(self, psi: torch.Tensor, mean: float, sd: float) -> torch.Tensor:
        """PX-EM reduction: items for θ ~ N(mean, sd²) re-expressed for θ ~ N(0, 1).

        θ' = (θ − mean)/sd gives a' = a·sd and b' = (b − mean)/sd, with mean and
        sd the moments of the subjects' posteriors. The likelihood is unchanged by
        this map, but EM alone moves along it very slowly on long tests (the θ
        scale is nearly all "missing information" when posteriors are sharp);
        re-standardising every iteration removes that crawl (Liu, Rubin & Wu 1998).
        """
        return self._rescaled(psi, mean, sd)

    def _rescaled(
        self, psi: torch.Tensor, mean: torch.Tensor | float, sd: torch.Tensor | float
    ) -> torch.Tensor:
        sd_t = torch.as_tensor(sd, dtype=psi.dtype, device=psi.device)
        cols = [psi[:, :1] + torch.log(sd_t), (psi[:, 1:2] - mean) / sd_t]
        if psi.shape[1] > 2:
            gaps = softplus(psi[:, 2:]) / sd_t
            u = gaps + torch.log(-torch.expm1(-torch.clamp(gaps, min=_MIN_GAP)))
            cols.append(torch.where(self.thr_mask[:, 1:] > 0, u, psi[:, 2:]))
        return torch.cat(cols, dim=1)

    # -- M-step ---------------------------------------------------------------
    def m_step(self, psi: torch.Tensor, counts: torch.Tensor, grid: _Grid) -> torch.Tensor:
        """A few safeguarded Newton steps per item on the expected complete-data log posterior."""
        out = psi.clone()
        chunk = max(1, _ITEM_CHUNK_ELEMS // (self.k_max * grid.n))
        for lo in range(0, self.prob.n_items, chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = self._newton(psi[sl], counts[sl], self.thr_mask[sl], grid.theta)
        return out

    def _objective(
        self, psi: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor, theta: torch.Tensor
    ) -> torch.Tensor:
        lp = _log_probs(psi, theta, mask)
        return (counts * lp).sum(dim=(1, 2)) + _log_prior(psi, mask, self.priors)

    def _newton(
        self, psi: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor, theta: torch.Tensor
    ) -> torch.Tensor:
        """Fisher scoring with a per-item backtracking line search (monotone: a GEM step)."""
        pmask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        f_old = self._objective(psi, counts, mask, theta)
        for _ in range(_MAX_NEWTON):
            g, fisher, neg_h = _score_and_fisher(
                psi, counts, mask, theta, self.priors, hessian=True
            )
            g = g * pmask
            eye = torch.diag_embed(1.0 - pmask)  # masked parameters stay put
            neg_h = neg_h * pmask[:, :, None] * pmask[:, None, :] + eye
            fisher = fisher * pmask[:, :, None] * pmask[:, None, :] + eye
            # Newton where the objective is locally concave, Fisher scoring elsewhere
            chol_h, bad_h = torch.linalg.cholesky_ex(neg_h)
            chol_f, bad_f = torch.linalg.cholesky_ex(fisher)
            newton = torch.cholesky_solve(g[..., None], chol_h)[..., 0]
            scoring = torch.cholesky_solve(g[..., None], chol_f)[..., 0]
            step = torch.where((bad_h == 0)[:, None], newton, scoring)
            step = torch.where(((bad_h != 0) & (bad_f != 0))[:, None], g, step)
            step = step * torch.clamp(_MAX_STEP / step.abs().amax(1, keepdim=True), max=1.0)
            # items whose predicted gain is at rounding level are done (no futile line search)
            done = (g * step).sum(1) <= 1e-12 * (1.0 + f_old.abs())
            if bool(done.all()):
                break
            accepted = done.clone()
            new = psi.clone()
            f_new = f_old.clone()
            t = 1.0
            for _ls in range(_LINE_SEARCH):
                cand = psi + t * step
                f_c = self._objective(cand, counts, mask, theta)
                ok = (~accepted) & torch.isfinite(f_c) & (f_c >= f_old)
                new[ok] = cand[ok]
                f_new[ok] = f_c[ok]
                accepted |= ok
                if bool(accepted.all()):
                    break
                t *= 0.5
            moved = float((new - psi).abs().amax())
            psi, f_old = new, f_new
            if moved < 1e-9:
                break
        return psi

    # -- information --------------------------------------------------------------
    def item_information(self, psi: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Fisher information of every item at every node, (items, Q)."""
        a = torch.exp(psi[:, 0])[:, None, None]
        z = a * (theta - _thresholds(psi)[:, :, None])
        pstar = torch.sigmoid(z) * self.thr_mask[:, :, None]
        w = pstar * (1 - pstar)
        w_full = torch.nn.functional.pad(w, (0, 0, 1, 1))
        dprob = w_full[:, :-1] - w_full[:, 1:]
        probs = torch.exp(_log_probs(psi, theta, self.thr_mask))
        k = torch.arange(self.k_max, device=self.dev)[None, :, None]
        valid = k < torch.from_numpy(self.prob.k).to(self.dev)[:, None, None]
        ratio = torch.where(valid & (probs > 1e-300), dprob**2 / probs.clamp_min(1e-300), 0.0)
        return a[:, :, 0] ** 2 * ratio.sum(dim=1)

    def standard_errors(
        self, psi: torch.Tensor, grid: _Grid, stats: _EStep
    ) -> tuple[FloatArray, FloatArray]:
        """SEs of a and b from the Louis observed information per item (see module docstring).

        A threshold pair merged on the ordering boundary (an empty middle category)
        is one parameter there: its rows are summed (b_{t+1} ≡ b_t) before the
        inversion and both thresholds get that SE. The estimate sits on the
        boundary, so such SEs are conditional on it and only approximate.
        """
        info = self.information(psi, grid, stats)
        n, p = info.shape[0], info.shape[1]
        b = _thresholds(psi)
        gaps = b[:, 1:] - b[:, :-1] if p > 2 else b[:, :0]
        merged = (gaps < 1e-6 * (1.0 + b[:, 1:].abs())) & (self.thr_mask[:, 1:] > 0)
        rep = torch.arange(p, device=self.dev).repeat(n, 1)  # representative parameter
        for t in range(merged.shape[1]):  # over the few thresholds, not items
            rep[:, t + 2] = torch.where(merged[:, t], rep[:, t + 1], rep[:, t + 2])
        lmap = torch.nn.functional.one_hot(rep, p).to(info.dtype)  # (n, full, reduced)
        red = lmap.transpose(1, 2) @ info @ lmap
        lead = torch.zeros(n, 2, dtype=torch.bool, device=self.dev)
        gone = torch.cat([lead, merged], 1)[:, :p]
        pmask = self.par_mask * (~gone).to(info.dtype)  # parameters of the reduced problem
        red = red * pmask[:, :, None] * pmask[:, None, :] + torch.diag_embed(1.0 - pmask)
        red = 0.5 * (red + red.transpose(1, 2))
        chol, bad = torch.linalg.cholesky_ex(red)
        var_red = torch.diagonal(torch.cholesky_inverse(chol), dim1=1, dim2=2)
        var = torch.gather(var_red, 1, rep)
        ok = (bad == 0)[:, None] & (var > 0)
        se = torch.where(ok, torch.sqrt(torch.clamp(var, min=0.0)), torch.nan)
        a_se = se[:, 0].cpu().numpy()
        b_se = torch.where(self.thr_mask > 0, se[:, 1:], torch.nan).cpu().numpy()
        return a_se, b_se

    def information(self, psi: torch.Tensor, grid: _Grid, stats: _EStep) -> torch.Tensor:
        """Observed information of the log posterior in η = (a, b_1..b_{K−1}), per item.

        Louis: I = −Σ_s E_s[∂²log p] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ − ∂²log prior,
        and since ∂²log P = ∂²P/P − g gᵀ the first two sums are −Σ_kq r_kq ∂²P_kq / P_kq.
        """
        assert stats.posterior is not None
        n, km, q = self.prob.n_items, self.k_max, grid.n
        theta = grid.theta
        a = torch.exp(psi[:, 0])
        b = _thresholds(psi)
        m = self.thr_mask[:, :, None]
        x = theta - b[:, :, None]  # (n, T, Q)
        ps = torch.sigmoid(a[:, None, None] * x) * m
        w = ps * (1.0 - ps)
        w2 = w * (1.0 - 2.0 * ps)
        probs = torch.exp(_log_probs(psi, theta, self.thr_mask)).clamp_min(1e-300)
        k_valid = torch.cat([torch.ones_like(self.thr_mask[:, :1]), self.thr_mask], dim=1)
        c = stats.counts * k_valid[:, :, None] / probs  # r / P, (n, K, Q)
        info = _neg_curvature_term(a, x, w, w2, c, m)
        t_idx = torch.arange(km - 1, device=psi.device) + 1
        # + Σ_obs E_s[g] E_s[g]ᵀ with g = ∂P_x/∂η / P_x, chunked over observations
        grads = (_dprob_deta(a, x, w, m) / probs[..., None]).reshape(n * km, q, km)
        subj = torch.from_numpy(self.prob.subject).to(self.dev)
        itm = torch.from_numpy(self.prob.item).to(self.dev)
        row = itm * km + torch.from_numpy(self.prob.score).to(self.dev)
        step = max(1, _SE_CHUNK_ELEMS // (q * km))
        for lo in range(0, self.prob.n_obs, step):
            sl = slice(lo, lo + step)
            mo = torch.einsum("oq,oqp->op", stats.posterior[subj[sl]], grads[row[sl]])
            info.index_add_(0, itm[sl], mo[:, :, None] * mo[:, None, :])
        pr = self.priors
        if pr.a is not None:  # −∂²/∂a² of −(log a − μ)² / (2σ²)
            mu, sd = pr.a
            info[:, 0, 0] += (1.0 - (psi[:, 0] - mu)) / (sd**2 * a**2)
        if pr.b is not None:
            info[:, t_idx, t_idx] += self.thr_mask / pr.b[1] ** 2
        if pr.gap and km > 2:  # −∂² of α log(b_{t+1} − b_t): α/d² (e_{t+1} − e_t)(…)ᵀ
            curv = pr.gap * self.thr_mask[:, 1:] / (b[:, 1:] - b[:, :-1]) ** 2  # (n, T−1)
            lo_i, hi_i = t_idx[:-1], t_idx[1:]
            info[:, lo_i, lo_i] += curv
            info[:, hi_i, hi_i] += curv
            info[:, lo_i, hi_i] -= curv
            info[:, hi_i, lo_i] -= curv
        return info


def _neg_curvature_term(
    a: torch.Tensor,
    x: torch.Tensor,
    w: torch.Tensor,
    w2: torch.Tensor,
    c: torch.Tensor,
    m: torch.Tensor,
) -> torch.Tensor:
    """−Σ_kq c_kq ∂²P_kq/∂η∂ηᵀ for η = (a, b_1..b_T), per item: (n, 1 + T, 1 + T).

    With P_k = P*_k − P*_{k+1}, Σ_k c_k ∂²P_k = Σ_t (c_t − c_{t−1}) ∂²P*_t, and
    ∂²P*/∂a² = w(1 − 2P*)x², ∂²P*/∂a∂b = −w − a x w(1 − 2P*), ∂²P*/∂b² = a² w(1 − 2P*)
    (x = θ − b, w = P*(1 − P*), w2 = w(1 − 2P*)).
    """
    n, t_count, _ = x.shape
    e = (c[:, 1:] - c[:, :-1]) * m  # coefficient of ∂²P*_t, (n, T, Q)
    out = torch.zeros(n, t_count + 1, t_count + 1, dtype=x.dtype, device=x.device)
    t_idx = torch.arange(t_count, device=x.device) + 1
    out[:, 0, 0] = -(e * w2 * x**2).sum(dim=(1, 2))
    cross = -(e * (-w - a[:, None, None] * x * w2)).sum(dim=2)  # (n, T)
    out[:, 0, 1:] = cross
    out[:, 1:, 0] = cross
    out[:, t_idx, t_idx] = -(e * a[:, None, None] ** 2 * w2).sum(dim=2)
    return out


def _dprob_deta(a: torch.Tensor, x: torch.Tensor, w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """∂P_k/∂η for η = (a, b_1..b_T): (n, K, Q, 1 + T), from ∂P*_t/∂a = w x, ∂P*_t/∂b_t = −a w."""
    n, t_count, q = x.shape
    d_star = torch.zeros(n, t_count + 2, q, t_count + 1, dtype=x.dtype, device=x.device)
    d_star[:, 1:-1, :, 0] = w * x * m
    idx = torch.arange(t_count, device=x.device)
    # advanced indices split by a slice put their dimension first: value is (T, n, Q)
    d_star[:, idx + 1, :, idx + 1] = (-a[:, None, None] * w * m).transpose(0, 1)
    return d_star[:, :-1] - d_star[:, 1:]


# ---------------------------------------------------------------------- item math (batched)
def _thresholds(psi: torch.Tensor) -> torch.Tensor:
    """b_1 = ψ_1, b_t = b_{t−1} + softplus(ψ_t): ordered by construction, (items, K_max − 1)."""
    if psi.shape[1] == 2:
        return psi[:, 1:2]
    steps = torch.cat([psi[:, 1:2], softplus(psi[:, 2:])], dim=1)
    return torch.cumsum(steps, dim=1)


def _score_and_fisher(
    psi: torch.Tensor,
    counts: torch.Tensor,
    thr_mask: torch.Tensor,
    theta: torch.Tensor,
    priors: _Priors,
    *,
    hessian: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient, expected information and (optionally) −Hessian of the M-step objective in ψ.

    For η = (a, b_1..b_{K−1}): ∂P*_k/∂a = w_k(θ − b_k), ∂P*_k/∂b_k = −a w_k with
    w_k = P*_k(1 − P*_k), and P_k = P*_k − P*_{k+1}. Gradient Σ r ∂P/P; expected
    information Σ_q n_q Σ_k ∂P ∂Pᵀ / P (positive semi-definite: always an ascent
    direction); −Hessian −Σ r ∂²P/P + Σ r (∂P/P)(∂P/P)ᵀ (exact: Newton converges
    fast where scoring crawls, e.g. items with a ≈ 0 whose b sits on a ridge).
    Chain rule to ψ with J = ∂η/∂ψ plus the curvature of η(ψ) itself.
    """
    n, t_count = psi.shape[0], psi.shape[1] - 1
    a = torch.exp(psi[:, 0])
    b = _thresholds(psi)
    m = thr_mask[:, :, None]
    x = theta - b[:, :, None]
    ps = torch.sigmoid(a[:, None, None] * x) * m
    w = ps * (1.0 - ps)  # (n, T, Q)
    d = _dprob_deta(a, x, w, m)  # (n, K, Q, P)
    probs = torch.exp(_log_probs(psi, theta, thr_mask)).clamp_min(1e-300)
    k_valid = torch.cat([torch.ones_like(thr_mask[:, :1]), thr_mask], dim=1)[:, :, None]
    c = counts * k_valid / probs
    g_eta = torch.einsum("nkq,nkqp->np", c, d)
    e = d * torch.sqrt(k_valid / probs)[..., None]
    fisher_eta = torch.einsum("nq,nkqp,nkqr->npr", counts.sum(1), e, e)
    jac = torch.zeros(n, t_count + 1, t_count + 1, dtype=psi.dtype, device=psi.device)
    jac[:, 0, 0] = a
    jac[:, 1:, 1] = 1.0
    sig = torch.sigmoid(psi[:, 2:])  # d softplus(u)/du
    if t_count > 1:
        lower = torch.tril(torch.ones(t_count - 1, t_count - 1, dtype=psi.dtype, device=psi.device))
        jac[:, 2:, 2:] = lower[None] * sig[:, None, :]
    jac[:, 1:, :] = jac[:, 1:, :] * thr_mask[:, :, None]
    g_b = torch.zeros_like(b)  # ∂(prior on b)/∂b, for the curvature of b(ψ)
    fisher = jac.transpose(1, 2) @ fisher_eta @ jac
    if priors.b is not None:
        g_b = -(b - priors.b[0]) / priors.b[1] ** 2 * thr_mask
        fisher = fisher + jac[:, 1:, :].transpose(1, 2) @ jac[:, 1:, :] / priors.b[1] ** 2
    g = torch.einsum("npr,np->nr", jac, g_eta + torch.cat([torch.zeros_like(a[:, None]), g_b], 1))
    neg_h = None
    if hessian:
        gp = d / probs[..., None] * k_valid[..., None]  # ∂log P/∂η
        neg_h_eta = _neg_curvature_term(a, x, w, w * (1.0 - 2.0 * ps), c, m) + torch.einsum(
            "nkq,nkqp,nkqr->npr", counts, gp, gp
        )
        if priors.b is not None:
            idx = torch.arange(1, t_count + 1, device=psi.device)
            neg_h_eta[:, idx, idx] += thr_mask / priors.b[1] ** 2
        neg_h = jac.transpose(1, 2) @ neg_h_eta @ jac
        # curvature of η(ψ): ∂²a/∂(log a)² = a; ∂²b_t/∂u_s² = σ'(u_s) for s ≤ t
        neg_h[:, 0, 0] -= g_eta[:, 0] * a
        if t_count > 1:
            g_bt = (g_eta[:, 1:] + g_b) * thr_mask  # total gradient w.r.t. each b_t
            tail = torch.flip(torch.cumsum(torch.flip(g_bt, [1]), 1), [1])[:, 1:]  # Σ_{t≥s}
            idx = torch.arange(2, t_count + 1, device=psi.device)
            neg_h[:, idx, idx] -= tail * sig * (1.0 - sig)
    if priors.a is not None:
        g[:, 0] -= (psi[:, 0] - priors.a[0]) / priors.a[1] ** 2
        fisher[:, 0, 0] += 1.0 / priors.a[1] ** 2
        if neg_h is not None:
            neg_h[:, 0, 0] += 1.0 / priors.a[1] ** 2
    if priors.gap and t_count > 1:  # α log softplus(u)
        u, gm = psi[:, 2:], thr_mask[:, 1:]
        sp = softplus(u)
        ratio = torch.sigmoid(u) / sp
        g[:, 2:] += priors.gap * ratio * gm
        idx = torch.arange(2, t_count + 1, device=psi.device)
        fisher[:, idx, idx] += priors.gap * ratio**2 * gm  # its positive-curvature part
        if neg_h is not None:
            s_ = torch.sigmoid(u)
            neg_h[:, idx, idx] -= priors.gap * (s_ * (1 - s_) / sp - ratio**2) * gm
    if hessian:
        return g, fisher, neg_h
    return g, fisher


def _logsigmoid(x: torch.Tensor) -> torch.Tensor:
    """log σ(x) as −softplus(−x): torch's logsigmoid warns under torch.func transforms."""
    return -softplus(-x, threshold=40.0)


def _log_probs(psi: torch.Tensor, theta: torch.Tensor, thr_mask: torch.Tensor) -> torch.Tensor:
    """log P(X = k | θ_q) for every item, category and node: (items, K_max, Q).

    Categories an item does not have get finite garbage (never used: they
    have no observations and no expected counts).
    """
    a = torch.exp(psi[:, :1])  # (items, 1)
    b = _thresholds(psi)  # (items, K−1)
    m = thr_mask[:, :, None]
    z = a[:, :, None] * (theta - b[:, :, None])  # (items, K−1, Q)
    up = _logsigmoid(z) * m  # log P*_k, categories 1..K−1
    low = _logsigmoid(-z) * m  # log(1 − P*_{k+1}), categories 0..K−2
    zeros = torch.zeros_like(z[:, :1])
    lp = torch.cat([zeros, up], dim=1) + torch.cat([low, zeros], dim=1)
    if b.shape[1] > 1:
        gap = torch.clamp(a * (b[:, 1:] - b[:, :-1]), min=_MIN_GAP)
        gap_term = torch.log(-torch.expm1(-gap)) * thr_mask[:, 1:]  # (items, K−2)
        pad = torch.zeros_like(gap_term[:, :1])
        lp = lp + torch.cat([pad, gap_term, pad], dim=1)[:, :, None]
    return lp


def _log_prior(psi: torch.Tensor, thr_mask: torch.Tensor, priors: _Priors) -> torch.Tensor:
    """Log prior density per item, up to constants (see :class:`_Priors`)."""
    out = torch.zeros(psi.shape[0], dtype=psi.dtype, device=psi.device)
    if priors.a is not None:
        out = out - 0.5 * ((psi[:, 0] - priors.a[0]) / priors.a[1]) ** 2
    if priors.b is not None:
        zb = (_thresholds(psi) - priors.b[0]) / priors.b[1]
        out = out - 0.5 * (zb**2 * thr_mask).sum(dim=1)
    if priors.gap and psi.shape[1] > 2:
        gaps = torch.clamp(softplus(psi[:, 2:]), min=1e-300)
        out = out + priors.gap * (torch.log(gaps) * thr_mask[:, 1:]).sum(dim=1)
    return out
