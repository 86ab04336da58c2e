"""The engine's CPU floor per live item: CPU seconds per Docker operation, done as we do it.

A live item needs one fresh hardened container (per-item fault isolation) and
a handful of ``docker exec`` calls; whatever else the harness saves, these stay.
This prices each operation, done one at a time through the real code
(:mod:`orchestrator.runner.sandbox`), by the CPU it costs every process
involved, read from ``/proc/<pid>/stat`` as utime+stime+cutime+cstime with the
sampler of ``bench_item_cpu.py``:

* ``python``: this process (the sandbox client), less the sampler thread;
* ``dockerd`` and ``containerd``: the engine (its re-execs, ``docker-untar`` …,
  are reaped by it and count here);
* ``shims``: the containerd-shim of each container the operation used,
  including its ``runc`` calls and the container processes it reaps;
  ``containers`` is the containers' own processes by cgroup (a part of
  ``shims``; a container removed between two polls is missed there).

Operations (per round ``--n`` calls of the container ones, ``--n-cheap`` of execs and
archives, whose CPU is a few clock ticks; ``--rounds`` rounds, interleaved):

* ``lifecycle``: ``open_sandbox`` of a family's spec (``--family``): create with
  the hardening and the tmpfs volumes, start, seed each volume (``put_archive``),
  then kill and remove it with its volumes;
* ``lifecycle_noseed``: the same spec without tmpfs volumes (workdir ``/tmp``,
  no ``writable``), so the difference prices the volumes and seeds;
* ``exec_true``: ``AgentcatSandbox.exec(["true"])`` in a live sandbox (``_run_exec``);
* ``exec_bash_tool``: the exec Inspect's bash tool makes (``bash --login -c``,
  with a timeout: ``/usr/bin/timeout`` wraps it), running ``true``;
* ``put_archive``: ``_seed`` of a small tar (one 1 KiB file) into a live sandbox;
  ``put_archive_empty``: of a tar with no entries (what an empty image directory
  seeds: ``_seed`` skips only ``b""``);
* ``docker_run_rm``: the family image running ``true`` with no hardening, as
  ``docker run --rm`` via the SDK (create, start, wait, logs, remove);
* ``idle``: nothing (sleeps): what the engine spends meanwhile for others;
* ``lifecycle_x4`` and ``exec_true_x4``: four at once (``asyncio.gather``), as
  concurrent workers do; CPU per op, to see whether concurrency adds to it.

The engine is shared (other users' containers are charged to ``dockerd`` and
``containerd`` too): the engine's event stream tells, per batch, whether any
other user's container had an event in its window; per-op values are the
median over these *clean* batches (``clean``), beside the median, mean and min
of all. The floor per item is ``lifecycle + execs × exec`` (execs per item
measured by ``bench_item_cpu.py``), and the most items per minute it allows on
this machine's cores at 100 % CPU.

    nice python bench/bench_engine_floor.py [--family disk_cleanup] [--n 5] [--n-cheap 25]
        [--rounds 4]

Needs Docker and the scenario images. Writes bench/results/bench_engine_floor.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_item_cpu
from _results import header, write_json
from bench_item_cpu import TICK, EngineEvents, Sampler, machine_busy

from orchestrator.runner.docker_client import docker_client
from orchestrator.runner.images import family_image
from orchestrator.runner.sandbox import (
    AgentcatSandbox,
    SandboxSpec,
    _Content,
    _image_content,
    _seed,
    open_sandbox,
)
from orchestrator.scenario import load_families

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / "environments"
RESULTS = REPO / "bench" / "results" / "bench_engine_floor.json"
LABELS = {"agentcat.bench": "engine_floor"}
PARTS = ("python", "dockerd", "containerd", "shims")
ENGINE = ("dockerd", "containerd", "shims")
IDLE_S = 0.4
# a `docker run --rm true` shim lives a few hundred ms: poll often enough to read its
# container id while it is alive (the sampler's scan is ~2 ms; its CPU is subtracted)
bench_item_cpu.POLL_S = 0.05


@dataclass
class Bench:
    spec: SandboxSpec
    noseed: SandboxSpec
    live: AgentcatSandbox
    small_tar: _Content
    empty_tar: _Content
    mine: set[str] = field(default_factory=set)

    async def lifecycle(self) -> None:
        async with open_sandbox(self.spec, LABELS) as sb:
            self.mine.add(sb.container_id)

    async def lifecycle_noseed(self) -> None:
        async with open_sandbox(self.noseed, LABELS) as sb:
            self.mine.add(sb.container_id)

    async def exec_true(self) -> None:
        res = await self.live.exec(["true"])
        assert res.success, res.stderr

    async def exec_bash_tool(self) -> None:
        res = await self.live.exec(["bash", "--login", "-c", "true"], timeout=180)
        assert res.success, res.stderr

    async def put_archive(self) -> None:
        _seed(self.live.container_id, self.spec.workdir, self.small_tar)

    async def put_archive_empty(self) -> None:
        _seed(self.live.container_id, self.spec.workdir, self.empty_tar)

    async def docker_run_rm(self) -> None:
        # what containers.run(image, cmd, remove=True) does, keeping the container's id
        c = docker_client().containers.create(self.spec.image, ["true"], labels=LABELS)
        self.mine.add(str(c.id))
        c.start()
        c.wait()
        c.logs()
        c.remove(v=True)

    async def idle(self) -> None:
        await asyncio.sleep(IDLE_S)

    async def lifecycle_x4(self) -> None:
        await asyncio.gather(*(self.lifecycle() for _ in range(CONCURRENT)))

    async def exec_true_x4(self) -> None:
        await asyncio.gather(*(self.exec_true() for _ in range(CONCURRENT)))


CONCURRENT = 4
OPS: dict[str, tuple[bool, int]] = {  # op → (cheap: run --n-cheap times, not --n; ops per call)
    "lifecycle": (False, 1),
    "lifecycle_noseed": (False, 1),
    "lifecycle_x4": (False, CONCURRENT),
    "exec_true": (True, 1),
    "exec_true_x4": (True, CONCURRENT),
    "exec_bash_tool": (True, 1),
    "put_archive": (True, 1),
    "put_archive_empty": (True, 1),
    "docker_run_rm": (False, 1),
    "idle": (False, 1),
}


def _tar(size: int | None) -> _Content:
    """A tar of one file of ``size`` bytes, or of nothing (what an empty directory seeds)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        if size is not None:
            info = tarfile.TarInfo("engine_floor.txt")
            info.size, info.mode = size, 0o644
            tar.addfile(info, io.BytesIO(b"x" * size))
    return _Content(tar=out.getvalue())


