"""Stopping rules: exact firing points, shared limits, composition, validation."""

from __future__ import annotations

import pytest

from orchestrator.bank import ItemBank
from orchestrator.cat import CatController, SEStop, make_stopping
from orchestrator.errors import ConfigError
from tests._cat_helpers import run, true_scores
from tests.conftest import make_bank


def test_se_stop_fires_exactly_when_se_reaches_target_and_not_before_min_items() -> None:
    bank = make_bank(200, 4, seed=3)
    x = true_scores(bank, 0.5)
    rule = {"rule": "se", "args": {"se": 0.35, "min_items": 8}}
    ctl = CatController(bank, stopping=rule, rng=0)
    saw_se_below_before_min = False
    while True:
        decision = ctl.should_stop()
        expected = ctl.se[0] <= 0.35 and ctl.n_items >= 8
        saw_se_below_before_min |= ctl.se[0] <= 0.35 and ctl.n_items < 8
        assert decision.stop == expected, (ctl.n_items, ctl.se)
        if decision.stop:
            assert decision.reason == f"SE {ctl.se[0]:.3f} ≤ target 0.35"
            break
        run(ctl, x, 1)
    assert saw_se_below_before_min  # min_items really held the rule back
    assert ctl.n_items == 8


def test_se_stop_validates_like_catsim() -> None:
    with pytest.raises(ConfigError, match="min_items=60 is greater than max_items=50"):
        SEStop(se=0.3, min_items=60, max_items=50)
    with pytest.raises(ConfigError, match=r"rule 'se': se must be a number > 0; got -0\.1"):
        SEStop(se=-0.1)
    with pytest.raises(ConfigError, match="max_items must be an integer ≥ 1; got 0"):
        make_stopping({"rule": "se", "args": {"max_items": 0}})
    with pytest.raises(ConfigError, match=r"unknown stopping rule 'sse'.*did you mean 'se'"):
        make_stopping("sse")
    with pytest.raises(ConfigError, match=r"'max_items' needs argument.*max_items"):
        make_stopping("max_items")
    with pytest.raises(ConfigError, match="needs max_seconds or max_tokens"):
        make_stopping("budget")


def _floor_bank() -> ItemBank:
    """Three informative items at θ ≈ 0, then 20 nearly flat ones far away."""
    ids = [f"good{i}" for i in range(3)] + [f"flat{i}" for i in range(20)]
    a = [2.0] * 3 + [0.05] * 20
    b = [[-0.5, 0.5]] * 3 + [[5.0, 6.0]] * 20
    return ItemBank.from_params("floor", ids, a, b, scale_labels=["0", "1", "2"])


def test_info_floor_fires_when_no_informative_item_is_left() -> None:
    bank = _floor_bank()
    ctl = CatController(bank, stopping={"rule": "info_floor", "args": {"delta": 0.05}})
    for _ in range(3):
        assert not ctl.should_stop().stop
        item = ctl.next_items(1)[0]
        assert item.startswith("good")
        ctl.record(item, 1)
    decision = ctl.should_stop()
    assert decision.stop
    assert decision.reason.startswith("no eligible item adds ≥ 0.05 information at θ = ")
    assert ctl.n_items == 3 and not ctl.unavailable


def test_budgets_and_max_items_are_limits_of_every_rule() -> None:
    bank = make_bank(50, 4)
    ctl = CatController(bank, stopping={"rule": "se", "args": {"se": 0.01, "max_seconds": 100}})
    ctl.record("it000", 1, cost_seconds=60)
    assert not ctl.should_stop().stop
    ctl.record("it001", 1, cost_seconds=45)
    assert ctl.should_stop().reason == "time budget spent: 105.0 s of max_seconds=100"
    ctl = CatController(bank, stopping={"rule": "budget", "args": {"max_tokens": 1000}})
    ctl.record("it000", 2, tokens=999)
    assert not ctl.should_stop().stop
    ctl.record("it001", 2, tokens=1)
    assert ctl.should_stop().reason == "token budget spent: 1000 of max_tokens=1000"
    ctl = CatController(bank, stopping={"rule": "max_items", "args": {"max_items": 2}})
    run(ctl, true_scores(bank, 0.0), 2)
    assert ctl.should_stop().reason == "max_items=2 reached"


def test_any_of_reports_the_first_rule_that_fires_and_respects_min_items() -> None:
    bank = _floor_bank()
    spec = {
        "rule": "any_of",
        "args": {"rules": [{"rule": "se", "args": {"se": 0.05}}, "info_floor"], "min_items": 4},
    }
    ctl = CatController(bank, stopping=spec)
    for _ in range(3):
        ctl.record(ctl.next_items(1)[0], 2)
    assert not ctl.should_stop().stop  # info floor would fire, but min_items=4
    ctl.record(ctl.next_items(1)[0], 0)
    assert ctl.should_stop().reason.startswith("no eligible item adds")
    with pytest.raises(ConfigError, match="rules must be a non-empty list"):
        make_stopping({"rule": "any_of", "args": {"rules": []}})
    with pytest.raises(ConfigError, match="unknown stopping rule 'ses'"):
        make_stopping({"rule": "any_of", "args": {"rules": ["ses"]}})


def test_any_of_stores_full_child_specs() -> None:
    short = make_stopping({"rule": "any_of", "args": {"rules": ["se", "info_floor"]}})
    full = make_stopping(short.spec())
    assert full == short
    assert short.spec()["args"]["rules"][0] == {
        "rule": "se",
        "args": {
            "se": 0.3,
            "dimension": None,
            "weights": None,
            "min_items": 1,
            "max_items": None,
            "max_seconds": None,
            "max_tokens": None,
        },
    }
