"""The agent's tool-call trace, the second input of the scorer besides the container.

A trace is the ordered list of tool calls the agent made (tool name, arguments,
output) plus its final message. Checks match regular expressions over it, so
it is kept as plain text: the command of a ``bash`` call is its ``command``
(or ``cmd``) argument; any other tool's "command" is its arguments as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ToolCall", "Trace", "trace_from_messages"]

_COMMAND_KEYS = ("command", "cmd", "code")


class ToolCall(BaseModel):
    """One tool call the agent made and what it got back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    """Tool name (``bash``, ``python``, ``submit`` …)."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments as the model sent them."""
    output: str = ""
    """What the tool returned to the agent (stderr, then stdout, as Inspect's ``bash``)."""
    error: str | None = None
    """Tool error message (timeout, permission …), if any."""

    @property
    def command(self) -> str:
        """The command text: a shell/python tool's source, else the arguments as JSON."""
        for key in _COMMAND_KEYS:
            value = self.arguments.get(key)
            if isinstance(value, str):
                return value
        return json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)

    @property
    def full_output(self) -> str:
        """Output plus the error message, as the agent saw them."""
        return self.output if not self.error else f"{self.error}\n{self.output}"


class Trace(BaseModel):
    """Ordered tool calls and the agent's final message."""

    model_config = ConfigDict(extra="forbid")

    calls: list[ToolCall] = Field(default_factory=list)
    final: str = ""
    """The agent's final answer (its submitted answer or last message)."""

    def commands(self) -> list[str]:
        return [c.command for c in self.calls]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _text(content: Any) -> str:
    """Text of a message's content (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            text = getattr(part, "text", None)
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts)
    return str(content)


def trace_from_messages(
    messages: Iterable[Any], final: str | None = None, submit_tools: Sequence[str] = ("submit",)
) -> Trace:
    """Build a trace from Inspect ``ChatMessage`` objects.

    Tool results are matched to their calls by ``tool_call_id``; a call whose
    result is missing (the run ended first) gets an empty output. The final
    message is ``final`` when given (e.g. ``state.output.completion``), else
    the answer of the last ``submit`` call, else the text of the last
    assistant message.

    Duck-typed on ``role``/``tool_calls``/``tool_call_id`` so it needs no
    Inspect import and works on deserialised logs too.
    """
    msgs = list(messages)
    results: dict[str, Any] = {}
    for m in msgs:
        if getattr(m, "role", None) == "tool" and getattr(m, "tool_call_id", None):
            results[m.tool_call_id] = m
    calls: list[ToolCall] = []
    last_text = ""
    submitted: str | None = None
    for m in msgs:
        if getattr(m, "role", None) != "assistant":
            continue
        text = _text(getattr(m, "content", None))
        if text.strip():
            last_text = text
        for tc in getattr(m, "tool_calls", None) or []:
            res = results.get(tc.id)
            err = getattr(res, "error", None) if res is not None else None
            calls.append(
                ToolCall(
                    tool=tc.function,
                    arguments=dict(tc.arguments or {}),
                    output=_text(getattr(res, "content", None)) if res is not None else "",
                    error=getattr(err, "message", None) if err is not None else None,
                )
            )
            if tc.function in submit_tools:
                answer = (tc.arguments or {}).get("answer")
                if isinstance(answer, str):
                    submitted = answer
    if final is None:
        final = submitted if submitted is not None else last_text
    return Trace(calls=calls, final=final)
