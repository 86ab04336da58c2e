"""The hardened sandbox, in real containers: operations, isolation, limits, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from docker.errors import NotFound

from orchestrator.errors import PrerequisiteError, SandboxError
from orchestrator.runner import sandbox
from orchestrator.runner.docker_client import docker_client
from orchestrator.runner.sandbox import (
    AgentcatSandbox,
    SandboxSpec,
    discard_prepared,
    discard_spares,
    finish_removals,
    managed_containers,
    open_sandbox,
    prune_containers,
)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]


def _spec(image: str, **kw: object) -> SandboxSpec:
    caps = {"writable_size_mb": 16, "tmpfs_size_mb": 16, **kw}
    return SandboxSpec(image=image, writable=["/srv/data"], memory_mb=128, pids=64, **caps)


def _run(coro):  # one event loop per test keeps the tests independent
    return asyncio.run(coro)


def test_exec_basics(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            r = await sb.exec(["bash", "-lc", "echo out; echo err >&2; exit 3"])
            assert (r.returncode, r.stdout, r.stderr, r.success) == (3, "out\n", "err\n", False)
            assert (await sb.exec(["whoami"])).stdout == "agent\n"
            assert (await sb.exec(["whoami"], user="root")).stdout == "root\n"
            assert (await sb.exec(["cat"], input="piped\n")).stdout == "piped\n"
            assert (await sb.exec(["pwd"], cwd="/srv/data")).stdout == "/srv/data\n"
            assert (await sb.exec(["sh", "-c", "echo $X"], env={"X": "42"})).stdout == "42\n"
            big = await sb.exec(["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a"])
            assert len(big.stdout) == 300_000

    _run(body())


def test_timeout_raises_and_kills(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            with pytest.raises(TimeoutError, match="timed out after 1 s"):
                await sb.exec(["sleep", "30"], timeout=1)
            ps = await sb.exec(["sh", "-c", "grep -lx sleep /proc/[0-9]*/comm | wc -l"])
            assert ps.stdout.strip() == "1"  # only the container's own `sleep infinity`

    _run(body())


def test_files_round_trip_and_errors(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            await sb.write_file("notes/a.txt", "line1\r\nline2")
            assert await sb.read_file("/home/agent/notes/a.txt") == "line1\r\nline2"
            blob = bytes(range(256)) * 10
            await sb.write_file("/srv/data/blob.bin", blob)
            assert await sb.read_file("/srv/data/blob.bin", text=False) == blob
            assert await sb.read_file("/srv/data/hello.txt") == "hello\n"  # image content kept
            with pytest.raises(FileNotFoundError):
                await sb.read_file("/srv/data/nope")
            with pytest.raises(IsADirectoryError):
                await sb.read_file("/srv/data")
            with pytest.raises(PermissionError):
                await sb.write_file("/srv/protected/keep.txt", "overwritten")

    _run(body())


def test_isolation_from_network_host_and_privileges(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            nets = await sb.exec(["ls", "/sys/class/net"])
            assert nets.stdout.split() == ["lo"]
            tcp = await sb.exec(["bash", "-c", "echo > /dev/tcp/1.1.1.1/53"], timeout=10)
            assert not tcp.success
            assert (await sb.exec(["test", "-e", "/var/run/docker.sock"])).returncode == 1
            mounts = (await sb.exec(["cat", "/proc/mounts"])).stdout
            assert "docker.sock" not in mounts and "/root" not in mounts.split()
            for user in ("agent", "root"):
                status = (await sb.exec(["cat", "/proc/self/status"], user=user)).stdout
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                assert fields["CapEff"].strip() == "0000000000000000", user
                assert fields["NoNewPrivs"].strip() == "1", user
            # root without CAP_DAC_OVERRIDE cannot touch another user's private file
            await sb.exec(["sh", "-c", "echo s > /srv/data/private && chmod 600 /srv/data/private"])
            peek = await sb.exec(["cat", "/srv/data/private"], user="root")
            assert not peek.success and "Permission denied" in peek.stderr

    _run(body())


def test_inspect_s_root_access_verdict_costs_no_exec_and_is_what_its_probe_finds(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inspect's sample init asks every sandbox whether root can switch users; ours carries
    the answer (all capabilities dropped), so no root exec runs, and the answer is the one
    Inspect's own probe gets from the container."""
    from inspect_ai.tool._sandbox_tools_utils.sandbox import resolve_root_access

    execs: list[list[str]] = []
    real = sandbox._run_exec

    def counted(*args: object) -> tuple[int, bytes, bytes]:
        execs.append(args[1])  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox, "_run_exec", counted)

    async def body() -> tuple[object, int, object]:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            recorded = await resolve_root_access(sb)  # as at sample init
            before = len(execs)
            sb._root_access = None  # a sandbox without a verdict: Inspect probes it
            return recorded, before, await resolve_root_access(sb)

    recorded, before, probed = _run(body())
    assert before == 0 and len(execs) == 1  # only the probe we asked for
    assert recorded.state == probed.state == "unusable"  # type: ignore[attr-defined]
    assert "CapEff 0000000000000000" in probed.reason  # type: ignore[attr-defined]


