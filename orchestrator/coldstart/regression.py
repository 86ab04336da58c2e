"""Bayesian ridge regression with bank offsets; penalties and noise by marginal likelihood.

One scalar item parameter y (log a, or the mean threshold b̄) is modelled as

    y_i = β₀ + u_{bank(i)} + Σ_blocks w_blockᵀ x_{i,block} + ε_i,

    w_block ~ N(0, s_block² I),  u_bank ~ N(0, s_u²),  β₀ ~ N(0, 10²),
    ε_i ~ N(0, σ_{bank(i)}²),

where the blocks are the text embedding and the surface features. The posterior
mean of w is ridge regression with penalty σ²/s_block² per block; the penalties,
the offset SD s_u and each bank's residual SD σ_bank are set by maximising the
marginal likelihood (type-II ML, "evidence"; L-BFGS on the analytic gradient)
rather than by a CV grid, so the same fit also gives calibrated predictive
variances. A residual SD per bank lets a bank calibrated on 5 subjects be noisier
than one calibrated on 3,000. The offset u is what keeps predictions for a *new*
bank honest: its offset is unknown, so s_u² joins the predictive variance.

Everything is computed in weight space from per-bank sufficient statistics
(d ≈ 400 features): O(n d²) once, then O(G d² + d³) per evidence evaluation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

from orchestrator.errors import NotFittedError

__all__ = ["EvidenceRidge"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_S0 = 10.0  # prior SD of the intercept: vague
_LOG_BOUNDS = (math.log(1e-3), math.log(1e2))


class EvidenceRidge:
    """Ridge regression per feature block + a random offset per group, tuned by the evidence.

    ``fit`` learns ``scales_`` (prior SD per block), ``s_u_`` (offset SD),
    ``sigma_`` (residual SD per group) and the weight posterior; ``predict``
    gives the predictive mean and SD of a new item's parameter.
    """

    def __init__(self, *, max_iter: int = 300) -> None:
        self.max_iter = max_iter

    def fit(self, blocks: Sequence[FloatArray], y: FloatArray, groups: IntArray) -> EvidenceRidge:
        """Fit on ``n`` items.

        Args:
            blocks: Feature matrices ``(n, d_b)``, one per block (each gets its own scale).
            y: Targets ``(n,)``.
            groups: Group (bank) number of each item, 0..G−1.
        """
        y = np.asarray(y, dtype=float)
        g = np.asarray(groups, dtype=np.int64)
        n_groups = int(g.max()) + 1
        x = self._design(blocks, g, n_groups)
        sizes = [b.shape[1] for b in blocks]
        stats = _GroupStats.of(x, y, g, n_groups)
        sd_y = float(np.std(y)) or 1.0
        x0 = np.log([0.3 * sd_y] * len(blocks) + [0.5 * sd_y] + [0.7 * sd_y] * n_groups)

        def nll(log_p: FloatArray) -> tuple[float, FloatArray]:
            post = _posterior(stats, sizes, np.exp(log_p))
            return post.nll, post.grad

        res = minimize(
            nll,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=[_LOG_BOUNDS] * len(x0),
            options={"maxiter": self.max_iter},
        )
        p = np.exp(res.x)
        post = _posterior(stats, sizes, p)
        self.n_groups_ = n_groups
        self.scales_ = p[: len(blocks)]
        self.s_u_ = float(p[len(blocks)])
        self.sigma_ = p[len(blocks) + 1 :]
        self.weights_ = post.m
        self.cov_ = post.cov
        self.neg_log_evidence_ = post.nll
        return self

    @staticmethod
    def _design(blocks: Sequence[FloatArray], g: IntArray, n_groups: int) -> FloatArray:
        onehot = np.zeros((g.shape[0], n_groups))
        valid = (g >= 0) & (g < n_groups)
        onehot[np.flatnonzero(valid), g[valid]] = 1.0
        return np.hstack([*(np.asarray(b, float) for b in blocks), onehot, np.ones((len(g), 1))])

    def predict(
        self, blocks: Sequence[FloatArray], groups: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Predictive mean and SD of the parameter of new items.

        Args:
            blocks: Feature matrices of the new items (same blocks as ``fit``).
            groups: Their group number; −1 for a new group (bank), whose unknown
                offset adds s_u² to the variance and whose residual SD is the
                root mean square of the training groups'.

        Returns:
            ``(mean, sd)``, each ``(m,)``; sd includes the residual.
        """
        if not hasattr(self, "weights_"):
            raise NotFittedError("this EvidenceRidge is not fitted yet; call fit() first")
        g = np.asarray(groups, dtype=np.int64)
        x = self._design(blocks, g, self.n_groups_)
        known = (g >= 0) & (g < self.n_groups_)
        mean = x @ self.weights_
        var = np.einsum("ij,jk,ik->i", x, self.cov_, x)
        resid = np.where(known, self.sigma_[np.clip(g, 0, self.n_groups_ - 1)] ** 2, 0.0)
        resid[~known] = float(np.mean(self.sigma_**2)) + self.s_u_**2
        return mean, np.sqrt(var + resid)


