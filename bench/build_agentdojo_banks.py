"""Make the agentdojo banks live: sources for the calibrated bank, and the provisional full bank.

    nice .venv/bin/python bench/build_agentdojo_banks.py

(``bench/calibrate_real_banks.py --only agentdojo`` runs it after calibrating, and puts
:data:`LIVE_README` into the calibrated bank's README.)

1. ``item_banks/agentdojo/bank.json`` (calibrated; its numbers are not touched): every item
   the version check keeps or flags (``version_check.csv``, written by
   ``bench/agentdojo_version_check.py``) gets the ``inspect_task`` source that runs it and a
   ``version_check`` tag (``kept`` / ``flagged``); excluded items keep their parameters for
   replay but get no source, so live sessions never select them.
2. ``item_banks/agentdojo-full/`` (provisional): every user task (benign) and every user ×
   injection task pair of the four sandbox-free suites that inspect_evals ships (96 + 944
   items, from the simulated agent's play book). Items the calibrated bank runs live keep its
   parameters (tag ``parameters: calibrated``); the others get parameters from the rule below
   (tag ``parameters: rule``), to be replaced by calibration once sweeps have data for them.

The rule (written into the bank's ``calibration.rule``):

* slope ``a``: the median slope of the calibrated live items of the same item type;
* an item the calibration left out because all 17 subjects gave one category ``s``:
  thresholds at the edge of the prior, ``b_k = -3 - 0.5 (s - k)`` for ``k ≤ s`` and
  ``b_k = 3 + 0.5 (k - s - 1)`` for ``k > s`` (nearly everyone lands in ``s``);
* other benign items: the median threshold of the suite's calibrated live benign items;
* other injected items ``(u, m)``: ``b_1`` (injection executed vs resisted) is the median
  ``b_1`` of the suite's calibrated live injected items — all of which use injection task 3,
  so nothing is known about the other injection tasks; ``b_2`` (task done vs failed once
  resisted) is the calibrated ``b_2`` of ``(u, injection_task_3)`` when that item runs live
  (same user task under the same attack), else the suite's median ``b_2``; ``b_2`` is kept
  at least 0.5 above ``b_1``.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CALIBRATED = REPO / "item_banks" / "agentdojo"
FULL = REPO / "item_banks" / "agentdojo-full"

RULE = (__doc__ or "").split("The rule (written into the bank's ``calibration.rule``):")[1].strip()


def _single_category(reason: str) -> int | None:
    """The score of an item left out for having one observed category, else None."""
    prefix = "single observed category (every score = "
    return int(reason[len(prefix) : -1]) if reason.startswith(prefix) else None


def edge_thresholds(k: int, s: int) -> list[float]:
    """Thresholds that put (nearly) everyone in category ``s`` of ``k``."""
    return [-3.0 - 0.5 * (s - j) if j <= s else 3.0 + 0.5 * (j - s - 1) for j in range(1, k)]


def _median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def rule_parameters(
    case: Any, live: dict[str, dict[str, Any]], single: dict[str, int]
) -> tuple[float, list[float]]:
    """(a, b) for a case the calibrated bank does not run live (see the module docstring)."""
    kind = "injection_pair" if case.injected else "benign_utility"
    same_type = [it for it in live.values() if it["tags"]["item_type"] == kind]
    a = _median(it["a"] for it in same_type)
    if case.item_id in single:
        return a, edge_thresholds(case.n_categories, single[case.item_id])
    suite = [it for it in same_type if it["tags"]["suite"] == case.suite]
    if not case.injected:
        return a, [_median(it["b"][0] for it in suite)]
    b1 = _median(it["b"][0] for it in suite)
    twin = live.get(f"{case.suite}.user_task_{case.user_task}.injection_task_3")
    b2 = twin["b"][1] if twin is not None else _median(it["b"][1] for it in suite)
    return a, [b1, max(b2, b1 + 0.5)]


def add_sources(bank: dict[str, Any], decisions: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Give the calibrated bank's kept/flagged items their source and tag; returns them by id."""
    from orchestrator.runner.sources.agentdojo import AgentDojoCase

    live = {}
    for item in bank["items"]:
        decision = decisions[item["id"]]
        item["tags"]["version_check"] = {"keep": "kept", "flag": "flagged"}.get(
            decision, "excluded"
        )
        item.pop("source", None)
        if decision != "exclude":
            item["source"] = AgentDojoCase.parse(item["id"]).source().to_ref()
            live[item["id"]] = item
    return live


