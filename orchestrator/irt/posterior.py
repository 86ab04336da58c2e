"""Grid posterior over θ: EAP, posterior SD (the SE) and MAP.

The posterior lives on a fixed grid of quadrature points (default 81 on
[−6, 6]). One response updates it in O(grid). A rectangle rule on a smooth,
fast-decaying density is accurate while the grid spacing is below the
posterior SD; when a long test shrinks the SD under ``regrid_ratio`` × spacing,
the grid is narrowed around the mass and the log-likelihood recomputed from
the stored responses, so the SE stays honest on long tests too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from orchestrator.irt.grm import log_category_probs

__all__ = ["DEFAULT_GRID", "GridSpec", "Posterior", "grid_summaries", "make_grid"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class GridSpec:
    """Where the quadrature points lie."""

    lo: float = -6.0
    hi: float = 6.0
    n: int = 81

    def points(self) -> FloatArray:
        return np.linspace(self.lo, self.hi, self.n)


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


def _log_prior(grid: FloatArray, mean: float, sd: float) -> FloatArray:
    return -0.5 * ((grid - mean) / sd) ** 2


@dataclass
class Posterior:
    """Posterior over one subject's θ on a grid, updated one response at a time.

    Args:
        prior_mean: Mean of the normal prior on θ.
        prior_sd: SD of the normal prior on θ.
        grid: Grid bounds and size for the quadrature points.
        regrid_ratio: Narrow the grid once SD < ratio × spacing (0 disables).
    """

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    grid: GridSpec = DEFAULT_GRID
    regrid_ratio: float = 2.0
    _points: FloatArray = field(init=False, repr=False)
    _loglik: FloatArray = field(init=False, repr=False)
    _a: list[float] = field(init=False, repr=False, default_factory=list)
    _b: list[FloatArray] = field(init=False, repr=False, default_factory=list)
    _x: list[int] = field(init=False, repr=False, default_factory=list)
    _eap: float = field(init=False, repr=False, default=0.0)
    _sd: float = field(init=False, repr=False, default=1.0)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.prior_sd) and self.prior_sd > 0):
            raise ValueError(f"prior_sd must be a positive number; got {self.prior_sd}")
        self._points = make_grid(self.grid.lo, self.grid.hi, self.grid.n)
        self._loglik = np.zeros(self.grid.n)
        self._summarise()

    # -- updating ---------------------------------------------------------
    def update(self, a: float, b: ArrayLike, score: int) -> None:
        """Multiply in the likelihood of one response (item ``a``, ``b``), O(grid)."""
        b_arr = np.asarray(b, dtype=float).reshape(-1)
        b_arr = b_arr[np.isfinite(b_arr)]  # accept rows padded with +inf
        self._a.append(float(a))
        self._b.append(b_arr)
        self._x.append(int(score))
        logp = log_category_probs(self._points, np.array([a]), b_arr[None, :])
        self._loglik += logp[:, 0, score]
        self._summarise()
        spacing = self._points[1] - self._points[0]
        if self.regrid_ratio > 0 and self._sd < self.regrid_ratio * spacing:
            self._regrid()

    def _summarise(self) -> None:
        eap, sd = grid_summaries(self._points, self.log_density_unnormalised)
        self._eap, self._sd = float(eap), float(sd)

    def _regrid(self) -> None:
        half = 10.0 * self._sd
        lo = max(self.grid.lo, self._eap - half)
        hi = min(self.grid.hi, self._eap + half)
        self._points = np.linspace(lo, hi, self.grid.n)
        self._loglik = self._loglik_at(self._points)
        self._summarise()

    def _loglik_at(self, theta: FloatArray) -> FloatArray:
        if not self._x:
            return np.zeros_like(theta)
        width = max(len(b) for b in self._b)
        b = np.full((len(self._b), width), np.inf)
        for i, row in enumerate(self._b):  # once per regrid, not per step
            b[i, : len(row)] = row
        logp = log_category_probs(theta, np.asarray(self._a), b)
        return logp[:, np.arange(len(self._x)), np.asarray(self._x)].sum(axis=-1)

    # -- reading ----------------------------------------------------------
    @property
    def points(self) -> FloatArray:
        """Current quadrature points (narrower than the initial grid after a regrid)."""
        return self._points

    @property
    def log_density_unnormalised(self) -> FloatArray:
        return self._loglik + _log_prior(self._points, self.prior_mean, self.prior_sd)

    @property
    def weights(self) -> FloatArray:
        """Normalised posterior mass at each grid point."""
        lp = self.log_density_unnormalised
        w = np.exp(lp - lp.max())
        return w / w.sum()

    @property
    def eap(self) -> float:
        """Posterior mean of θ (the default point estimate)."""
        return self._eap

    @property
    def sd(self) -> float:
        """Posterior SD of θ, reported as the standard error."""
        return self._sd

    @property
    def n_responses(self) -> int:
        return len(self._x)

    def map(self) -> float:
        """Posterior mode: grid argmax, refined by a bounded 1-d search."""
        lp = self.log_density_unnormalised
        i = int(np.argmax(lp))
        lo = self._points[max(i - 1, 0)]
        hi = self._points[min(i + 1, len(lp) - 1)]

        def neg(t: float) -> float:
            return -float(
                self._loglik_at(np.array([t]))[0]
                + _log_prior(np.array([t]), self.prior_mean, self.prior_sd)[0]
            )

        res = minimize_scalar(neg, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
        return float(res.x)

    # -- persistence ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_dict` replays it to an identical posterior."""
        return {
            "prior_mean": self.prior_mean,
            "prior_sd": self.prior_sd,
            "grid": {"lo": self.grid.lo, "hi": self.grid.hi, "n": self.grid.n},
            "regrid_ratio": self.regrid_ratio,
            "responses": [
                {"a": a, "b": b.tolist(), "score": x}
                for a, b, x in zip(self._a, self._b, self._x, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Posterior:
        post = cls(
            prior_mean=float(data["prior_mean"]),
            prior_sd=float(data["prior_sd"]),
            grid=GridSpec(**data["grid"]),
            regrid_ratio=float(data["regrid_ratio"]),
        )
        for r in data["responses"]:
            post.update(r["a"], np.asarray(r["b"], dtype=float), int(r["score"]))
        return post
