"""Psychometric health of item banks: analysis, plots and HTML/JSON reports."""

from orchestrator.report.health import DimensionCheck, analyse_health
from orchestrator.report.html import render_html, write_report
from orchestrator.report.plots import render_figures
from orchestrator.report.schema import (
    HEALTH_SCHEMA_VERSION,
    HealthArrays,
    HealthReport,
    HealthThresholds,
)

__all__ = [
    "HEALTH_SCHEMA_VERSION",
    "DimensionCheck",
    "HealthArrays",
    "HealthReport",
    "HealthThresholds",
    "analyse_health",
    "render_figures",
    "render_html",
    "write_report",
]
