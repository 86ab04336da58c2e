"""Grid posteriors over θ ∈ R^D: EAP vector, posterior covariance (SEs), MAP; one subject or many.

The posterior lives on a product grid of quadrature points, one
:class:`GridSpec` per dimension (default 81 points on [−6, 6] for D = 1, 41
per axis for D = 2, 21 for D = 3: 81, 1,681 and 9,261 points). One response
updates it in O(grid). A rectangle rule on a smooth, fast-decaying density is
accurate while the grid spacing is below the posterior SD; when a test shrinks
some dimension's SD under ``regrid_ratio`` × its spacing, every axis of that
row is narrowed to EAP ± h SD (h = min(10, (n − 1) / (4 · ratio)), so the new
spacing is at most SD / (2 · ratio)) and the log-likelihood recomputed from the
stored responses, so the SEs stay honest on long tests too. D = 1 keeps its
historical setting (ratio 2, EAP ± 10 SD); D > 1 uses ratio 1 (spacing ≤ SD,
whose rectangle-rule error on a normal density is ~1e-8) so that fewer nodes
per axis suffice.

The prior is normal, θ ~ N(μ, diag(σ) R diag(σ)), as a bank states it: per
dimension means and SDs and a latent correlation R.

:class:`GridPosterior` holds S subjects in ``(S, …)`` arrays and advances any
subset of them by one response each; the offline replay moves thousands of
subjects in lockstep with it. :class:`Posterior` is its S = 1 view for a live
test. Both evaluate responses through one
:class:`~orchestrator.irt.model.GradedResponseModel`, so a live test and its
replay compute the same bits (``tests/test_replay.py``), and D = 1 is not a
special case: its grid is the product grid of one axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from orchestrator.irt.model import GradedResponseModel

__all__ = [
    "DEFAULT_GRID",
    "GridPosterior",
    "GridSpec",
    "Posterior",
    "default_grid",
    "grid_moments",
    "grid_summaries",
    "make_grid",
    "normal_log_prior",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_NODES_PER_AXIS = {1: 81, 2: 41, 3: 21}
_MAX_REGRIDS = 40  # a bulk estimate narrows at most this often (each at least halves the SD)


@dataclass(frozen=True)
class GridSpec:
    """Where the quadrature points of one θ axis lie: ``n`` even points on [lo, hi]."""

    lo: float = -6.0
    hi: float = 6.0
    n: int = 81

    def points(self) -> FloatArray:
        return make_grid(self.lo, self.hi, self.n)


DEFAULT_GRID = GridSpec()


def default_grid(n_dims: int) -> GridSpec:
    """The per-axis grid for a D-dimensional θ: 81 nodes for D = 1, 41 for D = 2, 21 for D = 3."""
    return GridSpec(n=_NODES_PER_AXIS.get(n_dims, 21))


def make_grid(lo: float = -6.0, hi: float = 6.0, n: int = 81) -> FloatArray:
    """Evenly spaced quadrature points; validates the arguments."""
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"grid bounds must be finite with lo < hi; got lo={lo}, hi={hi}")
    if n < 3:
        raise ValueError(f"grid needs at least 3 points; got n={n}")
    return np.linspace(lo, hi, n)


def grid_moments(coords: FloatArray, log_post: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Posterior mean ``(..., D)`` and covariance ``(..., D, D)`` from log densities on a grid.

    Args:
        coords: Coordinates of the points, point axis last: ``(..., D, G)``
            (broadcast against ``log_post``).
        log_post: Unnormalised log densities, ``(..., G)``.
    """
    if coords.shape[:-1] == (1, 1) and log_post.shape[:-1] == (1,):  # one 1-D posterior
        mean, var = _moments_one(coords[0, 0], log_post[0])
        return np.full((1, 1), mean), np.full((1, 1, 1), var)
    w = log_post - log_post.max(axis=-1, keepdims=True)
    np.exp(w, out=w)
    w /= w.sum(axis=-1, keepdims=True)
    mean = (w[..., None, :] * coords).sum(axis=-1)
    centred = coords - mean[..., None]
    n_dims = mean.shape[-1]
    cov = np.empty((*mean.shape, n_dims))
    for d in range(n_dims):  # D ≤ 3: the pairs, not a loop over subjects or points
        cov[..., d, d] = (w * centred[..., d, :] ** 2).sum(axis=-1)
        for e in range(d):
            cross = (w * (centred[..., d, :] * centred[..., e, :])).sum(axis=-1)
            cov[..., d, e] = cov[..., e, d] = cross
    return mean, cov


