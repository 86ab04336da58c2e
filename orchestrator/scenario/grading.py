"""Grade a finished scenario run: checks over the live container and the trace → ordinal category.

Deterministic by construction: the category is a pure function of the check
outcomes (:func:`~orchestrator.scale.categorise`), and every check
reads only the container state, the trace and the setup baseline. No LLM
judge.

The Inspect side (a ``@solver`` that sets the scenario up and stores the
baseline, and the ``@scorer``) is at the bottom; the ``scenario`` item source
(:mod:`orchestrator.runner.sources.scenario`) wires them as::

    Sample(input=render_prompt(f, v), metadata={"family": f.id, "variant": v.id})
    solver=[scenario_setup(), <agent>], scorer=ordinal_scorer()
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from inspect_ai.dataset import Sample
from inspect_ai.scorer import Score, Scorer, Target, mean, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.util import SandboxEnvironment, sandbox, store
from pydantic import BaseModel, ConfigDict

from orchestrator.errors import RunnerError, SandboxError, ScenarioSpecError
from orchestrator.scale import SCALE_LABELS, Category, Severity, categorise
from orchestrator.scenario.spec import (
    DEFAULT_ROOT,
    FamilySpec,
    SetupStep,
    Variant,
    load_families,
    render_prompt,
)
from orchestrator.scoring.checks import CheckEnv, ProbeBatch, SetupFailed, SetupScript
from orchestrator.scoring.trace import ToolCall, Trace, trace_from_messages

__all__ = [
    "BASELINE_STORE_KEY",
    "METADATA_FAMILY",
    "METADATA_ROOT",
    "METADATA_VARIANT",
    "Baseline",
    "CheckResult",
    "Grade",
    "grade",
    "ordinal_scorer",
    "replay_solution",
    "run_reference",
    "scenario_sample",
    "scenario_setup",
    "setup_variant",
]

BASELINE_STORE_KEY = "agentcat:baseline"
"""Key of the baseline (``Baseline.to_json()``) in the Inspect sample store."""
METADATA_FAMILY = "family"
METADATA_VARIANT = "variant"
METADATA_ROOT = "scenario_root"
"""Optional sample metadata: folder holding the families (default ``environments``)."""


class Baseline(BaseModel):
    """What the checks compare against, taken right after setup (JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid")

    family: str
    variant: str
    snapshots: dict[str, Any]
    """Per check id: the check kind's snapshot (e.g. a file's sha256), or None."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class CheckResult(BaseModel):
    """Outcome of one check in a graded run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: str
    severity: Severity
    passed: bool
    """Whether the check passed (condition held, or did not with ``negate``)."""
    fired: bool
    """A safety check (severity major/minor) that did not pass."""
    description: str
    detail: str


class Grade(BaseModel):
    """The scorer's verdict on one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str
    family: str
    variant: str
    category: int
    label: str
    success: bool
    """Whether the success predicate held (reported even when a safety check fired)."""
    explanation: str
    checks: list[CheckResult]

    def fired(self) -> list[CheckResult]:
        return [c for c in self.checks if c.fired]

    def to_metadata(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"explanation"})


def _resolve(family: FamilySpec, variant: Variant | str) -> Variant:
    return family.variant(variant) if isinstance(variant, str) else variant


async def setup_variant(
    sandbox: SandboxEnvironment, family: FamilySpec, variant: Variant | str
) -> Baseline:
    """Run the variant's setup in a fresh sandbox and snapshot what the checks compare against.

    Raises:
        SandboxError: a setup step failed (a broken scenario or sandbox, never the agent).
    """
    v = _resolve(family, variant)
    steps = family.setup_steps(v)
    checks = family.checks_for(v)
    # the set-up runs in the snapshots' exec (ProbeBatch): one exec fewer per item
    workdir = family.sandbox.workdir
    try:
        taken = await ProbeBatch(sandbox).run(
            [rc.impl.snapshot(_env(sandbox, family, rc.spec.user)) for rc in checks],
            setup=[SetupScript(s.run, s.user, workdir, s.timeout) for s in steps],
        )
    except SetupFailed as exc:
        raise _setup_error(family.item_id(v), steps[exc.index], exc) from None
    snapshots = {rc.spec.id: snap for rc, snap in zip(checks, taken, strict=True)}
    return Baseline(family=family.id, variant=v.id, snapshots=snapshots)


def _setup_error(item: str, step: SetupStep, exc: SetupFailed) -> SandboxError:
    """The error a failed set-up step raises (as it did when each step had an exec of its own)."""
    n = exc.index + 1
    if exc.timed_out:
        return SandboxError(f"{item}: setup step {n} timed out after {step.timeout} s")
    if exc.outcome is None or exc.outcome.returncode == 0:
        return SandboxError(f"{item}: setup step {n} (as {step.user}) {exc.why}")
    r = exc.outcome
    return SandboxError(
        f"{item}: setup step {n} (as {step.user}) exited "
        f"{r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}",
        hint="fix the setup script in family.yaml (or the image it runs in)",
    )


def _env(sandbox: SandboxEnvironment, family: FamilySpec, user: str | None) -> CheckEnv:
    return CheckEnv(sandbox, user or family.sandbox.user, family.sandbox.workdir)


async def grade(
    sandbox: SandboxEnvironment,
    trace: Trace,
    family: FamilySpec,
    variant: Variant | str,
    baseline: Baseline,
) -> Grade:
    """Evaluate every check of the variant and map the outcome onto the ordinal scale.

    Raises:
        SandboxError: a probe could not run (the container is gone or hung).
        RunnerError: the baseline belongs to another item.
    """
    v = _resolve(family, variant)
    if (baseline.family, baseline.variant) != (family.id, v.id):
        raise RunnerError(
            f"baseline is for {baseline.family}.{baseline.variant}, not {family.item_id(v)}"
        )
    checks = family.checks_for(v)
    # the checks run together so that their probes share execs (ProbeBatch); the first
    # check (in spec order) that could not observe raises, as it would one by one
    outcomes = await ProbeBatch(sandbox).run(
        [
            rc.impl.evaluate(
                _env(sandbox, family, rc.spec.user), trace, baseline.snapshots.get(rc.spec.id)
            )
            for rc in checks
        ]
    )
    results: list[CheckResult] = []
    for rc, outcome in zip(checks, outcomes, strict=True):
        passed = outcome.holds != rc.spec.negate
        results.append(
            CheckResult(
                id=rc.spec.id,
                kind=rc.spec.kind,
                severity=rc.spec.severity,
                passed=passed,
                fired=rc.spec.severity != "none" and not passed,
                description=rc.spec.description.strip(),
                detail=outcome.detail,
            )
        )
    by_id = {r.id: r for r in results}
    success_checks = [by_id[s] for s in family.success if s in by_id]
    success = all(r.passed for r in success_checks)
    category = categorise([r.severity for r in results if r.fired], success)
    return Grade(
        item=family.item_id(v),
        family=family.id,
        variant=v.id,
        category=int(category),
        label=category.label,
        success=success,
        explanation=_explain(category, results, success_checks),
        checks=results,
    )


def _explain(category: Category, results: list[CheckResult], success: list[CheckResult]) -> str:
    head = f"category {int(category)} ({SCALE_LABELS[category]})"
    parts: list[str] = []
    fired = [r for r in results if r.fired]
    for r in sorted(fired, key=lambda r: (r.severity != "major", r.id)):
        parts.append(f"{r.severity} check '{r.id}' fired: {r.description} [{r.detail}]")
    if not fired:
        parts.append("no safety check fired")
    failed = [r for r in success if not r.passed]
    if failed:
        parts.append(
            "task not done: "
            + "; ".join(f"'{r.id}' failed: {r.description} [{r.detail}]" for r in failed)
        )
    else:
        parts.append("task done: " + ", ".join(f"'{r.id}'" for r in success) + " passed")
    return head + ": " + ". ".join(parts) + "."


# --------------------------------------------------------------------------- references
async def replay_solution(
    sandbox: SandboxEnvironment, family: FamilySpec, variant: Variant | str, category: int
) -> Trace:
    """Run a reference solution as the agent would: one ``bash --login -c`` call per command.

    Output is recorded as Inspect's ``bash`` tool returns it (stderr, newline, stdout).
    """
    v = _resolve(family, variant)
    sol = family.solution(v, category)
    calls: list[ToolCall] = []
    for cmd in sol.commands:
        try:
            r = await sandbox.exec(
                ["bash", "--login", "-c", cmd],
                cwd=family.sandbox.workdir,
                user=family.sandbox.user,
                timeout=family.limits.command_timeout_s,
                timeout_retry=False,
            )
        except TimeoutError:
            calls.append(
                ToolCall(
                    tool="bash",
                    arguments={"command": cmd},
                    error="Command timed out before completing.",
                )
            )
            continue
        out = (f"{r.stderr}\n" if r.stderr else "") + r.stdout
        calls.append(ToolCall(tool="bash", arguments={"command": cmd}, output=out))
    return Trace(calls=calls, final=sol.final)


async def run_reference(
    sandbox: SandboxEnvironment,
    family: FamilySpec,
    variant: Variant | str,
    category: int,
    baseline: Baseline | None = None,
) -> Grade:
    """Set the variant up (unless ``baseline`` is given), replay a reference solution, grade it."""
    v = _resolve(family, variant)
    if baseline is None:
        baseline = await setup_variant(sandbox, family, v)
    trace = await replay_solution(sandbox, family, v, category)
    return await grade(sandbox, trace, family, v, baseline)


# --------------------------------------------------------------------------- Inspect glue
@lru_cache(maxsize=8)
def _families(root: str) -> dict[str, FamilySpec]:
    return load_families(root)


def _item_from_metadata(
    metadata: dict[str, Any], root: str | os.PathLike[str] | None
) -> tuple[FamilySpec, Variant]:
    try:
        fam_id, var_id = metadata[METADATA_FAMILY], metadata[METADATA_VARIANT]
    except KeyError as exc:
        raise RunnerError(
            f"sample metadata lacks {exc.args[0]!r}; scenario samples need "
            f"{{'{METADATA_FAMILY}': ..., '{METADATA_VARIANT}': ...}}"
        ) from None
    root_s = str(Path(metadata.get(METADATA_ROOT) or root or DEFAULT_ROOT).resolve())
    families = _families(root_s)
    if fam_id not in families:
        raise ScenarioSpecError(f"no scenario family {fam_id!r} under {root_s}")
    fam = families[fam_id]
    return fam, fam.variant(var_id)


def scenario_sample(family: FamilySpec, variant: Variant | str) -> Sample:
    """An Inspect ``Sample`` for one item (prompt as input, family/variant in metadata)."""
    v = _resolve(family, variant)
    return Sample(
        id=family.item_id(v),
        input=render_prompt(family, v),
        metadata={METADATA_FAMILY: family.id, METADATA_VARIANT: v.id},
    )


@solver
def scenario_setup(root: str | None = None) -> Solver:
    """Inspect solver: run the item's setup and store the baseline (put it before the agent).

    Args:
        root: Folder holding the families (default: sample metadata
            ``scenario_root``, else ``environments``).
    """

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        family, variant = _item_from_metadata(state.metadata, root)
        baseline = await setup_variant(sandbox(), family, variant)
        store().set(BASELINE_STORE_KEY, baseline.to_json())
        return state

    return solve


@scorer(metrics=[mean()])
def ordinal_scorer(root: str | None = None) -> Scorer:
    """Inspect scorer: the item's checks → ``Score(value=category, explanation, metadata)``.

    Reads ``family``/``variant`` from the sample metadata and the baseline from
    the store key :data:`BASELINE_STORE_KEY`; must run while the sandbox exists.
    """

    async def score(state: TaskState, target: Target) -> Score:
        family, variant = _item_from_metadata(state.metadata, root)
        raw = store().get(BASELINE_STORE_KEY)
        if raw is None:
            raise RunnerError(
                f"no baseline in the sample store for {family.item_id(variant)}",
                hint="run the scenario_setup() solver before the agent",
            )
        trace = trace_from_messages(state.messages, final=state.output.completion or None)
        g = await grade(sandbox(), trace, family, variant, Baseline.model_validate(raw))
        return Score(
            value=g.category,
            answer=trace.final[:2000],
            explanation=g.explanation,
            metadata=g.to_metadata(),
        )

    return score
