"""How often a guess at a CAT's next item names its sandbox group, and what it costs.

A live worker keeps one spare container per sandbox spec (a scenario family's
image): when an item claims its container, a spare starts for the spec the
worker expects next. With one session nothing is queued, so main readies the
spare of the *current* item's spec; this compares that with guesses the
session can make before the current item's result is in:

* ``own``: the current item's group (main);
* ``pending``: ``CatController.likely_next([current])``, the pick a batch would
  add with the current item in flight (what the session sends);
* ``likely_outcome``: the pick after the current item's most probable score
  (posterior predictive), on a copy of the controller;
* ``outcome_mode``: the group the picks after each of the K scores share the
  most predictive probability (K copies).

Sessions on the shell-safety bank (11 families of 4 variants) with the live
defaults (``max_info``, lapse 0.05, SE ≤ 0.3), simulees answering from the GRM
at true θ on a grid, ``--items`` items each (and to the stop). Each policy
runs the worker's spares as ``orchestrator/runner/sandbox.py`` does (an item
takes a spare of its spec or starts a fresh container; its claim starts a spare
of the guessed spec unless one is held) and reports the share of items that
find a spare and containers created per item. Also the CPU time of one guess
(``process_time``, median) on this bank and on a 10,000-item bank (K = 4).

    python bench/bench_next_guess.py [--items 8] [--seeds 5] [--out FILE]

Writes bench/results/bench_next_guess.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import header, write_json

from orchestrator.bank import ItemBank, load_bank
from orchestrator.cat.controller import CatController
from orchestrator.irt import sample_responses
from orchestrator.runner.sources import bank_sources

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("own", "pending", "likely_outcome", "outcome_mode")


def controller(bank: ItemBank) -> CatController:
    """The live defaults (``CatSettings``): max_info, SE ≤ 0.3, lapse 0.05."""
    return CatController(bank, "max_info", {"rule": "se", "args": {"se": 0.3}}, 0, lapse=0.05)


def predictive(ctl: CatController, item: str) -> np.ndarray:
    """P(score = k) for ``item`` under the current posterior (with the lapse)."""
    i = ctl.bank.index[item]
    k = int(ctl.bank.n_categories[i])
    probs = ctl.posterior.batch.model.category_probs(ctl.posterior.points, np.array([i]))
    p = np.asarray(probs).reshape(len(ctl.posterior.weights), -1)[:, :k]
    return ctl.posterior.weights @ (ctl.lapse / k + (1 - ctl.lapse) * p)


def pick_after(ctl: CatController, item: str, score: int) -> str | None:
    """The next pick had ``item`` scored ``score`` (on a copy), None at a stop."""
    what_if = copy.deepcopy(ctl)
    what_if.record(item, score)
    if what_if.should_stop().stop:
        return None
    return what_if.next_items(1)[0]


def guesses(ctl: CatController, item: str, group: dict[str, str]) -> dict[str, str | None]:
    pending = ctl.likely_next([item])
    p = predictive(ctl, item)
    after = [pick_after(ctl, item, s) for s in range(len(p))]
    mass: dict[str, float] = {}
    for s, nxt in enumerate(after):
        if nxt is not None:
            mass[group[nxt]] = mass.get(group[nxt], 0.0) + float(p[s])
    likely = after[int(np.argmax(p))]
    return {
        "own": group[item],
        "pending": group[pending[0]] if pending else None,
        "likely_outcome": group[likely] if likely else None,
        "outcome_mode": max(mass, key=mass.__getitem__) if mass else None,
    }


Guesses = list[dict[str, str | None]]


def session(
    bank: ItemBank, scores: np.ndarray, items: int, group: dict[str, str]
) -> tuple[list[str], Guesses]:
    """Items run in order, with each policy's guess made before each result."""
    ctl = controller(bank)
    ran: list[str] = []
    made: Guesses = []
    while len(ran) < items and not ctl.should_stop().stop:
        (item,) = ctl.next_items(1)
        made.append(guesses(ctl, item, group))
        ran.append(item)
        ctl.record(item, int(scores[bank.index[item]]))
    return ran, made


def spares(ran: list[str], made: Guesses, policy: str, group: dict[str, str]) -> tuple[int, int]:
    """(items that found a spare, containers created) for one worker's spares."""
    held: set[str] = set()
    hits = created = 0
    for item, guess in zip(ran, made, strict=True):
        if group[item] in held:
            held.remove(group[item])
            hits += 1
        else:
            created += 1
        following = guess[policy] or group[item]
        if following not in held:
            held.add(following)
            created += 1
    return hits, created


def cpu_ms(call: Callable[[], object], repeat: int = 30) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        call()
        times.append(time.process_time() - t)
    return 1e3 * statistics.median(times)


def timing(bank: ItemBank, steps: int = 10) -> dict[str, float]:
    """CPU ms of one ``next_items(1)`` and one ``likely_next([current])`` after ``steps``."""
    ctl = controller(bank)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        (item,) = ctl.next_items(1)
        ctl.record(item, int(rng.integers(0, int(bank.n_categories[bank.index[item]]))))
    (item,) = ctl.next_items(1)
    return {
        "next_items_ms": cpu_ms(lambda: ctl.next_items(1)),
        "likely_next_ms": cpu_ms(lambda: ctl.likely_next([item])),
        "likely_outcome_ms": cpu_ms(lambda: pick_after(ctl, item, 0)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_next_guess.json")
    args = p.parse_args(argv)
    load = os.getloadavg()
    bank = load_bank(REPO / "item_banks" / "shell-safety")
    group = {i: s.group() for i, s in bank_sources(bank).items()}
    thetas = np.linspace(-2.0, 2.0, 9)
    result = header("next_guess", "bench_next_guess.py", argv)
    result |= {"items": args.items, "seeds": args.seeds, "thetas": thetas.tolist()}
    for label, length in ((f"{args.items}_items", args.items), ("to_stop", 10**6)):
        hits = dict.fromkeys(POLICIES, 0)
        created = dict.fromkeys(POLICIES, 0)
        right = dict.fromkeys(POLICIES, 0)
        n_items = pairs = 0
        for theta in thetas:
            for seed in range(args.seeds):
                scores = sample_responses(
                    np.array([theta]), bank.a, bank.b, np.random.default_rng(seed)
                )[0]
                ran, made = session(bank, scores, length, group)
                n_items += len(ran)
                pairs += len(ran) - 1
                for policy in POLICIES:
                    h, c = spares(ran, made, policy, group)
                    hits[policy] += h
                    created[policy] += c
                    right[policy] += sum(
                        g[policy] == group[nxt] for g, nxt in zip(made, ran[1:], strict=False)
                    )
        rows = {
            policy: {
                "next_group_guessed": right[policy] / pairs,
                "items_finding_a_spare": hits[policy] / n_items,
                "containers_created_per_item": created[policy] / n_items,
            }
            for policy in POLICIES
        }
        result[label] = {"sessions": len(thetas) * args.seeds, "items": n_items, **rows}
        print(f"{label} ({n_items} items): next group guessed, items finding a spare, created")
        for policy, row in rows.items():
            print(f"  {policy:15s}", *(f"{v:.2f}" for v in row.values()))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_cat_step import make_bank

    result["cpu_ms"] = {"shell_safety": timing(bank), "10000_items": timing(make_bank(10_000))}
    print("CPU ms per call (median):", result["cpu_ms"])
    result["load_before_after"] = [load, os.getloadavg()]
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
