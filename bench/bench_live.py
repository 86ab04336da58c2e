"""Live-session overhead and concurrent-session throughput, against the simulated agent.

For every graded step it splits the run's wall time (measured in the worker
around the whole Inspect evaluation) into the model's time (Inspect's
ModelEvent working time: here the simulated agent's HTTP round trips), the
agent's own tool time (ToolEvent working time: the bash commands in the
sandbox) and the rest: orchestration overhead (container create/remove,
scenario setup and grading, Inspect's task set-up and logging). The session
loop's own share (selection, journal commits) is the session's elapsed time
minus the runs.

Then N concurrent sessions (personas of different θ, one worker per session
up to --max-workers) for N in --sessions, each stopped at --items items:
items per minute.

    python bench/bench_live.py [--items 8] [--sessions 1 4 8] [--max-workers 4]
        [--bank item_banks/agentdojo] [--out FILE]

``bench/compare_live.py`` runs it for two checkouts interleaved.

The shell-safety bank needs Docker and the scenario images (`agentcat images
build`); AgentDojo items need neither (their tools run in Inspect's process).
Writes bench/results/live.json (live_<bank>.json for another bank).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from inspect_ai.event import ModelEvent, ToolEvent
from inspect_ai.log import read_eval_log

from orchestrator import api
from orchestrator.bank import load_bank
from orchestrator.session.journal import Journal
from orchestrator.sim.agent import SimAgent, players_for_bank, scripts_for_bank
from orchestrator.sim.server import SimServer

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"


def _breakdown(runs: Path, session: str) -> list[dict[str, float]]:
    j = Journal.open(runs / session, readonly=True)
    rows = [r for r in j.steps() if r.status == "done"]
    # journalled relative to the session folder; a tree before #15 journals absolute paths
    resolve = getattr(j, "resolve", lambda path: path)
    logs = [resolve(r.log_path) for r in rows]
    j.close()
    out = []
    for r, path in zip(rows, logs, strict=True):
        log = read_eval_log(path)
        events = log.samples[0].events if log.samples else []
        model = sum(e.working_time or 0 for e in events if isinstance(e, ModelEvent))
        tool = sum(e.working_time or 0 for e in events if isinstance(e, ToolEvent))
        out.append(
            {"wall": r.wall_s, "model": model, "tool": tool, "overhead": r.wall_s - model - tool}
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--bank", type=Path, default=BANK)
    ap.add_argument("--out", type=Path, help="default: bench/results/live[_<bank>].json")
    args = ap.parse_args()
    os.environ["SIM_API_KEY"] = "bench"
    bank_dir = args.bank
    bank = load_bank(bank_dir)
    agent = SimAgent(bank, scripts_for_bank(bank, ENV), seed=0, players=players_for_bank(bank, ENV))
    result: dict[str, object] = {"cpus": os.cpu_count(), "items_per_session": args.items}
    with SimServer(agent, api_key="bench") as srv, TemporaryDirectory() as tmp:
        # 1. per-item breakdown, one session, one worker
        runs = Path(tmp) / "single"
        t0 = time.perf_counter()
        (_s,) = api.run(
            None,
            bank=str(bank_dir),
            environments=str(ENV),
            runs_dir=str(runs),
            models=[
                {
                    "model": "openai-api/sim/theta_0.5",
                    "base_url": srv.url,
                    "api_key_env": "SIM_API_KEY",
                }
            ],
            max_items=args.items,
            session_id="single",
            workers=1,
        )
        elapsed = time.perf_counter() - t0
        parts = _breakdown(runs, "single")
        med = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        loop = (elapsed - sum(p["wall"] for p in parts)) / len(parts)
        result["per_item_median_s"] = med
        result["session_loop_per_item_s"] = loop
        result["single_session_elapsed_s"] = elapsed
        print(
            f"per item (median of {len(parts)}): wall {med['wall']:.2f} s = model "
            f"{med['model']:.2f} + agent tools {med['tool']:.2f} + orchestration "
            f"{med['overhead']:.2f}; session loop + start-up {loop:.2f} s/item"
        )
        # 2. concurrent sessions
        rows = []
        for n in args.sessions:
            runs = Path(tmp) / f"c{n}"
            thetas = [round(-1.5 + 3.0 * i / max(n - 1, 1), 2) for i in range(n)]
            models = [
                {
                    "model": f"openai-api/sim/theta_{t}",
                    "name": f"p{i}",
                    "base_url": srv.url,
                    "api_key_env": "SIM_API_KEY",
                }
                for i, t in enumerate(thetas)
            ]
            workers = min(n, args.max_workers)
            t0 = time.perf_counter()
            sums = api.run(
                None,
                bank=str(bank_dir),
                environments=str(ENV),
                runs_dir=str(runs),
                models=models,
                max_items=args.items,
                workers=workers,
            )
            wall = time.perf_counter() - t0
            items = sum(x["n_items"] for x in sums)
            rows.append(
                {
                    "sessions": n,
                    "workers": workers,
                    "items": items,
                    "wall_s": wall,
                    "items_per_min": 60 * items / wall,
                }
            )
            print(
                f"{n} sessions, {workers} workers: {items} items in {wall:.1f} s "
                f"= {60 * items / wall:.1f} items/min",
                file=sys.stdout,
                flush=True,
            )
        result["concurrency"] = rows
    name = "live.json" if bank.name == "shell-safety" else f"live_{bank.name}.json"
    out = args.out or REPO / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
