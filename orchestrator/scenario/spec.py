"""Scenario families: the declarative spec in ``environments/<family>/family.yaml``.

A family is one safety theme (e.g. disk clean-up that tempts deleting
protected data) with a Docker build context beside its ``family.yaml``. The
spec names the prompt template, the tools offered, the sandbox settings, the
setup commands, the difficulty *knobs* and the *variants* that set them, the
*checks* (with a severity) that the scorer evaluates, the *success* predicate
and a *reference solution* for every category of the ordinal scale. Each
variant is one bank item, id ``<family>.<variant>``.

Templates. Prompt, setup commands, check arguments and solutions may use
``{name}`` placeholders; ``{name!q}`` inserts the value shell-quoted (use it
whenever a value lands in a shell command outside a quoted here-document).
The names defined for a variant are, in increasing precedence: the family's
``vars``; each knob's name (its value is the level the variant chose) and the
chosen level's ``vars``; the variant's ``vars``;
and ``family``, ``variant``, ``item``. ``{{`` and ``}}`` are literal braces;
``${NAME}`` (shell syntax) and braces around anything that is not an
identifier (``{print $1}``, ``{a,b}``) are left alone. An undefined name is a
validation error listing every offending name.

Validation happens once at load (pydantic, unknown keys are errors with a
did-you-mean) and includes rendering every template of every variant and
building every check, so a family that loads is a family that runs.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from orchestrator._validation import parse_model
from orchestrator.errors import AgentcatError, ScenarioSpecError, did_you_mean
from orchestrator.scale import N_CATEGORIES, SCALE_LABELS, Severity
from orchestrator.scoring.checks import Check, build_check

__all__ = [
    "DEFAULT_ROOT",
    "FAMILY_FILENAME",
    "TOOLS",
    "CheckSpec",
    "FamilySpec",
    "Item",
    "Knob",
    "KnobLevel",
    "Limits",
    "RenderedCheck",
    "SandboxSection",
    "SetupStep",
    "Solution",
    "Variant",
    "iter_items",
    "load_families",
    "load_family",
    "render_prompt",
    "render_template",
    "template_names",
]

FAMILY_FILENAME = "family.yaml"
DEFAULT_ROOT = "environments"
TOOLS = ("bash", "python", "text_editor", "submit")
"""Tool names a family may offer (Inspect's standard tools)."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_ID = re.compile(r"^[a-z][a-z0-9_-]*$")
_TOKEN = re.compile(r"\{\{|\}\}|\$\{|\{(" + _IDENT + r")(!q)?\}")
_BUILTINS = ("family", "variant", "item")


# --------------------------------------------------------------------------- templates
def template_names(template: str) -> set[str]:
    """Placeholder names used in ``template``."""
    return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}


def render_template(template: str, values: Mapping[str, Any], where: str = "template") -> str:
    """Fill ``{name}`` placeholders from ``values``.

    Raises:
        ScenarioSpecError: some names are undefined (all of them are listed).
    """
    missing = sorted(template_names(template) - set(values))
    if missing:
        raise ScenarioSpecError(
            f"{where}: undefined template variable(s) {', '.join(repr(m) for m in missing)}"
            f"{did_you_mean(missing[0], values)}",
            hint="define them in the family's or variant's vars (or a knob level's vars); "
            "write {{ and }} for literal braces",
        )

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        if tok == "${":
            return tok
        value = str(values[m.group(1)])
        return shlex.quote(value) if m.group(2) else value

    return _TOKEN.sub(sub, template)


# --------------------------------------------------------------------------- schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TemplateValue = str | int | float | bool


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{what} ids are lowercase letters, digits, '_' and '-', starting with a letter; "
            f"got {value!r}"
        )
    return value


class KnobLevel(_Strict):
    """One level of a difficulty knob."""

    score: float = Field(ge=0)
    """Contribution to the item's difficulty score (0 = easiest); drives provisional parameters."""
    description: str = ""
    vars: dict[str, TemplateValue] = Field(default_factory=dict)
    """Template variables this level defines (e.g. the warning text it shows)."""


class Knob(_Strict):
    """A named difficulty dimension (warning visibility, goal pressure …)."""

    description: str = Field(min_length=1)
    """What the knob changes and why it makes the item harder (required: knobs are documented)."""
    levels: dict[str, KnobLevel] = Field(min_length=2)


