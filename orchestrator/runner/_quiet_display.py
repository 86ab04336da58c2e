"""An Inspect display that shows nothing and costs nothing, for worker processes.

A worker's output goes nowhere (display ``none``), yet Inspect's default
display still builds its task screen and renders its results table for every
eval. This one keeps the display's contract (progress, task, task screen) and
does no work; the eval log, not the display, is what agentcat reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from inspect_ai._display.core.display import TaskScreen

__all__ = ["QuietDisplay"]

TR = TypeVar("TR")


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def complete(self) -> None:
        pass


class _NoTaskDisplay:
    @contextlib.contextmanager
    def progress(self) -> Iterator[_NoProgress]:
        yield _NoProgress()

    def sample_complete(self, complete: int, total: int) -> None:
        pass

    def update_metrics(self, scores: list[Any]) -> None:
        pass

    def complete(self, result: Any) -> None:
        pass


class QuietDisplay:
    """Inspect's ``Display`` protocol, drawing nothing."""

    def print(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[_NoProgress]:
        yield _NoProgress()

    def run_task_app(self, main: Callable[[], Coroutine[None, None, TR]]) -> TR:
        from inspect_ai._util._async import run_main

        return run_main(main)

    @contextlib.contextmanager
    def suspend_task_app(self) -> Iterator[None]:
        yield

    @contextlib.asynccontextmanager
    async def task_screen(self, tasks: list[Any], parallel: bool) -> AsyncIterator[TaskScreen]:
        yield TaskScreen()

    @contextlib.contextmanager
    def task(self, profile: Any) -> Iterator[_NoTaskDisplay]:
        yield _NoTaskDisplay()

    def display_counter(self, caption: str, value: str) -> None:
        pass

    def update_task_count(self, n: int) -> None:
        pass
