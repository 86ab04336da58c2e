"""Per-step latency of the live CAT loop: select the next item + record its score.

One step = ``CatController.next_items(1)`` (state, Fisher information of every
eligible item at the EAP, masking, argmax) + ``record(item, score)`` (grid
posterior update, EAP/SE) + ``should_stop()`` (SE rule). Banks of 1k, 10k and
100k K = 4 items with known parameters; scores are drawn from the model at a
fixed true θ. Also times one 8-item batch (``next_items(8)``, conditioned
greedy picks). Numbers, not asserts: prints a table and writes
``bench/results/cat_step.json``. ``--clock cpu`` times this process's CPU
time instead of wall time (steadier when the machine is shared).

    python bench/bench_cat_step.py [--sizes 1000 10000 100000] [--steps 60] [--clock cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from orchestrator.bank import ItemBank
from orchestrator.cat import CatController
from orchestrator.irt import sample_responses

RESULTS = Path(__file__).resolve().parent / "results" / "cat_step.json"


def make_bank(n_items: int, seed: int = 0) -> ItemBank:
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    b = r.normal(0.0, 1.0, n_items)[:, None] + np.sort(r.uniform(-1.5, 1.5, (n_items, 3)), axis=1)
    return ItemBank.from_params(f"bench{n_items}", [f"i{i}" for i in range(n_items)], a, b)


def bench(
    n_items: int, steps: int, selection: str = "max_info", clock: str = "wall"
) -> dict[str, object]:
    bank = make_bank(n_items)
    truth = 0.7
    x = sample_responses(np.array([truth]), bank.a, bank.b, np.random.default_rng(1))[0]
    ctl = CatController(
        bank, selection=selection, stopping={"rule": "se", "args": {"se": 0.01}}, rng=0
    )
    now = time.process_time if clock == "cpu" else time.perf_counter
    select_s, record_s, stop_s = [], [], []
    for _ in range(steps):
        t0 = now()
        item = ctl.next_items(1)[0]
        t1 = now()
        ctl.record(item, int(x[bank.index[item]]))
        t2 = now()
        ctl.should_stop()
        t3 = now()
        select_s.append(t1 - t0)
        record_s.append(t2 - t1)
        stop_s.append(t3 - t2)
    step = [a + b + c for a, b, c in zip(select_s, record_s, stop_s, strict=True)]
    batch = []
    for _ in range(3):
        t0 = now()
        ctl.next_items(8)
        batch.append(now() - t0)
    ms = 1e3
    return {
        "n_items": n_items,
        "k": 4,
        "selection": selection,
        "steps": steps,
        "clock": clock,
        "step_ms_median": statistics.median(step) * ms,
        "step_ms_p90": float(np.quantile(step, 0.9)) * ms,
        "select_ms_median": statistics.median(select_s) * ms,
        "record_ms_median": statistics.median(record_s) * ms,
        "should_stop_ms_median": statistics.median(stop_s) * ms,
        "batch8_ms_median": statistics.median(batch) * ms,
        "final_theta": ctl.theta,
        "final_se": ctl.se,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or this process's CPU time (steadier on a loaded machine)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    bench(500, 5)  # warm-up: imports, allocator
    rows = [bench(n, args.steps, clock=args.clock) for n in args.sizes]
    head = (
        f"{'items':>7} {'step ms':>8} {'p90':>6} {'select':>7} {'record':>7} "
        f"{'stop':>6} {'batch8':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['n_items']:>7} {r['step_ms_median']:>8.3f} {r['step_ms_p90']:>6.3f} "
            f"{r['select_ms_median']:>7.3f} {r['record_ms_median']:>7.3f} "
            f"{r['should_stop_ms_median']:>6.3f} {r['batch8_ms_median']:>7.1f}"
        )
    doc = {
        "schema_version": 1,
        "benchmark": "cat_step",
        "command": "python " + " ".join(["bench/bench_cat_step.py", *(argv or sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
