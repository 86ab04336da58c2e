"""Item response theory: pure math, no I/O.

The graded response model (2PL is its K = 2 case), Fisher information and a
grid posterior over θ. Calibration (torch) and fit statistics live beside
them and are imported from their own modules.
"""

from orchestrator.irt.grm import (
    category_probs,
    cumulative_probs,
    expected_score,
    from_slope_intercept,
    item_information,
    log_category_probs,
    pad_thresholds,
    sample_responses,
    to_slope_intercept,
)
from orchestrator.irt.posterior import DEFAULT_GRID, GridSpec, Posterior, grid_summaries, make_grid

__all__ = [
    "DEFAULT_GRID",
    "GridSpec",
    "Posterior",
    "category_probs",
    "cumulative_probs",
    "expected_score",
    "from_slope_intercept",
    "grid_summaries",
    "item_information",
    "log_category_probs",
    "make_grid",
    "pad_thresholds",
    "sample_responses",
    "to_slope_intercept",
]
