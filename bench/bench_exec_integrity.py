"""Sandbox exec output integrity under CPU load.

Runs ``--execs`` commands ``echo MARK-<i>`` spread over ``--containers`` hardened
sandboxes (``--concurrency`` at a time), optionally with ``--burners`` busy-loop
processes (nice 19) adding CPU load, and counts every exec whose result is not
exactly exit 0 with ``MARK-<i>\\n``: ``lost`` (exit 0, empty output: the failure
mode of reading the raw socket under the HTTP response's buffer), ``wrong``
(anything else) and ``faults`` (an exception, e.g. a stream that broke off).
Prints the numbers and the load average, writes JSON (default
``bench/results/exec_integrity.json``). Numbers, not asserts;
``tests/test_exec_integrity.py`` asserts on them.

    nice .venv/bin/python bench/bench_exec_integrity.py --execs 20000 --burners 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _burn() -> None:
    os.nice(19)
    while True:
        pass


async def _stress(execs: int, containers: int, concurrency: int) -> dict[str, object]:
    from orchestrator.runner.images import ensure_base_image
    from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec

    image = ensure_base_image().image
    spec = SandboxSpec(image=image, user="root", workdir="/root")
    boxes = [
        await AgentcatSandbox.create(spec, {"agentcat.bench": "exec_integrity"})
        for _ in range(containers)
    ]
    counts = {"ok": 0, "lost": 0, "wrong": 0, "faults": 0}
    examples: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        async with sem:
            try:
                r = await boxes[i % containers].exec(["echo", f"MARK-{i}"])
            except Exception as exc:  # a fail-closed fault: counted, never a result
                counts["faults"] += 1
                examples.append(f"{i}: {type(exc).__name__}: {exc}"[:200])
                return
        if r.returncode == 0 and r.stdout == f"MARK-{i}\n" and r.stderr == "":
            counts["ok"] += 1
        elif r.returncode == 0 and r.stdout == "":
            counts["lost"] += 1
            examples.append(f"{i}: exit 0, empty output")
        else:
            counts["wrong"] += 1
            examples.append(f"{i}: exit {r.returncode}, {r.stdout[:40]!r} {r.stderr[:40]!r}")
        done = sum(counts.values())
        if done % 1000 == 0:
            print(f"  {done}/{execs} execs, {counts}", file=sys.stderr, flush=True)

    try:
        await asyncio.gather(*(one(i) for i in range(execs)))
    finally:
        for b in boxes:
            await b.remove()
    return {**counts, "seconds": time.perf_counter() - t0, "examples": examples[:20]}


def run(
    execs: int, containers: int = 2, concurrency: int = 4, burners: int = 0
) -> dict[str, object]:
    load_start = os.getloadavg()
    procs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(burners)]
    for p in procs:
        p.start()
    try:
        res = asyncio.run(_stress(execs, containers, concurrency))
    finally:
        for p in procs:
            p.terminate()
    return {
        "execs": execs,
        "containers": containers,
        "concurrency": concurrency,
        "burners": burners,
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        **res,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--execs", type=int, default=20000)
    ap.add_argument("--containers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--burners", type=int, default=0, help="busy-loop processes (nice 19)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "exec_integrity.json"))
    args = ap.parse_args()
    doc = run(args.execs, args.containers, args.concurrency, args.burners)
    print(
        f"{doc['execs']} execs in {doc['seconds']:.0f} s: ok {doc['ok']}, lost {doc['lost']}, "
        f"wrong {doc['wrong']}, faults {doc['faults']}; load average "
        f"{doc['loadavg_start']} → {doc['loadavg_end']} on {doc['cpus']} CPUs"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
