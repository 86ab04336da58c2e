"""Cost of one scenario run without a model: create → setup → replay → grade → remove.

Each run starts a hardened sandbox through the provider, runs the variant's
setup and baseline snapshot, replays one reference solution as the agent user,
grades it (every check) and removes the container; the wall time of each
phase is recorded. Part 1 times ``--runs`` runs one at a time (default 24,
cycling over families and categories) for per-run medians; part 2 (unless
``--no-matrix``) runs the whole reference matrix (every variant × category)
with ``--jobs`` concurrent sandboxes and reports its wall time. Also records
the time of a cached ``build_images`` call for reference. Numbers, not asserts: prints the
phase table and the matrix (item × reference category → pass) and writes
``bench/results/scenario_runs.json``.

    python bench/bench_scenario_runs.py [--runs 24] [--jobs 3] [--no-matrix]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from orchestrator.runner.images import build_images, family_image
from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec
from orchestrator.scenario import FamilySpec, iter_items, load_families
from orchestrator.scenario.grading import grade, replay_solution, setup_variant

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "environments"
RESULTS = ROOT / "bench" / "results" / "scenario_runs.json"


async def one_run(family: FamilySpec, variant: str, category: int, image: str) -> dict[str, Any]:
    spec = SandboxSpec(image=image, **family.sandbox.model_dump())
    t = [time.perf_counter()]
    sb = await AgentcatSandbox.create(spec, {"agentcat.bench": "scenario_runs"})
    try:
        t.append(time.perf_counter())
        baseline = await setup_variant(sb, family, variant)
        t.append(time.perf_counter())
        trace = await replay_solution(sb, family, variant, category)
        t.append(time.perf_counter())
        g = await grade(sb, trace, family, variant, baseline)
        t.append(time.perf_counter())
    finally:
        await sb.remove()
    t.append(time.perf_counter())
    names = ("create", "setup", "replay", "grade", "remove")
    phases = {n: t[i + 1] - t[i] for i, n in enumerate(names)}
    return {
        "item": family.item_id(variant),
        "category": category,
        "graded": g.category,
        "commands": len(trace.calls),
        "total_s": t[-1] - t[0],
        "create_to_remove_excluding_replay_s": t[-1] - t[0] - phases["replay"],
        **{f"{k}_s": v for k, v in phases.items()},
    }


async def matrix(
    families: dict[str, FamilySpec], images: dict[str, str], jobs: int
) -> dict[str, Any]:
    sem = asyncio.Semaphore(jobs)
    cases = [(it.family, it.variant.id, c) for it in iter_items(families) for c in range(4)]

    async def go(case: tuple[FamilySpec, str, int]) -> dict[str, Any]:
        async with sem:
            return await one_run(case[0], case[1], case[2], images[case[0].id])

    t0 = time.perf_counter()
    runs = await asyncio.gather(*(go(c) for c in cases))
    wall = time.perf_counter() - t0
    table: dict[str, dict[str, int]] = {}  # item -> expected category -> graded category
    for r in runs:
        table.setdefault(r["item"], {})[str(r["category"])] = r["graded"]
    return {
        "runs": len(runs),
        "jobs": jobs,
        "wall_s": wall,
        "passed": sum(r["graded"] == r["category"] for r in runs),
        "median_run_s": statistics.median(r["total_s"] for r in runs),
        "graded": table,
    }


def matrix_table(graded: dict[str, dict[str, int]]) -> str:
    """Markdown: one row per item (family.variant), one column per reference category."""
    header = "| item | 0 major | 1 minor | 2 safe, failed | 3 safe, done |"
    lines = [header, "|---|---|---|---|---|"]
    for item in sorted(graded):
        cells = [
            "pass" if graded[item].get(str(c)) == c else f"FAIL (got {graded[item].get(str(c))})"
            for c in range(4)
        ]
        lines.append(f"| {item} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--no-matrix", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    build_images(ENV)
    cached_build_s = time.perf_counter() - t0
    families = load_families(ENV)
    images = {f: family_image(f, ENV) for f in families}
    items = list(iter_items(families))
    sequence = [(items[i % len(items)], i % 4) for i in range(0, args.runs * 5, 5)][: args.runs]

    async def sequential() -> list[dict[str, Any]]:
        return [
            await one_run(it.family, it.variant.id, cat, images[it.family.id])
            for it, cat in sequence
        ]

    runs = asyncio.run(sequential())
    keys = (
        "total_s",
        "create_to_remove_excluding_replay_s",
        "create_s",
        "setup_s",
        "replay_s",
        "grade_s",
        "remove_s",
    )
    summary = {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "p90": sorted(r[k] for r in runs)[int(0.9 * (len(runs) - 1))],
        }
        for k in keys
    }
    print(f"{'phase':<38}{'median s':>10}{'p90 s':>10}   ({len(runs)} sequential runs)")
    for k in keys:
        print(f"{k:<38}{summary[k]['median']:>10.2f}{summary[k]['p90']:>10.2f}")
    doc: dict[str, Any] = {
        "bench": "scenario_runs",
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "note": "one container per run; no model (reference solutions replayed); "
        "timings depend on machine load",
        "images_cached_build_s": cached_build_s,
        "sequential": {"n_runs": len(runs), "summary": summary, "runs": runs},
    }
    if not args.no_matrix:
        m = asyncio.run(matrix(families, images, args.jobs))
        doc["matrix"] = m
        print(matrix_table(m["graded"]))
        print(
            f"full matrix: {m['runs']} runs, {m['passed']} graded as expected, "
            f"{m['wall_s']:.1f} s wall with {m['jobs']} concurrent sandboxes"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
