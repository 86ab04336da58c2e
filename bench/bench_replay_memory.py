"""Peak memory and wall time of ``replay`` (what ``agentcat simulate`` runs), two trees interleaved.

A 10,000-item K = 4 bank (``--categories``) and 2,000 simulated subjects who each answered a
random 10 % of it (2 M responses, drawn from the model at θ ~ N(0, 1)); the
replay runs ``max_info`` for ``--max-items`` steps after the full-data
reference EAP. Each run is a fresh process with the tree first on
``PYTHONPATH``; reported per side: the peak RSS during the replay (``VmHWM``,
reset once the data is in memory; Linux), that peak above the data's RSS, the
replay's wall time, and the ratios candidate / baseline (< 1 is better).
Also, per side, the θ RMSE of the CAT against the true θ, and whether both
sides chose the same items for every subject and step (a tree that selects
from tabulated information against one that evaluates it exactly: the share
of identical choices).

    nice python bench/bench_replay_memory.py --baseline /work/main --candidate . --rounds 2

Writes ``bench/results/replay_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _results import header, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "replay_memory.json"
CASE = ("items", "subjects", "share", "max_items", "categories")

CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from bench_cat_step import make_bank
from orchestrator.data import Responses
from orchestrator.cat import make_selection
from orchestrator.sim import replay

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":")) / 1024

n_items, n_subj, share, steps, k = (int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
                                    int(sys.argv[5]), int(sys.argv[6]))
bank = make_bank(n_items, categories=k)
r = np.random.default_rng(0)
theta = r.normal(0.0, 1.0, n_subj)
seen = r.random((n_subj, n_items)) < share
s_idx, i_idx = np.nonzero(seen)
probs = bank.model.category_probs_at(theta[s_idx, None], i_idx)  # (obs, K)
score = (r.random(len(s_idx))[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)
del probs
responses = Responses(
    subjects=tuple(f"s{s}" for s in range(n_subj)),
    items=tuple(bank.ids),
    subject_idx=s_idx.astype(np.int64),
    item_idx=i_idx.astype(np.int64),
    score=score,
    line=np.arange(len(score), dtype=np.int64) + 2,
    source="<bench>",
)
aligned = responses.for_bank(bank)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:  # the peak from here on (not the data's making)
    fh.write("5")
t0 = time.perf_counter()
res = replay(bank, aligned, {"cat": make_selection("max_info")}, max_items=steps)
wall = time.perf_counter() - t0
peak = status("VmHWM")
est = np.asarray(res.strategies[0].theta)[-1].reshape(n_subj)
print(json.dumps({
    "peak_mb": peak, "above_data_mb": peak - before, "data_rss_mb": before, "wall_s": wall,
    "rmse_vs_truth": float(np.sqrt(np.mean((est - theta) ** 2))),
    "items": np.asarray(res.strategies[0].items).tolist(),
}))
"""


def run_once(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    bench_dir = str(Path(__file__).resolve().parent)  # make_bank: the candidate's, in both
    cmd = [sys.executable, "-c", CHILD, bench_dir, str(args.items), str(args.subjects)]
    cmd += [str(args.share), str(args.max_items), str(args.categories)]
    # run in the tree: ``-c`` puts the working directory first on sys.path
    out = subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--subjects", type=int, default=2000)
    p.add_argument("--share", type=float, default=0.1)
    p.add_argument("--max-items", type=int, default=20)
    p.add_argument("--categories", type=int, default=4, help="K of every item")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for label in list(trees) if r % 2 == 0 else list(trees)[::-1]:
            runs[label].append(run_once(trees[label], args))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    keys = ("peak_mb", "above_data_mb", "wall_s", "rmse_vs_truth")
    summary: dict[str, Any] = {}
    for key in keys:
        med = {k: statistics.median(run[key] for run in runs[k]) for k in trees}
        summary[key] = {**med, "ratio": med["candidate"] / med["baseline"]}
    pairs = list(zip(runs["baseline"], runs["candidate"], strict=True))
    same = [np.mean(np.asarray(a["items"]) == np.asarray(b["items"])) for a, b in pairs]
    summary["share_identical_choices"] = float(min(same))
    for key in keys:
        v = summary[key]
        print(
            f"{key:>14}: baseline {v['baseline']:9.3f}  candidate {v['candidate']:9.3f}  "
            f"ratio {v['ratio']:.3f}"
        )
    print(f"{'same choices':>14}: {summary['share_identical_choices']:.6f}")
    doc = {
        **header("replay_memory", "bench_replay_memory.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "case": {k: getattr(args, k) for k in CASE},
        "load_avg_1m": os.getloadavg()[0],
        "summary": summary,
        "runs": {
            k: [{x: v for x, v in run.items() if x != "items"} for run in runs[k]] for k in trees
        },
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