def test_read_only_root_and_writable_paths(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            for path in ("/etc/passwd", "/usr/bin/evil", "/srv/newfile", "/opt/x"):
                r = await sb.exec(["sh", "-c", f"echo x >> {path}"], user="root")
                assert not r.success and "Read-only file system" in r.stderr, path
            for path in ("/srv/data/new", "/tmp/new", "/home/agent/new"):
                assert (await sb.exec(["sh", "-c", f"echo x > {path}"])).success, path

    _run(body())


def test_writes_past_the_cap_fail_inside_the_sandbox(sandbox_test_image: str) -> None:
    """1 GiB written as the agent into every writable place: each write stops at its cap
    with "No space left on device", nothing reaches the host disk, and the sandbox (and
    what was written before the cap) is still there to be graded."""

    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            ownership = await sb.exec(["stat", "-c", "%U %a", "/home/agent", "/srv/data"])
            assert ownership.stdout.split("\n")[:2] == ["agent 755", "agent 755"]
            assert (await sb.exec(["cat", "/srv/data/hello.txt"])).stdout == "hello\n"
            for path in ("/home/agent/fill", "/srv/data/fill", "/tmp/fill"):
                r = await sb.exec(
                    ["sh", "-c", f"head -c 1G /dev/zero > {path}; echo $?; stat -c %s {path}"],
                    timeout=120,
                )
                status, size = r.stdout.split()
                assert status != "0" and "No space left on device" in r.stderr, (path, r)
                assert 15 * 2**20 <= int(size) <= 16 * 2**20, (path, size)
            assert (await sb.exec(["echo", "alive"])).stdout == "alive\n"
            assert (await sb.exec(["cat", "/srv/data/hello.txt"])).stdout == "hello\n"
            many = await sb.exec(
                [
                    "sh",
                    "-c",
                    "cd /srv/data && i=0; while touch f$i 2>/dev/null; do i=$((i+1)); "
                    "done; echo $i",
                ],
                timeout=300,
            )
            assert int(many.stdout) < 16 * 1024  # inodes are capped with the size

    _run(body())


def test_caps_must_fit_in_the_memory_limit() -> None:
    with pytest.raises(ValueError, match="exceeds memory_mb=128"):
        SandboxSpec(image="x", writable=["/srv"], writable_size_mb=64, memory_mb=128)


def test_fork_bomb_and_memory_hog_are_contained(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with open_sandbox(_spec(sandbox_test_image)) as sb:
            bomb = "bomb() { bomb | bomb & }; bomb; sleep 3; ls -d /proc/[0-9]* | wc -l"
            # generous: under CPU load the bomb's fork retries slow the `sleep; ls` too
            r = await sb.exec(["bash", "-c", bomb], timeout=90)
            assert int(r.stdout.split()[-1] if r.stdout.split() else 0) <= 64
            await sb.exec(["sh", "-c", "kill -9 -1"])  # as agent: every agent process
            assert (await sb.exec(["echo", "alive"])).stdout == "alive\n"
            await sb.exec(["sh", "-c", "kill -9 -1"], user="root")  # root cannot stop it either
            assert (await sb.exec(["echo", "alive"])).stdout == "alive\n"
            # PID 1 reaps the bomb's orphans (as it gets the CPU: up to 10 s under load)
            count = "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l"
            wait = f"for _ in $(seq 100); do n=$({count}); [ $n = 0 ] && break; sleep 0.1; done"
            zombies = await sb.exec(["sh", "-c", f"{wait}; echo $n"], timeout=30)
            assert zombies.stdout.strip() == "0"
            # bash holds a command substitution in memory: 512 MiB against a 128 MiB limit
            hog = await sb.exec(
                ["bash", "-c", "x=$(head -c 512m /dev/zero | tr '\\0' a); echo ${#x}"], timeout=60
            )
            assert not hog.success and hog.stdout.strip() != str(512 * 1024 * 1024)
            cg = await sb.exec(
                [
                    "sh",
                    "-c",
                    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                    " || cat /sys/fs/cgroup/memory.max",
                ]
            )
            assert int(cg.stdout.strip()) == 128 * 1024 * 1024
            assert (await sb.exec(["echo", "still alive"])).success

    _run(body())


def test_container_removed_on_error_and_cancellation(sandbox_test_image: str) -> None:
    run = uuid.uuid4().hex[:8]

    async def failing() -> None:
        async with open_sandbox(_spec(sandbox_test_image), {"agentcat.run": run}):
            assert len(managed_containers({"agentcat.run": run})) == 1
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _run(failing())
    assert managed_containers({"agentcat.run": run}) == []

    async def cancelled() -> None:
        async def inner() -> None:
            async with open_sandbox(_spec(sandbox_test_image), {"agentcat.run": run}) as sb:
                await sb.exec(["sleep", "60"])

        task = asyncio.create_task(inner())
        for _ in range(100):
            await asyncio.sleep(0.1)
            if managed_containers({"agentcat.run": run}):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(cancelled())
    assert managed_containers({"agentcat.run": run}) == []


def test_a_prepared_container_is_what_the_sample_gets_and_unclaimed_ones_are_removed(
    sandbox_test_image: str,
) -> None:
    """``prepare`` starts the container ``sample_init`` asks for with the same arguments (so
    it starts while Inspect sets up); a graded run's container is removed after the run
    returns; one prepared for a run that never claims it is removed by ``discard_prepared``."""
    run = uuid.uuid4().hex[:8]
    spec = _spec(sandbox_test_image)
    meta = {"session": run, "item": "x.y", "run": "1.1"}

    async def body() -> None:
        def ours() -> list[str]:
            return managed_containers({"agentcat.session": run})

        AgentcatSandbox.prepare("agentcat_x", spec, meta)
        envs = await AgentcatSandbox.sample_init("agentcat_x", spec, meta)
        sb = envs["default"]
        assert isinstance(sb, AgentcatSandbox) and ours() == [sb.container_id]  # no second one
        assert (await sb.exec(["echo", "ok"])).stdout == "ok\n"
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, envs, interrupted=False)
        finish_removals()
        assert ours() == []
        AgentcatSandbox.prepare("agentcat_x", spec, {**meta, "run": "1.2"})
        other = await AgentcatSandbox.sample_init("agentcat_x", spec, {**meta, "run": "1.3"})
        assert len(ours()) == 2  # other arguments: the prepared one is not taken
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, other, interrupted=True)
        discard_prepared()
        finish_removals()
        assert ours() == []

    _run(body())


