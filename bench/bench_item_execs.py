"""Which ``docker exec`` a live scenario item runs, and who asks for each.

Runs bank items one after the other in this process through the worker's own
entry point (``worker_entry``, as a pool worker does, against the simulated
agent) and records every exec and file read of our sandbox provider with the
caller that asked for it: Inspect's sample init (its root-access probe), the
scenario set-up with the check snapshots, the agent's tool calls, the grading
probes (one exec per user). Prints executions per item by caller and by family,
and each item's score (so two trees can be compared item by item), and writes
JSON (default ``bench/results/bench_item_execs.json``). Counts, not times.

    nice python bench/bench_item_execs.py [--per-family N] [--out FILE]

To measure another checkout, put it first on ``PYTHONPATH`` and run from
outside any checkout (``cd /tmp && PYTHONPATH=DIR python DIR/bench/...``).
Needs Docker and the scenario images.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from _results import header, write_json
from bench_item_phases import sim_job

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"

_CALLERS = (  # innermost frame name that says who asked, checked in this order
    ("_probe_root_access", "inspect root-access probe"),
    ("setup_variant", "set-up + snapshots"),
    ("grade", "grading probes"),
    ("execute", "agent tool call"),
)


def _caller() -> str:
    names = {f.name for f in traceback.extract_stack()}
    return next((label for name, label in _CALLERS if name in names), "other")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-family", type=int, default=99, help="first N items of each family")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_item_execs.json")
    args = p.parse_args(argv)
    os.environ["INSPECT_DISPLAY"] = "none"
    import orchestrator.runner.inspect_run as ir
    import orchestrator.runner.sandbox as sbm
    from orchestrator.bank import load_bank
    from orchestrator.runner.sources import SourceContext, prepare_items
    from orchestrator.sim.agent import SimAgent, players_for_bank, scripts_for_bank
    from orchestrator.sim.server import SimServer

    calls: list[dict[str, str]] = []
    current = {"item": ""}
    real_exec, real_read = sbm.AgentcatSandbox.exec, sbm.AgentcatSandbox.read_file

    async def exec_(self: Any, cmd: list[str], *a: Any, **kw: Any) -> Any:
        user = kw.get("user") or self.spec.user
        calls.append({"item": current["item"], "by": f"{_caller()} ({user})"})
        return await real_exec(self, cmd, *a, **kw)

    async def read_file(self: Any, *a: Any, **kw: Any) -> Any:
        calls.append({"item": current["item"], "by": f"read_file: {_caller()}"})
        return await real_read(self, *a, **kw)

    sbm.AgentcatSandbox.exec = exec_  # type: ignore[method-assign]
    sbm.AgentcatSandbox.read_file = read_file  # type: ignore[method-assign]
    if hasattr(ir, "warm_worker"):
        ir.warm_worker()
    bank = load_bank(BANK)
    items = prepare_items(bank, SourceContext(environments=ENV, sandbox="agentcat"))
    agent = SimAgent(bank, scripts_for_bank(bank, ENV), seed=0, players=players_for_bank(bank, ENV))
    taken: collections.Counter[str] = collections.Counter()
    ids = []
    for iid in bank.ids:
        fam = iid.split(".")[0]
        if taken[fam] < args.per_family:
            taken[fam] += 1
            ids.append(iid)
    load0 = os.getloadavg()
    scores: dict[str, Any] = {}
    with SimServer(agent, api_key="bench") as srv, tempfile.TemporaryDirectory() as tmp:
        for step, iid in enumerate(ids, start=1):
            current["item"] = iid
            job = sim_job(ir, bank, items, iid, step, "execs", tmp, srv.url)
            res = ir.worker_entry(job)
            if res.get("error_kind"):
                raise SystemExit(f"{iid}: {res['error_kind']} {res.get('error_message')}")
            scores[iid] = res["score"]
    n = len(ids)
    by_caller = collections.Counter(c["by"] for c in calls)
    per_family: dict[str, dict[str, float]] = {}
    for fam in sorted(taken):
        fam_calls = collections.Counter(c["by"] for c in calls if c["item"].startswith(fam + "."))
        per_family[fam] = {k: v / taken[fam] for k, v in sorted(fam_calls.items())}
    print(f"{n} items, {len(calls) / n:.2f} execs per item")
    for who, count in sorted(by_caller.items()):
        print(f"  {who:42s} {count / n:.2f} per item")
    for fam, row in per_family.items():
        print(
            f"  {fam:18s} {sum(row.values()):.2f}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
        )
    doc = {
        **header("bench_item_execs", "bench_item_execs.py", argv),
        "orchestrator": str(Path(sbm.__file__).resolve().parents[2]),
        "load_avg_before": load0,
        "load_avg_after": os.getloadavg(),
        "items": n,
        "execs_per_item": len(calls) / n,
        "by_caller_per_item": {k: v / n for k, v in sorted(by_caller.items())},
        "per_family_per_item": per_family,
        "scores": scores,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
