"""Grid posteriors over θ: EAP, posterior SD (the SE) and MAP, for one subject or many.

The posterior lives on a fixed grid of quadrature points (default 81 on
[−6, 6]). One response updates it in O(grid). A rectangle rule on a smooth,
fast-decaying density is accurate while the grid spacing is below the
posterior SD; when a long test shrinks the SD under ``regrid_ratio`` × spacing,
the grid is narrowed to EAP ± 10 SD and the log-likelihood recomputed from
the stored responses, so the SE stays honest on long tests too.

:class:`GridPosterior` holds S subjects in ``(S, G)`` arrays and advances any
subset of them by one response each; the offline replay moves thousands of
subjects in lockstep with it. :class:`Posterior` is its S = 1 view for a live
test. Both evaluate responses through one
:class:`~orchestrator.irt.model.GradedResponseModel`, so a live test and its
replay compute the same bits (``tests/test_replay.py``).

θ is one-dimensional here: a :class:`GridSpec` describes one axis. A
D-dimensional posterior is the product grid of D axes, points ``(S, G, D)``
as the model already takes them; :meth:`GridPosterior._theta` is where the
trailing D = 1 axis is added.
"""

from __future__ import annotations

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
    "grid_summaries",
    "make_grid",
    "normal_log_prior",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class GridSpec:
    """Where the quadrature points of one θ axis lie: ``n`` even points on [lo, hi]."""

    lo: float = -6.0
    hi: float = 6.0
    n: int = 81

    def points(self) -> FloatArray:
        return make_grid(self.lo, self.hi, self.n)


DEFAULT_GRID = GridSpec()


def make_grid(lo: float = -6.0, hi: float = 6.0, n: int = 81) -> FloatArray:
    """Evenly spaced quadrature points; validates the arguments."""
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"grid bounds must be finite with lo < hi; got lo={lo}, hi={hi}")
    if n < 3:
        raise ValueError(f"grid needs at least 3 points; got n={n}")
    return np.linspace(lo, hi, n)


