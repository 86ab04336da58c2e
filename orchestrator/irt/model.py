"""The graded response model as one object: probabilities and information for items × θ.

Categories are 0..K-1, higher = safer/better. In slope-intercept form, for an
item with slope vector a ∈ R^D and intercepts d_1 > … > d_{K−1}:

    P*(X ≥ k | θ) = σ(aᵀθ + d_k),  P*_0 = 1,  P*_K = 0
    P(X = k | θ)  = P*_k − P*_{k+1}

D = 1 with d_k = −a·b_k is the difficulty form a bank stores,
σ(a(θ − b_k)); K = 2 is the two-parameter logistic model; there is no 1.702
constant. D > 1 is the compensatory multidimensional GRM. Every method takes
θ as points of shape ``(..., D)`` (a 1-D grid of G points is ``(G, 1)``), so
one code path serves D = 1 and D > 1.

Items with different K share one array: intercepts are padded to the
largest K − 1 with −inf, which makes P*_k = 0 for categories an item lacks,
so their probability and information are exactly 0.

Everything that needs GRM arithmetic (the grid posterior, CAT information,
the replay, ability estimates, fit statistics and the health report) calls
this object, so live and replay share the same bits. The torch calibration
keeps its own autograd-friendly form (:mod:`orchestrator.irt.calibrate.torch_grm`),
tied to this one by tests.

Two ways to pair items with points:

* *table* — every item (or the ``items`` subset) at every point: results
  have shape ``θ.shape[:-1] + (n,)`` (plus the category axis);
* *paired* (``…_at`` methods) — item ``items[i]`` at point ``θ[i]``, with
  ``items`` broadcast against ``θ.shape[:-1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

__all__ = ["GradedResponseModel", "with_lapse"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_TINY = 1e-300


class GradedResponseModel:
    """N items of a (possibly multidimensional) graded response model.

    Args:
        slopes: ``(N, D)`` slope vectors a_j.
        intercepts: ``(N, K_max − 1)`` intercepts d_jk, decreasing in k, padded
            with −inf where an item has fewer categories.

    Attributes:
        slopes, intercepts: As given (read-only arrays).
        n_categories: K per item, ``(N,)``.
        n_dims: D, the dimension of θ.
        sq_norm: ‖a_j‖² per item, ``(N,)``: c_j(θ) · sq_norm is the trace of
            item j's information (the information itself when D = 1).

    Use :meth:`from_difficulty` for a bank's ``a`` and ``b``. The object is
    immutable; build it once per bank and keep it.
    """

    def __init__(self, slopes: ArrayLike, intercepts: ArrayLike) -> None:
        a = np.array(slopes, dtype=float)
        d = np.array(intercepts, dtype=float)
        if a.ndim != 2 or d.ndim != 2 or a.shape[0] != d.shape[0] or d.shape[1] < 1:
            raise ValueError(
                f"slopes must be (N, D) and intercepts (N, K_max - 1) with K_max >= 2; "
                f"got {a.shape} and {d.shape}"
            )
        inf = np.full((a.shape[0], 1), np.inf)
        self.slopes = _read_only(a)
        self.intercepts = _read_only(d)
        self.n_categories = _read_only((np.isfinite(d).sum(axis=1) + 1).astype(np.int64))
        self.n_dims = int(a.shape[1])
        # −d laid out (K−1, N): items on the contiguous axis, so sums over thresholds
        # add rows instead of reducing a short axis.
        self._neg_d = _read_only(np.ascontiguousarray((-d).T))
        # d with P*_0 = 1 and P*_K = 0 as intercepts +inf and −inf: (N, K_max + 1)
        self._bounds = _read_only(np.concatenate([inf, d, -inf], axis=1))
        # a aᵀ per item, (N, D, D)
        self._outer = _read_only(a[:, :, None] * a[:, None, :])
        # for D = 1, a and a² as contiguous (N,) arrays: the hot path's products
        self._a1 = _read_only(np.ascontiguousarray(a[:, 0]))
        self._a2 = _read_only(np.ascontiguousarray(self._outer[:, 0, 0]))
        # ‖a‖² per item (a² itself when D = 1): the trace of a aᵀ, so c(θ) · sq_norm is
        # the trace of the information (the information itself, same bits, when D = 1)
        self.sq_norm = self._a2 if self.n_dims == 1 else _read_only((a * a).sum(axis=1))

    @classmethod
    def from_difficulty(cls, a: ArrayLike, b: ArrayLike) -> GradedResponseModel:
        """The unidimensional model of slopes ``a (N,)`` and thresholds ``b (N, K_max − 1)``.

        ``b`` is padded with +inf as a bank stores it; d_k = −a·b_k.
        """
        a_arr = np.asarray(a, dtype=float).reshape(-1)
        b_arr = np.asarray(b, dtype=float).reshape(len(a_arr), -1)
        return cls(a_arr[:, None], -(a_arr[:, None] * b_arr))

    # -- shape ---------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return int(self.slopes.shape[0])

    @property
    def k_max(self) -> int:
        return int(self.intercepts.shape[1]) + 1

    def __len__(self) -> int:
        return self.n_items

    # -- the linear predictor aᵀθ ---------------------------------------------
    def _linear(self, theta: ArrayLike, items: ArrayLike | None = None) -> FloatArray:
        """aᵀθ, table form: ``θ.shape[:-1] + (n,)``."""
        th = self._points(theta)
        if self.n_dims == 1:  # a plain product: the same bits as a·θ written out
            return th * (self._a1 if items is None else self._a1[items])
        return th @ (self.slopes if items is None else self.slopes[items]).T

    def _linear_at(self, theta: ArrayLike, items: IntArray) -> FloatArray:
        """aᵀθ, paired form: item ``items[i]`` at point ``θ[i]`` (broadcast)."""
        th = self._points(theta)
        if self.n_dims == 1:
            return th[..., 0] * self._a1[items]
        return (th * self.slopes[items]).sum(axis=-1)

    def _points(self, theta: ArrayLike) -> FloatArray:
        th = np.asarray(theta, dtype=float)
        if th.shape[-1:] != self.slopes.shape[1:]:
            raise ValueError(
                f"θ points must have shape (..., {self.n_dims}) for a {self.n_dims}-dimensional "
                f"model; got {th.shape}"
            )
        return th

    # -- probabilities -----------------------------------------------------------
    def cumulative_probs(self, theta: ArrayLike) -> FloatArray:
        """P*(X ≥ k | θ) for k = 1..K_max−1, shape ``θ.shape[:-1] + (N, K_max − 1)``."""
        return expit(self._linear(theta)[..., None] + self.intercepts)

    def category_probs(self, theta: ArrayLike, items: ArrayLike | None = None) -> FloatArray:
        """P(X = k | θ) for k = 0..K_max−1, shape ``θ.shape[:-1] + (n, K_max)``.

        All N items, or those of ``items``.
        """
        bounds = self._bounds if items is None else self._bounds[np.asarray(items, np.int64)]
        return _category_probs(self._linear(theta, items)[..., None] + bounds)

    def log_category_probs(
        self, theta: ArrayLike, items: ArrayLike | None = None, lapse: float = 0.0
    ) -> FloatArray:
        """log P(X = k | θ), floored at log(1e-300) so impossible categories stay finite.

        ``lapse``: the robust likelihood's lapse rate ε (:func:`with_lapse`) for the
        categories each item has; 0 = the plain GRM.
        """
        logp = np.log(np.maximum(self.category_probs(theta, items), _TINY))
        if not lapse:
            return logp
        k = self.n_categories if items is None else self.n_categories[np.asarray(items, np.int64)]
        has = np.arange(self.k_max) < k[:, None]  # (n, K_max)
        return np.where(has, with_lapse(logp, k[:, None], lapse), logp)

    def category_probs_at(self, theta: ArrayLike, items: ArrayLike) -> FloatArray:
        """P(X = k | θ[i]) of item ``items[i]``, paired: ``broadcast shape + (K_max,)``."""
        items = np.asarray(items, dtype=np.int64)
        return _category_probs(self._linear_at(theta, items)[..., None] + self._bounds[items])

    def log_prob_at(
        self, theta: ArrayLike, items: ArrayLike, scores: ArrayLike, lapse: float = 0.0
    ) -> FloatArray:
        """log P(X = scores[i] | θ[i]) of item ``items[i]``, paired (all three broadcast).

        The grid posterior's update: the arithmetic of :meth:`log_category_probs`
        for the one observed category, so both give the same bits (``lapse`` as there).
        """
        items = np.asarray(items, dtype=np.int64)
        x = np.asarray(scores, dtype=np.int64)
        if self.n_dims == 1 and items.size == 1 == x.size and not lapse:
            th = self._points(theta)[..., 0]
            if 1 <= th.ndim >= max(items.ndim, x.ndim):  # the points' shape is the result's
                return self._log_prob_one(th, int(items.flat[0]), int(x.flat[0]))
        lin = self._linear_at(theta, items)
        z_x = lin + self._bounds[items, x]
        z_next = lin + self._bounds[items, x + 1]
        prob = _between(expit(z_x), expit(z_next), expit(-z_x), expit(-z_next))
        logp = np.log(np.maximum(prob, _TINY))
        return with_lapse(logp, self.n_categories[items], lapse) if lapse else logp

    def _log_prob_one(self, theta: FloatArray, item: int, score: int) -> FloatArray:
        """:meth:`log_prob_at` of one response on 1-D points ``theta (...)``: the same bits.

        A live update's case (one item on a grid of ~81 points), where fixed per-call
        costs dominate: scalar parameters instead of gathers, and for an end category
        the σ of its infinite bound is known (σ(+∞) = 1, σ(−∞) = 0), so
        :func:`_between` reduces to fewer calls on the same values.
        """
        lin = theta * self._a1[item]
        d_lo, d_hi = self._bounds[item, score], self._bounds[item, score + 1]
        if d_hi == -np.inf:  # top category: P*_x − 0 (the where's other side)
            prob = expit(lin + d_lo)
        else:
            z_hi = lin + d_hi
            up_hi, low_hi = expit(z_hi), expit(np.negative(z_hi, out=z_hi))
            if d_lo == np.inf:  # bottom category: 1 − P*_1 on either side
                prob = np.where(up_hi > 0.5, low_hi, np.subtract(1.0, up_hi, out=up_hi))
            else:
                z_lo = lin + d_lo
                up_lo, low_lo = expit(z_lo), expit(np.negative(z_lo, out=z_lo))
                prob = _between(up_lo, up_hi, low_lo, low_hi)
        np.maximum(prob, _TINY, out=prob)
        return np.log(prob, out=prob)

    def category_peaks(self) -> FloatArray:
        """Largest probability each *middle* category ever reaches, ``(N, K_max − 2)``.

        P(X = k | θ) = σ(aᵀθ + d_k) − σ(aᵀθ + d_{k+1}) peaks where aᵀθ lies midway
        between −d_k and −d_{k+1}, at tanh((d_k − d_{k+1}) / 4). A small value means
        two thresholds nearly merged: category k is almost never the outcome and
        adds almost no information. NaN for categories an item lacks; the end
        categories reach probability 1 and are not listed.
        """
        d = self.intercepts
        with np.errstate(invalid="ignore"):  # padding: −inf − (−inf)
            peak = np.tanh((d[:, :-1] - d[:, 1:]) / 4.0)
        return np.where(np.isfinite(d[:, 1:]), peak, np.nan)

    def expected_score(self, theta: ArrayLike) -> FloatArray:
        """E[X | θ] = Σ_k P*_k, shape ``θ.shape[:-1] + (N,)``."""
        return self.cumulative_probs(theta).sum(axis=-1)

    def sample(self, theta: ArrayLike, rng: np.random.Generator) -> IntArray:
        """Draw a category for every (point, item): ``θ.shape[:-1] + (N,)`` integers.

        Inverse-CDF sampling: with u ~ U(0, 1), X = #{k : u < P*_k}, since
        P*_k = P(X ≥ k) decreases in k.
        """
        p_star = self.cumulative_probs(theta)
        u = rng.random(p_star.shape[:-1])
        return (u[..., None] < p_star).sum(axis=-1).astype(np.int64)

    # -- information ---------------------------------------------------------------
    def information(self, theta: ArrayLike, items: ArrayLike | None = None) -> FloatArray:
        """Fisher information I_j(θ) = c_j(θ) a_j a_jᵀ of every item (or ``items``), table form.

        Shape ``θ.shape[:-1] + (n,)`` when D = 1 (the 1 × 1 matrix as a number),
        ``θ.shape[:-1] + (n, D, D)`` otherwise; c_j is :meth:`fisher_weight`.
        """
        idx = slice(None) if items is None else np.asarray(items, dtype=np.int64)
        return self._scaled(self.fisher_weight(theta, items), idx)

    def information_at(self, theta: ArrayLike, items: ArrayLike) -> FloatArray:
        """Information of item ``items[i]`` at point ``θ[i]``, paired (as :meth:`information`)."""
        items = np.asarray(items, dtype=np.int64)
        return self._scaled(self.fisher_weight_at(theta, items), items)

    def quadratic_forms(self, m: ArrayLike) -> FloatArray:
        """a_jᵀ M a_j of every item for each D × D matrix M: ``m (..., D, D)`` → ``(..., N)``.

        One matrix product over the items' a aᵀ: how selection rules read the
        posterior information (aᵀP⁻¹a and kin) for every item at once.
        """
        mats = np.asarray(m, dtype=float)
        d2 = self.n_dims * self.n_dims
        flat = mats.reshape(-1, d2) @ self._outer.reshape(-1, d2).T
        return flat.reshape((*mats.shape[:-2], self.n_items))

    def fisher_weight_at(self, theta: ArrayLike, items: ArrayLike) -> FloatArray:
        """c_j(θ) of item ``items[i]`` at point ``θ[i]``, paired (see :meth:`fisher_weight`)."""
        items = np.asarray(items, dtype=np.int64)
        lin = self._linear_at(theta, items)
        neg_d = self._neg_d[:, items]  # (K−1, *items.shape), right-aligned with lin below
        neg_d = neg_d.reshape(neg_d.shape[:1] + (1,) * (lin.ndim - items.ndim) + items.shape)
        return _weight_sum(neg_d - lin)

    def fisher_weight(self, theta: ArrayLike, items: ArrayLike | None = None) -> FloatArray:
        """c_j(θ) = Σ_k (P*_k − P*_{k+1})(1 − P*_k − P*_{k+1})², table form ``θ.shape[:-1] + (n,)``.

        The Fisher information about θ is c_j(θ) a_j a_jᵀ: the closed form
        Σ_k P'_k²/P_k with P'_k = a[w_k − w_{k+1}], w = P*(1 − P*), after
        w_k − w_{k+1} = (P*_k − P*_{k+1})(1 − P*_k − P*_{k+1}). This form
        needs one ``exp`` per threshold and no division by P_k (the CAT hot
        path evaluates it for every item at every step); for K = 2 it is
        P(1 − P).
        """
        neg_d = self._neg_d if items is None else self._neg_d[:, np.asarray(items, np.int64)]
        lin = self._linear(theta, items)
        # −(aᵀθ + d_k) laid out (K−1, ..., n)
        z = neg_d.reshape(neg_d.shape[:1] + (1,) * (lin.ndim - 1) + neg_d.shape[1:]) - lin
        return _weight_sum(z)

    def _scaled(self, weight: FloatArray, idx: IntArray | slice) -> FloatArray:
        """c(θ) a aᵀ for items ``idx``: a² c when D = 1, ``(..., n, D, D)`` otherwise."""
        if self.n_dims == 1:
            return self._a2[idx] * weight
        return weight[..., None, None] * self._outer[idx]


def with_lapse(log_probs: ArrayLike, n_categories: ArrayLike, lapse: float) -> FloatArray:
    """log(ε/K + (1 − ε) P): the response model with a lapse rate ε (the robust likelihood).

    With probability ε a response is a lapse — any of the item's K categories,
    at random (a deliberate failure, a broken run, a guess) — otherwise it
    follows the GRM. A single score then costs the likelihood at most
    log(ε/K), so one aberrant response cannot drag θ far; ε = 0 is the plain
    GRM. ``n_categories`` (each response's item's K) broadcasts against ``log_probs``.
    """
    logp = np.asarray(log_probs, dtype=float)
    if lapse == 0:
        return logp
    k = np.asarray(n_categories, dtype=float)
    return np.logaddexp(np.log(lapse / k), np.log1p(-lapse) + logp)


def _category_probs(z: FloatArray) -> FloatArray:
    """P(X = k) from ``z = aᵀθ + d`` with the bounds (+inf, d_1, …, −inf) on the last axis."""
    upper, lower = expit(z), expit(-z)
    return _between(upper[..., :-1], upper[..., 1:], lower[..., :-1], lower[..., 1:])


def _between(
    up_lo: FloatArray, up_hi: FloatArray, low_lo: FloatArray, low_hi: FloatArray
) -> FloatArray:
    """P*_k − P*_{k+1} from P* and 1 − P* at both ends of category k.

    The difference is taken on whichever side of 1/2 keeps precision (P* or
    1 − P*), so tiny category probabilities far from θ are not lost to
    cancellation.
    """
    return np.maximum(np.where(up_hi > 0.5, low_hi - low_lo, up_lo - up_hi), 0.0)


def _weight_sum(z: FloatArray) -> FloatArray:
    """Σ_k (P*_k − P*_{k+1})(1 − P*_k − P*_{k+1})² from ``z = −(aᵀθ + d_k)`` on axis 0.

    Overwrites ``z``. Padded (−inf) intercepts give P* = 0 and add 0.
    """
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)  # P*_k
    p = np.empty((z.shape[0] + 2, *z.shape[1:]))
    p[0] = 1.0
    p[-1] = 0.0
    p[1:-1] = z
    hi, lo = p[:-1], p[1:]
    u = 1.0 - hi - lo
    u *= u
    u *= hi - lo
    return u.sum(axis=0)


def _read_only(arr: NDArray[Any]) -> NDArray[Any]:
    arr.setflags(write=False)
    return arr
