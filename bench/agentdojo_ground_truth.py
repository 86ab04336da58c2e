"""Does the simulated agent's play of each AgentDojo item get the category it meant?

For every live item of a bank and every category, a simulated agent forced to that
category plays the item over real HTTP (``orchestrator.sim``), Inspect runs the real
inspect_evals task, and AgentDojo's own scorer grades it; the score map gives the category.
Where the scored category differs from the drawn one, the ground truth the agent replays
does not do what AgentDojo's check asks (or the check accepts less): a finding about the
benchmark, listed in ``bench/results/agentdojo_ground_truth.json``.

    nice .venv/bin/python bench/agentdojo_ground_truth.py [--bank item_banks/agentdojo] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.bank import load_bank  # noqa: E402
from orchestrator.runner.sources import bank_sources  # noqa: E402
from orchestrator.runner.sources.agentdojo import AgentDojoCase, load_player  # noqa: E402
from orchestrator.sim.agent import Persona, SimAgent  # noqa: E402
from orchestrator.sim.server import SimServer  # noqa: E402


class ForcedAgent(SimAgent):
    """Persona ``cat<k>`` always plays category k (the item's top category if K ≤ k)."""

    def category(self, persona: Persona, item_id: str) -> int:
        return min(int(persona.name[3:]), AgentDojoCase.parse(item_id).n_categories - 1)


async def check(bank_path: str, limit: int | None, log_dir: str) -> dict:
    from inspect_ai import eval_async
    from inspect_ai.util._display import init_display_type
    from inspect_evals.agentdojo import agentdojo

    init_display_type("none")
    bank = load_bank(bank_path)
    live = bank_sources(bank)
    ids = [i for i in bank.ids if i in live][:limit]
    personas = {f"cat{k}": Persona(f"cat{k}", 0.0) for k in range(3)}
    player = load_player({str(live[i].sample): i for i in ids})  # type: ignore[attr-defined]
    agent = ForcedAgent(bank, {}, personas, players=[player])
    rows = []
    t0 = time.perf_counter()
    with SimServer(agent) as srv:
        for k in range(3):
            cases = [AgentDojoCase.parse(i) for i in ids if AgentDojoCase.parse(i).n_categories > k]
            if not cases:
                continue
            tasks = [agentdojo(**c.source().task_args) for c in cases]
            logs = await eval_async(
                tasks,
                model=f"openai-api/sim/cat{k}",
                model_base_url=srv.url,
                model_args={"api_key": "unused", "responses_api": False},
                log_dir=log_dir,
                log_level="warning",
                max_tasks=8,
                fail_on_error=False,
            )
            for case, log in zip(cases, logs, strict=True):
                sample = log.samples[0] if log.samples else None
                if sample is None or not sample.scores:
                    rows.append(
                        {
                            "item": case.item_id,
                            "drawn": k,
                            "scored": None,
                            "error": str(log.error or (sample and sample.error))[:300],
                        }
                    )
                    continue
                value = next(iter(sample.scores.values())).value
                rows.append(
                    {
                        "item": case.item_id,
                        "drawn": k,
                        "value": value,
                        "scored": case.source().category(value),
                    }
                )
            print(f"category {k}: {len(cases)} items, {time.perf_counter() - t0:.0f} s", flush=True)
    differ = [r for r in rows if r["scored"] != r["drawn"]]
    return {
        "bank": bank_path,
        "items": len(ids),
        "runs": len(rows),
        "wall_s": round(time.perf_counter() - t0, 1),
        "agree": len(rows) - len(differ),
        "differ_by_drawn_scored": {
            f"{a}->{b}": n
            for (a, b), n in sorted(
                Counter((r["drawn"], r["scored"]) for r in differ).items(), key=str
            )
        },
        "differ": differ,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bank", default=str(REPO / "item_banks" / "agentdojo"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--log-dir", default="/tmp/agentdojo-ground-truth-logs")
    ap.add_argument(
        "--out", default=str(REPO / "bench" / "results" / "agentdojo_ground_truth.json")
    )
    args = ap.parse_args()
    os.environ.setdefault("INSPECT_DISPLAY", "none")
    result = asyncio.run(check(args.bank, args.limit, args.log_dir))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{result['runs']} runs of {result['items']} items: {result['agree']} scored as drawn; "
        f"differ {result['differ_by_drawn_scored']} -> {args.out}"
    )
    for r in result["differ"]:
        what = r.get("value", r.get("error"))
        print(f"  {r['item']}: drawn {r['drawn']}, scored {r['scored']} {what}")


if __name__ == "__main__":
    main()
