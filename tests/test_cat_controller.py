"""CatController: recording, validation, unavailable items, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.bank import ItemBank, Prior
from orchestrator.cat import CatController
from orchestrator.errors import DataError, NoItemsAvailableError, SessionError
from tests._cat_helpers import run, tagged_bank, true_scores
from tests.conftest import make_bank


@pytest.fixture
def bank() -> ItemBank:
    return tagged_bank(40, seed=2)


def test_prior_comes_from_the_bank() -> None:
    base = make_bank(10, 4)
    spec = base.spec.model_copy(update={"prior": Prior(mean=1.0, sd=0.5)})
    ctl = CatController(ItemBank(spec))
    assert ctl.theta == pytest.approx(1.0, abs=1e-9)
    assert ctl.se == pytest.approx(0.5, abs=1e-3)


def test_record_updates_state_and_tracks_costs(bank) -> None:
    ctl = CatController(bank)
    ctl.record("it003", 1, cost_seconds=12.5, tokens=300)
    ctl.record("it007", 0, cost_seconds=None, tokens=50)
    assert ctl.administered == ["it003", "it007"] and ctl.scores == [1, 0]
    assert ctl.n_items == 2 and ctl.spent_seconds == 12.5 and ctl.spent_tokens == 350
    assert ctl.theta < 0 and ctl.se < 1
    assert "it003" not in ctl.next_items(40)


@pytest.mark.parametrize(
    ("item", "score", "kwargs", "message"),
    [
        ("it0003", 1, {}, "record: item 'it0003' is not in bank 'tagged' \\(did you mean 'it003'"),
        ("it001", 9, {}, "score 9 for item 'it001' is outside its scale 0..1"),
        ("it001", -1, {}, "score -1 for item 'it001' is outside its scale"),
        ("it001", 1.0, {}, "score 1.0 for item 'it001'"),
        ("it001", True, {}, "score True for item 'it001'"),
        ("it001", 1, {"cost_seconds": -3}, "cost_seconds for item 'it001' must be a number ≥ 0"),
        ("it001", 1, {"tokens": float("nan")}, "tokens for item 'it001' must be a number ≥ 0"),
    ],
)
def test_record_rejects_bad_input_with_the_value(bank, item, score, kwargs, message) -> None:
    assert bank.n_categories[bank.index["it001"]] == 2  # the message's scale below
    ctl = CatController(bank)
    with pytest.raises(DataError, match=message):
        ctl.record(item, score, **kwargs)
    assert ctl.n_items == 0  # nothing half-recorded


def test_record_rejects_an_item_twice(bank) -> None:
    ctl = CatController(bank)
    ctl.record("it005", 0)
    with pytest.raises(DataError, match="'it005' was already administered \\(step 1\\)"):
        ctl.record("it005", 1)
    with pytest.raises(DataError, match="pending item 'it005' was already recorded"):
        ctl.next_items(1, pending=["it005"])
    with pytest.raises(DataError, match="exclude: item 'nope' is not in bank"):
        ctl.next_items(1, exclude=["nope"])


def test_unavailable_items_are_never_picked_and_survive_persistence(bank) -> None:
    ctl = CatController(bank)
    best = ctl.next_items(1)[0]
    ctl.mark_unavailable(best, "image agentcat/fs:1 missing")
    assert best not in ctl.next_items(39)
    clone = CatController.from_dict(json.loads(json.dumps(ctl.to_dict())), bank)
    assert clone.unavailable == {best: "image agentcat/fs:1 missing"}
    assert best not in clone.next_items(39)
    clone.mark_available(best)
    assert clone.next_items(1) == [best]


def test_nothing_eligible_raises_no_items_available(bank) -> None:
    ctl = CatController(bank)
    for iid in bank.ids[:-1]:
        ctl.mark_unavailable(iid)
    with pytest.raises(NoItemsAvailableError, match="0 administered, 39 unavailable, 1 excluded"):
        ctl.next_items(1, exclude=[bank.ids[-1]])


def test_json_round_trip_gives_same_choice_and_same_random_stream(bank) -> None:
    spec = {"rule": "max_info", "args": {"randomesque": 5}}
    ctl = CatController(bank, selection=spec, rng=123)
    x = true_scores(bank, 0.3)
    run(ctl, x, 6)
    doc = ctl.to_dict()
    text = json.dumps(doc, allow_nan=False)  # JSON-clean: no NaN, no numpy types
    clone = CatController.from_dict(json.loads(text), bank)
    assert clone.selection == ctl.selection and clone.stopping == ctl.stopping
    assert clone.to_dict() == doc
    for _ in range(10):  # the same randomesque draws, step after step
        a, b = ctl.next_items(1), clone.next_items(1)
        assert a == b
        ctl.record(a[0], int(x[bank.index[a[0]]]))
        clone.record(b[0], int(x[bank.index[b[0]]]))
    assert clone.theta == ctl.theta and clone.se == ctl.se


def test_likely_next_is_the_pending_batch_pick_and_leaves_the_random_stream_alone(bank) -> None:
    """``likely_next(pending, k)`` is what ``next_items(k, pending=...)`` would pick (the
    live runner readies a sandbox for it); asking draws from a copy of the random
    stream, so a test that asks every step picks, estimates and journals exactly what
    one that never asks does (randomesque: the picks are random draws)."""
    spec = {"rule": "max_info", "args": {"randomesque": 5}}
    asked = CatController(bank, selection=spec, rng=11)
    plain = CatController(bank, selection=spec, rng=11)
    x = true_scores(bank, -0.4)
    guesses = set()
    for _ in range(8):
        (item,) = asked.next_items(1)
        assert plain.next_items(1) == [item]
        doc = asked.to_dict()
        guess = asked.likely_next([item], 2)
        assert asked.to_dict() == doc
        clone = CatController.from_dict(doc, bank)
        assert clone.next_items(2, pending=[item]) == guess
        assert len(guess) == 2 and item not in guess
        guesses.add(tuple(guess))
        asked.record(item, int(x[bank.index[item]]))
        plain.record(item, int(x[bank.index[item]]))
    assert len(guesses) > 1
    assert asked.to_dict() == plain.to_dict()
    for iid in bank.ids:
        if iid not in asked.administered and iid != bank.ids[-1]:
            asked.mark_unavailable(iid)
    assert asked.likely_next([bank.ids[-1]]) == []  # nothing else eligible: no guess


def test_journal_posterior_record_keeps_its_format_and_inconsistency_is_refused(bank) -> None:
    ctl = CatController(bank, rng=0)
    run(ctl, true_scores(bank, 0.4), 3)
    doc = ctl.to_dict()
    post = doc["posterior"]
    assert set(post) == {"prior_mean", "prior_sd", "grid", "regrid_ratio", "responses"}
    first = bank.index[doc["administered"][0]]
    assert post["responses"][0] == {
        "a": float(bank.a[first]),
        "b": list(bank.item(doc["administered"][0]).b),
        "score": doc["scores"][0],
    }
    short = {**post, "responses": post["responses"][:2]}
    with pytest.raises(SessionError, match="posterior holds 2 responses, administered lists 3"):
        CatController.from_dict({**doc, "posterior": short}, bank)


def test_from_dict_refuses_another_bank_or_schema(bank) -> None:
    ctl = CatController(bank, rng=0)
    run(ctl, true_scores(bank, 0.0), 2)
    doc = ctl.to_dict()
    other = tagged_bank(40, seed=3)
    with pytest.raises(SessionError, match=r"written with bank 'tagged'.*differ"):
        CatController.from_dict(doc, other)
    with pytest.raises(SessionError, match="schema_version 99"):
        CatController.from_dict({**doc, "schema_version": 99}, bank)
    with pytest.raises(SessionError, match="malformed"):
        CatController.from_dict({k: v for k, v in doc.items() if k != "rng"}, bank)


def test_deterministic_for_a_seed_and_different_across_seeds(bank) -> None:
    spec = {"rule": "max_info", "args": {"randomesque": 4}}
    x = true_scores(bank, -0.2)
    seqs = [run(CatController(bank, selection=spec, rng=s), x, 8) for s in (5, 5, 6)]
    assert seqs[0] == seqs[1] and seqs[0] != seqs[2]


def test_shared_generator_is_used_as_is(bank) -> None:
    gen = np.random.default_rng(9)
    ctl = CatController(bank, selection="random", rng=gen)
    ctl.next_items(1)
    assert ctl.to_dict()["rng"] == gen.bit_generator.state
