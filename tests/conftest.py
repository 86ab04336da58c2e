"""Shared fixtures. Every random draw is seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.bank import ItemBank

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def make_bank(n_items: int = 40, k: int = 4, seed: int = 0, name: str = "synthetic") -> ItemBank:
    """A bank with known parameters: a ~ LogNormal(0, 0.3), ordered b around N(0, 1)."""
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    centre = r.normal(0.0, 1.0, n_items)
    if k == 2:
        b = centre[:, None]
    else:
        steps = np.sort(r.uniform(-1.5, 1.5, (n_items, k - 1)), axis=1)
        b = centre[:, None] + steps
    ids = [f"it{i:03d}" for i in range(n_items)]
    return ItemBank.from_params(name, ids, a, b)


@pytest.fixture
def bank4() -> ItemBank:
    return make_bank(40, 4)
