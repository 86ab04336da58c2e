"""The worker pool: workers start with the pool, warmed up before their first item; it
hands queued jobs to free workers itself."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.bank import load_bank
from orchestrator.runner import pool as pool_module
from orchestrator.runner.inspect_run import RunJob
from orchestrator.runner.pool import WorkerPool
from orchestrator.runner.sources.scenario import ScenarioSource
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


def test_a_worker_whose_driver_died_before_it_started_exits_at_once() -> None:
    """The worker starts watching its driver in its initializer; a driver killed before
    that would leave the worker waiting on its pipe forever. A worker whose driver is
    already gone exits instead of warming up."""
    code = (
        "import os, sys; from orchestrator.runner import pool\n"
        "pool.warm_worker = lambda: sys.exit(7)  # reached only by a worker that stays\n"
        "pool._init_worker(int(sys.argv[1]))\n"
    )
    run = [sys.executable, "-c", code]
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    gone = subprocess.run([*run, str(dead.pid)], cwd=REPO, timeout=60)
    assert gone.returncode == 1
    stays = subprocess.run([*run, str(os.getpid())], cwd=REPO, timeout=60)
    assert stays.returncode == 7


_KILLED_DRIVER = """
import json, os, sys, time
from multiprocessing import forkserver
from orchestrator.runner.pool import WorkerPool
if __name__ == "__main__":
    pool = WorkerPool(2)
    for f in [pool._executor.submit(os.getpid) for _ in range(4)]:
        f.result()  # every worker has run its initializer
    server = getattr(forkserver._forkserver, "_forkserver_pid", None)
    workers = list(pool._executor._processes)
    parents = sorted({int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                      for p in workers})
    print(json.dumps({"workers": workers, "parents": parents, "server": server,
                      "server_threads": len(os.listdir(f"/proc/{server}/task"))}), flush=True)
    time.sleep(600)
"""


_LATER_ENVIRONMENT = """
import json, os, sys
from orchestrator.runner.pool import WorkerPool
if __name__ == "__main__":
    with WorkerPool(1) as pool:  # starts the fork server with the environment as it is now
        pool._executor.submit(os.getpid).result()
    os.environ["AGENTCAT_PROBE"] = "set later"
    os.chdir(sys.argv[1])
    with WorkerPool(1) as pool:
        got = [pool._executor.submit(f, *a).result()
               for f, a in ((os.getenv, ("AGENTCAT_PROBE",)), (os.getcwd, ()))]
    print(json.dumps(got))
"""


def test_a_worker_has_the_driver_s_environment_and_directory_as_the_pool_starts(
    tmp_path: Any,
) -> None:
    """As a spawned worker would, though a forked one starts from the fork server (which
    started with the driver's first pool)."""
    script = tmp_path / "driver.py"
    script.write_text(_LATER_ENVIRONMENT, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["set later", str(tmp_path)]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="workers are spawned, not forked")
def test_a_killed_driver_leaves_no_forked_worker_nor_fork_server(tmp_path: Any) -> None:
    """Workers fork from a single-threaded fork server that imported Inspect once; their
    parent is that server, so each watches the driver itself: ``kill -9`` of the driver
    ends the workers and the server within seconds."""
    script = tmp_path / "driver.py"
    script.write_text(_KILLED_DRIVER, encoding="utf-8")
    driver = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        got = json.loads(driver.stdout.readline())
    finally:
        driver.kill()
        driver.wait(30)
    assert got["parents"] == [got["server"]]  # forked from the server, not spawned
    assert got["server_threads"] == 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in [*got["workers"], got["server"]]):
        time.sleep(0.2)
    assert [p for p in [*got["workers"], got["server"]] if _alive(p)] == []


def _job(item: str, family: str) -> RunJob:
    return RunJob(
        session_id="s",
        session_key="k",
        item_id=item,
        step=1,
        attempt=1,
        source=ScenarioSource(family=family, variant="v"),
        n_categories=2,
        labels=("no", "yes"),
        model="mockllm/model",
        log_dir="-",
        prepared={"image": f"agentcat/{family}:1"},
        api_key="sk-secret",
    )


def _stand_in(job: RunJob) -> dict[str, Any]:
    """Runs in a pool worker instead of ``worker_entry``: reports the job the pool named
    to follow (and whether its key stayed behind) and when it ran; ``die`` kills the
    worker as an OOM kill would."""
    if job.item_id == "die":
        os._exit(1)
    time.sleep(0.3)
    nxt = job.next_job
    named = None if nxt is None else [nxt.item_id, nxt.api_key, nxt.next_job]
    return {"item_id": job.item_id, "score": 1, "explanation": json.dumps([named, time.time()])}


def _run_stand_ins(
    body: Callable[[WorkerPool], Awaitable[list[Any]]],
) -> tuple[list[str], dict[str, Any]]:
    """Run ``body`` on a one-worker pool of :func:`_stand_in` workers: the items in the
    order they ran, and the job each was told follows it (item, key, its ``next_job``)."""
    with WorkerPool(1) as pool:
        results = asyncio.run(body(pool))
    assert all(r.ok for r in results)
    runs = {r.item_id: json.loads(r.explanation or "") for r in results}
    return sorted(runs, key=lambda i: runs[i][1]), {i: run[0] for i, run in runs.items()}


