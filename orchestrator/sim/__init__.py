"""Simulation: offline CAT replay on recorded responses (and, later, the simulated agent)."""

from orchestrator.sim.replay import (
    REPLAY_SCHEMA_VERSION,
    ReplayResult,
    StrategyResult,
    replay,
    subject_rng,
)

__all__ = ["REPLAY_SCHEMA_VERSION", "ReplayResult", "StrategyResult", "replay", "subject_rng"]
