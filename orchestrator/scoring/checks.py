"""Declarative checks: a registry of check kinds evaluated against a live sandbox and a trace.

A check kind is a class registered by name with :func:`check` in the project's
one registry (:mod:`orchestrator._registry`): it declares a pydantic ``Args``
model (unknown arguments are errors with a did-you-mean), may take a
``snapshot`` right after scenario setup (stored in the baseline), and
``evaluate``\\ s to a :class:`CheckOutcome`: whether its condition holds, plus a
human-readable detail.

Container probes run as small POSIX shell scripts through the Inspect
``SandboxEnvironment.exec`` interface, with arguments passed positionally
(never spliced into the script) and a pinned ``PATH``; text matching is done
here in Python ``re``, so results do not depend on the image's grep dialect.

Probes fail closed. Every probe reports its exit status at the end of its
output, after a fresh nonce, and the exec's wrapper passes on the probe's
streams only base64-encoded, with the exit status its ``timeout`` saw; a
probe without an intact report (lost, cut short, killed) and output a probe
cannot have printed (an empty or malformed fingerprint, an unparseable listing,
no process at all where PID 1 always runs) raise
:class:`~orchestrator.errors.SandboxError`: the run is a ``sandbox`` fault,
retried and never graded. What the probe *did* observe, such as a file the
sandbox user cannot read, is a value.

Each ``docker exec`` costs the engine tens of milliseconds however little it
runs, so the checks of one phase (setup snapshots, grading) run together in a
:class:`ProbeBatch`, and the probes they wait on share one exec per user; a
check sees exactly the observation a probe of its own would have made. A
scenario's set-up steps (:class:`SetupScript`) lead the snapshots' exec: they
run as an exec of their own would, and no probe runs after one that failed.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import contextvars
import re
import secrets
import shlex
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator._registry import Registry
from orchestrator.errors import SandboxError, ScenarioSpecError
from orchestrator.scoring._shell import invocations
from orchestrator.scoring.trace import Trace

if TYPE_CHECKING:
    from inspect_ai.util import ExecResult, SandboxEnvironment

__all__ = [
    "Check",
    "CheckEnv",
    "CheckOutcome",
    "ProbeBatch",
    "SetupFailed",
    "SetupScript",
    "build_check",
    "check",
    "check_class",
    "check_kinds",
    "check_kinds_registry",
]

PINNED_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROBE_TIMEOUT_S = 30
T = TypeVar("T")


class Observation(NamedTuple):
    """What a probe printed between its frame lines, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


class CheckOutcome(NamedTuple):
    """Result of evaluating one check's condition."""

    holds: bool
    """Whether the condition holds (before any ``negate`` in the spec)."""
    detail: str
    """What was observed, for the explanation."""


@dataclass(frozen=True)
class SetupScript:
    """A set-up step a :class:`ProbeBatch` runs before its probes, in the first exec of its user.

    It runs as an exec of its own would run it (``bash -eo pipefail -c`` as
    ``user`` in ``cwd``, under ``timeout``, with the exec's own ``PATH``); the
    probes of its user ride in the same exec after it, and nothing after it
    runs unless it exits 0. Never run twice: a set-up need not be idempotent.
    """

    run: str
    user: str | None
    cwd: str
    timeout: int


class SetupFailed(SandboxError):
    """A :class:`SetupScript` did not exit 0 (or its end was not seen): nothing after it ran."""

    def __init__(
        self, index: int, outcome: Observation | None, *, timed_out: bool = False, why: str = ""
    ) -> None:
        self.index, self.outcome, self.timed_out = index, outcome, timed_out
        self.why = "timed out" if timed_out else why or f"exited {outcome and outcome.returncode}"
        super().__init__(f"set-up script {index + 1} {self.why}")


# A set-up script in its frame: $1 its text, $2 the PATH the exec came with; the variables
# the wrapper and the frame's own cd add are dropped, so it sees the environment it saw alone.
_SETUP_BODY = (
    "PATH=$2; export PATH; unset AGENTCAT_EXEC_PGID\n"
    "cd -- {cwd} || exit\n"
    "unset OLDPWD\n"
    'exec bash -eo pipefail -c "$1"'
)


@dataclass(frozen=True)
class _Probe:
    """One probe: a script for a shell, its positional arguments, limit and start directory."""

    shell: str
    script: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    timeout: int
    cwd: str
    setup: bool = False
    """A set-up script (:class:`SetupScript`), not a probe: run as it would run alone."""
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def framed(self) -> str:
        """The script as its shell runs it: cd to cwd, run, then report the exit status.

        The probe starts in / and cd's to cwd if it can: a directory the agent made
        unreadable must not keep the probe from running at all. A set-up script runs
        as its own exec would have run it: ``bash -eo pipefail -c`` (its text is
        ``$1``) in cwd, with the exec's inherited ``PATH`` (``$2``, saved by the
        wrapper before it pinned its own).
        """
        if self.setup:
            pre, body = "", _SETUP_BODY.format(cwd=shlex.quote(self.cwd))
        else:
            env = "".join(f"{k}={shlex.quote(v)}; export {k}\n" for k, v in self.env)
            pre, body = f"{env}cd -- {shlex.quote(self.cwd)} 2>/dev/null || cd /\n", self.script
        return (
            f"{pre}(\n{body}\n)\nrc=$?\n"
            f'printf \'\\nagentcat-probe-end-{self.nonce} %d\\n\' "$rc"\nexit "$rc"\n'
        )

    def name(self) -> str:
        return repr(self.script.strip()[:60])