def _engine_pids() -> dict[str, int]:
    """The dockerd and containerd daemons: per name, the process that has spent the most."""
    s = Sampler(root=os.getpid(), skip=set())
    s.scan(initial=True)
    return {
        comm: max(
            (pid for pid, p in s.last.items() if p.comm == comm), key=lambda q: s.last[q].total
        )
        for comm in ("dockerd", "containerd")
    }


async def batch(
    op: Callable[[], Awaitable[None]], calls: int, per_call: int, b: Bench, daemons: dict[str, int]
) -> dict[str, Any]:
    """Call ``op`` ``calls`` times (``per_call`` ops each); the CPU each part spent, per op."""
    me = os.getpid()
    before = set(b.mine)
    with Sampler(root=me, skip=set()) as s:
        busy0, ns0, t0, cpu0 = (
            machine_busy(),
            time.time_ns(),
            time.perf_counter(),
            time.process_time(),
        )
        for _ in range(calls):
            await op()
        cpu1, t1, ns1, busy1 = (
            time.process_time(),
            time.perf_counter(),
            time.time_ns(),
            machine_busy(),
        )
    used = (b.mine - before) | {b.live.container_id}
    # shims born in the window whose id no poll read (they lived < one poll): mine when
    # no other user started a container in the window (see `settle`)
    unread = [pid for pid, cid in s.shim_cid.items() if not cid and s.first[pid].total == 0]
    return {
        "n": calls * per_call,
        "wall_s": t1 - t0,
        "window_ns": [ns0, ns1],
        "cpu_sum_s": {
            "python": cpu1 - cpu0 - s.thread_cpu_s,
            "dockerd": s.delta(daemons["dockerd"]),
            "containerd": s.delta(daemons["containerd"]),
            "shims": sum(s.delta(pid) for pid, cid in s.shim_cid.items() if cid in used),
            "containers": sum(
                (s.cg_last[c] - s.cg_first.get(c, 0)) / 1e9 for c in used if c in s.cg_last
            ),
        },
        "shims_unread": len(unread),
        "shims_unread_s": sum(s.delta(pid) for pid in unread),
        "machine_busy_sum_s": (busy1 - busy0) / TICK,
    }