class SetupStep(_Strict):
    """A shell script run before the agent starts."""

    run: str = Field(min_length=1)
    """Bash script (templated). Runs with ``bash -c`` in the sandbox workdir."""
    user: str = "root"
    """User to run as. Note: root in the sandbox has no capabilities (no DAC override,
    no chown), so files inside the agent's home must be written as the agent."""
    timeout: int = Field(60, gt=0, le=600)


WRITE_HEADROOM_MB = 64
"""Memory a sandbox keeps beyond its filled tmpfs caps, for its processes."""


class SandboxSection(_Strict):
    """Container settings of the family: the runner's ``SandboxSpec`` minus ``image``.

    Kept here so that loading specs needs neither Docker nor Inspect; the runner's
    ``SandboxSpec`` extends it with the image.

    Every writable place is a size-capped tmpfs: the workdir and ``writable`` paths
    (seeded from the image, ``writable_size_mb`` each) and ``tmpfs`` (empty,
    ``tmpfs_size_mb`` each). tmpfs pages count against the container's memory, so
    the caps must fit in ``memory_mb`` with room to spare: a full disk is then an
    ordinary "No space left on device" inside the sandbox, never the OOM killer.
    """

    user: str = "agent"
    """User the agent's commands run as."""
    workdir: str = "/home/agent"
    """Working directory; always writable (capped like ``writable``)."""
    writable: list[str] = Field(default_factory=list)
    """Paths that stay writable on the read-only root (tmpfs seeded from the image)."""
    writable_size_mb: int = Field(32, ge=1, le=4096)
    """Size cap of each writable path (the workdir included)."""
    tmpfs: list[str] = Field(default_factory=lambda: ["/tmp"])
    """Absolute paths mounted as small, empty tmpfs."""
    tmpfs_size_mb: int = Field(64, ge=1, le=4096)
    memory_mb: int = Field(512, ge=16, le=65536)
    """Memory limit (swap disabled), tmpfs contents included."""
    cpus: float = Field(1.0, gt=0, le=64)
    pids: int = Field(256, ge=8, le=65536)
    """Maximum number of processes/threads (fork bombs stop here)."""
    env: dict[str, str] = Field(default_factory=dict)

    def writable_paths(self) -> list[str]:
        """The tmpfs seeded from the image: the workdir and ``writable`` (not ``tmpfs``)."""
        return [p for p in dict.fromkeys([self.workdir, *self.writable]) if p not in self.tmpfs]

    @model_validator(mode="after")
    def _caps_fit_in_memory(self) -> SandboxSection:
        caps = len(self.writable_paths()) * self.writable_size_mb
        caps += len(set(self.tmpfs)) * self.tmpfs_size_mb
        if caps + WRITE_HEADROOM_MB > self.memory_mb:
            raise ValueError(
                f"writable paths and tmpfs may hold {caps} MB, which with {WRITE_HEADROOM_MB} "
                f"MB for processes exceeds memory_mb={self.memory_mb}; lower writable_size_mb "
                "/ tmpfs_size_mb or raise memory_mb"
            )
        return self


class Limits(_Strict):
    """Suggested per-run limits for the runner."""

    message_limit: int = Field(40, gt=0)
    time_limit_s: int = Field(600, gt=0)
    command_timeout_s: int = Field(60, gt=0)
    """Timeout of one bash tool call."""


class CheckSpec(_Strict):
    """A declarative check.

    A check *passes* when its condition holds (or, with ``negate``, when it
    does not). A safety check (severity ``major``/``minor``) *fires* when it
    does not pass; ``none`` checks only feed the success predicate.
    """

    id: str
    kind: str
    """A registered check kind (see ``orchestrator.scoring.checks.check_kinds()``)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of the kind (string values are templated)."""
    severity: Severity = "none"
    negate: bool = False
    description: str = Field(min_length=1)
    """What a failure means, in words (used in explanations)."""
    user: str | None = None
    """User container probes run as (default: the sandbox user)."""
    variants: list[str] | None = None
    """Evaluate only for these variants (default: all)."""

    _id = field_validator("id")(lambda v: _check_id(v, "check"))


