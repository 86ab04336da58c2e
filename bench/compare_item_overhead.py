"""Per-item orchestration overhead of two checkouts, item by item in warm workers.

The figure the live overhead claim is about: a live item's wall time minus
the model's and the agent's tools' working time (from the item's Inspect
log), in a worker process that has already run an item. On a shared machine
whose load swings within minutes, comparing two whole ``bench_live`` runs
mostly compares loads; here each checkout gets one persistent worker process
(its tree first on ``PYTHONPATH``, running that tree's ``worker_entry`` and,
where the tree has one, its ``warm_worker``), and the two run the *same*
items one after the other, alternating which goes first. Reported: the median
per-item overhead of each side, the median of the per-item ratios
(candidate / baseline), and the same for wall time and for the worker
process's CPU time (its own and its children's, e.g. ``git``), which load
disturbs far less than wall time (the Docker engine's share is not in it).

    nice python bench/compare_item_overhead.py --baseline /work/main --candidate . --items 24

Needs Docker and the scenario images. Writes ``bench/results/compare_item_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import header, write_json
from inspect_ai.event import ModelEvent, ToolEvent
from inspect_ai.log import read_eval_log

import orchestrator.runner.sandbox  # noqa: F401  (logs name its sandbox type)
from orchestrator.bank import load_bank
from orchestrator.sim.agent import SimAgent, scripts_for_bank
from orchestrator.sim.server import SimServer

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"
RESULTS = REPO / "bench" / "results" / "compare_item_overhead.json"

WORKER = """
import json, os, resource, sys, time
os.environ["INSPECT_DISPLAY"] = "none"
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
from pathlib import Path
import orchestrator.runner.inspect_run as ir
if hasattr(ir, "warm_worker"):
    ir.warm_worker()
from orchestrator.bank import load_bank
from orchestrator.runner.sources import SourceContext, prepare_items
bank_dir, env_dir, url, log_dir = sys.argv[1:5]
bank = load_bank(bank_dir)
items = prepare_items(bank, SourceContext(environments=Path(env_dir), sandbox="agentcat"))
print("READY", flush=True)
for line in sys.stdin:
    step, iid = line.split()
    spec = bank.item(iid)
    job = ir.RunJob(session_id="overhead", item_id=iid, step=int(step), attempt=1,
        source=items.sources[iid], n_categories=spec.n_categories,
        labels=tuple(bank.spec.scale.labels[: spec.n_categories]),
        model="openai-api/sim/theta_0.5", log_dir=log_dir,
        prepared=dict(items.prepared.get(iid, {})), environments=env_dir,
        base_url=url, api_key="bench",
        **({"session_key": "overhead"} if "session_key" in ir.RunJob.__dataclass_fields__ else {}))
    c0 = cpu()
    res = ir.worker_entry(job)
    print("RESULT " + json.dumps({**res, "worker_cpu_s": cpu() - c0}), flush=True)
"""


def read_marked(worker: subprocess.Popen[str], mark: str) -> str:
    """The rest of the worker's next stdout line starting with ``mark`` (others are noise)."""
    assert worker.stdout is not None
    for line in worker.stdout:
        if line.startswith(mark):
            return line[len(mark) :]
    raise SystemExit(f"worker exited ({worker.wait()}) before {mark.strip()}")


def split(log_path: str) -> dict[str, float]:
    log = read_eval_log(log_path)
    events = log.samples[0].events if log.samples else []
    return {
        "model": sum(e.working_time or 0 for e in events if isinstance(e, ModelEvent)),
        "tool": sum(e.working_time or 0 for e in events if isinstance(e, ToolEvent)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--items", type=int, default=24, help="measured items per side")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ["SIM_API_KEY"] = "bench"
    bank = load_bank(BANK)
    agent = SimAgent(bank, scripts_for_bank(bank, ENV), seed=0)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    ids = [bank.ids[i % len(bank.ids)] for i in range(args.items + 1)]  # first: warm-up
    rows: list[dict[str, Any]] = []
    with SimServer(agent, api_key="bench") as srv, tempfile.TemporaryDirectory() as tmp:
        workers = {}
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, "-c", WORKER, str(BANK), str(ENV), srv.url, tmp]
            workers[label] = subprocess.Popen(
                cmd, env=env, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        for w in workers.values():
            read_marked(w, "READY")
        for step, iid in enumerate(ids):
            order = list(trees) if step % 2 == 0 else list(trees)[::-1]
            row: dict[str, Any] = {"item": iid}
            for label in order:
                w = workers[label]
                assert w.stdin is not None and w.stdout is not None
                w.stdin.write(f"{step + 1} {iid}\n")
                w.stdin.flush()
                res = json.loads(read_marked(w, "RESULT "))
                if res.get("error_kind"):
                    raise SystemExit(f"{label} {iid}: {res['error_kind']} {res['error_message']}")
                parts = split(res["log_path"])
                row[label] = {
                    "wall": res["wall_s"],
                    "worker_cpu": res["worker_cpu_s"],
                    **parts,
                    "overhead": res["wall_s"] - parts["model"] - parts["tool"],
                }
            if step > 0:
                rows.append(row)
                print(
                    f"{iid:42s} overhead {row['baseline']['overhead']:.2f} → "
                    f"{row['candidate']['overhead']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        for w in workers.values():
            assert w.stdin is not None
            w.stdin.close()
            w.wait(timeout=600)
    summary: dict[str, Any] = {}
    for key in ("overhead", "wall", "worker_cpu"):
        med = {k: statistics.median(r[k][key] for r in rows) for k in trees}
        ratio = statistics.median(r["candidate"][key] / r["baseline"][key] for r in rows)
        summary[key] = {**med, "median_ratio": ratio}
        print(
            f"{key:>9}: baseline {med['baseline']:.3f} s, candidate {med['candidate']:.3f} s, "
            f"median per-item ratio {ratio:.3f}"
        )
    doc = {
        **header("compare_item_overhead", "compare_item_overhead.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "load_avg_at_end": os.getloadavg(),
        "results": summary,
        "items": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
