"""Wall time of `agentcat health` (analysis stages and rendering) on simulated banks.

Shapes mirror the real datasets (agentdojo 17 × 194 mixed K, alpaca_eval 40 × 805
binary, tinybench 2,600 × 100 binary) plus a sparse 1,000 × 500 K = 4 matrix.
Prints a table and writes bench/results/health_timing.json. Numbers, not a pass/fail timer.

    nice -n 10 .venv/bin/python bench/health_timing.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from orchestrator.bank import ItemBank
from orchestrator.data import Responses
from orchestrator.irt import sample_responses
from orchestrator.report import analyse_health, render_html

OUT = Path(__file__).resolve().parent / "results" / "health_timing.json"

CASES = {
    "agentdojo-like 17x194 K=2/4": (17, 194, "mixed", 1.0),
    "alpaca-like 40x805 K=2": (40, 805, 2, 1.0),
    "tinybench-like 2600x100 K=2": (2600, 100, 2, 1.0),
    "sparse 1000x500 K=4 50%": (1000, 500, 4, 0.5),
}


def make_case(n_sub: int, n_items: int, k: int | str, density: float, seed: int):
    rng = np.random.default_rng(seed)
    a = 1.2 * np.exp(rng.normal(0, 0.3, n_items))
    centre = rng.normal(0, 1, n_items)
    ks = np.where(np.arange(n_items) % 2 == 0, 2, 4) if k == "mixed" else np.full(n_items, k)
    b = [list(centre[i] + np.linspace(-1, 1, ks[i] - 1)) if ks[i] > 2 else [centre[i]]
         for i in range(n_items)]  # fmt: skip
    ids = [f"i{j:04d}" for j in range(n_items)]
    bank = ItemBank.from_params("bench", ids, a, b)
    x = sample_responses(rng.normal(size=n_sub), bank.a, bank.b, rng)
    mask = rng.random(x.shape) < density
    s, i = np.nonzero(mask)
    resp = Responses.from_triples(
        (f"s{u}", ids[v], int(x[u, v])) for u, v in zip(s, i, strict=True)
    )
    return bank, resp


def run(name: str, spec: tuple, seed: int) -> dict:
    bank, resp = make_case(*spec, seed=seed)
    stamps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    report = analyse_health(bank, resp, progress=lambda m: stamps.append((m, time.perf_counter())))
    t_analysis = time.perf_counter() - t0
    t1 = time.perf_counter()
    page = render_html(report)
    t_render = time.perf_counter() - t1
    stages: dict[str, float] = {}
    ends = [t for _, t in stamps[1:]] + [t0 + t_analysis]
    for (msg, start), end in zip(stamps, ends, strict=True):  # a message opens its stage
        key = msg.split(":")[0]
        stages[key] = stages.get(key, 0.0) + (end - start)
    return {
        "case": name,
        "n_subjects": spec[0],
        "n_items": spec[1],
        "n_obs": resp.n_obs,
        "analysis_s": round(t_analysis, 2),
        "render_s": round(t_render, 2),
        "html_kib": round(len(page) / 1024),
        "sx2": report.item_fit.sx2_status.split(":")[0],
        "stage_s": {k: round(v, 2) for k, v in stages.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the two small cases")
    args = ap.parse_args()
    cases = list(CASES.items())[:2] if args.quick else list(CASES.items())
    rows = [run(name, spec, seed=k) for k, (name, spec) in enumerate(cases)]
    for r in rows:
        print(
            f"{r['case']:32s} obs={r['n_obs']:7d} analysis={r['analysis_s']:6.2f}s "
            f"render={r['render_s']:5.2f}s html={r['html_kib']} KiB S-X²={r['sx2']}"
        )
    doc = {
        "what": "agentcat health wall time (analysis incl. 50 Q3 null simulations; HTML render)",
        "machine": platform.platform(),
        "note": "measured on a shared 2-core machine under load; re-run on a quiet machine",
        "results": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
