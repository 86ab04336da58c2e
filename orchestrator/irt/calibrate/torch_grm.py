"""The GRM in torch: the calibration's autograd-friendly item math, for θ ∈ R^D.

An item has a slope vector a ∈ R^D and thresholds b_1 < … < b_{K−1} measured
along its direction u = a/‖a‖ (the bank's form):

    P*(X ≥ k | θ) = σ(aᵀθ − ‖a‖ b_k) = σ(‖a‖ (uᵀθ − b_k)).

Per item ψ = (slope parameters (D), b_1, u_2, …, u_{K−1}) with
b_k = b_{k−1} + softplus(u_k), so b_1 < … < b_{K−1} holds by construction for
every iterate. How the first D entries give a is a :class:`Slopes`: confirmatory
(a_d = exp(ψ_d) > 0 where the item loads, a_d = 0 elsewhere) or exploratory
(a_d = ψ_d of either sign). With D = 1 and the default (``slopes=None``) ψ is
(log a, b_1, u_2, …) and every function computes today's one-dimensional
arithmetic, σ(a(θ − b_k)), operation for operation: uᵀθ is θ itself and ‖a‖ is a.

Log category probabilities use
``log P_k = log σ(z_k) + log σ(−z_{k+1}) + log(1 − exp(−‖a‖(b_{k+1} − b_k)))``
with z_k = ‖a‖(uᵀθ − b_k), exact without cancellation or flooring. Items of
different K share one array; ``thr_mask[j, t]`` is 1 where item j has
threshold t + 1. θ nodes are ``(Q,)`` when D = 1 and ``(Q, D)`` otherwise.

Priors (on by default, weak): confirmatory slopes log a_d ~ N(μ_a, σ_a²) on
every loading (a log-normal prior, its mode a = exp(μ_a)); exploratory slopes,
whose signs a rotation may flip, get that prior on log ‖a‖ instead (the item's
multidimensional discrimination; it is invariant under rotations of θ, and
at D = 1 it is the same prior); every threshold b_k ~ N(μ_b, σ_b²); and, for
K ≥ 3, a density ∝ gap^α on every gap b_{k+1} − b_k, which keeps a rarely used
middle category from being squeezed to zero probability. Real LLM data have
near-step items and few subjects; without priors slopes run off to 10–100 and
the fit predicts held-out responses far worse than item base rates.

Everything here is batched over items and differentiable; the closed-form
gradient, expected information and Hessian of the M-step objective are
tested against autograd, for D = 1 and D > 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.functional import softplus

__all__ = [
    "MIN_GAP",
    "Priors",
    "Slopes",
    "dprob_deta",
    "item_information",
    "log_prior",
    "log_probs",
    "neg_curvature_term",
    "score_and_fisher",
    "slope_vectors",
    "thresholds",
]

MIN_GAP = 1e-9
"""Smallest ‖a‖·(b_{k+1} − b_k) in log(1 − exp(−gap)), which is −inf at 0."""


@dataclass(frozen=True)
class Priors:
    """Item priors: normal on log a, normal on each b_k, gap^α on each b_{k+1} − b_k.

    ``a`` and ``b`` are ``(mean, sd)``: floats for one prior shared by every item, or
    tensors per item (``(n,)`` for log a, ``(n, K_max − 1)`` for the thresholds) when a
    bank's own parameters are the prior; an SD of inf is a flat prior (its mean must
    still be finite).
    """

    a: tuple[float | torch.Tensor, float | torch.Tensor] | None
    b: tuple[float | torch.Tensor, float | torch.Tensor] | None
    gap: float | None

    def rows(self, sl: slice) -> Priors:
        """The priors of items ``sl`` (per-item tensors sliced, shared floats kept)."""

        def cut(
            pair: tuple[float | torch.Tensor, float | torch.Tensor] | None,
        ) -> tuple[float | torch.Tensor, float | torch.Tensor] | None:
            if pair is None:
                return None
            return tuple(v[sl] if isinstance(v, torch.Tensor) else v for v in pair)  # type: ignore[return-value]

        return Priors(cut(self.a), cut(self.b), self.gap)


@dataclass(frozen=True)
class Slopes:
    """How ψ's first D entries give each item's slope vector a ∈ R^D.

    ``mask[j, d]`` is 1 where item j has a free slope on dimension d and 0
    where a_jd = 0 (not loaded, or fixed to identify a rotation). Confirmatory
    (``signed=False``): a_d = exp(ψ_d) > 0, prior on every log a_d.
    Exploratory (``signed=True``): a_d = ψ_d, prior on log ‖a‖.
    """

    mask: torch.Tensor  # (n, D) float 0/1
    signed: bool = False

    @property
    def n_dims(self) -> int:
        return int(self.mask.shape[1])

    def rows(self, sl: slice) -> Slopes:
        """The structure of items ``sl``."""
        return Slopes(self.mask[sl], self.signed)


def _column(v: float | torch.Tensor) -> float | torch.Tensor:
    """A per-item prior value ``(n,)`` as ``(n, 1)``, to broadcast over slopes ``(n, D)``."""
    return v[:, None] if isinstance(v, torch.Tensor) else v


def _n_dims(slopes: Slopes | None) -> int:
    return 1 if slopes is None else slopes.n_dims


def slope_vectors(psi: torch.Tensor, slopes: Slopes | None = None) -> torch.Tensor:
    """a ∈ R^D per item from ψ: ``(n, D)``."""
    if slopes is None:
        return torch.exp(psi[:, :1])
    raw = psi[:, : slopes.n_dims]
    return (raw if slopes.signed else torch.exp(raw)) * slopes.mask


def thresholds(psi: torch.Tensor, n_dims: int = 1) -> torch.Tensor:
    """b_1 = ψ_D, b_t = b_{t−1} + softplus(ψ_{D+t−1}): ordered by construction, (n, K_max − 1)."""
    if psi.shape[1] == n_dims + 1:
        return psi[:, n_dims : n_dims + 1]
    steps = torch.cat([psi[:, n_dims : n_dims + 1], softplus(psi[:, n_dims + 1 :])], dim=1)
    return torch.cumsum(steps, dim=1)


@dataclass
class _Geometry:
    """Per item: slope vector, its length and direction, thresholds and uᵀθ − b_t."""

    a: torch.Tensor  # (n, D)
    norm: torch.Tensor  # (n,) ‖a‖
    u: torch.Tensor  # (n, D) a / ‖a‖
    b: torch.Tensor  # (n, T)
    x: torch.Tensor  # (n, T, Q): uᵀθ_q − b_t

    def z(self) -> torch.Tensor:
        return self.norm[:, None, None] * self.x

    def ja(self, theta: torch.Tensor) -> torch.Tensor:
        """∂z_t/∂a = θ − u b_t, ``(n, T, Q, D)`` (D = 1: θ − b_t, i.e. ``x``)."""
        if self.a.shape[1] == 1:
            return self.x[..., None]
        return theta[None, None, :, :] - self.u[:, None, None, :] * self.b[:, :, None, None]


def _geometry(psi: torch.Tensor, theta: torch.Tensor, slopes: Slopes | None) -> _Geometry:
    d = _n_dims(slopes)
    a = slope_vectors(psi, slopes)
    b = thresholds(psi, d)
    if d == 1:  # uᵀθ = θ and ‖a‖ = a: the one-dimensional arithmetic, bit for bit
        th = theta if theta.dim() == 1 else theta[:, 0]
        return _Geometry(a, a[:, 0], torch.ones_like(a), b, th - b[:, :, None])
    norm = torch.linalg.vector_norm(a, dim=1)
    u = a / norm[:, None]
    t = u @ theta.T  # (n, Q) projections uᵀθ
    return _Geometry(a, norm, u, b, t[:, None, :] - b[:, :, None])


def neg_curvature_term(
    g: _Geometry, theta: torch.Tensor, w: torch.Tensor, w2: torch.Tensor, c: torch.Tensor,
    m: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """−Σ_kq c_kq ∂²P_kq/∂η∂ηᵀ for η = (a_1..a_D, b_1..b_T), per item: (n, D + T, D + T).

    With P_k = P*_k − P*_{k+1}, Σ_k c_k ∂²P_k = Σ_t (c_t − c_{t−1}) ∂²P*_t and
    ∂²P*_t = w2 ∂z_t ∂z_tᵀ + w ∂²z_t (w = P*(1 − P*), w2 = w(1 − 2P*)), where
    ∂z_t/∂a = θ − u b_t, ∂z_t/∂b_t = −‖a‖, ∂²z_t/∂a∂aᵀ = −b_t (I − uuᵀ)/‖a‖
    (0 when D = 1) and ∂²z_t/∂a∂b_t = −u.
    """
    n, t_count, _ = g.x.shape
    d = g.a.shape[1]
    e = (c[:, 1:] - c[:, :-1]) * m  # coefficient of ∂²P*_t, (n, T, Q)
    out = torch.zeros(n, d + t_count, d + t_count, dtype=g.x.dtype, device=g.x.device)
    t_idx = torch.arange(t_count, device=g.x.device) + d
    ja = g.ja(theta)
    if d == 1:
        out[:, 0, 0] = -(e * w2 * g.x**2).sum(dim=(1, 2))
    else:
        out[:, :d, :d] = -torch.einsum("ntq,ntqd,ntqe->nde", e * w2, ja, ja)
        ew_b = ((e * w).sum(dim=2) * g.b).sum(dim=1)  # Σ_t b_t Σ_q e w
        eye = torch.eye(d, dtype=g.x.dtype, device=g.x.device)
        proj = eye - g.u[:, :, None] * g.u[:, None, :]
        out[:, :d, :d] += (ew_b / g.norm)[:, None, None] * proj
    inner = -w[..., None] * g.u[:, None, None, :] - g.norm[:, None, None, None] * ja * w2[..., None]
    cross = -(e[..., None] * inner).sum(dim=2)  # (n, T, D)
    out[:, :d, d:] = cross.transpose(1, 2)
    out[:, d:, :d] = cross
    out[:, t_idx, t_idx] = -(e * g.norm[:, None, None] ** 2 * w2).sum(dim=2)
    return out


def dprob_deta(
    norm: torch.Tensor, ja: torch.Tensor, w: torch.Tensor, m: torch.Tensor
) -> torch.Tensor:
    """∂P_k/∂η for η = (a_1..a_D, b_1..b_T): (n, K, Q, D + T).

    From ∂P*_t/∂a = w (θ − u b_t) (``ja``) and ∂P*_t/∂b_t = −‖a‖ w.
    """
    n, t_count, q, d = ja.shape
    d_star = torch.zeros(n, t_count + 2, q, d + t_count, dtype=w.dtype, device=w.device)
    d_star[:, 1:-1, :, :d] = w[..., None] * ja * m[..., None]
    idx = torch.arange(t_count, device=w.device)
    # advanced indices split by a slice put their dimension first: value is (T, n, Q)
    d_star[:, idx + 1, :, idx + d] = (-norm[:, None, None] * w * m).transpose(0, 1)
    return d_star[:, :-1] - d_star[:, 1:]


def _slope_jacobian(psi: torch.Tensor, a: torch.Tensor, slopes: Slopes | None) -> torch.Tensor:
    """∂a/∂ψ_slopes (diagonal, ``(n, D)``): a_d for log slopes, the mask for signed ones."""
    if slopes is not None and slopes.signed:
        return slopes.mask.to(psi.dtype)
    return a


def _log_norm_prior_terms(
    a: torch.Tensor, mask: torch.Tensor, prior: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient, Fisher part and −Hessian of −(log‖a‖ − μ)²/(2σ²) in a (signed slopes).

    With r = log‖a‖, ∂r/∂a = a/‖a‖² and ∂²r/∂a∂aᵀ = (I − 2aaᵀ/‖a‖²)/‖a‖².
    """
    mu, sd = prior
    sq = (a * a).sum(dim=1)
    r = 0.5 * torch.log(sq)
    v = a / sq[:, None]
    grad = -((r - mu) / sd**2)[:, None] * v
    fisher = v[:, :, None] * v[:, None, :] / sd**2
    eye = torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    curv = (eye - 2.0 * a[:, :, None] * a[:, None, :] / sq[:, None, None]) / sq[:, None, None]
    neg_h = fisher + ((r - mu) / sd**2)[:, None, None] * curv
    outer = mask[:, :, None] * mask[:, None, :]
    return grad * mask, fisher * outer, neg_h * outer


