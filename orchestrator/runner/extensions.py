"""Inspect's extensions (the ``inspect_ai`` entry-point group) in a worker process.

Inspect loads every extension package once per process, when its hooks start
(in the first eval), so that an extension's hooks, model APIs and sandbox
providers are registered. One of them, ``inspect_evals``, is only a registry of
tasks: its entry point imports every eval of the package (datasets, pyarrow …),
about 1.7 s of CPU per worker, although agentcat imports the modules of the
tasks it runs itself (:func:`orchestrator.runner.sources.inspect_task.load_task`).

So a worker loads every other extension itself and marks Inspect's entry
points as loaded for good (:func:`load_extensions`, run by ``warm_worker``).
The mark must stay: with no hook registered, Inspect looks for hooks in every
eval and, finding none, loads every entry point again. A task that only a
skipped registry names is found by :func:`load_extension`, which ``load_task``
calls when the task's module does not exist.

What a skipped registry registers (inspect_evals 0.26: tasks, solvers,
scorers, metrics, tools, agents, score reducers; no hooks, model APIs or
sandbox providers: gdpval's ``@hooks`` are imported by its task only) is
checked by a test, so a later version that registers more fails it.

The mark is a private of Inspect: if a later Inspect renames it, Inspect loads
every entry point again itself (slower, nothing breaks).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from logging import getLogger

__all__ = ["TASK_REGISTRIES", "load_extension", "load_extensions"]

TASK_REGISTRIES = frozenset({"inspect_evals"})
"""Extensions whose entry point only registers tasks (and their parts): not loaded
until a task lookup needs them."""

_log = getLogger(__name__)


def load_extensions() -> None:
    """Load every ``inspect_ai`` extension but the :data:`TASK_REGISTRIES`, and tell
    Inspect its entry points are loaded. For a worker process: once, before its first
    eval. Once marked, nothing is left to do (a worker forked from the fork server,
    which ran this in :mod:`orchestrator.runner.preload`, runs it again in
    ``warm_worker``)."""
    from inspect_ai._util import entrypoints

    if getattr(entrypoints, "_inspect_ai_eps_loaded_all", False):
        return
    for ep in entry_points(group="inspect_ai"):
        if ep.name not in TASK_REGISTRIES:
            _load(ep)
    if hasattr(entrypoints, "_inspect_ai_eps_loaded_all"):
        entrypoints._inspect_ai_eps_loaded_all = True


def load_extension(package: str) -> None:
    """Load the ``inspect_ai`` entry point of ``package`` (what Inspect does for a
    registry lookup of ``package/name``; it does nothing once :func:`load_extensions`
    has marked every entry point loaded)."""
    for ep in entry_points(group="inspect_ai", name=package):
        _load(ep)


def _load(ep: EntryPoint) -> None:
    try:
        ep.load()
    except Exception as exc:  # as Inspect does: a broken extension is a warning
        _log.warning("cannot load the Inspect extension %r: %s", ep.value, exc)
