"""What a CAT rule may look at: per-bank constants and the state of one or many tests.

Rules receive an explicit :class:`CatState` (no back-reference to a
simulator). Its arrays carry a leading *subject* axis of length S: a live
session has S = 1, the offline replay advances all subjects of a response
matrix in lockstep with S in the thousands. A rule written once over these
arrays therefore runs unchanged live and in replay, which is what makes the
replay an honest preview of live behaviour.

:class:`PreparedBank` holds what never changes for a bank (its response
model, filled-in costs, tag codes, a fingerprint), computed
once per :class:`~orchestrator.bank.ItemBank` and shared.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.bank import ItemBank
from orchestrator.cat._table import InformationTable
from orchestrator.irt.posterior import DEFAULT_GRID, GridPosterior

__all__ = ["TABLE_MIN_ITEMS", "CatState", "PreparedBank"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
CostKind = Literal["seconds", "tokens"]

# Elements per temporary block when information is evaluated on whole posterior grids.
_BLOCK = 1 << 21
TABLE_MIN_ITEMS = 1000
"""Banks from this size on (D = 1) select from tabulated information (the same choices)."""


class PreparedBank:
    """Per-bank constants for the CAT hot path; get one with :meth:`of`.

    Attributes:
        bank: The item bank.
        model: Its graded response model (probabilities, information).
        n_items: Number of items N.
        fingerprint: SHA-256 over ids and parameters; a journal restored
            against a different bank is refused.
    """

    _cache: ClassVar[weakref.WeakKeyDictionary[ItemBank, PreparedBank]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, bank: ItemBank) -> None:
        self.bank = bank
        self.ids = bank.ids
        self.index = bank.index
        self.n_items = len(bank)
        self.a = bank.a
        self.n_categories = bank.n_categories
        self.model = bank.model
        h = hashlib.sha256()
        h.update("\x1f".join(bank.ids).encode())
        h.update(np.ascontiguousarray(bank.a).tobytes())
        h.update(np.ascontiguousarray(bank.b).tobytes())
        if bank.n_dims > 1:  # 1-D fingerprints stay as journals already hold them
            h.update(np.ascontiguousarray(bank.slopes).tobytes())
        self.fingerprint = h.hexdigest()
        self._costs: dict[str, FloatArray] = {}
        self._tags: dict[str, tuple[IntArray, tuple[str | None, ...]]] = {}
        self._table: InformationTable | None = None

    @classmethod
    def of(cls, bank: ItemBank | PreparedBank) -> PreparedBank:
        """The shared prepared form of ``bank`` (built on first use)."""
        if isinstance(bank, PreparedBank):
            return bank
        prepared = cls._cache.get(bank)
        if prepared is None:
            prepared = cls._cache[bank] = cls(bank)
        return prepared

    # -- information -------------------------------------------------------
    @property
    def n_dims(self) -> int:
        """D, the dimension of θ."""
        return self.model.n_dims

    def information(self, theta: FloatArray, items: IntArray | None = None) -> FloatArray:
        """Fisher information at θ points ``(..., D)`` for all items or ``items``.

        The model's division-free form (``GradedResponseModel.fisher_weight``):
        one ``exp`` per threshold, evaluated for every item at every step. Shape
        ``(..., n)`` for D = 1, ``(..., n, D, D)`` otherwise.
        """
        return self.model.information(theta, items)

    def information_table(self) -> InformationTable | None:
        """Every item's information tabulated over the default grid's θ range (built on
        first use; see :mod:`orchestrator.cat._table`), or None where exact evaluation
        is as cheap: banks under ``TABLE_MIN_ITEMS`` items, or D > 1."""
        if self._table is None and self.n_items >= TABLE_MIN_ITEMS and self.n_dims == 1:
            self._table = InformationTable(self.model, DEFAULT_GRID.lo, DEFAULT_GRID.hi)
        return self._table

    def information_on_grids(self, points: FloatArray, items: IntArray | None = None) -> FloatArray:
        """Information on each row's grid ``(S, G, 1)`` → ``(S, G, n)`` (D = 1), blockwise."""
        n = self.n_items if items is None else len(items)
        s, g = points.shape[:2]
        out = np.empty((s, g, n))
        rows = max(1, _BLOCK // max(1, g * n * (self.model.k_max + 1)))
        for lo in range(0, s, rows):  # blocks of subjects bound the temporaries' memory
            out[lo : lo + rows] = self.information(points[lo : lo + rows], items)
        return out

    # -- costs and tags ----------------------------------------------------
    def cost(self, kind: CostKind) -> FloatArray:
        """Expected cost per item (``seconds`` or ``tokens``), strictly positive.

        Items without a cost get the median of the known ones (1 if none is
        known); zero costs are raised to 1e-9 × that median so a free item
        still ranks by its information rather than tying at infinity.
        """
        if kind not in self._costs:
            raw = np.array(
                [
                    np.nan
                    if it.cost is None or getattr(it.cost, kind) is None
                    else getattr(it.cost, kind)
                    for it in self.bank.spec.items
                ],
                dtype=float,
            )
            known = raw[np.isfinite(raw)]
            fill = float(np.median(known)) if known.size and np.median(known) > 0 else 1.0
            cost = np.where(np.isfinite(raw), raw, fill)
            cost = np.maximum(cost, 1e-9 * fill)
            cost.setflags(write=False)
            self._costs[kind] = cost
        return self._costs[kind]

    def tag_codes(self, key: str) -> tuple[IntArray, tuple[str | None, ...]]:
        """Integer code per item for tag ``key`` and the values in code order.

        Values are sorted; items without the tag share the code of ``None`` (last).
        """
        if key not in self._tags:
            raw = self.bank.tag_values(key)
            values: tuple[str | None, ...] = tuple(sorted({v for v in raw if v is not None}))
            if any(v is None for v in raw):
                values = (*values, None)
            lookup = {v: i for i, v in enumerate(values)}
            codes = np.array([lookup[v] for v in raw], dtype=np.int64)
            codes.setflags(write=False)
            self._tags[key] = (codes, values)
        return self._tags[key]


@dataclass(eq=False)
class CatState:
    """The state of S ≥ 1 adaptive tests over one bank, as rules see it.

    θ has D dimensions (D = 1 is the same arrays with a trailing axis of 1).

    Attributes:
        bank: The prepared bank.
        theta: EAP estimate per subject, ``(S, D)``.
        se: Posterior SD per subject and dimension, ``(S, D)``.
        cov: Posterior covariance per subject, ``(S, D, D)``.
        points: Each subject's posterior grid as θ points, ``(S, G, D)`` (grids
            narrow on long tests).
        log_density: Unnormalised log posterior on ``points``, ``(S, G)``.
        eligible: ``(S, N)``; True where an item may be picked (not administered,
            not excluded, not unavailable, and, in replay, answered by the subject).
        administered: Bank indices in order, ``(S, T)``, padded with −1.
        scores: Scores in the same order, ``(S, T)``, padded with −1.
        n_items: Items administered per subject, ``(S,)``.
        lapse: The posterior's lapse rate (robust likelihood; 0 = the plain GRM), for
            rules that re-evaluate the posterior (KL).
        n_eligible: Eligible items per subject, ``(S,)``, when the owner of ``eligible``
            keeps the count (so stopping rules need not scan the bank); else counted.
        spent_seconds, spent_tokens: Cost spent so far, ``(S,)``.
        prior_mean: Mean of the normal prior, ``(1, D)`` or ``(S, D)``.
        prior_precision: Σ⁻¹ of the normal prior (it enters the information
            that selection weighs): ``(1, D, D)``, or ``(S, D, D)`` when subjects
            have their own priors (replay).
        admin_info: Optional ``(S, G)`` sum of administered items' information on
            ``points`` (D = 1); derived from ``administered`` when not given.
    """

    bank: PreparedBank
    theta: FloatArray
    se: FloatArray
    cov: FloatArray
    points: FloatArray
    log_density: FloatArray
    eligible: BoolArray
    administered: IntArray
    scores: IntArray
    n_items: IntArray
    spent_seconds: FloatArray
    spent_tokens: FloatArray
    prior_mean: FloatArray
    prior_precision: FloatArray
    admin_info: FloatArray | None = None
    n_eligible: IntArray | None = None
    lapse: float = 0.0
    _info_theta: FloatArray | None = field(default=None, init=False, repr=False)
    _weight_theta: FloatArray | None = field(default=None, init=False, repr=False)
    _weights: FloatArray | None = field(default=None, init=False, repr=False)

    @classmethod
    def of_posterior(
        cls,
        bank: PreparedBank,
        posterior: GridPosterior,
        rows: IntArray | slice,
        eligible: BoolArray,
        spent_seconds: FloatArray | None = None,
        spent_tokens: FloatArray | None = None,
        n_eligible: IntArray | None = None,
    ) -> CatState:
        """The state of the tests in ``rows`` of ``posterior`` (``eligible`` restricted to them).

        A live test is one row (a slice: the arrays are views); the replay passes
        the indices of every subject still answering.
        """
        count = posterior.count[rows]
        t = int(count.max(initial=0))
        zeros = np.zeros(len(count))
        info = posterior.admin_info
        precision, mean = posterior.prior_precision, posterior.prior_mean
        return cls(
            bank=bank,
            theta=posterior.eap[rows],
            se=posterior.sd[rows],
            cov=posterior.cov[rows],
            points=posterior.points[rows],
            log_density=posterior.log_density(rows),
            eligible=eligible,
            administered=posterior.items[rows, :t],
            scores=posterior.scores[rows, :t],
            n_items=count,
            spent_seconds=zeros if spent_seconds is None else spent_seconds,
            spent_tokens=zeros if spent_tokens is None else spent_tokens,
            prior_mean=mean if mean.shape[0] == 1 else mean[rows],
            prior_precision=precision if precision.shape[0] == 1 else precision[rows],
            admin_info=None if info is None else info[rows],
            n_eligible=n_eligible,
            lapse=posterior.lapse,
        )

    @property
    def n_subjects(self) -> int:
        return int(self.theta.shape[0])

    def eligible_counts(self) -> IntArray:
        """Eligible items per subject, ``(S,)`` (kept by the owner, else counted once)."""
        if self.n_eligible is None:
            self.n_eligible = self.eligible.sum(axis=1)
        return self.n_eligible

    def fisher_weight_at_theta(self) -> FloatArray:
        """c_j(θ̂) of every item at each subject's EAP, ``(S, N)`` (computed once).

        Item j's information at θ̂ is c_j(θ̂) a_j a_jᵀ.
        """
        if self._weight_theta is None:
            self._weight_theta = self._per_item(self.bank.model.fisher_weight)
        return self._weight_theta

    def _per_item(self, f: Any) -> FloatArray:
        """``f(θ̂)`` → ``(S, N)``, in blocks of subjects when S × N is large (replay)."""
        s, n = self.eligible.shape
        rows = max(1, _BLOCK // max(1, n * (self.bank.model.k_max + 1)))
        if s <= rows:
            return np.asarray(f(self.theta))
        out = np.empty((s, n))
        for lo in range(0, s, rows):  # blocks of rows bound the temporaries
            out[lo : lo + rows] = f(self.theta[lo : lo + rows])
        return out

    def information_at_theta(self) -> FloatArray:
        """Every item's information at each subject's EAP, ``(S, N)`` (computed once).

        The trace of the information matrix c(θ̂) a aᵀ, which is the information
        itself when D = 1.
        """
        if self._info_theta is None:
            self._info_theta = self.bank.model.sq_norm * self.fisher_weight_at_theta()
        return self._info_theta

    def posterior_information(self, batch: IntArray | None = None) -> FloatArray:
        """Σ⁻¹ + Σ_administered I_j(θ̂) (+ Σ_batch I_j(θ̂)) at each subject's EAP, ``(S, D, D)``.

        The information about θ a test holds once its responses (and the items in
        ``batch``, ``(S, B)`` padded with −1) are in, evaluated at the current
        estimate: what D- and A-optimal selection grow.
        """
        done = self.administered if batch is None else np.concatenate([self.administered, batch], 1)
        model = self.bank.model
        valid = done >= 0
        items = np.where(valid, done, 0)
        weight = np.where(valid, model.fisher_weight_at(self.theta[:, None, :], items), 0.0)
        slopes = model.slopes[items]  # (S, T, D)
        info = np.einsum("st,std,ste->sde", weight, slopes, slopes)
        return self.prior_precision + info

    def weights(self) -> FloatArray:
        """Normalised posterior mass on ``points``, ``(S, G)``."""
        if self._weights is None:
            w = np.exp(self.log_density - self.log_density.max(axis=1, keepdims=True))
            self._weights = w / w.sum(axis=1, keepdims=True)
        return self._weights

    def administered_information(self, keep: BoolArray | None = None) -> FloatArray:
        """Test information of the administered items on each subject's grid, ``(S, G)`` (D = 1),
        or at the grid points ``keep (G,)`` only (derived there alone, not kept)."""
        info = self.admin_info
        if info is None:
            points = self.points if keep is None else self.points[:, keep]
            info = np.zeros(points.shape[:2])
            for s in np.flatnonzero(self.n_items):  # live: one row; replay supplies admin_info
                items = self.administered[s, : self.n_items[s]]
                info[s] = self.bank.information(points[s], items).sum(axis=-1)
            if keep is None:
                self.admin_info = info
            return info
        return info if keep is None else info[:, keep]
