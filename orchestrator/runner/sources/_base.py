"""What a bank item runs: the item-source interface every kind implements.

A bank item names its source as ``{"kind": NAME, ...that kind's fields}``
(:class:`orchestrator.bank.SourceRef`). A kind is one :class:`ItemSource`
subclass, a pydantic model of those fields, registered under ``NAME`` with
:func:`item_source`. The runner, the worker pool, the pre-flight checks, the
sweep and the simulated agent talk to items only through this interface, so a
new kind of item (an existing Inspect task's samples, say) is one registered
class — no second runner, no second session loop.

Its life, in order:

1. **parent, before step 1** — :meth:`ItemSource.preflight` (a classmethod over
   every item of the kind in the bank): check what running them needs (images,
   importable packages, the task and its sample ids) and return, per item, the
   plain data a worker needs for it (a scenario's image tag);
2. **worker process** — the :class:`ItemSource` object travels pickled inside
   the ``RunJob``; :meth:`ItemSource.sample_task` builds an Inspect task and
   names its one sample; the runner evaluates it (limits, retries, logs and
   fault classes are the runner's);
3. **worker process** — :meth:`ItemSource.category` turns the sample's
   ``Score.value`` into the item's ordinal category. A value it cannot place
   raises :class:`~orchestrator.errors.ScoreMappingError`: the run is a
   ``scorer`` fault, never a category (fail closed);
4. **simulated agent** — :meth:`ItemSource.sim_scripts` says how to recognise
   each item in a conversation and what to do for each category; a kind whose
   items cannot be told apart by their prompt alone (AgentDojo's benign and
   injected runs share one) gives a :class:`Player` instead
   (:meth:`ItemSource.sim_player`), which reads the whole conversation.

Only pydantic and the registry are imported here; a kind imports Inspect,
Docker or its task package inside the methods that need them.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator._registry import Registry
from orchestrator.errors import BankError, ScoreMappingError

if TYPE_CHECKING:
    from orchestrator.bank import ItemBank

__all__ = [
    "Conversation",
    "ItemSource",
    "Move",
    "Player",
    "SampleTask",
    "ScoreCase",
    "ScoreMap",
    "Script",
    "ScriptedCall",
    "SourceContext",
    "TaskContext",
    "item_source",
    "item_sources",
]

S = TypeVar("S", bound="ItemSource")


@dataclass(frozen=True)
class SourceContext:
    """What the parent process knows when it prepares items (pre-flight, simulated agent)."""

    environments: Path = Path("environments")
    """Folder holding the scenario families."""
    sandbox: str = "agentcat"
    """Sandbox provider of the run: ``agentcat`` (ours), ``docker`` or ``k8s`` (Inspect's)."""


@dataclass(frozen=True)
class TaskContext:
    """What a worker hands :meth:`ItemSource.sample_task` (picklable: it is part of a job)."""

    item_id: str
    prepared: Mapping[str, Any] = field(default_factory=dict)
    """What :meth:`ItemSource.preflight` returned for this item."""
    environments: str = "environments"
    sandbox: str = "agentcat"
    command_timeout_s: int = 60
    """Timeout of one shell command, for kinds that offer the agent a shell."""


@dataclass(frozen=True)
class SampleTask:
    """One sample to evaluate: an Inspect ``Task`` and, when its dataset holds more, which one."""

    task: Any
    """An ``inspect_ai.Task``."""
    sample_id: str | int | None = None
    """The sample to run (None: the task's dataset holds exactly one sample)."""


class ScriptedCall(NamedTuple):
    """One tool call the simulated agent makes."""

    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Script:
    """What the simulated agent needs of one item."""

    item_id: str
    prompt: str
    """The item's first user message (the agent recognises the item by it)."""
    solutions: Mapping[int, tuple[Sequence[ScriptedCall], str]]
    """category → (tool calls, one per turn; final message)."""


@dataclass(frozen=True)
class Conversation:
    """What a :class:`Player` reads of one chat-completions request."""

    first_user: str
    """The first user message (the item's prompt), stripped."""
    tool_outputs: Sequence[str]
    """The text of every tool result so far, in order."""
    n_calls: int
    """Tool calls the agent has made so far."""
    tools: Sequence[str]
    """Names of the tools offered."""


@dataclass(frozen=True)
class Move:
    """A player's next message — one tool call, or a final answer — and what it knows so far."""

    item: str | None
    """The item being played (None while the player cannot tell yet)."""
    category: int | None
    """The category drawn for it (None until drawn)."""
    call: ScriptedCall | None = None
    answer: str | None = None


class Player(Protocol):
    """Plays a kind's items for the simulated agent, from the whole conversation."""

    items: Collection[str]
    """The item ids it plays."""

    def step(self, conv: Conversation, draw: Callable[[str], int]) -> Move | None:
        """The next move, or None when ``conv`` is none of this player's items.

        ``draw(item_id)`` is the category of an item at the simulated agent's θ.
        """
        ...


class ItemSource(BaseModel, abc.ABC):
    """Base of item-source kinds: a frozen pydantic model of the kind's bank fields.

    Subclasses are registered with :func:`item_source` and implement
    :meth:`sample_task` and :meth:`category`; :meth:`preflight`,
    :meth:`sim_scripts` and :meth:`group` have defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    """The registered name (the ``kind`` in bank.json)."""

    def to_ref(self) -> dict[str, Any]:
        """The bank form ``{"kind": NAME, ...fields}``."""
        return {"kind": self.kind, **self.model_dump(mode="json", exclude_none=True)}

    def group(self) -> str:
        """What reports group this item's results under when it has no ``family`` tag."""
        return self.kind

    @classmethod
    def preflight(
        cls: type[S], items: Mapping[str, S], context: SourceContext
    ) -> dict[str, dict[str, Any]]:
        """Check, before step 1, what running ``items`` (id → source) needs.

        Returns:
            Per item id, plain picklable data for its workers (``TaskContext.prepared``).

        Raises:
            PrerequisiteError: something outside agentcat is missing, with the fix.
        """
        return {iid: {} for iid in items}

    @abc.abstractmethod
    def sample_task(self, context: TaskContext) -> SampleTask:
        """The Inspect task (and sample) that runs this item once (called in a worker)."""

    def check_categories(self, n_categories: int) -> None:
        """Check, when the bank is read, that this source fits an item of K categories.

        Raises:
            ValueError: it cannot give some category 0..K-1, or gives more (default: fits).
        """

    @abc.abstractmethod
    def category(self, value: Any) -> int:
        """The item's category for the sample's ``Score.value``.

        Raises:
            ScoreMappingError: the value has no category (the run becomes a ``scorer`` fault).
        """

    @classmethod
    def sim_scripts(
        cls: type[S], items: Mapping[str, S], bank: ItemBank, context: SourceContext
    ) -> dict[str, Script]:
        """What the simulated agent plays for each of ``items`` (default: none)."""
        return {}

    @classmethod
    def sim_player(
        cls: type[S], items: Mapping[str, S], bank: ItemBank, context: SourceContext
    ) -> Player | None:
        """A player for those of ``items`` that fixed scripts cannot play (default: none)."""
        return None


item_sources: Registry[ItemSource] = Registry(
    "item source", key="kind", attr="kind", group="agentcat.item_sources", error=BankError
)
"""Every item-source kind, by name; plugins register through ``agentcat.item_sources``."""


def item_source(name: str):  # type: ignore[no-untyped-def]
    """Class decorator registering an :class:`ItemSource` kind under ``name``."""
    return item_sources.register(name)


# --------------------------------------------------------------------------- score maps
ScalarValue = str | int | float | bool
ScoreValue = ScalarValue | dict[str, ScalarValue | None]


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True`` is not ``1`` here)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class ScoreCase(BaseModel):
    """One row of a :class:`ScoreMap`: a score value and the category it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: ScoreValue
    """A ``Score.value`` exactly as the task's scorer gives it (a scalar or a flat dict)."""
    category: int = Field(ge=0)


