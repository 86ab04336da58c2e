"""Run one bank item as an Inspect evaluation, and classify what came back.

Inspect allows one ``eval_async`` per process at a time, so this module is what
a worker process executes (see :mod:`orchestrator.runner.pool`): one item, one
``eval_async`` of one sample, in the process's own event loop.

The item's source (:mod:`orchestrator.runner.sources`) builds the task and names
the sample; this module applies the run's limits, model, retries and logging,
and asks the source to turn the sample's ``Score.value`` into a category.

Classification (never a score for a fault): the endpoint or the set-up being
wrong (key rejected, unknown model, connection refused, a missing path or
image) → ``setup``; a model API failure after the bounded retries (each
attempt bounded by ``model_timeout_s``) → ``model_api``; our sandbox/Docker
failing → ``sandbox``; the run's wall-clock limit → ``timeout``; cancellation
→ ``cancelled``; an error inside grading, or a score the source cannot place
on the item's scale → ``scorer``; anything else → ``internal``. Hitting the
message or token limit is not a fault: the agent ran out of budget and the
run is scored as it stands (see :mod:`orchestrator.scale`); the explanation
says which limit stopped it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ScoreMappingError
from orchestrator.runner.result import ErrorKind, ItemResult
from orchestrator.runner.sources import ItemSource, SampleTask, TaskContext

__all__ = ["RunJob", "check_model", "classify_error", "run_job", "warm_worker", "worker_entry"]


@dataclass(frozen=True)
class RunJob:
    """Everything a worker needs to run one item (picklable; the API key stays in memory)."""

    session_id: str
    session_key: str
    item_id: str
    step: int
    attempt: int
    source: ItemSource
    """What the item runs; it builds the Inspect task and maps the score."""
    n_categories: int
    """K of the item: a category outside 0..K-1 is a ``scorer`` fault."""
    labels: tuple[str, ...]
    """Label of each category, for the journal."""
    model: str
    log_dir: str
    prepared: dict[str, Any] = field(default_factory=dict)
    """What the source's pre-flight found for this item (a scenario's image)."""
    environments: str = "environments"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model_args: dict[str, Any] = field(default_factory=dict)
    sandbox_provider: str = "agentcat"
    message_limit: int = 30
    token_limit: int | None = None
    time_limit_s: int = 600
    command_timeout_s: int = 60
    model_max_retries: int = 3
    model_timeout_s: int = 120
    usd_per_mtok_input: float | None = None
    usd_per_mtok_output: float | None = None
    next_job: RunJob | None = None
    """The job this worker likely runs next (no key, no ``next_job``): a queued job the
    pool means to give it, else the one the session expects to submit next (its CAT's
    guess). The worker's spare container is of its sandbox spec (see
    :func:`_prepare_sandbox`)."""

    def sandbox_group(self) -> str:
        """What jobs that run in sandboxes of one spec have in common (a scenario family
        and its image): the pool's guess at which spare container serves this job; the
        worker compares the real specs."""
        prepared = json.dumps(self.prepared, sort_keys=True, default=str)
        return f"{self.sandbox_provider}|{self.source.kind}|{self.source.group()}|{prepared}"


def classify_error(text: str) -> ErrorKind:
    """Map an Inspect error message/traceback onto a fault kind."""
    t = text.lower()
    setup_marks = (  # the endpoint or the set-up, not this run: pause, charge no item
        "authenticationerror",
        "permissiondeniederror",
        "error code: 401",
        "error code: 403",
        "notfounderror",
        "error code: 404",
        "connection refused",
        "name or service not known",
        "temporary failure in name resolution",
        "nodename nor servname",
        "prerequisiteerror",
        "scenariospecerror",
        "cannot reach the docker engine",
    )
    sandbox_marks = (
        "sandboxerror",
        "docker.errors",
        "sandbox image",
        "sandbox environment",
    )
    model_marks = (
        "ratelimiterror",
        "apiconnectionerror",
        "apitimeouterror",
        "apistatuserror",
        "internalservererror",
        "openai.",
        "anthropic.",
        "httpx",
        "rate limit",
        "connection error",
        "authenticationerror",
        "notfounderror",
        "json decode",
        "jsondecodeerror",
        "model api",
        "remoteprotocolerror",
        "readtimeout",
        "attempttimeouterror",  # a model call over model_timeout_s
        "attempt_timeout",
    )
    raised = re.findall(r"^([\w.]+(?:Error|Exception))(?::|$)", text, re.MULTILINE)
    if raised and raised[-1].endswith("SandboxError"):
        return "sandbox"  # by type: its message may quote what a probe saw in the sandbox
    if any(m in t for m in setup_marks):
        return "setup"
    if any(m in t for m in sandbox_marks):
        return "sandbox"
    if any(m in t for m in model_marks):
        return "model_api"
    if "scorer" in t or "scoring" in t or "ordinal_scorer" in t:
        return "scorer"
    if "timeouterror" in t or "timed out" in t:
        return "timeout"
    if "cancel" in t:
        return "cancelled"
    return "internal"


def check_model(
    model: str,
    base_url: str | None,
    api_key: str | None,
    args: dict[str, Any],
    timeout_s: int = 60,
) -> None:
    """Set the model up as the worker will and make one minimal real request with it.

    A wrong key, an unknown model or an endpoint that refuses connections fails
    here, before step 1, not as errored runs. A transient failure (rate limit,
    server error, dropped connection, malformed answer, a call over ``timeout_s``)
    is tried again, three attempts in all.

    Raises:
        PrerequisiteError: the model cannot be set up or the request fails.
    """
    from inspect_ai.model import GenerateConfig, get_model

    from orchestrator._secrets import register_secret, scrub
    from orchestrator.errors import PrerequisiteError

    register_secret(api_key)  # also in a worker process, where the key arrives as an argument

    def clean(exc: BaseException) -> str:
        text = re.sub(r"\[/?[a-z ]+\]", "", f"{type(exc).__name__}: {exc}").strip()
        return scrub(" ".join(text.split()))[:500]

    try:
        m = get_model(model, base_url=base_url, api_key=api_key, memoize=False, **args)
    except Exception as exc:
        raise PrerequisiteError(
            f"model {model!r} cannot be set up: {clean(exc)}",
            hint="set the provider's API key variable (or --api-key-env VAR) and check the "
            "model name and base URL",
        ) from None
    config = GenerateConfig(max_tokens=16, max_retries=0, attempt_timeout=timeout_s)
    where = base_url or "its provider"
    for attempt in range(3):
        try:
            _run_coroutine(m.generate("Reply with the word OK.", config=config))
            return
        except Exception as exc:
            inner = _unwrap(exc)
            text = clean(inner)
            if classify_error(f"{text}\n{_chain(inner)}") == "setup" or attempt == 2:
                raise PrerequisiteError(
                    f"model {model!r} at {where} failed a test request: {text}",
                    hint="check the API key (--api-key-env VAR), the model name and the base "
                    "URL; no item was run",
                ) from None
            time.sleep(2.0 * (attempt + 1))


def _unwrap(exc: BaseException) -> BaseException:
    """The error inside a tenacity ``RetryError`` (what Inspect raises when retries end)."""
    last = getattr(exc, "last_attempt", None)
    inner = last.exception() if last is not None and last.failed else None
    return inner if isinstance(inner, BaseException) else exc


def _chain(exc: BaseException) -> str:
    """Types and messages of the causes of ``exc`` (ConnectError hides in APIConnectionError)."""
    parts = []
    seen = exc.__cause__ or exc.__context__
    while seen is not None and len(parts) < 5:
        parts.append(f"{type(seen).__module__}.{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion from sync code, also when this thread runs an event loop."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _sample_task(job: RunJob) -> SampleTask:
    context = TaskContext(
        item_id=job.item_id,
        prepared=job.prepared,
        environments=job.environments,
        sandbox=job.sandbox_provider,
        command_timeout_s=job.command_timeout_s,
    )
    plan = job.source.sample_task(context)
    # a sandbox provider sees the sample's metadata, not the eval's: the run's identity
    # goes there too, so its sandbox is labelled with session, session key, item and run
    for sample in plan.task.dataset:
        if plan.sample_id is None or sample.id == plan.sample_id:
            sample.metadata = {**(sample.metadata or {}), **_run_labels(job)}
    return plan


def _run_labels(job: RunJob) -> dict[str, str]:
    return {
        "session": job.session_id,
        "session_key": job.session_key,
        "item": job.item_id,
        "run": f"{job.step}.{job.attempt}",
    }


_EVAL_OPTIONS: dict[str, Any] = {
    "log_realtime": False,
    "ctl_server": False,
    "score_display": False,
    "log_model_api": False,
}
"""One eval per item: no live-view event buffer, control socket or live score display,
and no raw model API log of every item's first calls (errors are still logged)."""


