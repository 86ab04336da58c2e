"""Stopping rules: when an adaptive test has measured enough.

One base class enforces the limits every rule shares, in this order: the
bank is exhausted, ``max_items`` reached, the time or token budget spent;
then, once ``min_items`` are in, the rule's own hook decides (SE small
enough, nothing informative left …). Every firing comes with a reason string
for the journal and the report. Rules are registered by name like selection
rules, and ``any_of`` composes them.

Like selection rules, a stopping rule evaluates a :class:`CatState` with S ≥ 1
subjects at once, so the live controller and the replay share the code.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from orchestrator._registry import Recorded, Registry
from orchestrator._validation import check_scalar
from orchestrator.cat.selection import _check_target, _target_vector
from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.errors import ConfigError

__all__ = [
    "AnyOf",
    "BudgetStop",
    "InfoFloorStop",
    "MaxItemsStop",
    "SEStop",
    "StopDecision",
    "StoppingRule",
    "make_stopping",
    "stopping_rule",
    "stopping_rules",
]

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

stopping_rules: Registry[StoppingRule] = Registry("stopping rule", group="agentcat.stopping_rules")


def stopping_rule(name: str):  # type: ignore[no-untyped-def]
    """Class decorator registering a :class:`StoppingRule` under ``name``."""
    return stopping_rules.register(name)


def make_stopping(spec: str | Mapping[str, Any] | StoppingRule | None = None) -> StoppingRule:
    """Build a stopping rule from a name or ``{"rule": name, "args": {...}}`` (default ``se``)."""
    return stopping_rules.create("se" if spec is None else spec)


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop, and why (``reason`` is None when not stopping)."""

    stop: bool
    reason: str | None = None


def _positive(rule: str, name: str, value: object, *, optional: bool = True) -> float | None:
    return check_scalar(  # type: ignore[no-any-return]
        value,
        name,
        float,
        min_val=0,
        include_min=False,
        allow_none=optional,
        where=f"stopping rule {rule!r}",
    )


class StoppingRule(Recorded, ABC):
    """Shared limits plus a hook (:meth:`_fires`) that subclasses override.

    Args:
        min_items: Never stop (except on an exhausted bank or a spent budget)
            before this many items.
        max_items: Stop once this many items are administered (None: no cap).
        max_seconds: Stop once this much expected/measured run time is spent.
        max_tokens: Stop once this many tokens are spent.

    Raises:
        ConfigError: a limit is not a positive number, or ``min_items > max_items``.
    """

    name: ClassVar[str]
    """The registered name (set by :func:`stopping_rule`)."""

    def __init__(
        self,
        *,
        min_items: int = 1,
        max_items: int | None = None,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
    ) -> None:
        rule = getattr(type(self), "name", type(self).__name__)
        where = f"stopping rule {rule!r}"
        self.min_items = check_scalar(min_items, "min_items", int, min_val=0, where=where)
        self.max_items = check_scalar(
            max_items, "max_items", int, min_val=1, allow_none=True, where=where
        )
        if self.max_items is not None and self.min_items > self.max_items:
            raise ConfigError(
                f"stopping rule {rule!r}: min_items={min_items} is greater than "
                f"max_items={max_items}; the test could never satisfy both"
            )
        self.max_seconds = _positive(rule, "max_seconds", max_seconds)
        self.max_tokens = _positive(rule, "max_tokens", max_tokens)

    # -- public ------------------------------------------------------------
    def check_bank(self, bank: PreparedBank) -> None:
        """Reject arguments that do not fit ``bank`` (a dimension it lacks …).

        Raises:
            ConfigError: naming the argument and the bank's dimensions.
        """

    def check(self, state: CatState) -> StopDecision:
        """Decision for a single test (S = 1)."""
        reason = self.decide(state)[0]
        return StopDecision(reason is not None, reason)

    def decide(self, state: CatState) -> list[str | None]:
        """Reason to stop per subject, or None to go on; ``len == S``."""
        reasons, open_ = self._limit_reasons(state)
        if open_.any():
            fires = self._fires(state) & open_
            for s in np.flatnonzero(fires):
                reasons[s] = self._reason(state, int(s))
        return reasons

    # -- hooks ----------------------------------------------------------------
    def _fires(self, state: CatState) -> BoolArray:
        """Where the rule's own criterion says stop, ``(S,)``; limits are checked already."""
        return np.zeros(state.n_subjects, dtype=bool)

    def _reason(self, state: CatState, s: int) -> str:
        raise NotImplementedError  # pragma: no cover - only called where _fires is True

    def _limit_reasons(self, state: CatState) -> tuple[list[str | None], BoolArray]:
        """The shared limits' reason per subject, and where none fired and ``min_items``
        are in (the rule's own criterion may decide there). O(S): no scan of the bank."""
        reasons: list[str | None] = [None] * state.n_subjects
        n = state.n_items
        exhausted = state.eligible_counts() == 0
        # the limits that are set (None: not set), each a flag per subject
        maxed = None if self.max_items is None else n >= self.max_items
        timed = None if self.max_seconds is None else state.spent_seconds >= self.max_seconds
        tokened = None if self.max_tokens is None else state.spent_tokens >= self.max_tokens
        stop = exhausted
        for flags in (maxed, timed, tokened):
            if flags is not None:
                stop = stop | flags
        if not stop.any():
            return reasons, n >= self.min_items
        open_ = ~stop & (n >= self.min_items)
        for s in np.flatnonzero(stop):  # only rows that stop
            if exhausted[s]:
                reasons[s] = f"no eligible item left after {n[s]} items"
            elif maxed is not None and maxed[s]:
                reasons[s] = f"max_items={self.max_items} reached"
            elif timed is not None and timed[s]:
                reasons[s] = (
                    f"time budget spent: {state.spent_seconds[s]:.1f} s of "
                    f"max_seconds={self.max_seconds:g}"
                )
            else:
                reasons[s] = (
                    f"token budget spent: {state.spent_tokens[s]:.0f} of "
                    f"max_tokens={self.max_tokens:g}"
                )
        return reasons, open_