# Runs each probe in turn as its own child shell under its own `timeout`, and prints, per
# probe, one line on stdout (nonce, base64 of its stdout, exit status) and one on stderr
# (nonce, base64 of its stderr). The probe holds no descriptor of the exec's own streams:
# its output reaches them only base64-encoded by the wrapper, after it has ended (a child
# it left behind holding the pipe makes the wrapper wait, never write into a later line),
# so nothing a probe prints can pass for another probe's line or its own exit status.
# Probes learn the exec's process group (AGENTCAT_EXEC_PGID) to leave it out of process
# listings. Per probe the wrapper is called with: nonce, timeout, shell, framed script, args.
_WRAPPER = r"""read -r _ _ _ _ g _ < /proc/$$/stat
case $g in "$$" | "$PPID") ;; *) g= ;; esac  # only a group the exec leads, never one it joined
AGENTCAT_EXEC_PGID=$g; export AGENTCAT_EXEC_PGID
exec 4>&1
to=$(command -v timeout) || to=  # an image without `timeout`: only the exec's limit holds
limited() { t=$1; shift; if [ -n "$to" ]; then "$to" -k 5 "$t" "$@"; else "$@"; fi; }
p() {
  n=$1 t=$2 x=$3 s=$4; shift 4
  printf 'agentcat-probe-%s ' "$n"; printf 'agentcat-probe-%s ' "$n" >&2
  c=$( { { { limited "$t" "$x" -c "$s" agentcat-check "$@" 2>&1 >&3 3>&- 4>&- 5>&-
             printf %d "$?" >&5; } | base64 -w0 >&2; } 3>&1 | base64 -w0 >&4; } 5>&1 )
  printf ' %s\n' "$c"; printf '\n' >&2
}
"""
_OUT_LINE = re.compile(r"agentcat-probe-([0-9a-f]+) ([A-Za-z0-9+/=]*) (\d+)")
_ERR_LINE = re.compile(r"agentcat-probe-([0-9a-f]+) ([A-Za-z0-9+/=]*)")
_KILL_GRACE_S = 5  # the wrapper's `timeout -k`


async def _run_probes(
    sandbox: SandboxEnvironment,
    user: str | None,
    probes: Sequence[_Probe],
    setups: Sequence[int] = (),
) -> list[Observation | SandboxError]:
    """Run ``probes`` in one exec as ``user``: each one's observation, or why it was not made.

    The set-up scripts among them (``setups``: their index in the batch, in order)
    come first; the exec stops after one that does not exit 0.

    Raises:
        SetupFailed: a set-up script did not exit 0 (or its end was not seen).
    """
    argv: list[str] = []
    calls: list[str] = []
    for pr in probes:
        first = len(argv) + 1
        argv += [pr.nonce, str(pr.timeout), pr.shell, pr.framed(), *pr.args]
        call = "p " + " ".join(f'"${{{i}}}"' for i in range(first, len(argv) + 1))
        # a set-up gets the exec's own PATH; the probes after it run only if it exited 0
        calls.append(f'{call} "$agentcat_path"; [ "$c" = 0 ] || exit 0' if pr.setup else call)
    limit = sum(pr.timeout + _KILL_GRACE_S for pr in probes) + _KILL_GRACE_S
    # an exec with a set-up inherits the container's environment (the set-up's, as if it
    # ran alone) and pins PATH in the wrapper; one without gets the pinned PATH at once
    lead = f"agentcat_path=$PATH; PATH={PINNED_PATH}; export PATH\n" if setups else ""
    try:
        r = await sandbox.exec(
            ["/bin/sh", "-c", lead + _WRAPPER + "\n".join(calls) + "\n", "agentcat-probes", *argv],
            cwd="/",
            env=None if setups else {"PATH": PINNED_PATH},
            user=user,
            timeout=limit,
        )
    except TimeoutError:
        if setups:  # it ran first: whatever hung, the probes after it were not seen
            raise SetupFailed(setups[0], None, timed_out=True) from None
        err = SandboxError(
            f"check probes timed out after {limit} s together: "
            + ", ".join(pr.name() for pr in probes)
        )
        return [err] * len(probes)
    outs = _lines(r.stdout, _OUT_LINE)
    errs = _lines(r.stderr, _ERR_LINE)
    for pr, index in zip(probes[: len(setups)], setups, strict=True):  # set-ups lead the exec
        _setup_outcome(index, pr, outs.get(pr.nonce), errs.get(pr.nonce), r)
    obs = [_observation(pr, outs.get(pr.nonce), errs.get(pr.nonce), r) for pr in probes]
    if len(probes) > 1:
        # a probe whose lines did not come back from a shared exec (its output cut to the
        # exec's output limit, or lost) runs again alone: sharing never costs an observation
        for i, pr in enumerate(probes):
            if not pr.setup and (pr.nonce not in outs or pr.nonce not in errs):
                (obs[i],) = await _run_probes(sandbox, user, [pr])
    return obs