async def run_job(job: RunJob) -> ItemResult:
    """Run ``job`` with ``eval_async`` (call once per process at a time)."""
    from inspect_ai import eval_async
    from inspect_ai.model import GenerateConfig, get_model
    from inspect_ai.util._display import init_display_type

    from orchestrator._secrets import register_secret

    init_display_type("none")  # eval_async would default to "plain" console output
    _quiet_display()
    register_secret(job.api_key)
    _scrub_inspect_logging("warning")
    t0 = time.perf_counter()
    try:
        plan = _sample_task(job)
        model = get_model(
            job.model,
            base_url=job.base_url,
            api_key=job.api_key,
            # attempt_timeout bounds each call (Inspect's `timeout` is a budget across
            # retries that never cancels a call in flight)
            config=GenerateConfig(
                max_retries=job.model_max_retries, attempt_timeout=job.model_timeout_s
            ),
            **job.model_args,
        )
    except Exception as exc:
        kind = classify_error(f"{type(exc).__name__}: {exc}")
        return ItemResult(
            job.item_id, error_kind=kind, error_message=_short(exc), wall_s=time.perf_counter() - t0
        )
    _prepare_sandbox(job, plan)  # its container starts while Inspect sets the eval up
    logs: list[Any] = []
    try:
        logs = await eval_async(
            plan.task,
            model=model,
            sample_id=plan.sample_id,
            message_limit=job.message_limit,
            token_limit=job.token_limit,
            time_limit=job.time_limit_s,
            metadata=_run_labels(job),
            log_dir=job.log_dir,
            log_level="warning",
            fail_on_error=True,
            retry_on_error=0,
            score_on_error=False,
            sandbox_cleanup=True,
            log_samples=True,
            **_EVAL_OPTIONS,
        )
    finally:
        _scrub_inspect_files([str(lg.location) for lg in logs if lg.location])
    return _result_from_log(job, logs[0], time.perf_counter() - t0)


