"""Item selection rules: which item(s) to administer next.

A rule is one *criterion* (a score per item, higher is better) plus three
options every rule shares, applied in this order:

1. **filters** — the state's ``eligible`` mask (administered, excluded and
   unavailable items are out), then optional *content balancing*
   (``content={"tag": "family", "targets": {...}}``): keep only items of the
   tag value furthest below its target share;
2. **cost** — optional ``cost="seconds"|"tokens"``: divide the criterion by
   the item's expected cost (information per unit of cost);
3. **picker** — ``randomesque=1`` takes the best item; ``randomesque=n``
   draws uniformly among the best n (exposure control).

A fourth option, ``probe=r``, resists deliberate under-performance: once the
last r items all scored below what the current θ̂ predicts (and again after
every further r), the next item is a *probe* — the most informative item at
an ability drawn from the prior above θ̂ — instead of the most informative
at θ̂. Under plain max-information
selection, failing items on purpose buys ever easier items, and a pattern of
failures at the bottom of the bank fits a low θ perfectly; probes put some
items where such a model can no longer help passing them, so the estimate
recovers and the person-fit statistic sees the contradiction
(``bench/bench_person_fit.py``).

Registered criteria: ``max_info`` (default; Fisher information at the EAP),
``variance_reduction`` (posterior-averaged variance reduction), ``random``,
and for θ of any dimension D: ``d_optimality`` (the gain in the determinant
of the posterior information), ``a_optimality`` (the drop in the posterior
variance of all dimensions, one target dimension or a weighted composite)
and ``kl`` (posterior-weighted Kullback–Leibler information).
``select(state, k)`` fills a batch of k items for parallel runs
greedily, conditioning each pick on the items already in the batch (see
:class:`VarianceReduction`), so a batch is informative together rather
than k near-copies of one choice.

With D > 1, ``max_info`` is D-optimality (the determinant measures a matrix of
information; for D = 1 the two choose the same items), and
``variance_reduction`` is refused (its grid integral is one-dimensional; use
``a_optimality`` or ``kl``).

Every rule works on a :class:`~orchestrator.cat.state.CatState` with S ≥ 1
subjects: the live controller passes S = 1, the replay simulation S = all
subjects, so both run the same code.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.special as sps
from numpy.typing import NDArray

from orchestrator._random import RandomLike, as_generator
from orchestrator._registry import Recorded, Registry
from orchestrator._validation import check_scalar
from orchestrator.cat._table import InformationTable
from orchestrator.cat.state import _BLOCK, CatState, PreparedBank
from orchestrator.errors import ConfigError, did_you_mean

__all__ = [
    "AOptimality",
    "Bounded",
    "DOptimality",
    "KLSelection",
    "MaxInfo",
    "RandomSelection",
    "SelectionRule",
    "VarianceReduction",
    "make_selection",
    "selection_rule",
    "selection_rules",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_OPEN = 64
"""Items a variance-reduction pick first opens groups for (the best bounds first; a call
costs more than its items)."""

selection_rules: Registry[SelectionRule] = Registry(
    "selection rule", group="agentcat.selection_rules"
)


def selection_rule(name: str):  # type: ignore[no-untyped-def]
    """Class decorator registering a :class:`SelectionRule` under ``name``."""
    return selection_rules.register(name)


def make_selection(spec: str | Mapping[str, Any] | SelectionRule | None = None) -> SelectionRule:
    """A selection rule from a name or ``{"rule": name, "args": {...}}``; default ``max_info``."""
    return selection_rules.create("max_info" if spec is None else spec)


def _check_int(rule: str, name: str, value: object, lo: int) -> int:
    return check_scalar(value, name, int, min_val=lo, where=f"selection rule {rule!r}")  # type: ignore[no-any-return]


class SelectionRule(Recorded, ABC):
    """Base of all selection rules: filters, criterion, cost, picker.

    Args:
        randomesque: Draw uniformly among the best ``n`` items (1 = take the best).
        content: Content balancing, ``{"tag": KEY, "targets": {VALUE: share, ...}}``.
            ``targets`` are shares summing to 1; values not listed have target 0
            and are used only when every listed value has run out. Without
            ``targets`` the bank's own composition is the target.
        cost: ``"seconds"`` or ``"tokens"``: rank by criterion per unit of the
            item's expected cost (unknown costs count as the bank's median).
        probe: After every ``probe`` consecutive items scored below their
            expectation at θ̂, pick the next at an ability drawn from the prior
            above θ̂ (0 = never).
    """

    name: ClassVar[str]
    """The registered name (set by :func:`selection_rule`)."""
    needs_grid_information: ClassVar[bool] = False
    """Reads the administered items' information on the posterior grid even for k = 1
    (the replay then keeps it up to date; live it is derived when asked)."""
    max_dims: ClassVar[int] = 3
    """Largest dimension of θ the criterion is defined for."""

    def __init__(
        self,
        *,
        randomesque: int = 1,
        content: Mapping[str, Any] | None = None,
        cost: str | None = None,
        probe: int = 0,
    ) -> None:
        rule = getattr(type(self), "name", type(self).__name__)
        self.randomesque = _check_int(rule, "randomesque", randomesque, 1)
        self.probe = _check_int(rule, "probe", probe, 0)
        if cost not in (None, "seconds", "tokens"):
            raise ConfigError(
                f"selection rule {rule!r}: cost must be 'seconds', 'tokens' or null; got {cost!r}"
                + did_you_mean(str(cost), ["seconds", "tokens"])
            )
        self.cost = cost
        self.content = _check_content(rule, content)

    def check_bank(self, bank: PreparedBank) -> None:
        """Reject options that do not fit ``bank`` (a content tag no item carries …).

        Raises:
            ConfigError: naming the tag or value and the bank's actual values,
                or a bank with more dimensions than the rule handles (or ``probe``
                on a multidimensional bank).
        """
        if self.probe and bank.n_dims > 1:
            raise ConfigError(
                f"selection rule {self.name!r}: probe is one-dimensional; bank "
                f"{bank.bank.name!r} has {bank.n_dims} dimensions",
                hint="drop probe for this bank",
            )
        if bank.n_dims > self.max_dims:
            raise ConfigError(
                f"selection rule {self.name!r} is defined for one-dimensional θ; bank "
                f"{bank.bank.name!r} has {bank.n_dims} dimensions "
                f"({', '.join(bank.bank.dimensions)})",
                hint="use d_optimality (= max_info), a_optimality or kl",
            )
        if self.content is None:
            return
        tag = self.content["tag"]
        _, values = bank.tag_codes(tag)
        present = [v for v in values if v is not None]
        if not present:
            raise ConfigError(
                f"selection rule {self.name!r}: no item of bank {bank.bank.name!r} has "
                f"content tag {tag!r}",
                hint="tag the items in bank.json or drop content balancing",
            )
        for value in self.content["targets"] or {}:
            if value not in present:
                raise ConfigError(
                    f"selection rule {self.name!r}: content target {value!r} is not a value "
                    f"of tag {tag!r} in bank {bank.bank.name!r}{did_you_mean(value, present)}",
                    hint=f"values present: {', '.join(present)}",
                )

    # -- public ------------------------------------------------------------
    def select(
        self,
        state: CatState,
        k: int = 1,
        rng: RandomLike = None,
        batch: Sequence[int] = (),
    ) -> list[int]:
        """Pick up to ``k`` distinct eligible items for one test (S = 1).

        Args:
            state: The test's state; only ``state.eligible`` items are picked.
            k: Batch size; fewer are returned when fewer items are eligible.
            rng: Random source for randomised rules.
            batch: Items already in flight; picks condition on them as if
                they had been picked first into this batch.

        Returns:
            Bank indices, in pick order (empty when nothing is eligible).
        """
        if state.n_subjects != 1:
            raise ValueError(
                f"select() serves one test; got S={state.n_subjects} (use select_each)"
            )
        inflight = np.array([[int(i) for i in batch]], dtype=np.int64)
        picks = self._pick_batch(state, k, [as_generator(rng)], inflight)[0]
        return [int(i) for i in picks if i >= 0]

    def select_each(self, state: CatState, rngs: Sequence[np.random.Generator]) -> IntArray:
        """One item per subject (the replay's lockstep step); −1 where none is eligible."""
        empty = np.empty((state.n_subjects, 0), dtype=np.int64)
        return self._pick_one(state, state.eligible, empty, rngs, {})

    def select_batch_each(
        self, state: CatState, k: int, rngs: Sequence[np.random.Generator]
    ) -> IntArray:
        """A batch of ``k`` items per subject, ``(S, k)``, picked as :meth:`select` picks
        one test's batch (each pick conditioned on the earlier ones); −1 where none is left."""
        empty = np.empty((state.n_subjects, 0), dtype=np.int64)
        return self._pick_batch(state, k, rngs, empty)

    def _pick_batch(
        self,
        state: CatState,
        k: int,
        rngs: Sequence[np.random.Generator],
        inflight: IntArray,
    ) -> IntArray:
        """``k`` picks per test, ``(S, k)``, each conditioned on the test's items in flight
        and its earlier picks (the one greedy batch of :meth:`select` and
        :meth:`select_batch_each`); −1 once a test has none left."""
        k = _check_int(self.name, "k", k, 1)
        mask = state.eligible
        if k > 1 or inflight.size:  # picks are struck from a copy
            mask = mask.copy()
            rows, at = np.nonzero(inflight >= 0)
            mask[rows, inflight[rows, at]] = False
        # in flight, then this batch's picks (−1 until made): each pick sees a view of
        # the ones before it
        first = inflight.shape[1]
        picked = np.full((state.n_subjects, first + k), -1, dtype=np.int64)
        picked[:, :first] = inflight
        cache: dict[str, Any] = {"n": self.randomesque}  # (what a bounded criterion must rank)
        for n in range(k):
            idx = self._pick_one(state, mask, picked[:, : first + n], rngs, cache)
            picked[:, first + n] = idx
            if n + 1 == k:
                break
            if state.n_subjects == 1:  # one test (live): no index arithmetic
                if idx[0] < 0:
                    break
                mask[0, idx[0]] = False
                continue
            if (idx < 0).all():  # nothing left anywhere: the rest stay −1
                break
            ok = np.flatnonzero(idx >= 0)
            mask[ok, idx[ok]] = False
        return picked[:, first:]

    # -- the pipeline --------------------------------------------------------
    def _pick_one(
        self,
        state: CatState,
        mask: BoolArray,
        batch: IntArray,
        rngs: Sequence[np.random.Generator],
        cache: dict[str, Any],
    ) -> IntArray:
        if self.content is not None:
            mask = mask & self._content_filter(state, mask, batch)
        scores = self._criterion(state, mask, batch, cache)
        cost = None if self.cost is None else state.bank.cost(self.cost)
        if self.probe and batch.shape[1] == 0:
            probing, target = _probe_targets(state, self.probe, rngs)
            if probing.size:  # probed tests pick by information at their target, the others
                # by the criterion: each group on its own (bounded) path
                rest = np.setdiff1d(np.arange(state.n_subjects), probing)
                out = np.empty(state.n_subjects, dtype=np.int64)
                probes = _information_at(state.bank, target[:, None])
                out[probing] = self._finish(probes, mask[probing], cost, [rngs[r] for r in probing])
                if rest.size:
                    kept = scores.take(rest) if isinstance(scores, Bounded) else scores[rest]
                    out[rest] = self._finish(kept, mask[rest], cost, [rngs[r] for r in rest])
                return out
        return self._finish(scores, mask, cost, rngs)

    def _finish(
        self,
        scores: FloatArray | Bounded,
        mask: BoolArray,
        cost: FloatArray | None,
        rngs: Sequence[np.random.Generator],
    ) -> IntArray:
        """The pick from criterion values (exact or bounded), after the cost option."""
        if isinstance(scores, Bounded):
            return self._pick_bounded(scores, mask, cost, rngs)
        if cost is not None:
            scores = scores / cost
        return self._pick(scores, mask, rngs)

    @abstractmethod
    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray | Bounded:
        """Score per subject and item, ``(S, N)``; higher is better. Only ``mask`` items matter.

        May be :class:`Bounded` (estimates within a known error, exact values on
        demand): the pick is then made from the exact values of the items the
        estimates cannot rule out, which is the same pick as from all exact values.
        """

    def _pick_bounded(
        self,
        scores: Bounded,
        mask: BoolArray,
        cost: FloatArray | None,
        rngs: Sequence[np.random.Generator],
    ) -> IntArray:
        """:meth:`_pick` on exact scores, evaluated only where the estimates leave a doubt.

        With L the n-th best lower bound of a row (n = ``randomesque``), an item
        whose upper bound is below L has n items surely better than it, so it is
        in neither the best item nor the best n; every other item is a candidate.
        A row with at most n candidates picks among them as :meth:`_pick` would
        (they are its best n); otherwise its candidates get their exact scores.
        Items without a bound always are candidates.
        """
        n = min(self.randomesque, mask.shape[1])
        found, exact = None, None
        if scores.shortlist is not None and cost is None:
            if scores.upper_only:
                found = _lazy_candidates(scores, mask, n)
                exact = None if found is None else found[2]
            else:
                found = self._shortlist_candidates(scores, scores.shortlist(), mask, n)
        rows, cols = self._candidates(scores, mask, cost, n) if found is None else found[:2]
        one = mask.shape[0] == 1
        if one and exact is not None and rows.size > n and n == 1 and cost is None:
            return cols[np.argmax(exact)][None]  # (what _pick makes of the row below)
        counts = np.array([rows.size]) if one else np.bincount(rows, minlength=mask.shape[0])
        if (counts <= n).all():
            out = np.full(len(counts), -1, dtype=np.int64)
            if n == 1:
                out[rows] = cols
                return out
            for s in np.flatnonzero(counts):  # the row's best n, in column order, as _pick draws
                choices = cols[rows == s]
                out[s] = choices[_draw(rngs[s], len(choices))]
            return out
        if exact is None:
            exact = scores.exact(rows, cols)
        if cost is not None:
            exact = exact / cost[cols]
        # the candidates of each row, left-aligned (column order kept), −inf padding
        if one:  # one test: its candidates are its packed row already
            packed, packed_cols = np.asarray(exact, dtype=float)[None, :], cols[None, :]
            return packed_cols[:, self._pick(packed, packed_cols >= 0, rngs)[0]]
        width = int(counts.max())
        pos = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
        packed = np.full((len(counts), width), -np.inf)
        packed_cols = np.full((len(counts), width), -1, dtype=np.int64)
        packed[rows, pos] = exact
        packed_cols[rows, pos] = cols
        picks = self._pick(packed, packed_cols >= 0, rngs)
        safe = np.maximum(picks, 0)
        return np.where(picks >= 0, packed_cols[np.arange(len(counts)), safe], -1)

    @staticmethod
    def _shortlist_candidates(
        scores: Bounded, listed: Shortlist, mask: BoolArray, n: int
    ) -> tuple[IntArray, IntArray] | None:
        """The candidates of :meth:`_candidates` found from the shortlist alone, or None
        where it cannot prove that no item off the list is one.

        An item off the list has an estimate ≤ the ceiling; when the n-th best listed
        eligible estimate minus 2·eps is above the ceiling, no such item is a candidate.
        """
        cols, est, ceiling = listed
        if len(cols) == 1:  # one test (a live step): its row as vectors
            return _shortlist_candidates_one(scores, cols[0], est[0], ceiling[0], mask[0], n)
        est = np.where(mask[np.arange(len(cols))[:, None], cols], est, -np.inf)
        if n > est.shape[1]:
            return None
        kth = est.max(axis=1) if n == 1 else -np.partition(-est, n - 1, axis=1)[:, n - 1]
        floor = kth - 2 * scores.eps
        if not (ceiling < floor).all():  # also rows with fewer than n listed eligible items
            return None
        rows, pos = np.nonzero(est >= floor[:, None])
        found = cols[rows, pos]
        free = scores.unbounded
        if free.size:  # items without a bound are candidates wherever eligible
            free_rows, at = np.nonzero(mask[:, free])
            rows, found = np.concatenate([rows, free_rows]), np.concatenate([found, free[at]])
        if rows.size < 2:
            return rows, found
        order = np.lexsort((found, rows))  # row by row, in column order (as np.nonzero)
        return rows[order], found[order]

    def _candidates(
        self, scores: Bounded, mask: BoolArray, cost: FloatArray | None, n: int
    ) -> tuple[IntArray, IntArray]:
        """(row, item) pairs that may be among a row's best n, row by row in column order.

        With L the n-th best lower bound of a row, an item whose upper bound is below
        L has n items surely better than it; every other item is a candidate.
        Items without a bound always are candidates.
        """
        est: NDArray[Any] = np.where(mask, scores.estimate, -np.inf)
        eps: float | FloatArray = scores.eps
        if cost is not None:
            est, eps = est / cost, scores.eps / cost
        free = scores.unbounded
        ranked = est
        if free.size:
            ranked = est.copy()
            ranked[:, free] = -np.inf
        if cost is not None:
            ranked = ranked - eps  # lower bounds
        if scores.upper_only:
            kth = self._exact_threshold(scores, est, cost, n)
        else:
            kth = ranked.max(axis=1) if n == 1 else -np.partition(-ranked, n - 1, axis=1)[:, n - 1]
        # upper bound ≥ the n-th best lower bound (without cost: est ± eps, one eps for all)
        cand = est >= (kth - 2 * eps)[:, None] if cost is None else est + eps >= kth[:, None]
        if not np.isfinite(kth).all():  # rows with fewer than n bounded items: −inf ≥ −inf
            cand &= mask
        if free.size:
            cand[:, free] = mask[:, free]
        rows, cols = np.nonzero(cand)
        return rows, cols

    @staticmethod
    def _exact_threshold(
        scores: Bounded, est: NDArray[Any], cost: FloatArray | None, n: int
    ) -> FloatArray:
        """Per row, the n-th best exact score among the items with the best upper bounds:
        n items reach it, so an item whose upper bound is below it is out (−inf when a
        row has fewer than n finite bounds). With ``eps`` = 0 the caller's test
        ``est ≥ kth`` is then exactly "upper bound ≥ threshold"."""
        m = min(max(4 * n, 16), est.shape[1])
        top = np.argpartition(-est, m - 1, axis=1)[:, :m]
        rows, pos = np.nonzero(np.take_along_axis(est, top, axis=1) > -np.inf)
        cols = top[rows, pos]
        exact = scores.exact(rows, cols)
        if cost is not None:
            exact = exact / cost[cols]
        found = np.full(top.shape, -np.inf)
        found[rows, pos] = exact
        return -np.partition(-found, n - 1, axis=1)[:, n - 1]

    def _pick(
        self, scores: FloatArray, mask: BoolArray, rngs: Sequence[np.random.Generator]
    ) -> IntArray:
        masked = np.where(mask, scores, -np.inf)
        any_eligible = mask.any(axis=1)
        if self.randomesque == 1:
            best = np.argmax(masked, axis=1)
            return np.where(any_eligible, best, -1)
        n = min(self.randomesque, masked.shape[1])
        if n < masked.shape[1]:
            top = np.argpartition(-masked, n - 1, axis=1)[:, :n]
        else:
            top = np.broadcast_to(np.arange(n), masked.shape).copy()
        top.sort(axis=1)  # a draw's meaning must not depend on partition order
        valid = np.take_along_axis(mask, top, axis=1)
        out = np.full(masked.shape[0], -1, dtype=np.int64)
        for s in np.flatnonzero(any_eligible):  # one draw per subject, from its own stream
            choices = top[s][valid[s]]
            out[s] = choices[_draw(rngs[s], len(choices))]
        return out

    def _content_filter(self, state: CatState, mask: BoolArray, batch: IntArray) -> BoolArray:
        """Keep items of the tag value with the largest deficit t_v·(n+1) − count_v."""
        assert self.content is not None
        codes, values = state.bank.tag_codes(self.content["tag"])
        n_values = len(values)
        s = mask.shape[0]
        targets = self.content["targets"]
        if targets is None:
            target = np.bincount(codes, minlength=n_values) / len(codes)
        else:
            target = np.array([float(targets.get(v, 0.0)) for v in values])
        done = np.concatenate([state.administered, batch], axis=1)
        rows, cols = np.nonzero(done >= 0)
        flat = rows * n_values + codes[done[rows, cols]]
        counts = np.bincount(flat, minlength=s * n_values).reshape(s, n_values)
        rows, cols = np.nonzero(mask)
        avail = np.bincount(rows * n_values + codes[cols], minlength=s * n_values)
        avail = avail.reshape(s, n_values) > 0
        deficit = target * (counts.sum(axis=1, keepdims=True) + 1) - counts
        deficit = np.where(avail, deficit, -np.inf)
        chosen = np.argmax(deficit, axis=1)
        return codes[None, :] == chosen[:, None]


def _shortlist_candidates_one(
    scores: Bounded, cols: IntArray, est: NDArray[Any], ceiling: float, mask: BoolArray, n: int
) -> tuple[IntArray, IntArray] | None:
    """``SelectionRule._shortlist_candidates`` of one test: the same comparisons on its
    row's vectors (the same candidates), without the per-row index arithmetic."""
    est = np.where(mask[cols], est, -np.inf)
    if n > est.size:
        return None
    kth = est.max() if n == 1 else -np.partition(-est, n - 1)[n - 1]
    floor = kth - 2 * scores.eps
    if not ceiling < floor:
        return None
    found = cols[est >= floor]
    free = scores.unbounded
    if free.size:  # items without a bound are candidates wherever eligible
        found = np.concatenate([found, free[mask[free]]])
    if found.size > 1:
        found = np.sort(found)  # column order, as np.nonzero gives them
    return np.zeros(found.size, dtype=np.int64), found


def _lazy_candidates(
    scores: Bounded, mask: BoolArray, n: int
) -> tuple[IntArray, IntArray, FloatArray] | None:
    """Candidates of one test (S = 1) for an upper-bounded criterion, with their exact
    scores, from its shortlist: the eligible listed items are evaluated exactly in
    order of their bounds, a chunk at a time, until the next bound is below the n-th
    best exact score found (lazy greedy); None when an item off the list (bound ≤ the
    ceiling) could still reach it. Items without a bound are always evaluated. Every
    item evaluated is returned: they include the best n. First, the scores the
    criterion has at hand (``Bounded.known``) settle the pick without the list when
    every other item's bound is below their n-th best."""
    if mask.shape[0] != 1:
        return None
    if scores.known is not None and (got := scores.known(mask[0])) is not None:
        items, values, rest = got  # settled when every item not at hand is below the n-th
        if values.size >= n and rest < -np.partition(-values, n - 1)[n - 1]:
            return np.zeros(items.size, dtype=np.int64), items, values
    assert scores.shortlist is not None
    cols, est, ceiling = scores.shortlist()
    keep = mask[0, cols[0]]
    cols, est = cols[0][keep], est[0][keep]
    free = scores.unbounded[mask[0, scores.unbounded]]
    if cols.size + free.size < n:
        return None
    items, values = [free], [np.empty(0)]
    if free.size:
        values[0] = scores.exact(np.zeros(free.size, dtype=np.int64), free)
    step = max(32, 4 * n)  # a call costs more than its items: chunks of 32
    while True:  # the chunk of the best bounds left (a partition: no full sort)
        if cols.size > step:
            part = np.argpartition(-est, step)
            chunk, cols, est = cols[part[:step]], cols[part[step:]], est[part[step:]]
        else:
            chunk, cols, est = cols, cols[:0], est[:0]
        items.append(chunk)
        values.append(scores.exact(np.zeros(chunk.size, np.int64), chunk))
        found = np.concatenate(values) if len(values) > 2 or free.size else values[-1]
        kth = -np.partition(-found, n - 1)[n - 1] if found.size >= n else -np.inf
        # (argpartition left the best bound of the rest at its front)
        if cols.size == 0 or est[0] < kth:
            break
    if not ceiling[0] < kth:
        return None
    picked = np.concatenate(items) if len(items) > 2 or free.size else items[-1]
    order = np.argsort(picked)  # column order, as _candidates gives them
    return np.zeros(picked.size, dtype=np.int64), picked[order], found[order]


def _probe_targets(
    state: CatState, run: int, rngs: Sequence[np.random.Generator]
) -> tuple[IntArray, FloatArray]:
    """Tests due a probe, and for each an ability to probe at.

    Due: the trailing run of items scored below their expectation at θ̂ is a
    positive multiple of ``run``. The ability is drawn from the bank's prior
    truncated to above θ̂: where, in the population, a model failing on
    purpose may still pass items.
    """
    s, t = state.administered.shape
    if t < run:
        return np.empty(0, dtype=np.int64), np.empty(0)
    items = state.administered
    valid = items >= 0
    bank = state.bank
    theta_hat = state.theta[:, 0]  # one-dimensional (check_bank refuses probe otherwise)
    theta = np.repeat(theta_hat, t)[:, None]  # (S·T, 1): each test's θ̂ at its items
    probs = bank.model.category_probs_at(theta, np.maximum(items, 0).ravel())
    expected = (probs @ np.arange(probs.shape[-1])).reshape(s, t)
    below = valid & (state.scores < expected - 1e-9)
    # the trailing run, read from each test's last item backwards
    back = state.n_items[:, None] - 1 - np.arange(t)[None, :]
    below_back = np.where(back >= 0, np.take_along_axis(below, np.maximum(back, 0), axis=1), False)
    run_len = np.where(below_back.all(axis=1), t, np.argmin(below_back, axis=1))
    rows = np.flatnonzero((run_len > 0) & (run_len % run == 0))
    if rows.size == 0:
        return rows, np.empty(0)
    floor = theta_hat[rows]
    prior = bank.bank.spec.prior
    u = np.array([rngs[r].random() for r in rows])  # only probing tests draw
    c = np.clip(sps.ndtr((floor - prior.mean) / prior.sd), 0.0, 1.0 - 1e-9)
    return rows, prior.mean + prior.sd * sps.ndtri(c + u * (1.0 - c))


Shortlist = tuple[IntArray, NDArray[Any], FloatArray]
"""Per subject: items ``(S, M)``, their estimates ``(S, M)``, and a ceiling ``(S,)`` on the
estimate of every bounded item not listed."""


class Bounded:
    """Criterion values known to within ``eps``, and a way to get the exact ones.

    Args:
        estimate: ``(S, N)`` estimates (e.g. interpolated from a table), or a function
            computing them (called at most once, only when the shortlist does not decide).
        eps: Bound on ``|estimate − exact|`` for every item not in ``unbounded``
            (or, with ``upper_only``, 0: the estimate is ≥ the exact score).
        unbounded: Items whose estimate has no bound (always evaluated exactly).
        exact: ``exact(rows, cols)`` → the exact values of the pairs (subject
            ``rows[i]``, item ``cols[i]``).
        upper_only: ``estimate`` is only an upper bound (``eps`` is 0): the threshold an
            item must reach comes from the exact scores of the best few estimates.
        shortlist: Optional function returning a :data:`Shortlist`: a few items per
            subject, their estimates, and a ceiling on every other item's estimate,
            so a pick may be proven from the listed items alone.
        known: Optional function of one test's eligibility ``(N,)``: the exact scores
            of the eligible items it has at hand (cheaply, e.g. earlier picks of the
            same batch scored them), in column order, and a bound on every other
            eligible item's score; or None. Tried before the shortlist.
    """

    def __init__(
        self,
        estimate: NDArray[Any] | Callable[[], NDArray[Any]],
        eps: float,
        unbounded: IntArray,
        exact: Callable[[IntArray, IntArray], FloatArray],
        upper_only: bool = False,
        shortlist: Callable[[], Shortlist] | None = None,
        known: Callable[[BoolArray], tuple[IntArray, FloatArray, float] | None] | None = None,
    ) -> None:
        self._estimate = estimate
        self.eps = eps
        self.unbounded = unbounded
        self.exact = exact
        self.upper_only = upper_only
        self.shortlist = shortlist
        self.known = known

    @property
    def estimate(self) -> NDArray[Any]:
        if callable(self._estimate):
            self._estimate = self._estimate()
        return self._estimate

    def take(self, rows: IntArray) -> Bounded:
        """The criterion of subjects ``rows`` only (in that order)."""
        shortlist = self.shortlist

        def listed() -> Shortlist:
            assert shortlist is not None
            cols, est, ceiling = shortlist()
            return cols[rows], est[rows], ceiling[rows]

        return Bounded(
            lambda: self.estimate[rows],
            self.eps,
            self.unbounded,
            lambda r, c: self.exact(rows[r], c),
            self.upper_only,
            None if shortlist is None else listed,
        )


def _draw(rng: np.random.Generator, n: int) -> int:
    """Uniform index in 0..n−1 from one double.

    Twice as cheap as ``rng.integers(n)``, which matters when the replay draws
    once per subject and step; live and replay share it, so streams agree.
    """
    return int(rng.random() * n)


def _check_content(rule: str, content: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if content is None:
        return None
    if not isinstance(content, Mapping):
        raise ConfigError(
            f"selection rule {rule!r}: content must be {{'tag': KEY, 'targets': {{...}}}}; "
            f"got {content!r}"
        )
    unknown = set(content) - {"tag", "targets"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"selection rule {rule!r}: content has unknown key {key!r}"
            f"{did_you_mean(key, ['tag', 'targets'])}"
        )
    tag = content.get("tag")
    if not isinstance(tag, str) or not tag:
        raise ConfigError(f"selection rule {rule!r}: content.tag must be a tag name; got {tag!r}")
    targets = content.get("targets")
    if targets is not None:
        if not isinstance(targets, Mapping) or not targets:
            raise ConfigError(
                f"selection rule {rule!r}: content.targets must map tag values to shares; "
                f"got {targets!r}"
            )
        for value, share in targets.items():
            if (
                isinstance(share, bool)
                or not isinstance(share, (int, float))
                or not math.isfinite(share)
                or share <= 0
            ):
                raise ConfigError(
                    f"selection rule {rule!r}: content target for {value!r} must be a share > 0; "
                    f"got {share!r}"
                )
        total = float(sum(targets.values()))
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(
                f"selection rule {rule!r}: content targets must sum to 1; they sum to {total:g}"
            )
        targets = {str(k): float(v) for k, v in targets.items()}
    return {"tag": tag, "targets": targets}


# ---------------------------------------------------------------------------- criteria
def _variance_reduction(
    state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
) -> FloatArray | Bounded:
    """Σ_g w_g · I_j(θ_g) / (J_g (J_g + I_j(θ_g))) for every item j, ``(S, N)``.

    ``J`` is the local (Fisher) precision: prior precision plus the information of
    administered items and of the items already in the batch. 1/J − 1/(J + I_j)
    is how much item j shrinks the asymptotic variance at θ_g; averaging it over
    the posterior gives the expected variance reduction. Evaluated on the grid
    points holding the mass and only for items eligible for some subject; the
    information table is cached across the picks of one batch.
    """
    bank = state.bank
    s_count = state.n_subjects
    prep = cache.get("vr_grid")
    if prep is None:  # the posterior is fixed within one select() call
        w = state.weights()
        keep = (w > 1e-9 * w.max(axis=1, keepdims=True)).any(axis=0)
        j_prec = state.prior_precision[:, 0] + state.administered_information(keep)
        points = state.points[:, keep]
        table = bank.information_table()
        table = table if table is not None and table.covers(points) else None
        prep = cache["vr_grid"] = [points, w[:, keep], j_prec, 0, table]
    points, w, j_prec, n_done, table = prep
    if batch.shape[1] > n_done:  # J grows by each row's picks since last time (−1: none)
        new = batch[:, n_done:]
        s_, g_, m_ = points.shape[0], points.shape[1], new.shape[1]
        if s_ == m_ == 1:  # one test, one new pick: its information on the grid, as below
            item = int(new[0, 0])  # (computed already if an exact score was: the same bits)
            if item >= 0:
                column = _known_column(cache, item)
                if column is None:
                    column = bank.model.information_at(points[0], item)
                j_prec = j_prec + column
        else:
            theta = np.broadcast_to(points[:, :, None, :], (s_, g_, m_, points.shape[-1]))
            items = np.broadcast_to(np.maximum(new, 0)[:, None, :], (s_, g_, m_))
            info = bank.model.information_at(theta.reshape(-1, points.shape[-1]), items.ravel())
            j_prec = j_prec + (info.reshape(s_, g_, m_) * (new >= 0)[:, None, :]).sum(axis=-1)
        prep[2:4] = [j_prec, batch.shape[1]]
    if table is not None:
        return _variance_reduction_bounded(state, table, points, w / j_prec, j_prec, cache)
    # Within one select() call the posterior is fixed and the candidates only shrink,
    # so the information table over the state's eligible items is computed once.
    cols = np.flatnonzero(state.eligible.any(axis=0))
    out = np.zeros(mask.shape)
    if cols.size == 0:
        return out
    info = cache.get("vr_info")
    if info is None and points.size * cols.size <= 4 * _BLOCK:
        info = cache["vr_info"] = bank.information_on_grids(points, cols)
    factor = w / j_prec
    if info is not None:
        out[:, cols] = np.einsum("sg,sgn->sn", factor, info / (j_prec[:, :, None] + info))
        return out
    g = points.shape[1]
    step = max(1, _BLOCK // (cols.size * 6))
    for s in range(s_count):  # large banks: blocks of grid points bound the memory
        acc = np.zeros(cols.size)
        for lo in range(0, g, step):
            blk = bank.information(points[s, lo : lo + step], cols)
            jj = j_prec[s, lo : lo + step, None]
            acc += (factor[s, lo : lo + step, None] * blk / (jj + blk)).sum(axis=0)
        out[s, cols] = acc
    return out


def _variance_reduction_bounded(
    state: CatState,
    table: InformationTable,
    points: FloatArray,
    factor: FloatArray,
    j_prec: FloatArray,
    cache: dict[str, Any],
) -> Bounded:
    """The variance reduction of every item as an upper bound from the tabulated
    information, and its exact value on demand (for the few items the bound keeps).

    f(I) = I / (J + I) is concave in I, so its tangent at any I₀ lies above it:
    f(I) ≤ f(I₀) + f'(I₀)(I − I₀) with f'(I₀) = J / (J + I₀)². Summed over the
    posterior grid with I + eps in place of I, the bound is linear in the items'
    information at the grid points, and each of those is a linear interpolation
    of two table rows: the bound is one product of a few weights per table row
    with the rows the posterior touches, no (G, N) table built. I₀ is the largest
    tabulated information near each point, where the best items are and the
    tangent is tight.

    One test's batch (S = 1) needs no bound per item: f also increases in I, so a
    group of the table's items is bounded as a whole by f of its envelope, and a
    pick scores exactly only the members of the groups whose bound can still win
    (:func:`_open_groups`, offered as ``Bounded.known``). Within the batch the
    posterior is fixed and J only grows as picks join it, so every criterion only
    falls: the items scored for one pick are re-scored at the next pick's J from
    their stored information, and a group's bound stays a bound until renewed.
    The tangent bound of all N items is what the cost option (and the replay's
    S tests) use.
    """
    s_count = state.n_subjects
    bank = state.bank
    one = s_count == 1 and table.order.shape[1] > 0
    if one:  # (computed only for the cost option)

        def upper() -> FloatArray:
            return _variance_reduction_upper(table, points, factor, j_prec)

    else:
        upper = _variance_reduction_upper(table, points, factor, j_prec)  # type: ignore[assignment]

    def exact(rows: IntArray, cols: IntArray) -> FloatArray:
        if s_count == 1:  # one test's batch: each item's information computed once
            info = _grid_information(cache, bank, points[0], cols)  # (G, m)
            return np.einsum("g,gm->m", factor[0], info / (j_prec[0, :, None] + info))  # type: ignore[no-any-return]
        out = np.empty(len(rows))
        for s in np.unique(rows):
            at = rows == s
            info = bank.information(points[s], cols[at])
            out[at] = np.einsum("g,gm->m", factor[s], info / (j_prec[s, :, None] + info))
        return out

    def known(eligible: BoolArray) -> tuple[IntArray, FloatArray, float]:
        return _open_groups(
            table, bank, points[0], factor[0], j_prec[0], eligible, cache.get("n", 1), cache
        )

    def listed() -> Shortlist:  # (only where fewer than n items are eligible)
        items, values, rest = known(state.eligible[0])
        return items[None, :], values[None, :], np.array([rest])

    return Bounded(
        upper,
        0.0,
        table.steep,
        exact,
        upper_only=True,
        shortlist=listed if one else None,
        known=known if one else None,
    )


def _open_groups(
    table: InformationTable,
    bank: PreparedBank,
    points: FloatArray,
    factor: FloatArray,
    j_prec: FloatArray,
    eligible: BoolArray,
    n: int,
    cache: dict[str, Any],
) -> tuple[IntArray, FloatArray, float]:
    """One test's variance-reduction pick, lazily over the table's groups.

    With I ≤ U on the grid (U: a group's envelope plus eps, see
    :meth:`InformationTable.groups`), the criterion Σ_g factor_g · I / (J_g + I)
    of every member is at most the same sum of U, since it increases in I. The
    items at hand (every member of an opened group and every item without a
    bound, their information stored for the batch) are scored exactly at J now;
    a closed group whose bound reaches their n-th best score is renewed at J now
    and, if it still does, opened (the best groups of ``_OPEN`` members first, then
    twice as many each round, as their members raise the floor); until none does.
    Within one pick J is fixed, so each stored item is scored once per pick, however
    many rounds it takes. Returns the eligible items at hand (column order), their
    exact scores, and the highest bound of a closed group: every other eligible
    item is below it, so the best n are at hand.
    """
    members, starts, envelope = table.groups()
    n_picked = cache["vr_grid"][3]  # (J holds the batch's picks so far)
    prep = cache.get("vr_groups")
    if prep is None:  # the batch's grid is fixed: each group's envelope on it, once
        i, _ = table.position(points)
        # (C, G): a group's row is contiguous, so renewing a few groups gathers rows
        top = np.maximum(envelope[i], envelope[i + 1]).T.astype(float, order="C")
        top += table.eps
        prep = cache["vr_groups"] = (top, _criterion_sum(top, j_prec, factor), [n_picked])
        _store_information(cache, bank, points, table.steep)  # (always at hand)
    top, bound, renewed = prep  # bound: −inf once a group is opened
    stale, renewed[0] = renewed[0] != n_picked, n_picked

    take = _OPEN
    scored = cache.get("vr_scored")  # [J's picks, rows of the store scored, their scores]
    if scored is None or scored[0] != n_picked:  # (J is fixed within one pick)
        scored = cache["vr_scored"] = [n_picked, 0, np.empty(0)]
    while True:
        slot, store, used, owner = cache["vr_seen"]
        if scored[1] < used:  # the rows stored since, at J now
            fresh = _criterion_sum(store[scored[1] : used], j_prec, factor)
            scored[1:] = used, np.concatenate([scored[2], fresh]) if scored[1] else fresh
        values = scored[2]
        live = eligible[owner[:used]]  # (the batch's picks drop out here)
        best = values[live]
        if best.size < n:
            floor = -np.inf
        else:
            floor = best.max() if n == 1 else -np.partition(-best, n - 1)[n - 1]
        reach = np.flatnonzero(bound >= floor if floor > -np.inf else bound > floor)
        if stale and reach.size:  # bounds from an earlier J: renew those that reach the floor
            bound[reach] = _criterion_sum(top[reach], j_prec, factor)
            reach, stale = reach[bound[reach] >= floor], False
        if reach.size == 0:  # the eligible items at hand, in column order
            ranked = cache.get("vr_order")
            if ranked is None or ranked[0] != used:  # (sorted once per store size)
                ranked = cache["vr_order"] = (used, np.argsort(owner[:used]))
            order = ranked[1][live[ranked[1]]]
            return owner[order], values[order], float(bound.max(initial=-np.inf))
        size = starts[reach + 1] - starts[reach]  # (members, eligible or not)
        if size.sum() > take:  # the best first (≥ take items): they raise the floor
            order = np.argsort(-bound[reach])
            cut = int(np.searchsorted(np.cumsum(size[order]), take)) + 1
            reach, size = reach[order[:cut]], size[order[:cut]]
        take *= 2
        bound[reach] = -np.inf
        # the groups' members: each group's run of positions in ``members``
        first = np.repeat(starts[reach] - (np.cumsum(size) - size), size)
        new = members[first + np.arange(first.size)]
        new = new[eligible[new] & (slot[new] < 0)]
        if new.size:
            _store_information(cache, bank, points, new)


def _criterion_sum(info: FloatArray, j_prec: FloatArray, factor: FloatArray) -> FloatArray:
    """Σ_g factor_g · I_mg / (J_g + I_mg) of each row m of ``info (m, G)``: the variance
    reduction of items (or a bound, of envelopes), with one temporary."""
    ratio = np.add(info, j_prec)
    np.divide(info, ratio, out=ratio)
    return np.einsum("mg,g->m", ratio, factor)  # type: ignore[no-any-return]


def _grid_information(
    cache: dict[str, Any], bank: PreparedBank, points: FloatArray, cols: IntArray
) -> FloatArray:
    """Items' information on one test's grid, ``(G, m)``, each item computed once per
    batch (:func:`_store_information`), as computed afresh."""
    slot = _store_information(cache, bank, points, cols)
    return np.ascontiguousarray(cache["vr_seen"][1][slot[cols]].T)


def _store_information(
    cache: dict[str, Any], bank: PreparedBank, points: FloatArray, cols: IntArray
) -> IntArray:
    """Compute and keep the information on one test's grid of the items ``cols`` not
    kept yet; returns the store's row of each item (−1: none). Each item is computed
    once per batch: the grid is fixed within it and a later pick mostly re-scores the
    items an earlier one scored (with J grown). Elementwise, so the same bits as
    computing the columns again; also what J grows by once an item is picked
    (:func:`_known_column`). Kept as one row per item seen (``owner``: the item of
    each row), in a store that grows, not a (G, N) array whose scattered first writes
    would each fault in a page."""
    seen = cache.get("vr_seen")
    if seen is None:
        slot = np.full(bank.n_items, -1, dtype=np.int64)
        rows = max(64, 2 * len(cols))
        seen = [slot, np.empty((rows, len(points))), 0, np.empty(rows, dtype=np.int64)]
        cache["vr_seen"] = seen
    slot, store, used, owner = seen
    need = cols[slot[cols] < 0]
    if need.size > 1:  # sorted and distinct (np.unique's result; a sort is cheaper)
        need = np.sort(need)
        if (need[1:] == need[:-1]).any():
            need = np.unique(need)
    if need.size:
        if used + need.size > len(store):
            size = 2 * (used + need.size)
            grown, grown_owner = np.empty((size, store.shape[1])), np.empty(size, np.int64)
            grown[:used], grown_owner[:used] = store[:used], owner[:used]
            store, owner = seen[1], seen[3] = grown, grown_owner
        store[used : used + need.size] = bank.information(points, need).T
        owner[used : used + need.size] = need
        slot[need] = np.arange(used, used + need.size)
        seen[2] = used + need.size
    return slot  # type: ignore[no-any-return]


def _known_column(cache: dict[str, Any], item: int) -> FloatArray | None:
    """An item's information on the grid if :func:`_grid_information` computed it."""
    seen = cache.get("vr_seen")
    if seen is None or seen[0][item] < 0:
        return None
    return seen[1][seen[0][item]]  # type: ignore[no-any-return]


def _variance_reduction_upper(
    table: InformationTable, points: FloatArray, factor: FloatArray, j_prec: FloatArray
) -> FloatArray:
    """Upper bounds ``(S, N)`` on every item's variance reduction (tangents of
    I / (J + I) at the largest tabulated information near each grid point; see
    :func:`_variance_reduction_bounded`)."""
    s_count = points.shape[0]
    upper = np.empty((s_count, table.values.shape[1]))
    i, frac = table.position(points.reshape(-1))
    i, frac = i.reshape(points.shape[:2]), frac.reshape(points.shape[:2]).astype(float)
    for s in range(s_count):
        lo, hi = int(i[s].min()), int(i[s].max()) + 2  # the rows this posterior touches
        rows = table.values[lo:hi]
        top = np.maximum(table.row_max[i[s]], table.row_max[i[s] + 1])
        slope = factor[s] * j_prec[s] / (j_prec[s] + top) ** 2
        offset = factor[s] * top / (j_prec[s] + top) - slope * top
        # the weight of each table row: its share of every grid point's interpolation
        weight = np.bincount(i[s] - lo, slope * (1.0 - frac[s]), minlength=hi - lo)
        weight += np.bincount(i[s] + 1 - lo, slope * frac[s], minlength=hi - lo)
        # float32 sum of products (a mixed one is ~50× slower; einsum's own loop, as
        # a threaded BLAS gemv was 100× slower on a loaded machine), plus a bound on
        # its rounding
        rounding = (hi - lo + 2) * 2.0**-24 * float(weight @ table.row_max[lo:hi])
        upper[s] = np.einsum("r,rn->n", weight.astype(np.float32), rows)
        upper[s] += offset.sum() + table.eps * slope.sum() + rounding
    return upper


def _information_at_theta(state: CatState) -> FloatArray | Bounded:
    """Every item's information at each subject's EAP (see :func:`_information_at`)."""
    return _information_at(state.bank, state.theta, state.information_at_theta)


def _information_at(
    bank: PreparedBank, theta: FloatArray, exactly: Callable[[], FloatArray] | None = None
) -> FloatArray | Bounded:
    """Every item's information at one θ per subject ``(S, 1)``: interpolated from the
    bank's table where it has one (exact values only for the items that could win; a
    live step first tries the shortlist of θ's interval), else exact ``(S, N)``
    (from ``exactly`` when given)."""
    table = bank.information_table()
    if table is None or not table.covers(theta):
        return bank.information(theta) if exactly is None else exactly()
    model = bank.model

    def exact(rows: IntArray, cols: IntArray) -> FloatArray:
        return model.information_at(theta[rows], cols)  # type: ignore[no-any-return]

    return Bounded(
        lambda: table.interpolate(theta),
        table.eps,
        table.steep,
        exact,
        shortlist=lambda: table.shortlist(theta),
    )


@selection_rule("max_info")
class MaxInfo(SelectionRule):
    """Maximum Fisher information at the current estimate (EAP): the default.

    In a batch (``k > 1``, or items already in flight) the first pick is the
    single-item choice, so ``select(k)[0] == select(1)[0]``; later picks
    condition on the batch with :class:`VarianceReduction`'s criterion. Ranking
    k items by information at one θ instead (naive top-k) would pile near-copies
    onto the current estimate just when it is least certain.
    """

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray | Bounded:
        if state.bank.n_dims > 1:
            return _d_optimality(state, batch)
        if batch.shape[1] == 0:
            return _information_at_theta(state)
        return _variance_reduction(state, mask, batch, cache)


@selection_rule("variance_reduction")
class VarianceReduction(SelectionRule):
    """Greedy expected reduction of the posterior variance, batch-aware by design.

    Each pick maximises ∫ p(θ | data) [1/J(θ) − 1/(J(θ) + I_j(θ))] dθ over the
    posterior grid, J(θ) = prior precision + information of administered items +
    information of items already picked into the batch. Because J grows where
    the batch already measures well, later picks move to other plausible θ:
    the batch spreads over the posterior instead of repeating one choice. The
    objective has diminishing returns (it is a sum of concave functions of J),
    which is what makes greedy picking a sound, cheap approximation of the
    best joint batch. For k = 1 with a concentrated posterior, I_j(θ) is nearly
    constant over the mass and the rule agrees with ``max_info``; early in a
    test it weighs the whole posterior, not just its mean. One-dimensional θ
    only (``a_optimality`` is its D-dimensional counterpart at the estimate).
    """

    needs_grid_information = True
    max_dims = 1

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray | Bounded:
        return _variance_reduction(state, mask, batch, cache)


def _information_gain(
    state: CatState, batch: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """What one more item adds to the posterior information P at θ̂.

    Returns ``c (S, N)``, the items' Fisher weights at θ̂ (item information is
    c a aᵀ); P⁻¹ ``(S, D, D)``; and ``q (S, N)`` = aᵀ P⁻¹ a. With them, by the
    matrix determinant lemma and Sherman–Morrison,
    det(P + c a aᵀ) = det P · (1 + c q) and
    (P + c a aᵀ)⁻¹ = P⁻¹ − c P⁻¹a aᵀP⁻¹ / (1 + c q).
    """
    p_inv = np.linalg.inv(state.posterior_information(batch if batch.shape[1] else None))
    q = state.bank.model.quadratic_forms(p_inv)
    return state.fisher_weight_at_theta(), p_inv, q


def _d_optimality(state: CatState, batch: IntArray) -> FloatArray:
    """log det(P + I_j(θ̂)) − log det P = log(1 + c_j a_jᵀ P⁻¹ a_j), ``(S, N)``."""
    c, _, q = _information_gain(state, batch)
    return np.log1p(c * q)


@selection_rule("d_optimality")
class DOptimality(SelectionRule):
    """Maximum determinant of the posterior information at the estimate (D-optimality).

    P = Σ⁻¹ (prior precision) + Σ administered c_i(θ̂) a_i a_iᵀ; item j scores
    log det(P + c_j(θ̂) a_j a_jᵀ) − log det P = log(1 + c_j a_jᵀ P⁻¹ a_j): the
    volume of the posterior's confidence ellipsoid it removes. It prefers
    items that measure the directions of θ known least. For D = 1 the score is
    log(1 + I_j / P), increasing in I_j: the same choices as ``max_info``
    (which is this rule for D > 1). In a batch, items already picked join P.
    """

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        return _d_optimality(state, batch)


@selection_rule("a_optimality")
class AOptimality(SelectionRule):
    """Largest drop in the posterior variance at the estimate (A-optimality).

    With P as for :class:`DOptimality`, item j removes
    c_j a_jᵀ P⁻¹ W P⁻¹ a_j / (1 + c_j q) of the variance, q = a_jᵀ P⁻¹ a_j.
    By default W = I: the trace of P⁻¹, every dimension's variance. ``dimension``
    targets one dimension (the others are nuisance: measured only as far as
    that helps the target); ``weights`` targets the composite wᵀθ (its variance
    wᵀP⁻¹w). For D = 1 all three rank items by I_j, like ``max_info``.

    Args:
        dimension: Name (or 0-based index) of the one dimension to measure.
        weights: One weight per dimension for the composite wᵀθ.
        randomesque, content, cost: As for every rule.

    Raises:
        ConfigError: both ``dimension`` and ``weights``, or weights all zero.
    """

    def __init__(
        self,
        *,
        dimension: str | int | None = None,
        weights: Sequence[float] | None = None,
        randomesque: int = 1,
        content: Mapping[str, Any] | None = None,
        cost: str | None = None,
    ) -> None:
        super().__init__(randomesque=randomesque, content=content, cost=cost)
        self.dimension, self.weights = _check_target("a_optimality", dimension, weights)

    def check_bank(self, bank: PreparedBank) -> None:
        super().check_bank(bank)
        _target_vector(self.name, self.dimension, self.weights, bank.bank.dimensions)

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        c, p_inv, q = _information_gain(state, batch)
        target = _target_vector(self.name, self.dimension, self.weights, state.bank.bank.dimensions)
        if target is None:  # W = I: the trace
            m = p_inv @ p_inv
        else:  # W = w wᵀ: the composite wᵀθ (w = e_d for one dimension)
            v = p_inv @ target
            m = v[:, :, None] * v[:, None, :]
        return c * state.bank.model.quadratic_forms(m) / (1.0 + c * q)


def _check_target(
    rule: str, dimension: str | int | None, weights: Sequence[float] | None
) -> tuple[str | int | None, list[float] | None]:
    """Validate a ``dimension``/``weights`` pair of arguments (rules that target part of θ)."""
    if dimension is not None and weights is not None:
        raise ConfigError(
            f"{rule}: give dimension or weights, not both",
            hint="dimension targets one dimension; weights a composite of all",
        )
    if dimension is not None and (
        isinstance(dimension, bool) or not isinstance(dimension, (str, int)) or dimension == ""
    ):
        raise ConfigError(
            f"{rule}: dimension must be a dimension's name or index; got {dimension!r}"
        )
    if weights is None:
        return dimension, None
    if isinstance(weights, (str, Mapping)) or not isinstance(weights, Sequence) or not weights:
        raise ConfigError(f"{rule}: weights must be a list of numbers, one per dimension")
    values = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ConfigError(f"{rule}: weights must be finite numbers; got {list(weights)!r}")
        values.append(float(w))
    if not any(values):
        raise ConfigError(f"{rule}: weights must not all be 0; got {values}")
    return dimension, values


def _target_vector(
    rule: str,
    dimension: str | int | None,
    weights: Sequence[float] | None,
    dimensions: Sequence[str],
) -> FloatArray | None:
    """e_d for ``dimension``, w for ``weights``, None for all dimensions; checked against a bank.

    Raises:
        ConfigError: an unknown dimension or a weight list of the wrong length.
    """
    if weights is not None:
        if len(weights) != len(dimensions):
            raise ConfigError(
                f"{rule}: weights has {len(weights)} entries but the bank has "
                f"{len(dimensions)} dimension(s) ({', '.join(dimensions)})"
            )
        return np.asarray(weights, dtype=float)
    if dimension is None:
        return None
    return np.eye(len(dimensions))[dimension_index(rule, dimension, dimensions)]


def dimension_index(rule: str, dimension: str | int, dimensions: Sequence[str]) -> int:
    """The position of ``dimension`` (a name or a 0-based index) among a bank's ``dimensions``.

    Raises:
        ConfigError: not a dimension of the bank (with a did-you-mean).
    """
    if isinstance(dimension, int):
        if 0 <= dimension < len(dimensions):
            return dimension
        raise ConfigError(
            f"{rule}: dimension index {dimension} is out of range for {len(dimensions)} "
            f"dimension(s) ({', '.join(dimensions)})"
        )
    if dimension not in dimensions:
        raise ConfigError(
            f"{rule}: dimension {dimension!r} is not one of the bank's"
            f"{did_you_mean(dimension, list(dimensions))}",
            hint=f"dimensions: {', '.join(dimensions)}",
        )
    return list(dimensions).index(dimension)


# Gauss–Hermite nodes per axis of the posterior-weighted KL integral
_KL_NODES = 5


def _posterior_nodes(state: CatState) -> tuple[FloatArray, FloatArray]:
    """Quadrature of the posterior: nodes ``(S, M, D)`` and weights ``(S, M)``, M = 5^D.

    Adaptive Gauss–Hermite: the nodes of N(θ̂, Σ̂) (the grid posterior's mean
    and covariance), re-weighted by the exact posterior density at each node
    over the normal one, so the weights are the grid posterior's and a skewed
    posterior early in a test is still honoured.
    """
    z1, w1 = np.polynomial.hermite_e.hermegauss(_KL_NODES)
    d = state.theta.shape[1]
    z = np.stack(np.meshgrid(*([z1] * d), indexing="ij"), axis=-1).reshape(-1, d)  # (M, D)
    log_w = np.log(np.stack(np.meshgrid(*([w1] * d), indexing="ij"), -1).reshape(-1, d)).sum(-1)
    chol = np.linalg.cholesky(state.cov + 1e-12 * np.eye(d))
    nodes = state.theta[:, None, :] + np.einsum("sde,me->smd", chol, z)
    # log posterior (up to a constant) at the nodes: responses + prior
    items, scores = state.administered, state.scores
    valid = items >= 0
    logp = state.bank.model.log_prob_at(
        nodes[:, :, None, :],
        np.where(valid, items, 0)[:, None, :],
        np.where(valid, scores, 0)[:, None, :],
        state.lapse,
    )
    loglik = np.where(valid[:, None, :], logp, 0.0).sum(axis=-1)
    dev = nodes - state.prior_mean[:, None, :]
    log_prior = -0.5 * np.einsum("smd,sde,sme->sm", dev, state.prior_precision, dev)
    log_node = log_w + loglik + log_prior + 0.5 * (z * z).sum(axis=-1)
    weights = np.exp(log_node - log_node.max(axis=1, keepdims=True))
    return nodes, weights / weights.sum(axis=1, keepdims=True)


def _kl_information(state: CatState, mask: BoolArray) -> FloatArray:
    """Σ_m w_m Σ_k P_jk(θ̂) log(P_jk(θ̂) / P_jk(θ_m)) per subject and item, ``(S, N)``.

    Only items eligible for some subject are evaluated, in blocks of subjects.
    """
    model = state.bank.model
    cols = np.flatnonzero(state.eligible.any(axis=0))
    out = np.zeros(mask.shape)
    if cols.size == 0:
        return out
    nodes, weights = _posterior_nodes(state)
    n_nodes = nodes.shape[1]
    rows = max(1, _BLOCK // (n_nodes * cols.size * (model.k_max + 1)))
    for lo in range(0, state.n_subjects, rows):  # blocks of subjects bound the temporaries
        sl = slice(lo, lo + rows)
        p_hat = model.category_probs(state.theta[sl], cols)  # (s, n, K)
        log_hat = np.log(np.maximum(p_hat, 1e-300))
        expected = np.einsum("sm,smnk->snk", weights[sl], model.log_category_probs(nodes[sl], cols))
        out[sl, cols] = (p_hat * (log_hat - expected)).sum(axis=-1)
    return out


@selection_rule("kl")
class KLSelection(SelectionRule):
    """Posterior-weighted Kullback–Leibler information (Chang & Ying; Veldkamp & van der Linden).

    Item j scores ∫ KL(P_j(· | θ̂) ‖ P_j(· | θ)) p(θ | responses) dθ: how well
    its answer would tell the estimate apart from the other abilities the
    posterior still allows. Unlike Fisher information it looks at the whole
    posterior, not only its centre, which matters early in a test and for
    D > 1, where the mass may stretch along a direction. The integral runs
    over 5^D adaptive Gauss–Hermite nodes of the grid posterior. In a batch,
    picks after the first condition on the batch with ``d_optimality``.
    """

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        if batch.shape[1]:
            return _d_optimality(state, batch)
        return _kl_information(state, mask)


@selection_rule("random")
class RandomSelection(SelectionRule):
    """Uniformly random among eligible items (the baseline CAT is compared with).

    Content balancing still applies (random within the most under-represented
    tag value).
    """

    def __init__(self, *, content: Mapping[str, Any] | None = None) -> None:
        super().__init__(content=content)

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        return np.zeros(mask.shape)

    def _pick(
        self, scores: FloatArray, mask: BoolArray, rngs: Sequence[np.random.Generator]
    ) -> IntArray:
        counts = mask.sum(axis=1)
        draws = np.array([_draw(rngs[s], c) if c else -1 for s, c in enumerate(counts)])
        position = np.argmax(np.cumsum(mask, axis=1) > draws[:, None], axis=1)
        return np.where(counts > 0, position, -1)
