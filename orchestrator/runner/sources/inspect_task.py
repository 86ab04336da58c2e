"""``inspect_task`` items: one sample of an existing Inspect task, graded by the task's own scorer.

A bank item names the task (a registry name such as ``inspect_evals/agentdojo``,
or ``path/to/file.py@task_name``), the arguments of the task function, the
sample, and a :class:`~orchestrator.runner.sources.ScoreMap` from the
scorer's ``Score.value`` to the item's category::

    "source": {
      "kind": "inspect_task",
      "task": "inspect_evals/agentdojo",
      "task_args": {"workspace": "banking", "user_task_ids": [0], "injection_task_ids": [3]},
      "sample": "banking-u0-i3",
      "score_map": {"cases": [
        {"value": {"utility": "I", "security": "C"}, "category": 0}, ...]}
    }

The task keeps its solver, tools and scorer; agentcat runs the sample against
the model under test with the run's limits, retries and logs, and maps its
score. Pre-flight builds every distinct task once and checks that it loads,
that the item's sample is in its dataset and that the sample needs no
sandbox agentcat cannot give (Inspect's compose-based ``docker`` needs
Docker compose v2). The AgentDojo items also have a simulated-agent player
(:mod:`orchestrator.runner.sources.agentdojo`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, StrictInt, StrictStr

from orchestrator.errors import BankError, PrerequisiteError, did_you_mean
from orchestrator.runner.sources._base import (
    ItemSource,
    Player,
    SampleTask,
    ScoreMap,
    SourceContext,
    TaskContext,
    item_source,
)

if TYPE_CHECKING:
    from orchestrator.bank import ItemBank

__all__ = ["InspectTaskSource", "load_task"]

_EXTRAS = {"inspect_evals": "pip install 'agentcat[agentdojo]' (or inspect-evals[<eval>])"}
"""How to install the package a task reference names, when it is not installed."""


def load_task(task: str, task_args: Mapping[str, Any]) -> Any:
    """Build the Inspect task ``task`` with ``task_args`` (an ``inspect_ai.Task``).

    For a registry name ``package/name`` the module ``package.name`` is imported
    first when it exists: Inspect then finds the task without importing every
    task of the package (inspect_evals' registry imports them all: seconds).
    Else the package's ``inspect_ai`` entry point (its registry) is loaded.

    Raises:
        PrerequisiteError: the task's package is not installed.
        BankError: Inspect finds no such task, or the task function rejects the arguments.
    """
    from inspect_ai._eval.loader import load_tasks

    package, _, name = task.partition("/")
    if name and "@" not in task and not task.endswith(".py"):
        try:
            importlib.import_module(package)
        except ImportError:
            raise PrerequisiteError(
                f"Inspect task {task!r} needs the Python package {package!r}, not installed",
                hint=_EXTRAS.get(package, f"pip install {package}"),
            ) from None
        try:
            importlib.import_module(f"{package}.{name}")
        except ImportError:  # the package's registry names it (not loaded in a worker)
            from orchestrator.runner.extensions import load_extension

            load_extension(package)
    try:
        tasks = load_tasks([task], dict(task_args))
    except Exception as exc:
        raise BankError(
            f"Inspect task {task!r} with task_args {json.dumps(task_args)} cannot be built: "
            f"{type(exc).__name__}: {exc}",
            hint="check the task name (inspect eval's form: package/task or file.py@task) "
            "and its arguments",
        ) from None
    if not tasks:
        from inspect_ai._util.registry import registry_find, registry_info

        known = [registry_info(t).name for t in registry_find(lambda i: i.type == "task")]
        raise BankError(
            f"Inspect finds no task {task!r}{did_you_mean(task, known)}",
            hint="a registry name (package/task, e.g. inspect_evals/agentdojo) or file.py@task",
        )
    if len(tasks) != 1:
        raise BankError(f"Inspect task reference {task!r} names {len(tasks)} tasks, not one")
    return tasks[0]


@item_source("inspect_task")
class InspectTaskSource(ItemSource):
    """One sample of an Inspect task; the task's scorer grades it, ``score_map`` places it."""

    task: str = Field(min_length=1)
    """Inspect task reference: ``package/task`` (registry) or ``file.py@task``."""
    task_args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of the task function (as ``inspect eval -T``)."""
    sample: StrictStr | StrictInt
    """Id of the sample in the task's dataset (built with ``task_args``)."""
    score_map: ScoreMap
    """The scorer's ``Score.value`` → the item's category."""

    def group(self) -> str:
        return self.task

    def _key(self) -> tuple[str, str]:
        return self.task, json.dumps(self.task_args, sort_keys=True)

    @classmethod
    def preflight(
        cls, items: Mapping[str, InspectTaskSource], context: SourceContext
    ) -> dict[str, dict[str, Any]]:
        """Build each distinct task once; every item's sample must be in it, sandbox-free."""
        samples: dict[tuple[str, str], dict[Any, Any]] = {}
        for iid, src in items.items():
            key = src._key()
            if key not in samples:
                try:
                    task = load_task(src.task, src.task_args)
                except (BankError, PrerequisiteError) as exc:
                    raise type(exc)(f"item {iid!r}: {exc.message}", hint=exc.hint) from None
                samples[key] = {s.id: s.sandbox or task.sandbox for s in task.dataset}
            known = samples[key]
            if src.sample not in known:
                raise BankError(
                    f"item {iid!r}: task {src.task!r} with task_args "
                    f"{json.dumps(src.task_args)} has no sample {src.sample!r}"
                    f"{did_you_mean(str(src.sample), [str(k) for k in known])}",
                    hint=f"its samples: {', '.join(map(str, list(known)[:8]))}"
                    + (" …" if len(known) > 8 else ""),
                )
            if known[src.sample] is not None:
                raise PrerequisiteError(
                    f"item {iid!r}: sample {src.sample!r} of {src.task!r} needs a sandbox "
                    f"({known[src.sample]!r}); inspect_task items run sandbox-free",
                    hint="Inspect's compose-based sandboxes need Docker compose v2; leave such "
                    "samples out of the bank (AgentDojo: with_sandbox_tasks='no')",
                )
        return {iid: {} for iid in items}

    def sample_task(self, context: TaskContext) -> SampleTask:
        return SampleTask(load_task(self.task, self.task_args), sample_id=self.sample)

    def category(self, value: Any) -> int:
        return self.score_map.category(value)

    def check_categories(self, n_categories: int) -> None:
        """The score map must reach every category 0..K-1 and none beyond."""
        cats = self.score_map.categories()
        beyond = sorted(c for c in cats if c >= n_categories)
        unreached = sorted(set(range(n_categories)) - cats)
        if beyond:
            raise ValueError(
                f"score_map gives categories {beyond} but the item has K = {n_categories}"
            )
        if unreached:
            raise ValueError(
                f"score_map never gives categories {unreached} of the item's 0..{n_categories - 1}"
            )

    @classmethod
    def sim_player(
        cls, items: Mapping[str, InspectTaskSource], bank: ItemBank, context: SourceContext
    ) -> Player | None:
        """AgentDojo's items have a player (ground-truth tool calls); other tasks none."""
        from orchestrator.runner.sources.agentdojo import TASK, load_player

        mine = {str(src.sample): iid for iid, src in items.items() if src.task == TASK}
        return load_player(mine) if mine else None
