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
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.bank import ItemBank
from orchestrator.irt.posterior import GridPosterior

__all__ = ["CatState", "PreparedBank"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
CostKind = Literal["seconds", "tokens"]

# Elements per temporary block when information is evaluated on whole posterior grids.
_BLOCK = 1 << 21


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
    def information(self, theta: FloatArray, items: IntArray | None = None) -> FloatArray:
        """Fisher information, shape ``theta.shape + (n,)`` for all items or ``items``.

        The model's division-free form (``GradedResponseModel.fisher_weight``):
        one ``exp`` per threshold, evaluated for every item at every step.
        """
        return self.model.information(np.asarray(theta, dtype=float)[..., None], items)

    def information_on_grids(self, points: FloatArray, items: IntArray | None = None) -> FloatArray:
        """Information at each row's grid points: ``points (S, G)`` → ``(S, G, n)``, blockwise."""
        n = self.n_items if items is None else len(items)
        s, g = points.shape
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

    Attributes:
        bank: The prepared bank.
        theta: EAP estimate per subject, ``(S,)``.
        se: Posterior SD per subject, ``(S,)``.
        points: Each subject's posterior grid, ``(S, G)`` (grids narrow on long tests).
        log_density: Unnormalised log posterior on ``points``, ``(S, G)``.
        eligible: ``(S, N)``; True where an item may be picked (not administered,
            not excluded, not unavailable, and, in replay, answered by the subject).
        administered: Bank indices in order, ``(S, T)``, padded with −1.
        scores: Scores in the same order, ``(S, T)``, padded with −1.
        n_items: Items administered per subject, ``(S,)``.
        spent_seconds, spent_tokens: Cost spent so far, ``(S,)``.
        prior_sd: SD of the normal prior (its precision enters batch selection):
            one value, or ``(S, 1)`` when subjects have their own priors (replay).
        admin_info: Optional ``(S, G)`` sum of administered items' information on
            ``points``; derived from ``administered`` when not given.
    """

    bank: PreparedBank
    theta: FloatArray
    se: FloatArray
    points: FloatArray
    log_density: FloatArray
    eligible: BoolArray
    administered: IntArray
    scores: IntArray
    n_items: IntArray
    spent_seconds: FloatArray
    spent_tokens: FloatArray
    prior_sd: float | FloatArray = 1.0
    admin_info: FloatArray | None = None
    _info_theta: FloatArray | None = field(default=None, init=False, repr=False)
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
    ) -> CatState:
        """The state of the tests in ``rows`` of ``posterior`` (``eligible`` restricted to them).

        A live test is one row (a slice: the arrays are views); the replay passes
        the indices of every subject still answering.
        """
        count = posterior.count[rows]
        t = int(count.max(initial=0))
        zeros = np.zeros(len(count))
        info = posterior.admin_info
        return cls(
            bank=bank,
            theta=posterior.eap[rows],
            se=posterior.sd[rows],
            points=posterior.points[rows],
            log_density=posterior.log_density(rows),
            eligible=eligible,
            administered=posterior.items[rows, :t],
            scores=posterior.scores[rows, :t],
            n_items=count,
            spent_seconds=zeros if spent_seconds is None else spent_seconds,
            spent_tokens=zeros if spent_tokens is None else spent_tokens,
            prior_sd=(
                posterior.prior_sd[rows][:, None]
                if isinstance(posterior.prior_sd, np.ndarray)
                else posterior.prior_sd
            ),
            admin_info=None if info is None else info[rows],
        )

    @property
    def n_subjects(self) -> int:
        return int(self.theta.shape[0])

    def information_at_theta(self) -> FloatArray:
        """Every item's information at each subject's EAP, ``(S, N)`` (computed once)."""
        if self._info_theta is None:
            s, n = self.eligible.shape
            rows = max(1, _BLOCK // max(1, n * (self.bank.model.k_max + 1)))
            if s <= rows:
                self._info_theta = self.bank.information(self.theta)
            else:  # replay of many subjects: blocks of rows bound the temporaries
                out = np.empty((s, n))
                for lo in range(0, s, rows):
                    out[lo : lo + rows] = self.bank.information(self.theta[lo : lo + rows])
                self._info_theta = out
        return self._info_theta

    def weights(self) -> FloatArray:
        """Normalised posterior mass on ``points``, ``(S, G)``."""
        if self._weights is None:
            w = np.exp(self.log_density - self.log_density.max(axis=1, keepdims=True))
            self._weights = w / w.sum(axis=1, keepdims=True)
        return self._weights

    def administered_information(self) -> FloatArray:
        """Test information of the administered items on each subject's grid, ``(S, G)``."""
        if self.admin_info is None:
            out = np.zeros_like(self.points)
            for s in np.flatnonzero(self.n_items):  # live: one row; replay supplies admin_info
                items = self.administered[s, : self.n_items[s]]
                out[s] = self.bank.information(self.points[s], items).sum(axis=-1)
            self.admin_info = out
        return self.admin_info
