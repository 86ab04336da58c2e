"""Per-step latency of the live CAT loop: select the next item + record its score.

One step = ``CatController.next_items(1)`` (state, Fisher information of every
eligible item at the EAP, masking, argmax) + ``record(item, score)`` (grid
posterior update, EAP/SE) + ``should_stop()`` (SE rule). Banks of 1k, 10k and
100k items with known parameters (K = 4, or each ``--categories``); scores are
drawn from the model at a fixed true θ. Also times one 8-item batch
(``next_items(8)``, conditioned greedy picks; the median of ``--batches`` of
them, 20 by default: three were too few for a steady median) and one
``variance_reduction`` pick on the same state (D = 1). ``--early 5 10 20`` also
times 8-item batches after 5, 10 and 20 steps of a second, identical test (the
posterior is still wide there, which the batch after ``--steps`` does not show;
the step columns stay those of the first test). Numbers, not asserts: prints a table and writes
``bench/results/cat_step.json``. ``--clock cpu`` times this process's CPU
time instead of wall time (steadier when the machine is shared).

``--dims 2`` (or 3) does the same on a D-dimensional bank (every item loads on
every dimension, latent correlation 0.5; the posterior is the 41 × 41 product
grid for D = 2) for each ``--selection`` rule, and writes
``bench/results/cat_step_<D>d.json``.

    python bench/bench_cat_step.py [--sizes 1000 10000 100000] [--steps 60] [--clock cpu] \
        [--categories 2 4]
    python bench/bench_cat_step.py --dims 2 --sizes 1000 10000 \
        --selection d_optimality --selection a_optimality --selection kl
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _results import header, write_json

from orchestrator.bank import ItemBank, Prior
from orchestrator.cat import CatController, make_selection
from orchestrator.cat.state import PreparedBank

RESULTS = Path(__file__).resolve().parent / "results"


def make_bank(n_items: int, seed: int = 0, dims: int = 1, categories: int = 4) -> ItemBank:
    r = np.random.default_rng(seed)
    steps = np.sort(r.uniform(-1.5, 1.5, (n_items, categories - 1)), axis=1)
    b = r.normal(0.0, 1.0, n_items)[:, None] + steps
    ids = [f"i{i}" for i in range(n_items)]
    if dims == 1:
        a = np.exp(r.normal(0.0, 0.3, n_items))
        return ItemBank.from_params(f"bench{n_items}", ids, a, b)
    slopes = np.exp(r.normal(-0.3, 0.4, (n_items, dims)))
    corr = np.full((dims, dims), 0.5) + 0.5 * np.eye(dims)
    return ItemBank.from_params(
        f"bench{n_items}x{dims}",
        ids,
        slopes,
        b,
        dimensions=[f"d{k + 1}" for k in range(dims)],
        prior=Prior(correlation=corr.tolist()),
    )


def bench(
    n_items: int,
    steps: int,
    selection: str = "max_info",
    clock: str = "wall",
    dims: int = 1,
    categories: int = 4,
    early: tuple[int, ...] = (),
    batches: int = 20,
) -> dict[str, object]:
    bank = make_bank(n_items, dims=dims, categories=categories)
    truth = np.full((1, dims), 0.7)
    x = bank.model.sample(truth, np.random.default_rng(1))[0]
    ctl = CatController(
        bank, selection=selection, stopping={"rule": "se", "args": {"se": 0.01}}, rng=0
    )
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()  # the bank's information table, where the tree has one (built once per bank)
    table = getattr(PreparedBank.of(bank), "information_table", lambda: None)()
    table_s = now() - t0 if table is not None else None
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
    batch, vr = [], []
    for _ in range(batches):
        t0 = now()
        ctl.next_items(8)
        batch.append(now() - t0)
    if dims == 1:  # one variance_reduction pick on the same state
        rule = make_selection("variance_reduction")
        for _ in range(3):
            t0 = now()
            rule.select(ctl.state(), 1, 0)
            vr.append(now() - t0)
    ms = 1e3
    batch_early = {}  # a second test, scored the same way, batched early on
    if early:
        ctl = CatController(
            bank, selection=selection, stopping={"rule": "se", "args": {"se": 0.01}}, rng=0
        )
        for n in range(max(early) + 1):
            if n in early:
                times = []
                for _ in range(batches):
                    t0 = now()
                    ctl.next_items(8)
                    times.append(now() - t0)
                batch_early[str(n)] = statistics.median(times) * ms
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[bank.index[item]]))
    return {
        "n_items": n_items,
        "dims": dims,
        "k": categories,
        "selection": selection,
        "steps": steps,
        "clock": clock,
        "step_ms_median": statistics.median(step) * ms,
        "step_ms_p90": float(np.quantile(step, 0.9)) * ms,
        "select_ms_median": statistics.median(select_s) * ms,
        "record_ms_median": statistics.median(record_s) * ms,
        "should_stop_ms_median": statistics.median(stop_s) * ms,
        "batch8_ms_median": statistics.median(batch) * ms,
        "vr1_ms_median": statistics.median(vr) * ms if vr else None,
        "batch8_early_ms": batch_early,  # after n steps: median of `batches` batches
        "batches": batches,
        "table_build_s": table_s,
        "final_theta": np.atleast_1d(ctl.theta).tolist(),  # a float in trees before #12
        "final_se": np.atleast_1d(ctl.se).tolist(),
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
    p.add_argument(
        "--categories", type=int, nargs="+", default=[4], help="K of the bank's items (2..6)"
    )
    p.add_argument("--dims", type=int, default=1, choices=[1, 2, 3], help="dimensions of θ")
    p.add_argument(
        "--selection",
        action="append",
        help="selection rule(s) to time (default max_info; repeat for several)",
    )
    p.add_argument(
        "--early",
        type=int,
        nargs="*",
        default=[],
        help="also time an 8-item batch after these many steps of a second test",
    )
    p.add_argument(
        "--batches", type=int, default=20, help="8-item batches timed per state (median)"
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    out = args.out or RESULTS / (
        "cat_step.json" if args.dims == 1 else f"cat_step_{args.dims}d.json"
    )
    rules = args.selection or ["max_info"]
    bench(500, 5, dims=args.dims)  # warm-up: imports, allocator
    rows = [
        bench(
            n,
            args.steps,
            selection=rule,
            clock=args.clock,
            dims=args.dims,
            categories=k,
            early=tuple(args.early),
            batches=args.batches,
        )
        for rule in rules
        for k in args.categories
        for n in args.sizes
    ]
    head = (
        f"{'rule':>14} {'K':>2} {'items':>7} {'step ms':>8} {'p90':>6} {'select':>7} "
        f"{'record':>7} {'stop':>6} {'batch8':>7} {'vr1':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        vr1 = "-" if r["vr1_ms_median"] is None else f"{r['vr1_ms_median']:.2f}"
        print(
            f"{r['selection']:>14} {r['k']:>2} {r['n_items']:>7} {r['step_ms_median']:>8.3f} "
            f"{r['step_ms_p90']:>6.3f} "
            f"{r['select_ms_median']:>7.3f} {r['record_ms_median']:>7.3f} "
            f"{r['should_stop_ms_median']:>6.3f} {r['batch8_ms_median']:>7.2f} {vr1:>7}"
        )
    doc = {
        **header("cat_step", "bench_cat_step.py", argv),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "results": rows,
    }
    write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
