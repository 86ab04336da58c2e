"""Hostile agents and endpoints, live: real Inspect runs in real sandboxes against the
simulated agent server's hostile personas and fault modes (see orchestrator/sim/hostile.py).

* a model call over ``model_timeout_s`` is a ``model_api`` fault, never a grade;
* an endpoint that echoes the API key puts it in no file and on no terminal;
* endpoint and set-up faults (rejected key, unknown model, refused connection,
  missing environments) fail before any item runs, and mid-session they pause
  the session without charging the item;
* an agent that only emits garbage is graded on the container as it stands
  (category 2), with the message limit named in the explanation.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
import zipfile_zstd  # noqa: F401  (Inspect's .eval members are zstd)

from orchestrator import api
from orchestrator.bank import load_bank
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.runner.sandbox import managed_containers
from orchestrator.session.journal import Journal
from orchestrator.sim.agent import SimAgent, scripts_for_bank
from orchestrator.sim.server import FaultConfig, SimServer
from tests.conftest import REPO

pytestmark = pytest.mark.docker
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"


@pytest.fixture(scope="module")
def live_images(base_image: str) -> None:
    from orchestrator.runner.images import build_images

    build_images(ENV, base_image=base_image)


@pytest.fixture(scope="module")
def agent() -> SimAgent:
    bank = load_bank(BANK)
    return SimAgent(bank, scripts_for_bank(bank, ENV), seed=3)


def _secret() -> str:
    return "sk-hostile-" + os.urandom(12).hex()


def _rows(runs: Path, session: str) -> list:
    j = Journal.open(runs / session, readonly=True)
    try:
        return j.steps()
    finally:
        j.close()


def _files_holding(root: Path, secret: str) -> list[str]:
    """Every file under ``root`` (and every member of every zip archive) containing ``secret``."""
    hits = []
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        blobs = [p.read_bytes()]
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                blobs += [z.read(n) for n in z.namelist()]
        if any(secret.encode() in b for b in blobs):
            hits.append(str(p))
    return hits


def _run_args(url: str, model: str, runs: Path, session: str, *extra: str) -> list[str]:
    return [
        "run",
        "--bank",
        str(BANK),
        "--environments",
        str(ENV),
        "--model",
        f"openai-api/sim/{model}",
        "--base-url",
        url,
        "--api-key-env",
        "SIM_API_KEY",
        "--runs-dir",
        str(runs),
        "--session-id",
        session,
        *extra,
    ]


# ----------------------------------------------------------------------------- preflight
@pytest.mark.parametrize("fault", ["wrong_key", "unknown_model", "refused", "no_environments"])
def test_endpoint_and_setup_faults_fail_before_any_item(
    fault: str,
    live_images: None,
    agent: SimAgent,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The endpoint echoes a rejected key in its 401; it must not reach the terminal either."""
    right, presented = _secret(), _secret()
    monkeypatch.setenv("SIM_API_KEY", presented if fault == "wrong_key" else right)
    runs = tmp_path / "runs"
    with SimServer(agent, api_key=right, faults=FaultConfig(echo_key=True)) as srv:
        url = "http://127.0.0.1:9/v1" if fault == "refused" else srv.url
        model = "no_such_model" if fault == "unknown_model" else "theta_0.5"
        args = _run_args(url, model, runs, "pre", "--max-items", "2")
        if fault == "no_environments":
            args[args.index("--environments") + 1] = str(tmp_path / "missing")
        code = main(args)
        scenario_requests = dict(srv.stats.items)
    out, err = capsys.readouterr()
    assert code == 1, err
    why = "no scenario family" if fault == "no_environments" else "no item was run"
    assert "error:" in err and why in err, err
    assert scenario_requests == {}  # not one scenario turn was asked of the model
    assert not (runs / "pre" / "journal.sqlite").exists()  # no session, nothing charged
    assert presented not in out + err and right not in out + err
    if fault == "wrong_key":
        assert "401" in err and "[redacted]" in err  # the echo happened and was scrubbed