def _setup_outcome(
    index: int,
    pr: _Probe,
    out: tuple[str, ...] | None,
    err: tuple[str, ...] | None,
    r: ExecResult[str],
) -> None:
    """Return if set-up script ``pr`` exited 0 with its frame intact; raise SetupFailed if not.

    Its exit status is the one its ``timeout`` saw (a script cannot print that); what it
    printed, including a report of its own, is only its output.
    """
    if out is None or err is None:
        said = _said(r)
        why = f"returned no intact frame (exit {r.returncode}{': ' + said if said else ''})"
        raise SetupFailed(index, None, why=why)
    try:
        stdout, stderr = _decode(out[0]), _decode(err[0])
    except (ValueError, binascii.Error):
        raise SetupFailed(index, None, why="returned undecodable output") from None
    status = int(out[1])
    tail = re.search(rf"\nagentcat-probe-end-{pr.nonce} (\d+)\n\Z", stdout)
    reported = None if tail is None else int(tail.group(1))
    if status in (124, 137) and reported != status:
        raise SetupFailed(index, None, timed_out=True)
    ob = Observation(status, stdout if tail is None else stdout[: tail.start()], stderr)
    if status != 0:
        raise SetupFailed(index, ob)
    if reported != 0:
        raise SetupFailed(index, ob, why="exited 0 without an intact frame")


def _said(r: ExecResult[str]) -> str:
    """What the runtime or the wrapper said (never a probe's output: that is encoded)."""
    return " ".join(
        line
        for line in (r.stderr + "\n" + r.stdout).split("\n")
        if not line.startswith("agentcat-probe-")
    )[:160].strip()


def _lines(text: str, form: re.Pattern[str]) -> dict[str, tuple[str, ...]]:
    """Nonce → fields of each well-formed wrapper line (a nonce seen twice keeps neither)."""
    found: dict[str, tuple[str, ...]] = {}
    twice: set[str] = set()
    for line in text.split("\n"):
        m = form.fullmatch(line)
        if m:
            if m.group(1) in found:
                twice.add(m.group(1))
            found[m.group(1)] = m.groups()[1:]
    return {k: v for k, v in found.items() if k not in twice}


def _decode(b64: str) -> str:
    return base64.b64decode(b64, validate=True).decode("utf-8", "replace")


def _observation(
    pr: _Probe,
    out: tuple[str, ...] | None,
    err: tuple[str, ...] | None,
    r: ExecResult[str],
) -> Observation | SandboxError:
    """The probe's own output, or SandboxError when its lines or its frame are not intact."""
    if out is None or err is None:
        said = _said(r)
        return SandboxError(
            f"check probe {pr.name()} returned no intact frame (exit {r.returncode}"
            f"{': ' + said if said else ''}); the observation was not made"
        )
    try:
        stdout, stderr = _decode(out[0]), _decode(err[0])
    except (ValueError, binascii.Error):
        return SandboxError(f"check probe {pr.name()} returned undecodable output")
    status = int(out[1])
    tail = re.search(rf"\nagentcat-probe-end-{pr.nonce} (\d+)\n\Z", stdout)
    reported = None if tail is None else int(tail.group(1))
    # `timeout` exits 124, or 137 when it had to KILL; then the probe's report is missing
    # (or is not the status it ended with, as when it was killed after printing one)
    if status in (124, 137) and reported != status:
        return SandboxError(f"check probe timed out after {pr.timeout} s: {pr.name()}")
    if tail is None:
        return SandboxError(
            f"check probe {pr.name()} returned {len(stdout)} bytes without an intact frame "
            f"(exit {status}); the observation was not made"
        )
    if reported != status:
        return SandboxError(f"check probe {pr.name()} exited {status} but reported {reported}")
    return Observation(status, stdout[: tail.start()], stderr)


_BATCH: contextvars.ContextVar[tuple[ProbeBatch, int] | None] = contextvars.ContextVar(
    "agentcat_probe_batch", default=None
)


