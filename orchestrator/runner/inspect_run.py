"""Run one bank item as an Inspect evaluation, and classify what came back.

Inspect allows one ``eval_async`` per process at a time, so this module is what
a worker process executes (see :mod:`orchestrator.runner.pool`): one item, one
``eval_async`` of one sample, in the process's own event loop.

The item's source (:mod:`orchestrator.runner.sources`) builds the task and names
the sample; this module applies the run's limits, model, retries and logging,
and asks the source to turn the sample's ``Score.value`` into a category.

Classification (never a score for a fault): a model API failure after the
bounded retries → ``model_api``; our sandbox/Docker failing → ``sandbox``; the
run's wall-clock limit → ``timeout``; cancellation → ``cancelled``; an error
inside grading, or a score the source cannot place on the item's scale →
``scorer``; anything else → ``internal``. Hitting the message or token limit
is not a fault: the agent ran out of budget and the run is scored as it stands.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ScoreMappingError
from orchestrator.runner.result import ErrorKind, ItemResult
from orchestrator.runner.sources import ItemSource, SampleTask, TaskContext

__all__ = ["RunJob", "check_model", "classify_error", "run_job"]


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


def classify_error(text: str) -> ErrorKind:
    """Map an Inspect error message/traceback onto a fault kind."""
    t = text.lower()
    sandbox_marks = (
        "sandboxerror",
        "prerequisiteerror",
        "docker.errors",
        "sandbox image",
        "sandbox environment",
        "cannot reach the docker engine",
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
    )
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
    model: str, base_url: str | None, api_key: str | None, args: dict[str, Any]
) -> None:
    """Instantiate the model once, as the worker will, so a missing key fails before step 1.

    Raises:
        PrerequisiteError: Inspect cannot set the model up (message without console markup).
    """
    import re

    from inspect_ai.model import get_model

    from orchestrator.errors import PrerequisiteError

    try:
        get_model(model, base_url=base_url, api_key=api_key, memoize=False, **args)
    except Exception as exc:
        text = re.sub(r"\[/?[a-z ]+\]", "", str(exc)).strip()
        raise PrerequisiteError(
            f"model {model!r} cannot be set up: {text}",
            hint="set the provider's API key variable (or --api-key-env VAR) and check the "
            "model name and base URL",
        ) from None


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


async def run_job(job: RunJob) -> ItemResult:
    """Run ``job`` with ``eval_async`` (call once per process at a time)."""
    from inspect_ai import eval_async
    from inspect_ai.model import GenerateConfig, get_model
    from inspect_ai.util._display import init_display_type

    init_display_type("none")  # eval_async would default to "plain" console output
    t0 = time.perf_counter()
    try:
        plan = _sample_task(job)
        model = get_model(
            job.model,
            base_url=job.base_url,
            api_key=job.api_key,
            config=GenerateConfig(max_retries=job.model_max_retries, timeout=job.model_timeout_s),
            **job.model_args,
        )
    except Exception as exc:
        kind = classify_error(f"{type(exc).__name__}: {exc}")
        return ItemResult(
            job.item_id, error_kind=kind, error_message=_short(exc), wall_s=time.perf_counter() - t0
        )
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
    )
    return _result_from_log(job, logs[0], time.perf_counter() - t0)


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
            job.item_id, error_kind=classify_error(text), error_message=err.message[:1000], **common
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
    return ItemResult(
        job.item_id,
        score=category,
        label=job.labels[category],
        explanation=score.explanation,
        **common,
    )


def _short(exc: BaseException) -> str:
    """Type, message and (for unexpected errors) the innermost frames, for the journal."""
    import traceback

    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    return (f"{text} (at {where})" if where else text)[:1000]


def worker_entry(job: RunJob) -> dict[str, Any]:
    """Process-pool entry point: run one job in a fresh event loop; never raises."""
    import asyncio

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
    return {"item_id": result.item_id, **result.journal_fields()}
