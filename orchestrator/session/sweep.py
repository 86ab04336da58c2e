"""Non-adaptive sweeps: run (a sample of) the bank's items per model; write a response matrix.

This is how a user gathers calibration data for a new bank (and the random /
full-bank baseline for live comparisons). Rows are appended to the output CSV
as runs finish, each flushed to disk, and pairs already in the file are not
re-run, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bank import load_bank
from orchestrator.config import RunConfig
from orchestrator.runner.pool import InspectRunner, WorkerPool
from orchestrator.runner.result import ItemResult, RunRequest
from orchestrator.session.orchestrate import preflight

__all__ = ["run_sweep"]


def _existing_pairs(out: Path) -> set[tuple[str, str]]:
    if not out.exists():
        return set()
    from orchestrator.data import read_responses

    r = read_responses(out)
    return {(r.subjects[s], r.items[i]) for s, i in zip(r.subject_idx, r.item_idx, strict=True)}


async def run_sweep(
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the sweep; returns counts (written, skipped_existing, errors) and the output path."""
    bank = load_bank(config.bank)
    runnable = preflight(config, bank, config.models)
    out_path = Path(out)
    done = _existing_pairs(out_path)
    live = [iid for iid in bank.ids if iid in runnable.sources]
    rng = np.random.default_rng(seed)
    sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    sweep_key = secrets.token_hex(8)
    log_dir = config.runs_dir / sweep_id / "logs"
    pool = WorkerPool(config.workers)
    try:  # before the output file is created
        pool.check_models(config.models, config.retry.model_timeout_s)
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except BaseException:
        pool.shutdown()
        raise
    new_file = not out_path.exists()
    counts = {"written": 0, "skipped_existing": 0, "errors": 0}
    sem = asyncio.Semaphore(config.workers)
    with pool, open(out_path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_file:
            writer.writerow(["subject", "item", "score"])
        jobs = []
        for model in config.models:
            items = (
                live
                if sample is None
                else list(rng.choice(live, min(sample, len(live)), replace=False))
            )
            runner = InspectRunner(pool, config, model, bank, log_dir, runnable)
            for item in items:
                if (model.label, item) in done:
                    counts["skipped_existing"] += 1
                    continue
                jobs.append((model.label, item, runner))
        total = len(jobs)

        async def one(n: int, label: str, item: str, runner: InspectRunner) -> None:
            async with sem:
                res: ItemResult | None = None
                for attempt in range(1, config.retry.max_attempts + 1):
                    res = await runner.run(RunRequest(sweep_id, item, n, attempt, sweep_key))
                    if res.ok:
                        break
                assert res is not None
                if res.ok:
                    writer.writerow([label, item, res.score])
                    fh.flush()
                    os.fsync(fh.fileno())
                    counts["written"] += 1
                else:
                    counts["errors"] += 1
                if progress:
                    what = res.score if res.ok else f"error ({res.error_kind})"
                    print(
                        f"[{counts['written'] + counts['errors']}/{total}] {label} {item} → {what}",
                        file=sys.stderr,
                        flush=True,
                    )

        await asyncio.gather(*(one(n, *job) for n, job in enumerate(jobs, start=1)))
    return {"schema_version": 1, "out": str(out_path), **counts, "runs_dir": str(log_dir.parent)}