class Solution(_Strict):
    """A reference solution: one bash tool call per command, then a final message."""

    commands: list[str] = Field(default_factory=list)
    final: str
    note: str = ""
    """Why this trajectory earns its category (for readers of the spec)."""


class Variant(_Strict):
    """One item: a setting of every knob, plus variant-specific variables."""

    id: str
    description: str = ""
    knobs: dict[str, str]
    vars: dict[str, TemplateValue] = Field(default_factory=dict)
    setup: list[SetupStep] = Field(default_factory=list)
    """Run after the family's setup."""
    solutions: dict[int, Solution] = Field(default_factory=dict)
    """Overrides of the family's reference solutions, by category."""

    _id = field_validator("id")(lambda v: _check_id(v, "variant"))


class RenderedCheck(BaseModel):
    """A check of one variant, with arguments rendered and the kind instantiated."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    spec: CheckSpec
    args: dict[str, Any]
    impl: Check


class FamilySpec(_Strict):
    """The content of ``family.yaml``."""

    id: str
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    risk: str = Field(min_length=1)
    """Risk category tag (e.g. ``destructive_action``, ``data_leakage``, ``oversight``)."""
    prompt: str = Field(min_length=1)
    """Task prompt template shown to the agent."""
    tools: list[str] = Field(default_factory=lambda: ["bash", "submit"])
    sandbox: SandboxSection = SandboxSection()
    limits: Limits = Limits()
    vars: dict[str, TemplateValue] = Field(default_factory=dict)
    setup: list[SetupStep] = Field(default_factory=list)
    knobs: dict[str, Knob] = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)
    checks: list[CheckSpec] = Field(min_length=1)
    success: list[str] = Field(min_length=1)
    """Ids of the checks that must all pass for the task to count as done."""
    solutions: dict[int, Solution] = Field(default_factory=dict)
    """Reference solutions by category (0..3); variants may override single categories."""

    _path: Path | None = PrivateAttr(default=None)

    _id = field_validator("id")(lambda v: _check_id(v, "family"))

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, v: list[str]) -> list[str]:
        for t in v:
            if t not in TOOLS:
                raise ValueError(f"unknown tool {t!r}{did_you_mean(t, TOOLS)}; known: {TOOLS}")
        if "bash" not in v:
            raise ValueError("every family must offer the 'bash' tool")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FamilySpec:
        problems: list[str] = []
        _duplicates([v.id for v in self.variants], "variant", problems)
        _duplicates([c.id for c in self.checks], "check", problems)
        check_ids = {c.id for c in self.checks}
        variant_ids = [v.id for v in self.variants]
        for sid in self.success:
            if sid not in check_ids:
                problems.append(
                    f"success names unknown check {sid!r}{did_you_mean(sid, check_ids)}"
                )
        for c in self.checks:
            for vid in c.variants or []:
                if vid not in variant_ids:
                    problems.append(
                        f"check {c.id!r} names unknown variant {vid!r}"
                        f"{did_you_mean(vid, variant_ids)}"
                    )
        for cat in self.solutions:
            if not 0 <= cat < N_CATEGORIES:
                problems.append(f"solutions has category {cat}; the scale is 0..{N_CATEGORIES - 1}")
        for v in self.variants:
            problems += _variant_knob_problems(self, v)
            for cat in v.solutions:
                if not 0 <= cat < N_CATEGORIES:
                    problems.append(
                        f"variant {v.id!r}: solutions has category {cat}; "
                        f"the scale is 0..{N_CATEGORIES - 1}"
                    )
            missing = [c for c in range(N_CATEGORIES) if c not in self.solutions | v.solutions]
            if missing and (self.solutions or v.solutions):
                problems.append(
                    f"variant {v.id!r} has no reference solution for categor"
                    f"{'y' if len(missing) == 1 else 'ies'} "
                    + ", ".join(f"{c} ({SCALE_LABELS[c]})" for c in missing)
                )
            elif missing:
                problems.append(
                    f"variant {v.id!r} has no reference solutions; every category 0..3 needs one"
                )
        if problems:
            raise ValueError("; ".join(problems))
        # Templates and checks are only meaningful once the structure is sound.
        prompts: dict[str, str] = {}
        for v in self.variants:
            try:
                _render_all(self, v)
            except AgentcatError as exc:
                problems.append(f"variant {v.id!r}: {exc.message}")
                continue
            text = render_prompt(self, v)
            if text in prompts:
                problems.append(
                    f"variants {prompts[text]!r} and {v.id!r} render the same prompt; "
                    "prompts must differ so each item can be recognised"
                )
            prompts[text] = v.id
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- access ------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """Folder the family was loaded from (its Docker build context)."""
        return self._path

    @cached_property
    def variant_ids(self) -> list[str]:
        return [v.id for v in self.variants]

    def variant(self, variant_id: str) -> Variant:
        """The variant called ``variant_id``.

        Raises:
            ScenarioSpecError: no such variant (with the closest id).
        """
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise ScenarioSpecError(
            f"family {self.id!r} has no variant {variant_id!r}"
            f"{did_you_mean(variant_id, self.variant_ids)}",
            hint=f"variants: {', '.join(self.variant_ids)}",
        )

    def item_id(self, variant: Variant | str) -> str:
        vid = variant if isinstance(variant, str) else variant.id
        return f"{self.id}.{vid}"

    def values(self, variant: Variant | str) -> dict[str, Any]:
        """Template variables of ``variant`` (see the module docstring for precedence)."""
        v = self.variant(variant) if isinstance(variant, str) else variant
        values: dict[str, Any] = dict(self.vars)
        for name, level in v.knobs.items():
            values[name] = level
            values.update(self.knobs[name].levels[level].vars)
        values.update(v.vars)
        values.update(family=self.id, variant=v.id, item=self.item_id(v))
        return _resolve_nested(values, f"family {self.id!r} variant {v.id!r}")

    def difficulty_score(self, variant: Variant | str) -> float:
        """Sum of the knob-level scores the variant chose."""
        v = self.variant(variant) if isinstance(variant, str) else variant
        return float(sum(self.knobs[k].levels[lvl].score for k, lvl in v.knobs.items()))

    def max_difficulty_score(self) -> float:
        return float(sum(max(lv.score for lv in k.levels.values()) for k in self.knobs.values()))

    def setup_steps(self, variant: Variant | str) -> list[SetupStep]:
        """Family then variant setup, with scripts rendered."""
        v = self.variant(variant) if isinstance(variant, str) else variant
        values = self.values(v)
        return [
            s.model_copy(update={"run": render_template(s.run, values, f"setup of {v.id!r}")})
            for s in [*self.setup, *v.setup]
        ]

    def checks_for(self, variant: Variant | str) -> list[RenderedCheck]:
        """The variant's checks, arguments rendered and kinds instantiated."""
        v = self.variant(variant) if isinstance(variant, str) else variant
        values = self.values(v)
        out = []
        for c in self.checks:
            if c.variants is not None and v.id not in c.variants:
                continue
            args = _render_any(c.args, values, f"check {c.id!r} of {v.id!r}")
            impl = build_check(c.kind, args, f"{self.id}: check {c.id!r}")
            out.append(RenderedCheck(spec=c, args=args, impl=impl))
        return out

    def solution(self, variant: Variant | str, category: int) -> Solution:
        """The rendered reference solution of ``category`` for ``variant``."""
        v = self.variant(variant) if isinstance(variant, str) else variant
        sol = v.solutions.get(category, self.solutions.get(category))
        if sol is None:
            raise ScenarioSpecError(
                f"{self.item_id(v)} has no reference solution for category {category}"
            )
        values = self.values(v)
        where = f"solution {category} of {v.id!r}"
        return Solution(
            commands=[render_template(c, values, where) for c in sol.commands],
            final=render_template(sol.final, values, where),
            note=sol.note,
        )


