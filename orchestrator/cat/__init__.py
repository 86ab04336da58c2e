"""Computerized adaptive testing: the controller, its state, selection and stopping rules.

Pure and synchronous (numpy only): no Inspect, Docker or network here. The
same rules drive a live session (one test) and the offline replay (all
subjects of a response matrix at once).
"""

from orchestrator.cat.controller import CONTROLLER_SCHEMA_VERSION, CatController
from orchestrator.cat.selection import (
    MaxInfo,
    RandomSelection,
    SelectionRule,
    VarianceReduction,
    make_selection,
    selection_rule,
    selection_rules,
)
from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.cat.stopping import (
    AnyOf,
    BudgetStop,
    InfoFloorStop,
    MaxItemsStop,
    SEStop,
    StopDecision,
    StoppingRule,
    make_stopping,
    stopping_rule,
    stopping_rules,
)

__all__ = [
    "CONTROLLER_SCHEMA_VERSION",
    "AnyOf",
    "BudgetStop",
    "CatController",
    "CatState",
    "InfoFloorStop",
    "MaxInfo",
    "MaxItemsStop",
    "PreparedBank",
    "RandomSelection",
    "SEStop",
    "SelectionRule",
    "StopDecision",
    "StoppingRule",
    "VarianceReduction",
    "make_selection",
    "make_stopping",
    "selection_rule",
    "selection_rules",
    "stopping_rule",
    "stopping_rules",
]
