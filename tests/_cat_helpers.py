"""Banks and drivers shared by the CAT tests."""

from __future__ import annotations

import numpy as np

from orchestrator.bank import Cost, ItemBank
from orchestrator.cat import CatController
from orchestrator.irt import sample_responses

FAMILIES = ("fs", "net", "proc")


def tagged_bank(n_items: int = 60, seed: int = 0, mixed_k: bool = True) -> ItemBank:
    """Known parameters, ``family`` tags, costs (some unknown), K in {2, 3, 4} when ``mixed_k``."""
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    centre = r.normal(0.0, 1.0, n_items)
    k = r.integers(2, 5, n_items) if mixed_k else np.full(n_items, 4)
    b = [
        list(centre[i] + np.sort(r.uniform(-1.5, 1.5, k[i] - 1))) if k[i] > 2 else [centre[i]]
        for i in range(n_items)
    ]
    tags = [{"family": FAMILIES[i % 3]} for i in range(n_items)]
    costs = [
        None if i % 7 == 0 else Cost(seconds=float(r.uniform(10, 100))) for i in range(n_items)
    ]
    ids = [f"it{i:03d}" for i in range(n_items)]
    padded = np.full((n_items, 3), np.nan)
    for i, row in enumerate(b):
        padded[i, : len(row)] = row
    return ItemBank.from_params("tagged", ids, a, padded, tags=tags, costs=costs)


def true_scores(bank: ItemBank, theta: float, seed: int = 0) -> np.ndarray:
    """One simulated subject's score on every item."""
    return sample_responses(np.array([theta]), bank.a, bank.b, np.random.default_rng(seed))[0]


def run(ctl: CatController, scores: np.ndarray, steps: int, k: int = 1) -> list[str]:
    """Administer ``steps`` rounds of ``next_items(k)``, recording the given scores."""
    out: list[str] = []
    for _ in range(steps):
        for item in ctl.next_items(k):
            ctl.record(item, int(scores[ctl.bank.index[item]]), cost_seconds=1.0, tokens=10)
            out.append(item)
    return out