def _moments_one(coords: FloatArray, log_post: FloatArray) -> tuple[float, float]:
    """Mean and variance of a single 1-D posterior (a live update) as :func:`grid_moments`
    computes them: the same operations on flat vectors (the same bits), fewer calls."""
    w = log_post - log_post.max()
    np.exp(w, out=w)
    w /= w.sum()
    mean = np.multiply(w, coords).sum()
    centred = coords - mean
    centred *= centred
    centred *= w
    return float(mean), float(centred.sum())


def grid_summaries(grid: FloatArray, log_post: FloatArray) -> tuple[FloatArray, FloatArray]:
    """EAP and posterior SD of a one-dimensional θ from unnormalised log densities on ``grid``.

    ``log_post`` has shape ``(..., n_grid)``; the grid may be shared (1-d) or
    per row (same shape as ``log_post``). Returns arrays of shape ``(...)``.
    """
    mean, cov = grid_moments(np.asarray(grid)[..., None, :], log_post)
    return mean[..., 0], np.sqrt(np.maximum(cov[..., 0, 0], 0.0))


def normal_log_prior(points: FloatArray, mean: float, sd: float) -> FloatArray:
    """Log density of the N(mean, sd²) prior on a 1-D θ at ``points``, up to a constant."""
    return -0.5 * ((points - mean) / sd) ** 2


def _product_coords(axes: Sequence[FloatArray]) -> FloatArray:
    """Points of the product grid of ``axes`` (each ``(..., n_d)``): ``(..., D, Π n_d)``."""
    sizes = [ax.shape[-1] for ax in axes]
    lead = axes[0].shape[:-1]
    out = np.empty((*lead, len(axes), math.prod(sizes)))
    for d, ax in enumerate(axes):
        shape = (*lead, *(1,) * d, sizes[d], *(1,) * (len(axes) - d - 1))
        out[..., d, :] = np.broadcast_to(ax.reshape(shape), (*lead, *sizes)).reshape(*lead, -1)
    return out


def _per_row(value: ArrayLike, n_rows: int, n_dims: int, name: str) -> FloatArray:
    """A prior parameter as ``(1, D)`` (shared) or ``(S, D)`` (one per row).

    A number is shared by every dimension; a vector is one per dimension, except
    for D = 1, where it is one per row.
    """
    v = np.asarray(value, dtype=float)
    if v.ndim == 0:
        v = np.full((1, n_dims), float(v))
    elif v.ndim == 1:
        v = v[:, None] if n_dims == 1 else v[None, :]
    if v.ndim != 2 or v.shape[1] != n_dims or v.shape[0] not in (1, n_rows):
        raise ValueError(
            f"{name} must be a number, one per dimension ({n_dims}) or one row per subject "
            f"({n_rows}, {n_dims}); got shape {np.shape(value)}"
        )
    return v