class ProbeBatch:
    """Runs checks concurrently and sends the probes they wait on together, one exec per user.

    Each exec costs the engine tens of milliseconds however little it runs, and
    a phase of an item (snapshots, grading) probes once per check. Here every
    check runs as its own task; when each unfinished one waits on a probe,
    the waiting probes go out together (one exec per user, in check order),
    and each check gets exactly the :class:`Observation` (or ``SandboxError``)
    a probe of its own would have given. A check that probes again (a listing,
    then a stat) waits for the next round.

    Set-up scripts (a scenario's set-up, before its snapshots) run first, in
    order, the probes of their user in the same exec after the last of them:
    a set-up no longer costs an exec of its own.
    """

    def __init__(self, sandbox: SandboxEnvironment) -> None:
        self.sandbox = sandbox
        self._queue: list[tuple[int, str | None, _Probe, asyncio.Future[Observation]]] = []
        self._setup: list[tuple[str | None, _Probe]] = []
        self._live: set[int] = set()
        self._wake = asyncio.Event()

    async def run(
        self, coros: Sequence[Coroutine[Any, Any, T]], setup: Sequence[SetupScript] = ()
    ) -> list[T]:
        """Run ``setup``, then await ``coros`` (each a check's snapshot or evaluate) together.

        A coroutine may start before the set-up has run, but none of its probes runs
        before every set-up script has exited 0 (each one's exec ends at one that
        does not). Results in the order of ``coros``.

        Raises:
            SetupFailed: a set-up script did not exit 0; no probe ran after it.
            BaseException: the first (in order) that a coroutine raised, once all have ended.
        """
        self._setup = [
            (s.user, _Probe("/bin/sh", s.run, (s.run,), (), s.timeout, s.cwd, setup=True))
            for s in setup
        ]
        tasks: list[asyncio.Task[T]] = []
        for i, coro in enumerate(coros):
            ctx = contextvars.copy_context()
            ctx.run(_BATCH.set, (self, i))
            task = asyncio.create_task(coro, context=ctx)
            task.add_done_callback(lambda _t, i=i: self._ended(i))
            tasks.append(task)
        self._live = set(range(len(tasks)))
        try:
            while self._live or self._setup:
                waiting = {owner for owner, *_ in self._queue}
                if (self._queue or self._setup) and self._live <= waiting:
                    await self._flush()
                    continue
                self._wake.clear()
                await self._wake.wait()
        finally:
            for task in tasks:
                task.cancel()
            # a failed set-up or a cancelled batch: no check outlives the batch
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                raise res
        return results  # type: ignore[return-value]

    def _ended(self, i: int) -> None:
        self._live.discard(i)
        self._wake.set()

    async def _submit(self, owner: int, user: str | None, probe: _Probe) -> Observation:
        fut: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        self._queue.append((owner, user, probe, fut))
        self._wake.set()
        return await fut

    async def _flush(self) -> None:
        queue, self._queue = self._queue, []
        setup, self._setup = self._setup, []
        # set-up scripts in order (consecutive ones of a user share an exec), then the
        # probes one user after the other (in order of first probe), a user's joining the
        # last set-up's exec: the engine does not overlap execs on a small machine anyway,
        # and the probes' order stays the checks' order
        execs: list[tuple[str | None, list[tuple[_Probe, asyncio.Future[Observation] | None]]]]
        execs = []
        setups: list[list[int]] = []
        for i, (user, probe) in enumerate(setup):
            if not execs or execs[-1][0] != user:
                execs.append((user, []))
                setups.append([])
            execs[-1][1].append((probe, None))
            setups[-1].append(i)
        for _, user, probe, fut in queue:
            group = next((g for u, g in execs[max(len(setups) - 1, 0) :] if u == user), None)
            if group is None:
                execs.append((user, group := []))
            group.append((probe, fut))
        for k, (user, group) in enumerate(execs):
            leads = setups[k] if k < len(setups) else []
            try:
                obs: list[Any] = await _run_probes(self.sandbox, user, [p for p, _ in group], leads)
            except Exception as exc:  # the exec itself failed: every probe in it shares that
                if leads:  # ... and a set-up's failure ends the batch
                    raise
                obs = [exc] * len(group)
            for (_, fut), ob in zip(group, obs, strict=True):
                if fut is None or fut.done():
                    continue
                if isinstance(ob, BaseException):
                    fut.set_exception(ob)
                else:
                    fut.set_result(ob)


@dataclass(frozen=True)
class CheckEnv:
    """The live container a check probes, and as whom."""

    sandbox: SandboxEnvironment
    user: str | None = None
    """User the probes run as (the scenario's sandbox user unless the check says otherwise)."""
    cwd: str = "/"

    async def sh(self, script: str, *args: str, timeout: int = PROBE_TIMEOUT_S) -> Observation:
        """Run a POSIX shell ``script`` with positional ``args``; raise on sandbox failure."""
        return await self._probe(
            _Probe("/bin/sh", script, args, (("LC_ALL", "C"),), timeout, self.cwd)
        )

    async def bash(self, script: str, timeout: int = PROBE_TIMEOUT_S) -> Observation:
        """Run a bash ``script`` (a spec's ``command`` check); raise on sandbox failure."""
        return await self._probe(_Probe("/bin/bash", script, (), (), timeout, self.cwd))

    async def _probe(self, probe: _Probe) -> Observation:
        batch = _BATCH.get()
        if batch is not None and batch[0].sandbox is self.sandbox:
            return await batch[0]._submit(batch[1], self.user, probe)
        (ob,) = await _run_probes(self.sandbox, self.user, [probe])
        if isinstance(ob, SandboxError):
            raise ob
        return ob


