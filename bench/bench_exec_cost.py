"""CPU one ``docker exec`` of a sandbox costs, by process: what an exec saved is worth.

Runs ``--execs`` trivial commands (``true``) one after the other in one hardened
sandbox and charges the CPU time spent meanwhile (``/proc/<pid>/stat``
utime+stime+cutime+cstime) to this process (the Docker SDK calls: create,
start and stream, inspect for the exit code), ``dockerd``, ``containerd`` and
the sandbox's ``containerd-shim`` (which reaps ``runc`` and the exec's
process). The engine is shared: other users' work on it is charged here too,
so read it on a quiet engine. Prints ms per exec and writes JSON (default
``bench/results/bench_exec_cost.json``).

    nice python bench/bench_exec_cost.py [--execs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from _results import header, write_json

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])


def _pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _shim(container_id: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes() if d.name.isdigit() else b""
        except OSError:
            continue
        if b"containerd-shim" in cmd and container_id.encode() in cmd:
            found.append(int(d.name))
    return found


async def _measure(execs: int) -> dict[str, float]:
    from orchestrator.runner.images import ensure_base_image
    from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec

    spec = SandboxSpec(image=ensure_base_image().image, user="root", workdir="/root")
    sb = await AgentcatSandbox.create(spec, {"agentcat.bench": "exec_cost"})
    try:
        for _ in range(3):
            await sb.exec(["true"])
        procs = {
            "dockerd": _pids("dockerd"),
            "containerd": _pids("containerd"),
            "shim": _shim(sb.container_id),
        }
        before = {k: sum(_ticks(p) for p in v) for k, v in procs.items()}
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(execs):
            r = await sb.exec(["true"])
            if r.returncode != 0:
                raise SystemExit(f"exec failed: {r}")
        own, wall = time.process_time() - c0, time.perf_counter() - w0
        after = {k: sum(_ticks(p) for p in v) for k, v in procs.items()}
    finally:
        await sb.remove()
    ms = {"python": 1000 * own / execs}
    ms.update({k: 1000 * (after[k] - before[k]) / TICK / execs for k in procs})
    ms["sum"] = sum(ms.values())
    ms["wall"] = 1000 * wall / execs
    return ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--execs", type=int, default=200)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_exec_cost.json")
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    ms = asyncio.run(_measure(args.execs))
    load1 = os.getloadavg()
    print(
        f"{args.execs} execs, ms per exec: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
        + f"; load average {load0[0]:.1f} → {load1[0]:.1f}"
    )
    doc = {
        **header("bench_exec_cost", "bench_exec_cost.py", argv),
        "execs": args.execs,
        "ms_per_exec": ms,
        "load_avg_before": load0,
        "load_avg_after": load1,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