def grid_summaries(grid: FloatArray, log_post: FloatArray) -> tuple[FloatArray, FloatArray]:
    """EAP and posterior SD from unnormalised log densities on ``grid``.

    ``log_post`` has shape ``(..., n_grid)``; the grid may be shared (1-d) or
    per row (same shape as ``log_post``). Returns arrays of shape ``(...)``.
    """
    w = np.exp(log_post - log_post.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    eap = (w * grid).sum(axis=-1)
    centred = grid - eap[..., None]
    var = (w * centred**2).sum(axis=-1)
    return eap, np.sqrt(np.maximum(var, 0.0))


def normal_log_prior(points: FloatArray, mean: float, sd: float) -> FloatArray:
    """Log density of the N(mean, sd²) prior on θ at ``points``, up to a constant."""
    return -0.5 * ((points - mean) / sd) ** 2


class GridPosterior:
    """S grid posteriors with normal priors, over the items of one model.

    Args:
        model: The items (responses name them by index).
        n_subjects: S.
        prior_mean: Mean of the normal prior on θ: one for every row, or one per
            row ``(S,)`` (a subject's own prior, e.g. collateral information
            from another test).
        prior_sd: SD of the normal prior on θ, likewise.
        grid: Grid bounds and size for the quadrature points.
        regrid_ratio: Narrow a row's grid once its SD < ratio × spacing (0 disables).
        capacity: Responses per row to allocate for (grows when exceeded).
        track_information: Keep Σ information of each row's administered items
            on its grid (``admin_info``), for rules that integrate information
            over the posterior.

    Attributes:
        points: ``(S, G)`` each row's grid (narrower after a regrid).
        loglik: ``(S, G)`` log-likelihood of each row's responses on its grid.
        eap, sd: ``(S,)`` posterior mean and SD.
        items, scores: ``(S, capacity)`` responses in order, padded with −1.
        count: ``(S,)`` responses per row.
        admin_info: ``(S, G)`` or None.
    """

    def __init__(
        self,
        model: GradedResponseModel,
        n_subjects: int,
        *,
        prior_mean: float | FloatArray = 0.0,
        prior_sd: float | FloatArray = 1.0,
        grid: GridSpec = DEFAULT_GRID,
        regrid_ratio: float = 2.0,
        capacity: int = 16,
        track_information: bool = False,
    ) -> None:
        sd_values = np.asarray(prior_sd, dtype=float)
        if not (np.all(np.isfinite(sd_values)) and np.all(sd_values > 0)):
            raise ValueError(f"prior_sd must be a positive number (or one per row); got {prior_sd}")
        if model.n_dims != 1:
            raise ValueError(
                f"the grid posterior is one-dimensional; the model has D = {model.n_dims}"
            )
        self.model = model
        per_row = np.ndim(prior_mean) > 0 or np.ndim(prior_sd) > 0
        self.prior_mean: float | FloatArray = (
            np.broadcast_to(np.asarray(prior_mean, dtype=float), (n_subjects,))
            if per_row
            else float(prior_mean)
        )
        self.prior_sd: float | FloatArray = (
            np.broadcast_to(sd_values, (n_subjects,)) if per_row else float(prior_sd)
        )
        self.grid = grid
        self.regrid_ratio = float(regrid_ratio)
        self.points = np.tile(make_grid(grid.lo, grid.hi, grid.n), (n_subjects, 1))
        self._prior_at_points = self.log_prior(self.points)  # changes only with the grid
        self.loglik = np.zeros((n_subjects, grid.n))
        self.admin_info = np.zeros((n_subjects, grid.n)) if track_information else None
        self.items = np.full((n_subjects, max(1, capacity)), -1, dtype=np.int64)
        self.scores = np.full_like(self.items, -1)
        self.count = np.zeros(n_subjects, dtype=np.int64)
        self.eap = np.empty(n_subjects)
        self.sd = np.empty(n_subjects)
        self._summarise(np.arange(n_subjects))

    @staticmethod
    def _theta(points: FloatArray) -> FloatArray:
        """Grid coordinates as the model's θ points ``(..., D)`` (D = 1)."""
        return points[..., None]

    def log_prior(
        self, points: FloatArray, rows: IntArray | slice | int = slice(None)
    ) -> FloatArray:
        """Unnormalised log prior density of ``rows`` at their ``points``."""
        mean, sd = self.prior_mean, self.prior_sd
        if isinstance(mean, np.ndarray) and isinstance(sd, np.ndarray):
            mean, sd = mean[rows], sd[rows]
            if np.ndim(mean):  # one prior per row of points
                mean, sd = mean[:, None], sd[:, None]
        return normal_log_prior(points, mean, sd)  # type: ignore[arg-type]

    def log_density(self, rows: IntArray | slice = slice(None)) -> FloatArray:
        """Unnormalised log posterior of ``rows`` on their grids, ``(len(rows), G)``."""
        return self.loglik[rows] + self._prior_at_points[rows]

    def weights(self, rows: IntArray | slice = slice(None)) -> FloatArray:
        """Normalised posterior mass of ``rows`` at their grid points."""
        lp = self.log_density(rows)
        w = np.exp(lp - lp.max(axis=-1, keepdims=True))
        return w / w.sum(axis=-1, keepdims=True)

    def _summarise(self, rows: IntArray) -> None:
        self.eap[rows], self.sd[rows] = grid_summaries(self.points[rows], self.log_density(rows))

    # -- updating ------------------------------------------------------------------
    def update(self, rows: IntArray, items: IntArray, scores: IntArray) -> None:
        """Row ``rows[i]`` observes ``scores[i]`` on model item ``items[i]``; O(rows × G)."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.int64)
        pts = self.points[rows]
        theta = self._theta(pts)
        loglik = self.loglik[rows] + self.model.log_prob_at(theta, items[:, None], scores[:, None])
        self.loglik[rows] = loglik
        if self.admin_info is not None:
            self.admin_info[rows] += self.model.information_at(theta, items[:, None])
        step = self.count[rows]
        if rows.size and int(step.max()) >= self.items.shape[1]:
            self._grow()
        self.items[rows, step] = items
        self.scores[rows, step] = scores
        self.count[rows] = step + 1
        eap, sd = grid_summaries(pts, loglik + self._prior_at_points[rows])
        self.eap[rows], self.sd[rows] = eap, sd
        if self.regrid_ratio > 0:
            narrow = rows[sd < self.regrid_ratio * (pts[:, 1] - pts[:, 0])]
            if narrow.size:
                for n in np.unique(self.count[narrow]):  # in lockstep replay: one group
                    self._regrid(narrow[self.count[narrow] == n])

    def _grow(self) -> None:
        pad = np.full_like(self.items, -1)
        self.items = np.concatenate([self.items, pad], axis=1)
        self.scores = np.concatenate([self.scores, pad], axis=1)

    def _regrid(self, rows: IntArray) -> None:
        """Narrow the grids of ``rows`` (all with the same number of responses)."""
        half = 10.0 * self.sd[rows]
        lo = np.maximum(self.grid.lo, self.eap[rows] - half)
        hi = np.minimum(self.grid.hi, self.eap[rows] + half)
        pts = np.linspace(lo, hi, self.grid.n, axis=1)
        n = int(self.count[rows[0]])
        items, x = self.items[rows, :n], self.scores[rows, :n]
        chunk = max(1, (1 << 22) // (self.grid.n * n))
        for c in range(0, len(rows), chunk):  # bound the (rows, n, G) temporaries
            sl = slice(c, c + chunk)
            theta = self._theta(pts[sl])
            # (rows, n, G) summed over n: one response added after another
            logp = self.model.log_prob_at(theta[:, None], items[sl, :, None], x[sl, :, None])
            self.loglik[rows[sl]] = logp.sum(axis=1)
            if self.admin_info is not None:
                info = self.model.information_at(theta[:, :, None], items[sl, None, :])
                self.admin_info[rows[sl]] = info.sum(axis=-1)
        self.points[rows] = pts
        self._prior_at_points[rows] = self.log_prior(pts, rows)
        self._summarise(rows)

    # -- reading -------------------------------------------------------------------
    def loglik_at(self, row: int, theta: ArrayLike) -> FloatArray:
        """Log-likelihood of row ``row``'s responses at arbitrary θ values (any shape)."""
        th = np.asarray(theta, dtype=float)
        n = int(self.count[row])
        if n == 0:
            return np.zeros_like(th)
        items, x = self.items[row, :n], self.scores[row, :n]
        return self.model.log_prob_at(self._theta(th)[..., None, :], items, x).sum(axis=-1)


class Posterior:
    """Posterior over one subject's θ on a grid, updated one response at a time.

    The S = 1 view of :class:`GridPosterior` (same arithmetic, same bits).

    Args:
        model: The items (e.g. a bank's); responses name them by index.
        prior_mean: Mean of the normal prior on θ.
        prior_sd: SD of the normal prior on θ.
        grid: Grid bounds and size for the quadrature points.
        regrid_ratio: Narrow the grid once SD < ratio × spacing (0 disables).
        track_information: Keep the answered items' total information on the
            grid (``batch.admin_info``).

    Attributes:
        batch: The one-row :class:`GridPosterior` this is a view of.
    """

    def __init__(
        self,
        model: GradedResponseModel,
        *,
        prior_mean: float = 0.0,
        prior_sd: float = 1.0,
        grid: GridSpec = DEFAULT_GRID,
        regrid_ratio: float = 2.0,
        track_information: bool = False,
    ) -> None:
        self.batch = GridPosterior(
            model,
            1,
            prior_mean=prior_mean,
            prior_sd=prior_sd,
            grid=grid,
            regrid_ratio=regrid_ratio,
            track_information=track_information,
        )
        self._row = np.zeros(1, dtype=np.int64)

    def update(self, item: int, score: int) -> None:
        """Multiply in the likelihood of ``score`` on model item ``item``, O(grid)."""
        self.batch.update(self._row, np.array([item]), np.array([score]))

    @property
    def points(self) -> FloatArray:
        """Current quadrature points (narrower than the initial grid after a regrid)."""
        return self.batch.points[0]

    @property
    def log_density_unnormalised(self) -> FloatArray:
        return self.batch.log_density(self._row)[0]

    @property
    def weights(self) -> FloatArray:
        """Normalised posterior mass at each grid point."""
        return self.batch.weights(self._row)[0]

    @property
    def eap(self) -> float:
        """Posterior mean of θ (the default point estimate)."""
        return float(self.batch.eap[0])

    @property
    def sd(self) -> float:
        """Posterior SD of θ, reported as the standard error."""
        return float(self.batch.sd[0])

    @property
    def n_responses(self) -> int:
        return int(self.batch.count[0])

    def loglik_at(self, theta: ArrayLike) -> FloatArray:
        """Log-likelihood of the responses at arbitrary θ values."""
        return self.batch.loglik_at(0, theta)

    def map(self) -> float:
        """Posterior mode: grid argmax, refined by a bounded 1-d search."""
        lp = self.log_density_unnormalised
        pts = self.points
        i = int(np.argmax(lp))
        lo = pts[max(i - 1, 0)]
        hi = pts[min(i + 1, len(lp) - 1)]

        def neg(t: float) -> float:
            th = np.array([t])
            return -float(self.loglik_at(th)[0] + self.batch.log_prior(th, 0)[0])

        res = minimize_scalar(neg, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
        return float(res.x)
