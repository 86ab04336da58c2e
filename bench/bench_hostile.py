"""Hostile personas, live: does any infrastructure fault become a score, any secret get
stored or printed, any container leak, any write get past the disk cap?

One `agentcat run` (a real CLI process) per persona of the simulated server
(orchestrator/sim/hostile.py): ``escape``, ``destroyer``, ``garbage``, ``slow``
(every scenario answer 8 s late, model_timeout_s 3) and ``echo`` (401s that quote
the key). Then it audits the session's journal, every file the run wrote
(inside zipped Inspect logs too), Inspect's trace logs, the captured terminal,
the engine's containers and the destroyer's transcript. Prints a table, writes
JSON (default ``bench/results/hostile.json``); ``tests/test_hostile.py`` runs it
small and asserts on it.

    nice .venv/bin/python bench/bench_hostile.py --items 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import zipfile_zstd  # noqa: F401  (Inspect's .eval members are zstd)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PERSONAS = ("escape", "destroyer", "garbage", "slow", "echo")
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"


def _files_holding(root: Path, secret: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        blobs = [p.read_bytes()]
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                blobs += [z.read(n) for n in z.namelist()]
        if any(secret in b for b in blobs):
            hits.append(str(p))
    return hits


def _eval_text(root: Path) -> str:
    parts = []
    for p in root.rglob("*.eval"):
        with zipfile.ZipFile(p) as z:
            parts += [z.read(n).decode("utf-8", "replace") for n in z.namelist()]
    return "\n".join(parts)


def _config(url: str, persona: str, runs: Path, items: int) -> dict[str, Any]:
    slow = persona == "slow"
    return {
        "bank": str(BANK),
        "environments": str(ENV),
        "runs_dir": str(runs),
        "session_id": persona,
        "workers": 2,
        "models": [
            {"model": f"openai-api/sim/{persona}", "base_url": url, "api_key_env": "SIM_API_KEY"}
        ],
        "cat": {"stopping": [{"rule": "se", "args": {"se": 0.3, "max_items": items}}]},
        "limits": {"message_limit": 14, "time_limit_s": 300},
        "retry": {
            "model_timeout_s": 3 if slow else 60,
            "model_max_retries": 1,
            "max_attempts": 2,
            "max_consecutive_errors": 3,
        },
    }


def run_persona(url: str, persona: str, root: Path, key: str, items: int) -> dict[str, Any]:
    from orchestrator.runner.sandbox import managed_containers
    from orchestrator.session.journal import Journal

    runs = root / persona
    runs.mkdir(parents=True)
    cfg = runs / "config.json"
    cfg.write_text(json.dumps(_config(url, persona, runs, items)))
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "--config", str(cfg), "--json"],
        cwd=REPO,
        env={**os.environ, "SIM_API_KEY": key, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    terminal = proc.stdout + proc.stderr
    j = Journal.open(runs / persona, readonly=True)
    try:
        rows, session = j.steps(), j.session()
    finally:
        j.close()
    from inspect_ai._util.trace import inspect_trace_dir

    traces = [p for p in inspect_trace_dir().glob("*.log") if p.stat().st_mtime >= t0]
    text = _eval_text(runs)
    scored = [r for r in rows if r.status == "done"]
    return {
        "persona": persona,
        "exit_code": proc.returncode,
        "status": session.status,
        "reason": (session.status_reason or "")[:160],
        "seconds": round(time.time() - t0, 1),
        "scored": len(scored),
        "categories": dict(Counter(str(r.score) for r in scored)),
        "faults": dict(Counter(r.error_kind for r in rows if r.error_kind)),
        "faults_scored": sum(1 for r in rows if r.error_kind and r.score is not None),
        "secrets_stored": len(_files_holding(runs, key.encode()))
        + sum(key.encode() in p.read_bytes() for p in traces),
        "secrets_printed": terminal.count(key),
        "leaked_containers": len(managed_containers({"agentcat.session": persona})),
        "no_space_left_in_transcript": text.count("No space left on device"),
        "redacted_in_journal": sum("[redacted]" in (r.error_message or "") for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=3, help="max items per persona")
    ap.add_argument("--personas", nargs="+", default=list(PERSONAS), choices=PERSONAS)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "hostile.json"))
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temp dir)")
    args = ap.parse_args()

    import tempfile

    from orchestrator.bank import load_bank
    from orchestrator.runner.images import build_images
    from orchestrator.sim.agent import SimAgent, scripts_for_bank
    from orchestrator.sim.server import FaultConfig, SimServer

    build_images(ENV)
    bank = load_bank(BANK)
    agent = SimAgent(bank, scripts_for_bank(bank, ENV), seed=0)
    key = "sk-bench-hostile-" + os.urandom(12).hex()
    root = Path(args.work or tempfile.mkdtemp(prefix="agentcat-hostile-"))
    load_start = os.getloadavg()
    results = []
    with SimServer(agent, api_key=key, faults=FaultConfig(slow_s=8)) as srv:
        for persona in args.personas:
            print(f"{persona} …", file=sys.stderr, flush=True)
            results.append(run_persona(srv.url, persona, root, key, args.items))
    doc = {
        "items_per_persona": args.items,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "personas": results,
        "totals": {
            k: sum(r[k] for r in results)
            for k in ("faults_scored", "secrets_stored", "secrets_printed", "leaked_containers")
        },
    }
    for r in results:
        print(
            f"{r['persona']:<10} {r['status']:<9} scored {r['scored']} {r['categories']} "
            f"faults {r['faults']} | faults scored {r['faults_scored']}, secrets stored "
            f"{r['secrets_stored']}, printed {r['secrets_printed']}, leaked containers "
            f"{r['leaked_containers']}, 'No space left' {r['no_space_left_in_transcript']}"
        )
    print(f"totals {doc['totals']}; load {doc['loadavg_start']} → {doc['loadavg_end']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