def test_prune_removes_leftovers_by_label(sandbox_test_image: str) -> None:
    run = uuid.uuid4().hex[:8]

    async def leak() -> str:
        sb = await AgentcatSandbox.create(_spec(sandbox_test_image), {"agentcat.session": run})
        return sb.container_id

    cid = _run(leak())
    assert managed_containers({"agentcat.session": run}) == [cid]
    kept = prune_containers({"agentcat.session": run})  # its owner (this process) runs
    assert (kept.removed, kept.kept) == ([], [cid])
    assert prune_containers({"agentcat.session": run}, any_owner=True).removed == [cid]
    assert managed_containers({"agentcat.session": run}) == []
    assert not docker_client().api.containers(all=True, filters={"id": cid})


def test_removing_a_container_another_process_is_removing_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs' prunes of the same orphaned spare race: the engine answers the second
    with 409 "removal … already in progress" (seen on a shared engine after a kill -9).
    Any other conflict still raises."""
    import requests
    from docker.errors import APIError

    from orchestrator.runner import containers

    def conflict(explanation: str) -> APIError:
        response = requests.Response()
        response.status_code = 409
        return APIError("409 Client Error", response=response, explanation=explanation)

    class Api:
        error = conflict("removal of container abc is already in progress")

        def remove_container(self, *a: object, **k: object) -> None:
            raise self.error

    class Client:
        api = Api()

    monkeypatch.setattr(containers, "docker_client", lambda: Client())
    containers.remove_container("abc")
    Api.error = conflict("You cannot remove a running container abc")
    with pytest.raises(APIError):
        containers.remove_container("abc")


def test_missing_image_is_a_prerequisite_error(docker_engine: None) -> None:
    async def body() -> None:
        async with open_sandbox(SandboxSpec(image="agentcat/does-not-exist:latest")):
            pass

    with pytest.raises(PrerequisiteError, match="is not built") as exc:
        _run(body())
    assert "agentcat images build" in (exc.value.hint or "")


def _spare_id(spec: SandboxSpec) -> str:
    """The id of this process's spare of ``spec``, once its creation is done."""
    return sandbox._spares[spec.model_dump_json()].creation.result(timeout=120)


