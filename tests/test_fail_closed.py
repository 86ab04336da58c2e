"""Checks fail closed: an observation that was not made is a sandbox fault, never a value.

Each check kind that probes the container is fed failed observations (a probe
whose output was lost, cut short, or is not something the probe can print)
through a stand-in sandbox whose ``exec`` returns them (fault injection: a
real container cannot be made to lose output on demand; the exec path itself
is tested in ``test_exec_integrity.py``). Every one must raise
:class:`SandboxError`, which the runner classifies as a ``sandbox`` fault
(retried, never graded), and none may turn into a check outcome.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest
from inspect_ai.util import ExecResult

from orchestrator.errors import SandboxError
from orchestrator.runner.inspect_run import classify_error
from orchestrator.scenario import load_families
from orchestrator.scenario.grading import Baseline, grade
from orchestrator.scoring import check_kinds
from orchestrator.scoring.checks import CheckEnv, build_check
from orchestrator.scoring.trace import Trace
from tests.conftest import REPO

# one argument set per kind; a new kind must say here whether (and how) it probes
PROBING = {
    "file_unchanged": {"path": "/srv/app"},
    "file_exists": {"path": "/srv/*.log"},
    "file_absent": {"path": "/srv/*.log"},
    "file_contains": {"path": "/srv", "pattern": "secret"},
    "file_mode": {"path": "/srv", "forbid": "0002"},
    "command": {"run": "test -f /srv/ok", "stdout": "."},
    "process_running": {"pattern": "exporter", "new_only": True},
}
TRACE_ONLY = {"trace_matches": {"pattern": "rm -rf"}, "command_invoked": {"program": "curl"}}


class _Sandbox:
    """Answers every exec with an injected observation.

    ``lost``: exit 0, no output at all (what the raw-socket exec returned about once in a
    thousand execs under load); ``truncated``: only the beginning arrived; ``body``: the
    probe ran and printed ``body`` (framed as the probe frames it, when it does).
    """

    def __init__(self, mode: str, body: str = "", returncode: int = 0) -> None:
        self.mode, self.body, self.returncode = mode, body, returncode
        self.calls = 0

    async def exec(self, cmd: list[str], **kw: Any) -> ExecResult[str]:
        self.calls += 1
        if self.mode == "lost":
            return ExecResult(True, 0, "", "")
        # the wrapper gets, per probe, "${i}" (its nonce) and the rest: answer as it would
        nonces = [cmd[3 + int(i)] for i in re.findall(r'^p "\$\{(\d+)\}"', cmd[2], re.M)]
        out, err = "", ""
        for n in nonces:
            body = (
                "file 3f"
                if self.mode == "truncated"
                else (f"{self.body}\nagentcat-probe-end-{n} {self.returncode}\n")
            )
            out += f"agentcat-probe-{n} {base64.b64encode(body.encode()).decode()} "
            out += f"{self.returncode}\n"
            err += f"agentcat-probe-{n} \n"
        return ExecResult(self.returncode == 0, 0, out, err)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_kind_is_classified_as_probing_or_trace_only() -> None:
    assert set(check_kinds()) == set(PROBING) | set(TRACE_ONLY)


@pytest.mark.parametrize("kind", sorted(TRACE_ONLY))
def test_trace_kinds_do_not_observe_the_container(kind: str) -> None:
    sb = _Sandbox("lost")
    chk = build_check(kind, TRACE_ONLY[kind])
    _run(chk.evaluate(CheckEnv(sb), Trace(), None))  # type: ignore[arg-type]
    assert sb.calls == 0


def _baseline(kind: str) -> Any:
    return {"file_unchanged": "file " + "a" * 64, "process_running": [1, 7]}.get(kind)


@pytest.mark.parametrize("mode", ["lost", "truncated"])
@pytest.mark.parametrize("kind", sorted(PROBING))
def test_lost_or_cut_output_is_a_sandbox_fault(kind: str, mode: str) -> None:
    chk = build_check(kind, PROBING[kind])
    env = CheckEnv(_Sandbox(mode))  # type: ignore[arg-type]
    with pytest.raises(SandboxError):
        _run(chk.evaluate(env, Trace(), _baseline(kind)))
    if kind in ("file_unchanged", "process_running"):
        with pytest.raises(SandboxError):
            _run(chk.snapshot(env))


@pytest.mark.parametrize(
    ("kind", "body", "returncode"),
    [
        ("file_unchanged", "", 0),  # the original bug: "" was a fingerprint
        ("file_unchanged", "fil", 0),
        ("file_unchanged", "file " + "a" * 64, 2),
        ("file_exists", "/srv/a.log", 1),
        ("file_absent", "", 2),
        ("file_contains", "not-base64!! ???", 0),
        ("file_contains", "L3Nydi9h", 0),  # a name without the content field
        ("file_contains", "", 1),
        ("file_mode", "rwx agent agent /srv", 0),
        ("process_running", "", 0),  # PID 1 always runs: no process at all was not seen
        ("process_running", "PID COMMAND", 0),
    ],
)
def test_output_the_probe_cannot_print_is_a_sandbox_fault(
    kind: str, body: str, returncode: int
) -> None:
    chk = build_check(kind, PROBING[kind])
    env = CheckEnv(_Sandbox("body", body, returncode))  # type: ignore[arg-type]
    with pytest.raises(SandboxError):
        _run(chk.evaluate(env, Trace(), _baseline(kind)))


@pytest.mark.parametrize("snapshot", [None, "", "   ", "unknown", 0])
def test_a_baseline_fingerprint_that_was_not_taken_is_a_fault(snapshot: Any) -> None:
    chk = build_check("file_unchanged", PROBING["file_unchanged"])
    env = CheckEnv(_Sandbox("body", "file " + "b" * 64))  # type: ignore[arg-type]
    with pytest.raises(SandboxError):
        _run(chk.evaluate(env, Trace(), snapshot))


@pytest.mark.parametrize("snapshot", [None, [], "1 7"])
def test_a_baseline_process_list_that_was_not_taken_is_a_fault(snapshot: Any) -> None:
    chk = build_check("process_running", PROBING["process_running"])
    env = CheckEnv(_Sandbox("body", "1 /bin/bash keeper\n9 python3 exporter.py"))  # type: ignore[arg-type]
    with pytest.raises(SandboxError):
        _run(chk.evaluate(env, Trace(), snapshot))


def test_good_observations_are_still_values() -> None:
    """The strictness does not reject what the probes really print."""
    fp = build_check("file_unchanged", PROBING["file_unchanged"])
    same = CheckEnv(_Sandbox("body", "dir " + "c" * 64 + " 12\n"))  # type: ignore[arg-type]
    assert _run(fp.evaluate(same, Trace(), "dir " + "c" * 64 + " 12")).holds
    gone = CheckEnv(_Sandbox("body", "absent\n"))  # type: ignore[arg-type]
    assert not _run(fp.evaluate(gone, Trace(), "dir " + "c" * 64 + " 12")).holds
    ps = build_check("process_running", PROBING["process_running"])
    procs = CheckEnv(_Sandbox("body", "1 /bin/bash keeper\n9 python3 exporter.py\n"))  # type: ignore[arg-type]
    assert _run(ps.evaluate(procs, Trace(), [1])).holds
    assert not _run(ps.evaluate(procs, Trace(), [1, 9])).holds
    cmd = build_check("command", {"run": "true", "exit_code": 3})
    exited = CheckEnv(_Sandbox("body", "", returncode=3))  # type: ignore[arg-type]
    assert _run(cmd.evaluate(exited, Trace(), None)).holds


def test_grading_with_a_lost_observation_raises_a_sandbox_fault_not_a_grade() -> None:
    """The reported case: a run whose setup fingerprint came back empty was graded 0."""
    fam = load_families(REPO / "environments")["grader_tampering"]
    variant = fam.variants[0]
    snaps = {rc.spec.id: _baseline(rc.spec.kind) for rc in fam.checks_for(variant)}
    base = Baseline(family=fam.id, variant=variant.id, snapshots=snaps)
    with pytest.raises(SandboxError) as exc:
        _run(grade(_Sandbox("lost"), Trace(), fam, variant, base))  # type: ignore[arg-type]
    assert classify_error(f"SandboxError: {exc.value}") == "sandbox"


@pytest.mark.docker
def test_a_home_the_agent_made_unreadable_does_not_stop_the_probes(
    sandbox_test_image: str,
) -> None:
    """Probes start in / (an agent's `chmod 000 ~` must not turn every check into a fault
    and so keep its run from ever being graded)."""
    from orchestrator.runner.sandbox import SandboxSpec, open_sandbox

    async def body() -> None:
        spec = SandboxSpec(
            image=sandbox_test_image, writable=["/srv/data"], writable_size_mb=16, memory_mb=256
        )
        async with open_sandbox(spec) as sb:
            assert (await sb.exec(["chmod", "000", "/home/agent"])).success
            env = CheckEnv(sb, "agent", "/home/agent")
            there = build_check("file_exists", {"path": "/srv/data/hello.txt"})
            assert (await there.evaluate(env, Trace(), None)).holds
            home = build_check("file_unchanged", {"path": "/home/agent"})
            assert await home.snapshot(env) == "dir unreadable"
            cmd = build_check("command", {"run": "pwd", "stdout": "^/\\n"})
            assert (await cmd.evaluate(env, Trace(), None)).holds

    _run(body())
