"""The ``scenario`` item source: a variant of one of our scenario families.

Bank form: ``{"kind": "scenario", "family": "disk_cleanup", "variant": "explicit"}``
(banks written before item sources had ``"scenario": {"family", "variant"}``;
:mod:`orchestrator.bank` still reads that). The item runs in a fresh sandbox of
the family's image: the family's setup, then the agent (Inspect's ``react``
with ``bash`` and ``submit``, or a plain tool loop when the family offers no
``submit``), then the ordinal scorer grades container and trace
(:mod:`orchestrator.scenario.grading`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from orchestrator.errors import PrerequisiteError, ScenarioSpecError, ScoreMappingError
from orchestrator.runner.sources._base import (
    ItemSource,
    SampleTask,
    Script,
    ScriptedCall,
    SourceContext,
    TaskContext,
    item_source,
)

if TYPE_CHECKING:
    from orchestrator.bank import ItemBank
    from orchestrator.scenario import FamilySpec

__all__ = ["ScenarioSource"]


@item_source("scenario")
class ScenarioSource(ItemSource):
    """A variant of a scenario family under ``environments/``, run in our Docker sandbox."""

    family: str = Field(min_length=1)
    """Family id (its folder under ``environments/``)."""
    variant: str = Field(min_length=1)
    """Variant id inside the family's ``family.yaml``."""

    def group(self) -> str:
        return self.family

    @classmethod
    def preflight(
        cls, items: Mapping[str, ScenarioSource], context: SourceContext
    ) -> dict[str, dict[str, Any]]:
        """Every family and variant exists; with our sandbox, Docker answers and each
        family's image is built and current. Returns each item's image tag."""
        families = _load(items.values(), context.environments)
        for iid, src in items.items():
            if src.variant not in families[src.family].variant_ids:
                raise PrerequisiteError(
                    f"item {iid!r}: family {src.family!r} has no variant {src.variant!r} "
                    f"under {context.environments}",
                    hint="use the environments the bank was written for (--environments)",
                )
        if context.sandbox != "agentcat":  # Inspect's providers build their own images
            return {iid: {} for iid in items}
        from orchestrator.runner.docker_client import docker_client
        from orchestrator.runner.images import family_image

        docker_client()
        images = {f: family_image(f, context.environments) for f in families}
        return {iid: {"image": images[src.family]} for iid, src in items.items()}

    def sample_task(self, context: TaskContext) -> SampleTask:
        from inspect_ai import Task
        from inspect_ai.agent import react
        from inspect_ai.dataset import Sample
        from inspect_ai.solver import generate, use_tools
        from inspect_ai.tool import bash
        from inspect_ai.util import SandboxEnvironmentSpec

        from orchestrator.runner.sandbox import SandboxSpec
        from orchestrator.scenario.grading import (
            METADATA_ROOT,
            ordinal_scorer,
            scenario_sample,
            scenario_setup,
        )

        family = _family(Path(context.environments) / self.family)
        base = scenario_sample(family, self.variant)
        sbx = family.sandbox
        if context.sandbox == "agentcat":
            spec = SandboxSpec(image=context.prepared["image"], **sbx.model_dump())
            sandbox: Any = SandboxEnvironmentSpec("agentcat", spec)
        else:  # Inspect's own providers (compose-based docker, k8s) with their defaults
            sandbox = context.sandbox
        metadata = {
            **(base.metadata or {}),
            METADATA_ROOT: str(Path(context.environments).resolve()),
        }
        sample = Sample(id=context.item_id, input=base.input, metadata=metadata, sandbox=sandbox)
        tools = [bash(timeout=context.command_timeout_s, user=sbx.user)]
        if "submit" in family.tools:
            solver: Any = [scenario_setup(), react(tools=tools)]
        else:
            solver = [scenario_setup(), use_tools(tools), generate(tool_calls="loop")]
        task = Task(
            name=f"agentcat_{self.family}", dataset=[sample], solver=solver, scorer=ordinal_scorer()
        )
        return SampleTask(task)

    def category(self, value: Any) -> int:
        """The ordinal scorer's value is the category itself (an integer)."""
        whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        if isinstance(value, bool) or not whole or value != int(value):
            raise ScoreMappingError(
                f"scenario {self.family}.{self.variant}: score {value!r} is not an integer category"
            )
        return int(value)

    @classmethod
    def sim_scripts(
        cls, items: Mapping[str, ScenarioSource], bank: ItemBank, context: SourceContext
    ) -> dict[str, Script]:
        """The family's reference solution of each category, as ``bash`` calls."""
        from orchestrator.scenario import render_prompt

        families = _load(items.values(), context.environments)
        scripts = {}
        for iid, src in items.items():
            fam = families[src.family]
            var = fam.variant(src.variant)
            solutions = {}
            for c in range(int(bank.n_categories[bank.index[iid]])):
                sol = fam.solution(var, c)
                calls = [ScriptedCall("bash", {"command": cmd}) for cmd in sol.commands]
                solutions[c] = (calls, sol.final)
            scripts[iid] = Script(iid, render_prompt(fam, var).strip(), solutions)
        return scripts


_families: dict[Path, tuple[tuple[int, int, int], FamilySpec]] = {}
"""A family's folder → its ``family.yaml``'s (inode, size, mtime) when loaded, and the family."""


def _family(folder: Path) -> FamilySpec:
    """The family in ``folder``, loaded and validated again only when its ``family.yaml``
    changed (a worker builds an item's task for every item; parsing and validating the
    YAML each time was ~3 ms of its CPU)."""
    from orchestrator.scenario import load_family
    from orchestrator.scenario.spec import FAMILY_FILENAME

    try:
        st = (folder / FAMILY_FILENAME).stat()
    except OSError:
        return load_family(folder)  # it raises the error that says what is missing
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = _families.get(folder)
    if known is None or known[0] != stamp:
        known = _families[folder] = (stamp, load_family(folder))
    return known[1]


def _load(sources: Any, environments: Path) -> dict[str, FamilySpec]:
    """The families ``sources`` name, each loaded and validated once."""
    from orchestrator.scenario import load_family

    out: dict[str, FamilySpec] = {}
    for src in sources:
        if src.family not in out:
            try:
                out[src.family] = load_family(Path(environments) / src.family)
            except ScenarioSpecError as exc:
                if (Path(environments) / src.family).is_dir():
                    raise
                raise PrerequisiteError(
                    f"no scenario family {src.family!r} under {environments}",
                    hint="use the environments the bank was written for (--environments)",
                ) from exc
    return out