@dataclass(frozen=True)
class _GroupStats:
    """Per-group sufficient statistics: the evidence needs nothing else of the data."""

    xx: FloatArray  # (G, d, d) X_gᵀX_g
    xy: FloatArray  # (G, d) X_gᵀy_g
    yy: FloatArray  # (G,) y_gᵀy_g
    n: FloatArray  # (G,) items per group

    @classmethod
    def of(cls, x: FloatArray, y: FloatArray, g: IntArray, n_groups: int) -> _GroupStats:
        rows = [np.flatnonzero(g == k) for k in range(n_groups)]  # once per bank
        return cls(
            xx=np.stack([x[r].T @ x[r] for r in rows]),
            xy=np.stack([x[r].T @ y[r] for r in rows]),
            yy=np.array([y[r] @ y[r] for r in rows]),
            n=np.array([r.size for r in rows], dtype=float),
        )


@dataclass(frozen=True)
class _Posterior:
    m: FloatArray
    cov: FloatArray
    nll: float
    grad: FloatArray


def _posterior(stats: _GroupStats, sizes: Sequence[int], p: FloatArray) -> _Posterior:
    """Weight posterior, negative log evidence and its gradient in the log parameters.

    With noise variance D_g = σ_g² per group and prior variances λ_j per weight:
    −log evidence = ½[Σ_g n_g log D_g + Σ_j log λ_j + log|A| + Σ_g RSS_g/D_g + Σ_j m_j²/λ_j]
    + const, A = Σ_g X_gᵀX_g/D_g + Λ⁻¹. Gradients (MacKay): ∂/∂log λ_j =
    ½(1 − (m_j² + Σ_jj)/λ_j); ∂/∂log σ_g = n_g − (tr(Σ X_gᵀX_g) + RSS_g)/D_g.
    """
    n_b, n_groups = len(sizes), stats.n.shape[0]
    scales, s_u, sigma = p[:n_b], p[n_b], p[n_b + 1 :]
    prior_var = np.concatenate(
        [
            *(np.full(d, s**2) for d, s in zip(sizes, scales, strict=True)),
            np.full(n_groups, s_u**2),
            [_S0**2],
        ]
    )
    noise = sigma**2
    prec = np.tensordot(1.0 / noise, stats.xx, axes=1) + np.diag(1.0 / prior_var)
    c = cho_factor(prec, lower=True)
    m = cho_solve(c, (stats.xy / noise[:, None]).sum(axis=0))
    cov = cho_solve(c, np.eye(prec.shape[0]))
    rss = stats.yy - 2.0 * stats.xy @ m + np.einsum("i,gij,j->g", m, stats.xx, m)
    lev = np.einsum("ij,gji->g", cov, stats.xx)
    logdet = 2.0 * np.log(np.diag(c[0])).sum()
    value = 0.5 * (
        (stats.n * np.log(noise)).sum()
        + np.log(prior_var).sum()
        + logdet
        + (rss / noise).sum()
        + (m**2 / prior_var).sum()
        + stats.n.sum() * math.log(2 * math.pi)
    )
    per_weight = 0.5 * (1.0 - (m**2 + np.diag(cov)) / prior_var)
    edges = np.cumsum([0, *sizes, n_groups])
    grad_prior = [2.0 * per_weight[lo:hi].sum() for lo, hi in itertools.pairwise(edges)]
    grad_sigma = stats.n - (lev + rss) / noise
    return _Posterior(m, cov, float(value), np.concatenate([grad_prior, grad_sigma]))
