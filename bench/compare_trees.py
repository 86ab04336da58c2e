"""Do two checkouts compute the same numbers? ``simulate``, ``estimate``, ``calibrate``, ``health``.

A refactoring that claims "behaviour identical" runs this against the tree it
started from. Each checkout runs in its own subprocesses, with its own ``.venv``
when it has one (a ``git archive`` export of a commit borrows this Python), on
the same shipped banks and response files of the *candidate* tree. The JSON
outputs (and the written ``bank.json`` for ``calibrate``) are compared leaf by
leaf: timing, dates, version strings and output paths are ignored; every
other number must agree within ``--tol`` (absolute, default 1e-12), every
string exactly.

    python bench/compare_trees.py --baseline /work/main --candidate . \\
        --bank agentdojo --bank jailbreakbench

Prints one line per (bank, command) with the largest absolute difference and
writes ``bench/results/compare_trees.json``. Exit 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

VOLATILE = {
    "wall_time_s",
    "date",
    "elapsed",
    "software",
    "bank",
    "generated_at",
    "agentcat_version",
}
"""Keys whose values legitimately differ between two runs (times, versions, paths)."""
STRATEGIES = ("cat", "random", "variance_reduction")


def run_json(tree: Path, args: list[str]) -> Any:
    """``agentcat ARGS --json`` as ``tree``'s code runs it (its ``.venv``, else this Python).

    The command runs with ``tree`` as working directory and ``-c``, so
    ``import orchestrator`` finds that tree's package before any installed one:
    a plain export (``git archive``) of a commit can be compared too.
    """
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    code = "import sys; from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [python, "-c", code, *args], cwd=tree, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(
            f"{tree}: agentcat {' '.join(args)} failed ({out.returncode}):\n{out.stderr}"
        )
    return json.loads(out.stdout)


def outputs(tree: Path, bank_dir: Path, work: Path) -> dict[str, Any]:
    """The three commands' JSON documents for one bank, run by ``tree``'s agentcat."""
    resp = str(bank_dir / "responses.csv")
    cal_out = work / "bank"
    docs = {
        "simulate": run_json(
            tree,
            ["simulate", "--bank", str(bank_dir), "--responses", resp, "--drop-unknown-items"]
            + [arg for s in STRATEGIES for arg in ("--strategy", s)]
            + ["--json"],
        ),
        "estimate": {
            m: estimate_rows(
                run_json(tree, ["estimate", "--bank", str(bank_dir), resp, "--method", m, "--json"])
            )
            for m in ("eap", "map")
        },
        "calibrate": run_json(
            tree, ["calibrate", resp, "--out", str(cal_out), "--quiet", "--json"]
        ),
    }
    docs["calibrate"]["bank.json"] = json.loads((cal_out / "bank.json").read_text())
    report = str(work / "health.html")
    health = ["health", "--bank", str(bank_dir), "--responses", resp, "--out", report]
    docs["health"] = run_json(tree, [*health, "--quiet", "--json"])
    return docs


def estimate_rows(doc: Any) -> list[dict[str, Any]]:
    """The per-subject rows of ``estimate --json``: the document's ``subjects`` since
    schema_version 1, the whole output of a tree from before that."""
    return doc["subjects"] if isinstance(doc, dict) else doc


def max_diff(a: Any, b: Any, path: str = "") -> tuple[float, str, list[str]]:
    """Largest absolute numeric difference, where it is, and what differs otherwise."""
    if isinstance(a, dict) and isinstance(b, dict):
        worst, where, bad = 0.0, "", []
        if set(a) != set(b):
            bad.append(f"{path}: keys {sorted(set(a) ^ set(b))}")
        for k in sorted(set(a) & set(b) - VOLATILE):
            d, at, more = max_diff(a[k], b[k], f"{path}.{k}")
            worst, where = (d, at) if d > worst else (worst, where)
            bad += more
        return worst, where, bad
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 0.0, "", [f"{path}: lengths {len(a)} != {len(b)}"]
        worst, where, bad = 0.0, "", []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d, at, more = max_diff(x, y, f"{path}[{i}]")
            worst, where = (d, at) if d > worst else (worst, where)
            bad += more
        return worst, where, bad
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        if math.isnan(a) and math.isnan(b):
            return 0.0, "", []
        return abs(float(a) - float(b)), path, []
    return 0.0, "", ([] if a == b else [f"{path}: {a!r} != {b!r}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="checkout (or export)")
    ap.add_argument("--candidate", type=Path, default=Path("."), help="checkout (or export)")
    ap.add_argument("--bank", action="append", help="bank under item_banks/ (repeat)")
    ap.add_argument("--tol", type=float, default=1e-12)
    ap.add_argument("--out", type=Path, default=Path("bench/results/compare_trees.json"))
    args = ap.parse_args(argv)
    banks = args.bank or ["agentdojo", "jailbreakbench"]
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for name in banks:
            bank_dir = (args.candidate / "item_banks" / name).resolve()
            docs = {}
            for label, tree in (("baseline", args.baseline), ("candidate", args.candidate)):
                work = Path(tmp) / name / label
                work.mkdir(parents=True)
                docs[label] = outputs(tree.resolve(), bank_dir, work)
            for cmd in ("simulate", "estimate", "calibrate", "health"):
                worst, where, bad = max_diff(docs["baseline"][cmd], docs["candidate"][cmd])
                ok = not bad and worst <= args.tol
                failed |= not ok
                rows.append(
                    {"bank": name, "command": cmd, "max_abs_diff": worst, "at": where, "other": bad}
                )
                status = "same" if ok else "DIFFERENT"
                print(f"{name:15s} {cmd:10s} max |diff| {worst:8.2g} at {where or '-'}  {status}")
                for line in bad[:5]:
                    print(f"    {line}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"baseline": str(args.baseline), "candidate": str(args.candidate), "tol": args.tol}
    args.out.write_text(json.dumps({**doc, "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
