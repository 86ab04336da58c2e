"""Bock–Aitkin EM over a quadrature grid, with a PX-EM step and per-item Newton M-steps.

Why EM rather than direct maximisation with autograd: the marginal
likelihood integrates θ over a fixed quadrature grid. Written with a sparse
indicator matrix X (subjects × item-categories, one 1 per observation), both
halves of an EM iteration are one sparse matmul each:

* E-step: ``log L[s, q] = X @ log P[(item, k), q]`` gives every subject's
  log-likelihood at every node; the posterior over nodes follows by a
  log-sum-exp per subject.
* Expected counts: ``r[(item, k), q] = Xᵀ @ posterior``: how many subjects
  are expected at node q among those who gave category k to the item.

Memory is therefore O(observations + subjects × Q + items × K × Q) and time
O(observations × Q) per iteration, with no autograd graph over the
observations (direct maximisation would have to keep several observations × Q
tensors for the backward pass, or chunk and recompute them, and run a
quasi-Newton method over all items' parameters jointly). The M-step separates
into one tiny problem per item (K parameters, items × K × Q numbers,
independent of the number of observations), solved by Newton / Fisher scoring
with a per-item line search, vectorised over all items.

EM's known weakness is slow convergence along directions the data barely
identify. The worst one here is the common scale of θ on long tests: with
sharp posteriors, EM changes all slopes and thresholds together only very
slowly. Each iteration therefore ends with the PX-EM step (Liu, Rubin & Wu
1998): the subjects' posteriors give the mean and SD of θ, and the items are
re-expressed so that this population is N(0, 1) again.

The item priors act *within* the θ scale that the population N(0, 1) fixes:
PX-EM re-standardises the subjects' posteriors every iteration, so a prior
whose centre does not suit the bank cannot shrink or stretch the whole scale
(letting the priors set the scale, i.e. a plain joint posterior mode, biases
all slopes when items per subject are many). The estimate is thus the
posterior mode of the items under the constraint that the subjects'
posteriors average to mean 0 and SD 1; without priors it is plain marginal ML.

Learning banks (``item_priors``): when a bank is re-estimated on new data with
its own parameters as per-item priors, those priors are stated in the bank's θ
scale, and the new subjects need not be N(0, 1) there (newer models are better).
The fit then keeps z ~ N(0, 1) for the E-step and PX-EM as above, and after
every iteration chooses the map θ = μ + σ z that best fits the items' priors
(:meth:`EMModel.update_population`): the old items anchor the scale, the new
subjects' population mean and SD are estimated, and the priors enter the
M-step re-expressed in z. With flat priors the map stays (0, 1) and the fit is
the from-scratch one (tested).

Quadrature is a rectangle rule on an even grid over [−r, r] with N(0, 1)
weights. It is accurate while the spacing is below the subjects' posterior SD
of θ, which on long tests is far below a 61-node spacing; :meth:`EMModel.needed_nodes`
says how many nodes the current fit needs (the estimator refines the grid).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from torch.nn.functional import softplus

from orchestrator.irt.calibrate._problem import Problem
from orchestrator.irt.calibrate.torch_grm import (
    MIN_GAP,
    Priors,
    item_information,
    log_prior,
    log_probs,
    score_and_fisher,
    thresholds,
)
from orchestrator.irt.item_priors import POPULATION_PRIOR

if TYPE_CHECKING:
    from orchestrator.irt.calibrate._estimator import GRMCalibrator

__all__ = ["EMModel", "EStep", "QuadGrid"]

_ITEM_CHUNK_ELEMS = 2_000_000  # items × K × Q per M-step chunk
_MAX_NEWTON = 4
_LINE_SEARCH = 12
_MAX_STEP = 2.0  # largest Newton step per parameter (log a, b, u units)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class QuadGrid:
    theta: torch.Tensor  # (Q,)
    log_w: torch.Tensor  # (Q,) log N(0,1) weights, normalised

    @property
    def n(self) -> int:
        return int(self.theta.shape[0])

    @property
    def spacing(self) -> float:
        return float(self.theta[1] - self.theta[0])


@dataclass
class EStep:
    loglik: float
    counts: torch.Tensor  # (items, K_max, Q) expected counts
    posterior: torch.Tensor | None  # (subjects, Q) when kept
    theta_m1: float  # mean of E_s[θ] and of E_s[θ²] over the subjects (PX-EM)
    theta_m2: float


def _csr(rows: IntArray, cols: IntArray, shape: tuple[int, int], dev: torch.device) -> torch.Tensor:
    """0/1 CSR matrix with ones at (rows, cols); duplicates are impossible here."""
    order = np.lexsort((cols, rows))
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(np.ascontiguousarray(cols[order])),
            torch.ones(len(rows), dtype=torch.float64),
            size=shape,
            check_invariants=False,
        ).to(dev)


class EMModel:
    """Arrays on the device and the per-item math (log-probabilities, M-step, SEs)."""

    def __init__(self, prob: Problem, est: GRMCalibrator, dev: torch.device) -> None:
        self.prob = prob
        self.est = est
        self.dev = dev
        self.k_max = int(prob.k.max())
        n, km = prob.n_items, self.k_max
        col = prob.item * km + prob.score
        self.X = _csr(prob.subject, col, (prob.n_subjects, n * km), dev)
        self.XT = _csr(col, prob.subject, (n * km, prob.n_subjects), dev)
        k = torch.from_numpy(prob.k).to(dev)
        # thr_mask[j, t] = 1 when threshold t + 1 exists for item j (t = 0..K_max−2)
        self.thr_mask = (torch.arange(km - 1, device=dev)[None, :] < (k[:, None] - 1)).double()
        # parameter mask: log a and b_1 always; u_t for t ≥ 2 when threshold t exists
        self.par_mask = torch.cat(
            [torch.ones(n, 1, dtype=torch.float64, device=dev), self.thr_mask], dim=1
        )
        self.n_obs_subject = torch.from_numpy(
            np.bincount(prob.subject, minlength=prob.n_subjects)
        ).to(dev)
        pa, pb, pg = est.prior_a, est.prior_b, est.prior_gap
        self.anchored = est.item_priors is not None
        self.population = (0.0, 1.0)
        if self.anchored:
            self._bank_priors = self._per_item_priors()
            self.priors = self._priors_in_fit_scale()
        else:
            self.priors = Priors(
                None if pa is None else (float(pa[0]), float(pa[1])),
                None if pb is None else (float(pb[0]), float(pb[1])),
                None if not pg else float(pg),
            )

    # -- per-item priors and the population (learning banks) -----------------
    def _per_item_priors(self) -> tuple[torch.Tensor, ...]:
        """Bank-scale (mean, sd) tensors: the item's own prior, else the global one, else flat."""
        ip = self.est.item_priors
        assert ip is not None
        rows, t = self.prob.item_index, self.k_max - 1

        def merge(
            mean: FloatArray, sd: FloatArray, default: tuple[float, float] | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            own = np.isfinite(mean)
            d_mean, d_sd = default if default is not None else (0.0, np.inf)
            m = np.where(own, mean, d_mean)
            s = np.where(own, sd, d_sd)
            return torch.from_numpy(m).to(self.dev), torch.from_numpy(s).to(self.dev)

        ma, sa = merge(ip.log_a_mean[rows], ip.log_a_sd[rows], self.est.prior_a)
        mb, sb = merge(ip.b_mean[rows, :t], ip.b_sd[rows, :t], self.est.prior_b)
        return ma, sa, mb, sb

    def _priors_in_fit_scale(self) -> Priors:
        """The bank-scale priors seen from the fit's θ scale, z = (θ − μ)/σ.

        a_z = a σ and b_z = (b − μ)/σ, so log a_z ~ N(m_a + log σ, s_a²) and
        b_z ~ N((m_b − μ)/σ, (s_b/σ)²): normal priors stay normal.
        """
        ma, sa, mb, sb = self._bank_priors
        mu, sigma = self.population
        gap = None if not self.est.prior_gap else float(self.est.prior_gap)
        return Priors((ma + math.log(sigma), sa), ((mb - mu) / sigma, sb / sigma), gap)

    def update_population(self, psi: torch.Tensor) -> None:
        """Choose the subjects' θ mean and SD in the bank's scale (μ, σ) given the items.

        The likelihood depends on the items only in the fit's scale z, where the
        subjects are N(0, 1); (μ, σ) maps them to the bank's scale, θ = μ + σ z. It
        maximises the items' log prior there plus the weak :data:`POPULATION_PRIOR`:
        a weighted least-squares problem in μ and log σ (closed form in μ, a 1-D
        minimisation in log σ). With flat item priors it returns (0, 1), the
        from-scratch fit; with the bank's SEs the old items anchor the scale.
        """
        ma, sa, mb, sb = (v.cpu().numpy() for v in self._bank_priors)
        la = psi[:, 0].cpu().numpy()
        mask = self.thr_mask.cpu().numpy() > 0
        bz = np.where(mask, thresholds(psi).cpu().numpy(), 0.0)
        wa = np.where(np.isfinite(sa), 1.0 / sa**2, 0.0)
        wb = np.where(mask & np.isfinite(sb), 1.0 / sb**2, 0.0)
        m0, s0 = POPULATION_PRIOR["mean"]
        l0, ls = POPULATION_PRIOR["log_sd"]

        def best_mu(sigma: float) -> float:
            # minimise Σ wb (μ + σ bz − mb)² + (μ − m0)²/s0²
            num = (wb * (mb - sigma * bz)).sum() + m0 / s0**2
            return float(num / (wb.sum() + 1.0 / s0**2))

        def objective(log_sigma: float) -> float:
            sigma = math.exp(log_sigma)
            mu = best_mu(sigma)
            ra = (la - log_sigma - ma) ** 2 * wa
            rb = (mu + sigma * bz - mb) ** 2 * wb
            return float(ra.sum() + rb.sum() + ((mu - m0) / s0) ** 2 + ((log_sigma - l0) / ls) ** 2)

        res = minimize_scalar(objective, bounds=(-3.0, 3.0), method="bounded")
        sigma = math.exp(float(res.x))
        self.population = (best_mu(sigma), sigma)
        self.priors = self._priors_in_fit_scale()

    def to_bank_scale(
        self, a: FloatArray, b: FloatArray, a_se: FloatArray, b_se: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Parameters (and SEs) from the fit's scale z to the bank's θ = μ + σ z."""
        mu, sigma = self.population
        return a / sigma, mu + sigma * b, a_se / sigma, sigma * b_se

    # -- grid ---------------------------------------------------------------
    def make_grid(self, n: int) -> QuadGrid:
        r = self.est.quad_range
        theta = torch.linspace(-r, r, n, dtype=torch.float64, device=self.dev)
        lw = -0.5 * theta**2
        return QuadGrid(theta, lw - torch.logsumexp(lw, 0))

    def needed_nodes(self, psi: torch.Tensor, grid: QuadGrid, stats: EStep) -> int:
        """Nodes for spacing ≤ quad_ratio × 5th percentile of subjects' posterior SDs."""
        assert stats.posterior is not None
        eap = stats.posterior @ grid.theta
        node = torch.clamp(torch.round((eap - grid.theta[0]) / grid.spacing).long(), 0, grid.n - 1)
        k = torch.from_numpy(self.prob.k).to(self.dev)
        info = item_information(psi, grid.theta, self.thr_mask, k)  # (items, Q)
        subj = torch.from_numpy(self.prob.subject).to(self.dev)
        itm = torch.from_numpy(self.prob.item).to(self.dev)
        test_info = torch.zeros(self.prob.n_subjects, dtype=torch.float64, device=self.dev)
        test_info.index_add_(0, subj, info[itm, node[subj]])
        used = self.n_obs_subject > 0
        sd = 1.0 / torch.sqrt(1.0 + test_info[used])
        h = self.est.quad_ratio * float(torch.quantile(sd, 0.05))
        if grid.spacing <= h * 1.05:
            return grid.n
        n = math.ceil(2 * self.est.quad_range / h) + 1
        return min(max(n, grid.n), self.est.max_quad)

    # -- parameters -----------------------------------------------------------
    def initial_psi(self) -> torch.Tensor:
        """log a = 0; thresholds from each item's cumulative category shares."""
        prob, km = self.prob, self.k_max
        counts = np.zeros((prob.n_items, km))
        np.add.at(counts, (prob.item, prob.score), 1.0)
        tail = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # n(X >= k)
        p = np.clip(tail[:, 1:] / tail[:, :1], 0.02, 0.98)
        b = -np.log(p / (1 - p)) * math.sqrt(1 + math.pi / 8)
        thr = np.arange(km - 1)[None, :] < (prob.k[:, None] - 1)
        b = np.where(thr, b, 0.0)
        gaps = np.maximum(np.diff(b, axis=1), 0.1)
        u = np.log(np.expm1(gaps))
        psi = np.concatenate([np.zeros((prob.n_items, 1)), b[:, :1], u], axis=1)
        psi[:, 2:] = np.where(thr[:, 1:], psi[:, 2:], 0.0)
        return torch.from_numpy(psi).to(self.dev)

    def natural(self, psi: torch.Tensor) -> tuple[FloatArray, FloatArray]:
        a = torch.exp(psi[:, 0])
        b = torch.where(self.thr_mask > 0, thresholds(psi), torch.inf)
        return a.cpu().numpy(), b.cpu().numpy()

    def change(self, old: torch.Tensor, new: torch.Tensor) -> float:
        d_loga = (new[:, 0] - old[:, 0]).abs()
        d_b = ((thresholds(new) - thresholds(old)).abs() * self.thr_mask).amax(dim=1)
        return float(torch.maximum(d_loga, d_b).max())

    def log_prior(self, psi: torch.Tensor) -> float:
        return float(log_prior(psi, self.thr_mask, self.priors).sum())

    # -- E-step ---------------------------------------------------------------
    def e_step(self, psi: torch.Tensor, grid: QuadGrid, keep_posterior: bool = True) -> EStep:
        lp = log_probs(psi, grid.theta, self.thr_mask)  # (items, K, Q)
        loglik_sq = self.X @ lp.reshape(-1, grid.n)  # (subjects, Q)
        joint = loglik_sq + grid.log_w
        ls = torch.logsumexp(joint, dim=1, keepdim=True)
        post = torch.exp(joint - ls)
        counts = (self.XT @ post).reshape(self.prob.n_items, self.k_max, grid.n)
        used = post[self.n_obs_subject > 0]
        m1 = float((used @ grid.theta).mean())
        m2 = float((used @ grid.theta**2).mean())
        return EStep(float(ls.sum()), counts, post if keep_posterior else None, m1, m2)

    def rescale(self, psi: torch.Tensor, mean: float, sd: float) -> torch.Tensor:
        """PX-EM reduction: items for θ ~ N(mean, sd²) re-expressed for θ ~ N(0, 1).

        θ' = (θ − mean)/sd gives a' = a·sd and b' = (b − mean)/sd, with mean and
        sd the moments of the subjects' posteriors. The likelihood is unchanged by
        this map, but EM alone moves along it very slowly on long tests (the θ
        scale is nearly all "missing information" when posteriors are sharp);
        re-standardising every iteration removes that crawl (Liu, Rubin & Wu 1998).
        """
        return self._rescaled(psi, mean, sd)

    def _rescaled(
        self, psi: torch.Tensor, mean: torch.Tensor | float, sd: torch.Tensor | float
    ) -> torch.Tensor:
        sd_t = torch.as_tensor(sd, dtype=psi.dtype, device=psi.device)
        cols = [psi[:, :1] + torch.log(sd_t), (psi[:, 1:2] - mean) / sd_t]
        if psi.shape[1] > 2:
            gaps = softplus(psi[:, 2:]) / sd_t
            u = gaps + torch.log(-torch.expm1(-torch.clamp(gaps, min=MIN_GAP)))
            cols.append(torch.where(self.thr_mask[:, 1:] > 0, u, psi[:, 2:]))
        return torch.cat(cols, dim=1)

    # -- M-step ---------------------------------------------------------------
    def m_step(self, psi: torch.Tensor, counts: torch.Tensor, grid: QuadGrid) -> torch.Tensor:
        """A few safeguarded Newton steps per item on the expected complete-data log posterior."""
        out = psi.clone()
        chunk = max(1, _ITEM_CHUNK_ELEMS // (self.k_max * grid.n))
        for lo in range(0, self.prob.n_items, chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = self._newton(
                psi[sl], counts[sl], self.thr_mask[sl], grid.theta, self.priors.rows(sl)
            )
        return out

    @staticmethod
    def _objective(
        psi: torch.Tensor,
        counts: torch.Tensor,
        mask: torch.Tensor,
        theta: torch.Tensor,
        priors: Priors,
    ) -> torch.Tensor:
        lp = log_probs(psi, theta, mask)
        return (counts * lp).sum(dim=(1, 2)) + log_prior(psi, mask, priors)

    def _newton(
        self,
        psi: torch.Tensor,
        counts: torch.Tensor,
        mask: torch.Tensor,
        theta: torch.Tensor,
        priors: Priors,
    ) -> torch.Tensor:
        """Fisher scoring with a per-item backtracking line search (monotone: a GEM step)."""
        pmask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        f_old = self._objective(psi, counts, mask, theta, priors)
        for _ in range(_MAX_NEWTON):
            g, fisher, neg_h = score_and_fisher(psi, counts, mask, theta, priors, hessian=True)
            g = g * pmask
            eye = torch.diag_embed(1.0 - pmask)  # masked parameters stay put
            neg_h = neg_h * pmask[:, :, None] * pmask[:, None, :] + eye
            fisher = fisher * pmask[:, :, None] * pmask[:, None, :] + eye
            # Newton where the objective is locally concave, Fisher scoring elsewhere
            chol_h, bad_h = torch.linalg.cholesky_ex(neg_h)
            chol_f, bad_f = torch.linalg.cholesky_ex(fisher)
            newton = torch.cholesky_solve(g[..., None], chol_h)[..., 0]
            scoring = torch.cholesky_solve(g[..., None], chol_f)[..., 0]
            step = torch.where((bad_h == 0)[:, None], newton, scoring)
            step = torch.where(((bad_h != 0) & (bad_f != 0))[:, None], g, step)
            step = step * torch.clamp(_MAX_STEP / step.abs().amax(1, keepdim=True), max=1.0)
            # items whose predicted gain is at rounding level are done (no futile line search)
            done = (g * step).sum(1) <= 1e-12 * (1.0 + f_old.abs())
            if bool(done.all()):
                break
            accepted = done.clone()
            new = psi.clone()
            f_new = f_old.clone()
            t = 1.0
            for _ls in range(_LINE_SEARCH):
                cand = psi + t * step
                f_c = self._objective(cand, counts, mask, theta, priors)
                ok = (~accepted) & torch.isfinite(f_c) & (f_c >= f_old)
                new[ok] = cand[ok]
                f_new[ok] = f_c[ok]
                accepted |= ok
                if bool(accepted.all()):
                    break
                t *= 0.5
            moved = float((new - psi).abs().amax())
            psi, f_old = new, f_new
            if moved < 1e-9:
                break
        return psi
