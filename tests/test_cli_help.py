"""`--help` of every command: a description, help text on every option, its default shown."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from orchestrator.cli import _build_parser, main


def _commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    stack = [("", _build_parser("agentcat"))]
    while stack:
        path, parser = stack.pop()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if path and not subs:
            yield path, parser
        for sub in subs:
            stack += [(f"{path} {name}".strip(), p) for name, p in sub.choices.items()]


COMMANDS = sorted(_commands(), key=lambda c: c[0])


def test_every_command_is_here() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"demo", "run", "resume", "sessions", "show", "sim-server", "estimate"} <= names
    assert len(names) >= 16


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_help_describes_every_option_and_its_default(
    name: str, parser: argparse.ArgumentParser
) -> None:
    assert parser.description, f"`agentcat {name}` has no description"
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"`agentcat {name}` {label} has no help text"
        if action.option_strings and action.default not in (None, False, []):
            shown = parser._get_formatter()._get_help_string(action) or ""
            assert "default" in shown, f"`agentcat {name}` {label} hides its default"
    assert "usage: agentcat" in text


def test_help_exits_0_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--theta X[,X…]" in out and "(default: 0.8)" in out
    assert "--resume [SESSION]" in out
