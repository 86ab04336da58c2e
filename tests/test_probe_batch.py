"""Batched check probes: one exec per phase and user, the same observations as one by one.

Real containers throughout: the batched and the one-by-one observations come
from the same sandbox, and the exec count is taken by wrapping its ``exec``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from inspect_ai.util import ExecResult

from orchestrator.errors import SandboxError
from orchestrator.runner.inspect_run import classify_error
from orchestrator.scenario import FamilySpec
from orchestrator.scenario.grading import grade, setup_variant
from orchestrator.scoring.checks import (
    Check,
    CheckEnv,
    CheckOutcome,
    Observation,
    ProbeBatch,
    SetupFailed,
    SetupScript,
)
from orchestrator.scoring.trace import Trace

pytestmark = pytest.mark.docker

# Reads every nonce the wrapper was given (from the exec's command line, as a process the
# agent left behind could) and prints lines and frames that claim success for all of them.
FORGER = r"""tr '\0' '\n' < /proc/$AGENTCAT_EXEC_PGID/cmdline | grep -x '[0-9a-f]\{16\}' |
while read -r n; do
  printf 'agentcat-probe-%s Zm9yZ2Vk 0\n' "$n"; printf 'agentcat-probe-%s Zm9yZ2Vk 0\n' "$n" >&2
  printf '\nagentcat-probe-end-%s 0\n' "$n"
