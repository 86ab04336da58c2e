"""Cold start: GRM parameters for items that have text but no responses yet.

A model trained on calibrated banks with item text predicts each new item's slope
and thresholds with their uncertainty; the prediction becomes the item's prior in
a provisional bank, which calibration updates as responses arrive.
"""

from orchestrator.coldstart.features import (
    EMBEDDING_PACKAGE,
    SURFACE_FEATURES,
    Embedder,
    MiniLMEmbedder,
    surface_features,
)
from orchestrator.coldstart.model import (
    ParamPrediction,
    TextParamModel,
    TrainingItem,
    training_items,
)
from orchestrator.coldstart.regression import EvidenceRidge

__all__ = [
    "EMBEDDING_PACKAGE",
    "SURFACE_FEATURES",
    "Embedder",
    "EvidenceRidge",
    "MiniLMEmbedder",
    "ParamPrediction",
    "TextParamModel",
    "TrainingItem",
    "surface_features",
    "training_items",
]
