"""Standard errors of the item parameters: Louis's observed information, per item block.

In η = (a_1..a_D, b_1..b_{K−1}) for item j (a is the slope vector; D = 1: (a, b)):

    I_j = −Σ_s E_s[∂²log P] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ − ∂² log prior

with g = ∂ log P(x | θ)/∂η_j and E_s the posterior expectation over subject
s's θ. Since ∂²log P = ∂²P/P − g gᵀ, the first two sums collapse to
−Σ r ∂²P/P over the expected counts (items × K × Q, closed-form GRM
derivatives); the third takes one chunked pass over the observations. A
test checks the resulting SEs against autograd's Hessian of the marginal log
posterior. This is the exact observed information restricted to each item's
block; cross-item blocks (coupled only through θ) are ignored, because
inverting the full (items·K)² matrix is infeasible for large banks and the
coupling is weak with many subjects. The cross-product (XPD) alternative
needs no second derivatives but is noisy and biased in small samples, which
is where SEs matter most. The SEs include the prior's curvature, so with few
subjects they are approximate posterior SDs, and they do not include the
uncertainty of the common θ scale.

The latent correlations ρ of a confirmatory multidimensional fit get their SEs
from Louis's formula too, with the complete-data score of log N(θ; 0, R(ρ)) at
every node. Their coupling with each item's parameters is kept (an item that
loads on two dimensions trades its slopes against ρ; on a small simulated
test the SE of ρ with items held fixed is 14 % too small): the cross blocks
I_jρ = −Σ_s Cov_s(g_j, g_ρ) come from the same pass over the observations,
and Var(ρ) inverts the Schur complement I_ρρ − Σ_j I_ρj I_jj⁻¹ I_jρ (item–item
blocks still ignored; a test checks it against autograd's full Hessian).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from orchestrator.irt.calibrate._em import EMModel, EStep, QuadGrid
from orchestrator.irt.calibrate.torch_grm import (
    _column,
    _geometry,
    dprob_deta,
    log_probs,
    neg_curvature_term,
)

__all__ = ["louis_information", "standard_errors"]

_SE_CHUNK_ELEMS = 4_000_000  # observations × Q × K per chunk in the SE pass

FloatArray = NDArray[np.float64]


def standard_errors(
    model: EMModel, psi: torch.Tensor, grid: QuadGrid, stats: EStep
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """SEs of the slopes ``(n, D)``, thresholds and (confirmatory) latent correlations ``(D, D)``.

    A threshold pair merged on the ordering boundary (an empty middle category)
    is one parameter there: its rows are summed (b_{t+1} ≡ b_t) before the
    inversion and both thresholds get that SE. The estimate sits on the
    boundary, so such SEs are conditional on it and only approximate. A slope
    fixed at 0 (the item does not load there) has SE 0.
    """
    with_corr = model.n_dims > 1 and not model.slopes.signed
    node_scores = _correlation_scores(model.corr, grid.points) if with_corr else None
    info, cross = louis_information(model, psi, grid, stats, node_scores)
    n, p = info.shape[0], info.shape[1]
    d = model.n_dims
    b = _geometry(psi, grid.theta, model.slopes).b
    gaps = b[:, 1:] - b[:, :-1] if p > d + 1 else b[:, :0]
    merged = (gaps < 1e-6 * (1.0 + b[:, 1:].abs())) & (model.thr_mask[:, 1:] > 0)
    rep = torch.arange(p, device=model.dev).repeat(n, 1)  # representative parameter
    for t in range(merged.shape[1]):  # over the few thresholds, not items
        rep[:, t + d + 1] = torch.where(merged[:, t], rep[:, t + d], rep[:, t + d + 1])
    lmap = torch.nn.functional.one_hot(rep, p).to(info.dtype)  # (n, full, reduced)
    red = lmap.transpose(1, 2) @ info @ lmap
    lead = torch.zeros(n, d + 1, dtype=torch.bool, device=model.dev)
    gone = torch.cat([lead, merged], 1)[:, :p]
    pmask = model.par_mask * (~gone).to(info.dtype)  # parameters of the reduced problem
    red = red * pmask[:, :, None] * pmask[:, None, :] + torch.diag_embed(1.0 - pmask)
    red = 0.5 * (red + red.transpose(1, 2))
    chol, bad = torch.linalg.cholesky_ex(red)
    var_red = torch.diagonal(torch.cholesky_inverse(chol), dim1=1, dim2=2)
    var = torch.gather(var_red, 1, rep)
    ok = (bad == 0)[:, None] & (var > 0)
    se = torch.where(ok, torch.sqrt(torch.clamp(var, min=0.0)), torch.nan)
    slope_se = torch.where(model.slopes.mask > 0, se[:, :d], 0.0).cpu().numpy()
    b_se = torch.where(model.thr_mask > 0, se[:, d:], torch.nan).cpu().numpy()
    corr_se = None
    if node_scores is not None and cross is not None:
        c_red = lmap.transpose(1, 2) @ cross * pmask[:, :, None]  # (n, reduced, p)
        solved = torch.cholesky_solve(c_red, chol)
        fine = (bad == 0).to(info.dtype)[:, None, None]  # items with a singular block add nothing
        schur = node_scores.info - (c_red.transpose(1, 2) @ solved * fine).sum(dim=0)
        corr_se = _correlation_matrix(model.n_dims, schur)
    return slope_se, b_se, corr_se


class _CorrelationScores:
    """Score ``g`` (Q, p) and weighted Hessian of log N(θ_q; 0, R(ρ)) in the correlations ρ."""

    def __init__(self, corr: torch.Tensor, pts: torch.Tensor) -> None:
        d = corr.shape[0]
        self.iu = torch.triu_indices(d, d, offset=1, device=corr.device)
        self.rho = corr[self.iu[0], self.iu[1]]
        self.pts = pts
        self.g = torch.autograd.functional.jacobian(self.log_density, self.rho)  # (Q, p)
        self.info = torch.zeros(0)

    def log_density(self, rho: torch.Tensor) -> torch.Tensor:
        """log N(θ_q; 0, R(ρ)) up to a constant, at every node: (Q,)."""
        d = self.pts.shape[1]
        r = torch.eye(d, dtype=rho.dtype, device=rho.device)
        r = r.index_put((self.iu[0], self.iu[1]), rho).index_put((self.iu[1], self.iu[0]), rho)
        quad = (self.pts * torch.linalg.solve(r, self.pts.T).T).sum(dim=1)
        return -0.5 * torch.logdet(r) - 0.5 * quad

    def finish(self, post: torch.Tensor) -> None:
        """I_ρρ = −Σ_s E_s[∂²ℓ] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ."""
        mass = post.sum(dim=0)  # Σ_s posterior weight per node
        h = torch.autograd.functional.hessian(lambda rho: mass @ self.log_density(rho), self.rho)
        e_g = post @ self.g
        self.info = -h - torch.einsum("q,qi,qj->ij", mass, self.g, self.g) + e_g.T @ e_g


def _correlation_scores(corr: torch.Tensor, pts: torch.Tensor) -> _CorrelationScores:
    return _CorrelationScores(corr, pts)


def _correlation_matrix(n_dims: int, info: torch.Tensor) -> FloatArray:
    """SEs from the information of the correlations, as a symmetric (D, D) matrix."""
    out = np.zeros((n_dims, n_dims))
    chol, bad = torch.linalg.cholesky_ex(0.5 * (info + info.T))
    if int(bad) != 0:  # not positive definite: the data do not pin the correlation down
        se = np.full(info.shape[0], np.nan)
    else:
        se = np.sqrt(torch.diagonal(torch.cholesky_inverse(chol)).cpu().numpy())
    iu = np.triu_indices(n_dims, k=1)
    out[iu] = se
    out[(iu[1], iu[0])] = se
    return out


def louis_information(
    model: EMModel,
    psi: torch.Tensor,
    grid: QuadGrid,
    stats: EStep,
    node_scores: _CorrelationScores | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Observed information of the log posterior in η = (a_1..a_D, b_1..b_{K−1}), per item.

    Louis: I = −Σ_s E_s[∂²log p] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ − ∂²log prior,
    and since ∂²log P = ∂²P/P − g gᵀ the first two sums are −Σ_kq r_kq ∂²P_kq / P_kq.
    With ``node_scores`` also each item's cross block with the latent
    correlations, −Σ_s (E_s[g_j g_ρᵀ] − E_s[g_j] E_s[g_ρ]ᵀ), ``(n, D + T, p)``
    (and ``node_scores.info`` is filled in).
    """
    assert stats.posterior is not None
    n, km, q = model.prob.n_items, model.k_max, grid.n
    d = model.n_dims
    theta = grid.theta
    geo = _geometry(psi, theta, model.slopes)
    a, b, norm = geo.a, geo.b, geo.norm
    m = model.thr_mask[:, :, None]
    ps = torch.sigmoid(geo.z()) * m
    w = ps * (1.0 - ps)
    w2 = w * (1.0 - 2.0 * ps)
    probs = torch.exp(log_probs(psi, theta, model.thr_mask, model.slopes)).clamp_min(1e-300)
    k_valid = torch.cat([torch.ones_like(model.thr_mask[:, :1]), model.thr_mask], dim=1)
    c = stats.counts * k_valid[:, :, None] / probs  # r / P, (n, K, Q)
    info = neg_curvature_term(geo, theta, w, w2, c, m)
    p = info.shape[1]
    t_idx = torch.arange(km - 1, device=psi.device) + d
    # + Σ_obs E_s[g] E_s[g]ᵀ with g = ∂P_x/∂η / P_x, chunked over observations
    grads = (dprob_deta(norm, geo.ja(theta), w, m) / probs[..., None]).reshape(n * km, q, p)
    subj = torch.from_numpy(model.prob.subject).to(model.dev)
    itm = torch.from_numpy(model.prob.item).to(model.dev)
    row = itm * km + torch.from_numpy(model.prob.score).to(model.dev)
    cross = None
    if node_scores is not None:
        node_scores.finish(stats.posterior)
        e_rho = stats.posterior @ node_scores.g  # (S, p_rho)
        cross = torch.zeros(n, p, node_scores.g.shape[1], dtype=info.dtype, device=info.device)
    step = max(1, _SE_CHUNK_ELEMS // (q * p))
    for lo in range(0, model.prob.n_obs, step):
        sl = slice(lo, lo + step)
        mo = torch.einsum("oq,oqp->op", stats.posterior[subj[sl]], grads[row[sl]])
        info.index_add_(0, itm[sl], mo[:, :, None] * mo[:, None, :])
        if cross is not None and node_scores is not None:
            weighted = stats.posterior[subj[sl]][:, :, None] * node_scores.g[None, :, :]
            joint = torch.einsum("oqp,oqr->opr", grads[row[sl]], weighted)
            cross.index_add_(0, itm[sl], mo[:, :, None] * e_rho[subj[sl]][:, None, :] - joint)
    pr = model.priors
    if pr.a is not None and model.slopes.signed:  # −∂² of −(log‖a‖ − μ)²/(2σ²)
        mu, sd = pr.a
        sq = (a * a).sum(dim=1)
        r = 0.5 * torch.log(sq)
        v = a / sq[:, None]
        eye = torch.eye(d, dtype=a.dtype, device=a.device)
        curv = (eye - 2.0 * a[:, :, None] * a[:, None, :] / sq[:, None, None]) / sq[:, None, None]
        block = v[:, :, None] * v[:, None, :] / sd**2 + ((r - mu) / sd**2)[:, None, None] * curv
        mask = model.slopes.mask
        info[:, :d, :d] += block * mask[:, :, None] * mask[:, None, :]
    elif pr.a is not None:  # −∂²/∂a_d² of −(log a_d − μ)² / (2σ²), per loading
        mu, sd = _column(pr.a[0]), _column(pr.a[1])  # per-item priors broadcast over loadings
        safe = torch.where(model.slopes.mask > 0, a, 1.0)
        curv = (1.0 - (psi[:, :d] - mu)) / (sd**2 * safe**2) * model.slopes.mask
        info[:, :d, :d] += torch.diag_embed(curv)
    if pr.b is not None:
        info[:, t_idx, t_idx] += model.thr_mask / pr.b[1] ** 2
    if pr.gap and km > 2:  # −∂² of α log(b_{t+1} − b_t): α/d² (e_{t+1} − e_t)(…)ᵀ
        curv = pr.gap * model.thr_mask[:, 1:] / (b[:, 1:] - b[:, :-1]) ** 2  # (n, T−1)
        lo_i, hi_i = t_idx[:-1], t_idx[1:]
        info[:, lo_i, lo_i] += curv
        info[:, hi_i, hi_i] += curv
        info[:, lo_i, hi_i] -= curv
        info[:, hi_i, lo_i] -= curv
    return info, cross
