"""Banks and drivers shared by the CAT tests."""

from __future__ import annotations

import numpy as np

from orchestrator.bank import Cost, ItemBank, Prior
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


DIMENSIONS = ("utility", "security")


def two_dim_bank(
    n_items: int = 60, seed: int = 0, correlation: float = 0.5, cross: bool = True
) -> ItemBank:
    """A 2-D bank: half the items load on ``utility``, half on ``security`` (``item_type``
    benign / injected), every third also on the other dimension when ``cross``; K in
    {2, 3, 4}, ``family`` tags and costs as :func:`tagged_bank`; prior correlation given."""
    r = np.random.default_rng(seed)
    slopes = np.zeros((n_items, 2))
    main = np.arange(n_items) % 2
    slopes[np.arange(n_items), main] = np.exp(r.normal(0.2, 0.3, n_items))
    if cross:
        other = np.arange(0, n_items, 3)
        slopes[other, 1 - main[other]] = r.uniform(0.2, 0.6, other.size)
    k = r.integers(2, 5, n_items)
    padded = np.full((n_items, 3), np.nan)
    centre = r.normal(0.0, 1.0, n_items)
    for i in range(n_items):
        padded[i, : k[i] - 1] = centre[i] + np.sort(r.uniform(-1.5, 1.5, k[i] - 1))
    tags = [
        {"family": FAMILIES[i % 3], "item_type": ("benign", "injected")[main[i]]}
        for i in range(n_items)
    ]
    costs = [
        None if i % 7 == 0 else Cost(seconds=float(r.uniform(10, 100))) for i in range(n_items)
    ]
    return ItemBank.from_params(
        "two",
        [f"it{i:03d}" for i in range(n_items)],
        slopes,
        padded,
        tags=tags,
        costs=costs,
        dimensions=list(DIMENSIONS),
        prior=Prior(
            mean=[0.0, 0.2], sd=[1.0, 1.2], correlation=[[1, correlation], [correlation, 1]]
        ),
    )


def true_scores_2d(bank: ItemBank, theta: tuple[float, float], seed: int = 0) -> np.ndarray:
    """One simulated subject's score on every item of a 2-D bank."""
    return bank.model.sample(np.array([theta], dtype=float), np.random.default_rng(seed))[0]
