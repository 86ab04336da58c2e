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

Registered criteria: ``max_info`` (default; Fisher information at the EAP),
``variance_reduction`` (posterior-averaged variance reduction) and
``random``. ``select(state, k)`` fills a batch of k items for parallel runs
greedily, conditioning each pick on the items already in the batch (see
:class:`VarianceReduction`), so a batch is informative together rather
than k near-copies of one choice.

Every rule works on a :class:`~orchestrator.cat.state.CatState` with S ≥ 1
subjects: the live controller passes S = 1, the replay simulation S = all
subjects, so both run the same code.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from orchestrator._random import RandomLike, as_generator
from orchestrator._registry import Recorded, Registry
from orchestrator._validation import check_scalar
from orchestrator.cat.state import _BLOCK, CatState, PreparedBank
from orchestrator.errors import ConfigError, did_you_mean

__all__ = [
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
    """

    name: ClassVar[str]
    """The registered name (set by :func:`selection_rule`)."""
    needs_grid_information: ClassVar[bool] = False
    """Reads the administered items' information on the posterior grid even for k = 1
    (the replay then keeps it up to date; live it is derived when asked)."""

    def __init__(
        self,
        *,
        randomesque: int = 1,
        content: Mapping[str, Any] | None = None,
        cost: str | None = None,
    ) -> None:
        rule = getattr(type(self), "name", type(self).__name__)
        self.randomesque = _check_int(rule, "randomesque", randomesque, 1)
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
            ConfigError: naming the tag or value and the bank's actual values.
        """
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
        k = _check_int(self.name, "k", k, 1)
        rngs = [as_generator(rng)]
        picked = [int(i) for i in batch]
        mask = state.eligible.copy()
        mask[0, picked] = False
        out: list[int] = []
        cache: dict[str, Any] = {}
        for _ in range(k):
            idx = int(
                self._pick_one(state, mask, np.array([picked], dtype=np.int64), rngs, cache)[0]
            )
            if idx < 0:
                break
            out.append(idx)
            picked.append(idx)
            mask[0, idx] = False
        return out

    def select_each(self, state: CatState, rngs: Sequence[np.random.Generator]) -> IntArray:
        """One item per subject (the replay's lockstep step); −1 where none is eligible."""
        empty = np.empty((state.n_subjects, 0), dtype=np.int64)
        return self._pick_one(state, state.eligible, empty, rngs, {})

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
        if self.cost is not None:
            scores = scores / state.bank.cost(self.cost)
        return self._pick(scores, mask, rngs)

    @abstractmethod
    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        """Score per subject and item, ``(S, N)``; higher is better. Only ``mask`` items matter."""

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
) -> FloatArray:
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
    w = state.weights()
    keep = (w > 1e-9 * w.max(axis=1, keepdims=True)).any(axis=0)
    points = state.points[:, keep]
    w = w[:, keep]
    j_prec = 1.0 / state.prior_sd**2 + state.administered_information()[:, keep]
    for s in range(s_count):
        picked = batch[s][batch[s] >= 0]
        if picked.size:
            j_prec[s] += bank.information(points[s], picked).sum(axis=-1)
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
    ) -> FloatArray:
        if batch.shape[1] == 0:
            return state.information_at_theta()
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
    test it weighs the whole posterior, not just its mean.
    """

    needs_grid_information = True

    def _criterion(
        self, state: CatState, mask: BoolArray, batch: IntArray, cache: dict[str, Any]
    ) -> FloatArray:
        return _variance_reduction(state, mask, batch, cache)


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
