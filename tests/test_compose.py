"""`docker compose up` for real: build offline, run to the stopping rule, stop midway, resume,
as a non-root user that owns what lands in the bind mount; then `down` removes it all.

Uses Debian's `docker-compose` (v1.29) when present, else `docker compose` (v2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.bank import load_bank
from orchestrator.runner.sandbox import managed_containers
from orchestrator.session.journal import Journal
from tests.conftest import REPO, TEST_IMAGES

pytestmark = [pytest.mark.docker, pytest.mark.slow]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PROJECT = f"agentcattest{os.getpid()}"
UID = 4242  # not this process's user: the files it writes must still be its


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed")


def _done_steps(runs: Path, session: str) -> int:
    path = runs / session / "journal.sqlite"
    if not path.exists():
        return 0
    try:
        j = Journal.open(path, readonly=True)
    except Exception:
        return 0
    try:
        return sum(1 for r in j.steps() if r.status == "done")
    finally:
        j.close()


def test_compose_up_runs_a_session_and_resumes_after_a_stop(
    base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.runner.images import build_images

    build_images(REPO / "environments", base_image=base_image)
    extra_ca = REPO / "docker" / "extra-ca-certificates" / "host.crt"
    if HOST_CA.exists():  # pip inside the build goes through this machine's TLS proxy
        shutil.copyfile(HOST_CA, extra_ca)
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, UID, UID)
    session = "compose-test"
    env = {
        **os.environ,
        "BASE_IMAGE": base_image,
        "AGENTCAT_IMAGE": f"{TEST_IMAGES}/orchestrator:latest",
        "AGENTCAT_RUNS": str(runs),
        "AGENTCAT_SESSION": session,
        "AGENTCAT_UID": str(UID),
        "AGENTCAT_GID": str(UID),
        "DOCKER_GID": str(Path("/var/run/docker.sock").stat().st_gid),
        "SIM_THETA": "0.8",
    }
    compose = [*_compose(), "-p", PROJECT, "-f", str(REPO / "docker-compose.yml")]

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout
        )

    try:
        built = run("build", timeout=1800)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        up = run("up", "-d")
        assert up.returncode == 0, up.stderr[-3000:]
        t0 = time.monotonic()
        while _done_steps(runs, session) < 3:
            assert time.monotonic() - t0 < 300, run("logs").stdout[-3000:]
            time.sleep(1)
        stopped = run("stop", "orchestrator")
        assert stopped.returncode == 0, stopped.stderr
        before = _done_steps(runs, session)
        assert before >= 3

        t1 = time.monotonic()
        final = run("up", "--abort-on-container-exit", "--exit-code-from", "orchestrator")
        up_to_result = time.monotonic() - t1
        assert final.returncode == 0, final.stdout[-4000:]
        assert "status      completed" in final.stdout
        print(f"second `up` to result: {up_to_result:.0f} s; {before} steps before the stop")
        down = run("down", "--remove-orphans", "--volumes", "--rmi", "all", timeout=300)
        assert down.returncode == 0, down.stderr[-3000:]
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True,
            text=True,
        )
        assert left.stdout.strip() == ""  # `down` removed the containers …
        nets = subprocess.run(
            ["docker", "network", "ls", "-q", "--filter", f"name={PROJECT}"],
            capture_output=True,
            text=True,
        )
        assert nets.stdout.strip() == ""  # … and the network
    finally:
        run("down", "--remove-orphans", "--volumes", "--rmi", "all", timeout=300)
        extra_ca.unlink(missing_ok=True)

    owners = {(p.stat().st_uid, p.stat().st_gid) for p in (runs / session).rglob("*")}
    assert owners == {(UID, UID)}  # AGENTCAT_UID/GID own everything in the bind mount
    summary = api.show(session, runs_dir=runs)  # on the host, where /app/… does not exist
    assert summary["status"] == "completed" and summary["warnings"] == []
    assert "?" not in summary["categories_by_family"]
    for step in summary["trajectory"]:  # journalled relative, resolved to host paths
        assert step["log"].startswith(str(runs.resolve())) and Path(step["log"]).is_file()
    steps = [t["step"] for t in summary["trajectory"]]
    assert steps == list(range(1, len(steps) + 1))  # nothing lost or run twice
    assert len(steps) > before
    assert managed_containers({"agentcat.session": session}) == []
    # the same session run in one go, in this process, ends at the same θ
    from orchestrator.sim.agent import SimAgent, parse_personas, scripts_for_bank
    from orchestrator.sim.server import SimServer

    bank = load_bank(REPO / "item_banks" / "shell-safety")
    agent = SimAgent(
        bank,
        scripts_for_bank(bank, REPO / "environments"),
        parse_personas(["demo=0.8"]),
    )
    monkeypatch.setenv("SIM_API_KEY", "k")
    with SimServer(agent) as srv:
        (ref,) = api.run(
            str(REPO / "configs" / "compose.yaml"),
            models=[
                {"model": "openai-api/sim/demo", "base_url": srv.url, "api_key_env": "SIM_API_KEY"}
            ],
            runs_dir=str(tmp_path / "ref"),
            session_id="ref",
            environments=str(REPO / "environments"),
            bank=str(REPO / "item_banks" / "shell-safety"),
        )
    assert [t["item"] for t in ref["trajectory"]] == [t["item"] for t in summary["trajectory"]]
    assert ref["theta"] == summary["theta"]
