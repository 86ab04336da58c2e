"""Replay simulation: same semantics as the live controller, and CAT's advantage on known data."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.cat import CatController, make_selection
from orchestrator.data import Responses
from orchestrator.irt import sample_responses
from orchestrator.sim import replay, subject_rng
from tests._cat_helpers import tagged_bank
from tests.conftest import make_bank


def _sparse_responses(bank, n_subjects: int, share: float, seed: int):
    r = np.random.default_rng(seed)
    theta = r.normal(0, 1, n_subjects)
    x = sample_responses(theta, bank.a, bank.b, r)
    seen = r.random(x.shape) < share
    triples = [
        (f"s{s}", bank.ids[j], int(x[s, j]))
        for s in range(n_subjects)
        for j in range(len(bank))
        if seen[s, j]
    ]
    return theta, x, seen, Responses.from_triples(triples).for_bank(bank)


@pytest.mark.parametrize(
    "spec",
    [
        "max_info",
        "random",
        {"rule": "max_info", "args": {"randomesque": 3, "cost": "seconds"}},
        {"rule": "variance_reduction", "args": {"content": {"tag": "family"}}},
    ],
    ids=["max_info", "random", "randomesque+cost", "variance_reduction+content"],
)
def test_batched_replay_equals_one_controller_per_subject(spec) -> None:
    """The lockstep replay is exactly the live controller run on each subject."""
    bank = tagged_bank(45, seed=6)
    _, x, seen, aligned = _sparse_responses(bank, 12, 0.6, seed=1)
    res = replay(bank, aligned, {"s": make_selection(spec)}, seed=3).strategies[0]
    for s in range(12):
        ctl = CatController(bank, selection=spec, rng=subject_rng(3, s))
        for j in np.flatnonzero(~seen[s]):
            ctl.mark_unavailable(bank.ids[j])
        n = int(seen[s].sum())
        for t in range(n):
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[s, bank.index[item]]))
            assert bank.index[item] == res.items[s, t]
            assert ctl.theta[0] == pytest.approx(res.theta[t + 1, s, 0], abs=1e-12)
            assert ctl.se[0] == pytest.approx(res.se[t + 1, s, 0], abs=1e-12)
        assert np.all(res.items[s, n:] == -1)
        assert res.theta[-1, s, 0] == res.theta[n, s, 0]  # carried forward after the last item


def test_cat_beats_random_against_the_true_theta_on_a_known_bank() -> None:
    bank = make_bank(200, 4, seed=11)
    theta, _, _, aligned = _sparse_responses(bank, 300, 1.0, seed=2)
    strategies = {"cat": make_selection("max_info"), "random": make_selection("random")}
    res = replay(bank, aligned, strategies, max_items=30, seed=0)
    cat, rnd = res.strategies

    def rmse(r, t):
        return float(np.sqrt(np.mean((r.theta[t, :, 0] - theta) ** 2)))

    # RMSE to the true θ, measured: cat 0.456 / 0.364 / 0.272 at 5 / 10 / 20 items,
    # random 0.674 / 0.522 / 0.379 (cat 28-32 % lower).
    for t in (5, 10, 20):
        assert rmse(cat, t) < 0.8 * rmse(rnd, t), t
    steps = {r["n_items"]: r for r in res.steps(cat)}
    assert steps[10]["rmse"] < {r["n_items"]: r for r in res.steps(rnd)}[10]["rmse"]
    # SE ≤ 0.3 within 30 items: measured 299/300 subjects with cat, 17/300 with random
    assert np.mean(cat.items_to_se > 0) > 0.95
    assert np.mean(rnd.items_to_se > 0) < 0.2


def test_items_to_se_and_full_data_reference() -> None:
    bank = make_bank(40, 4, seed=4)
    _, _, seen, aligned = _sparse_responses(bank, 30, 0.8, seed=5)
    res = replay(bank, aligned, {"cat": make_selection("max_info")}, se_target=0.4)
    cat = res.strategies[0]
    for s in range(30):
        below = np.flatnonzero(cat.se[:, s, 0] <= 0.4)
        assert cat.items_to_se[s] == (below[0] if below.size else -1)
    # every item used: the replay's estimate is the full-data EAP (up to quadrature)
    np.testing.assert_allclose(cat.theta[-1], res.theta_full, atol=2e-3)  # (S, 1) both
    steps = res.steps(cat)
    longest = int(seen.sum(1).max())
    assert [r["n_active"] for r in steps] == [
        int((seen.sum(1) >= t).sum()) for t in range(1, longest + 1)
    ]
    assert steps[-1]["rmse"] < 2e-3 and steps[-1]["spearman"] > 0.999


def test_blockwise_information_gives_the_same_replay(monkeypatch) -> None:
    """Many subjects are evaluated in row blocks; the blocks must not change any choice."""
    bank = tagged_bank(30, seed=2)
    _, _, _, aligned = _sparse_responses(bank, 25, 0.7, seed=9)
    rules = {"mi": make_selection("max_info"), "vr": make_selection("variance_reduction")}
    whole = replay(bank, aligned, rules, max_items=6)
    monkeypatch.setattr("orchestrator.cat.state._BLOCK", 400)  # a few rows per block
    blocks = replay(bank, aligned, rules, max_items=6)
    for a, b in zip(whole.strategies, blocks.strategies, strict=True):
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-12)