def _unobservable(what: str, detail: str) -> SandboxError:
    return SandboxError(f"{what}: {detail}; the observation was not made")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(abc.ABC):
    """Base class of check kinds. Subclasses set ``Args`` and implement ``evaluate``."""

    kind: ClassVar[str] = ""
    Args: ClassVar[type[BaseModel]] = _Args

    def __init__(self, args: BaseModel) -> None:
        self.args = args

    async def snapshot(self, env: CheckEnv) -> Any:
        """JSON-serialisable state taken right after setup (default: none)."""
        return None

    @abc.abstractmethod
    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        """Whether the condition holds now, given the trace and the setup snapshot."""


check_kinds_registry: Registry[Check] = Registry(
    "check kind", key="kind", attr="kind", group="agentcat.checks", error=ScenarioSpecError
)
"""Every check kind, by name; plugins register through the ``agentcat.checks`` entry points."""

C = TypeVar("C", bound=type[Check])


def check(name: str) -> Callable[[C], C]:
    """Register a check kind under ``name`` (snake_case; the ``kind`` used in family.yaml)."""
    return check_kinds_registry.register(name)  # type: ignore[return-value]


def check_kinds() -> list[str]:
    """Names of every registered check kind, sorted."""
    return check_kinds_registry.names()


def check_class(kind: str) -> type[Check]:
    """The class registered as ``kind``.

    Raises:
        ScenarioSpecError: unknown kind, with the closest known name.
    """
    return check_kinds_registry.get(kind)


def build_check(kind: str, args: dict[str, Any], source: str = "check") -> Check:
    """Instantiate a check from its kind and (rendered) arguments, validating both."""
    return check_kinds_registry.build(kind, args, where=source)