def test_a_free_worker_gets_the_queued_job_its_spare_serves_and_is_told_its_next_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One worker, three jobs submitted at once. The first runs with nothing queued yet,
    so its worker readies a spare of its own family; when it is free, the job of that
    family goes ahead of an older one of another, and runs knowing which job follows
    (without the API key); every job runs once."""
    monkeypatch.setattr(pool_module, "worker_entry", _stand_in)

    async def body(pool: WorkerPool) -> list[Any]:
        jobs = [_job("a.1", "fam_a"), _job("b.1", "fam_b"), _job("a.2", "fam_a")]
        return list(await asyncio.gather(*(pool.submit(j) for j in jobs)))

    order, named = _run_stand_ins(body)
    assert order == ["a.1", "a.2", "b.1"]
    assert named == {
        "a.1": None,
        "a.2": ["b.1", None, None],
        "b.1": None,
    }


def test_with_nothing_queued_a_worker_readies_for_the_job_its_session_expects_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One worker. The first job goes out with nothing queued: it names the job its
    session expects next (``next_job``, another family), without the key, and that is
    the spare its worker readies, so when it is free the queued job of that family goes
    ahead of an older one of its own. A queued job beats a session's guess."""
    monkeypatch.setattr(pool_module, "worker_entry", _stand_in)

    def hinted(job: RunJob, following: RunJob) -> RunJob:
        return dataclasses.replace(job, next_job=following)

    async def body(pool: WorkerPool) -> list[Any]:
        first = pool.submit(hinted(_job("a.1", "fam_a"), _job("b.0", "fam_b")))
        running = asyncio.ensure_future(first)
        await asyncio.sleep(0.1)  # a.1 runs; the next two queue behind it
        rest = [_job("a.2", "fam_a"), hinted(_job("b.1", "fam_b"), _job("z.1", "fam_z"))]
        ran, queued = await asyncio.gather(running, asyncio.gather(*map(pool.submit, rest)))
        return [ran, *queued]

    order, named = _run_stand_ins(body)
    assert order == ["a.1", "b.1", "a.2"]
    assert named == {
        "a.1": ["b.0", None, None],
        "b.1": ["a.2", None, None],
        "a.2": None,
    }


def test_the_runner_names_the_item_its_session_expects_next_without_the_key(
    tmp_path: Path,
) -> None:
    """A request's ``next_item`` goes to the pool as the job's ``next_job``: that item's
    own source and image, the session's labels, and no API key; an item the runner cannot
    run names none (its worker's spare is then of its own item's spec)."""
    from orchestrator.config import load_config
    from orchestrator.runner.pool import InspectRunner
    from orchestrator.runner.result import ItemResult, RunRequest
    from orchestrator.runner.sources import LiveItems, bank_sources

    bank = load_bank(REPO / "item_banks" / "shell-safety")
    cfg = load_config(
        None,
        bank=str(bank.path),
        models=[{"model": "openai-api/sim/x", "api_key": "sk-secret"}],
        runs_dir=str(tmp_path / "runs"),
    )
    first, second = bank.ids[0], bank.ids[-1]
    sources = bank_sources(bank)
    items = LiveItems(
        {i: sources[i] for i in (first, second)},
        {first: {"image": "agentcat/a:1"}, second: {"image": "agentcat/b:1"}},
    )
    submitted: list[RunJob] = []

    class Recorder:
        async def submit(self, job: RunJob) -> ItemResult:
            submitted.append(job)
            return ItemResult(job.item_id, score=0)

    runner = InspectRunner(Recorder(), cfg, cfg.models[0], bank, tmp_path, items)  # type: ignore[arg-type]

    async def body() -> None:
        await runner.run(RunRequest("s", first, 3, 1, "key", next_item=second))
        await runner.run(RunRequest("s", first, 3, 1, "key", next_item=bank.ids[1]))

    asyncio.run(body())
    hinted, unrunnable = submitted
    assert hinted.api_key == "sk-secret"
    nxt = hinted.next_job
    assert nxt is not None and nxt.api_key is None and nxt.next_job is None
    assert (nxt.item_id, nxt.session_key, nxt.prepared) == (second, "key", items.prepared[second])
    assert nxt.sandbox_group() != hinted.sandbox_group()
    assert unrunnable.next_job is None


def test_a_worker_that_dies_faults_its_own_job_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job whose worker died is an ``internal`` fault; the job queued behind it runs
    on the new pool that replaces the broken one."""
    monkeypatch.setattr(pool_module, "worker_entry", _stand_in)

    async def body(pool: WorkerPool) -> list[Any]:
        jobs = [_job("die", "fam_a"), _job("a.1", "fam_a")]
        return list(await asyncio.gather(*(pool.submit(j) for j in jobs)))

    with WorkerPool(1) as pool:
        died, ran = asyncio.run(body(pool))
    assert died.error_kind == "internal"
    assert "worker process died" in (died.error_message or "")
    assert ran.ok


def test_a_model_check_in_a_worker_fails_with_the_drivers_message_and_hint() -> None:
    """The pre-flight request runs in a worker; its failure reaches the driver whole (an
    exception pickled across the process boundary would lose its hint)."""
    from orchestrator.config import ModelSpec
    from orchestrator.errors import PrerequisiteError

    refused = ModelSpec(
        model="openai-api/sim/theta_0.5", base_url="http://127.0.0.1:9/v1", api_key="sk-x" * 4
    )
    with WorkerPool(1) as pool, pytest.raises(PrerequisiteError) as exc:
        pool.check_models([refused], timeout_s=10)
    assert exc.value.message.startswith(
        "model 'openai-api/sim/theta_0.5' at http://127.0.0.1:9/v1 failed a test request: "
    )
    assert exc.value.hint is not None and "no item was run" in exc.value.hint