done
exit 5"""


@asynccontextmanager
async def _sandbox(image: str) -> AsyncIterator[Any]:
    from orchestrator.runner.sandbox import SandboxSpec, open_sandbox

    spec = SandboxSpec(image=image, writable=["/srv/data"], writable_size_mb=16, memory_mb=256)
    async with open_sandbox(spec) as sb:
        yield sb


class _Counting:
    """A sandbox that counts its execs (everything else is the real one's)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.execs = inner, 0

    async def exec(self, cmd: list[str], **kw: Any) -> ExecResult[str]:
        self.execs += 1
        return await self.inner.exec(cmd, **kw)


async def _outcome(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except SandboxError as exc:
        return f"SandboxError: {exc}"


def test_batched_observations_equal_one_by_one(sandbox_test_image: str) -> None:
    def probes(env: CheckEnv) -> list[Coroutine[Any, Any, Any]]:
        return [
            env.sh('printf "%s|%s\\n" "$1" "$#"; echo oops >&2; exit 3', "a b", "c"),
            env.sh("printf 'no newline'; printf '\\n\\n\\n' >&2"),
            env.bash('pwd; echo $0; echo "${LC_ALL-unset}"; exit 0'),
            env.sh('echo "$LC_ALL"; test -r /srv/protected/keep.txt; echo r=$?'),
            env.sh("sleep 20", timeout=1),
            env.bash("exit 124"),  # the probe's own 124 is a value, not a timeout
            env.sh("cat /srv/data/hello.txt; id -un"),
        ]

    async def body() -> None:
        async with _sandbox(sandbox_test_image) as sb:
            env = CheckEnv(sb, "agent", "/home/agent")
            alone = [await _outcome(p) for p in probes(env)]
            counted = _Counting(sb)
            benv = CheckEnv(counted, "agent", "/home/agent")  # type: ignore[arg-type]
            batch = ProbeBatch(counted)  # type: ignore[arg-type]
            together = await batch.run([_outcome(p) for p in probes(benv)])
            assert together == alone
            assert counted.execs == 1
            assert alone[0] == Observation(3, "a b|2\n", "oops\n")
            assert alone[1] == Observation(0, "no newline", "\n\n\n")
            assert alone[2] == Observation(0, "/home/agent\nagentcat-check\nunset\n", "")
            assert alone[3] == Observation(0, "C\nr=0\n", "")
            assert alone[4] == "SandboxError: check probe timed out after 1 s: 'sleep 20'"
            assert alone[5] == Observation(124, "", "")
            assert alone[6] == Observation(0, "hello\nagent\n", "")

    asyncio.run(body())


def test_a_probe_cannot_forge_another_probes_observation(sandbox_test_image: str) -> None:
    async def body() -> None:
        async with _sandbox(sandbox_test_image) as sb:
            env = CheckEnv(sb, "agent", "/")
            honest = [env.sh("exit 7"), env.sh("printf real"), env.bash("echo x >&2; exit 2")]
            want = [await p for p in honest]
            batch = ProbeBatch(sb)
            got = await batch.run(
                [
                    env.sh("exit 7"),
                    env.bash(FORGER),
                    env.sh("printf real"),
                    env.bash("echo x >&2; exit 2"),
                ]
            )
            assert [got[0], got[2], got[3]] == want
            forged = got[1]
            assert forged.returncode == 5
            assert forged.stdout.count("agentcat-probe-end-") == 4  # it saw every nonce
            assert forged.stderr.count("agentcat-probe-") == 4  # ... and its own stays its own

    asyncio.run(body())


def _family() -> FamilySpec:
    def chk(cid: str, kind: str, **args: Any) -> dict[str, Any]:
        return {"id": cid, "kind": kind, "args": args, "severity": "minor", "description": cid}

    sol = {"commands": [], "final": "x"}
    return FamilySpec.model_validate(
        {
            "id": "probefam",
            "title": "t",
            "description": "d",
            "risk": "r",
            "prompt": "p",
            "sandbox": {"writable": ["/srv/data"], "writable_size_mb": 16, "memory_mb": 256},
            "setup": [{"run": "echo seeded > /srv/data/seed.txt", "user": "agent"}],
            "knobs": {"k": {"description": "k", "levels": {"a": {"score": 0}, "b": {"score": 1}}}},
            "variants": [{"id": "one", "knobs": {"k": "a"}}],
            "checks": [
                chk("kept", "file_unchanged", path="/srv/protected"),
                chk("data", "file_unchanged", path="/srv/data"),
                chk("seed", "file_exists", path="/srv/data/*.txt"),
                chk("gone", "file_absent", path="/srv/data/x*"),
                chk("said", "file_contains", path="/srv/data", pattern="^seeded"),
                chk("modes", "file_mode", path="/srv/data", recursive=True, forbid="0002"),
                chk("who", "command", run="id -un", stdout="^agent"),
                {**chk("root", "command", run="id -un; exit 1"), "user": "root"},
                chk("acked", "trace_matches", pattern="ack", scope="final"),
            ],
            "success": ["acked"],
            "solutions": {c: sol for c in range(4)},
        }
    )


_batched_run = ProbeBatch.run


async def _one_by_one(
    self: ProbeBatch, coros: Sequence[Coroutine[Any, Any, Any]], setup: Sequence[Any] = ()
) -> list[Any]:
    for step in setup:  # each set-up step in an exec of its own, as before the batches
        await _batched_run(ProbeBatch(self.sandbox), [], [step])
    return [await c for c in coros]


def test_grading_sends_one_exec_per_user_and_grades_as_one_by_one(
    sandbox_test_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fam = _family()

    async def setup_and_grade(sb: Any) -> tuple[Any, ...]:
        counted = _Counting(sb)
        base = await setup_variant(counted, fam, "one")  # type: ignore[arg-type]
        after_setup = counted.execs
        await sb.exec(["sh", "-c", "echo later > /srv/data/new.txt"], user="agent")
        g = await grade(counted, Trace(final="ack"), fam, "one", base)  # type: ignore[arg-type]
        return base, g, after_setup, counted.execs - after_setup

    async def body() -> tuple[Any, ...]:
        async with _sandbox(sandbox_test_image) as sb:
            return await setup_and_grade(sb)

    base, g, setup_execs, grade_execs = asyncio.run(body())
    assert (setup_execs, grade_execs) == (1, 2)  # setup step with the snapshots; agent + root
    assert [c.id for c in g.checks] == [rc.spec.id for rc in fam.checks_for("one")]
    assert {c.id for c in g.checks if c.fired} == {"data", "root"}
    assert g.category == 1

    monkeypatch.setattr(ProbeBatch, "run", _one_by_one)
    base1, g1, setup1, grade1 = asyncio.run(body())
    assert (setup1, grade1) == (3, 8)
    assert base1 == base
    assert g1 == g


class _GlobThenStat(Check):
    """A plugin-style kind that probes twice: a listing, then a stat of what it found."""

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        found = (await env.sh('for f in $1; do printf "%s\\n" "$f"; done', "/srv/data/*")).stdout
        sizes = await env.sh('wc -c < "$1"', found.split()[0])
        return CheckOutcome(True, f"{found.split()[0]} {sizes.stdout.strip()}")


def test_a_check_that_probes_twice_takes_two_rounds(sandbox_test_image: str) -> None:
    async def body() -> tuple[list[Any], list[Any], int]:
        async with _sandbox(sandbox_test_image) as sb:
            env = CheckEnv(sb, "agent", "/")
            chk = _GlobThenStat(Check.Args())
            alone = [await chk.evaluate(env, Trace(), None), await env.sh("echo one")]
            counted = _Counting(sb)
            benv = CheckEnv(counted, "agent", "/")  # type: ignore[arg-type]
            together = await ProbeBatch(counted).run(  # type: ignore[arg-type]
                [chk.evaluate(benv, Trace(), None), benv.sh("echo one")]
            )
            return alone, together, counted.execs

    alone, together, execs = asyncio.run(body())
    assert (
        together
        == alone
        == [CheckOutcome(True, "/srv/data/hello.txt 6"), Observation(0, "one\n", "")]
    )
    assert execs == 2


class _Dropping(_Counting):
    """Loses the first probe's stdout line of every shared exec (as an output cap would)."""

    async def exec(self, cmd: list[str], **kw: Any) -> ExecResult[str]:
        r = await super().exec(cmd, **kw)
        if cmd[2].count("\np ") < 2:
            return r
        out = r.stdout.split("\n", 1)[1]
        return ExecResult(r.success, r.returncode, out, r.stderr)


def test_a_probe_lost_from_a_shared_exec_runs_again_alone(sandbox_test_image: str) -> None:
    async def body() -> tuple[list[Any], list[Any], int]:
        async with _sandbox(sandbox_test_image) as sb:
            env = CheckEnv(sb, "agent", "/")
            alone = [await env.sh("echo one; exit 1"), await env.sh("echo two >&2")]
            dropping = _Dropping(sb)
            denv = CheckEnv(dropping, "agent", "/")  # type: ignore[arg-type]
            together = await ProbeBatch(dropping).run(  # type: ignore[arg-type]
                [denv.sh("echo one; exit 1"), denv.sh("echo two >&2")]
            )
            return alone, together, dropping.execs

    alone, together, execs = asyncio.run(body())
    assert together == alone == [Observation(1, "one\n", ""), Observation(0, "", "two\n")]
    assert execs == 2  # the shared exec, then the first probe alone


def test_probes_run_in_an_image_without_timeout(tmp_path: Any) -> None:
    """An image without ``timeout`` (a minimal one) still gets its observations; only the
    exec's own limit bounds a probe there. The wrapper runs in a real shell on this host
    with a ``PATH`` that holds no ``timeout``."""
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("base64", "cat"):
        (bindir / tool).symlink_to(shutil.which(tool))

    class HostShell:
        async def exec(self, cmd: list[str], **kw: Any) -> ExecResult[str]:
            env = {**(kw.get("env") or {}), "PATH": str(bindir)}
            proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=kw.get("cwd"), env=env, stdout=-1, stderr=-1
            )
            out, err = await asyncio.wait_for(proc.communicate(), kw.get("timeout"))
            code = proc.returncode or 0
            return ExecResult(code == 0, code, out.decode(), err.decode())

    async def body() -> list[Any]:
        env = CheckEnv(HostShell(), None, str(tmp_path))  # type: ignore[arg-type]
        return await ProbeBatch(env.sandbox).run(
            [env.sh('command -v timeout || echo "none"; pwd; exit 3'), env.sh("cat x 2>&1")]
        )

    (tmp_path / "x").write_text("seen\n")
    first, second = asyncio.run(body())
    assert first == Observation(3, f"none\n{tmp_path}\n", "")
    assert second == Observation(0, "seen\n", "")
    # with a `timeout` on the PATH the wrapper runs each probe under it
    marker = tmp_path / "limited"
    (bindir / "timeout").write_text(
        f'#!/bin/sh\necho "$@" >> {marker}\nshift 3\nexec "$@"\n'  # drops -k 5 T
    )
    (bindir / "timeout").chmod(0o755)
    _, again = asyncio.run(body())
    assert again == second
    assert marker.read_text().split("\n")[0].startswith("-k 5 30 /bin/sh -c")


# What a set-up can see of how it runs: it must be what it saw in an exec of its own.
RUNS_AS = (
    'printf "%s\\n" "$0" "$-" "$(pwd)" "$(id -un)" "$PATH" "${AGENTCAT_EXEC_PGID-unset}"; '
    "set -o | grep -E '^(errexit|pipefail)'; env | grep -v '^_=' | sort"
)


class _Marking(Check):
    """A plugin-style kind whose snapshot leaves a mark: shows whether a snapshot ran."""

    async def snapshot(self, env: CheckEnv) -> Any:
        return (await env.sh("touch /srv/data/snapped; echo taken")).stdout

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        return CheckOutcome(True, "")


async def _marked(sb: Any) -> bool:
    r = await sb.exec(["sh", "-c", "test -e /srv/data/snapped"], user="agent")
    return r.returncode == 0


def test_a_setup_runs_in_the_snapshots_exec_as_it_ran_alone(sandbox_test_image: str) -> None:
    async def body() -> tuple[Any, ...]:
        async with _sandbox(sandbox_test_image) as sb:
            alone = await sb.exec(
                ["bash", "-eo", "pipefail", "-c", RUNS_AS],
                cwd="/home/agent",
                user="agent",
                timeout=30,
            )
            counted = _Counting(sb)
            env = CheckEnv(counted, "agent", "/")  # type: ignore[arg-type]
            taken = await ProbeBatch(counted).run(  # type: ignore[arg-type]
                [_Marking(Check.Args()).snapshot(env)],
                setup=[
                    SetupScript(f"{{ {RUNS_AS}; }} > /srv/data/seen", "agent", "/home/agent", 30),
                    SetupScript("test -e /srv/data/seen", "agent", "/", 30),
                ],
            )
            seen = await sb.exec(["cat", "/srv/data/seen"], user="agent")
            return alone.stdout, seen.stdout, taken, counted.execs, await _marked(sb)

    alone, seen, taken, execs, marked = asyncio.run(body())
    assert seen == alone
    assert alone.split("\n")[:4] == ["bash", "ehBc", "/home/agent", "agent"]
    assert alone.split("\n")[5] == "unset"
    assert "errexit        \ton" in alone and "pipefail       \ton" in alone
    assert (taken, execs, marked) == (["taken\n"], 1, True)


def test_a_failed_setup_is_reported_as_alone_and_stops_the_snapshots(
    sandbox_test_image: str,
) -> None:
    fam = _family()
    failing = fam.model_copy(
        update={
            "setup": [*fam.setup, fam.setup[0].model_copy(update={"run": "echo boom >&2; exit 3"})]
        }
    )
    slow = fam.model_copy(
        update={"setup": [fam.setup[0].model_copy(update={"run": "sleep 30", "timeout": 1})]}
    )

    async def body() -> tuple[Any, ...]:
        async with _sandbox(sandbox_test_image) as sb:
            counted = _Counting(sb)
            errors = []
            for f in (failing, slow):
                with pytest.raises(SandboxError) as exc:
                    await setup_variant(counted, f, "one")  # type: ignore[arg-type]
                errors.append(exc.value)
            env = CheckEnv(counted, "agent", "/")  # type: ignore[arg-type]
            with pytest.raises(SetupFailed) as failed:
                await ProbeBatch(counted).run(  # type: ignore[arg-type]
                    [_Marking(Check.Args()).snapshot(env), env.sh("touch /srv/data/snapped")],
                    setup=[SetupScript("echo out; echo err >&2; exit 4", "agent", "/", 30)],
                )
            seeded = await sb.exec(["cat", "/srv/data/seed.txt"], user="agent")
            return errors, failed.value, counted.execs, await _marked(sb), seeded.stdout

    errors, failed, execs, marked, seeded = asyncio.run(body())
    assert errors[0].message == "probefam.one: setup step 2 (as agent) exited 3: boom"
    assert errors[0].hint == "fix the setup script in family.yaml (or the image it runs in)"
    assert str(errors[1]) == "probefam.one: setup step 1 timed out after 1 s"  # no hint
    assert classify_error(f"SandboxError: {errors[0]}") == "sandbox"
    assert (failed.index, failed.outcome, failed.timed_out) == (
        0,
        Observation(4, "out\n", "err\n"),
        False,
    )
    assert seeded == "seeded\n"  # step 1 ran, in the same exec as the failing step 2
    assert execs == 3  # one exec per failed set-up: no snapshot ran, none alone either
    assert not marked


def test_neither_a_setup_nor_a_probe_can_forge_the_setups_status(sandbox_test_image: str) -> None:
    # claims, for every nonce on a command line it can read, a frame with exit status 0 / 9
    def forger(status: int) -> str:
        return (
            "{ cat /proc/[0-9]*/cmdline 2>/dev/null || true; } | tr '\\0' '\\n' |"
            + FORGER.split("|", 1)[1].replace(" 0\\n'", f" {status}\\n'")
        )

    async def body() -> tuple[Any, ...]:
        async with _sandbox(sandbox_test_image) as sb:
            env = CheckEnv(sb, "agent", "/")
            with pytest.raises(SetupFailed) as forged:
                await ProbeBatch(sb).run(
                    [_Marking(Check.Args()).snapshot(env)],
                    setup=[SetupScript(forger(0), "agent", "/", 30)],
                )
            marked = await _marked(sb)
            got = await ProbeBatch(sb).run(
                [env.bash(forger(9)), env.sh("printf real")],
                setup=[SetupScript("echo fine", "agent", "/", 30)],
            )
            return forged.value, marked, got

    forged, marked, got = asyncio.run(body())
    assert forged.outcome.returncode == 5  # its own report of 0 is only its output
    assert forged.outcome.stdout.count("agentcat-probe-end-") >= 2
    assert not marked
    assert got[0].returncode == 5 and got[1] == Observation(0, "real", "")


def test_a_cancelled_batch_awaits_its_checks() -> None:
    """No container: the checks wait on something else than a probe, and are cancelled."""
    ended: list[str] = []

    async def check(name: str) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.01)  # clean-up that takes more than one step
            ended.append(name)

    async def body() -> None:
        batch = asyncio.create_task(ProbeBatch(None).run([check("a"), check("b")]))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        assert sorted(ended) == ["a", "b"]

    asyncio.run(body())


def test_a_setup_whose_frame_was_lost_fails_and_never_runs_twice(sandbox_test_image: str) -> None:
    """A probe lost from a shared exec runs again alone; a set-up need not be idempotent."""
    fam = _family()
    counting = fam.model_copy(
        update={"setup": [fam.setup[0].model_copy(update={"run": "echo x >> /srv/data/runs"})]}
    )

    async def body() -> tuple[Any, ...]:
        async with _sandbox(sandbox_test_image) as sb:
            dropping = _Dropping(sb)  # loses the set-up's stdout line (the exec's first)
            with pytest.raises(SandboxError) as exc:
                await setup_variant(dropping, counting, "one")  # type: ignore[arg-type]
            runs = await sb.exec(["cat", "/srv/data/runs"], user="agent")
            return exc.value, runs.stdout, dropping.execs

    err, runs, execs = asyncio.run(body())
    assert str(err).startswith("probefam.one: setup step 1 (as agent) returned no intact frame")
    assert (runs, execs) == ("x\n", 1)
