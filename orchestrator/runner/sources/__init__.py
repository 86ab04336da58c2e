"""Item sources: what a bank item runs, one registered class per kind.

Two kinds are built in: ``scenario`` (one of our sandboxed scenario families)
and ``inspect_task`` (one sample of an existing Inspect task, e.g.
inspect_evals' AgentDojo, with a declared score map); other packages add
kinds with :func:`item_source` or the ``agentcat.item_sources`` entry-point
group. See :mod:`orchestrator.runner.sources._base` for the
interface and its life cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.bank import BANK_FILENAME, ItemBank
from orchestrator.errors import BankError, PrerequisiteError
from orchestrator.runner.sources._base import (
    Conversation,
    ItemSource,
    Move,
    Player,
    SampleTask,
    ScoreCase,
    ScoreMap,
    Script,
    ScriptedCall,
    SourceContext,
    TaskContext,
    item_source,
    item_sources,
)
from orchestrator.runner.sources.inspect_task import InspectTaskSource
from orchestrator.runner.sources.scenario import ScenarioSource

__all__ = [
    "Conversation",
    "InspectTaskSource",
    "ItemSource",
    "LiveItems",
    "Move",
    "Player",
    "SampleTask",
    "ScenarioSource",
    "ScoreCase",
    "ScoreMap",
    "Script",
    "ScriptedCall",
    "SourceContext",
    "TaskContext",
    "bank_sources",
    "item_source",
    "item_sources",
    "prepare_items",
    "sim_players",
    "sim_scripts",
]


def bank_sources(bank: ItemBank) -> dict[str, ItemSource]:
    """Every item of ``bank`` that names a source, with the source built and validated.

    Raises:
        BankError: an unknown kind (with a did-you-mean) or bad fields, naming
            the bank file and the item.
    """
    where = str(bank.path / BANK_FILENAME) if bank.path else f"bank {bank.name!r}"
    out: dict[str, ItemSource] = {}
    for i, item in enumerate(bank.spec.items):
        if item.source is not None:
            ref = item.source
            at = f"{where}: items[{i}] (id {item.id!r}).source"
            src = item_sources.build(ref.kind, ref.fields, where=at)
            try:
                src.check_categories(item.n_categories)
            except ValueError as exc:
                raise BankError(f"{at}: {exc}") from None
            out[item.id] = src
    return out


def _by_kind(sources: dict[str, ItemSource]) -> dict[type[ItemSource], dict[str, ItemSource]]:
    groups: dict[type[ItemSource], dict[str, ItemSource]] = {}
    for iid, src in sources.items():
        groups.setdefault(type(src), {})[iid] = src
    return groups


@dataclass(frozen=True)
class LiveItems:
    """A bank's runnable items after pre-flight: each one's source and its workers' data."""

    sources: Mapping[str, ItemSource]
    prepared: Mapping[str, dict[str, Any]]
    """Per item id, what its kind's :meth:`~ItemSource.preflight` returned."""


def prepare_items(bank: ItemBank, context: SourceContext) -> LiveItems:
    """Validate every item's source and run each kind's pre-flight over its items.

    Raises:
        BankError: a source is invalid (naming the item).
        PrerequisiteError: no item can run live, or what a kind needs is missing.
    """
    sources = bank_sources(bank)
    if not sources:
        raise PrerequisiteError(
            f"bank {bank.name!r} has no items with a source (a scenario, …), so nothing can "
            "run live",
            hint="use a bank whose items name what runs them (e.g. item_banks/shell-safety); "
            "`agentcat simulate` replays banks calibrated from recorded responses",
        )
    prepared: dict[str, dict[str, Any]] = {}
    for kind, items in _by_kind(sources).items():
        prepared.update(kind.preflight(items, context))
    return LiveItems(sources, prepared)


def sim_scripts(
    bank: ItemBank, sources: dict[str, ItemSource], context: SourceContext
) -> dict[str, Script]:
    """What the simulated agent plays for every item whose kind supports it."""
    scripts: dict[str, Script] = {}
    for kind, items in _by_kind(sources).items():
        scripts.update(kind.sim_scripts(items, bank, context))
    return scripts


def sim_players(
    bank: ItemBank, sources: dict[str, ItemSource], context: SourceContext
) -> list[Player]:
    """Players for the items that fixed scripts cannot play (see :class:`Player`)."""
    players = []
    for kind, items in _by_kind(sources).items():
        player = kind.sim_player(items, bank, context)
        if player is not None:
            players.append(player)
    return players
