"""θ recovery on live AgentDojo, and items to SE 0.3 with CAT vs random selection.

Simulated agents of known θ (personas θ ∈ {−1, 0, 1}, two seeds of their outcome draws)
run live adaptive sessions on ``item_banks/agentdojo``: every step is a real Inspect run
of an inspect_evals AgentDojo sample, played through the real tools and graded by
AgentDojo's scorer. Each persona is run to the SE rule (0.3) twice: items chosen by
maximum information (CAT) and at random. Reports, per run, θ̂, SE, items and the error
θ̂ − θ; RMSE per selection rule; and the items each needed.

    nice .venv/bin/python bench/agentdojo_live.py [--max-items 80] [--workers 2]

Writes bench/results/agentdojo_live.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator import api  # noqa: E402
from orchestrator.bank import load_bank  # noqa: E402
from orchestrator.sim.agent import SimAgent, players_for_bank  # noqa: E402
from orchestrator.sim.server import SimServer  # noqa: E402

BANK = REPO / "item_banks" / "agentdojo"
THETAS = (-1.0, 0.0, 1.0)
SEEDS = (0, 1)
SELECTION = {"cat": {"rule": "max_info"}, "random": {"rule": "random"}}


def run_all(max_items: int, workers: int, runs_root: Path) -> list[dict]:
    bank = load_bank(BANK)
    players = players_for_bank(bank)
    rows = []
    for seed in SEEDS:
        agent = SimAgent(bank, {}, seed=seed, players=players)
        with SimServer(agent, api_key="bench") as srv:
            for strategy, selection in SELECTION.items():
                t0 = time.perf_counter()
                summaries = api.run(
                    None,
                    bank=str(BANK),
                    models=[
                        {
                            "model": f"openai-api/sim/theta_{t}",
                            "name": f"theta_{t}",
                            "base_url": srv.url,
                            "api_key_env": "SIM_API_KEY",
                        }
                        for t in THETAS
                    ],
                    cat={"selection": selection, "seed": seed},
                    se=0.3,
                    max_items=max_items,
                    runs_dir=str(runs_root / f"{strategy}-{seed}"),
                    workers=workers,
                )
                wall = time.perf_counter() - t0
                for s, theta in zip(summaries, THETAS, strict=True):
                    walls = [r["wall_s"] for r in s["trajectory"]]
                    rows.append(
                        {
                            "strategy": strategy,
                            "seed": seed,
                            "theta": theta,
                            "theta_hat": s["theta"],
                            "se": s["se"],
                            "n_items": s["n_items"],
                            "reached_se": s["se"] <= 0.3,
                            "error": s["theta"] - theta,
                            "errored_runs": s["runs"]["errored"],
                            "median_item_wall_s": statistics.median(walls),
                        }
                    )
                    print(
                        f"{strategy:6s} seed {seed} θ={theta:+.1f}: θ̂={s['theta']:+.2f} "
                        f"SE={s['se']:.2f} items={s['n_items']:3d} "
                        f"error={s['theta'] - theta:+.2f}",
                        flush=True,
                    )
                print(f"  ({strategy}, seed {seed}: {wall:.0f} s for 3 sessions)", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for strategy in SELECTION:
        mine = [r for r in rows if r["strategy"] == strategy]
        errors = [r["error"] for r in mine]
        out[strategy] = {
            "rmse": statistics.fmean(e * e for e in errors) ** 0.5,
            "mean_error": statistics.fmean(errors),
            "items_median": statistics.median(r["n_items"] for r in mine),
            "items_mean": statistics.fmean(r["n_items"] for r in mine),
            "reached_se": sum(r["reached_se"] for r in mine),
            "runs": len(mine),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-items", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ["SIM_API_KEY"] = "bench"
    with TemporaryDirectory() as tmp:
        rows = run_all(args.max_items, args.workers, Path(tmp))
    summary = summarise(rows)
    for strategy, s in summary.items():
        print(
            f"{strategy:6s}: RMSE {s['rmse']:.2f}, mean error {s['mean_error']:+.2f}, items to "
            f"SE 0.3 median {s['items_median']:.0f} (mean {s['items_mean']:.1f}), reached "
            f"{s['reached_se']}/{s['runs']}"
        )
    out = REPO / "bench" / "results" / "agentdojo_live.json"
    out.write_text(
        json.dumps({"max_items": args.max_items, "runs": rows, "summary": summary}, indent=1) + "\n"
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
