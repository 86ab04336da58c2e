"""Item response theory: pure math, no I/O.

One graded response model object (:class:`GradedResponseModel`: category
probabilities and Fisher information for items × θ points, 2PL as its K = 2
case, θ a D-vector), the grid posterior over θ for one subject or many, and
ability estimates. The ``grm`` functions are one-dimensional conveniences
over the model. Calibration (torch) and fit statistics live beside them and
are imported from their own modules.

The names below load on first use (PEP 562), so importing a light submodule
(``orchestrator.irt._calibration_defaults``, which the CLI's parser reads)
does not pull numpy and scipy into ``agentcat --help``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "grm": (
        "category_probs",
        "cumulative_probs",
        "expected_score",
        "from_slope_intercept",
        "item_information",
        "log_category_probs",
        "pad_thresholds",
        "sample_responses",
        "to_slope_intercept",
    ),
    "model": ("GradedResponseModel",),
    "posterior": (
        "DEFAULT_GRID",
        "GridPosterior",
        "GridSpec",
        "Posterior",
        "grid_summaries",
        "make_grid",
    ),
}
"""Submodule → the public names it defines."""
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
