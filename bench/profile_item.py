"""Where a warm worker's CPU goes per live item: cProfile over N items in one process.

Runs shell-safety items one after another in this process, as a pool worker
does (``warm_worker`` first, one warm-up item not profiled), against the
simulated agent server in a process of its own (its CPU is not profiled), and
profiles every thread of this one (``threading.setprofile`` is not enough for
the sandbox's worker threads, so each thread's own profiler is merged). Prints
the functions with the largest cumulative CPU per item (``time.process_time``
clock, so waits cost nothing) and writes them, with the process's CPU per
item, to ``bench/results/profile_item.json``.

    nice python bench/profile_item.py --items 12 [--top 60]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import multiprocessing
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _results import header, write_json
from bench_item_cpu import _serve
from bench_item_phases import BANK, ENV, sim_job

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "profile_item.json"


class _ThreadProfiles:
    """A cProfile per thread (cProfile only sees the thread that enabled it)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _hook(self, *_: Any) -> None:
        if getattr(self._local, "on", False):
            return
        self._local.on = True
        threading.setprofile(None)
        prof = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(prof)
        prof.enable()

    def __enter__(self) -> _ThreadProfiles:
        main = cProfile.Profile(time.thread_time)
        self.profiles.append(main)
        self._local.on = True
        threading.setprofile(self._hook)  # threads started from now on
        main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)
        for prof in self.profiles:
            prof.disable()  # only acts in the calling thread; others stop when they end

    def stats(self) -> pstats.Stats:
        st = pstats.Stats(self.profiles[0])
        for prof in self.profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread's profiler that saw no call
                st.add(prof)
        return st


def _short(func: tuple[str, int, str]) -> str:
    path, line, name = func
    for mark in ("site-packages/", "/orchestrator/", "/lib/python3"):
        if mark in path:
            path = path.split(mark, 1)[1]
            if mark == "/orchestrator/":
                path = "orchestrator/" + path
            break
    return f"{path}:{line}({name})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=12, help="profiled items")
    p.add_argument("--top", type=int, default=60, help="functions printed")
    p.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--dump", type=Path, help="also write the merged pstats here")
    args = p.parse_args(argv)
    os.environ["SIM_API_KEY"] = "bench"
    os.environ["INSPECT_DISPLAY"] = "none"

    import orchestrator.runner.inspect_run as ir
    from orchestrator.bank import load_bank
    from orchestrator.runner.sources import SourceContext, prepare_items

    load0 = os.getloadavg()
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    sim = ctx.Process(target=_serve, args=(str(BANK), str(ENV), send), daemon=True)
    sim.start()
    url = recv.recv()
    ir.warm_worker()
    bank = load_bank(BANK)
    items = prepare_items(bank, SourceContext(environments=ENV, sandbox="agentcat"))
    ids = [bank.ids[i % len(bank.ids)] for i in range(args.items + 1)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            job = sim_job(ir, bank, items, ids[0], 1, "profile", tmp, url)
            res = ir.worker_entry(job)  # warm-up item
            c0 = time.process_time()
            with _ThreadProfiles() as profiles:
                for step, iid in enumerate(ids[1:], start=2):
                    res = ir.worker_entry(sim_job(ir, bank, items, iid, step, "profile", tmp, url))
                    if res.get("error_kind"):
                        raise SystemExit(f"{iid}: {res['error_kind']} {res['error_message']}")
            cpu_per_item = (time.process_time() - c0) / args.items
    finally:
        sim.terminate()
        sim.join()
    st = profiles.stats()
    if args.dump:
        st.dump_stats(str(args.dump))
    key = "ct" if args.sort == "cumulative" else "tt"
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": _short(func),
                "calls_per_item": nc / args.items,
                "tt": tt / args.items,
                "ct": ct / args.items,
            }
        )
    rows.sort(key=lambda r: r[key], reverse=True)
    print(f"process CPU per item {cpu_per_item:.3f} s (load {load0} → {os.getloadavg()})")
    print(f"{'cum s':>7} {'own s':>7} {'calls':>7}  function (per item)")
    for r in rows[: args.top]:
        print(f"{r['ct']:7.4f} {r['tt']:7.4f} {r['calls_per_item']:7.1f}  {r['function']}")
    doc = {
        **header("profile_item", "profile_item.py", argv),
        "load_avg_before": load0,
        "load_avg_after": os.getloadavg(),
        "process_cpu_s_per_item": cpu_per_item,
        "top": rows[: max(args.top, 200)],
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
