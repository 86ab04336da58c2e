"""Grading finished scenario runs on the ordinal scale.

``checks`` (the check-kind registry), ``scale`` (categories and the mapping)
and ``trace`` are light; ``scorer`` (grading, setup, the Inspect scorer) pulls
in Inspect and is imported on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.scoring.checks import Check, CheckEnv, CheckOutcome, check, check_kinds
from orchestrator.scoring.scale import N_CATEGORIES, SCALE_LABELS, Category, categorise
from orchestrator.scoring.trace import ToolCall, Trace, trace_from_messages

__all__ = [
    "BASELINE_STORE_KEY",
    "N_CATEGORIES",
    "SCALE_LABELS",
    "Baseline",
    "Category",
    "Check",
    "CheckEnv",
    "CheckOutcome",
    "CheckResult",
    "Grade",
    "ToolCall",
    "Trace",
    "categorise",
    "check",
    "check_kinds",
    "grade",
    "ordinal_scorer",
    "replay_solution",
    "run_reference",
    "scenario_sample",
    "scenario_setup",
    "setup_variant",
    "trace_from_messages",
]

_LAZY = {
    "BASELINE_STORE_KEY",
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
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("orchestrator.scoring.scorer"), name)
    raise AttributeError(f"module 'orchestrator.scoring' has no attribute {name!r}")