class ScoreMap(BaseModel):
    """A declared table from an Inspect task's score values to an item's categories.

    Exact matches only (booleans never match numbers): a value that is not in
    the table raises :class:`~orchestrator.errors.ScoreMappingError`, so a
    scorer that changes its output cannot silently move an item's category.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: list[ScoreCase] = Field(min_length=1)
    values: list[ScoreValue] | None = None
    """Every value the scorer can give, when some have no case yet (e.g. a partial-credit
    ``"P"``): each must then get one. Dict values need not be listed one by one: every
    combination of the field values the cases name must have a case anyway."""

    @model_validator(mode="after")
    def _distinct_and_complete(self) -> ScoreMap:
        for i, case in enumerate(self.cases):
            for earlier in self.cases[:i]:
                if _same(earlier.value, case.value):
                    raise ValueError(f"score value {case.value!r} is listed twice")
        for value in self._possible():
            if not any(_same(value, c.value) for c in self.cases):
                raise ValueError(f"no case maps the possible score {value!r}")
        return self

    def _possible(self) -> list[Any]:
        """The declared values, and every combination of the dict fields the cases name."""
        possible: list[Any] = list(self.values or [])
        dicts = [c.value for c in self.cases if isinstance(c.value, dict)]
        if dicts:
            fields = list(dicts[0])
            for d in dicts:
                if set(d) != set(fields):
                    raise ValueError(
                        f"score cases give different fields ({sorted(fields)} and "
                        f"{sorted(d)}): every dict case must name the same fields"
                    )
            seen: dict[str, list[Any]] = {f: [] for f in fields}
            for d in dicts:
                for f in fields:
                    if not any(_same(d[f], v) for v in seen[f]):
                        seen[f].append(d[f])
            possible += [
                dict(zip(fields, combo, strict=True))
                for combo in itertools.product(*(seen[f] for f in fields))
            ]
        return possible

    def category(self, value: Any) -> int:
        """The category of ``value``.

        Raises:
            ScoreMappingError: no case matches.
        """
        for case in self.cases:
            if _same(case.value, value):
                return case.category
        raise ScoreMappingError(
            f"score {value!r} is not in the item's score map "
            f"(it knows {', '.join(repr(c.value) for c in self.cases)})"
        )

    def categories(self) -> set[int]:
        """Every category some case maps to."""
        return {c.category for c in self.cases}