@stopping_rule("se")
class SEStop(StoppingRule):
    """Stop once the posterior SD (the SE) is at most ``se`` (default 0.3).

    For θ with D > 1 dimensions, every dimension's SE must be at most ``se``
    unless ``dimension`` names the one that counts, or ``weights`` a composite
    wᵀθ whose SE is √(wᵀ Σ w) (Σ the posterior covariance).

    Args:
        se: The SE target.
        dimension: Name (or 0-based index) of the one dimension whose SE counts.
        weights: One weight per dimension: the SE of the composite wᵀθ counts.
    """

    def __init__(
        self,
        se: float = 0.3,
        *,
        dimension: str | int | None = None,
        weights: Sequence[float] | None = None,
        min_items: int = 1,
        max_items: int | None = None,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
    ) -> None:
        super().__init__(
            min_items=min_items, max_items=max_items, max_seconds=max_seconds, max_tokens=max_tokens
        )
        self.se = _positive("se", "se", se, optional=False)
        self.dimension, self.weights = _check_target("stopping rule 'se'", dimension, weights)

    def check_bank(self, bank: PreparedBank) -> None:
        _target_vector("stopping rule 'se'", self.dimension, self.weights, bank.bank.dimensions)

    def _watched(self, state: CatState) -> tuple[FloatArray, str]:
        """The SE that counts ``(S,)`` and its name: the largest, a dimension's, a composite's."""
        dims = state.bank.bank.dimensions
        target = _target_vector("stopping rule 'se'", self.dimension, self.weights, dims)
        if target is None:
            if len(dims) == 1:
                return state.se[:, 0], "SE"
            return state.se.max(axis=1), "largest SE"
        if self.weights is None:
            d = int(np.argmax(target))
            return state.se[:, d], f"SE of {dims[d]}"
        return np.sqrt(np.einsum("d,sde,e->s", target, state.cov, target)), "composite SE"

    def _fires(self, state: CatState) -> BoolArray:
        return self._watched(state)[0] <= self.se  # type: ignore[operator]

    def _reason(self, state: CatState, s: int) -> str:
        se, what = self._watched(state)
        return f"{what} {se[s]:.3f} ≤ target {self.se:g}"


