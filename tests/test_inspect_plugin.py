"""Inspect's own tools find the `agentcat` sandbox provider through the package's entry point.

`inspect view` and Inspect's log readers run in a process that never imports
`orchestrator`; they load the `inspect_ai` entry-point group instead. Each check
runs in a fresh interpreter, so nothing this test process imported can help.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

_PROBE = """
from inspect_ai.util._sandbox.environment import deserialize_sandbox_specific_config
from inspect_ai.util._sandbox.registry import registry_find_sandboxenv

provider = registry_find_sandboxenv("agentcat")
print(provider.__module__, provider.__name__)
spec = deserialize_sandbox_specific_config("agentcat", {"image": "agentcat/env-x:latest"})
print(type(spec).__name__, spec.image)
"""


def test_the_package_declares_the_inspect_entry_point() -> None:
    (ep,) = [e for e in entry_points(group="inspect_ai") if e.name == "agentcat"]
    assert ep.value == "orchestrator.runner.sandbox"


def test_a_fresh_inspect_process_loads_the_provider_and_its_config() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd="/",  # not the repository: `orchestrator` must come from the installed package
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "orchestrator.runner.sandbox AgentcatSandbox",
        "SandboxSpec agentcat/env-x:latest",
    ]
    assert "Could not find sandbox environment plugin" not in proc.stderr