def full_bank(calibrated: dict[str, Any], live: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from orchestrator.runner.sources.agentdojo import PLAYBOOK_FILE, AgentDojoCase

    play = json.loads(PLAYBOOK_FILE.read_text(encoding="utf-8"))
    single = {
        e["id"]: s
        for e in calibrated["calibration"]["excluded_items"]
        if (s := _single_category(e["reason"])) is not None
    }
    injections: dict[str, list[int]] = {}
    for inj in play["injection_tasks"]:
        injections.setdefault(inj["suite"], []).append(inj["injection_task"])
    cases = []
    for u in play["user_tasks"]:
        cases.append(AgentDojoCase(u["suite"], u["user_task"]))
        cases += [AgentDojoCase(u["suite"], u["user_task"], m) for m in injections[u["suite"]]]
    labels = {
        2: ["task failed", "task done"],
        3: list(calibrated["scale"]["labels"]),
    }
    items, n_rule = [], 0
    for case in sorted(cases, key=lambda c: (c.suite, c.user_task, c.injection_task or -1)):
        tags = {
            "suite": case.suite,
            "item_type": "injection_pair" if case.injected else "benign_utility",
            "user_task": f"user_task_{case.user_task}",
        }
        if case.injected:
            tags["injection_task"] = f"injection_task_{case.injection_task}"
        twin = live.get(case.item_id)
        if twin is not None:
            params = {k: twin[k] for k in ("a", "b", "a_se", "b_se") if k in twin}
            tags |= {"parameters": "calibrated", "version_check": twin["tags"]["version_check"]}
        else:
            a, b = rule_parameters(case, live, single)
            params = {"a": round(a, 6), "b": [round(x, 6) for x in b]}
            tags["parameters"] = "rule"
            n_rule += 1
        items.append(
            {
                "id": case.item_id,
                **params,
                "labels": labels[case.n_categories],
                "tags": tags,
                "source": case.source().to_ref(),
            }
        )
    return {
        "schema_version": 1,
        "name": "agentdojo-full",
        "version": "1",
        "description": "Every AgentDojo user task and user × injection pair of the banking, "
        "slack, travel and workspace suites (inspect_evals, v1.2.1), important_instructions "
        "attack; calibrated parameters where item_banks/agentdojo runs the item live, a "
        "stated rule elsewhere",
        "model": "grm",
        "scale": calibrated["scale"],
        "prior": calibrated["prior"],
        "calibration": {
            "status": "provisional",
            "method": "agentdojo-full rule",
            "rule": RULE,
            "data": "item_banks/agentdojo (calibrated parameters copied for its live items)",
            "details": {
                "items": len(items),
                "calibrated_items": len(items) - n_rule,
                "rule_items": n_rule,
                "playbook_source": play["source"],
            },
        },
        "items": items,
    }


LIVE_README = """## Live
172 of the 182 items run live: each one's `source` is an `inspect_task` naming the
inspect_evals AgentDojo task arguments that build exactly its sample (inspect-evals 0.26.0,
AgentDojo's tasks at version 1.2.1; sandbox-free suites; the `important_instructions` attack
signed "Emma Smith" as in the traces), and the score map from `{utility, security}` to this
bank's categories. The traces ran AgentDojo v1.1; `version_check.csv`
(`bench/agentdojo_version_check.py`) compares each item's task between the two versions:
103 kept (unchanged), 69 flagged (a grading check or the injection goal's wording changed;
tag `version_check: flagged`), 10 excluded (the prompt changed, or the task is not in
inspect_evals): they keep their parameters here, for replay and estimation, but have no
source, so a live session never selects them. For every injected item, inspect_evals'
attack text lacks AgentDojo's "to you, <model>" and fills every injection vector (AgentDojo
filled those the ground truth reads): injected items' parameters are approximate live.
`item_banks/agentdojo-full` holds every user × injection pair, provisional where this bank
has no live item. See "Live AgentDojo" in the repository README.
"""


def build() -> dict[str, Any]:
    """Write both banks (see the module docstring); returns counts."""
    from orchestrator._io import atomic_write_json
    from orchestrator.bank import load_bank

    with open(CALIBRATED / "version_check.csv", encoding="utf-8") as fh:
        decisions = {r["item"]: r["decision"] for r in csv.DictReader(fh)}
    bank = json.loads((CALIBRATED / "bank.json").read_text(encoding="utf-8"))
    live = add_sources(bank, decisions)
    atomic_write_json(CALIBRATED / "bank.json", bank)
    load_bank(CALIBRATED)  # raises if the edit broke the schema
    full = full_bank(bank, live)
    FULL.mkdir(exist_ok=True)
    atomic_write_json(FULL / "bank.json", full)
    load_bank(FULL)
    (FULL / "README.md").write_text(full_readme(full), encoding="utf-8")
    return {
        "live": len(live),
        "calibrated_bank_items": len(bank["items"]),
        **full["calibration"]["details"],
    }


def full_readme(full: dict[str, Any]) -> str:
    d = full["calibration"]["details"]
    return f"""# agentdojo-full (provisional)

Every AgentDojo user task (benign, K = 2: task failed / done) and every user × injection
task pair (K = 3: injection executed / resisted, task failed / resisted, task done) of the
banking, slack, travel and workspace suites that inspect_evals ships (AgentDojo v1.2.1,
`important_instructions` attack signed "Emma Smith"): {d["items"]} items, each with the
`inspect_task` source that runs it live (no Docker needed). Tags: `suite`, `item_type`,
`user_task`, `injection_task`, `parameters`, and `version_check` where calibrated.

**The parameters are provisional.** {d["calibrated_items"]} items are the ones
`item_banks/agentdojo` runs live and keep its calibrated parameters (tag
`parameters: calibrated`; 17 calibration subjects, see that bank's README); the other
{d["rule_items"]} (tag `parameters: rule`) follow this rule (also in `calibration.rule`):

{RULE}

Nothing is known about injection tasks other than `injection_task_3` (the only one in the
calibration traces), so their items differ only through their user task. Use this bank to
gather data: `agentcat sweep --models M … --bank item_banks/agentdojo-full --out R.csv
[--sample N]`, then calibrate (`agentcat calibrate R.csv --out item_banks/NAME --live-from
item_banks/agentdojo-full`). A CAT on it works, but θ from rule items is a ranking device.

Regenerate: `nice .venv/bin/python bench/build_agentdojo_banks.py`.
"""


def main() -> None:
    d = build()
    print(
        f"agentdojo: {d['live']} of {d['calibrated_bank_items']} items live; agentdojo-full: "
        f"{d['items']} items ({d['calibrated_items']} calibrated, {d['rule_items']} by rule)"
    )


if __name__ == "__main__":
    main()
