"""The rule engine's parts: check kinds evaluated on a sandbox and a trace, and the trace.

What a scenario family *declares* (``orchestrator.scenario``) is checked with
these kinds; grading a run of a family (setup, checks, the ordinal mapping)
is ``orchestrator.scenario.grading``. Nothing here knows a family, imports
Inspect at module load, or reaches above :mod:`orchestrator.scale`, which it
re-exports.
"""

from __future__ import annotations

from orchestrator.scale import N_CATEGORIES, SCALE_LABELS, Category, Severity, categorise
from orchestrator.scoring.checks import Check, CheckEnv, CheckOutcome, check, check_kinds
from orchestrator.scoring.trace import ToolCall, Trace, trace_from_messages

__all__ = [
    "N_CATEGORIES",
    "SCALE_LABELS",
    "Category",
    "Check",
    "CheckEnv",
    "CheckOutcome",
    "Severity",
    "ToolCall",
    "Trace",
    "categorise",
    "check",
    "check_kinds",
    "trace_from_messages",
]
