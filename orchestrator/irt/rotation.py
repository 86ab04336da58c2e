"""Rotations of an exploratory multidimensional solution: oblimin (oblique) and varimax.

An exploratory fit identifies θ's orientation only by fixing a few slopes at 0
(``irt/calibrate/_em.py``); any rotation of θ fits the data equally well. A
rotation criterion picks the orientation that is easiest to read: each item
loading mainly on one dimension. Both criteria are minimised by the gradient
projection algorithm (Jennrich 2001 for orthogonal, 2002 for oblique
rotations) from several starting rotations (criteria have local minima).

The criteria are applied to standardised loadings, λ = (a/1.702)/√(1 + ‖a/1.702‖²)
(the item–factor correlations under θ ~ N(0, I), normal-ogive scale), so items
with steep slopes do not dominate. For a rotation matrix T with unit columns,
loadings become Λ T⁻ᵀ and the latent correlation Φ = TᵀT (oblique) or I
(orthogonal); slopes transform like loadings, a* = T⁻¹a, and θ* = Tᵀθ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["ROTATIONS", "Rotation", "rotate", "standardised_loadings"]

FloatArray = NDArray[np.float64]
RotationName = Literal["oblimin", "varimax", "none"]
ROTATIONS: tuple[str, ...] = ("oblimin", "varimax", "none")

_Criterion = Callable[[FloatArray], tuple[float, FloatArray]]


@dataclass(frozen=True)
class Rotation:
    """A fitted rotation: ``T`` (D × D, unit columns), criterion value, Φ."""

    method: str
    matrix: FloatArray
    """T: rotated loadings are Λ T⁻ᵀ, rotated slopes a* = T⁻¹ a, rotated θ* = Tᵀθ."""
    phi: FloatArray
    """Latent correlation of the rotated dimensions (TᵀT; I for orthogonal)."""
    criterion: float
    converged: bool
    n_starts: int

    def slopes(self, a: FloatArray) -> FloatArray:
        """Rotated slope vectors, rows of ``a`` ``(n, D)``."""
        return a @ np.linalg.inv(self.matrix).T


def standardised_loadings(a: FloatArray) -> FloatArray:
    """λ = (a/1.702)/√(1 + ‖a/1.702‖²): item–factor correlations for θ ~ N(0, I)."""
    s = a / 1.702
    return s / np.sqrt(1.0 + (s * s).sum(axis=1, keepdims=True))


def _quartimin(lam: FloatArray) -> tuple[float, FloatArray]:
    """Direct oblimin with γ = 0: ¼ Σ_j Σ_{d≠e} λ_jd² λ_je², and its gradient."""
    sq = lam * lam
    off = sq @ (np.ones((lam.shape[1], lam.shape[1])) - np.eye(lam.shape[1]))
    return float((sq * off).sum() / 4.0), lam * off


def _varimax(lam: FloatArray) -> tuple[float, FloatArray]:
    """−¼ Σ_d Σ_j (λ_jd² − mean_j λ_jd²)², and its gradient."""
    sq = lam * lam
    centred = sq - sq.mean(axis=0, keepdims=True)
    return float(-(centred**2).sum() / 4.0), -lam * centred


def _gpa_oblique(
    lam: FloatArray, t: FloatArray, crit: _Criterion, max_iter: int, tol: float
) -> tuple[FloatArray, float, bool]:
    """Gradient projection for oblique rotations (columns of T kept at unit length)."""

    def at(tt: FloatArray) -> tuple[float, FloatArray]:
        inv = np.linalg.inv(tt)
        rotated = lam @ inv.T
        f, gq = crit(rotated)
        return f, -(rotated.T @ gq @ inv).T

    f, g = at(t)
    step = 1.0
    for _ in range(max_iter):
        gp = g - t * (t * g).sum(axis=0, keepdims=True)
        s = float(np.linalg.norm(gp))
        if s < tol:
            return t, f, True
        step *= 2.0
        for _ls in range(20):
            x = t - step * gp
            cand = x / np.linalg.norm(x, axis=0, keepdims=True)
            f_c, g_c = at(cand)
            if f_c < f - 0.5 * s * s * step:
                break
            step /= 2.0
        t, f, g = cand, f_c, g_c
    return t, f, False


def _gpa_orthogonal(
    lam: FloatArray, t: FloatArray, crit: _Criterion, max_iter: int, tol: float
) -> tuple[FloatArray, float, bool]:
    """Gradient projection for orthogonal rotations (T kept orthogonal by an SVD)."""

    def at(tt: FloatArray) -> tuple[float, FloatArray]:
        f, gq = crit(lam @ tt)
        return f, lam.T @ gq

    f, g = at(t)
    step = 1.0
    for _ in range(max_iter):
        m = t.T @ g
        gp = g - t @ ((m + m.T) / 2.0)
        s = float(np.linalg.norm(gp))
        if s < tol:
            return t, f, True
        step *= 2.0
        for _ls in range(20):
            u, _s, vt = np.linalg.svd(t - step * gp)
            cand = u @ vt
            f_c, g_c = at(cand)
            if f_c < f - 0.5 * s * s * step:
                break
            step /= 2.0
        t, f, g = cand, f_c, g_c
    return t, f, False


def rotate(
    a: FloatArray,
    method: RotationName = "oblimin",
    *,
    n_starts: int = 10,
    seed: int = 0,
    max_iter: int = 2000,
    tol: float = 1e-6,
) -> Rotation:
    """Rotate slope vectors ``a (n, D)`` by ``method`` (criterion on standardised loadings).

    The best of ``n_starts`` starts (the identity, then seeded random
    orthogonal matrices) is kept. Each rotated dimension's sign is chosen so
    that its loadings sum to ≥ 0, and dimensions are ordered by their sum of
    squared loadings, largest first.
    """
    d = a.shape[1]
    lam = standardised_loadings(a)
    if method == "none" or d == 1:
        return Rotation("none", np.eye(d), np.eye(d), float("nan"), True, 0)
    oblique = method == "oblimin"
    crit = _quartimin if oblique else _varimax
    gpa = _gpa_oblique if oblique else _gpa_orthogonal
    rng = np.random.default_rng(seed)
    best: tuple[FloatArray, float, bool] | None = None
    for k in range(n_starts):  # a handful of tiny D × D problems
        start = np.eye(d) if k == 0 else np.linalg.qr(rng.normal(size=(d, d)))[0]
        t, f, ok = gpa(lam, start, crit, max_iter, tol)
        if best is None or f < best[1] - 1e-12:
            best = (t, f, ok)
    assert best is not None
    t, f, ok = best
    rotated = lam @ np.linalg.inv(t).T
    t = t * np.where(rotated.sum(axis=0) < 0, -1.0, 1.0)[None, :]
    rotated = lam @ np.linalg.inv(t).T
    t = t[:, np.argsort(-(rotated**2).sum(axis=0), kind="stable")]
    phi = t.T @ t if oblique else np.eye(d)
    return Rotation(method, t, phi, f, ok, n_starts)
