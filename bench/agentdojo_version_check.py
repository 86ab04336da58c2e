"""Check item by item that inspect_evals' AgentDojo tasks are the ones the agentdojo bank was
calibrated on; write ``item_banks/agentdojo/version_check.csv``.

The calibration traces (``../shared/data/agentdojo``, 17 agent pipelines) ran AgentDojo's
benchmark version 1.1: their travel prompts are the ones v1.1 rewrote, banking user task 15
still names the landlord IBAN that v1.1.1 changed, and the injection goals read as before
v1.2 (banking's goal without "If details of transactions are underspecified…", workspace's
with "received from by"). inspect_evals ships version 1.2.1 (its prompts, goals and
ground truths equal AgentDojo's v1.2.1 ones; checked below). Every task AgentDojo updated
between the two versions is read from the ``agentdojo`` package, which keeps each version's
definitions, and compared field by field:

* **exclude** — the task is not in inspect_evals, or the user's prompt changed (the agent
  is asked something else): the bank keeps the item's parameters but gives it no live source;
* **flag** — a grading check (utility, or the injection task's security check / goal wording)
  changed; the item runs live, tagged ``version_check: flagged``;
* **keep** — nothing that the agent sees or that grades it changed (a ground-truth-only
  change does not count: ground truths grade nothing).

Needs both packages in one environment (the ``agentdojo`` package is not a dependency of
agentcat)::

    python -m venv /tmp/adv && /tmp/adv/bin/pip install agentdojo==0.1.35 \
        'inspect-evals[agentdojo]==0.26.0' inspect-ai==0.3.285
    /tmp/adv/bin/python bench/agentdojo_version_check.py
"""

from __future__ import annotations

import argparse
import csv
import inspect
import itertools
import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRACES = "v1.1"
LIVE = "v1.2.1"
VERSIONS = ["v1", "v1.1", "v1.1.1", "v1.1.2", "v1.2", "v1.2.1"]
SUITES = ("banking", "slack", "travel", "workspace")


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def _calls(calls: list[Any], args_attr: str) -> list[tuple[str, dict[str, str]]]:
    return [(c.function, {k: repr(v) for k, v in getattr(c, args_attr).items()}) for c in calls]


def _source(fn: Any) -> str:
    return textwrap.dedent(inspect.getsource(fn))


def agentdojo_definitions() -> dict[str, dict[str, dict[str, Any]]]:
    """task key → version → {prompt|goal, check, gt} from the ``agentdojo`` package."""
    from agentdojo.task_suite.load_suites import get_suites

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for v in VERSIONS:
        suites = get_suites(v)
        for name in SUITES:
            suite = suites[name]
            env = suite.load_and_inject_default_environment({})
            for tid, t in suite.user_tasks.items():
                out.setdefault(f"{name}.{tid}", {})[v] = {
                    "text": _norm(t.PROMPT),
                    "check": _source(type(t).utility),
                    "gt": _calls(t.ground_truth(env), "args"),
                }
            for tid, t in suite.injection_tasks.items():
                out.setdefault(f"{name}.{tid}", {})[v] = {
                    "text": _norm(t.GOAL),
                    "check": _source(type(t).security),
                    "gt": _calls(t.ground_truth(env), "args"),
                }
    return out


def inspect_evals_definitions() -> dict[str, dict[str, Any]]:
    """task key → {prompt|goal, gt} as inspect_evals ships them."""
    from inspect_evals.agentdojo.dataset import TASK_SUITES

    out: dict[str, dict[str, Any]] = {}
    for name in SUITES:
        suite = TASK_SUITES[name]
        env = suite.load_and_inject_default_environment({})
        for tid, t in suite.user_tasks.items():
            out[f"{name}.user_task_{tid}"] = {
                "text": _norm(t.PROMPT),
                "gt": _calls(t.ground_truth(env), "arguments"),
            }
        for tid, t in suite.injection_tasks.items():
            out[f"{name}.injection_task_{tid}"] = {
                "text": _norm(t.GOAL),
                "gt": _calls(t.ground_truth(env), "arguments"),
            }
    return out


