"""Replay with a prior per subject (collateral information) = the live controller with it."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.bank import ItemBank, Prior
from orchestrator.cat import CatController, make_selection
from orchestrator.data import Responses
from orchestrator.irt import sample_responses
from orchestrator.sim import replay, subject_rng
from tests.conftest import make_bank


def _with_prior(bank: ItemBank, mean: float, sd: float) -> ItemBank:
    return ItemBank.from_params(bank.name, bank.ids, bank.a, bank.b, prior=Prior(mean=mean, sd=sd))


@pytest.mark.parametrize("spec", ["max_info", "variance_reduction"])
def test_per_subject_prior_equals_a_controller_with_that_prior(spec: str) -> None:
    bank = make_bank(30, 3, seed=4)
    r = np.random.default_rng(9)
    n = 8
    theta = r.normal(0, 1, n)
    x = sample_responses(theta, bank.a, bank.b, r)
    triples = [(f"s{s}", bank.ids[j], int(x[s, j])) for s in range(n) for j in range(len(bank))]
    aligned = Responses.from_triples(triples).for_bank(bank)
    means = r.normal(0, 1, n)
    sds = r.uniform(0.3, 1.5, n)
    res = replay(
        bank, aligned, {"s": make_selection(spec)}, max_items=10, seed=2, prior=(means, sds)
    )
    plain = replay(bank, aligned, {"s": make_selection(spec)}, max_items=10, seed=2)
    traj = res.strategies[0]
    # before any item: the prior itself (up to the grid's quadrature and its ±6 ends)
    assert np.allclose(traj.theta[0, :, 0], means, atol=1e-3)
    assert np.allclose(traj.se[0, :, 0], sds, rtol=0.02)
    # the full-data reference keeps the bank's prior
    assert np.array_equal(res.theta_full, plain.theta_full)
    for s in range(n):
        ctl = CatController(
            _with_prior(bank, means[s], sds[s]), selection=spec, rng=subject_rng(2, s)
        )
        for t in range(10):
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[s, bank.index[item]]))
            assert bank.index[item] == traj.items[s, t]
            assert ctl.theta[0] == pytest.approx(traj.theta[t + 1, s, 0], abs=1e-12)
            assert ctl.se[0] == pytest.approx(traj.se[t + 1, s, 0], abs=1e-12)


def test_prior_of_the_wrong_length_is_refused() -> None:
    bank = make_bank(10, 2, seed=1)
    aligned = Responses.from_triples([("a", bank.ids[0], 1), ("b", bank.ids[1], 0)]).for_bank(bank)
    with pytest.raises(ValueError):
        replay(bank, aligned, {"s": make_selection("max_info")}, prior=(np.zeros(3), np.ones(3)))
