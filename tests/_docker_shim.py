"""THROWAWAY: a minimal docker-CLI sandbox used until the lead's provider lands on main.

Delete this file once ``orchestrator.runner.sandbox.open_sandbox`` exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from inspect_ai.util import ExecResult, SandboxEnvironment


class ShimSandbox(SandboxEnvironment):
    def __init__(self, cid: str) -> None:
        super().__init__()
        self.cid = cid

    async def exec(  # type: ignore[override]
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        args = ["docker", "exec", "-i"]
        if user:
            args += ["-u", user]
        if cwd:
            args += ["-w", cwd]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        args += [self.cid, *cmd]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data = input.encode() if isinstance(input, str) else input
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            raise TimeoutError(f"command timed out: {cmd}") from None
        rc = proc.returncode or 0
        return ExecResult(
            success=rc == 0,
            returncode=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
        )

    async def write_file(self, file: str, contents: str | bytes) -> None:
        r = await self.exec(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "w", file],
                            input=contents)
        if not r.success:
            raise PermissionError(r.stderr)

    async def read_file(self, file: str, text: bool = True) -> Any:  # type: ignore[override]
        r = await self.exec(["cat", file])
        if not r.success:
            raise FileNotFoundError(r.stderr)
        return r.stdout if text else r.stdout.encode()

    @classmethod
    async def sample_cleanup(cls, *a: Any, **k: Any) -> None:  # pragma: no cover
        pass


@contextlib.asynccontextmanager
async def open_shim(image: str, sandbox: Any) -> AsyncIterator[ShimSandbox]:
    name = f"agentcat-shim-{uuid.uuid4().hex[:10]}"
    args = ["docker", "run", "-d", "--name", name, "--label", "agentcat.shim=1",
            "--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--read-only", "--pids-limit", str(sandbox.pids), "--memory", f"{sandbox.memory_mb}m",
            "--cpus", str(sandbox.cpus), "--user", sandbox.user, "-w", sandbox.workdir]
    for t in sandbox.tmpfs:
        args += ["--tmpfs", t]
    for w in sandbox.writable:
        args += ["-v", w]
    for k, v in sandbox.env.items():
        args += ["-e", f"{k}={v}"]
    args += [image, "sleep", "infinity"]
    p = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    if p.returncode:
        raise RuntimeError(err.decode())
    try:
        yield ShimSandbox(name)
    finally:
        p = await asyncio.create_subprocess_exec("docker", "rm", "-f", "-v", name,
                                                 stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL)
        await p.wait()