class GridPosterior:
    """S grid posteriors with normal priors, over the items of one model.

    Args:
        model: The items (responses name them by index); its D is θ's.
        n_subjects: S.
        prior_mean: Mean of the normal prior on θ: a number, one per dimension
            ``(D,)``, or one row per subject ``(S, D)`` (for D = 1 also ``(S,)``:
            a subject's own prior, e.g. collateral information from another test).
        prior_sd: SD of the prior per dimension, likewise.
        prior_correlation: Latent correlation ``(D, D)`` of the prior (None: identity).
        grid: One :class:`GridSpec` for every axis, or one per dimension
            (default :func:`default_grid`).
        regrid_ratio: Narrow a row's grid once some dimension's SD < ratio ×
            its spacing (0 disables; default 2 for D = 1, 1 for D > 1).
        capacity: Responses per row to allocate for (grows when exceeded).
        track_information: Keep Σ information of each row's administered items
            on its grid (``admin_info``), for rules that integrate information
            over the posterior.
        lapse: Lapse rate ε of the robust likelihood
            (:func:`~orchestrator.irt.model.with_lapse`); 0 = the plain GRM.

    Attributes:
        coords: ``(S, D, G)`` each row's grid points, point axis last (narrower
            after a regrid); :attr:`points` is the same as ``(S, G, D)`` θ points.
        loglik: ``(S, G)`` log-likelihood of each row's responses on its grid.
        eap, sd: ``(S, D)`` posterior mean and SD per dimension.
        cov: ``(S, D, D)`` posterior covariance.
        items, scores: ``(S, capacity)`` responses in order, padded with −1.
        count: ``(S,)`` responses per row.
        admin_info: ``(S, G)`` (``(S, G, D, D)`` when D > 1) or None.
    """

    def __init__(
        self,
        model: GradedResponseModel,
        n_subjects: int,
        *,
        prior_mean: ArrayLike = 0.0,
        prior_sd: ArrayLike = 1.0,
        prior_correlation: ArrayLike | None = None,
        grid: GridSpec | Sequence[GridSpec] | None = None,
        regrid_ratio: float | None = None,
        capacity: int = 16,
        track_information: bool = False,
        lapse: float = 0.0,
    ) -> None:
        if not 0 <= lapse < 1:
            raise ValueError(f"lapse must be in [0, 1); got {lapse}")
        d = model.n_dims
        self.model = model
        self.n_dims = d
        self.prior_mean = _per_row(prior_mean, n_subjects, d, "prior_mean")
        self.prior_sd = _per_row(prior_sd, n_subjects, d, "prior_sd")
        if not (np.all(np.isfinite(self.prior_sd)) and np.all(self.prior_sd > 0)):
            raise ValueError(f"prior_sd must be a positive number (or one per row); got {prior_sd}")
        self.prior_correlation, self._decorrelate = _correlation(prior_correlation, d)
        self._prior_precision: FloatArray | None = None
        self._inv_corr = (
            np.eye(d) if self._decorrelate is None else self._decorrelate.T @ self._decorrelate
        )
        if grid is None:
            grid = default_grid(d)
        self.grids: tuple[GridSpec, ...] = (
            (grid,) * d if isinstance(grid, GridSpec) else tuple(grid)
        )
        if len(self.grids) != d:
            raise ValueError(f"give one GridSpec or {d} (one per dimension); got {len(self.grids)}")
        self.regrid_ratio = float(
            (2.0 if d == 1 else 1.0) if regrid_ratio is None else regrid_ratio
        )
        self.lapse = float(lapse)
        start = _product_coords([g.points() for g in self.grids])
        self.coords = np.tile(start, (n_subjects, 1, 1))
        self._prior_at_points = self._log_prior(self.coords)  # changes only with the grid
        n_points = start.shape[-1]
        self.loglik = np.zeros((n_subjects, n_points))
        info_shape = () if d == 1 else (d, d)
        self.admin_info = (
            np.zeros((n_subjects, n_points, *info_shape)) if track_information else None
        )
        self.items = np.full((n_subjects, max(1, capacity)), -1, dtype=np.int64)
        self.scores = np.full_like(self.items, -1)
        self.count = np.zeros(n_subjects, dtype=np.int64)
        self.eap = np.empty((n_subjects, d))
        self.sd = np.empty((n_subjects, d))
        self.cov = np.empty((n_subjects, d, d))
        # an SD below this (per row and dimension) narrows the row's grid; changes with it
        self._narrow_below = self.regrid_ratio * self._spacing(self.coords)
        self._summarise(np.arange(n_subjects))

    # -- the prior -------------------------------------------------------------------
    @property
    def points(self) -> FloatArray:
        """Each row's grid as the model's θ points, ``(S, G, D)`` (a view of :attr:`coords`)."""
        return self.coords.transpose(0, 2, 1)

    @property
    def prior_precision(self) -> FloatArray:
        """Σ⁻¹ of the prior, ``(1, D, D)`` or ``(S, D, D)``: 1/σ² when D = 1."""
        if self._prior_precision is None:  # the prior is fixed: computed once
            sd = self.prior_sd
            self._prior_precision = self._inv_corr / (sd[:, :, None] * sd[:, None, :])
            self._prior_precision.setflags(write=False)
        return self._prior_precision

    def _prior_rows(self, rows: IntArray | slice) -> tuple[FloatArray, FloatArray]:
        mean, sd = self.prior_mean, self.prior_sd
        if mean.shape[0] > 1:
            mean, sd = mean[rows], sd[rows]
        return mean[..., None], sd[..., None]

    def _log_prior(self, coords: FloatArray, rows: IntArray | slice = slice(None)) -> FloatArray:
        """Unnormalised log prior of ``rows`` at their points ``coords (r, D, G)``: −½‖L⁻¹z‖²."""
        mean, sd = self._prior_rows(rows)
        z = (coords - mean) / sd
        if self._decorrelate is not None:
            z = np.einsum("de,reg->rdg", self._decorrelate, z)
        return -0.5 * (z**2).sum(axis=-2)

    def log_density(self, rows: IntArray | slice = slice(None)) -> FloatArray:
        """Unnormalised log posterior of ``rows`` on their grids, ``(len(rows), G)``."""
        return self.loglik[rows] + self._prior_at_points[rows]

    def weights(self, rows: IntArray | slice = slice(None)) -> FloatArray:
        """Normalised posterior mass of ``rows`` at their grid points."""
        lp = self.log_density(rows)
        w = np.exp(lp - lp.max(axis=-1, keepdims=True))
        return w / w.sum(axis=-1, keepdims=True)

    def _summarise(self, rows: IntArray) -> None:
        self._store(rows, *grid_moments(self.coords[rows], self.log_density(rows)))

    def _store(self, rows: IntArray | slice, mean: FloatArray, cov: FloatArray) -> FloatArray:
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))
        self.eap[rows], self.cov[rows], self.sd[rows] = mean, cov, sd
        return sd

    def _spacing(self, coords: FloatArray) -> FloatArray:
        """Grid spacing per row and dimension, ``(r, D)``."""
        out = np.empty((coords.shape[0], self.n_dims))
        stride = coords.shape[-1]
        for d, g in enumerate(self.grids):  # in C order, axis d repeats every Π_{e>d} n_e points
            stride //= g.n
            out[:, d] = coords[:, d, stride] - coords[:, d, 0]
        return out

    # -- updating ------------------------------------------------------------------
    def update(self, rows: IntArray | slice, items: IntArray, scores: IntArray) -> None:
        """Row ``rows[i]`` observes ``scores[i]`` on model item ``items[i]``; O(rows × G).

        ``rows`` may be a slice (a live test's one row: the arrays are views, no copies).
        """
        if not isinstance(rows, slice):
            rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.int64)
        if self.n_dims == 1 and isinstance(rows, slice) and items.size == 1:
            row = range(*rows.indices(len(self.count)))
            if len(row) == 1:  # a live test's step: scalars, views, no gathers
                self._update_one(row[0], int(items.flat[0]), int(scores.flat[0]))
                return
        coords = self.coords[rows]
        theta = coords.transpose(0, 2, 1)
        logp = self.model.log_prob_at(theta, items[:, None], scores[:, None], self.lapse)
        if isinstance(rows, slice):  # a view: add in place
            loglik = self.loglik[rows]
            loglik += logp
        else:
            loglik = self.loglik[rows] + logp
            self.loglik[rows] = loglik
        if self.admin_info is not None:
            self.admin_info[rows] += self.model.information_at(theta, items[:, None])
        step = self.count[rows]
        if step.size and int(step.max()) >= self.items.shape[1]:
            self._grow()
        self.items[rows, step] = items
        self.scores[rows, step] = scores
        self.count[rows] = step + 1
        sd = self._store(rows, *grid_moments(coords, loglik + self._prior_at_points[rows]))
        if self.regrid_ratio > 0:
            narrow = (sd < self._narrow_below[rows]).any(axis=1)
            if narrow.any():
                self._regrid(np.arange(len(self.count))[rows][narrow])

    def _update_one(self, row: int, item: int, score: int) -> None:
        """:meth:`update` of one row of a 1-D posterior by one response: the same
        arithmetic on the row's vectors (the same bits), a fixed cost a few times lower."""
        coords = self.coords[row, 0]
        loglik = self.loglik[row]
        loglik += self.model.log_prob_at(coords[:, None], item, score, self.lapse)
        if self.admin_info is not None:
            self.admin_info[row] += self.model.information_at(coords[:, None], item)
        step = int(self.count[row])
        if step >= self.items.shape[1]:
            self._grow()
        self.items[row, step], self.scores[row, step] = item, score
        self.count[row] = step + 1
        mean, var = _moments_one(coords, loglik + self._prior_at_points[row])
        sd = math.sqrt(max(var, 0.0))
        self.eap[row, 0], self.cov[row, 0, 0], self.sd[row, 0] = mean, var, sd
        if self.regrid_ratio > 0 and sd < self._narrow_below[row, 0]:
            self._regrid(np.array([row]))

    def observe_all(self, items: IntArray, scores: IntArray) -> None:
        """Every row takes all its responses at once: ``(S, T)`` in order, padded with −1.

        For estimates from recorded data, not for a test: the log-likelihood is
        summed on the starting grid, then narrow rows are regridded (from all
        their responses) until none is, so the result does not depend on the
        order of the responses.
        """
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.int64)
        rows = np.arange(self.items.shape[0])
        self.items, self.scores = items.copy(), scores.copy()
        self.count = (items >= 0).sum(axis=1)
        self._recompute(rows, self.coords)
        self._summarise(rows)
        for _ in range(_MAX_REGRIDS):
            if self.regrid_ratio <= 0:
                break
            narrow = rows[(self.sd < self._narrow_below).any(axis=1)]
            if not narrow.size:
                break
            self._regrid(narrow)

    def _grow(self) -> None:
        pad = np.full_like(self.items, -1)
        self.items = np.concatenate([self.items, pad], axis=1)
        self.scores = np.concatenate([self.scores, pad], axis=1)

    def _regrid(self, rows: IntArray) -> None:
        """Narrow every axis of the grids of ``rows`` to EAP ± h SD (within the axis' bounds)."""
        axes = []
        for d, g in enumerate(self.grids):
            half = min(10.0, (g.n - 1) / (4.0 * self.regrid_ratio)) * self.sd[rows, d]
            lo = np.maximum(g.lo, self.eap[rows, d] - half)
            hi = np.minimum(g.hi, self.eap[rows, d] + half)
            axes.append(np.linspace(lo, hi, g.n, axis=1))
        coords = _product_coords(axes)
        self._recompute(rows, coords)
        self.coords[rows] = coords
        self._narrow_below[rows] = self.regrid_ratio * self._spacing(coords)
        self._prior_at_points[rows] = self._log_prior(coords, rows)
        self._summarise(rows)

    def _recompute(self, rows: IntArray, coords: FloatArray) -> None:
        """Log-likelihood (and information) of the stored responses of ``rows`` at ``coords``."""
        t = int(self.count[rows].max(initial=0))
        items, x = self.items[rows, :t], self.scores[rows, :t]
        valid = items >= 0
        items, x = np.where(valid, items, 0), np.where(valid, x, 0)
        n_points = coords.shape[-1]
        chunk = max(1, (1 << 22) // (n_points * max(t, 1)))
        for c in range(0, len(rows), chunk):  # bound the (rows, t, G) temporaries
            sl = slice(c, c + chunk)
            theta = coords[sl].transpose(0, 2, 1)
            # (rows, t, G) summed over t: one response added after another
            logp = self.model.log_prob_at(
                theta[:, None], items[sl, :, None], x[sl, :, None], self.lapse
            )
            self.loglik[rows[sl]] = np.where(valid[sl, :, None], logp, 0.0).sum(axis=1)
            if self.admin_info is not None:
                info = self.model.information_at(theta[:, :, None], items[sl, None, :])
                keep = valid[sl, None, :].reshape(valid[sl, None, :].shape + (1,) * (info.ndim - 3))
                self.admin_info[rows[sl]] = np.where(keep, info, 0.0).sum(axis=2)

    # -- reading -------------------------------------------------------------------
    def loglik_at(self, row: int, theta: ArrayLike) -> FloatArray:
        """Log-likelihood of row ``row``'s responses at θ points ``(..., D)``: ``(...)``."""
        th = np.asarray(theta, dtype=float)
        n = int(self.count[row])
        if n == 0:
            return np.zeros(th.shape[:-1])
        items, x = self.items[row, :n], self.scores[row, :n]
        return self.model.log_prob_at(th[..., None, :], items, x, self.lapse).sum(axis=-1)


def _correlation(
    corr: ArrayLike | None, n_dims: int
) -> tuple[FloatArray | None, FloatArray | None]:
    """The prior correlation R and L⁻¹ (R = L Lᵀ), or (None, None) for the identity."""
    if corr is None:
        return None, None
    r = np.array(corr, dtype=float)
    if r.shape != (n_dims, n_dims):
        raise ValueError(f"prior_correlation must be {n_dims} x {n_dims}; got shape {r.shape}")
    if not np.allclose(np.diag(r), 1.0) or not np.allclose(r, r.T):
        raise ValueError("prior_correlation must be symmetric with a unit diagonal")
    if np.array_equal(r, np.eye(n_dims)):
        return None, None
    try:
        chol = np.linalg.cholesky(r)
    except np.linalg.LinAlgError:
        raise ValueError("prior_correlation must be positive definite") from None
    r.setflags(write=False)
    return r, np.linalg.inv(chol)


class Posterior:
    """Posterior over one subject's θ on a grid, updated one response at a time.

    The S = 1 view of :class:`GridPosterior` (same arithmetic, same bits).

    Args:
        model: The items (e.g. a bank's); responses name them by index.
        prior_mean, prior_sd: Normal prior on θ: numbers or one per dimension.
        prior_correlation: Latent correlation of the prior (None: identity).
        grid: Grid bounds and size per axis (default :func:`default_grid`).
        regrid_ratio: Narrow the grid once an SD < ratio × spacing (0 disables).
        track_information: Keep the answered items' total information on the
            grid (``batch.admin_info``).
        lapse: Lapse rate of the robust likelihood (0 = the plain GRM).

    Attributes:
        batch: The one-row :class:`GridPosterior` this is a view of.
    """

    def __init__(
        self,
        model: GradedResponseModel,
        *,
        prior_mean: ArrayLike = 0.0,
        prior_sd: ArrayLike = 1.0,
        prior_correlation: ArrayLike | None = None,
        grid: GridSpec | Sequence[GridSpec] | None = None,
        regrid_ratio: float | None = None,
        track_information: bool = False,
        lapse: float = 0.0,
    ) -> None:
        self.batch = GridPosterior(
            model,
            1,
            prior_mean=prior_mean,
            prior_sd=prior_sd,
            prior_correlation=prior_correlation,
            grid=grid,
            regrid_ratio=regrid_ratio,
            track_information=track_information,
            lapse=lapse,
        )
        self._row = np.zeros(1, dtype=np.int64)

    def update(self, item: int, score: int) -> None:
        """Multiply in the likelihood of ``score`` on model item ``item``, O(grid)."""
        self.batch.update(slice(0, 1), np.array([item]), np.array([score]))

    @property
    def points(self) -> FloatArray:
        """Current quadrature points ``(G, D)`` (narrower than the initial grid after a regrid)."""
        return self.batch.points[0]

    @property
    def log_density_unnormalised(self) -> FloatArray:
        return self.batch.log_density(self._row)[0]

    @property
    def weights(self) -> FloatArray:
        """Normalised posterior mass at each grid point."""
        return self.batch.weights(self._row)[0]

    @property
    def eap(self) -> FloatArray:
        """Posterior mean of θ, ``(D,)`` (the default point estimate)."""
        return self.batch.eap[0].copy()

    @property
    def sd(self) -> FloatArray:
        """Posterior SD of each dimension of θ, ``(D,)``, reported as the standard errors."""
        return self.batch.sd[0].copy()

    @property
    def cov(self) -> FloatArray:
        """Posterior covariance of θ, ``(D, D)``."""
        return self.batch.cov[0].copy()

    @property
    def n_responses(self) -> int:
        return int(self.batch.count[0])

    def loglik_at(self, theta: ArrayLike) -> FloatArray:
        """Log-likelihood of the responses at θ points ``(..., D)``."""
        return self.batch.loglik_at(0, theta)

    def map(self) -> float:
        """Posterior mode of a one-dimensional θ: grid argmax, refined by a bounded search.

        Raises:
            ValueError: θ has more than one dimension (report the EAP there).
        """
        if self.batch.n_dims != 1:
            raise ValueError(f"the MAP is computed for one dimension; θ has {self.batch.n_dims}")
        lp = self.log_density_unnormalised
        pts = self.points[:, 0]
        i = int(np.argmax(lp))
        lo = pts[max(i - 1, 0)]
        hi = pts[min(i + 1, len(lp) - 1)]
        mean, sd = float(self.batch.prior_mean[0, 0]), float(self.batch.prior_sd[0, 0])

        def neg(t: float) -> float:
            return -float(self.loglik_at(np.array([t])) + normal_log_prior(np.array(t), mean, sd))

        res = minimize_scalar(neg, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
        return float(res.x)
