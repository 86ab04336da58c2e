"""Worker processes that run items, and the runner the session loop talks to.

Inspect allows one ``eval_async`` per process at a time, so concurrency comes
from a pool of spawned worker processes, each running one item at a time
(:func:`orchestrator.runner.inspect_run.worker_entry`). All sessions of an
invocation share the pool; its size (``workers``) bounds concurrent sandboxes.
Workers die with their parent (``PR_SET_PDEATHSIG``), and a session prunes its
own leftover containers when it resumes, so a killed run leaves nothing behind.
Each worker keeps one spare container for its next item (see
:mod:`orchestrator.runner.sandbox`); it is removed when the worker exits, or by
the next prune once the worker is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from orchestrator.bank import ItemBank
from orchestrator.config import ModelSpec, RunConfig
from orchestrator.errors import RunnerError
from orchestrator.runner.inspect_run import RunJob, warm_worker, worker_entry
from orchestrator.runner.result import ItemResult, RunRequest
from orchestrator.runner.sources import LiveItems

__all__ = ["InspectRunner", "WorkerPool"]

_PR_SET_PDEATHSIG = 1


def _init_worker(parent: int | None = None) -> None:
    """Die with the parent; keep Inspect's display quiet; scrub secrets from its output;
    warm up before the first item.

    A parent killed between spawning this worker and the ``prctl`` below would never
    send the death signal (the worker would run the jobs already queued, then wait on
    its pipe forever, with its spare container); so a worker whose parent is no longer
    ``parent`` exits at once.
    """
    from orchestrator._secrets import install_scrubbed_stdio

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: orphans finish their run and exit
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)
    install_scrubbed_stdio()
    os.environ["INSPECT_DISPLAY"] = "none"
    warm_worker()


def _started() -> None:
    """A job that only makes the pool start a worker (and warm it up)."""


def _prune_orphaned_spares() -> None:
    """Remove the spare (and seed) containers of dead workers (their items' own containers
    are removed by their session's prune; a spare belongs to no session)."""
    from orchestrator.runner.sandbox import prune_orphans

    with contextlib.suppress(Exception):  # best effort: `agentcat sandbox prune` does it too
        prune_orphans()


class WorkerPool:
    """A pool of ``workers`` spawned processes running one item each at a time."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1; got {workers}")
        self.workers = workers
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        """A pool whose workers start (and warm up) now, while the sessions get ready,
        rather than when the first items are already waiting for them."""
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        for _ in range(self.workers):
            executor.submit(_started)
        return executor

    async def submit(self, job: RunJob) -> ItemResult:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self._executor, worker_entry, job)
        except BrokenProcessPool as exc:  # a worker died (OOM, signal): fault, new pool
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new()
            if job.sandbox_provider == "agentcat":
                await asyncio.to_thread(_prune_orphaned_spares)
            return ItemResult(
                job.item_id, error_kind="internal", error_message=f"worker process died: {exc}"
            )
        return ItemResult(**raw)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class InspectRunner:
    """Runs a session's items through the worker pool (implements ``ItemRunner``).

    Source-agnostic: each job carries the item's source (which builds its
    Inspect task and maps its score) and what pre-flight prepared for it.
    """

    def __init__(
        self,
        pool: WorkerPool,
        config: RunConfig,
        model: ModelSpec,
        bank: ItemBank,
        log_dir: Path,
        items: LiveItems,
    ) -> None:
        self.pool = pool
        self.config = config
        self.model = model
        self.bank = bank
        self.log_dir = log_dir
        self.items = items
        self._api_key = model.resolved_api_key()

    @property
    def runnable(self) -> set[str]:
        """Items this runner can run (those with a source); the session skips the rest."""
        return set(self.items.sources)

    async def prepare(self, session_key: str) -> None:
        """Called by the session once it holds its lock: remove this session's leftover
        sandboxes (a killed driver cannot clean up after itself; holding the lock, no
        other process can own one of them)."""
        if self.config.sandbox == "agentcat":
            from orchestrator.runner.sandbox import prune_containers

            await asyncio.to_thread(
                lambda: prune_containers({"agentcat.session.key": session_key}, any_owner=True)
            )

    async def run(self, request: RunRequest) -> ItemResult:
        source = self.items.sources.get(request.item_id)
        if source is None:
            raise RunnerError(
                f"item {request.item_id!r} has no source to run",
                hint="live sessions need a bank whose items name what runs them",
            )
        spec = self.bank.item(request.item_id)
        k = spec.n_categories
        cfg, lim, retry = self.config, self.config.limits, self.config.retry
        job = RunJob(
            session_id=request.session_id,
            session_key=request.session_key,
            item_id=request.item_id,
            step=request.step,
            attempt=request.attempt,
            source=source,
            n_categories=k,
            labels=tuple(spec.labels or self.bank.spec.scale.labels[:k]),
            model=self.model.model,
            log_dir=str(self.log_dir),
            prepared=dict(self.items.prepared.get(request.item_id, {})),
            environments=str(cfg.environments),
            base_url=self.model.base_url,
            api_key=self._api_key,
            model_args=dict(self.model.model_args),
            sandbox_provider=cfg.sandbox,
            message_limit=lim.message_limit,
            token_limit=lim.token_limit,
            time_limit_s=lim.time_limit_s,
            command_timeout_s=lim.command_timeout_s,
            model_max_retries=retry.model_max_retries,
            model_timeout_s=retry.model_timeout_s,
            usd_per_mtok_input=self.model.usd_per_mtok_input,
            usd_per_mtok_output=self.model.usd_per_mtok_output,
        )
        return await self.pool.submit(job)
