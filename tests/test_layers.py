"""The floors of the house: module-level imports point down, never up or sideways.

The table is the one in README.md ("How the house is laid out"). Imports
inside functions (the CLI's lazy loading, a kind's Inspect imports) are not
module-level and are not checked here; what matters for them is that the
pure floors load without Inspect or Docker, checked in a fresh process.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FLOORS = {
    "errors": 0,
    "_io": 0,
    "_random": 0,
    "_validation": 0,
    "_registry": 0,
    "_secrets": 0,
    "scale": 0,
    "irt": 1,
    "bank": 2,
    "data": 2,
    "config": 2,
    "cat": 3,
    "loadings": 3,
    "scoring": 3,
    "scenario": 4,
    "report": 4,
    "provisional": 5,
    "runner": 5,
    "coldstart": 6,
    "session": 6,
    "sim": 6,
    "api": 7,
    "cli": 8,
}
"""Floor of each top-level module or package of ``orchestrator``."""
_FOUNDATION = {"errors", "_io", "_random", "_validation", "_registry", "_secrets", "scale"}
"""Floor 0 modules may use each other (errors is the very bottom)."""


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "orchestrator"


def _module_level_imports(path: Path) -> set[str]:
    """``orchestrator.*`` modules imported outside functions and ``TYPE_CHECKING`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.add(child.module)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m.startswith("orchestrator.")}


MODULES = sorted((REPO / "orchestrator").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_level_imports_point_down(path: Path) -> None:
    rel = path.relative_to(REPO).with_suffix("")
    unit = _unit(".".join(rel.parts).removesuffix(".__init__"))
    if unit == "orchestrator":
        return
    assert unit in FLOORS, f"{unit} has no floor: add it to FLOORS and to the README table"
    for module in _module_level_imports(path):
        dst = _unit(module)
        if dst == unit:
            continue
        ok = FLOORS[dst] < FLOORS[unit] or (unit in _FOUNDATION and dst in _FOUNDATION)
        assert ok, f"{rel} (floor {FLOORS[unit]}) imports {module} (floor {FLOORS[dst]})"


def test_the_pure_floors_load_without_inspect_or_docker() -> None:
    """What estimation, replay and bank/scenario validation need imports no Inspect or Docker."""
    code = (
        "import sys\n"
        "import orchestrator.irt, orchestrator.cat, orchestrator.bank, orchestrator.data\n"
        "import orchestrator.scale, orchestrator.scoring, orchestrator.scenario\n"
        "import orchestrator.runner.sources, orchestrator.sim.replay, orchestrator.cli\n"
        "print(sorted(m for m in ('inspect_ai', 'docker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_parser_loads_no_numeric_or_runtime_library() -> None:
    """``agentcat --help`` and every ``agentcat COMMAND --help`` build the parser only: none of
    numpy, scipy, torch, pydantic, Inspect or Docker is imported (they load when a command runs)."""
    code = (
        "import sys, contextlib, io\n"
        "import orchestrator.cli as cli\n"
        "parser = cli._build_parser('agentcat')\n"
        "commands = parser._subparsers._group_actions[0].choices\n"
        "for argv in [['--help']] + [[c, '--help'] for c in commands]:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main(argv)\n"
        "heavy = ('numpy', 'scipy', 'torch', 'pydantic', 'inspect_ai', 'docker', 'matplotlib')\n"
        "print(len(commands), sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n_commands, loaded = out.stdout.strip().split(" ", 1)
    assert int(n_commands) >= 10
    assert loaded == "[]"
