"""Person-fit null at a session's start: a first process simulates it, a second reads it from disk.

    nice .venv/bin/python bench/bench_null_cache.py [--bank atlas_arc] [--items 30]

Runs the same start twice, each in a fresh Python process with the disk store
(:mod:`orchestrator.session.null_cache`) in a new temporary folder and the live
defaults (max_info, 200 simulees per ability, lapse 0.05), and reports the
seconds each took to have the null ready, and the file's size. Writes
bench/results/null_cache.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_START = """
import sys, time
from orchestrator.bank import load_bank
from orchestrator.cat import make_selection
from orchestrator.cat.fit import simulate_fit_null
from orchestrator.session.null_cache import install_disk_null_store
install_disk_null_store(sys.argv[1])
bank = load_bank(sys.argv[2])
t = time.perf_counter()
simulate_fit_null(bank, make_selection("max_info"), int(sys.argv[3]), replicates=200, lapse=0.05)
print(time.perf_counter() - t)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", default="atlas_arc")
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "null_cache.json")
    args = ap.parse_args()
    bank = REPO / "item_banks" / args.bank
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        for label in ("first process", "second process"):
            out = subprocess.run(
                [sys.executable, "-c", _START, folder, str(bank), str(args.items)],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(round(float(out.stdout.strip().splitlines()[-1]), 3))
            print(f"{label}: null ready in {runs[-1]:.2f} s", file=sys.stderr)
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    doc = {
        "schema_version": 1,
        "bank": args.bank,
        "items": args.items,
        "first_process_s": runs[0],
        "second_process_s": runs[1],
        "file_bytes": size,
    }
    print(json.dumps(doc, indent=2))
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