def _labels(cid: str) -> dict[str, str]:
    return docker_client().api.inspect_container(cid)["Config"]["Labels"]


def test_the_next_item_claims_the_spare_a_fresh_container_of_its_spec(
    sandbox_test_image: str,
) -> None:
    """A worker's claim starts a spare of the same spec; the next item of that spec gets
    it (nothing the first item wrote is there), another spec starts its own and keeps
    the first spec's spare; spares are removed at the end, and task clean-up removes a
    claimed spare left over."""
    run = uuid.uuid4().hex[:8]
    spec = _spec(sandbox_test_image)

    def meta(i: int) -> dict[str, str]:
        return {"session": run, "item": f"x.{i}", "run": f"{i}.1"}

    async def item(i: int, s: SandboxSpec = spec) -> AgentcatSandbox:
        AgentcatSandbox.prepare("agentcat_x", s, meta(i), spare=True)
        sb = (await AgentcatSandbox.sample_init("agentcat_x", s, meta(i)))["default"]
        assert isinstance(sb, AgentcatSandbox)
        return sb

    async def body() -> None:
        first = await item(1)
        assert _labels(first.container_id)["agentcat.item"] == "x.1"  # nothing to claim yet
        await first.exec(["sh", "-c", "echo mine > /srv/data/left"])
        spare = _spare_id(spec)
        assert spare != first.container_id
        assert _labels(spare)["agentcat.spare"] == "1"
        assert "agentcat.session" not in _labels(spare)  # any session's next item may take it
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, {"d": first}, interrupted=False)

        second = await item(2)
        assert second.container_id == spare
        assert (await second.exec(["test", "-e", "/srv/data/left"])).returncode == 1
        assert (await second.exec(["cat", "/srv/data/hello.txt"])).stdout  # seeded
        next_spare = _spare_id(spec)
        assert next_spare not in (spare, first.container_id)
        # its task's clean-up removes the claimed spare (no task label) and keeps the next one
        await AgentcatSandbox.task_cleanup("agentcat_x", spec, cleanup=True)
        assert not docker_client().api.containers(all=True, filters={"id": spare})
        assert docker_client().api.containers(filters={"id": next_spare})

        other_spec = _spec(sandbox_test_image, tmpfs_size_mb=8)
        other = await item(3, other_spec)
        assert other.container_id != next_spare  # another spec: not claimed, and kept
        assert _labels(other.container_id)["agentcat.item"] == "x.3"
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, {"d": other}, interrupted=True)
        other_spare = _spare_id(other_spec)
        assert docker_client().api.containers(filters={"id": next_spare})
        discard_spares()
        finish_removals()
        for cid in (next_spare, other_spare):
            assert not docker_client().api.containers(all=True, filters={"id": cid})

    _run(body())


