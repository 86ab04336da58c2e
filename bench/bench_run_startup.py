"""CPU seconds of a live run's fixed start-up: the driver's pre-flight and the workers'.

Each measurement runs in a fresh Python process (so every import is paid, as by a
user's ``agentcat run``), for each tree given (default: this one), in interleaved
rounds; the simulated agent server runs in a process of its own:

* ``preflight``: what ``run`` does before its first item, as that tree does it:
  load the bank, check the items' sources (Docker, images) and the model (one real
  request), start a pool of ``--workers`` workers and wait until every one is warm
  (each runs one tiny job after its warm-up). ``driver_s`` is the driver's own CPU
  (``time.process_time``, imports of the orchestrator included), ``workers_s`` the
  workers' (``RUSAGE_CHILDREN`` once the pool is shut down and, where the tree forks
  its workers from a fork server, that server stopped: it reaped them, and its own
  imports count here too); ``driver_inspect`` says whether the driver imported Inspect.
* ``worker``: one worker's start-up alone (a one-worker pool, warmed, shut down).

    nice python bench/bench_run_startup.py [--trees DIR ...] [--rounds 3] [--workers 4]

Needs Docker and the scenario images of each tree. Writes bench/results/bench_run_startup.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _results import header, write_json
from bench_item_cpu import _serve

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-startup-key"

PROBE = """
import json, os, resource, sys, tempfile, time
from pathlib import Path
t0 = time.process_time()
what, url, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
from orchestrator.bank import load_bank
from orchestrator.config import ModelSpec, RunConfig
from orchestrator.runner import pool as pool_mod
from orchestrator.session.orchestrate import preflight

def warm(pool):  # every worker has started and warmed up (each job waits for the others)
    import concurrent.futures as cf
    futures = [pool._executor.submit(time.sleep, 0.5) for _ in range(pool.workers)]
    cf.wait(futures)

with tempfile.TemporaryDirectory() as tmp:
    model = ModelSpec(model="openai-api/sim/theta_0.5", base_url=url, api_key_env="SIM_API_KEY")
    config = RunConfig(bank=Path("item_banks/shell-safety"), environments=Path("environments"),
                       models=[model], runs_dir=Path(tmp), workers=workers)
    if what == "preflight":
        items = preflight(config, load_bank(config.bank), config.models)
        with pool_mod.WorkerPool(workers) as pool:
            if hasattr(pool, "check_models"):
                pool.check_models(config.models, config.retry.model_timeout_s)
            warm(pool)
    else:
        with pool_mod.WorkerPool(workers) as pool:
            warm(pool)
driver = time.process_time() - t0
from multiprocessing import forkserver
if getattr(forkserver._forkserver, "_forkserver_pid", None):  # forked workers: it reaped them
    forkserver._forkserver._stop()  # so its CPU and theirs count below
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"driver_s": driver, "workers_s": kids.ru_utime + kids.ru_stime,
                  "driver_inspect": "inspect_ai" in sys.modules}))
"""


def _probe(tree: Path, what: str, url: str, workers: int) -> dict[str, Any]:
    env = {**os.environ, "SIM_API_KEY": KEY, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, what, url, str(workers)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {what}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trees", nargs="+", type=Path, default=[REPO])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "bench_run_startup.json"
    )
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(
        target=_serve,
        args=(str(REPO / "item_banks" / "shell-safety"), str(REPO / "environments"), child, KEY),
        daemon=True,
    )
    server.start()
    url = parent.recv()
    load_before = os.getloadavg()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {str(t): {} for t in args.trees}
    try:
        for r in range(args.rounds):
            for what in ("preflight", "worker"):
                for tree in args.trees:
                    workers = args.workers if what == "preflight" else 1
                    got = _probe(tree.resolve(), what, url, workers)
                    runs[str(tree)].setdefault(what, []).append(got)
                    print(f"round {r + 1} {what:9s} {tree}: {got}", flush=True)
                    _write(args, runs, load_before)  # a run cut short keeps what it measured
    finally:
        server.terminate()
    print(json.dumps(_write(args, runs, load_before)["median"], indent=1))


def _write(
    args: argparse.Namespace, runs: dict[str, dict[str, list[dict[str, Any]]]], load_before: Any
) -> dict[str, Any]:
    summary = {
        tree: {
            what: {
                key: statistics.median(float(x[key]) for x in rows)
                for key in ("driver_s", "workers_s")
            }
            | {"driver_inspect": rows[0]["driver_inspect"], "n": len(rows)}
            for what, rows in per.items()
        }
        for tree, per in runs.items()
    }
    result = {
        **header("bench_run_startup", "bench_run_startup.py"),
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "rounds": args.rounds,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "median": summary,
        "runs": runs,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
