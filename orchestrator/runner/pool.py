"""Worker processes that run items, and the runner the session loop talks to.

Inspect allows one ``eval_async`` per process at a time, so concurrency comes
from a pool of worker processes, each running one item at a time
(:func:`orchestrator.runner.inspect_run.worker_entry`). All sessions of an
invocation share the pool; its size (``workers``) bounds concurrent sandboxes.
On Linux the workers are forked from a fork server that imported Inspect and
the sandbox provider once (:mod:`orchestrator.runner.preload`; a worker's
start-up is then mostly its warm-up eval, not seconds of imports); elsewhere they are
spawned. Workers die with the driver (each watches it through a pidfd; a
spawned one also by ``PR_SET_PDEATHSIG``), and a session prunes its own leftover
containers when it resumes, so a killed run leaves nothing behind.
Each worker keeps a spare container for its next item (see
:mod:`orchestrator.runner.sandbox`); it is removed when the worker exits, or by
the next prune once the worker is dead.

The pool hands jobs to workers itself, one per free worker, rather than queueing
them all in the executor: with more sessions than workers, jobs wait here, and
the pool knows which of them a worker will get next. So a job goes out with a
queued job no busy worker is already readying for (``RunJob.next_job``): the
worker's spare container is of that job's sandbox spec, and when the worker is
free that job (or the oldest of its group) is the one it gets. With nothing
queued (one session), the job's own ``next_job`` names the item its session expects
to run next (its CAT's guess, :attr:`RunRequest.next_item`); without that either, the
spare is of the job's own spec. A wrong guess costs a container start, never a
result: the worker checks the real spec.

The pre-flight model check runs in a worker too (:meth:`WorkerPool.check_models`):
a worker imports Inspect and loads its extensions anyway, so the driver process
never does (about 3 s of CPU per run on a small machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import select
import signal
import threading
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.bank import ItemBank
from orchestrator.config import ModelSpec, RunConfig
from orchestrator.errors import PrerequisiteError, RunnerError
from orchestrator.runner.inspect_run import RunJob, check_model, warm_worker, worker_entry
from orchestrator.runner.result import ItemResult, RunRequest
from orchestrator.runner.sources import ItemSource, LiveItems

__all__ = ["InspectRunner", "WorkerPool"]

_PR_SET_PDEATHSIG = 1


def _context() -> multiprocessing.context.BaseContext:
    """Fork the workers from a fork server that imported Inspect once
    (:mod:`orchestrator.runner.preload`) where a worker can watch the driver itself
    (Linux ≥ 5.3: a pidfd); else spawn them (each imports everything itself)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["orchestrator.runner.preload"])
    return context


def _init_worker(
    parent: int | None = None, environ: dict[str, str] | None = None, cwd: str | None = None
) -> None:
    """Die with the driver; take the driver's environment and working directory; keep
    Inspect's display quiet; scrub secrets from its output; warm up before the first item.

    A forked worker's parent is the fork server, so the death signal (``prctl``) only
    covers a spawned one; a worker watches the driver ``parent`` itself
    (:func:`_exit_with`). A driver killed before that leaves a worker that would run
    the jobs already queued, then wait on its pipe forever, with its spare container;
    so such a worker exits at once. A forked worker starts with the environment and
    directory the fork server started with, so it is given the driver's as they are
    when the pool starts, as a spawned worker has them.
    """
    from orchestrator._secrets import install_scrubbed_stdio

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: orphans finish their run and exit
        pass
    if parent is not None:
        _exit_with(parent)
    if environ is not None and environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    if cwd is not None:
        os.chdir(cwd)
    install_scrubbed_stdio()
    os.environ["INSPECT_DISPLAY"] = "none"
    warm_worker()


