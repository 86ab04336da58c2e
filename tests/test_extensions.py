"""A worker loads Inspect's extensions but inspect_evals' registry of every eval; tasks,
and an extension's hooks, are still found.

Each check runs in a fresh interpreter: what a process has loaded is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

_WORKER_PROBE = """
import asyncio, json, sys, tempfile
from orchestrator.runner.inspect_run import _empty_eval, warm_worker
from orchestrator.runner.sources.agentdojo import AgentDojoCase
from orchestrator.runner.sources.inspect_task import load_task
got = {}
warm_worker()
with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(_empty_eval(tmp))
got["registry_after_warm_up"] = "inspect_evals._registry" in sys.modules
got["agentdojo"] = len(load_task("inspect_evals/agentdojo",
                                 AgentDojoCase("banking", 0, 3).task_args()).dataset)
got["registry_after_agentdojo"] = "inspect_evals._registry" in sys.modules
# a task that no module of its own name defines: only the package's registry names it
task = load_task("inspect_evals/agent_threat_bench_autonomy_hijack", {})
got["registry_task"] = task.name
got["registry_after_registry_task"] = "inspect_evals._registry" in sys.modules
print(json.dumps(got))
"""


def _probe(code: str, **env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_warm_worker_skips_the_eval_registry_and_still_finds_its_tasks() -> None:
    assert _probe(_WORKER_PROBE) == {
        "registry_after_warm_up": False,
        "agentdojo": 1,
        "registry_after_agentdojo": False,  # its own module registers it
        "registry_task": "inspect_evals/agent_threat_bench_autonomy_hijack",
        "registry_after_registry_task": True,
    }


_EXTENSION = """
from inspect_ai.hooks import Hooks, RunStart, hooks

RUNS = []

@hooks(name="probe_hooks", description="counts runs")
class ProbeHooks(Hooks):
    async def on_run_start(self, data: RunStart) -> None:
        RUNS.append(data.run_id)
"""

_HOOK_PROBE = """
import asyncio, json, sys, tempfile
from orchestrator.runner.inspect_run import _empty_eval, warm_worker
warm_worker()
import agentcat_probe_ext
warm_up_runs = len(agentcat_probe_ext.RUNS)
with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(_empty_eval(tmp))
print(json.dumps({"warm_up": warm_up_runs, "after": len(agentcat_probe_ext.RUNS),
                  "registry": "inspect_evals._registry" in sys.modules}))
"""


def test_an_extension_s_hooks_still_load_in_a_warm_worker(tmp_path: Path) -> None:
    """A package declaring an ``inspect_ai`` entry point (installed by its ``.dist-info``
    on the path) has its hooks registered by the warm-up and called in every eval."""
    (tmp_path / "agentcat_probe_ext.py").write_text(_EXTENSION, encoding="utf-8")
    info = tmp_path / "agentcat_probe_ext-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agentcat-probe-ext\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[inspect_ai]\nagentcat_probe_ext = agentcat_probe_ext\n", encoding="utf-8"
    )
    got = _probe(_HOOK_PROBE, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    assert got == {"warm_up": 1, "after": 2, "registry": False}


_REGISTRY_PROBE = """
import json
from importlib.metadata import entry_points
from inspect_ai._util import registry
from orchestrator.runner.extensions import TASK_REGISTRIES
before = set(registry._registry)
for ep in entry_points(group="inspect_ai"):
    if ep.name in TASK_REGISTRIES:
        ep.load()
print(json.dumps(sorted({key.split(":")[0] for key in set(registry._registry) - before})))
"""


def test_a_skipped_task_registry_registers_only_what_a_task_lookup_finds() -> None:
    """No hooks, model APIs or sandbox providers (Inspect finds those by scanning the
    registry, so a worker that skips the registry would miss them): a later
    inspect_evals that registers one fails here."""
    kinds = set(_probe(_REGISTRY_PROBE))
    assert "task" in kinds
    assert kinds <= {"task", "solver", "scorer", "metric", "tool", "agent", "score_reducer"}