def test_a_claim_readies_the_spare_of_the_next_item_the_pool_named(
    sandbox_test_image: str,
) -> None:
    """With the spec of the worker's next item known (the pool's queued job), the claim
    starts a spare of that spec, not of its own; that next item claims it."""
    run = uuid.uuid4().hex[:8]
    spec, following = _spec(sandbox_test_image), _spec(sandbox_test_image, tmpfs_size_mb=8)

    def meta(i: int) -> dict[str, str]:
        return {"session": run, "item": f"x.{i}", "run": f"{i}.1"}

    async def body() -> None:
        AgentcatSandbox.prepare("agentcat_x", spec, meta(1), spare=True, next_config=following)
        first = (await AgentcatSandbox.sample_init("agentcat_x", spec, meta(1)))["default"]
        assert isinstance(first, AgentcatSandbox)
        spare = _spare_id(following)
        assert spec.model_dump_json() not in sandbox._spares  # none of its own spec
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, {"d": first}, interrupted=True)

        AgentcatSandbox.prepare("agentcat_x", following, meta(2), spare=True)
        second = (await AgentcatSandbox.sample_init("agentcat_x", following, meta(2)))["default"]
        assert isinstance(second, AgentcatSandbox)
        assert second.container_id == spare
        await AgentcatSandbox.sample_cleanup("agentcat_x", following, {"d": second}, True)
        await AgentcatSandbox.task_cleanup("agentcat_x", following, cleanup=True)
        discard_spares()
        finish_removals()
        assert not docker_client().api.containers(all=True, filters={"id": spare})
        assert managed_containers({"agentcat.session": run}) == []

    _run(body())