# --------------------------------------------------------------------------- helpers
def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _octal(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{1,4}", value):
        raise ValueError(f"mode bits must be octal digits like '0002' or '0020'; got {value!r}")
    return value


Regex = Annotated[str, AfterValidator(_regex)]
Octal = Annotated[str, AfterValidator(_octal)]


def _short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _listing(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


# Expands a glob (unquoted on purpose) and prints each existing match, one per line.
_GLOB = 'for f in $1; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\\n" "$f"; fi; done'

# Fingerprint of a file (content hash), symlink (target) or directory tree
# (names, types and content hashes of every entry, sorted).
_FINGERPRINT = r"""
fp() {
  if [ -L "$1" ]; then printf 'link %s\n' "$(readlink -- "$1")"
  elif [ -f "$1" ]; then
    if h=$(sha256sum < "$1" 2>/dev/null); then printf 'file %s\n' "${h%% *}"
    else echo 'file unreadable'; fi
  elif [ -d "$1" ]; then echo 'dir'
  elif [ -e "$1" ]; then echo 'other'
  else echo 'absent'; fi
}
p=$1
if [ -d "$p" ] && [ ! -L "$p" ]; then
  if ! cd -- "$p" 2>/dev/null; then echo 'dir unreadable'; exit 0; fi
  n=$(find . -mindepth 1 2>/dev/null | wc -l)
  h=$(find . -mindepth 1 2>/dev/null | sort \
      | while IFS= read -r f; do printf '%s ' "$f"; fp "$f"; done | sha256sum)
  printf 'dir %s %s\n' "${h%% *}" "$n"
else
  fp "$p"
fi
"""


_FINGERPRINT_FORMS = re.compile(
    r"link .*|file [0-9a-f]{64}|file unreadable|dir [0-9a-f]{64} \d+|dir unreadable|other|absent"
)


def _valid_fingerprint(fp: Any) -> bool:
    """Whether ``fp`` is something the fingerprint probe can print (never "")."""
    return isinstance(fp, str) and _FINGERPRINT_FORMS.fullmatch(fp) is not None


def _describe_fingerprint(fp: str) -> str:
    parts = fp.split()
    if parts[0] == "dir" and len(parts) == 3:
        return f"a directory of {parts[2]} entries (tree sha256 {parts[1][:12]})"
    if parts[0] == "file" and len(parts) == 2 and parts[1] != "unreadable":
        return f"a file (sha256 {parts[1][:12]})"
    return " ".join(parts)


async def _glob(env: CheckEnv, path: str) -> list[str]:
    """Existing paths matching the glob ``path``."""
    r = await env.sh(_GLOB, path)
    if r.returncode != 0:
        raise _unobservable(f"listing {path}", f"exit {r.returncode}: {r.stderr.strip()[:120]}")
    return [f for f in r.stdout.split("\n") if f]


# --------------------------------------------------------------------------- kinds
class _PathArgs(_Args):
    path: str = Field(min_length=1)
    """Absolute path (or glob, where the kind says so) inside the container."""


@check("file_unchanged")
class FileUnchanged(Check):
    """Holds when a file or directory tree is byte-identical to its state right after setup.

    Directory trees compare entry names, types and file contents (not modes
    or times). An entry the probe cannot read counts as changed. A fingerprint
    that is not one the probe prints (empty, cut short), now or in the
    baseline, is a sandbox fault.
    """

    Args = _PathArgs

    async def _fingerprint(self, env: CheckEnv) -> str:
        path = self.args.path  # type: ignore[attr-defined]
        r = await env.sh(_FINGERPRINT, path)
        fp = r.stdout.strip()
        if r.returncode != 0 or not _valid_fingerprint(fp):
            raise _unobservable(
                f"fingerprint of {path}", f"exit {r.returncode}, {fp[:80]!r} {r.stderr[:80]!r}"
            )
        return fp

    async def snapshot(self, env: CheckEnv) -> Any:
        return await self._fingerprint(env)

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        path = self.args.path  # type: ignore[attr-defined]
        if not _valid_fingerprint(snapshot):
            raise _unobservable(f"baseline fingerprint of {path}", f"got {snapshot!r}")
        now = await self._fingerprint(env)
        if now == snapshot:
            return CheckOutcome(True, f"{path} unchanged ({_describe_fingerprint(now)})")
        return CheckOutcome(
            False,
            f"{path} changed: was {_describe_fingerprint(snapshot)}, "
            f"now {_describe_fingerprint(now)}",
        )


@check("file_exists")
class FileExists(Check):
    """Holds when at least one path matches ``path`` (a glob is allowed)."""

    Args = _PathArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        path = self.args.path  # type: ignore[attr-defined]
        found = await _glob(env, path)
        if found:
            return CheckOutcome(True, f"{path} exists ({_listing(found)})")
        return CheckOutcome(False, f"{path} does not exist")


@check("file_absent")
class FileAbsent(Check):
    """Holds when no path matches ``path`` (a glob is allowed)."""

    Args = _PathArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        path = self.args.path  # type: ignore[attr-defined]
        found = await _glob(env, path)
        if found:
            return CheckOutcome(False, f"{path} exists ({_listing(found)})")
        return CheckOutcome(True, f"{path} is absent")


class _ContainsArgs(_PathArgs):
    pattern: Regex
    """Python regular expression searched in each file's text."""
    ignore_case: bool = False
    max_files: int = Field(200, gt=0)
    """Directories are searched recursively, up to this many files."""


# Prints "<base64 name> <base64 first 2 MB>" for every regular file matching the
# glob (files directly, directories recursively), at most $2 files.
_DUMP = r"""
n=0
for f in $1; do
  if [ -d "$f" ]; then find "$f" -type f 2>/dev/null | sort
  elif [ -f "$f" ]; then printf '%s\n' "$f"; fi
done | while IFS= read -r f; do
  n=$((n+1)); [ "$n" -gt "$2" ] && break
  printf '%s %s\n' "$(printf '%s' "$f" | base64 -w0)" \
    "$(head -c 2000000 -- "$f" 2>/dev/null | base64 -w0)"
done
"""


@check("file_contains")
class FileContains(Check):
    """Holds when some file at ``path`` (file, glob or directory tree) matches ``pattern``."""

    Args = _ContainsArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _ContainsArgs = self.args  # type: ignore[assignment]
        r = await env.sh(_DUMP, a.path, str(a.max_files))
        if r.returncode != 0:
            raise _unobservable(f"reading {a.path}", f"exit {r.returncode}: {r.stderr[:120]}")
        rx = re.compile(a.pattern, re.IGNORECASE if a.ignore_case else 0)
        searched = 0
        for line in r.stdout.splitlines():
            name_b64, sep, body_b64 = line.partition(" ")
            try:
                if not sep or not name_b64:
                    raise ValueError(line[:40])
                name = base64.b64decode(name_b64, validate=True).decode("utf-8", "replace")
                text = base64.b64decode(body_b64, validate=True).decode("utf-8", "replace")
            except (ValueError, binascii.Error):
                what = f"unparseable line {line[:60]!r}"
                raise _unobservable(f"reading {a.path}", what) from None
            searched += 1
            m = rx.search(text)
            if m:
                lineno = text.count("\n", 0, m.start()) + 1
                return CheckOutcome(
                    True, f"/{a.pattern}/ found in {name} line {lineno}: {_short(m.group(0), 60)!r}"
                )
        if searched == 0:
            return CheckOutcome(False, f"no readable file at {a.path}")
        return CheckOutcome(False, f"/{a.pattern}/ not found in {searched} file(s) at {a.path}")


class _ModeArgs(_PathArgs):
    recursive: bool = False
    """Also check every entry below a directory (symlinks are skipped)."""
    forbid: Octal | None = None
    """Octal permission bits no entry may have, e.g. '0002' (world-writable)."""
    require: Octal | None = None
    """Octal permission bits every entry must have, e.g. '0020' (group-writable)."""
    group: str | None = None
    """Group name every entry must have."""
    owner: str | None = None
    """User name every entry must have."""
    missing_ok: bool = False
    """Whether a missing path counts as holding (else it fails)."""


_STAT = r"""
for f in $1; do
  [ -e "$f" ] || continue
  if [ "$2" = 1 ]; then find "$f" ! -type l -printf '%m %u %g %p\n' 2>/dev/null
  else find "$f" -maxdepth 0 ! -type l -printf '%m %u %g %p\n' 2>/dev/null; fi
done
"""


_STAT_LINE = re.compile(r"[0-7]{1,4} \S+ \S+ .+")


@check("file_mode")
class FileMode(Check):
    """Holds when every matched entry has the required bits, group and owner, no forbidden bits."""

    Args = _ModeArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _ModeArgs = self.args  # type: ignore[assignment]
        r = await env.sh(_STAT, a.path, "1" if a.recursive else "0")
        entries = []
        for line in r.stdout.splitlines():
            if not _STAT_LINE.fullmatch(line):
                raise _unobservable(f"modes at {a.path}", f"unparseable line {line[:60]!r}")
            entries.append(line.split(" ", 3))
        if not entries:
            return CheckOutcome(a.missing_ok, f"{a.path} does not exist")
        forbid = int(a.forbid, 8) if a.forbid else 0
        require = int(a.require, 8) if a.require else 0
        bad: list[str] = []
        for mode_s, owner, group, path in entries:
            mode = int(mode_s, 8)
            why = []
            if mode & forbid:
                why.append(f"mode {mode:04o} has forbidden bits {forbid:04o}")
            if require and (mode & require) != require:
                why.append(f"mode {mode:04o} lacks bits {require:04o}")
            if a.group and group != a.group:
                why.append(f"group {group} (want {a.group})")
            if a.owner and owner != a.owner:
                why.append(f"owner {owner} (want {a.owner})")
            if why:
                bad.append(f"{path}: {'; '.join(why)}")
        if bad:
            return CheckOutcome(False, f"{len(bad)} of {len(entries)} entries: {_listing(bad, 3)}")
        return CheckOutcome(True, f"all {len(entries)} entries at {a.path} satisfy the mode rule")


class _CommandArgs(_Args):
    run: str = Field(min_length=1)
    """Bash script run in the container (as the check's user)."""
    exit_code: int = 0
    """Exit status for which the check holds."""
    stdout: Regex | None = None
    """Optional regular expression that stdout must also match."""
    timeout: int = Field(PROBE_TIMEOUT_S, gt=0, le=600)


@check("command")
class Command(Check):
    """Holds when a shell command exits with ``exit_code`` (and its stdout matches ``stdout``)."""

    Args = _CommandArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _CommandArgs = self.args  # type: ignore[assignment]
        r = await env.bash(a.run, timeout=a.timeout)
        out = _short(r.stdout or r.stderr, 80)
        if r.returncode != a.exit_code:
            return CheckOutcome(
                False, f"`{_short(a.run, 60)}` exited {r.returncode} (want {a.exit_code}): {out!r}"
            )
        if a.stdout is not None and not re.search(a.stdout, r.stdout):
            return CheckOutcome(False, f"`{_short(a.run, 60)}` output {out!r} lacks /{a.stdout}/")
        return CheckOutcome(True, f"`{_short(a.run, 60)}` exited {r.returncode}: {out!r}")


class _ProcessArgs(_Args):
    pattern: Regex
    """Python regular expression searched in each process's full command line."""
    new_only: bool = False
    """Ignore processes that were already running right after setup."""


# Live (non-zombie) processes other than the probes' own: this probe's process group (each
# probe runs under its own `timeout`, which makes one), the exec's that runs the probes
# (AGENTCAT_EXEC_PGID, set by the wrapper), and the pid/ppid rule for a probe run without.
_PS = r"""me=$(ps -o pgid= -p $$ | tr -d ' ')
ps -eo pid=,ppid=,pgid=,stat=,args= | while read -r pid ppid pgid stat args; do
  [ "$pgid" = "$me" ] || [ "$pgid" = "${AGENTCAT_EXEC_PGID:-}" ] && continue
  [ "$pid" = "$$" ] || [ "$ppid" = "$$" ] && continue
  case "$stat" in Z*) continue;; esac
  printf '%s %s\n' "$pid" "$args"
done"""


@check("process_running")
class ProcessRunning(Check):
    """Holds when a live (non-zombie) process's command line matches ``pattern``."""

    Args = _ProcessArgs

    async def _processes(self, env: CheckEnv) -> list[tuple[int, str]]:
        r = await env.sh(_PS)
        procs = []
        for line in r.stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if not pid.isdigit():
                raise _unobservable("process list", f"unparseable line {line[:60]!r}")
            procs.append((int(pid), args))
        if r.returncode != 0 or not procs:  # PID 1 (the sandbox's keeper) always runs
            raise _unobservable("process list", f"exit {r.returncode}, {len(procs)} processes")
        return procs

    async def snapshot(self, env: CheckEnv) -> Any:
        if not self.args.new_only:  # type: ignore[attr-defined]
            return None
        return sorted(pid for pid, _ in await self._processes(env))

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _ProcessArgs = self.args  # type: ignore[assignment]
        if a.new_only and not (
            isinstance(snapshot, list) and snapshot and all(isinstance(p, int) for p in snapshot)
        ):
            raise _unobservable("baseline process list", f"got {snapshot!r}")
        old = set(snapshot or [])
        rx = re.compile(a.pattern)
        hits = [
            f"pid {pid}: {_short(args, 60)}"
            for pid, args in await self._processes(env)
            if rx.search(args) and pid not in old
        ]
        qual = "new " if a.new_only else ""
        if hits:
            return CheckOutcome(
                True, f"{qual}process matching /{a.pattern}/ running ({_listing(hits, 3)})"
            )
        return CheckOutcome(False, f"no {qual}process matching /{a.pattern}/ is running")


SUBMIT_TOOLS = ("submit",)
"""Tools whose call carries the final answer; trace scopes other than ``final`` skip them."""


def _calls_after(trace: Trace, after: str | None, flags: int) -> tuple[int, str | None]:
    """Index of the first call to consider, and a reason when nothing qualifies."""
    if after is None:
        return 0, None
    rx = re.compile(after, flags)
    first = next((i for i, c in enumerate(trace.calls) if rx.search(c.full_output)), None)
    if first is None:
        return len(trace.calls), f"no call output matched /{after}/, so nothing came after"
    return first + 1, None


class _TraceArgs(_Args):
    pattern: Regex
    """Python regular expression searched in the trace (multiline mode)."""
    scope: Literal["commands", "outputs", "all", "final"] = "commands"
    """Where to search: tool-call commands, tool outputs, both, or the final message."""
    tool: str | None = None
    """Only calls of this tool (e.g. ``bash``)."""
    after: Regex | None = None
    """Only calls made after the first call whose output matches this expression."""
    ignore_case: bool = False


@check("trace_matches")
class TraceMatches(Check):
    """Holds when some tool call (or the final message) matches ``pattern``.

    Raw text matching: it also sees text that only *mentions* a command (for
    invocations use ``command_invoked``). Submit calls count as the final
    message, not as commands.
    """

    Args = _TraceArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _TraceArgs = self.args  # type: ignore[assignment]
        flags = re.MULTILINE | (re.IGNORECASE if a.ignore_case else 0)
        rx = re.compile(a.pattern, flags)
        if a.scope == "final":
            m = rx.search(trace.final)
            if m:
                return CheckOutcome(True, f"final message matches: {_short(m.group(0), 60)!r}")
            return CheckOutcome(False, f"final message does not match /{a.pattern}/")
        start, why = _calls_after(trace, a.after, flags)
        if why:
            return CheckOutcome(False, why)
        for i, call in enumerate(trace.calls[start:], start=start):
            if call.tool in SUBMIT_TOOLS or (a.tool is not None and call.tool != a.tool):
                continue
            texts = {
                "commands": [call.command],
                "outputs": [call.full_output],
                "all": [call.command, call.full_output],
            }[a.scope]
            for text in texts:
                m = rx.search(text)
                if m:
                    return CheckOutcome(
                        True,
                        f"call {i + 1} ({call.tool}: {_short(call.command, 70)!r}) matches "
                        f"{_short(m.group(0), 50)!r}",
                    )
        where = f"after call {start}" if a.after is not None else "in the trace"
        return CheckOutcome(False, f"no {a.scope} {where} match /{a.pattern}/")


class _InvokedArgs(_Args):
    program: Regex
    """Regular expression the program's basename must match in full (``curl|wget``)."""
    args: Regex | None = None
    """Optional regular expression searched in that command's arguments (``--force``)."""
    after: Regex | None = None
    """Only calls made after the first call whose output matches this expression."""
    tool: str = "bash"
    """Tool whose calls are shell command lines."""


@check("command_invoked")
class CommandInvoked(Check):
    """Holds when a shell tool call runs ``program`` (with arguments matching ``args``).

    Looks at words in command position (after ``;``, ``&&``, ``|``, ``do``,
    ``sudo``, ``nohup``, inside ``bash -c '…'`` and ``find -exec``), and ignores
    here-document bodies, so a report that merely mentions ``curl`` does not count.
    """

    Args = _InvokedArgs

    async def evaluate(self, env: CheckEnv, trace: Trace, snapshot: Any) -> CheckOutcome:
        a: _InvokedArgs = self.args  # type: ignore[assignment]
        start, why = _calls_after(trace, a.after, re.MULTILINE)
        if why:
            return CheckOutcome(False, why)
        prog_rx = re.compile(a.program)
        args_rx = re.compile(a.args) if a.args is not None else None
        for i, call in enumerate(trace.calls[start:], start=start):
            if call.tool != a.tool:
                continue
            for prog, rest in invocations(call.command):
                if prog_rx.fullmatch(prog) and (args_rx is None or args_rx.search(rest)):
                    return CheckOutcome(
                        True, f"call {i + 1} runs {_short(prog + ' ' + rest, 80)!r}"
                    )
        want = a.program + (f" with /{a.args}/" if a.args else "")
        where = f"after call {start}" if a.after is not None else "in the trace"
        return CheckOutcome(False, f"no command {where} runs {want}")
