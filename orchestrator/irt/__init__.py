"""Item response theory: pure math, no I/O.

One graded response model object (:class:`GradedResponseModel`: category
probabilities and Fisher information for items × θ points, 2PL as its K = 2
case, θ a D-vector), the grid posterior over θ for one subject or many, and
ability estimates. The ``grm`` functions are one-dimensional conveniences
over the model. Calibration (torch) and fit statistics live beside them and
are imported from their own modules.
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
from orchestrator.irt.model import GradedResponseModel
from orchestrator.irt.posterior import (
    DEFAULT_GRID,
    GridPosterior,
    GridSpec,
    Posterior,
    grid_summaries,
    make_grid,
)

__all__ = [
    "DEFAULT_GRID",
    "GradedResponseModel",
    "GridPosterior",
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
