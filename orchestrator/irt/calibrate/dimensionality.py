"""How many dimensions? Held-out log-likelihood, information criteria and Q3 for D = 1..3.

Each candidate structure (D = 1; D > 1 exploratory, or confirmatory with a
loading pattern) is calibrated on all responses,
giving the marginal log-likelihood, its parameter count, AIC and BIC, and
Yen's Q3 on the residuals at each subject's EAP θ ∈ R^D (local dependence
the D-dimensional model leaves). Then k-fold over *cells*: the observed
(subject, item) cells are split into k folds at random (seeded); each fold
is held out in turn, the model calibrated on the rest, and every held-out
response scored by its posterior predictive probability
p(x | the subject's other responses) = Σ_q π_s(θ_q) P(x | θ_q) on the fit's
quadrature. Held-out log-likelihood is the criterion that does not rest on
asymptotics (17 subjects, weak priors: AIC/BIC count parameters the priors
partly tie down). Item base rates (each item's training category shares,
add-one smoothed) are the no-IRT baseline on the same cells.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import logsumexp

from orchestrator.errors import CalibrationConvergenceWarning
from orchestrator.irt.calibrate._estimator import GRMCalibrator
from orchestrator.irt.fit import Q3Result, q3_of_residuals
from orchestrator.irt.model import GradedResponseModel

__all__ = [
    "Candidate",
    "DimensionComparison",
    "DimensionFit",
    "compare_dimensions",
    "fitted_model",
    "folds_won",
    "heldout_log_predictive",
    "n_parameters",
    "preferred",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[str], None]
_CELL_CHUNK = 2_000_000  # held-out cells × nodes per chunk


@dataclass(frozen=True)
class Candidate:
    """A structure to compare: D, and a 0/1 loading pattern ``(items, D)`` (None: exploratory)."""

    label: str
    n_dims: int
    loadings: NDArray[np.int64] | None = None


@dataclass
class DimensionFit:
    """One candidate's fit on all cells and its held-out score."""

    label: str
    n_dims: int
    structure: str
    log_likelihood: float
    n_parameters: int
    aic: float
    bic: float
    converged: bool
    latent_correlation: FloatArray
    latent_correlation_se: FloatArray | None
    """SEs of the correlations (confirmatory fits; None where the fit gives none)."""
    q3: Q3Result
    heldout_loglik: float = 0.0
    """Sum over all held-out cells (every fold) of log p(x | other responses)."""
    n_heldout: int = 0
    fold_loglik: list[float] = field(default_factory=list)

    @property
    def heldout_per_obs(self) -> float:
        return self.heldout_loglik / max(self.n_heldout, 1)


def folds_won(fits: Sequence[DimensionFit]) -> list[int]:
    """How many folds each fit scored best on (held-out log-likelihood of that fold)."""
    per_fold = np.array([f.fold_loglik for f in fits])  # (fits, folds)
    if per_fold.size == 0:
        return [0] * len(fits)
    return np.bincount(per_fold.argmax(axis=0), minlength=len(fits)).tolist()


@dataclass
class DimensionComparison:
    fits: list[DimensionFit]
    folds: int
    seed: int
    baseline_per_obs: float
    """Item category shares (no IRT) on the same held-out cells."""
    n_heldout: int


def n_parameters(cal: GRMCalibrator) -> int:
    """Free parameters: slopes and thresholds, plus correlations (confirmatory), minus the
    D(D−1)/2 rotation an exploratory fit cannot identify."""
    thresholds = int((cal.n_categories_ - 1).sum())
    d = cal.n_dims_
    slopes = np.asarray(cal.a_se_)
    n_slopes = int(slopes.size) if d == 1 else int((np.asarray(cal.a_) != 0).sum())
    n_corr = d * (d - 1) // 2
    if cal.structure_ == "confirmatory":
        return n_slopes + thresholds + n_corr
    return n_slopes + thresholds - n_corr


