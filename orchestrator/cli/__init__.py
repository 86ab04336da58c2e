"""The ``agentcat`` command line: parse, call the library, print.

Every command is a thin shell over a library function of the same name in
:mod:`orchestrator.api`, so the Python API and the CLI do the same thing. The
commands live in one module per group (:mod:`.live`, :mod:`.measure`,
:mod:`.infra`); each handler imports the library it calls on use, so
``agentcat --help`` stays fast. One error boundary (:func:`main`) turns
:class:`AgentcatError` into one red line plus a hint and exit code 1 (2 for
usage errors); Ctrl-C exits 130; only bugs print a traceback. Everything
printed while a command runs passes through a secret scrubber
(:func:`orchestrator._secrets.scrubbed_stdio`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from orchestrator import __version__
from orchestrator._secrets import scrubbed_stdio
from orchestrator.cli import infra, live, measure
from orchestrator.cli._common import Handler
from orchestrator.errors import AgentcatError, ConfigError

__all__ = ["main"]


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="agentcat: adaptive (IRT/CAT) evaluation of agentic AI safety.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (live, measure, infra):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "agentcat") -> int:
    """Run the CLI; returns the exit code (tests call this directly)."""
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    previous = _sigterm_as_interrupt()
    try:
        with scrubbed_stdio():  # no secret reaches the terminal, whatever prints it
            return _handle(handler, args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _handle(handler: Handler, args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        _print_error(exc)
        return 2
    except AgentcatError as exc:
        _print_error(exc)
        return 1


def _sigterm_as_interrupt() -> Any:
    """`docker stop` sends SIGTERM: treat it like Ctrl-C, so runs are cancelled, their
    sandboxes removed and the journal left consistent (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _print_error(exc: AgentcatError) -> None:
    red, bold, reset = ("\033[31m", "\033[1m", "\033[0m") if sys.stderr.isatty() else ("", "", "")
    first, *rest = exc.message.splitlines() or [""]
    print(f"{red}{bold}error:{reset} {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)
    if exc.hint:
        print(f"{bold}hint:{reset} {exc.hint}", file=sys.stderr)
