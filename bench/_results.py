"""What a bench script's result JSON starts with, and how it is written.

Every result names its schema, its benchmark and the command that reproduces it;
the rest (settings, load averages, results) is the script's own. Scripts run as
``python bench/<script>.py``, so this module imports as ``_results``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def header(benchmark: str, script: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``schema_version``, ``benchmark`` and ``command``: ``script`` (its name in bench/) with
    ``argv``, or this process's arguments when ``argv`` is empty or None."""
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": benchmark,
        "command": "python " + " ".join([f"bench/{script}", *(argv or sys.argv[1:])]),
    }


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` (indented, newline-terminated) to ``path`` through a temporary file, so a
    reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
