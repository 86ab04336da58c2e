"""Scenario families: the items agentcat ships, each a family variant run in a sandbox.

* :mod:`.spec` — ``environments/<family>/family.yaml``: prompt, tools, sandbox,
  setup, difficulty knobs, variants, checks and reference solutions, validated
  at load (its names are re-exported here);
* :mod:`.grading` — running a variant's setup in a sandbox, grading a finished
  run (checks → ordinal category), replaying reference solutions, and the
  Inspect solver/scorer that do this inside an eval (imports Inspect).

Below: :mod:`orchestrator.scoring` (check kinds, traces) and
:mod:`orchestrator.scale`. Above: the ``scenario`` item source in
:mod:`orchestrator.runner.sources`, which turns a bank item into an Inspect task.
"""

from orchestrator.scenario.spec import (
    DEFAULT_ROOT,
    FAMILY_FILENAME,
    TOOLS,
    CheckSpec,
    FamilySpec,
    Item,
    Knob,
    KnobLevel,
    Limits,
    RenderedCheck,
    SandboxSection,
    SetupStep,
    Solution,
    Variant,
    iter_items,
    load_families,
    load_family,
    render_prompt,
    render_template,
    template_names,
)

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
