"""Where a live item's orchestration time goes: a per-phase breakdown in a warm worker.

Runs shell-safety items one after another in this process, as a pool worker
does (``warm_worker`` first, one warm-up item not counted), against the
simulated agent server, and times each phase by wrapping the functions that do
it: Inspect's work before the sample starts, the wait for the (prepared)
container, the container's own creation (engine create / start / inspect,
tmpfs seeding; it runs in a thread, overlapped with Inspect's set-up), every
``docker exec`` (create, start and stream, exit-code read and how many
``exec_inspect`` polls it took), scenario set-up, grading, and what Inspect
does after grading (sandbox clean-up, log write), plus the secret scrub.
Then the engine's floor: the median ``docker exec`` of ``true`` and of one framed
check probe, and six probes one after another, at once, and batched into one exec
(:class:`~orchestrator.scoring.checks.ProbeBatch`), in one sandbox.
Prints a table of per-item medians and writes ``bench/results/bench_item_phases.json``.

    nice python bench/bench_item_phases.py --items 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import header, write_json

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"
RESULTS = REPO / "bench" / "results" / "bench_item_phases.json"

_t: dict[str, float] = defaultdict(float)  # phase → seconds, for the current item
_n: dict[str, int] = defaultdict(int)  # counter → count, for the current item
_marks: dict[str, float] = {}


def _timed(name: str, fn: Callable[..., Any], count: str | None = None) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _t[name] += time.perf_counter() - t0
            _n[count or name] += 1

    return wrapper


def _atimed(name: str, fn: Callable[..., Any], mark: str | None = None) -> Callable[..., Any]:
    async def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        if mark:
            _marks.setdefault(mark + "_start", t0)
        try:
            return await fn(*a, **k)
        finally:
            t1 = time.perf_counter()
            _t[name] += t1 - t0
            _n[name] += 1
            if mark:
                _marks[mark + "_end"] = t1

    return wrapper


def _instrument() -> None:
    import inspect_ai

    import orchestrator.runner.inspect_run as ir
    from orchestrator.runner import sandbox as sb
    from orchestrator.runner.docker_client import docker_client
    from orchestrator.scenario import grading

    api = docker_client().api
    for meth, name in (
        ("inspect_image", "engine: image inspect"),
        ("create_container", "engine: container create"),
        ("start", "engine: container start"),
        ("inspect_container", "engine: container inspect"),
        ("put_archive", "engine: tmpfs seed (put_archive)"),
        ("exec_create", "exec: create"),
        ("exec_inspect", "exec: exit-code inspect"),
    ):
        setattr(api, meth, _timed(name, getattr(api, meth)))
    sb._create_container = _timed("container creation (thread, overlapped)", sb._create_container)
    sb._start_exec = _timed("exec: start (upgrade)", sb._start_exec)
    sb._exit_code = _timed("exec: exit code total (incl. waits)", sb._exit_code)
    sb._run_exec = _timed("exec: total", sb._run_exec, count="execs")
    grading.setup_variant = _atimed("scenario setup + snapshots", grading.setup_variant, "setup")
    grading.grade = _atimed("grading (checks)", grading.grade, "grade")
    sb.AgentcatSandbox.create = classmethod(
        _atimed("sample waits for its container", sb.AgentcatSandbox.create.__func__, "init")
    )
    ir._scrub_inspect_files = _timed("secret scrub of log + trace", ir._scrub_inspect_files)
    eval_async = inspect_ai.eval_async

    async def timed_eval(*a: Any, **k: Any) -> Any:
        _marks["eval_start"] = time.perf_counter()
        try:
            return await eval_async(*a, **k)
        finally:
            _marks["eval_end"] = time.perf_counter()

    inspect_ai.eval_async = timed_eval


async def _exec_floor(image: str) -> dict[str, float]:
    import asyncio

    from orchestrator.runner.sandbox import SandboxSpec, open_sandbox
    from orchestrator.scoring.checks import CheckEnv, ProbeBatch

    async def clock(make: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        await make()
        return time.perf_counter() - t0

    async with open_sandbox(SandboxSpec(image=image)) as sb:
        env = CheckEnv(sb, sb.spec.user, sb.spec.workdir)

        def probe() -> Any:
            return env.sh('test -e "$1"', "/etc/passwd")

        true = [await clock(lambda: sb.exec(["true"])) for _ in range(15)]
        one = [await clock(probe) for _ in range(15)]
        seq = [await clock(lambda: _seq(probe, 6)) for _ in range(3)]
        par = [await clock(lambda: asyncio.gather(*(probe() for _ in range(6)))) for _ in range(3)]
        one_exec = [
            await clock(lambda: ProbeBatch(sb).run([probe() for _ in range(6)])) for _ in range(3)
        ]
    return {
        "exec `true`": statistics.median(true),
        "exec one framed probe": statistics.median(one),
        "6 probes one after another": statistics.median(seq),
        "6 probes at once": statistics.median(par),
        "6 probes in one exec (ProbeBatch)": statistics.median(one_exec),
    }


async def _seq(make: Callable[[], Any], n: int) -> None:
    for _ in range(n):
        await make()


def sim_job(
    ir: Any, bank: Any, items: Any, iid: str, step: int, session: str, log_dir: str, url: str
) -> Any:
    """The job a pool worker would get for bank item ``iid``, against the simulated agent
    at ``url`` (key ``bench``); ``ir`` is the tree's ``orchestrator.runner.inspect_run``."""
    spec = bank.item(iid)
    return ir.RunJob(
        session_id=session,
        session_key=session,
        item_id=iid,
        step=step,
        attempt=1,
        source=items.sources[iid],
        n_categories=spec.n_categories,
        labels=tuple(bank.spec.scale.labels[: spec.n_categories]),
        model="openai-api/sim/theta_0.5",
        log_dir=log_dir,
        prepared=dict(items.prepared.get(iid, {})),
        environments=str(ENV),
        base_url=url,
        api_key="bench",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=12, help="measured items")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ["SIM_API_KEY"] = "bench"
    os.environ["INSPECT_DISPLAY"] = "none"

    import resource

    from inspect_ai.event import ModelEvent, ToolEvent
    from inspect_ai.log import read_eval_log

    import orchestrator.runner.inspect_run as ir
    from orchestrator.bank import load_bank
    from orchestrator.runner.sources import SourceContext, prepare_items
    from orchestrator.sim.agent import SimAgent, scripts_for_bank
    from orchestrator.sim.server import SimServer

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    ir.warm_worker()
    _instrument()
    bank = load_bank(BANK)
    items = prepare_items(bank, SourceContext(environments=ENV, sandbox="agentcat"))
    agent = SimAgent(bank, scripts_for_bank(bank, ENV), seed=0)
    ids = [bank.ids[i % len(bank.ids)] for i in range(args.items + 1)]
    rows: list[dict[str, float]] = []
    with SimServer(agent, api_key="bench") as srv, tempfile.TemporaryDirectory() as tmp:
        for step, iid in enumerate(ids):
            job = sim_job(ir, bank, items, iid, step + 1, "phases", tmp, srv.url)
            _t.clear()
            _n.clear()
            _marks.clear()
            c0, t0 = cpu(), time.perf_counter()
            res = ir.worker_entry(job)
            wall, worker_cpu = time.perf_counter() - t0, cpu() - c0
            if res.get("error_kind"):
                raise SystemExit(f"{iid}: {res['error_kind']} {res['error_message']}")
            log = read_eval_log(res["log_path"])
            events = log.samples[0].events if log.samples else []
            model = sum(e.working_time or 0 for e in events if isinstance(e, ModelEvent))
            tool = sum(e.working_time or 0 for e in events if isinstance(e, ToolEvent))
            m = _marks
            row = {
                "wall": wall,
                "worker cpu": worker_cpu,
                "model working time": model,
                "agent tools working time": tool,
                "overhead (wall - model - tools)": res["wall_s"] - model - tool,
                "before eval_async (task, model)": m["eval_start"] - t0,
                "inspect: eval start → sample init": m["init_start"] - m["eval_start"],
                "inspect: agent loop gaps (setup end → grade start - model - tools)": (
                    m["grade_start"] - m["setup_end"] - model - tool
                ),
                "inspect: grade end → eval returns (cleanup, log write)": (
                    m["eval_end"] - m["grade_end"]
                ),
                "after eval_async (scrub, result)": t0 + wall - m["eval_end"],
                **dict(_t),
                **{f"count: {k}": float(v) for k, v in _n.items()},
            }
            if step > 0:
                rows.append(row)
            print(f"{iid:42s} wall {wall:.2f} s, execs {_n['execs']}", file=sys.stderr)
    import asyncio

    floor = asyncio.run(_exec_floor(items.prepared[ids[0]]["image"]))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in keys}
    width = max(map(len, keys))
    for k in keys:
        unit = "" if k.startswith("count:") else " s"
        print(f"{k:<{width}}  {med[k]:8.3f}{unit}")
    for k, v in floor.items():
        print(f"{'floor: ' + k:<{width}}  {v:8.3f} s")
    doc = {
        **header("bench_item_phases", "bench_item_phases.py", argv),
        "load_avg_at_end": os.getloadavg(),
        "median_per_item": med,
        "exec_floor": floor,
        "items": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