def fitted_model(cal: GRMCalibrator) -> GradedResponseModel:
    """The fitted items as a :class:`GradedResponseModel` (rows = ``cal.item_ids_``)."""
    slopes = np.asarray(cal.a_, dtype=float).reshape(len(cal.item_ids_), cal.n_dims_)
    if cal.n_dims_ == 1:
        return GradedResponseModel.from_difficulty(slopes[:, 0], cal.b_)
    return GradedResponseModel(slopes, -(np.linalg.norm(slopes, axis=1)[:, None] * cal.b_))


def heldout_log_predictive(
    cal: GRMCalibrator,
    train: tuple[ArrayLike, ArrayLike, ArrayLike],
    test: tuple[ArrayLike, ArrayLike, ArrayLike],
    n_subjects: int,
) -> FloatArray:
    """log p(x | the subject's training responses) for every test cell, on the fit's quadrature.

    Cells are ``(subject, fitted item, score)`` in the calibrator's item
    numbering (``cal.item_ids_``); the posterior over the nodes uses the
    fitted latent distribution (the quadrature's weights).
    """
    nodes, log_w = cal.quadrature_
    model = fitted_model(cal)
    lp = model.log_category_probs(nodes)  # (Q, n_items, K)
    q, n_items, k = lp.shape
    s, i, x = (np.asarray(v, dtype=np.int64) for v in train)
    ind = sparse.csr_matrix((np.ones(len(s)), (s, i * k + x)), shape=(n_subjects, n_items * k))
    log_post = np.asarray(ind @ lp.reshape(q, -1).T) + log_w  # (S, Q)
    log_post -= logsumexp(log_post, axis=1, keepdims=True)
    ts, ti, tx = (np.asarray(v, dtype=np.int64) for v in test)
    out = np.empty(len(ts))
    step = max(1, _CELL_CHUNK // q)
    for lo in range(0, len(ts), step):  # chunks of cells, each vectorised over nodes
        sl = slice(lo, lo + step)
        out[sl] = logsumexp(log_post[ts[sl]] + lp[:, ti[sl], tx[sl]].T, axis=1)
    return out


def _q3(cal: GRMCalibrator, s: IntArray, i: IntArray, x: IntArray, n_subjects: int) -> Q3Result:
    """Q3 on residuals x − E[X | EAP θ] of the D-dimensional fit (fitted items)."""
    model = fitted_model(cal)
    probs = model.category_probs_at(cal.eap_[s], i)
    expected = probs @ np.arange(probs.shape[-1], dtype=float)
    return q3_of_residuals(x - expected, s, i, n_subjects, len(cal.item_ids_))


def compare_dimensions(
    subject_idx: ArrayLike,
    item_idx: ArrayLike,
    score: ArrayLike,
    *,
    n_categories: ArrayLike,
    n_subjects: int,
    candidates: Sequence[Candidate] | None = None,
    max_dims: int = 3,
    folds: int = 5,
    seed: int = 0,
    calibrator_args: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> DimensionComparison:
    """Fit each candidate and score it (see the module docstring).

    Args:
        subject_idx, item_idx, score: Observed cells; ``item_idx`` numbers the
            items 0..n−1 and ``n_categories`` gives each item's K.
        candidates: Structures to compare (default: D = 1..``max_dims``,
            exploratory for D > 1); loading rows in the ``item_idx`` numbering.
        calibrator_args: Extra :class:`GRMCalibrator` arguments (priors, ``n_qmc`` …).
    """
    say = progress or (lambda _msg: None)
    s = np.asarray(subject_idx, dtype=np.int64)
    i = np.asarray(item_idx, dtype=np.int64)
    x = np.asarray(score, dtype=np.int64)
    k = np.asarray(n_categories, dtype=np.int64)
    fold_of = np.random.default_rng(seed).permutation(len(x)) % folds
    extra = dict(calibrator_args or {})
    ids = [str(j) for j in range(len(k))]  # every item, so loading rows always line up
    cands = list(candidates or [Candidate(f"D={d}", d) for d in range(1, max_dims + 1)])

    def calibrate(c: Candidate, keep: NDArray[np.bool_], compute_se: bool) -> GRMCalibrator:
        cal = GRMCalibrator(
            n_dims=c.n_dims, loadings=c.loadings, compute_se=compute_se, seed=seed, **extra
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationConvergenceWarning)
            return cal.fit(
                s[keep], i[keep], x[keep], n_categories=k, item_ids=ids, n_subjects=n_subjects
            )

    fits: list[DimensionFit] = []
    for c in cands:
        say(f"dimensions: fitting {c.label} on all responses")
        cal = calibrate(c, np.ones(len(x), dtype=bool), compute_se=c.n_dims > 1)
        fitted = np.full(len(k), -1)
        fitted[cal.item_index_] = np.arange(len(cal.item_index_))
        on = fitted[i] >= 0
        q3 = _q3(cal, s[on], fitted[i[on]], x[on], n_subjects)
        p = n_parameters(cal)
        n_used = int(np.unique(s[on]).size)
        fits.append(
            DimensionFit(
                label=c.label,
                n_dims=c.n_dims,
                structure=cal.structure_,
                log_likelihood=cal.loglik_,
                n_parameters=p,
                aic=-2.0 * cal.loglik_ + 2.0 * p,
                bic=-2.0 * cal.loglik_ + p * math.log(max(n_used, 2)),
                converged=bool(cal.converged_),
                latent_correlation=cal.latent_corr_,
                latent_correlation_se=cal.latent_corr_se_,
                q3=q3,
            )
        )
    base_total, n_cells = 0.0, 0
    for f in range(folds):
        test = fold_of == f
        train = ~test
        per_d: list[tuple[GRMCalibrator, IntArray]] = []
        for c in cands:
            say(f"dimensions: fold {f + 1}/{folds}, {c.label}")
            cal = calibrate(c, train, compute_se=False)
            fitted = np.full(len(k), -1)
            fitted[cal.item_index_] = np.arange(len(cal.item_index_))
            per_d.append((cal, fitted))
        # cells every D can score: items fitted in this fold (the same for every D)
        scored = test & np.all([fitted[i] >= 0 for _cal, fitted in per_d], axis=0)
        for fit, (cal, fitted) in zip(fits, per_d, strict=True):
            tr = train & (fitted[i] >= 0)
            lp = heldout_log_predictive(
                cal,
                (s[tr], fitted[i[tr]], x[tr]),
                (s[scored], fitted[i[scored]], x[scored]),
                n_subjects,
            )
            fit.heldout_loglik += float(lp.sum())
            fit.n_heldout += int(scored.sum())
            fit.fold_loglik.append(float(lp.sum()))
        base_total += float(_base_rates(i, x, k, train, scored).sum())
        n_cells += int(scored.sum())
    return DimensionComparison(fits, folds, seed, base_total / max(n_cells, 1), n_cells)


def _base_rates(
    i: IntArray, x: IntArray, k: IntArray, train: NDArray[np.bool_], test: NDArray[np.bool_]
) -> FloatArray:
    """log of each test cell's item category share in training (add-one smoothed)."""
    k_max = int(k.max())
    counts = np.ones((len(k), k_max))
    counts[np.arange(k_max)[None, :] >= k[:, None]] = 0.0
    np.add.at(counts, (i[train], x[train]), 1.0)
    shares = counts / counts.sum(axis=1, keepdims=True)
    return np.log(shares[i[test], x[test]])


def preferred(fits: Sequence[DimensionFit], key: str) -> DimensionFit:
    """The fit with the best ``heldout`` (highest), ``aic`` or ``bic`` (lowest)."""
    if key == "heldout":
        return max(fits, key=lambda f: f.heldout_loglik)
    return min(fits, key=lambda f: getattr(f, key))