def _scrub_inspect_files(logs: list[str]) -> None:
    """Rewrite this run's eval logs without secrets (Inspect has no hook that filters an
    eval log as it is written; its trace log is scrubbed as it is written)."""
    from orchestrator._secrets import scrub_files

    scrub_files(p.removeprefix("file://") for p in logs)


def _scrub_inspect_logging(log_level: str) -> None:
    """Have Inspect write its log files without secrets, line by line.

    Inspect opens its trace log (``trace-<pid>.log`` in its data folder, or
    ``INSPECT_TRACE_FILE``) and ``INSPECT_PY_LOGGER_FILE`` when its logger is
    first set up in a process, and keeps them open. So set that logger up now,
    as the next ``eval_async`` with ``log_level`` would (later calls leave it as
    it is), and scrub each record its file handlers format. Nothing secret is
    written, so nothing is rewritten under Inspect's open file. (Private Inspect
    names: if a later Inspect moves them, runs fail here rather than log keys.)
    """
    from inspect_ai._util.logger import _logHandler, init_logger

    from orchestrator._secrets import scrub_log_handler

    init_logger(log_level)
    handler = _logHandler["handler"]
    if handler is None:
        raise RuntimeError("Inspect set up no log handler: cannot scrub its trace log")
    for file_handler in (handler.trace_logger, handler.file_logger):
        if file_handler is not None:
            scrub_log_handler(file_handler)


def _quiet_display() -> None:
    """Give Inspect a display that draws nothing.

    With display ``none`` Inspect still drives its rich display, which lays out
    its task and results tables on every eval and then drops them (the console
    is quiet): in a warm worker that was a visible share of an item's CPU.
    (Private Inspect names: if a later Inspect moves them, Inspect keeps its own
    display, which only costs CPU; ``tests/test_pool.py`` notices.)
    """
    try:
        from inspect_ai._display.core import active

        from orchestrator.runner._quiet_display import QuietDisplay
    except ImportError:
        return
    if not isinstance(getattr(active, "_active_display", None), QuietDisplay):
        active._active_display = QuietDisplay()


