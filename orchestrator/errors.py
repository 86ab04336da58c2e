"""Typed errors. Every `AgentcatError` ends, at the CLI, as one line plus a hint.

A traceback at the CLI therefore always means a bug, never bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AgentcatError",
    "BankError",
    "CalibrationConvergenceWarning",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "NoItemsAvailableError",
    "NotFittedError",
    "PrerequisiteError",
    "RunnerError",
    "SandboxError",
    "ScenarioSpecError",
    "ScoreMappingError",
    "SessionError",
    "did_you_mean",
]


class AgentcatError(Exception):
    """Base class of every error a user can cause or fix.

    Args:
        message: What went wrong, naming the offending value.
        hint: What to do about it (printed as ``hint: ...`` by the CLI).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class ConfigError(AgentcatError, ValueError):
    """A run configuration or command-line argument is invalid."""


class DataError(AgentcatError, ValueError):
    """A response file is malformed or inconsistent with the bank."""


class BankError(AgentcatError, ValueError):
    """An item bank is missing, malformed or psychometrically invalid."""


class ScenarioSpecError(AgentcatError, ValueError):
    """A scenario family spec (``family.yaml``) is invalid."""


class CalibrationError(AgentcatError, RuntimeError):
    """Calibration could not run on the given data."""


class SandboxError(AgentcatError, RuntimeError):
    """A sandbox container could not be created, used or removed."""


class RunnerError(AgentcatError, RuntimeError):
    """Running one scenario failed for a reason that is not the model's behaviour."""


class ScoreMappingError(RunnerError):
    """An item's source cannot place a run's score on the item's scale (a ``scorer`` fault)."""


class SessionError(AgentcatError, RuntimeError):
    """A session journal is missing, locked, corrupt or foreign."""


class PrerequisiteError(AgentcatError, RuntimeError):
    """Something outside agentcat (Docker, an image, an endpoint) is missing."""


class NoItemsAvailableError(AgentcatError, LookupError):
    """No eligible item is left to administer."""


class NotFittedError(AgentcatError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class CalibrationConvergenceWarning(UserWarning):
    """The calibration optimiser stopped before meeting its tolerance."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