def score_and_fisher(
    psi: torch.Tensor,
    counts: torch.Tensor,
    thr_mask: torch.Tensor,
    theta: torch.Tensor,
    priors: Priors,
    *,
    hessian: bool = False,
    slopes: Slopes | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient, expected information and (optionally) −Hessian of the M-step objective in ψ.

    For η = (a_1..a_D, b_1..b_{K−1}): ∂P*_k/∂a = w_k(θ − u b_k), ∂P*_k/∂b_k = −‖a‖ w_k
    with w_k = P*_k(1 − P*_k), and P_k = P*_k − P*_{k+1}. Gradient Σ r ∂P/P; expected
    information Σ_q n_q Σ_k ∂P ∂Pᵀ / P (positive semi-definite: always an ascent
    direction); −Hessian −Σ r ∂²P/P + Σ r (∂P/P)(∂P/P)ᵀ (exact: Newton converges
    fast where scoring crawls, e.g. items with a ≈ 0 whose b sits on a ridge).
    Chain rule to ψ with J = ∂η/∂ψ plus the curvature of η(ψ) itself.
    """
    d = _n_dims(slopes)
    n, t_count = psi.shape[0], psi.shape[1] - d
    g = _geometry(psi, theta, slopes)
    a, b = g.a, g.b
    m = thr_mask[:, :, None]
    ps = torch.sigmoid(g.z()) * m
    w = ps * (1.0 - ps)  # (n, T, Q)
    deriv = dprob_deta(g.norm, g.ja(theta), w, m)  # (n, K, Q, P)
    probs = torch.exp(log_probs(psi, theta, thr_mask, slopes)).clamp_min(1e-300)
    k_valid = torch.cat([torch.ones_like(thr_mask[:, :1]), thr_mask], dim=1)[:, :, None]
    c = counts * k_valid / probs
    g_eta = torch.einsum("nkq,nkqp->np", c, deriv)
    e = deriv * torch.sqrt(k_valid / probs)[..., None]
    fisher_eta = torch.einsum("nq,nkqp,nkqr->npr", counts.sum(1), e, e)
    jac = torch.zeros(n, d + t_count, d + t_count, dtype=psi.dtype, device=psi.device)
    jac[:, :d, :d] = torch.diag_embed(_slope_jacobian(psi, a, slopes))
    jac[:, d:, d] = 1.0
    sig = torch.sigmoid(psi[:, d + 1 :])  # d softplus(u)/du
    if t_count > 1:
        lower = torch.tril(torch.ones(t_count - 1, t_count - 1, dtype=psi.dtype, device=psi.device))
        jac[:, d + 1 :, d + 1 :] = lower[None] * sig[:, None, :]
    jac[:, d:, :] = jac[:, d:, :] * thr_mask[:, :, None]
    g_b = torch.zeros_like(b)  # ∂(prior on b)/∂b, for the curvature of b(ψ)
    fisher = jac.transpose(1, 2) @ fisher_eta @ jac
    prec_b = thr_mask / priors.b[1] ** 2 if priors.b is not None else None  # (n, T)
    if priors.b is not None:
        g_b = -(b - priors.b[0]) * prec_b
        fisher = fisher + jac[:, d:, :].transpose(1, 2) @ (jac[:, d:, :] * prec_b[:, :, None])
    g_all = torch.einsum("npr,np->nr", jac, g_eta + torch.cat([torch.zeros_like(a), g_b], 1))
    neg_h = None
    if hessian:
        gp = deriv / probs[..., None] * k_valid[..., None]  # ∂log P/∂η
        neg_h_eta = neg_curvature_term(g, theta, w, w * (1.0 - 2.0 * ps), c, m) + torch.einsum(
            "nkq,nkqp,nkqr->npr", counts, gp, gp
        )
        if prec_b is not None:
            idx = torch.arange(d, d + t_count, device=psi.device)
            neg_h_eta[:, idx, idx] += prec_b
        neg_h = jac.transpose(1, 2) @ neg_h_eta @ jac
        # curvature of η(ψ): ∂²a_d/∂(log a_d)² = a_d; ∂²b_t/∂u_s² = σ'(u_s) for s ≤ t
        if slopes is None or not slopes.signed:
            neg_h[:, :d, :d] -= torch.diag_embed(g_eta[:, :d] * a)
        if t_count > 1:
            g_bt = (g_eta[:, d:] + g_b) * thr_mask  # total gradient w.r.t. each b_t
            tail = torch.flip(torch.cumsum(torch.flip(g_bt, [1]), 1), [1])[:, 1:]  # Σ_{t≥s}
            idx = torch.arange(d + 1, d + t_count, device=psi.device)
            neg_h[:, idx, idx] -= tail * sig * (1.0 - sig)
    if priors.a is not None:
        if slopes is not None and slopes.signed:
            ga, fa, ha = _log_norm_prior_terms(a, slopes.mask, priors.a)
            g_all[:, :d] += ga
            fisher[:, :d, :d] += fa
            if neg_h is not None:
                neg_h[:, :d, :d] += ha
        else:
            mask = torch.ones_like(a) if slopes is None else slopes.mask
            mean_a, sd_a = _column(priors.a[0]), _column(priors.a[1])
            g_all[:, :d] -= (psi[:, :d] - mean_a) / sd_a**2 * mask
            prec = torch.diag_embed(mask / sd_a**2)
            fisher[:, :d, :d] += prec
            if neg_h is not None:
                neg_h[:, :d, :d] += prec
    if priors.gap and t_count > 1:  # α log softplus(u)
        u, gm = psi[:, d + 1 :], thr_mask[:, 1:]
        sp = softplus(u)
        ratio = torch.sigmoid(u) / sp
        g_all[:, d + 1 :] += priors.gap * ratio * gm
        idx = torch.arange(d + 1, d + t_count, device=psi.device)
        fisher[:, idx, idx] += priors.gap * ratio**2 * gm  # its positive-curvature part
        if neg_h is not None:
            s_ = torch.sigmoid(u)
            neg_h[:, idx, idx] -= priors.gap * (s_ * (1 - s_) / sp - ratio**2) * gm
    if hessian:
        return g_all, fisher, neg_h
    return g_all, fisher


def _logsigmoid(x: torch.Tensor) -> torch.Tensor:
    """log σ(x) as −softplus(−x): torch's logsigmoid warns under torch.func transforms."""
    return -softplus(-x, threshold=40.0)


def log_probs(
    psi: torch.Tensor, theta: torch.Tensor, thr_mask: torch.Tensor, slopes: Slopes | None = None
) -> torch.Tensor:
    """log P(X = k | θ_q) for every item, category and node: (items, K_max, Q).

    Categories an item does not have get finite garbage (never used: they
    have no observations and no expected counts).
    """
    g = _geometry(psi, theta, slopes)
    m = thr_mask[:, :, None]
    z = g.norm[:, None, None] * g.x  # (items, K−1, Q)
    up = _logsigmoid(z) * m  # log P*_k, categories 1..K−1
    low = _logsigmoid(-z) * m  # log(1 − P*_{k+1}), categories 0..K−2
    zeros = torch.zeros_like(z[:, :1])
    lp = torch.cat([zeros, up], dim=1) + torch.cat([low, zeros], dim=1)
    b = g.b
    if b.shape[1] > 1:
        gap = torch.clamp(g.norm[:, None] * (b[:, 1:] - b[:, :-1]), min=MIN_GAP)
        gap_term = torch.log(-torch.expm1(-gap)) * thr_mask[:, 1:]  # (items, K−2)
        pad = torch.zeros_like(gap_term[:, :1])
        lp = lp + torch.cat([pad, gap_term, pad], dim=1)[:, :, None]
    return lp


def log_prior(
    psi: torch.Tensor, thr_mask: torch.Tensor, priors: Priors, slopes: Slopes | None = None
) -> torch.Tensor:
    """Log prior density per item, up to constants (see the module docstring)."""
    d = _n_dims(slopes)
    out = torch.zeros(psi.shape[0], dtype=psi.dtype, device=psi.device)
    if priors.a is not None:
        if slopes is None:
            out = out - 0.5 * ((psi[:, 0] - priors.a[0]) / priors.a[1]) ** 2
        elif slopes.signed:
            log_norm = torch.log(torch.linalg.vector_norm(slope_vectors(psi, slopes), dim=1))
            out = out - 0.5 * ((log_norm - priors.a[0]) / priors.a[1]) ** 2
        else:
            za = (psi[:, :d] - _column(priors.a[0])) / _column(priors.a[1])
            out = out - 0.5 * (za**2 * slopes.mask).sum(dim=1)
    if priors.b is not None:
        zb = (thresholds(psi, d) - priors.b[0]) / priors.b[1]
        out = out - 0.5 * (zb**2 * thr_mask).sum(dim=1)
    if priors.gap and psi.shape[1] > d + 1:
        gaps = torch.clamp(softplus(psi[:, d + 1 :]), min=1e-300)
        out = out + priors.gap * (torch.log(gaps) * thr_mask[:, 1:]).sum(dim=1)
    return out


def item_information(
    psi: torch.Tensor,
    theta: torch.Tensor,
    thr_mask: torch.Tensor,
    n_categories: torch.Tensor,
    slopes: Slopes | None = None,
) -> torch.Tensor:
    """Fisher information of every item at every node along its direction, (items, Q).

    The information matrix about θ is this number times u uᵀ (u = a/‖a‖); with
    D = 1 it is the item information itself.
    """
    g = _geometry(psi, theta, slopes)
    norm = g.norm[:, None, None]
    pstar = torch.sigmoid(norm * g.x) * thr_mask[:, :, None]
    w = pstar * (1 - pstar)
    w_full = torch.nn.functional.pad(w, (0, 0, 1, 1))
    dprob = w_full[:, :-1] - w_full[:, 1:]
    probs = torch.exp(log_probs(psi, theta, thr_mask, slopes))
    k = torch.arange(thr_mask.shape[1] + 1, device=psi.device)[None, :, None]
    valid = k < n_categories[:, None, None]
    ratio = torch.where(valid & (probs > 1e-300), dprob**2 / probs.clamp_min(1e-300), 0.0)
    return norm[:, :, 0] ** 2 * ratio.sum(dim=1)
