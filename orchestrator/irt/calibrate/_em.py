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

Several dimensions (θ ∈ R^D, D ≤ 3) use the same iteration: the nodes are
points ``(Q, D)`` and the E-step, expected counts and M-step do not change.

* Quadrature. D = 2: the even product grid, nodes per axis refined as above
  (per-axis posterior SDs from each subject's test-information matrix),
  pruned to the ellipse θᵀR⁻¹θ ≤ r² where the prior weight is not negligible
  (about 40 % fewer nodes) and, from the first refinement on, to where some
  subject's posterior puts more than 1e-12 of its mass, widened by two cells
  of the grid it was measured on (an adaptive grid: with few subjects or
  sharp posteriors most of the plane is empty; weights stay normalised over
  the whole ellipse, so dropping a node only drops its ≤ 1e-12 share).
  D = 3: a product grid fine enough for long tests has 10⁴–10⁵ nodes, so
  the nodes are a fixed scrambled Sobol set of ``n_qmc`` points mapped to
  N(0, R) (quasi-Monte-Carlo EM; equal weights).
* Latent distribution. Confirmatory structures estimate the latent
  correlation R: the PX-EM step takes the posteriors' mean vector and
  covariance S, re-expresses the items so that every dimension has mean 0
  and SD 1 (a_d ← a_d s_d) and sets R to S's correlation matrix, which is EM's
  update of R. Exploratory structures fix R = I (a rotation decides the
  correlation afterwards) and re-express the items by S's Cholesky factor;
  the first D − 1 "anchor" items have the upper-triangular slopes fixed at 0,
  which the Cholesky step preserves, so the orientation is identified.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import sparse
from scipy.optimize import minimize_scalar
from torch.nn.functional import softplus

from orchestrator.irt.calibrate._problem import Problem
from orchestrator.irt.calibrate.torch_grm import (
    MIN_GAP,
    Priors,
    Slopes,
    item_information,
    log_prior,
    log_probs,
    score_and_fisher,
    slope_vectors,
    thresholds,
)
from orchestrator.irt.item_priors import POPULATION_PRIOR
from orchestrator.irt.model import GradedResponseModel
from orchestrator.irt.rotation import Rotation

if TYPE_CHECKING:
    from orchestrator.irt.calibrate._estimator import GRMCalibrator

__all__ = ["EMModel", "EStep", "QuadGrid"]

_ITEM_CHUNK_ELEMS = 2_000_000  # items × K × Q (× D) per M-step chunk
_MAX_NEWTON = 4
_LINE_SEARCH = 12
_MAX_STEP = 2.0  # largest Newton step per parameter (log a, b, u units)
_MAX_CORR = 0.995  # a latent correlation is kept inside ±this (17 subjects can reach 1)
_SUPPORT_MASS = 1e-12  # D = 2 grid: keep nodes where some posterior has at least this mass
_SUPPORT_MARGIN = 2  # … widened by this many cells

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class QuadGrid:
    """Quadrature nodes and normalised log weights.

    ``theta`` is ``(Q,)`` for one dimension and ``(Q, D)`` points otherwise.
    ``per_axis`` is the product grid's nodes per axis (0 for QMC points).
    """

    theta: torch.Tensor
    log_w: torch.Tensor  # (Q,)
    per_axis: int = 0
    spacing: float = 0.0

    @property
    def n(self) -> int:
        return int(self.theta.shape[0])

    @property
    def n_dims(self) -> int:
        return 1 if self.theta.dim() == 1 else int(self.theta.shape[1])

    @property
    def points(self) -> torch.Tensor:
        """Nodes as ``(Q, D)`` points."""
        return self.theta[:, None] if self.theta.dim() == 1 else self.theta


@dataclass
class EStep:
    loglik: float
    counts: torch.Tensor  # (items, K_max, Q) expected counts
    posterior: torch.Tensor | None  # (subjects, Q) when kept
    theta_m1: float | torch.Tensor  # mean of E_s[θ] (D = 1: a number; else (D,))
    theta_m2: float | torch.Tensor  # mean of E_s[θ²] (D = 1) or of E_s[θθᵀ] (D, D)


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

        # θ's dimensions: which slopes each item has, the latent correlation R
        self.n_dims = int(est.n_dims)
        self.exploratory = self.n_dims > 1 and est.loadings is None
        self.anchors: list[int] = []
        self._start_slopes: FloatArray | None = None
        if self.exploratory:
            self._start_slopes, mask, self.anchors = _exploratory_start(
                prob, self.n_dims, seed=est.seed
            )
        elif self.n_dims > 1:
            mask = np.asarray(est.loadings, dtype=float)[prob.item_index]
        else:
            mask = np.ones((n, 1))
        self.slopes = Slopes(torch.from_numpy(mask).to(dev), signed=self.exploratory)
        # parameter mask: slopes where free, b_1 always, u_t for t ≥ 2 when threshold t exists
        self.par_mask = torch.cat([self.slopes.mask, self.thr_mask], dim=1)
        self.corr = torch.eye(self.n_dims, dtype=torch.float64, device=dev)
        self.corr_change = 0.0
        self._sobol: torch.Tensor | None = None
        self._support: tuple[float, NDArray[np.bool_]] | None = None  # (spacing, occupied cells)

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
    @property
    def uses_qmc(self) -> bool:
        q = self.est.quadrature
        return q == "qmc" or (q == "auto" and self.n_dims >= 3)

    def make_grid(self, n: int) -> QuadGrid:
        """The quadrature under the current R: ``n`` nodes (per axis for a grid, points for QMC)."""
        if self.uses_qmc:
            return self._qmc_grid(n)
        r = self.est.quad_range
        theta = torch.linspace(-r, r, n, dtype=torch.float64, device=self.dev)
        if self.n_dims == 1:
            lw = -0.5 * theta**2
            return QuadGrid(theta, lw - torch.logsumexp(lw, 0), n, float(theta[1] - theta[0]))
        axes = torch.meshgrid(*([theta] * self.n_dims), indexing="ij")
        pts = torch.stack([ax.reshape(-1) for ax in axes], dim=1)
        maha = (pts @ torch.linalg.inv(self.corr) * pts).sum(dim=1)
        inside = maha <= r * r  # beyond, the prior weight is below exp(−r²/2)
        pts, lw = pts[inside], -0.5 * maha[inside]
        lw = lw - torch.logsumexp(lw, 0)
        if self._support is not None:
            keep = torch.from_numpy(self._in_support(pts.cpu().numpy())).to(self.dev)
            pts, lw = pts[keep], lw[keep]
        return QuadGrid(pts, lw, n, float(theta[1] - theta[0]))

    def _lattice_index(self, pts: FloatArray, spacing: float) -> IntArray:
        return np.rint((pts + self.est.quad_range) / spacing).astype(np.int64)

    def _in_support(self, pts: FloatArray) -> NDArray[np.bool_]:
        assert self._support is not None
        spacing, occupied = self._support
        idx = np.clip(self._lattice_index(pts, spacing), 0, occupied.shape[0] - 1)
        return occupied[tuple(idx.T)]

    def refined_grid(self, psi: torch.Tensor, grid: QuadGrid, stats: EStep) -> QuadGrid | None:
        """A finer (or, D = 2, re-centred) product grid when the current one does not suit the
        fit; None when it would be the same grid (QMC points are never refined)."""
        if grid.per_axis == 0:
            return None
        n_new = self.needed_nodes(psi, grid, stats)
        if self.n_dims == 1:
            return self.make_grid(n_new) if n_new > grid.per_axis else None
        assert stats.posterior is not None
        self._update_support(grid, stats.posterior)
        new = self.make_grid(max(n_new, grid.per_axis))
        same = new.n == grid.n and bool(torch.equal(new.points, grid.points))
        return None if same else new

    def _update_support(self, grid: QuadGrid, post: torch.Tensor) -> None:
        """Cells of ``grid`` where some subject's posterior mass exceeds 1e-12, widened."""
        from scipy.ndimage import binary_dilation

        used = post[self.n_obs_subject > 0]
        busy = (used.amax(dim=0) > _SUPPORT_MASS).cpu().numpy()
        occupied = np.zeros((grid.per_axis,) * self.n_dims, dtype=bool)
        idx = self._lattice_index(grid.points.cpu().numpy()[busy], grid.spacing)
        occupied[tuple(idx.T)] = True
        width = 2 * _SUPPORT_MARGIN + 1
        occupied = binary_dilation(occupied, structure=np.ones((width,) * self.n_dims, bool))
        self._support = (grid.spacing, occupied)

    def _qmc_grid(self, n: int) -> QuadGrid:
        """Scrambled Sobol points mapped to N(0, R), equal weights (fixed across iterations)."""
        if self._sobol is None or self._sobol.shape[0] != n:
            engine = torch.quasirandom.SobolEngine(self.n_dims, scramble=True, seed=self.est.seed)
            u = engine.draw(n, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            self._sobol = torch.special.ndtri(u).to(self.dev)
        pts = self._sobol @ torch.linalg.cholesky(self.corr).T
        lw = torch.full((n,), -math.log(n), dtype=torch.float64, device=self.dev)
        return QuadGrid(pts, lw)

    def needed_nodes(self, psi: torch.Tensor, grid: QuadGrid, stats: EStep) -> int:
        """Nodes (per axis) for spacing ≤ quad_ratio × 5th percentile of subjects' posterior SDs."""
        assert stats.posterior is not None
        if self.n_dims > 1:
            return self._needed_per_axis(psi, grid, stats.posterior)
        eap = stats.posterior @ grid.theta
        node = torch.clamp(torch.round((eap - grid.theta[0]) / grid.spacing).long(), 0, grid.n - 1)
        k = torch.from_numpy(self.prob.k).to(self.dev)
        info = item_information(psi, grid.theta, self.thr_mask, k, self.slopes)  # (items, Q)
        subj = torch.from_numpy(self.prob.subject).to(self.dev)
        itm = torch.from_numpy(self.prob.item).to(self.dev)
        test_info = torch.zeros(self.prob.n_subjects, dtype=torch.float64, device=self.dev)
        test_info.index_add_(0, subj, info[itm, node[subj]])
        used = self.n_obs_subject > 0
        sd = 1.0 / torch.sqrt(1.0 + test_info[used])
        return self._nodes_for(float(torch.quantile(sd, 0.05)), grid)

    def _nodes_for(self, sd_low: float, grid: QuadGrid) -> int:
        h = self.est.quad_ratio * sd_low
        if grid.spacing <= h * 1.05:
            return grid.per_axis
        n = math.ceil(2 * self.est.quad_range / h) + 1
        cap = self.est.max_quad if self.n_dims == 1 else self.est.max_quad_per_axis
        return min(max(n, grid.per_axis), cap)

    def _needed_per_axis(self, psi: torch.Tensor, grid: QuadGrid, post: torch.Tensor) -> int:
        """Per-axis posterior SDs from (R⁻¹ + Σ_j I_j(θ̂_s))⁻¹ at every subject's EAP."""
        eap = (post @ grid.points).cpu().numpy()
        model = self.numpy_model(psi)
        info = model.information_at(eap[self.prob.subject], self.prob.item)  # (obs, D, D)
        d = self.n_dims
        test = np.zeros((self.prob.n_subjects, d * d))
        for e in range(d * d):  # D² ≤ 9 sums over observations
            test[:, e] = np.bincount(
                self.prob.subject, weights=info.reshape(-1, d * d)[:, e], minlength=len(test)
            )
        prec = np.linalg.inv(self.corr.cpu().numpy())[None] + test.reshape(-1, d, d)
        used = self.n_obs_subject.cpu().numpy() > 0
        sd = np.sqrt(np.diagonal(np.linalg.inv(prec[used]), axis1=1, axis2=2))
        return self._nodes_for(float(np.quantile(sd, 0.05)), grid)

    def numpy_model(self, psi: torch.Tensor) -> GradedResponseModel:
        """The fitted items as :class:`GradedResponseModel` (slopes, d_k = −‖a‖ b_k)."""
        slopes, b = self.natural(psi)
        norm = np.linalg.norm(slopes, axis=1)
        return GradedResponseModel(slopes, -(norm[:, None] * b))

    # -- parameters -----------------------------------------------------------
    def initial_psi(self) -> torch.Tensor:
        """Slopes 1 (length 1 when an item loads on several dimensions; exploratory: the
        data's principal directions); thresholds from each item's cumulative category shares."""
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
        mask = self.slopes.mask.cpu().numpy()
        if self._start_slopes is not None:
            slope_par = self._start_slopes * mask
        else:
            n_loaded = mask.sum(axis=1, keepdims=True)
            slope_par = np.where(mask > 0, -0.5 * np.log(n_loaded), 0.0)
        psi = np.concatenate([slope_par, b[:, :1], u], axis=1)
        d = self.n_dims
        psi[:, d + 1 :] = np.where(thr[:, 1:], psi[:, d + 1 :], 0.0)
        return torch.from_numpy(psi).to(self.dev)

    def natural(self, psi: torch.Tensor) -> tuple[FloatArray, FloatArray]:
        """Slope vectors ``(n, D)`` and thresholds ``(n, K_max − 1)`` padded with +inf."""
        a = slope_vectors(psi, self.slopes)
        b = torch.where(self.thr_mask > 0, thresholds(psi, self.n_dims), torch.inf)
        return a.cpu().numpy(), b.cpu().numpy()

    def change(self, old: torch.Tensor, new: torch.Tensor) -> float:
        d = self.n_dims
        step = (new[:, :d] - old[:, :d]).abs() * self.slopes.mask  # log a, or a when signed
        d_b = ((thresholds(new, d) - thresholds(old, d)).abs() * self.thr_mask).amax(dim=1)
        return max(float(torch.maximum(step.amax(dim=1), d_b).max()), self.corr_change)

    def log_prior(self, psi: torch.Tensor) -> float:
        return float(log_prior(psi, self.thr_mask, self.priors, self.slopes).sum())

    # -- E-step ---------------------------------------------------------------
    def e_step(self, psi: torch.Tensor, grid: QuadGrid, keep_posterior: bool = True) -> EStep:
        lp = log_probs(psi, grid.theta, self.thr_mask, self.slopes)  # (items, K, Q)
        loglik_sq = self.X @ lp.reshape(-1, grid.n)  # (subjects, Q)
        joint = loglik_sq + grid.log_w
        ls = torch.logsumexp(joint, dim=1, keepdim=True)
        post = torch.exp(joint - ls)
        counts = (self.XT @ post).reshape(self.prob.n_items, self.k_max, grid.n)
        used = post[self.n_obs_subject > 0]
        m1: float | torch.Tensor
        m2: float | torch.Tensor
        if grid.n_dims == 1:
            m1 = float((used @ grid.theta).mean())
            m2 = float((used @ grid.theta**2).mean())
        else:
            pts = grid.points
            mass = used.sum(dim=0) / used.shape[0]
            m1 = mass @ pts
            m2 = pts.T @ (mass[:, None] * pts)
        return EStep(float(ls.sum()), counts, post if keep_posterior else None, m1, m2)

    def standardise(self, psi: torch.Tensor, stats: EStep) -> torch.Tensor:
        """The PX-EM step: the population back to mean 0 and SD 1 per dimension (see module)."""
        m1, m2 = stats.theta_m1, stats.theta_m2
        if self.n_dims == 1:
            assert isinstance(m1, float) and isinstance(m2, float)
            return self.rescale(psi, m1, math.sqrt(max(m2 - m1 * m1, 1e-12)))
        assert isinstance(m1, torch.Tensor) and isinstance(m2, torch.Tensor)
        cov = m2 - m1[:, None] * m1[None, :]
        sd = torch.sqrt(torch.clamp(torch.diagonal(cov), min=1e-12))
        if self.exploratory:
            eye = torch.eye(self.n_dims, dtype=cov.dtype, device=cov.device)
            chol = torch.linalg.cholesky(cov + 1e-12 * eye)
            return self._rescaled_multi(psi, m1, chol)
        corr = (cov / (sd[:, None] * sd[None, :])).clamp(-_MAX_CORR, _MAX_CORR)
        corr.fill_diagonal_(1.0)
        self.corr_change = float((corr - self.corr).abs().max())
        self.corr = corr
        return self._rescaled_multi(psi, m1, torch.diag(sd))

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

    def _rescaled_multi(
        self, psi: torch.Tensor, mean: torch.Tensor, chol: torch.Tensor
    ) -> torch.Tensor:
        """Items for θ = L θ' + m re-expressed in θ': a' = Lᵀa, ‖a'‖ b' = ‖a‖ b − aᵀm.

        L is diagonal (confirmatory: the zero pattern and positive slopes are kept,
        log a'_d = log a_d + log L_dd) or lower triangular (exploratory: the
        anchors' upper-triangular zeros are kept).
        """
        d = self.n_dims
        a = slope_vectors(psi, self.slopes)
        b = thresholds(psi, d)
        norm = torch.linalg.vector_norm(a, dim=1)
        a_new = a @ chol
        norm_new = torch.linalg.vector_norm(a_new, dim=1)
        ratio = (norm / norm_new)[:, None]
        if self.exploratory:
            slope_cols = a_new * self.slopes.mask
        else:
            slope_cols = psi[:, :d] + torch.log(torch.diagonal(chol))[None, :]
        b1 = ratio * b[:, :1] - (a @ mean)[:, None] / norm_new[:, None]
        cols = [slope_cols, b1]
        if psi.shape[1] > d + 1:
            gaps = softplus(psi[:, d + 1 :]) * ratio
            u = gaps + torch.log(-torch.expm1(-torch.clamp(gaps, min=MIN_GAP)))
            cols.append(torch.where(self.thr_mask[:, 1:] > 0, u, psi[:, d + 1 :]))
        return torch.cat(cols, dim=1)

    def rotated(
        self, psi: torch.Tensor, grid: QuadGrid, rot: Rotation
    ) -> tuple[torch.Tensor, QuadGrid]:
        """The exploratory fit in rotated coordinates θ* = Tᵀθ (same likelihood and posteriors).

        Slopes a* = T⁻¹a, intercepts unchanged (‖a*‖ b* = ‖a‖ b), nodes θ* = Tᵀθ,
        latent correlation Φ; afterwards every slope is free (for the SEs).
        """
        d = self.n_dims
        t = torch.from_numpy(rot.matrix).to(psi)
        a = slope_vectors(psi, self.slopes)
        a_new = a @ torch.linalg.inv(t).T
        ratio = (torch.linalg.vector_norm(a, dim=1) / torch.linalg.vector_norm(a_new, dim=1))[
            :, None
        ]
        cols = [a_new, thresholds(psi, d)[:, :1] * ratio]
        if psi.shape[1] > d + 1:
            gaps = softplus(psi[:, d + 1 :]) * ratio
            u = gaps + torch.log(-torch.expm1(-torch.clamp(gaps, min=MIN_GAP)))
            cols.append(torch.where(self.thr_mask[:, 1:] > 0, u, psi[:, d + 1 :]))
        self.slopes = Slopes(torch.ones_like(self.slopes.mask), signed=True)
        self.par_mask = torch.cat([self.slopes.mask, self.thr_mask], dim=1)
        self.corr = torch.from_numpy(rot.phi).to(psi)
        new_grid = QuadGrid(grid.points @ t, grid.log_w, grid.per_axis, grid.spacing)
        return torch.cat(cols, dim=1), new_grid

    # -- M-step ---------------------------------------------------------------
    def m_step(self, psi: torch.Tensor, counts: torch.Tensor, grid: QuadGrid) -> torch.Tensor:
        """A few safeguarded Newton steps per item on the expected complete-data log posterior."""
        out = psi.clone()
        chunk = max(1, _ITEM_CHUNK_ELEMS // (self.k_max * grid.n * self.n_dims))
        for lo in range(0, self.prob.n_items, chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = self._newton(
                psi[sl],
                counts[sl],
                self.thr_mask[sl],
                grid.theta,
                self.priors.rows(sl),
                self.slopes.rows(sl),
            )
        return out

    @staticmethod
    def _objective(
        psi: torch.Tensor,
        counts: torch.Tensor,
        mask: torch.Tensor,
        theta: torch.Tensor,
        priors: Priors,
        slopes: Slopes,
    ) -> torch.Tensor:
        lp = log_probs(psi, theta, mask, slopes)
        return (counts * lp).sum(dim=(1, 2)) + log_prior(psi, mask, priors, slopes)

    def _newton(
        self,
        psi: torch.Tensor,
        counts: torch.Tensor,
        mask: torch.Tensor,
        theta: torch.Tensor,
        priors: Priors,
        slopes: Slopes,
    ) -> torch.Tensor:
        """Fisher scoring with a per-item backtracking line search (monotone: a GEM step)."""
        pmask = torch.cat([slopes.mask, mask], dim=1)
        f_old = self._objective(psi, counts, mask, theta, priors, slopes)
        for _ in range(_MAX_NEWTON):
            g, fisher, neg_h = score_and_fisher(
                psi, counts, mask, theta, priors, hessian=True, slopes=slopes
            )
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
                f_c = self._objective(cand, counts, mask, theta, priors, slopes)
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


def _exploratory_start(
    prob: Problem, n_dims: int, seed: int = 0
) -> tuple[FloatArray, FloatArray, list[int]]:
    """Start slopes from the data's principal directions, and the anchors that fix the rotation.

    The standardised (subjects × items) score matrix's top-D right singular
    vectors (subspace iteration on the sparse matrix, seeded) give loadings
    λ; a = 1.7 λ / √(1 − ‖λ‖²) is their logistic slope. Anchor d (d < D) is the
    item whose loading is longest after removing the directions of anchors
    1..d−1; an orthogonal rotation makes the anchors' slopes lower triangular
    (anchor d has no slope on dimensions after d), and those zeros are fixed
    during the fit. Returns (slopes, mask, anchors).
    """
    n_items, n_sub = prob.n_items, prob.n_subjects
    n_obs = np.bincount(prob.item, minlength=n_items).astype(float)
    mean = np.bincount(prob.item, weights=prob.score, minlength=n_items) / n_obs
    sq = np.bincount(prob.item, weights=prob.score.astype(float) ** 2, minlength=n_items) / n_obs
    sd = np.sqrt(np.maximum(sq - mean**2, 1e-12))
    z = (prob.score - mean[prob.item]) / sd[prob.item]
    mat = sparse.csr_matrix((z, (prob.subject, prob.item)), shape=(n_sub, n_items))
    basis = np.random.default_rng(seed).normal(size=(n_items, n_dims))
    for _ in range(30):  # subspace iteration: converges fast for D ≤ 3 leading directions
        basis, _r = np.linalg.qr(mat.T @ (mat @ basis))
    sing = np.linalg.norm(mat @ basis, axis=0)
    per_item = np.sqrt(np.maximum(n_obs, 1.0))[:, None]
    lam = basis * sing[None, :] / per_item  # ≈ item-factor correlations
    lam *= min(1.0, 0.9 / max(float(np.linalg.norm(lam, axis=1).max()), 1e-12))
    anchors: list[int] = []
    resid = lam.copy()
    for _ in range(n_dims - 1):
        j = int(np.argmax(np.linalg.norm(resid, axis=1)))
        anchors.append(j)
        v = resid[j] / max(float(np.linalg.norm(resid[j])), 1e-12)
        resid = resid - np.outer(resid @ v, v)
    q, r = np.linalg.qr(lam[anchors].T, mode="complete")  # lam[anchors] @ q is lower triangular
    rot = lam @ q
    signs = np.sign(np.concatenate([np.diag(r)[: n_dims - 1], [rot[:, -1].sum()]]))
    rot *= np.where(signs == 0, 1.0, signs)[None, :]
    norm2 = np.minimum((rot**2).sum(axis=1), 0.81)
    slopes = 1.7 * rot / np.sqrt(1.0 - norm2)[:, None]
    mask = np.ones((n_items, n_dims))
    for d, j in enumerate(anchors):
        mask[j, d + 1 :] = 0.0
    return slopes * mask, mask, anchors
