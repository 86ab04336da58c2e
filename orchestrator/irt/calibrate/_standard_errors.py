"""Standard errors of the item parameters: Louis's observed information, per item block.

In η = (a, b_1..b_{K−1}) for item j:

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
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from orchestrator.irt.calibrate._em import EMModel, EStep, QuadGrid
from orchestrator.irt.calibrate.torch_grm import (
    dprob_deta,
    log_probs,
    neg_curvature_term,
    thresholds,
)

__all__ = ["louis_information", "standard_errors"]

_SE_CHUNK_ELEMS = 4_000_000  # observations × Q × K per chunk in the SE pass

FloatArray = NDArray[np.float64]


def standard_errors(
    model: EMModel, psi: torch.Tensor, grid: QuadGrid, stats: EStep
) -> tuple[FloatArray, FloatArray]:
    """SEs of a and b from the Louis observed information per item .

    A threshold pair merged on the ordering boundary (an empty middle category)
    is one parameter there: its rows are summed (b_{t+1} ≡ b_t) before the
    inversion and both thresholds get that SE. The estimate sits on the
    boundary, so such SEs are conditional on it and only approximate.
    """
    info = louis_information(model, psi, grid, stats)
    n, p = info.shape[0], info.shape[1]
    b = thresholds(psi)
    gaps = b[:, 1:] - b[:, :-1] if p > 2 else b[:, :0]
    merged = (gaps < 1e-6 * (1.0 + b[:, 1:].abs())) & (model.thr_mask[:, 1:] > 0)
    rep = torch.arange(p, device=model.dev).repeat(n, 1)  # representative parameter
    for t in range(merged.shape[1]):  # over the few thresholds, not items
        rep[:, t + 2] = torch.where(merged[:, t], rep[:, t + 1], rep[:, t + 2])
    lmap = torch.nn.functional.one_hot(rep, p).to(info.dtype)  # (n, full, reduced)
    red = lmap.transpose(1, 2) @ info @ lmap
    lead = torch.zeros(n, 2, dtype=torch.bool, device=model.dev)
    gone = torch.cat([lead, merged], 1)[:, :p]
    pmask = model.par_mask * (~gone).to(info.dtype)  # parameters of the reduced problem
    red = red * pmask[:, :, None] * pmask[:, None, :] + torch.diag_embed(1.0 - pmask)
    red = 0.5 * (red + red.transpose(1, 2))
    chol, bad = torch.linalg.cholesky_ex(red)
    var_red = torch.diagonal(torch.cholesky_inverse(chol), dim1=1, dim2=2)
    var = torch.gather(var_red, 1, rep)
    ok = (bad == 0)[:, None] & (var > 0)
    se = torch.where(ok, torch.sqrt(torch.clamp(var, min=0.0)), torch.nan)
    a_se = se[:, 0].cpu().numpy()
    b_se = torch.where(model.thr_mask > 0, se[:, 1:], torch.nan).cpu().numpy()
    return a_se, b_se


def louis_information(
    model: EMModel, psi: torch.Tensor, grid: QuadGrid, stats: EStep
) -> torch.Tensor:
    """Observed information of the log posterior in η = (a, b_1..b_{K−1}), per item.

    Louis: I = −Σ_s E_s[∂²log p] − Σ_s E_s[g gᵀ] + Σ_s E_s[g] E_s[g]ᵀ − ∂²log prior,
    and since ∂²log P = ∂²P/P − g gᵀ the first two sums are −Σ_kq r_kq ∂²P_kq / P_kq.
    """
    assert stats.posterior is not None
    n, km, q = model.prob.n_items, model.k_max, grid.n
    theta = grid.theta
    a = torch.exp(psi[:, 0])
    b = thresholds(psi)
    m = model.thr_mask[:, :, None]
    x = theta - b[:, :, None]  # (n, T, Q)
    ps = torch.sigmoid(a[:, None, None] * x) * m
    w = ps * (1.0 - ps)
    w2 = w * (1.0 - 2.0 * ps)
    probs = torch.exp(log_probs(psi, theta, model.thr_mask)).clamp_min(1e-300)
    k_valid = torch.cat([torch.ones_like(model.thr_mask[:, :1]), model.thr_mask], dim=1)
    c = stats.counts * k_valid[:, :, None] / probs  # r / P, (n, K, Q)
    info = neg_curvature_term(a, x, w, w2, c, m)
    t_idx = torch.arange(km - 1, device=psi.device) + 1
    # + Σ_obs E_s[g] E_s[g]ᵀ with g = ∂P_x/∂η / P_x, chunked over observations
    grads = (dprob_deta(a, x, w, m) / probs[..., None]).reshape(n * km, q, km)
    subj = torch.from_numpy(model.prob.subject).to(model.dev)
    itm = torch.from_numpy(model.prob.item).to(model.dev)
    row = itm * km + torch.from_numpy(model.prob.score).to(model.dev)
    step = max(1, _SE_CHUNK_ELEMS // (q * km))
    for lo in range(0, model.prob.n_obs, step):
        sl = slice(lo, lo + step)
        mo = torch.einsum("oq,oqp->op", stats.posterior[subj[sl]], grads[row[sl]])
        info.index_add_(0, itm[sl], mo[:, :, None] * mo[:, None, :])
    pr = model.priors
    if pr.a is not None:  # −∂²/∂a² of −(log a − μ)² / (2σ²)
        mu, sd = pr.a
        info[:, 0, 0] += (1.0 - (psi[:, 0] - mu)) / (sd**2 * a**2)
    if pr.b is not None:
        info[:, t_idx, t_idx] += model.thr_mask / pr.b[1] ** 2
    if pr.gap and km > 2:  # −∂² of α log(b_{t+1} − b_t): α/d² (e_{t+1} − e_t)(…)ᵀ
        curv = pr.gap * model.thr_mask[:, 1:] / (b[:, 1:] - b[:, :-1]) ** 2  # (n, T−1)
        lo_i, hi_i = t_idx[:-1], t_idx[1:]
        info[:, lo_i, lo_i] += curv
        info[:, hi_i, hi_i] += curv
        info[:, lo_i, hi_i] -= curv
        info[:, hi_i, lo_i] -= curv
    return info
