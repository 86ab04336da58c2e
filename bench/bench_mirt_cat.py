"""2-D CAT vs random vs one 1-D CAT per dimension, on simulated two-dimensional data.

A bank of ``--items`` K = 4 items on two dimensions (``utility``,
``security``; latent correlation ``--rho``) and ``--subjects`` simulees drawn
from that prior answer every item. Two bank structures:

* ``simple`` — every item loads on one dimension (half each; ``item_type``
  benign / injected says which);
* ``mixed`` — the same, but every fifth item also loads on the other
  dimension (a second slope of 0.3–0.8), as real agentic items do.

Each strategy is replayed to ``--max-items`` items with the replay the CLI
uses (``agentcat simulate``; subject s draws from ``default_rng([seed, s])``):
the 2-D rules ``d_optimality`` (= ``max_info``), ``a_optimality`` aimed at
``security`` (the target dimension), ``kl``, and ``random`` order; and the
content-restricted alternative, one 1-D CAT per dimension on that dimension's
items (``simulate --per-dimension item_type``), which ignores cross-loadings.
Reported against the *true* θ: RMSE per dimension after 10 and 20 items, and
the items each simulee needs until the SE of the target dimension is ≤ 0.3
(median, and the share that get there within ``--max-items``). For a fair
total budget, the 1-D CATs are also read at n/2 items each (n items in all).

Numbers, not asserts. Writes ``bench/results/mirt_cat.json``.

    nice python bench/bench_mirt_cat.py [--items 200] [--subjects 1000] [--max-items 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _results import header, write_json

from orchestrator.bank import ItemBank, Prior
from orchestrator.cat import make_selection
from orchestrator.data import Responses
from orchestrator.sim import replay
from orchestrator.sim.by_dimension import dimension_banks

RESULTS = Path(__file__).resolve().parent / "results" / "mirt_cat.json"
DIMS = ("utility", "security")
TARGET = 1  # security
AT = (10, 20)


def make_bank(n_items: int, rho: float, mixed: bool, seed: int) -> ItemBank:
    r = np.random.default_rng(seed)
    main = np.arange(n_items) % 2
    slopes = np.zeros((n_items, 2))
    slopes[np.arange(n_items), main] = np.exp(r.normal(0.2, 0.3, n_items))
    if mixed:
        cross = np.arange(0, n_items, 5)
        slopes[cross, 1 - main[cross]] = r.uniform(0.3, 0.8, cross.size)
    b = r.normal(0.0, 1.0, n_items)[:, None] + np.sort(r.uniform(-1.5, 1.5, (n_items, 3)), axis=1)
    return ItemBank.from_params(
        f"sim2d-{'mixed' if mixed else 'simple'}",
        [f"i{j:04d}" for j in range(n_items)],
        slopes,
        b,
        dimensions=list(DIMS),
        prior=Prior(correlation=[[1.0, rho], [rho, 1.0]]),
        tags=[{"item_type": ("benign", "injected")[m]} for m in main],
    )


def responses(bank: ItemBank, theta: np.ndarray, seed: int) -> Responses:
    x = bank.model.sample(theta, np.random.default_rng(seed))
    s, j = np.indices(x.shape)
    triples = zip(
        (f"s{k:05d}" for k in s.ravel()), (bank.ids[k] for k in j.ravel()), x.ravel(), strict=True
    )
    return Responses.from_triples(triples)


def rmse(theta: np.ndarray, truth: np.ndarray) -> list[float]:
    return np.sqrt(((theta - truth) ** 2).mean(axis=0)).round(4).tolist()


def items_to_target(by_dim: np.ndarray, d: int, max_items: int) -> dict[str, Any]:
    hit = by_dim[:, d]
    reached = hit >= 0
    censored = np.where(reached, hit, max_items + 1)  # never: counts as beyond the test
    return {
        "reached_share": round(float(reached.mean()), 4),
        "median": float(np.median(censored)) if reached.mean() >= 0.5 else None,
        "mean_of_reached": round(float(hit[reached].mean()), 2) if reached.any() else None,
    }


def scenario(args: argparse.Namespace, mixed: bool) -> dict[str, Any]:
    bank = make_bank(args.items, args.rho, mixed, args.seed)
    r = np.random.default_rng(args.seed + 1)
    truth = r.multivariate_normal(bank.prior_mean, bank.prior_cov, args.subjects)
    resp = responses(bank, truth, args.seed + 2)
    rules = {
        "d_optimality": make_selection("d_optimality"),
        "a_optimality[security]": make_selection(
            {"rule": "a_optimality", "args": {"dimension": "security"}}
        ),
        "kl": make_selection("kl"),
        "random": make_selection("random"),
    }
    start = time.perf_counter()
    res = replay(bank, resp.for_bank(bank), rules, max_items=args.max_items, seed=args.seed)
    out: dict[str, Any] = {
        "bank": bank.name,
        "structure": "mixed" if mixed else "simple",
        "strategies": {},
    }
    for strat in res.strategies:
        out["strategies"][strat.name] = {
            "rmse": {str(t): rmse(strat.theta[t], truth) for t in AT},
            "items_to_se_target": items_to_target(
                strat.items_to_se_by_dimension, TARGET, args.max_items
            ),
            "items_to_se_both": items_to_target(strat.items_to_se[:, None], 0, args.max_items),
            "wall_time_s": round(strat.wall_time_s, 2),
        }
    # the content-restricted alternative: a 1-D CAT per dimension on its items
    one_d: dict[str, Any] = {}
    for d, (name, (value, sub, cross)) in enumerate(dimension_banks(bank, "item_type").items()):
        own = resp.drop_items(set(resp.items) - sub.index.keys())
        half = max(AT) // 2
        r1 = replay(
            sub,
            own.for_bank(sub),
            {"cat": make_selection("max_info"), "random": make_selection("random")},
            max_items=args.max_items,
            seed=args.seed,
        )
        one_d[name] = {
            "tag_value": value,
            "n_items": len(sub),
            "cross_loading": round(cross, 3),
            "strategies": {
                s.name: {
                    "rmse": {str(t): rmse(s.theta[t], truth[:, [d]])[0] for t in AT},
                    f"rmse_at_{half // 2}_and_{half}": [
                        rmse(s.theta[t], truth[:, [d]])[0] for t in (half // 2, half)
                    ],
                    "items_to_se": items_to_target(s.items_to_se_by_dimension, 0, args.max_items),
                }
                for s in r1.strategies
            },
        }
    out["one_dimensional_per_dimension"] = one_d
    out["wall_time_s"] = round(time.perf_counter() - start, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--subjects", type=int, default=1000)
    p.add_argument("--max-items", type=int, default=40)
    p.add_argument("--rho", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    rows = [scenario(args, mixed) for mixed in (False, True)]
    for row in rows:
        print(f"\n{row['bank']} ({row['wall_time_s']} s): RMSE to the true θ (utility, security)")
        print(f"{'strategy':>26} {'@10':>16} {'@20':>16}  items to SE ≤ 0.3 on security")
        for name, s in row["strategies"].items():
            hit = s["items_to_se_target"]
            print(
                f"{name:>26} {s['rmse']['10']!s:>16} {s['rmse']['20']!s:>16}  "
                f"median {hit['median']}, reached {hit['reached_share']:.0%}"
            )
        for dim, entry in row["one_dimensional_per_dimension"].items():
            for name, s in entry["strategies"].items():
                hit = s["items_to_se"]
                label = f"1-D {name} on {dim} items"
                print(
                    f"{label:>26} {s['rmse']['10']:>16} {s['rmse']['20']:>16}  "
                    f"median {hit['median']}, reached {hit['reached_share']:.0%} "
                    f"(at 5 and 10 items: {s['rmse_at_5_and_10']})"
                )
    doc = {
        **header("mirt_cat", "bench_mirt_cat.py", argv),
        "settings": {
            "items": args.items,
            "subjects": args.subjects,
            "max_items": args.max_items,
            "rho": args.rho,
            "seed": args.seed,
            "target_dimension": DIMS[TARGET],
            "se_target": 0.3,
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