def settle(row: dict[str, Any], events: list[dict[str, Any]], mine: set[str]) -> None:
    """Per-op values of a batch, once the engine's events say what else ran in its window.

    A batch is *clean* when no other user's container had an event in its window
    (their API calls then cost the engine next to nothing: the ``idle`` op's clean
    batches read 0); the unread shims of a window where nobody else started a
    container are this batch's.
    """
    lo, hi = row["window_ns"]
    foreign = [e for e in events if lo <= e["timeNano"] <= hi and e["Actor"]["ID"] not in mine]
    row["foreign_events"] = len(foreign)
    row["foreign_starts"] = sum(e.get("Action") == "start" for e in foreign)
    cpu = dict(row["cpu_sum_s"])
    if row["foreign_starts"] == 0:
        cpu["shims"] += row["shims_unread_s"]
    n = row["n"]
    row["cpu_s"] = {k: v / n for k, v in cpu.items()}
    row["total_s"] = sum(cpu[k] for k in PARTS) / n
    row["engine_s"] = sum(cpu[k] for k in ENGINE) / n
    row["wall_per_op_s"] = row["wall_s"] / n
    row["machine_busy_s"] = row["machine_busy_sum_s"] / n


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per op and part: mean over all ops; median and min over batches; and the median
    over the clean batches (``clean``; the median of all when none is clean)."""
    clean = [r for r in rows if r["foreign_events"] == 0]

    def stats(get: Callable[[dict[str, Any]], float]) -> dict[str, float]:
        values = [get(r) for r in rows]
        mean = sum(v * r["n"] for v, r in zip(values, rows, strict=True)) / sum(
            r["n"] for r in rows
        )
        median = statistics.median(values)
        return {
            "clean": statistics.median(get(r) for r in clean) if clean else median,
            "mean": mean,
            "median": median,
            "min": min(values),
        }

    out: dict[str, Any] = {
        part: stats(lambda r, part=part: r["cpu_s"][part]) for part in (*PARTS, "containers")
    }
    out["total"] = stats(lambda r: r["total_s"])
    out["engine"] = stats(lambda r: r["engine_s"])
    out["wall"] = stats(lambda r: r["wall_per_op_s"])
    out["machine_busy"] = stats(lambda r: r["machine_busy_s"])
    out["batches"] = len(rows)
    out["clean_batches"] = len(clean)
    out["foreign_events"] = sum(r["foreign_events"] for r in rows)
    out["shims_unread"] = sum(r["shims_unread"] for r in rows)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    family = load_families(ENV)[args.family]
    image = family_image(args.family, ENV)
    spec = SandboxSpec(image=image, **family.sandbox.model_dump())
    noseed = SandboxSpec(**{**spec.model_dump(), "writable": [], "workdir": "/tmp"})
    assert not noseed.writable_paths()
    image_id = str(docker_client().images.get(image).id)
    seed_bytes = {p: len(_image_content(image_id, p).tar) for p in spec.writable_paths()}
    daemons = _engine_pids()
    rows: dict[str, list[dict[str, Any]]] = {op: [] for op in OPS}
    async with open_sandbox(spec, LABELS) as live:
        b = Bench(spec, noseed, live, _tar(1024), _tar(None), mine={live.container_id})
        for op in OPS:  # warm-up: caches, first-call imports, the image's layers
            await getattr(b, op)()
        with EngineEvents() as events:
            for r in range(args.rounds):
                for op, (cheap, per_call) in OPS.items():
                    calls = args.n_cheap if cheap else args.n
                    rows[op].append(await batch(getattr(b, op), calls, per_call, b, daemons))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    seen = [json.loads(line) for line in events.lines if line.strip()]
    for op_rows in rows.values():
        for row in op_rows:
            settle(row, seen, b.mine)
    return {
        "family": args.family,
        "image": image,
        "seeded_paths": spec.writable_paths(),
        "seed_tar_bytes": seed_bytes,
        "ops": {op: summarise(op_rows) for op, op_rows in rows.items()},
        "batches": rows,
    }


def floor(ops: dict[str, Any], execs: float, cores: int, stat: str) -> dict[str, Any]:
    """CPU per item of one fresh container and ``execs`` execs, and the items/min it allows."""
    out: dict[str, Any] = {}
    for exec_op in ("exec_true", "exec_bash_tool"):
        for scope in ("total", "engine"):
            s = ops["lifecycle"][scope][stat] + execs * ops[exec_op][scope][stat]
            out[f"{scope}_{exec_op}"] = {
                "cpu_s_per_item": s,
                "max_items_per_min": 60 * cores / s,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="disk_cleanup")
    ap.add_argument("--n", type=int, default=5, help="calls per batch of container ops")
    ap.add_argument("--n-cheap", type=int, default=25, help="calls per batch of execs/archives")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument(
        "--execs-per-item", type=float, default=6.14, help="from bench_item_cpu_s5.json (8x4)"
    )
    ap.add_argument("--target", type=float, default=129.6, help="items/min: 2x pre-#15 64.8 at 8x4")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    load0 = os.getloadavg()
    res = asyncio.run(run(args))
    load1 = os.getloadavg()
    ops = res["ops"]
    print(f"family {res['family']}: seeded {res['seed_tar_bytes']} (tar bytes)")
    print("CPU s per op: median of clean batches (median of all batches)")
    cols = (*PARTS, "containers", "engine", "total")
    print(f"  {'op':<17}" + "".join(f"{c:>17}" for c in cols) + "   wall  clean")
    for op, o in ops.items():
        vals = "".join(f"{o[c]['clean']:8.4f} ({o[c]['median']:.4f})" for c in cols)
        clean = f"{o['clean_batches']}/{o['batches']}"
        print(f"  {op:<17}{vals}  {o['wall']['clean']:.3f}  {clean}")
    seeds = {k: ops["lifecycle"][k]["clean"] - ops["lifecycle_noseed"][k]["clean"] for k in cols}
    print(
        f"  tmpfs volumes + seeds ({len(res['seeded_paths'])}): "
        + ", ".join(f"{k} {v:.4f}" for k, v in seeds.items())
    )
    res["volumes_and_seeds_cpu_s"] = seeds
    budget = 60 * cores / args.target
    res["floor"] = {
        stat: floor(ops, args.execs_per_item, cores, stat) for stat in ("clean", "median", "mean")
    }
    print(
        f"floor per item = lifecycle + {args.execs_per_item} x exec; {cores} cores at 100 %; "
        f"target {args.target} items/min = {budget:.3f} CPU s per item"
    )
    for stat, fl in res["floor"].items():
        for key, v in fl.items():
            print(
                f"  {stat:<6} {key:<22} {v['cpu_s_per_item']:.3f} s/item"
                f" -> max {v['max_items_per_min']:.0f} items/min"
            )
    doc = {
        **header("bench_engine_floor", "bench_engine_floor.py", argv),
        "cpus": cores,
        "calls_per_batch": {"containers": args.n, "cheap": args.n_cheap},
        "concurrent": CONCURRENT,
        "rounds": args.rounds,
        "execs_per_item": args.execs_per_item,
        "target_items_per_min": args.target,
        "target_cpu_s_per_item": budget,
        "load_avg_before": load0,
        "load_avg_after": load1,
        **res,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
