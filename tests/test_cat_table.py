"""Tabulated information: its error bound holds, and selection from it is the exact rule's."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.bank import ItemBank
from orchestrator.cat import CatController, make_selection
from orchestrator.cat._table import InformationTable
from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.model import GradedResponseModel
from orchestrator.sim import replay
from tests._cat_helpers import tagged_bank, true_scores
from tests.test_replay import _sparse_responses


def _steep(bank: ItemBank, every: int = 5, factor: float = 12.0) -> ItemBank:
    """The same bank with every ``every``-th slope multiplied (too steep for the table)."""
    a = bank.a.copy()
    a[::every] *= factor
    costs = [it.cost for it in bank.spec.items]
    tags = [dict(it.tags) for it in bank.spec.items]
    return ItemBank.from_params("steep", bank.ids, a, bank.b, tags=tags, costs=costs)


@pytest.mark.parametrize("steep", [False, True])
def test_interpolation_error_stays_within_the_measured_bound(steep: bool) -> None:
    bank = tagged_bank(60, seed=4)
    bank = _steep(bank) if steep else bank
    table = InformationTable(bank.model, -6.0, 6.0, max_bytes=60 * 4 * 200)  # a coarse grid
    theta = np.linspace(-6.0, 6.0, 20 * len(table.theta))  # 20 points per interval
    error = np.abs(table.interpolate(theta) - bank.model.information(theta[:, None]))
    bounded = np.setdiff1d(np.arange(len(bank)), table.steep)
    assert error[:, bounded].max() <= table.eps
    assert error[:, bounded].max() > table.eps / 10  # the bound is not vacuous
    assert (table.steep.size > 0) == steep


def _both(monkeypatch: pytest.MonkeyPatch, make: object) -> tuple[object, object]:
    """``make()`` with every bank tabulated, then with none (fresh banks each time)."""
    monkeypatch.setattr("orchestrator.cat.state.TABLE_MIN_ITEMS", 1)
    tabulated = make()  # type: ignore[operator]
    monkeypatch.setattr("orchestrator.cat.state.TABLE_MIN_ITEMS", 10**9)
    return tabulated, make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "spec",
    [
        "max_info",
        {"rule": "max_info", "args": {"randomesque": 3, "cost": "seconds"}},
        "variance_reduction",
        {"rule": "variance_reduction", "args": {"content": {"tag": "family"}, "cost": "tokens"}},
    ],
    ids=["max_info", "randomesque+cost", "variance_reduction", "vr+content+cost"],
)
@pytest.mark.parametrize("steep", [False, True])
def test_replay_from_the_table_chooses_what_exact_information_chooses(
    monkeypatch: pytest.MonkeyPatch, spec: object, steep: bool
) -> None:
    def run() -> object:
        bank = tagged_bank(45, seed=6)
        bank = _steep(bank) if steep else bank
        _, _, _, aligned = _sparse_responses(bank, 30, 0.7, seed=1)
        return replay(bank, aligned, {"s": make_selection(spec)}, seed=3).strategies[0]

    tabulated, exact = _both(monkeypatch, run)
    np.testing.assert_array_equal(tabulated.items, exact.items)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(tabulated.theta, exact.theta)  # type: ignore[attr-defined]


@pytest.mark.parametrize("selection", ["max_info", "variance_reduction"])
def test_live_batches_from_the_table_are_the_exact_batches(
    monkeypatch: pytest.MonkeyPatch, selection: str
) -> None:
    def run() -> list[list[str]]:
        bank = tagged_bank(60, seed=2)
        x = true_scores(bank, 0.8, seed=5)
        ctl = CatController(bank, selection=selection, rng=7)
        batches = []
        for _ in range(6):
            batch = ctl.next_items(4)
            batches.append(batch)
            for item in batch[:2]:  # two come back, two stay pending
                ctl.record(item, int(x[bank.index[item]]))
            batches.append(ctl.next_items(3, pending=batch[2:]))
            for item in batch[2:]:
                ctl.record(item, int(x[bank.index[item]]))
        return batches

    tabulated, exact = _both(monkeypatch, run)
    assert tabulated == exact


def test_blockwise_log_likelihood_is_the_sum_of_the_observations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of items and chunks of observations (made tiny here) add up to the plain sum."""
    r = np.random.default_rng(0)
    a = np.exp(r.normal(0, 0.3, 40))
    b = np.sort(r.normal(0, 1, (40, 3)), axis=1)
    b[::3, 1:] = np.inf  # some items with K = 2
    model = GradedResponseModel.from_difficulty(a, b)
    grid = np.linspace(-4, 4, 31)
    subj, item = r.integers(0, 9, 300), r.integers(0, 40, 300)
    score = r.integers(0, model.n_categories[item])
    logp = model.log_category_probs(grid[:, None])  # (G, N, K)
    expected = np.zeros((9, len(grid)))
    np.add.at(expected, subj, logp[:, item, score].T)
    monkeypatch.setattr("orchestrator.irt.ability._BLOCK", 31 * 5 * 3)  # 3 items, 3 rows
    got = subject_log_likelihood(a, b, subj, item, score, 9, grid, model=model)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert subject_log_likelihood(a, b, subj[:0], item[:0], score[:0], 9, grid).shape == (9, 31)
