"""What every command group shares: the parser class, argument types and output formatters."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeAlias

__all__ = [
    "JSON_HELP",
    "AgentcatParser",
    "Handler",
    "SubParsers",
    "embedding_cache",
    "finite_float",
    "fmt_table",
    "nonnegative_int",
    "port",
    "positive_float",
    "positive_int",
    "print_json",
    "probability",
]

JSON_HELP = "print one versioned JSON document to stdout instead of text"

Handler = Callable[[argparse.Namespace], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")


def fmt_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def embedding_cache() -> str:
    """Where embeddings of item texts are cached (agentcat's cache root)."""
    from orchestrator._io import cache_dir

    return str(cache_dir())


# --------------------------------------------------------------------------- parsing
class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it has no default or says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class AgentcatParser(argparse.ArgumentParser):
    """Every (sub)command's parser: defaults shown in ``--help``; a usage error is one
    ``error:`` line plus a hint (exit 2), like every other error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\nhint: `{self.prog} --help` lists the options\n")


def _number(text: str, kind: type[int] | type[float]) -> float:
    noun = "an integer" if kind is int else "a finite number"
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {noun}; got {text!r}") from None
    if abs(value) > 2**53 or not math.isfinite(value):  # (a huge int must not reach isfinite)
        raise argparse.ArgumentTypeError(f"expected {noun} of sensible size; got {text!r}")
    return value


def finite_float(text: str) -> float:
    return float(_number(text, float))


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
    return value


def probability(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1]; got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0; got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1; got {text}")
    return value


def port(text: str) -> int:
    value = int(_number(text, int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 0..65535 (0: any free); got {text}")
    return value
