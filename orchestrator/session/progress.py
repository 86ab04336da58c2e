"""Progress on stderr: a live line per session on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from orchestrator.session.session import SessionEvent

__all__ = ["ProgressPrinter"]


class ProgressPrinter:
    """Turns :class:`SessionEvent` s into progress output (use as a context manager)."""

    def __init__(self, stream: TextIO | None = None, se_target: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.se_target = se_target
        self._live = None
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._t0 = time.monotonic()

    def __enter__(self) -> ProgressPrinter:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, ev: SessionEvent) -> None:
        theta = "—" if ev.theta is None else f"{ev.theta:+.2f}"
        se = "—" if ev.se is None else f"{ev.se:.2f}"
        target = f" (target {self.se_target:.2f})" if self.se_target else ""
        estimate = f"θ={theta} SE={se}"
        if ev.by_dimension:  # several dimensions: each one's θ ± SE
            estimate = " ".join(f"{n}={t:+.2f}±{e:.2f}" for n, (t, e) in ev.by_dimension.items())
        head = f"{ev.session_id}: {estimate}{target} items={ev.n_items}"
        if ev.kind == "step":
            detail = f"step {ev.step} {ev.item_id} → {ev.score}"
        elif ev.kind in ("error", "skip", "pause", "resume", "stop"):
            detail = f"{ev.kind}: {ev.item_id or ''} {ev.message or ''}".strip()
        else:
            detail = ev.kind
        if self._progress is not None:
            if ev.session_id not in self._tasks:
                self._tasks[ev.session_id] = self._progress.add_task(head, total=None)
            self._progress.update(self._tasks[ev.session_id], description=f"{head}  {detail}")
        else:
            elapsed = time.monotonic() - self._t0
            print(f"[{elapsed:7.1f}s] {head}  {detail}", file=self.stream, flush=True)