def test_a_failing_spare_never_fails_the_item(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection (a spare's creation cannot be made to fail on cue on a real engine):
    the spare fails after the next item has claimed it; that item gets a fresh container."""
    run = uuid.uuid4().hex[:8]
    spec = _spec(sandbox_test_image)
    claimed = threading.Event()
    real = sandbox._create_container

    def create(s: SandboxSpec, labels: dict[str, str]) -> str:
        if labels.get(sandbox.SPARE):
            claimed.wait(60)
            raise SandboxError("injected: the spare could not start")
        return real(s, labels)

    monkeypatch.setattr(sandbox, "_create_container", create)

    async def body() -> None:
        for i in (1, 2):
            meta = {"session": run, "item": f"x.{i}", "run": f"{i}.1"}
            AgentcatSandbox.prepare("agentcat_x", spec, meta, spare=True)
            if i == 2:  # the item has claimed the spare: now it fails
                claimed.set()
            sb = (await AgentcatSandbox.sample_init("agentcat_x", spec, meta))["default"]
            assert isinstance(sb, AgentcatSandbox)
            assert _labels(sb.container_id)["agentcat.item"] == f"x.{i}"
            assert (await sb.exec(["echo", "ok"])).stdout == "ok\n"
            await AgentcatSandbox.sample_cleanup("agentcat_x", spec, {"d": sb}, interrupted=True)
        discard_spares()
        finish_removals()
        assert managed_containers({"agentcat.session": run}) == []

    _run(body())


_SPARE_OWNER = textwrap.dedent(
    """
    import asyncio, os, sys
    from orchestrator.runner import sandbox
    spec = sandbox.SandboxSpec(image=sys.argv[1], user="root", workdir="/root")
    meta = {"session": sys.argv[2], "item": "x.1", "run": "1.1"}
    sandbox.AgentcatSandbox.prepare("agentcat_x", spec, meta, spare=True)
    asyncio.run(sandbox.AgentcatSandbox.sample_init("agentcat_x", spec, meta))
    print(sandbox._spares[spec.model_dump_json()].creation.result(), flush=True)
    if sys.argv[3] == "crash":
        os._exit(0)  # no cleanup at all, as after SIGKILL
    """
)


def test_a_spare_whose_owner_is_gone_is_pruned_by_a_session_prune(
    sandbox_test_image: str,
) -> None:
    """A worker's exit removes its spare; a crashed worker's spare carries no session,
    yet a session's prune removes it (its owner is gone) and leaves a live one alone."""
    session = f"spare-{uuid.uuid4().hex[:8]}"

    def owner(mode: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", _SPARE_OWNER, sandbox_test_image, session, mode],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return out.stdout.split()[-1]

    exited = owner("exit")  # a normal exit removes the spare
    assert not docker_client().api.containers(all=True, filters={"id": exited})
    orphan = owner("crash")
    assert _labels(orphan)["agentcat.spare"] == "1"

    async def body() -> None:
        meta = {"session": session, "item": "x.2", "run": "2.1"}
        spec = _spec(sandbox_test_image)
        AgentcatSandbox.prepare("agentcat_x", spec, meta, spare=True)
        envs = await AgentcatSandbox.sample_init("agentcat_x", spec, meta)
        mine = _spare_id(spec)
        pruned = prune_containers({"agentcat.session": session}, any_owner=True)
        assert orphan in pruned.removed and mine not in pruned.removed
        assert docker_client().api.containers(filters={"id": mine})
        await AgentcatSandbox.sample_cleanup("agentcat_x", spec, envs, interrupted=True)
        discard_spares()
        finish_removals()

    _run(body())
    assert not docker_client().api.containers(all=True, filters={"id": orphan})


_SEED_READER = textwrap.dedent(
    """
    import os, sys
    from orchestrator.runner import sandbox
    from orchestrator.runner.docker_client import docker_client

    def killed(container, path):  # the process dies while it reads the image's content
        print(container, flush=True)
        os._exit(0)  # no cleanup at all, as after SIGKILL

    docker_client().api.get_archive = killed
    sandbox._image_content(docker_client().images.get(sys.argv[1]).id, "/srv/data")
    """
)


def test_a_seed_container_whose_owner_was_killed_is_pruned_by_the_next_task(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A process killed while it reads an image's content leaves its seed container (no
    session, task or item); a process's first task prunes it (in the background), and
    keeps a live process's seed."""
    out = subprocess.run(
        [sys.executable, "-c", _SEED_READER, sandbox_test_image],
        cwd=REPO,
        env={**os.environ, "AGENTCAT_CACHE_DIR": str(tmp_path)},  # no content on disk yet
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    orphan = out.stdout.split()[-1]
    assert _labels(orphan)[sandbox.SEED] == "/srv/data"
    api = docker_client().api
    live_labels = {sandbox.LABEL_ROLE: "sandbox", **sandbox.owner_labels(), sandbox.SEED: "/x"}
    live = api.create_container(sandbox_test_image, command=["true"], labels=live_labels)["Id"]
    try:
        monkeypatch.setattr(sandbox, "_orphans_pruned", False)
        spec = _spec(sandbox_test_image)
        _run(AgentcatSandbox.task_init("agentcat_x", spec))
        finish_removals()  # it prunes in the background
        assert not api.containers(all=True, filters={"id": orphan})
        assert api.containers(all=True, filters={"id": live})
        assert sandbox._orphans_pruned  # once per process
    finally:
        for cid in (orphan, live):
            with contextlib.suppress(NotFound):
                api.remove_container(cid, force=True, v=True)


def test_an_image_s_content_is_read_once_per_machine_not_per_process(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A new process (an empty memory cache) takes an image's content from disk and
    creates no seed container; a damaged file is read from the image again."""
    from orchestrator.runner import _content_cache

    monkeypatch.setenv("AGENTCAT_CACHE_DIR", str(tmp_path))
    api = docker_client().api
    image_id = str(docker_client().images.get(sandbox_test_image).id)
    monkeypatch.setattr(sandbox, "_contents", {})
    first = sandbox._image_content(image_id, "/srv/data")
    (stored,) = (tmp_path / "image-content").glob("*.bin")

    def no_seed(*a: object, **kw: object) -> None:
        raise AssertionError("the content on disk should have been used")

    monkeypatch.setattr(sandbox, "_contents", {})
    monkeypatch.setattr(api, "create_container", no_seed)
    assert sandbox._image_content(image_id, "/srv/data") == first
    assert _content_cache.load_content(image_id, "/other") is None  # another key
    raw = stored.read_bytes()
    stored.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # one bit of the tar flipped
    monkeypatch.setattr(sandbox, "_contents", {})
    with pytest.raises(AssertionError, match="content on disk"):
        sandbox._image_content(image_id, "/srv/data")
    monkeypatch.undo()
    monkeypatch.setenv("AGENTCAT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(sandbox, "_contents", {})
    assert sandbox._image_content(image_id, "/srv/data") == first
    assert stored.read_bytes() == raw  # rewritten whole


def test_an_empty_image_directory_is_not_copied_but_keeps_its_owner_and_mode(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writable path that is an empty directory in the image costs no archive copy
    (its tar holds only end-of-archive blocks); the tmpfs still has the image
    directory's owner and mode, and the paths with content are still copied."""
    api = docker_client().api
    copied: list[str] = []
    real = api.put_archive

    def counting(container: str, path: str, data: bytes) -> bool:
        copied.append(path)
        return real(container, path, data)

    monkeypatch.setattr(api, "put_archive", counting)
    spec = SandboxSpec(
        image=sandbox_test_image,
        writable=["/srv/data", "/mnt"],
        memory_mb=128,
        pids=64,
        writable_size_mb=16,
        tmpfs_size_mb=16,
    )

    async def body() -> None:
        async with open_sandbox(spec) as sb:
            mnt = await sb.exec(["sh", "-c", "stat -c '%u:%g %a' /mnt; ls -A /mnt"])
            data = await sb.exec(["cat", "/srv/data/hello.txt"])
            assert mnt.stdout.split("\n")[:2] == ["0:0 755", ""]
            assert data.stdout == "hello\n"

    _run(body())
    assert "/srv/data" in copied and "/mnt" not in copied


def test_a_task_clean_up_that_pruned_leaves_the_next_one_nothing_to_list(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean-up that finds something left prunes the task's containers; the ones of this
    process it removed are forgotten, so the next clean-up after a clean run does not ask
    the engine again."""
    run = uuid.uuid4().hex[:8]
    spec = _spec(sandbox_test_image)
    listed: list[object] = []
    real = sandbox.prune_containers

    def counting(*a: object, **kw: object) -> object:
        listed.append(a)
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox, "prune_containers", counting)
    monkeypatch.setattr(sandbox, "_live", set())  # (what earlier tests left is not this test's)
    monkeypatch.setattr(sandbox, "_unclean", False)
    meta = {"session": run, "item": "x.1", "run": "1.1"}

    async def body() -> None:
        left = (await AgentcatSandbox.sample_init("agentcat_left", spec, meta))["default"]
        assert isinstance(left, AgentcatSandbox)  # never cleaned up: the task's clean-up prunes
        await AgentcatSandbox.task_cleanup("agentcat_left", spec, cleanup=True)
        assert len(listed) == 1
        assert not docker_client().api.containers(all=True, filters={"id": left.container_id})
        assert left.container_id not in sandbox._live
        await AgentcatSandbox.task_cleanup("agentcat_left", spec, cleanup=True)
        assert len(listed) == 1  # nothing left: the engine is not asked

    _run(body())


def test_a_container_costs_the_engine_a_create_a_start_and_its_seeds_and_an_image_one_lookup(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox's creation asks the engine for nothing whose answer it does not use: no
    inspect of the new container (the SDK's ``containers.run`` made one), and the image's
    id once per tag and process, not once per container. An image removed after that is
    still a prerequisite error, and its id is looked up afresh when it is back."""
    api = docker_client().api
    asked: list[str] = []
    for name in ("inspect_image", "create_container", "start", "inspect_container"):
        real = getattr(api, name)

        def counting(*a: object, _name: str = name, _real: object = real, **kw: object) -> object:
            if sandbox.SEED not in (kw.get("labels") or {}):  # (reading an image's content)
                asked.append(_name)
            return _real(*a, **kw)  # type: ignore[operator]

        monkeypatch.setattr(api, name, counting)
    tag = f"agentcat-test/image-lookup:{uuid.uuid4().hex[:8]}"
    api.tag(sandbox_test_image, *tag.split(":"))
    spec = SandboxSpec(image=tag, memory_mb=128, pids=64, writable_size_mb=16, tmpfs_size_mb=16)
    monkeypatch.setattr(sandbox, "_image_ids", {})

    async def twice() -> None:
        for _ in range(2):
            async with open_sandbox(spec) as sb:
                assert (await sb.exec(["true"])).returncode == 0

    try:
        _run(twice())
        once = ["create_container", "start"]
        assert asked == ["inspect_image", *once, *once]  # the image's id: looked up once
        api.remove_image(tag)  # only the tag: the image itself is the test image
        asked.clear()
        with pytest.raises(PrerequisiteError, match="is not built"):
            _run(twice())
        assert asked == ["create_container"] and tag not in sandbox._image_ids
        api.tag(sandbox_test_image, *tag.split(":"))
        asked.clear()
        _run(twice())
        assert asked[0] == "inspect_image" and asked.count("inspect_image") == 1
    finally:
        with contextlib.suppress(Exception):
            api.remove_image(tag)


def test_engine_requests_over_the_local_socket_look_up_no_netrc_or_proxies(
    docker_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every engine request (some twenty a live item) skips ``requests``' per-request
    environment look-ups: ``~/.netrc`` and the proxy variables, which a unix socket never
    uses; the engine still answers."""
    import requests.sessions

    client = docker_client()
    if not client.api.base_url.startswith("http+docker://"):
        pytest.skip("the engine is not on a local socket")
    looked: list[str] = []

    def netrc(*a: object, **kw: object) -> None:
        looked.append("netrc")

    def proxies(*a: object, **kw: object) -> dict[str, str]:
        looked.append("proxies")
        return {}

    monkeypatch.setattr(requests.sessions, "get_netrc_auth", netrc)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", proxies)
    assert client.api.ping() is True
    assert client.api.containers(filters={"label": "agentcat.test=none"}) == []
    assert looked == []


def _container_left_open(image: str) -> str:
    """In a pool worker: a container of its own that it does not remove (as a spare)."""
    return sandbox._create_container(_spec(image), {})


def test_a_pool_worker_removes_its_containers_when_it_exits(sandbox_test_image: str) -> None:
    """A worker forked from the pool's fork server ends in ``os._exit``, where no
    ``atexit`` handler runs: the containers it still holds (its spares) go when the
    pool closes all the same, not at the next prune."""
    from orchestrator.runner.pool import WorkerPool

    with WorkerPool(1) as pool:
        cid = pool._executor.submit(_container_left_open, sandbox_test_image).result(timeout=300)
        assert docker_client().containers.get(cid).status == "running"
    with pytest.raises(NotFound):
        docker_client().containers.get(cid)
