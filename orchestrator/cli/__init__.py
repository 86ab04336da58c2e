"""The ``agentcat`` command line: parse, call the library, print.

Every command is a thin shell over a library function of the same name in
:mod:`orchestrator.api`, so the Python API and the CLI do the same thing. The
commands live in one module per group (:mod:`.live`, :mod:`.measure`,
:mod:`.infra`); each handler imports the library it calls on use, so
``agentcat --help`` stays fast. One error boundary (:func:`main`) turns
:class:`AgentcatError` into one red line plus a hint and exit code 1 (2 for
usage errors); an ``OSError`` from the environment (a full disk, a folder that
cannot be written) is one line too; Ctrl-C exits 130 with a line on how to
continue; a closed stdout (``agentcat estimate … | head``) ends quietly; only
bugs print a traceback (``AGENTCAT_DEBUG=1`` shows one for the OSError case).
Everything printed while a command runs passes through a secret scrubber
(:func:`orchestrator._secrets.scrubbed_stdio`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from orchestrator import __version__
from orchestrator._secrets import scrubbed_stdio
from orchestrator.cli import infra, live, measure
from orchestrator.cli._common import AgentcatParser, Handler
from orchestrator.errors import (
    AgentcatError,
    BankError,
    ConfigError,
    DataError,
    PrerequisiteError,
    ScenarioSpecError,
    SessionError,
)

__all__ = ["main"]


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = AgentcatParser(
        prog=prog,
        description="agentcat: adaptive (IRT/CAT) evaluation of agentic AI safety.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=AgentcatParser)
    sub.required = True
    for group in (live, measure, infra):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "agentcat") -> int:
    """Run the CLI; returns the exit code (tests call this directly)."""
    parser = _build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 0
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
        if getattr(args, "person_fit_cache", False):  # nulls persist across processes
            from orchestrator.session.null_cache import install_disk_null_store

            install_disk_null_store()
        return handler(args)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None)
        print("interrupted" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
        _stdout_to_devnull()
        return 141
    except ConfigError as exc:
        _print_error(exc)
        return 2
    except AgentcatError as exc:
        _print_error(exc)
        return 1
    except OSError as exc:  # the environment refused: disk full, permissions, a device …
        if os.environ.get("AGENTCAT_DEBUG"):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        _print_error(
            AgentcatError(
                f"cannot use{where}: {exc.strerror or exc} ({type(exc).__name__})",
                hint="check free disk space and permissions there (AGENTCAT_DEBUG=1 shows "
                "where it happened)",
            )
        )
        return 1


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. captured in tests)
        pass


def _sigterm_as_interrupt() -> Any:
    """`docker stop` sends SIGTERM: treat it like Ctrl-C, so runs are cancelled, their
    sandboxes removed and the journal left consistent (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


# One hint per kind of error, for the messages that bring none of their own: every
# error the CLI prints is one line plus what to do about it.
_FALLBACK_HINTS: dict[type[AgentcatError], str] = {
    DataError: "see 'Data formats' in README.md: a UTF-8 CSV subject,item,score with integer "
    "scores 0..K-1",
    BankError: "see 'Item banks' in README.md; `agentcat calibrate` writes valid banks",
    ScenarioSpecError: "see environments/README.md for the family.yaml format",
    ConfigError: "`agentcat COMMAND --help` lists the options; configs/ has example configs",
    SessionError: "`agentcat sessions --runs-dir DIR` lists the sessions and their status",
    PrerequisiteError: "see 'Set up' in README.md for what agentcat needs",
}


def _hint(exc: AgentcatError) -> str:
    if exc.hint:
        return exc.hint
    for cls in type(exc).__mro__:
        if cls in _FALLBACK_HINTS:
            return _FALLBACK_HINTS[cls]
    return "see README.md"


def _print_error(exc: AgentcatError) -> None:
    red, bold, reset = ("\033[31m", "\033[1m", "\033[0m") if sys.stderr.isatty() else ("", "", "")
    first, *rest = exc.message.splitlines() or [""]
    print(f"{red}{bold}error:{reset} {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)
    print(f"{bold}hint:{reset} {_hint(exc)}", file=sys.stderr)