@stopping_rule("max_items")
class MaxItemsStop(StoppingRule):
    """A fixed-length test: stop after ``max_items`` items (or an exhausted bank)."""

    def __init__(
        self,
        max_items: int,
        *,
        min_items: int = 1,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
    ) -> None:
        super().__init__(
            min_items=min_items, max_items=max_items, max_seconds=max_seconds, max_tokens=max_tokens
        )


@stopping_rule("budget")
class BudgetStop(StoppingRule):
    """Stop once a time (``max_seconds``) or token (``max_tokens``) budget is spent."""

    def __init__(
        self,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
        *,
        min_items: int = 1,
        max_items: int | None = None,
    ) -> None:
        super().__init__(
            min_items=min_items, max_items=max_items, max_seconds=max_seconds, max_tokens=max_tokens
        )
        if max_seconds is None and max_tokens is None:
            raise ConfigError("stopping rule 'budget' needs max_seconds or max_tokens (or both)")


@stopping_rule("info_floor")
class InfoFloorStop(StoppingRule):
    """Stop when no eligible item adds at least ``delta`` information at the EAP.

    Past that point more items cost runs without measurably shrinking the SE
    (an item adding δ to a test information J moves the SE by about δ/(2J^1.5)).
    For D > 1 an item's information is the trace of its matrix, c(θ̂)‖a‖².
    """

    def __init__(
        self,
        delta: float = 0.05,
        *,
        min_items: int = 1,
        max_items: int | None = None,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
    ) -> None:
        super().__init__(
            min_items=min_items, max_items=max_items, max_seconds=max_seconds, max_tokens=max_tokens
        )
        self.delta = _positive("info_floor", "delta", delta, optional=False)

    def _best(self, state: CatState) -> np.ndarray:
        info = np.where(state.eligible, state.information_at_theta(), -np.inf)
        return info.max(axis=1)

    def _fires(self, state: CatState) -> BoolArray:
        return self._best(state) < self.delta  # type: ignore[operator]

    def _reason(self, state: CatState, s: int) -> str:
        best = float(self._best(state)[s])
        return (
            f"no eligible item adds ≥ {self.delta:g} information at θ = "
            f"{_format_theta(state.theta[s])} (best {best:.3g})"
        )


@stopping_rule("any_of")
class AnyOf(StoppingRule):
    """Stop when any of ``rules`` says so (its reason is reported), after ``min_items``.

    Args:
        rules: Stopping rules as names, specs or objects; the first that fires wins.
    """

    def __init__(
        self,
        rules: Sequence[str | Mapping[str, Any] | StoppingRule],
        *,
        min_items: int = 1,
        max_items: int | None = None,
        max_seconds: float | None = None,
        max_tokens: float | None = None,
    ) -> None:
        super().__init__(
            min_items=min_items, max_items=max_items, max_seconds=max_seconds, max_tokens=max_tokens
        )
        if isinstance(rules, (str, Mapping)) or not rules:
            raise ConfigError(
                f"stopping rule 'any_of': rules must be a non-empty list of rules; got {rules!r}"
            )
        self.rules = [make_stopping(r) for r in rules]

    def _normalise_args(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**args, "rules": [r.spec() for r in self.rules]}

    def check_bank(self, bank: PreparedBank) -> None:
        for rule in self.rules:
            rule.check_bank(bank)

    def decide(self, state: CatState) -> list[str | None]:
        reasons, open_ = self._limit_reasons(state)
        if open_.any():
            for rule in self.rules:
                for s, why in enumerate(rule.decide(state)):
                    if open_[s] and reasons[s] is None and why is not None:
                        reasons[s] = why
        return reasons


def _format_theta(theta: FloatArray) -> str:
    """θ as a number (D = 1) or a tuple of numbers."""
    if theta.shape[0] == 1:
        return f"{theta[0]:.2f}"
    return "(" + ", ".join(f"{t:.2f}" for t in theta) + ")"