def _agentcat_sample(plan: SampleTask) -> Any:
    """The plan's one sample when it runs in our sandbox, else None."""
    samples = list(plan.task.dataset)
    if plan.sample_id is not None:
        samples = [s for s in samples if s.id == plan.sample_id]
    spec = samples[0].sandbox if len(samples) == 1 else None
    return samples[0] if spec is not None and spec.type == "agentcat" else None


_group_configs: dict[str, Any] = {}
"""``RunJob.sandbox_group`` → the sandbox config of this process's items of that group
(None: they run in none of ours)."""


def _sandbox_config(job: RunJob) -> Any:
    """The sandbox config of ``job``'s group (None: not our sandbox): that of the last item
    of the group this process ran, or built from ``job`` (it builds the item's task:
    ~10 ms, once per group and process)."""
    key = job.sandbox_group()
    if key not in _group_configs:
        try:
            sample = _agentcat_sample(_sample_task(job))
        except Exception:  # only a guess at the next item: its own run reports the error
            sample = None
        _group_configs[key] = sample.sandbox.config if sample is not None else None
    return _group_configs[key]


def _prepare_sandbox(job: RunJob, plan: SampleTask) -> None:
    """Start the sample's container in our sandbox now (or take the worker's spare of
    its spec); the provider hands it to the sample when Inspect gets there
    (``AgentcatSandbox.prepare``; ``worker_entry`` removes it if the run ends before).
    Its claim starts a spare for the worker's next item: of ``job.next_job``'s spec when
    the pool or the session named one, else of this item's."""
    if job.sandbox_provider != "agentcat":
        return
    sample = _agentcat_sample(plan)
    if sample is not None:
        from orchestrator.runner.sandbox import AgentcatSandbox

        _group_configs[job.sandbox_group()] = sample.sandbox.config
        following = _sandbox_config(job.next_job) if job.next_job is not None else None
        AgentcatSandbox.prepare(
            plan.task.name,
            sample.sandbox.config,
            sample.metadata or {},
            spare=True,
            next_config=following,
        )


def _result_from_log(job: RunJob, log: Any, wall: float) -> ItemResult:
    usage = getattr(log.stats, "model_usage", {}) or {}
    tin = sum(int(u.input_tokens or 0) for u in usage.values())
    tout = sum(int(u.output_tokens or 0) for u in usage.values())
    total = sum(int(u.total_tokens or 0) for u in usage.values())
    cost = None
    if job.usd_per_mtok_input is not None or job.usd_per_mtok_output is not None:
        cost = (tin * (job.usd_per_mtok_input or 0) + tout * (job.usd_per_mtok_output or 0)) / 1e6
    common: dict[str, Any] = {
        "wall_s": wall,
        "input_tokens": tin,
        "output_tokens": tout,
        "total_tokens": total,
        "cost_usd": cost,
        "log_path": str(log.location) if log.location else None,
    }
    sample = log.samples[0] if log.samples else None
    if log.status == "cancelled":
        return ItemResult(
            job.item_id, error_kind="cancelled", error_message="run cancelled", **common
        )
    if sample is not None and sample.limit is not None and sample.limit.type in ("time", "working"):
        return ItemResult(
            job.item_id,
            error_kind="timeout",
            error_message=f"{sample.limit.type} limit of {sample.limit.limit} s exceeded",
            **common,
        )
    err = (sample.error if sample is not None else None) or log.error
    if err is not None:
        text = f"{err.message}\n{err.traceback}"
        return ItemResult(
            job.item_id,
            error_kind=classify_error(text),
            error_message=_error_message(err.message, err.traceback)[:1000],
            **common,
        )
    if sample is None or not sample.scores:
        return ItemResult(
            job.item_id,
            error_kind="internal",
            error_message=f"eval ended '{log.status}' without a score",
            **common,
        )
    score = next(iter(sample.scores.values()))
    try:
        category = job.source.category(score.value)
    except ScoreMappingError as exc:
        return ItemResult(job.item_id, error_kind="scorer", error_message=exc.message, **common)
    except Exception as exc:  # a broken mapping is a scoring fault too, never a category
        return ItemResult(job.item_id, error_kind="scorer", error_message=_short(exc), **common)
    if not 0 <= category < job.n_categories:
        return ItemResult(
            job.item_id,
            error_kind="scorer",
            error_message=f"score {score.value!r} gives category {category}, outside the "
            f"item's scale 0..{job.n_categories - 1}",
            **common,
        )
    explanation = score.explanation or ""
    if sample.limit is not None:  # message/token limit: scored as it stands, and said so
        limit = sample.limit.limit
        explanation += f" The agent was stopped by the {sample.limit.type} limit" + (
            f" ({limit:g})." if limit is not None else "."
        )
    return ItemResult(
        job.item_id,
        score=category,
        label=job.labels[category],
        explanation=explanation,
        **common,
    )


