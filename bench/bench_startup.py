"""Start-up time of the ``agentcat`` command, two checkouts interleaved in one run.

What a user waits for before anything happens: ``agentcat --help``, and
``agentcat estimate`` on a tiny response file (a shipped bank, 3 subjects × 5
items), against bare Python and a plain script doing the same estimate with
numpy alone (the floor any tool pays). Each command runs in a fresh process
in the tree's folder with the tree first on ``PYTHONPATH`` (``-c`` puts the
working directory first on ``sys.path``, so ``import orchestrator`` is that
tree's whatever package the running Python has installed; checked once per
tree before timing), wall time, rounds alternating the order of the trees; the table shows
each side's median over rounds and the ratio (candidate / baseline; < 1 is
faster). Load on a shared machine moves all numbers together: read ratios.

    nice python bench/bench_startup.py --baseline /work/main --candidate . --rounds 7

Writes ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import header, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
REPO = Path(__file__).resolve().parent.parent
BANK = REPO / "item_banks" / "tinyarc"

PLAIN_ESTIMATE = """
import csv, json, sys
import numpy as np
bank = {i["id"]: i for i in json.load(open(sys.argv[1]))["items"]}
rows = list(csv.DictReader(open(sys.argv[2])))
grid = np.linspace(-6, 6, 81)
for s in sorted({r["subject"] for r in rows}):
    logp = -0.5 * grid**2
    for r in (r for r in rows if r["subject"] == s):
        it = bank[r["item"]]
        p = 1 / (1 + np.exp(-it["a"] * (grid - it["b"][0])))
        logp += np.log(p if int(r["score"]) else 1 - p)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    m = (w * grid).sum()
    print(s, m, ((w * (grid - m) ** 2).sum()) ** 0.5)
"""
"""The same EAP by hand: what ``agentcat estimate`` costs beyond numpy and Python."""


def tiny_responses(path: Path) -> None:
    items = [i["id"] for i in json.loads((BANK / "bank.json").read_text())["items"][:5]]
    lines = ["subject,item,score"]
    lines += [f"s{s},{item},{(s + j) % 2}" for s in range(3) for j, item in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")


def commands(tiny: Path) -> dict[str, list[str]]:
    cli = "import sys; from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))"
    return {
        "help": ["-c", cli, "--help"],
        "estimate": ["-c", cli, "estimate", str(tiny), "--bank", str(BANK)],
    }


def references(tiny: Path) -> dict[str, list[str]]:
    """Tree-independent floors, timed once per round."""
    return {
        "bare_python": ["-c", "pass"],
        "plain_estimate": ["-c", PLAIN_ESTIMATE, str(BANK / "bank.json"), str(tiny)],
    }


def wall(argv: list[str], tree: Path | None, neutral: Path) -> float:
    """Seconds for one fresh process, run in ``tree`` (its package first on ``sys.path``),
    or in the ``neutral`` folder for the tree-independent references."""
    env = {**os.environ, "PYTHONPATH": str(tree) if tree else ""}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, *argv], env=env, cwd=tree or neutral, check=True, capture_output=True
    )
    return time.perf_counter() - t0


def check_imports(tree: Path) -> None:
    """Refuse to time a tree whose processes would import another tree's ``orchestrator``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import orchestrator; print(orchestrator.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, check=True, capture_output=True, text=True
    )
    found = Path(out.stdout.strip()).resolve()
    if not found.is_relative_to(tree):
        raise SystemExit(f"{tree}: its processes import orchestrator from {found}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--candidate", type=Path, default=Path("."))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    times: dict[str, dict[str, list[float]]] = {}
    for tree in trees.values():
        check_imports(tree)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.csv"
        tiny_responses(tiny)
        cmds = commands(tiny)
        refs = references(tiny)
        for r in range(args.rounds):
            for name, cmd in refs.items():
                times.setdefault(name, {}).setdefault("reference", []).append(
                    wall(cmd, None, Path(tmp))
                )
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for label in order:
                for name, cmd in cmds.items():
                    times.setdefault(name, {}).setdefault(label, []).append(
                        wall(cmd, trees[label], Path(tmp))
                    )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows: dict[str, Any] = {}
    for name, per in times.items():
        rows[name] = {k: statistics.median(v) for k, v in per.items()} | {"rounds_s": per}
        if "baseline" in per:
            rows[name]["ratio"] = rows[name]["candidate"] / rows[name]["baseline"]
    bare = rows["bare_python"]["reference"]
    print(f"{'command':>16} {'base s':>8} {'cand s':>8} {'ratio':>6}  {'cand / bare python':>18}")
    for name in cmds:
        row = rows[name]
        print(
            f"{name:>16} {row['baseline']:>8.3f} {row['candidate']:>8.3f} {row['ratio']:>6.3f}"
            f"  {row['candidate'] / bare:>18.1f}"
        )
    for name in refs:
        print(f"{name:>16} {rows[name]['reference']:>8.3f}")
    doc = {
        **header("startup", "bench_startup.py", argv),
        "trees": {k: str(v) for k, v in trees.items()},
        "rounds": args.rounds,
        "load_avg_1m": os.getloadavg()[0],
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