def changes(per_version: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(version, field) for every field that changed after the traces' version up to LIVE."""
    out = []
    span = VERSIONS[VERSIONS.index(TRACES) : VERSIONS.index(LIVE) + 1]
    for before, after in itertools.pairwise(span):
        for field in ("text", "check", "gt"):
            if per_version[before][field] != per_version[after][field]:
                out.append((after, field))
    return out


def _words(kind: str, found: list[tuple[str, str]]) -> list[str]:
    names = {
        "text": "prompt" if kind == "user" else "goal",
        "check": "utility check" if kind == "user" else "security check",
        "gt": "ground truth",
    }
    return [f"{v}: {names[f]}" for v, f in found]


def decide(
    item: str, defs: dict[str, dict[str, dict[str, Any]]], live: dict[str, dict[str, Any]]
) -> dict[str, str]:
    suite, rest = item.split(".", 1)
    user = rest.split(".")[0]
    injection = rest.split(".")[1] if "." in rest else None
    user_key = f"{suite}.{user}"
    row = {"item": item, "item_type": "injection_pair" if injection else "benign_utility"}
    if user_key not in live:
        return row | {
            "decision": "exclude",
            "changes": "",
            "reason": "user task not in inspect_evals' suite (AgentDojo has it; inspect_evals "
            "uses it only inside a combined task)",
        }
    user_changes = changes(defs[user_key])
    inj_changes = changes(defs[f"{suite}.{injection}"]) if injection else []
    described = _words("user", user_changes) + [
        f"{injection} {w}" for w in _words("injection", inj_changes)
    ]
    fields = {f for _, f in user_changes}
    inj_fields = {f for _, f in inj_changes}
    if "text" in fields:
        decision, reason = "exclude", "the user's prompt changed: the agent is asked something else"
    elif "check" in fields or inj_fields & {"text", "check"}:
        parts = []
        if "check" in fields:
            parts.append("the user task's utility check changed")
        if "text" in inj_fields:
            parts.append("the injection goal's wording changed")
        if "check" in inj_fields:
            parts.append("the injection's security check changed")
        decision, reason = "flag", "; ".join(parts) + " (same task, grading or attack differs)"
    elif user_changes or inj_changes:
        decision, reason = "keep", "only the ground truth changed (it grades nothing)"
    else:
        decision, reason = "keep", "unchanged from v1.1 to v1.2.1"
    return row | {"decision": decision, "changes": "; ".join(described), "reason": reason}


def live_matches_v121(defs: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Where inspect_evals differs from AgentDojo v1.2.1 (prompts, goals, ground truths)."""
    diffs = []
    for key, mine in sorted(live.items()):
        theirs = defs[key][LIVE]
        if mine["text"] != theirs["text"]:
            diffs.append(f"{key}: text differs")
        if mine["gt"] != theirs["gt"] and theirs["gt"]:
            diffs.append(f"{key}: ground truth differs")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bank", default=str(REPO / "item_banks" / "agentdojo" / "bank.json"))
    ap.add_argument("--out", default=str(REPO / "item_banks" / "agentdojo" / "version_check.csv"))
    args = ap.parse_args()
    defs = agentdojo_definitions()
    live = inspect_evals_definitions()
    print("inspect_evals vs AgentDojo v1.2.1:", live_matches_v121(defs, live) or "identical")
    items = [it["id"] for it in json.loads(Path(args.bank).read_text())["items"]]
    rows = [decide(i, defs, live) for i in items]
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["item", "item_type", "decision", "changes", "reason"])
        w.writeheader()
        w.writerows(rows)
    counts = Counter((r["decision"], r["item_type"]) for r in rows)
    print(f"{len(rows)} items -> {args.out}")
    for d in ("keep", "flag", "exclude"):
        print(
            f"  {d}: {sum(n for (dd, _), n in counts.items() if dd == d)} "
            f"(benign {counts[(d, 'benign_utility')]}, injected {counts[(d, 'injection_pair')]})"
        )
    print("\n| item | decision | what changed (version: field) | reason |\n|---|---|---|---|")
    for r in rows:
        if r["decision"] != "keep":
            print(f"| {r['item']} | {r['decision']} | {r['changes']} | {r['reason']} |")


if __name__ == "__main__":
    main()