def _duplicates(ids: list[str], what: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"{what} id {i!r} appears more than once")
        seen.add(i)


def _variant_knob_problems(family: FamilySpec, v: Variant) -> list[str]:
    problems = []
    for name, level in v.knobs.items():
        knob = family.knobs.get(name)
        if knob is None:
            problems.append(
                f"variant {v.id!r} sets knob {name!r} which is not declared"
                f"{did_you_mean(name, family.knobs)}"
            )
        elif level not in knob.levels:
            problems.append(
                f"variant {v.id!r} sets knob {name!r} to {level!r}, not one of its levels "
                f"{sorted(knob.levels)}{did_you_mean(level, knob.levels)}"
            )
    for name in family.knobs:
        if name not in v.knobs:
            problems.append(f"variant {v.id!r} does not set knob {name!r}")
    return problems


def _resolve_nested(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Let variable values refer to other variables (a few levels deep, no cycles)."""
    out = dict(values)
    for _ in range(5):
        changed = False
        for k, v in out.items():
            if isinstance(v, str) and template_names(v):
                out[k] = render_template(v, out, f"{where}: variable {k!r}")
                changed = True
        if not changed:
            return out
    raise ScenarioSpecError(f"{where}: template variables refer to each other in a cycle")


def _render_any(obj: Any, values: Mapping[str, Any], where: str) -> Any:
    if isinstance(obj, str):
        return render_template(obj, values, where)
    if isinstance(obj, list):
        return [_render_any(x, values, where) for x in obj]
    if isinstance(obj, dict):
        return {k: _render_any(x, values, where) for k, x in obj.items()}
    return obj


def _render_all(family: FamilySpec, v: Variant) -> None:
    """Render every template of ``v`` and build its checks (validation only)."""
    render_prompt(family, v)
    family.setup_steps(v)
    family.checks_for(v)
    for cat in range(N_CATEGORIES):
        family.solution(v, cat)


def render_prompt(family: FamilySpec, variant: Variant | str) -> str:
    """The task prompt of ``variant`` (unique per item; the simulated agent keys on it)."""
    v = family.variant(variant) if isinstance(variant, str) else variant
    return render_template(family.prompt, family.values(v), f"prompt of {v.id!r}").strip()


# --------------------------------------------------------------------------- loading
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: a worker loads its item's family for every
item, and the pure-Python parser took ~0.03 s of CPU for each."""


def load_family(path: str | os.PathLike[str]) -> FamilySpec:
    """Load and validate one family from its folder (or its ``family.yaml``).

    Raises:
        ScenarioSpecError: missing file, bad YAML, or any validation problem;
            the message names the file, the location and the problem.
    """
    p = Path(path)
    file = p / FAMILY_FILENAME if p.is_dir() else p
    if not file.exists():
        raise ScenarioSpecError(
            f"no {FAMILY_FILENAME} at {p}",
            hint="a scenario family is a folder with family.yaml and a Dockerfile",
        )
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ScenarioSpecError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioSpecError(f"{file}: expected a mapping at the top level")
    spec = parse_model(
        FamilySpec, data, str(file), ScenarioSpecError, hint="see 'Scenario spec' in README.md"
    )
    if spec.id != file.parent.name:
        raise ScenarioSpecError(
            f"{file}: family id {spec.id!r} differs from its folder name {file.parent.name!r}",
            hint="rename the folder or the id: images and item ids are keyed on the id",
        )
    spec._path = file.parent
    return spec


def load_families(root: str | os.PathLike[str] = DEFAULT_ROOT) -> dict[str, FamilySpec]:
    """Every family under ``root`` (folders holding ``family.yaml``), by id, sorted.

    Raises:
        ScenarioSpecError: a family is invalid, or two items render the same prompt.
    """
    r = Path(root)
    if not r.is_dir():
        raise ScenarioSpecError(f"scenario root not found: {r}", hint="pass --root environments")
    families = {
        f.id: f
        for f in (load_family(d) for d in sorted(r.iterdir()) if (d / FAMILY_FILENAME).exists())
    }
    seen: dict[str, str] = {}
    for fam in families.values():
        for v in fam.variants:
            text = render_prompt(fam, v)
            if text in seen:
                raise ScenarioSpecError(
                    f"items {seen[text]!r} and {fam.item_id(v)!r} render the same prompt",
                    hint="prompts must be unique so the simulated agent can recognise items",
                )
            seen[text] = fam.item_id(v)
    return families


class Item(BaseModel):
    """One bank item: a family variant."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    family: FamilySpec
    variant: Variant

    @property
    def id(self) -> str:
        return self.family.item_id(self.variant)


def iter_items(families: Mapping[str, FamilySpec] | Iterable[FamilySpec]) -> Iterator[Item]:
    """Every (family, variant) pair in family then variant order."""
    fams = families.values() if isinstance(families, Mapping) else families
    for fam in fams:
        for v in fam.variants:
            yield Item(family=fam, variant=v)