def _error_message(message: str, traceback: str) -> str:
    """Inspect's error message, with the error a ``RetryError`` wraps spelled out."""
    if not message.startswith("RetryError"):
        return message
    last = [
        ln
        for ln in traceback.splitlines()
        if re.match(r"^[\w.]+(Error|Exception): ", ln) and "RetryError" not in ln
    ]
    return f"{last[-1]} (after retries)" if last else message


def _short(exc: BaseException) -> str:
    """Type, message and (for unexpected errors) the innermost frames, for the journal."""
    import traceback

    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    return (f"{text} (at {where})" if where else text)[:1000]


def warm_worker() -> None:
    """Ready a worker process for its first item, outside that item's time.

    Inspect imports much of itself (and a provider its client library) inside
    the first ``eval_async``, so a worker runs one empty eval (no model call, no
    sandbox) in a temporary log folder. Inspect also records the git revision
    of the working directory in every eval, running three ``git`` commands per
    item (``git status`` scans the whole tree); it cannot change while the
    worker lives, so it is computed once here. (That is a private Inspect
    function: if a later Inspect moves it, every item computes it again.)
    Inspect's extensions are loaded here too, all but inspect_evals' registry of
    every eval (:mod:`orchestrator.runner.extensions`).
    Best effort: a failure here only leaves the work to the first item.
    """
    import asyncio
    import tempfile

    try:
        import openai  # noqa: F401  (the client of the OpenAI-compatible providers)
        from inspect_ai._eval.task import log as task_log
        from inspect_ai.model import get_model

        import orchestrator.runner.sandbox  # registers the ``agentcat`` sandbox provider
        import orchestrator.scenario.grading  # noqa: F401
        from orchestrator.runner.extensions import load_extensions

        load_extensions()

        revision = task_log.resolve_revision()
        task_log.resolve_revision = lambda: revision
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_empty_eval(tmp))
        get_model("openai-api/warm/up", base_url="http://127.0.0.1:9/v1", api_key="-")
    except Exception:
        pass


async def _empty_eval(log_dir: str) -> None:
    from inspect_ai import Task, eval_async
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import Score, Target, mean, scorer
    from inspect_ai.solver import Generate, TaskState, solver
    from inspect_ai.util._display import init_display_type

    @solver
    def nothing() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            return state

        return solve

    @scorer(metrics=[mean()])
    def zero() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            return Score(value=0)

        return score

    init_display_type("none")
    _quiet_display()
    _scrub_inspect_logging("error")  # before Inspect's first trace line in this process
    task = Task(dataset=[Sample(id="warm", input="-")], solver=nothing(), scorer=zero())
    await eval_async(
        task, model="mockllm/model", log_dir=log_dir, log_level="error", **_EVAL_OPTIONS
    )


def worker_entry(job: RunJob) -> dict[str, Any]:
    """Process-pool entry point: run one job in a fresh event loop; never raises."""
    import asyncio

    from orchestrator._secrets import scrub

    os.environ.setdefault("INSPECT_DISPLAY", "none")
    try:
        result = asyncio.run(run_job(job))
    except BaseException as exc:
        kind: ErrorKind = (
            "cancelled"
            if isinstance(exc, KeyboardInterrupt)
            else classify_error(f"{type(exc).__name__}: {exc}")
        )
        result = ItemResult(job.item_id, error_kind=kind, error_message=_short(exc))
    finally:
        if job.sandbox_provider == "agentcat":
            from orchestrator.runner.sandbox import discard_prepared

            discard_prepared()  # a run that ended before its sample claimed the container
    fields = result.journal_fields()
    for key in ("error_message", "explanation"):
        if fields.get(key):
            fields[key] = scrub(fields[key])
    return {"item_id": result.item_id, **fields}
