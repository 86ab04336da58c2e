"""The scikit-learn-style estimator: :class:`GRMCalibrator` and its fit loop.

Auto quadrature: with ``n_quad="auto"`` (default) the fit starts on 61 nodes
and, once nearly converged, computes each subject's posterior SD from the
test information at its EAP, 1/√(1 + Σ I_j(θ̂)); if the grid spacing exceeds
``quad_ratio`` × the 5th percentile of those SDs, the grid is refined to that
spacing (at most ``max_quad`` nodes) and EM continues from the current
parameters. The grid actually used is reported (``n_quad_``). The grid sets
the accuracy of the log-likelihood and of the posteriors behind the SEs, and
refining it is cheap.

Several dimensions (``n_dims`` 2 or 3): ``loadings`` (items × D, 0/1) gives a
confirmatory structure, whose latent correlations are estimated; without it
the fit is exploratory (every item on every dimension) and is rotated at the
end (``rotation``, default oblimin), which sets the correlations. Auto
quadrature is the product grid for D = 2 (31 nodes per axis, refined as
above up to ``max_quad_per_axis``) and ``n_qmc`` quasi-Monte-Carlo points
for D = 3 (``irt/calibrate/_em.py`` says why). With ``n_dims=1`` every number
is what the one-dimensional fit has always computed.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from orchestrator import __version__
from orchestrator.errors import (
    CalibrationConvergenceWarning,
    CalibrationError,
    ConfigError,
    NotFittedError,
    PrerequisiteError,
)
from orchestrator.irt._calibration_defaults import (
    DEFAULT_PRIOR_A,
    DEFAULT_PRIOR_B,
    DEFAULT_PRIOR_GAP,
    MAX_DIMS,
)
from orchestrator.irt.calibrate._em import EMModel, EStep, QuadGrid
from orchestrator.irt.calibrate._problem import Problem, prepare
from orchestrator.irt.calibrate._standard_errors import standard_errors
from orchestrator.irt.calibrate._threads import choose_threads, torch_threads
from orchestrator.irt.fit import (
    benjamini_hochberg,
    category_max_prob,
    item_rest_correlation,
    rest_abilities,
)
from orchestrator.irt.item_priors import POPULATION_PRIOR, ItemPriors
from orchestrator.irt.rotation import ROTATIONS, Rotation, rotate

__all__ = ["METHOD", "GRMCalibrator", "IterationInfo", "format_progress"]

METHOD = "mml-em"
"""Method name written to ``bank.json`` (``calibration.method``)."""

_AUTO_START = 61
_AUTO_START_PER_AXIS = 31  # D = 2: 31 × 31 before pruning and refinement

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
    "reversed_items",
    "reversed_alpha",
    "n_quad",
    "quad_range",
    "quad_ratio",
    "max_quad",
    "max_iter",
    "tol",
    "prior_a",
    "prior_b",
    "prior_gap",
    "item_priors",
    "min_obs",
    "compute_se",
    "device",
    "n_threads",
    "verbose",
    "progress",
    "n_dims",
    "loadings",
    "rotation",
    "quadrature",
    "n_qmc",
    "max_quad_per_axis",
    "seed",
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
        reversed_items: What to do with items whose score *falls* with θ (a
            negative correlation with θ estimated from the other items,
            Benjamini–Hochberg q < ``reversed_alpha``): ``"reverse"`` (default)
            refits them reverse-keyed (x → K − 1 − x; the bank marks them), so
            they carry their information instead of ending with a ≈ 0;
            ``"exclude"`` leaves them out; ``"keep"`` only reports them. The
            evidence (item–rest r, q, the slope with the item reversed and its
            SE) is in ``reversed_`` either way. Chosen by cross-validation on the
            tinybench data (``bench/reversed_items.py``).
        reversed_alpha: FDR level of that test.
        compute_se: Compute standard errors (one extra pass over the data).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        n_threads: torch CPU threads during the fit; None chooses by problem size
            and free cores (see ``_threads``). The numbers do not depend on it.
        verbose: Print one progress line per iteration to stderr.
        progress: Called with an :class:`IterationInfo` after every iteration.
        item_priors: Per-item priors in the bank's θ scale (a bank's own parameters
            or text-predicted ones; :class:`~orchestrator.irt.item_priors.ItemPriors`,
            rows in the item numbering given to ``fit``). The new subjects'
            population mean and SD are then estimated in that scale (``population_``)
            instead of being fixed at N(0, 1), and an item with a per-item prior is
            fitted from a single observation or category (its prior keeps it finite).
        n_dims: D, the dimensions of θ (1..3).
        loadings: With D > 1, ``(items, D)`` 0/1: where each item has a slope
            (rows in the item numbering given to ``fit``); every item needs one.
            None: exploratory (all items on all dimensions, then rotated).
        rotation: Exploratory only: ``"oblimin"`` (oblique, quartimin),
            ``"varimax"`` (orthogonal) or ``"none"``.
        quadrature: ``"auto"`` (grid for D ≤ 2, QMC for D = 3), ``"grid"`` or
            ``"qmc"``.
        n_qmc: Quasi-Monte-Carlo points (scrambled Sobol) when QMC is used.
        max_quad_per_axis: With D = 2 and ``n_quad="auto"``: most grid nodes per axis.
        seed: Seeds the QMC points, the exploratory start and the rotation starts.

    Attributes (after ``fit``):
        item_ids_: Ids of the fitted items (excluded items left out).
        item_index_: Their positions in the item numbering given to ``fit``.
        n_categories_: K per fitted item.
        a_, b_: Slopes ``(n,)`` (``(n, D)`` slope vectors when D > 1) and
            thresholds ``(n, K_max − 1)`` padded with +inf; with D > 1 the
            thresholds lie along each item's direction, P(X ≥ k) = σ(aᵀθ − ‖a‖b_k).
        a_se_, b_se_: Standard errors (NaN where the information is singular;
            ``b_se_`` padded with NaN; 0 for a slope fixed at 0).
        n_dims_, structure_: D and ``"unidimensional"``, ``"confirmatory"`` or
            ``"exploratory"``.
        latent_corr_, latent_corr_se_: The latent correlation matrix R ``(D, D)``
            and the SEs of its entries (confirmatory; None otherwise).
        rotation_: The exploratory :class:`~orchestrator.irt.rotation.Rotation` (else None).
        eap_: Every subject's posterior mean of θ, ``(n_subjects, D)``.
        quadrature_: ``(nodes (Q, D), log weights (Q,))`` of the final E-step.
        loglik_: Marginal log-likelihood at the solution (without priors).
        logpost_: ``loglik_`` + log prior density.
        n_iter_, converged_, wall_time_, device_, n_quad_, n_threads_: Fit diagnostics.
        n_subjects_, n_observations_: Data used (after exclusions).
        excluded_: One dict per excluded item: ``id``, ``reason``, ``n_obs``.
        unobserved_categories_: ``{item id: [k, …]}`` for fitted items with a
            category nobody gave (its threshold rests on the prior).
        collapsed_categories_: ``{item id: {k: n_obs}}`` for middle categories
            that were observed but that the fit leaves below 2 % probability at
            every θ (nearly merged thresholds): usually categories out of order
            with respect to θ; consider merging them with a neighbour.
        history_: One :class:`IterationInfo` per iteration.
        population_: ``(mean, sd)`` of the subjects' θ in the bank's scale: (0, 1)
            unless ``item_priors`` anchor the scale.
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
        reversed_items: Literal["reverse", "exclude", "keep"] = "reverse",
        reversed_alpha: float = 0.05,
        compute_se: bool = True,
        device: str = "cpu",
        n_threads: int | None = None,
        verbose: bool = False,
        progress: ProgressCallback | None = None,
        item_priors: ItemPriors | None = None,
        n_dims: int = 1,
        loadings: ArrayLike | None = None,
        rotation: str = "oblimin",
        quadrature: Literal["auto", "grid", "qmc"] = "auto",
        n_qmc: int = 5000,
        max_quad_per_axis: int = 101,
        seed: int = 0,
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
        self.reversed_items = reversed_items
        self.reversed_alpha = reversed_alpha
        self.compute_se = compute_se
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.progress = progress
        self.item_priors = item_priors
        self.n_dims = n_dims
        self.loadings = loadings
        self.rotation = rotation
        self.quadrature = quadrature
        self.n_qmc = n_qmc
        self.max_quad_per_axis = max_quad_per_axis
        self.seed = seed

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
        if self.reversed_items not in ("reverse", "exclude", "keep"):
            raise bad("reversed_items", "must be 'reverse', 'exclude' or 'keep'")
        if not (isinstance(self.reversed_alpha, (int, float)) and 0 < self.reversed_alpha < 1):
            raise bad("reversed_alpha", "must be in (0, 1)")
        if self.n_threads is not None and not (
            isinstance(self.n_threads, int) and self.n_threads >= 1
        ):
            raise bad("n_threads", "must be None or an integer >= 1")
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
        if not (isinstance(self.n_dims, int) and 1 <= self.n_dims <= MAX_DIMS):
            raise bad("n_dims", f"must be an integer from 1 to {MAX_DIMS}")
        if self.rotation not in ROTATIONS:
            raise bad("rotation", f"must be one of {', '.join(ROTATIONS)}")
        if self.quadrature not in ("auto", "grid", "qmc"):
            raise bad("quadrature", "must be 'auto', 'grid' or 'qmc'")
        if not (isinstance(self.n_qmc, int) and self.n_qmc >= 100):
            raise bad("n_qmc", "must be an integer >= 100")
        if not (isinstance(self.max_quad_per_axis, int) and self.max_quad_per_axis >= 11):
            raise bad("max_quad_per_axis", "must be an integer >= 11")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise bad("seed", "must be an integer >= 0")
        if self.n_dims == 3 and self.quadrature == "grid":
            raise bad("quadrature", "'grid' supports at most 2 dimensions; use 'qmc' for 3")
        if self.item_priors is not None and self.n_dims > 1:
            raise ConfigError(
                "GRMCalibrator: per-item priors (learning banks) are one-dimensional",
                hint="calibrate a multidimensional bank from scratch (n_dims > 1, no item_priors)",
            )
        return _resolve_device(self.device)

    def _check_loadings(self, n_items: int) -> None:
        if self.loadings is None:
            return
        lo = np.asarray(self.loadings)
        if self.n_dims == 1:
            raise ConfigError("GRMCalibrator: loadings need n_dims >= 2")
        if lo.shape != (n_items, self.n_dims) or not np.isin(lo, (0, 1)).all():
            raise ConfigError(
                f"GRMCalibrator loadings must be a 0/1 array of shape ({n_items}, {self.n_dims}) "
                f"(items x dimensions); got shape {lo.shape}"
            )
        empty = np.flatnonzero(lo.sum(axis=1) == 0)
        if empty.size:
            raise ConfigError(
                f"GRMCalibrator loadings: item {int(empty[0])} loads on no dimension",
                hint="every item needs a slope on at least one dimension",
            )

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
        if self.item_priors is not None:
            n_items = len(item_ids) if item_ids is not None else int(np.max(item_idx)) + 1
            k_max = int(np.max(n_categories)) if n_categories is not None else 2
            self.item_priors.check(n_items, max(k_max, int(np.max(score)) + 1) - 1)
        self._check_loadings(len(item_ids) if item_ids is not None else int(np.max(item_idx)) + 1)
        self._fit_once(subject_idx, item_idx, score, n_categories, item_ids, n_subjects, dev, t0)
        s, i, x = (np.asarray(v).astype(np.int64) for v in (subject_idx, item_idx, score))
        self.reversed_ = []
        self.reverse_keyed_ = np.zeros(len(self.item_ids_), dtype=bool)
        if self.item_priors is not None or self.n_dims > 1:
            # an update keeps the bank's keying: its priors are for the items as keyed;
            # the reversed-item check (item-rest correlation on a 1-D θ) is one-dimensional
            return self
        flagged = self._reversed_evidence(s, i, x)
        if not flagged:
            return self
        # the same data with the flagged items reversed: their slope, sign restored, is the
        # unconstrained one (for a 2PL, reversing an item is negating its slope)
        original = np.asarray(self.item_index_)[flagged]
        k_all = np.zeros(int(i.max()) + 1, dtype=np.int64)
        k_all[original] = self.n_categories_[flagged]
        flip = np.zeros(len(k_all), dtype=bool)
        flip[original] = True
        x_rev = np.where(flip[i], k_all[i] - 1 - x, x)
        first = {k: v for k, v in vars(self).items() if k.endswith("_")}
        self._fit_once(s, i, x_rev, n_categories, item_ids, n_subjects, dev, t0)
        pos = {iid: j for j, iid in enumerate(self.item_ids_)}
        for row in self.reversed_:
            j = pos[row["id"]]
            row["slope_unconstrained"] = round(-float(self.a_[j]), 4)
            row["slope_se"] = _round_or_none(self.a_se_[j])
            row["treatment"] = self.reversed_items
        evidence = self.reversed_
        if self.reversed_items == "reverse":
            self.reverse_keyed_ = np.isin(np.asarray(self.item_index_), original)
        elif self.reversed_items == "keep":  # back to the plain fit, evidence reported
            vars(self).update(first)
            self.reversed_ = evidence
        else:
            keep = ~flip[i]
            self._fit_once(s[keep], i[keep], x[keep], n_categories, item_ids, n_subjects, dev, t0)
            self.reverse_keyed_ = np.zeros(len(self.item_ids_), dtype=bool)
            self.reversed_ = evidence
            self.excluded_ = first["excluded_"] + [
                {"id": row["id"], "reason": "reversed (score falls with θ)", "n_obs": row["n_obs"]}
                for row in evidence
            ]
        self.wall_time_ = time.perf_counter() - t0
        return self

    def _reversed_evidence(self, s: IntArray, i: IntArray, x: IntArray) -> list[int]:
        """Fitted items whose score falls with θ from the other items; fills ``reversed_``."""
        pos = np.full(int(i.max()) + 1, -1, dtype=np.int64)
        pos[np.asarray(self.item_index_)] = np.arange(len(self.item_index_))
        keep = pos[i] >= 0
        n_sub = int(s.max()) + 1
        theta = rest_abilities(
            self.a_, self.b_, s[keep], pos[i[keep]], x[keep], n_sub,
            grid=np.linspace(-6.0, 6.0, 241),
        )  # fmt: skip
        r, p, n = item_rest_correlation(
            pos[i[keep]], x[keep], theta, len(self.item_index_), reference=0.0
        )
        ok = np.isfinite(p)
        q = np.full(len(p), np.nan)
        q[ok] = benjamini_hochberg(p[ok])
        flagged = np.flatnonzero(ok & (np.nan_to_num(r) < 0) & (q < self.reversed_alpha))
        self.reversed_ = [
            {
                "id": self.item_ids_[j],
                "item_rest_r": round(float(r[j]), 4),
                "q": float(f"{q[j]:.3g}"),
                "n_obs": int(n[j]),
                "slope_plain": round(float(self.a_[j]), 4),
            }
            for j in flagged
        ]
        return [int(j) for j in flagged]

    def _fit_once(
        self,
        subject_idx: ArrayLike,
        item_idx: ArrayLike,
        score: ArrayLike,
        n_categories: ArrayLike | None,
        item_ids: Sequence[str] | None,
        n_subjects: int | None,
        dev: torch.device,
        t0: float,
    ) -> None:
        """One EM fit of every item as keyed in ``score``; sets the fitted attributes."""
        exempt = None if self.item_priors is None else self.item_priors.has_prior()
        prob = prepare(
            subject_idx,
            item_idx,
            score,
            n_categories,
            item_ids,
            n_subjects,
            self.min_obs,
            exempt=exempt,
        )
        with torch_threads(self._threads(prob, dev)):
            self._fit(prob, dev, t0)

    def _threads(self, prob: Problem, dev: torch.device) -> int:
        if self.n_threads is not None:
            self.n_threads_ = self.n_threads
        elif dev.type == "cpu":
            if self.n_dims > 1:  # the E-step's size is the product grid (or the QMC points)
                start = self.n_qmc if self.n_dims > 2 else _AUTO_START_PER_AXIS**2
            else:
                start = _AUTO_START if self.n_quad == "auto" else int(self.n_quad)
            self.n_threads_ = choose_threads(prob.n_obs, start)
        else:  # the CPU only feeds the GPU
            self.n_threads_ = torch.get_num_threads()
        return self.n_threads_

    def _fit(self, prob: Problem, dev: torch.device, t0: float) -> None:
        self.excluded_ = prob.excluded
        if prob.n_items == 0:
            raise CalibrationError(
                f"no item can be calibrated: all {len(prob.excluded)} items were excluded "
                f"(e.g. {prob.excluded[0]['id']!r}: {prob.excluded[0]['reason']})",
                hint="items need at least min_obs observations and two observed categories",
            )
        self._check_fitted_loadings(prob)
        model = EMModel(prob, self, dev)
        psi = model.initial_psi()
        if model.uses_qmc:
            n_q = self.n_qmc
        elif self.n_quad != "auto":
            n_q = int(self.n_quad)
        else:
            n_q = _AUTO_START if self.n_dims == 1 else _AUTO_START_PER_AXIS
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
            new_psi = model.standardise(new_psi, post_stats)
            if model.anchored:
                model.update_population(new_psi)
            if model.n_dims > 1 and not model.exploratory:  # R moved: new weights
                grid = model.make_grid(grid.per_axis or grid.n)
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
            # refine it if it is coarser than the subjects' posterior SDs (QMC points are
            # fixed: nothing to refine, so no E-step is spent asking)
            near = change < math.sqrt(self.tol) and not checked
            refinable = self.n_quad == "auto" and not model.uses_qmc
            if refinable and (near or change < self.tol) and regrids < 4:
                checked = True
                finer = model.refined_grid(psi, grid, model.e_step(psi, grid))
                if finer is not None:
                    grid = finer
                    regrids += 1
                    checked = False
                    continue
            if change < self.tol:
                converged = True
                break
        final = model.e_step(psi, grid)
        rot = None
        if model.exploratory:  # the likelihood and the posteriors are unchanged by it
            rot = rotate(model.natural(psi)[0], self.rotation, seed=self.seed)  # type: ignore[arg-type]
            psi, grid = model.rotated(psi, grid, rot)
        self._set_results(model, psi, grid, final, history, converged, t0, dev, rot)
        if not converged:
            warnings.warn(
                f"GRM calibration did not converge in {self.max_iter} iterations "
                f"(last parameter change {history[-1].change:.2e} > tol {self.tol:g}); "
                "raise max_iter or loosen tol",
                CalibrationConvergenceWarning,
                stacklevel=3,
            )

    def _check_fitted_loadings(self, prob: Problem) -> None:
        """Every dimension needs fitted items (exclusions may have removed them)."""
        if self.loadings is None:
            return
        per_dim = np.asarray(self.loadings)[prob.item_index].sum(axis=0)
        empty = np.flatnonzero(per_dim == 0)
        if empty.size:
            raise CalibrationError(
                f"dimension {int(empty[0]) + 1} of {self.n_dims} has no item left to calibrate "
                "(its items were excluded or absent)",
                hint="check the loading pattern, or calibrate with fewer dimensions",
            )

    def _report(self, info: IterationInfo) -> None:
        if self.progress is not None:
            self.progress(info)
        if self.verbose:
            print(format_progress(info), file=sys.stderr, flush=True)

    def _set_results(
        self,
        model: EMModel,
        psi: torch.Tensor,
        grid: QuadGrid,
        final: EStep,
        history: list[IterationInfo],
        converged: bool,
        t0: float,
        dev: torch.device,
        rot: Rotation | None,
    ) -> None:
        prob = model.prob
        slopes, b = model.natural(psi)
        one = model.n_dims == 1
        self.item_ids_ = list(prob.item_ids)
        self.item_index_ = prob.item_index.copy()
        self.n_categories_ = prob.k.copy()
        corr_se = None
        if self.compute_se:
            slope_se, b_se, corr_se = standard_errors(model, psi, grid, final)
        else:
            slope_se = np.where(model.slopes.mask.cpu().numpy() > 0, np.nan, 0.0)
            b_se = np.where(np.isfinite(b), np.nan, np.nan)
        if one:  # per-item priors (one dimension only) put the fit in the bank's scale
            self.a_, self.b_, self.a_se_, self.b_se_ = model.to_bank_scale(
                slopes[:, 0], b, slope_se[:, 0], b_se
            )
        else:
            self.a_, self.b_, self.a_se_, self.b_se_ = slopes, b, slope_se, b_se
        self.population_ = model.population
        self.n_dims_ = model.n_dims
        self.structure_ = (
            "unidimensional" if one else "exploratory" if model.exploratory else "confirmatory"
        )
        corr = model.corr.cpu().numpy()
        self.latent_corr_ = (corr + corr.T) / 2.0
        np.fill_diagonal(self.latent_corr_, 1.0)
        self.latent_corr_se_ = corr_se
        self.rotation_ = rot
        self.anchors_ = [prob.item_ids[j] for j in model.anchors]
        assert final.posterior is not None
        self.eap_ = (final.posterior @ grid.points).cpu().numpy()
        self.quadrature_ = (grid.points.cpu().numpy(), grid.log_w.cpu().numpy())
        self.loglik_ = final.loglik
        self.logpost_ = final.loglik + model.log_prior(psi)
        self.n_iter_ = len(history)
        self.converged_ = converged
        self.n_quad_ = grid.n
        self.quad_per_axis_ = grid.per_axis
        self.history_ = history
        self.n_subjects_ = prob.n_subjects_used
        self.n_observations_ = prob.n_obs
        self.unobserved_categories_ = prob.unobserved
        length = slopes[:, 0] if one else np.linalg.norm(slopes, axis=1)
        self.collapsed_categories_ = _collapsed_categories(length, b, prob)
        self.device_ = str(dev)
        self.wall_time_ = time.perf_counter() - t0

    # ------------------------------------------------------------------ output
    def _check_fitted(self) -> None:
        if not hasattr(self, "a_"):
            raise NotFittedError(
                "this GRMCalibrator is not fitted yet; call fit(subject_idx, item_idx, score) "
                "before calibration_record() or summary()"
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
            **(
                {}
                if self.n_dims_ == 1
                else {
                    "log_a_applies_to": (
                        "every loading a_d > 0"
                        if self.structure_ == "confirmatory"
                        else "the length |a| of each slope vector (slopes may be negative)"
                    )
                }
            ),
            "estimate": (
                "MAP (posterior mode)" if (self.prior_a or self.prior_b or self.prior_gap) else "ML"
            ),
        }
        details: dict[str, Any] = {
            "model": "GRM P(X>=k|theta)=sigmoid(a(theta-b_k)), no 1.702",
            "algorithm": "Bock-Aitkin EM + PX-EM standardisation of theta, Fisher-scoring "
            "M-step per item",
            "item_priors": prior,
            "quadrature": self._quadrature_details(),
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
            **(
                {
                    "per_item_priors": "normal on log a and each b_k per item, in the bank's "
                    "theta scale; global priors above for items without one",
                    "population": {
                        "mean": self.population_[0],
                        "sd": self.population_[1],
                        "prior": POPULATION_PRIOR,
                    },
                }
                if self.item_priors is not None
                else {
                    "reversed_items": {
                        "treatment": self.reversed_items,
                        "test": "item-rest r < 0 with Benjamini-Hochberg q < "
                        f"{self.reversed_alpha:g} (one-sided Fisher z, H0: rho >= 0; theta "
                        "from the other items)",
                        "items": list(self.reversed_),
                    }
                }
            ),
        }
        if self.n_dims_ > 1:
            details["model"] = (
                "multidimensional GRM P(X>=k|theta)=sigmoid(a'theta - |a| b_k), "
                "compensatory, no 1.702"
            )
            details["algorithm"] += (
                "; latent correlation by PX-EM"
                if self.structure_ == "confirmatory"
                else "; orientation fixed by anchor items during EM, rotated at the end"
            )
            details["dimensions"] = self.dimension_details()
        return details

    def _quadrature_details(self) -> dict[str, Any]:
        nodes = {"nodes": self.n_quad_}
        if self.quadrature_[0].shape[1] == 1:
            return {
                "rule": "rectangle, even grid, N(0,1) weights",
                "range": [-self.quad_range, self.quad_range],
                "requested": self.n_quad,
                **nodes,
                "auto_ratio": self.quad_ratio if self.n_quad == "auto" else None,
            }
        if self.quad_per_axis_ == 0:
            return {
                "rule": "quasi-Monte-Carlo: scrambled Sobol points mapped to N(0, R), "
                "equal weights, fixed across iterations",
                "seed": self.seed,
                **nodes,
            }
        return {
            "rule": "rectangle, even product grid pruned to theta' R^-1 theta <= range^2, "
            "N(0, R) weights",
            "range": [-self.quad_range, self.quad_range],
            "requested": self.n_quad,
            "per_axis": self.quad_per_axis_,
            **nodes,
            "auto_ratio": self.quad_ratio if self.n_quad == "auto" else None,
        }

    def dimension_details(self) -> dict[str, Any]:
        """Structure, latent correlation (with SEs) and rotation, for provenance."""
        self._check_fitted()
        out: dict[str, Any] = {
            "n": self.n_dims_,
            "structure": self.structure_,
            "latent_correlation": self.latent_corr_.tolist(),
            "latent_correlation_se": (
                None if self.latent_corr_se_ is None else self.latent_corr_se_.tolist()
            ),
        }
        if self.structure_ == "confirmatory":
            out["loadings_per_dimension"] = (
                np.asarray(self.loadings)[self.item_index_].sum(axis=0).astype(int).tolist()
            )
        if self.rotation_ is not None:
            rot = self.rotation_
            out["identification"] = {
                "anchor_items": self.anchors_,
                "rule": "anchor d has no slope on dimensions after d during EM",
            }
            out["rotation"] = {
                "method": rot.method,
                "criterion": (
                    "direct oblimin, gamma = 0 (quartimin)"
                    if rot.method == "oblimin"
                    else "varimax"
                    if rot.method == "varimax"
                    else None
                ),
                "applied_to": "standardised loadings (a/1.702)/sqrt(1 + |a/1.702|^2)",
                "algorithm": f"gradient projection (Jennrich), best of {rot.n_starts} starts"
                if rot.n_starts
                else None,
                "criterion_value": rot.criterion,
                "converged": rot.converged,
                "matrix": rot.matrix.tolist(),
                "note": "latent correlation = T'T of the oblique rotation; SEs are "
                "conditional on the rotation",
            }
        return out

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
            **(
                {}
                if self.n_dims_ == 1
                else {
                    "n_dims": self.n_dims_,
                    "structure": self.structure_,
                    "latent_correlation": self.latent_corr_.tolist(),
                    "latent_correlation_se": (
                        None if self.latent_corr_se_ is None else self.latent_corr_se_.tolist()
                    ),
                    "rotation": None if self.rotation_ is None else self.rotation_.method,
                }
            ),
        }

    def calibration_record(
        self,
        *,
        source: str | None = None,
        source_sha256: str | None = None,
        extra_details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Provenance of the fit, as the fields of ``bank.json``'s ``calibration``.

        :func:`orchestrator.bank.bank_from_calibration` builds a bank from it;
        the math floor itself never imports the bank.

        Args:
            source, source_sha256: The response file and its hash.
            extra_details: Merged into ``details``.

        Raises:
            NotFittedError: :meth:`fit` has not been called.
        """
        self._check_fitted()
        details = self.calibration_details()
        details.update(extra_details or {})
        return {
            "status": "calibrated",
            "method": METHOD,
            "data": source,
            "data_sha256": source_sha256,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n_subjects": self.n_subjects_,
            "n_observations": self.n_observations_,
            "log_likelihood": self.loglik_,
            "iterations": self.n_iter_,
            "converged": self.converged_,
            "wall_time_s": round(self.wall_time_, 3),
            "device": self.device_,
            "software": f"agentcat {__version__}; torch {torch.__version__}",
            "excluded_items": list(self.excluded_),
            "details": _json_safe(details),
        }


def _round_or_none(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def _collapsed_categories(a: FloatArray, b: FloatArray, prob: Problem) -> dict[str, dict[str, int]]:
    """Observed middle categories that the fit squeezes below 2 % probability at every θ.

    When subjects gave a category but the fit leaves it almost no room (its
    peak, :func:`~orchestrator.irt.fit.category_max_prob`), it is out of order
    with respect to θ.
    """
    out: dict[str, dict[str, int]] = {}
    peak = category_max_prob(a, b)  # NaN for categories an item lacks: never flagged
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