def _exit_with(parent: int) -> None:
    """Exit this process at once when process ``parent`` ends (now, if it has)."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd: the death signal covers a spawned worker
        if os.getppid() != parent:
            os._exit(1)
        return

    def watch() -> None:
        select.select([pidfd], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name="agentcat-driver-watch", daemon=True).start()


def _started() -> None:
    """A job that only makes the pool start a worker (and warm it up)."""


def _check_model(
    model: str, base_url: str | None, api_key: str | None, args: dict[str, Any], timeout_s: int
) -> tuple[str, str | None] | None:
    """:func:`check_model` in a worker; its failure as (message, hint), or None.

    (A ``PrerequisiteError`` crossing the process boundary would lose its hint.)
    """
    try:
        check_model(model, base_url, api_key, args, timeout_s)
    except PrerequisiteError as exc:
        return exc.message, exc.hint
    return None


def _prune_orphaned_spares() -> None:
    """Remove the spare (and seed) containers of dead workers (their items' own containers
    are removed by their session's prune; a spare belongs to no session)."""
    from orchestrator.runner.containers import prune_orphans

    with contextlib.suppress(Exception):  # best effort: `agentcat sandbox prune` does it too
        prune_orphans()


@dataclass(eq=False)
class _Queued:
    """A job waiting for a free worker."""

    job: RunJob
    group: str
    """``job.sandbox_group()``: which workers' spare containers may serve it."""
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[dict[str, Any]]


class WorkerPool:
    """A pool of ``workers`` spawned processes running one item each at a time."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1; got {workers}")
        self.workers = workers
        self._executor = self._new()
        self._queue: list[_Queued] = []
        self._busy = 0
        self._readying: Counter[str] = Counter()
        """Groups of the spares the busy workers will hold once their job is done."""
        self._idle: list[str] = []
        """Groups of the spares idle workers hold, longest idle first."""

    def _new(self) -> ProcessPoolExecutor:
        """A pool whose workers start (and warm up) now, while the sessions get ready,
        rather than when the first items are already waiting for them."""
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(os.getpid(), dict(os.environ), os.getcwd()),
        )
        for _ in range(self.workers):
            executor.submit(_started)
        return executor

    def check_models(self, models: list[ModelSpec], timeout_s: int) -> None:
        """Make one minimal real request with each model, in the workers (all at once).

        Raises:
            PrerequisiteError: the first model, in order, that failed its check.
            RunnerError: a worker died during the checks.
        """
        checks = [
            self._executor.submit(
                _check_model,
                m.model,
                m.base_url,
                m.resolved_api_key(),
                dict(m.model_args),
                timeout_s,
            )
            for m in models
        ]
        for check in checks:
            try:
                failed = check.result()
            except BrokenProcessPool as exc:
                self._renew(self._executor)
                raise RunnerError(f"worker process died checking the model: {exc}") from None
            if failed is not None:
                for rest in checks:
                    rest.cancel()
                raise PrerequisiteError(failed[0], hint=failed[1])

    async def submit(self, job: RunJob) -> ItemResult:
        loop = asyncio.get_running_loop()
        entry = _Queued(job, job.sandbox_group(), loop, loop.create_future())
        self._queue.append(entry)
        self._dispatch()
        try:
            raw = await entry.done
        except BrokenProcessPool as exc:  # a worker died (OOM, signal): fault, new pool
            if job.sandbox_provider == "agentcat":
                await asyncio.to_thread(_prune_orphaned_spares)
            return ItemResult(
                job.item_id, error_kind="internal", error_message=f"worker process died: {exc}"
            )
        finally:
            if entry in self._queue:  # cancelled before a worker took it
                self._queue.remove(entry)
        return ItemResult(**raw)

    def _dispatch(self) -> None:
        """Hand queued jobs to free workers: to an idle worker whose spare serves one, that
        job; else the oldest job no busy worker readies a spare for, else the oldest."""
        while self._queue and self._busy < self.workers:
            entry = None
            for i, group in enumerate(self._idle):
                entry = next((e for e in self._queue if e.group == group), None)
                if entry is not None:
                    del self._idle[i]
                    break
            if entry is None:
                entry = self._unreadied() or self._queue[0]
                if self._idle:
                    self._idle.pop(0)
            self._queue.remove(entry)
            self._start(entry)

    def _unreadied(self) -> _Queued | None:
        """The oldest queued job that no busy worker readies a spare for (a group's jobs
        beyond the spares of that group being readied)."""
        surplus = Counter(e.group for e in self._queue)
        surplus.subtract(self._readying)
        return next((e for e in self._queue if surplus[e.group] > 0), None)

    def _start(self, entry: _Queued) -> None:
        """Run ``entry`` on the worker just freed, naming the job it likely gets next: a
        queued one, else the one its session expects to submit next (the job's own
        ``next_job``), else none (its spare is of its own spec). The named job goes
        without its API key."""
        queued = self._unreadied()
        following = queued.job if queued is not None else entry.job.next_job
        job, spare = entry.job, entry.group
        if following is not None:
            job = dataclasses.replace(
                job, next_job=dataclasses.replace(following, api_key=None, next_job=None)
            )
            spare = queued.group if queued is not None else following.sandbox_group()
        executor = self._executor
        try:
            future = executor.submit(worker_entry, job)
        except BrokenProcessPool:  # a worker just died: its own job reports it, not this one
            executor = self._renew(executor)
            future = executor.submit(worker_entry, job)
        self._busy += 1
        self._readying[spare] += 1

        def done(f: Future[dict[str, Any]]) -> None:  # in the executor's thread
            try:
                entry.loop.call_soon_threadsafe(self._finished, entry, executor, spare, f)
            except RuntimeError:  # that event loop is closed: nobody waits for the result
                self._busy -= 1
                self._readying[spare] -= 1

        future.add_done_callback(done)

    def _renew(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new pool in place of ``broken`` (once: its other jobs find it replaced)."""
        if broken is self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new()
            self._idle.clear()
        return self._executor

    def _finished(
        self,
        entry: _Queued,
        executor: ProcessPoolExecutor,
        spare: str,
        future: Future[dict[str, Any]],
    ) -> None:
        """A job ended: pass its result on, note the freed worker's spare, hand it the
        next job."""
        self._busy -= 1
        self._readying[spare] -= 1
        exc = None if future.cancelled() else future.exception()
        if isinstance(exc, BrokenProcessPool):
            self._renew(executor)
        else:
            self._idle = [*self._idle, spare][-self.workers :]
        if not entry.done.done():
            if future.cancelled():  # the pool shut down
                entry.done.cancel()
            elif exc is not None:
                entry.done.set_exception(exc)
            else:
                entry.done.set_result(future.result())
        self._dispatch()

    def shutdown(self) -> None:
        for entry in self._queue:
            with contextlib.suppress(RuntimeError):  # its event loop is closed
                entry.loop.call_soon_threadsafe(entry.done.cancel)
        self._queue.clear()
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
            from orchestrator.runner.containers import prune_containers

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
        job = self._job(request, source)
        hint = request.next_item
        if hint is not None and hint in self.items.sources:
            nxt = RunRequest(request.session_id, hint, request.step + 1, 1, request.session_key)
            following = dataclasses.replace(self._job(nxt, self.items.sources[hint]), api_key=None)
            job = dataclasses.replace(job, next_job=following)
        return await self.pool.submit(job)

    def _job(self, request: RunRequest, source: ItemSource) -> RunJob:
        spec = self.bank.item(request.item_id)
        k = spec.n_categories
        cfg, lim, retry = self.config, self.config.limits, self.config.retry
        return RunJob(
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
