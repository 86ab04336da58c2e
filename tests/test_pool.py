"""The worker pool: workers start with the pool, warmed up before their first item."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys

import pytest

from orchestrator.runner.pool import WorkerPool
from tests.conftest import REPO

WARM_PROBE = """
import asyncio, json, subprocess, sys, tempfile
git_calls = []
real_run = subprocess.run
def counting_run(cmd, *a, **k):
    if "git" in str(cmd[0]):
        git_calls.append(cmd[1])
    return real_run(cmd, *a, **k)
subprocess.run = counting_run
from orchestrator.runner.inspect_run import _empty_eval, warm_worker
def evals():
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_empty_eval(tmp))
evals()
cold = len(git_calls)
warm_worker()
before = len(git_calls)
evals()
evals()
print(json.dumps({"cold": cold, "warm": len(git_calls) - before,
                  "openai": "openai" in sys.modules}))
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_warm_worker_asks_git_for_the_revision_once_not_per_eval() -> None:
    """Inspect runs ``git`` for every eval; after ``warm_worker`` (what each pool worker
    runs first) the revision is known and later evals run no git command."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # Inspect
    out = subprocess.run(  # skips git under pytest; the probe is not a test
        [sys.executable, "-c", WARM_PROBE], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["cold"] == 0:
        pytest.skip("not run from a git checkout: Inspect records no revision")
    assert got == {"cold": got["cold"], "warm": 0, "openai": True}


QUIET_PROBE = """
import asyncio, json, tempfile
import rich.live
lives = []
real_init = rich.live.Live.__init__
def counting_init(self, *a, **k):
    lives.append(1)
    real_init(self, *a, **k)
rich.live.Live.__init__ = counting_init
from orchestrator.runner.inspect_run import _empty_eval
from inspect_ai.log import list_eval_logs, read_eval_log
with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(_empty_eval(tmp))
    asyncio.run(_empty_eval(tmp))
    logs = [read_eval_log(info) for info in list_eval_logs(tmp)]
print(json.dumps({"lives": len(lives),
                  "logs": [(lg.status, len(lg.samples or []), bool(lg.results)) for lg in logs]}))
"""


def test_a_worker_s_evals_draw_no_display_and_still_write_whole_logs() -> None:
    """Inspect's display ``none`` still lays its live task screen and results table out
    for every eval (three ``rich`` Live objects an eval); a worker's evals build none,
    and their logs are still complete."""
    out = subprocess.run(
        [sys.executable, "-c", QUIET_PROBE], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"lives": 0, "logs": [["success", 1, True], ["success", 1, True]]}


def test_the_pool_starts_its_workers_when_it_is_created() -> None:
    before = set(multiprocessing.active_children())
    with WorkerPool(1):
        assert len(set(multiprocessing.active_children()) - before) == 1  # no item submitted


def test_a_worker_whose_parent_died_before_it_started_exits_at_once() -> None:
    """The death signal is armed in the worker's initializer; a parent killed before
    that would leave the worker waiting on its pipe forever. A worker told another
    parent than its own (what it sees once it was orphaned) exits instead of warming up."""
    code = (
        "import os, sys; from orchestrator.runner import pool\n"
        "pool.warm_worker = lambda: sys.exit(7)  # reached only by a worker that stays\n"
        "pool._init_worker(int(sys.argv[1]))\n"
    )
    run = [sys.executable, "-c", code]
    gone = subprocess.run([*run, "1"], cwd=REPO, timeout=60)  # pid 1 is not its parent
    assert gone.returncode == 1
    stays = subprocess.run([*run, str(os.getpid())], cwd=REPO, timeout=60)
    assert stays.returncode == 7
