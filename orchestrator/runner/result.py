"""What running one item returns, and the runner role the session loop drives."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

__all__ = ["ERROR_KINDS", "ErrorKind", "ItemResult", "ItemRunner", "RunRequest"]

ErrorKind = Literal["setup", "model_api", "sandbox", "timeout", "cancelled", "scorer", "internal"]
ERROR_KINDS: tuple[str, ...] = (
    "setup",
    "model_api",
    "sandbox",
    "timeout",
    "cancelled",
    "scorer",
    "internal",
)
"""``setup``: the endpoint or the set-up is wrong (the key is rejected, the model is unknown,
the endpoint refuses connections, a path or image is missing): no retry of the item helps,
so the session pauses and the item is not charged. The others are faults of one run."""


@dataclass(frozen=True)
class RunRequest:
    """One scenario run to perform."""

    session_id: str
    item_id: str
    step: int
    attempt: int
    session_key: str = ""
    """Unique key of the session (ids can repeat across runs folders); labels its sandboxes."""
    next_item: str | None = None
    """The item the session will likely run after this one (its CAT's guess), or None: only
    a hint for which sandbox to ready next; a wrong one never changes a result."""


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one scenario run: a grade, or a classified fault (never both)."""

    item_id: str
    score: int | None = None
    label: str | None = None
    explanation: str | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    wall_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    log_path: str | None = None

    def __post_init__(self) -> None:
        if (self.score is None) == (self.error_kind is None):
            raise ValueError("an ItemResult has either a score or an error_kind, not both/neither")
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise ValueError(f"error_kind must be one of {ERROR_KINDS}; got {self.error_kind!r}")

    @property
    def ok(self) -> bool:
        return self.score is not None

    def journal_fields(self) -> dict[str, Any]:
        """The columns the journal stores for this result."""
        d = asdict(self)
        d.pop("item_id")
        return d


class ItemRunner(Protocol):
    """Runs one item and reports a grade or a fault (the session loop's only dependency)."""

    async def run(self, request: RunRequest) -> ItemResult: ...