def test_an_auth_fault_mid_session_pauses_it_without_charging_the_item(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is revoked after step 1: the session pauses at once (not skip, not retry),
    and resumed with a valid key it re-runs that item and finishes."""
    from orchestrator.session.orchestrate import resume_session, run_sessions

    key = _secret()
    monkeypatch.setenv("SIM_API_KEY", key)
    runs = tmp_path / "runs"
    with SimServer(agent, api_key=key) as srv:
        cfg = load_config(
            None,
            bank=str(BANK),
            environments=str(ENV),
            runs_dir=str(runs),
            session_id="revoked",
            max_items=3,
            models=[
                {
                    "model": "openai-api/sim/theta_0.5",
                    "base_url": srv.url,
                    "api_key_env": "SIM_API_KEY",
                }
            ],
            workers=1,
        )

        def revoke_after_step_1(ev) -> None:
            if ev.kind == "step" and ev.step == 1:
                srv.api_key = "revoked-" + key

        asyncio.run(run_sessions(cfg, revoke_after_step_1))
        paused = api.show("revoked", runs_dir=runs)
        rows = _rows(runs, "revoked")
        srv.api_key = key
        asyncio.run(resume_session("revoked", runs))
    done = api.show("revoked", runs_dir=runs)
    assert paused["status"] == "paused" and "no item is charged" in paused["stop_reason"]
    errors = [r for r in rows if r.status == "error"]
    assert [(r.step, r.error_kind) for r in errors] == [(2, "setup")]
    assert not any(r.status == "skipped" for r in rows)
    after = _rows(runs, "revoked")
    assert done["status"] == "completed" and done["n_items"] == 3
    step2 = [r for r in after if r.step == 2]
    assert [(r.attempt, r.status) for r in step2] == [(1, "error"), (2, "done")]
    assert step2[0].item_id == step2[1].item_id
    assert managed_containers({"agentcat.session": "revoked"}) == []


# ----------------------------------------------------------------------------- model timeout
def test_a_model_call_over_the_limit_is_a_model_api_fault(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `slow` persona answers every scenario turn after 8 s; model_timeout_s is 2.
    Meanwhile its sandbox must carry the run's labels (prune and resume rely on them)."""
    import threading

    from orchestrator.runner.docker_client import docker_client

    key = _secret()
    monkeypatch.setenv("SIM_API_KEY", key)
    runs = tmp_path / "runs"
    seen: list[dict] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen:
            found = docker_client().api.containers(filters={"label": "agentcat.session=slow"})
            seen.extend(c["Labels"] for c in found)
            done.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with SimServer(agent, api_key=key, faults=FaultConfig(slow_s=8)) as srv:
        (summary,) = api.run(
            None,
            bank=str(BANK),
            environments=str(ENV),
            runs_dir=str(runs),
            session_id="slow",
            max_items=2,
            models=[
                {"model": "openai-api/sim/slow", "base_url": srv.url, "api_key_env": "SIM_API_KEY"}
            ],
            retry={
                "model_timeout_s": 2,
                "model_max_retries": 1,
                "max_attempts": 1,
                "max_consecutive_errors": 1,
            },
            workers=1,
        )
    done.set()
    watcher.join(10)
    rows = _rows(runs, "slow")
    assert seen and seen[0]["agentcat.role"] == "sandbox"
    assert seen[0]["agentcat.item"] == rows[0].item_id and seen[0]["agentcat.run"] == "1.1"
    assert len(seen[0]["agentcat.session.key"]) == 16
    assert seen[0]["agentcat.owner.pid"] != str(os.getpid())  # a worker process owns it
    assert summary["status"] == "paused"
    assert [r.status for r in rows] == ["error"]
    assert rows[0].error_kind == "model_api" and rows[0].score is None
    assert "attempt_timeout" in (rows[0].error_message or "")


# ----------------------------------------------------------------------------- secrets
def test_an_endpoint_that_echoes_the_key_puts_it_nowhere(
    live_images: None,
    agent: SimAgent,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The `echo` endpoint answers each scenario turn with a 401 that quotes the key."""
    key = _secret()
    monkeypatch.setenv("SIM_API_KEY", key)
    runs = tmp_path / "runs"
    started = time.time()
    with SimServer(agent, api_key=key) as srv:
        code = main(_run_args(srv.url, "echo", runs, "echo", "--max-items", "2"))
        assert srv.stats.items  # the scenario turn was answered with the echo
    out, err = capsys.readouterr()
    assert code == 3  # paused: a rejected key is a set-up fault
    rows = _rows(runs, "echo")
    assert rows and all(r.status == "error" and r.error_kind == "setup" for r in rows)
    assert "[redacted]" in (rows[0].error_message or "")  # the echo reached us, scrubbed
    assert any(p.suffix == ".eval" for p in runs.rglob("*"))
    assert _files_holding(runs, key) == []
    assert key not in out + err
    from inspect_ai._util.trace import inspect_trace_dir

    traces = [p for p in inspect_trace_dir().glob("*.log") if p.stat().st_mtime >= started]
    assert not [p for p in traces if key.encode() in p.read_bytes()]


# ----------------------------------------------------------------------------- the scale
def test_a_garbage_agent_hits_the_message_limit_and_is_graded_safe_not_done(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _secret()
    monkeypatch.setenv("SIM_API_KEY", key)
    runs = tmp_path / "runs"
    with SimServer(agent, api_key=key) as srv:
        (summary,) = api.run(
            None,
            bank=str(BANK),
            environments=str(ENV),
            runs_dir=str(runs),
            session_id="garbage",
            max_items=1,
            models=[
                {
                    "model": "openai-api/sim/garbage",
                    "base_url": srv.url,
                    "api_key_env": "SIM_API_KEY",
                }
            ],
            limits={"message_limit": 8},
            workers=1,
        )
    (row,) = _rows(runs, "garbage")
    assert summary["status"] == "completed", summary
    assert (row.status, row.score, row.label) == ("done", 2, "safe, task not done")
    assert "stopped by the message limit (8)" in (row.explanation or "")


# ----------------------------------------------------------------------------- all of them
@pytest.mark.slow
def test_hostile_personas_score_no_fault_store_no_secret_leak_nothing(
    live_images: None, tmp_path: Path
) -> None:
    """bench/bench_hostile.py, small: every persona through a real `agentcat run`."""
    import subprocess
    import sys

    out = tmp_path / "hostile.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_hostile.py"),
            "--items",
            "2",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    doc = json.loads(out.read_text())
    by = {r["persona"]: r for r in doc["personas"]}
    assert doc["totals"] == {
        "faults_scored": 0,
        "secrets_stored": 0,
        "secrets_printed": 0,
        "leaked_containers": 0,
    }
    assert by["slow"]["scored"] == 0 and set(by["slow"]["faults"]) == {"model_api"}
    assert by["echo"]["scored"] == 0 and by["echo"]["faults"] == {"setup": 1}
    assert by["echo"]["redacted_in_journal"] == 1
    assert by["garbage"]["categories"] == {"2": by["garbage"]["scored"]}
    for persona in ("escape", "garbage"):
        assert by[persona]["status"] == "completed" and not by[persona]["faults"], by[persona]
    # the destroyer deletes what the checks protect: 0 when graded; when its fork bomb
    # outlives the command and holds the sandbox at its pids limit, no probe can start:
    # a sandbox fault (fail closed), retried, never a grade
    assert set(by["destroyer"]["categories"]) <= {"0"}
    assert set(by["destroyer"]["faults"]) <= {"sandbox"}
    assert by["destroyer"]["no_space_left_in_transcript"] > 0  # the disk caps held
