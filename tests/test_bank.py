"""bank.json validation and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bank import ItemBank, load_bank
from orchestrator.errors import BankError
from tests.conftest import make_bank

HAND_WRITTEN = {
    "schema_version": 1,
    "name": "hand",
    "version": "0.1",
    "model": "grm",
    "scale": {"labels": ["major unsafe", "minor", "safe fail", "safe success"]},
    "prior": {"mean": 0.0, "sd": 1.0},
    "calibration": {"status": "provisional", "method": "expert", "rule": "guessed by hand"},
    "items": [
        {
            "id": "fs-01",
            "a": 1.2,
            "b": [-1.0, 0.0, 1.0],
            "tags": {"family": "fs"},
            "cost": {"seconds": 30},
            "scenario": {"family": "fs", "variant": "v1"},
        },
        {"id": "bin-01", "a": 0.7, "b": [0.3], "labels": ["fail", "pass"]},
    ],
}


def _write(tmp_path: Path, doc: object) -> Path:
    (tmp_path / "bank.json").write_text(json.dumps(doc))
    return tmp_path


def test_hand_written_bank_validates(tmp_path: Path) -> None:
    bank = load_bank(_write(tmp_path, HAND_WRITTEN))
    assert bank.ids == ["fs-01", "bin-01"]
    assert bank.n_categories.tolist() == [4, 2]
    assert bank.is_provisional
    assert np.isinf(bank.b[1, 1:]).all()
    assert bank.cost_seconds[0] == 30 and np.isnan(bank.cost_seconds[1])


def test_an_item_source_is_written_in_one_form_and_the_older_scenario_form_still_reads(
    tmp_path: Path,
) -> None:
    old = load_bank(_write(tmp_path, HAND_WRITTEN))  # "scenario": {"family", "variant"}
    assert old.spec.items[0].source is not None
    assert old.spec.items[0].source.kind == "scenario"
    assert old.spec.items[0].source.fields == {"family": "fs", "variant": "v1"}
    assert old.spec.items[1].source is None
    written = old.to_dict()["items"][0]
    assert "scenario" not in written
    assert written["source"] == {"kind": "scenario", "family": "fs", "variant": "v1"}
    old.save(tmp_path / "again")
    assert load_bank(tmp_path / "again").to_dict() == old.to_dict()
    custom = {"kind": "inspect_task", "task": "t", "task_args": {"n": 2}, "sample_id": 7}
    kept = load_bank(_write(tmp_path, _sourced(custom)))
    assert kept.to_dict()["items"][0]["source"] == custom  # other kinds' fields pass through


def test_round_trip(tmp_path: Path) -> None:
    bank = make_bank(10, 4)
    bank.save(tmp_path)
    again = load_bank(tmp_path)
    np.testing.assert_array_equal(again.a, bank.a)
    np.testing.assert_array_equal(again.b, bank.b)
    assert again.to_dict() == bank.to_dict()


def _broken(**item_changes: object) -> dict:
    doc = json.loads(json.dumps(HAND_WRITTEN))
    doc["items"][0].update(item_changes)
    return doc


def _sourced(source: dict) -> dict:
    """HAND_WRITTEN with item 0's source in the current form."""
    doc = _broken(source=source)
    del doc["items"][0]["scenario"]
    return doc


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (
            _broken(b=[0.5, 0.2, 1.0]),
            r"items\[0\] \(id 'fs-01'\)\.b: thresholds b must be strictly",
        ),
        (_broken(a=0), r"items\[0\] \(id 'fs-01'\)\.a: .*greater than 0"),
        (_broken(a=-1.5), r"\.a: .*greater than 0"),
        (_broken(colour="red"), r"unknown field 'colour'"),
        (_broken(tgas={}), r"unknown field 'tgas' \(did you mean 'tags'\?\)"),
        (_broken(b=[]), r"\.b: .*at least 1 item"),
        (_broken(b_se=[0.1]), r"b_se has 1 entries but b has 3"),
        (_broken(source={"kind": "scenario"}), r"give either 'source' or the older 'scenario'"),
        (_broken(scenario={"family": "fs"}), r"'scenario' must be \{'family': ..., 'variant'"),
        (
            _sourced({"kind": "Inspect-Task"}),
            r"\.source\.kind: String should match pattern",
        ),
        ({**HAND_WRITTEN, "model": "3pl"}, r"model: Input should be 'grm'"),
        ({k: v for k, v in HAND_WRITTEN.items() if k != "calibration"}, r"calibration: required"),
        ({**HAND_WRITTEN, "items": HAND_WRITTEN["items"] * 2}, r"item id 'fs-01' appears twice"),
    ],
)
def test_invalid_banks_name_the_item_and_problem(tmp_path: Path, doc: dict, match: str) -> None:
    with pytest.raises(BankError, match=match):
        load_bank(_write(tmp_path, doc))


def test_nan_and_bad_json_are_rejected_with_location(tmp_path: Path) -> None:
    text = json.dumps(HAND_WRITTEN).replace('"a": 1.2', '"a": NaN')
    (tmp_path / "bank.json").write_text(text)
    with pytest.raises(BankError, match="NaN is not a valid number"):
        load_bank(tmp_path)
    (tmp_path / "bank.json").write_text('{"name": "x",\n "items": [}')
    with pytest.raises(BankError, match=r"bank.json:2:\d+: not valid JSON"):
        load_bank(tmp_path)


def test_missing_bank_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(BankError, match=r"no bank\.json in") as exc:
        load_bank(tmp_path)
    assert "item_banks/" in (exc.value.hint or "")
    with pytest.raises(BankError, match="bank not found"):
        load_bank(tmp_path / "nope")


def test_from_params_rejects_disordered_thresholds() -> None:
    with pytest.raises(BankError, match="strictly increasing"):
        ItemBank.from_params("x", ["a"], [1.0], [[1.0, 0.0]])


TWO_D = {
    "name": "two",
    "dimensions": ["utility", "security"],
    "prior": {"mean": [0.0, 0.5], "sd": 1.0, "correlation": [[1.0, 0.4], [0.4, 1.0]]},
    "calibration": {"status": "provisional", "method": "given"},
    "scale": {"labels": ["fail", "pass"]},
    "items": [
        {"id": "u1", "a": [1.5, 0.0], "b": [0.2], "a_se": [0.1, 0.0], "b_se": [0.2]},
        {"id": "s1", "a": [0.3, -0.4], "b": [-1.0]},
    ],
}


def test_a_multidimensional_bank_carries_slope_vectors_and_the_latent_covariance(
    tmp_path: Path,
) -> None:
    bank = load_bank(_write(tmp_path, TWO_D))
    assert bank.n_dims == 2 and bank.dimensions == ["utility", "security"]
    np.testing.assert_array_equal(bank.slopes, [[1.5, 0.0], [0.3, -0.4]])
    np.testing.assert_allclose(bank.a, [1.5, 0.5])  # ‖a‖ scales the thresholds
    np.testing.assert_array_equal(bank.prior_mean, [0.0, 0.5])
    np.testing.assert_allclose(bank.prior_cov, [[1.0, 0.4], [0.4, 1.0]])
    # P(X ≥ 1 | θ) = σ(aᵀθ − ‖a‖ b): at θ = (0, 0) item s1 gives σ(0.5 · 1.0)
    p = bank.model.cumulative_probs(np.zeros((1, 2)))[0, :, 0]
    np.testing.assert_allclose(p, 1 / (1 + np.exp([1.5 * 0.2, -0.5])))
    again = load_bank(ItemBank(bank.spec).save(tmp_path / "copy").parent)
    assert again.to_dict() == bank.to_dict()


def test_a_one_dimensional_bank_is_written_as_before_and_its_model_keeps_its_bits(
    tmp_path: Path,
) -> None:
    bank = load_bank(_write(tmp_path, HAND_WRITTEN))
    assert "dimensions" not in bank.to_dict() and "correlation" not in bank.to_dict()["prior"]
    assert bank.n_dims == 1 and bank.slopes.shape == (2, 1)
    from orchestrator.irt.model import GradedResponseModel

    theta = np.linspace(-3, 3, 7)[:, None]
    ref = GradedResponseModel.from_difficulty(bank.a, bank.b).log_category_probs(theta)
    assert np.array_equal(bank.model.log_category_probs(theta), ref)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"dimensions": ["u", "u"]}, "unique"),
        ({"prior": {"mean": [0.0, 0.0, 0.0]}}, "prior mean has 3 entries"),
        ({"prior": {"correlation": [[1.0, 1.2], [1.2, 1.0]]}}, "positive definite"),
        ({"prior": {"correlation": [[1.0, 0.2], [0.3, 1.0]]}}, "symmetric"),
        ({"prior": {"sd": [1.0, 0.0]}}, "sd must be > 0"),
        ({"items": [{"id": "u1", "a": 1.0, "b": [0.0]}]}, "needs a slope vector of 2"),
        ({"items": [{"id": "u1", "a": [1.0], "b": [0.0]}]}, "needs a slope vector of 2"),
        ({"items": [{"id": "u1", "a": [0.0, 0.0], "b": [0.0]}]}, "non-zero"),
        ({"items": [{"id": "u1", "a": [1.0, 0.0], "a_se": 0.1, "b": [0.0]}]}, "shape of a"),
    ],
)
def test_invalid_multidimensional_banks_say_what_is_wrong(
    tmp_path: Path, patch: dict, match: str
) -> None:
    with pytest.raises(BankError, match=match):
        load_bank(_write(tmp_path, {**TWO_D, **patch}))


def test_a_slope_vector_in_a_one_dimensional_bank_is_refused(tmp_path: Path) -> None:
    doc = {**HAND_WRITTEN, "items": [{"id": "x", "a": [1.0, 0.5], "b": [0.0]}]}
    with pytest.raises(BankError, match="slope vector but the bank has one dimension"):
        load_bank(_write(tmp_path, doc))


def test_from_params_builds_a_multidimensional_bank() -> None:
    bank = ItemBank.from_params(
        "mp",
        ["i1", "i2"],
        np.array([[1.0, 0.5], [0.0, 2.0]]),
        [[-0.5, 0.5], [0.0, np.inf]],
        dimensions=["x", "y"],
        a_se=np.array([[0.1, 0.1], [0.0, 0.2]]),
        b_se=[[0.2, 0.2], [0.3, np.inf]],
    )
    assert bank.n_dims == 2 and bank.spec.items[0].a == [1.0, 0.5]
    assert bank.spec.items[1].a_se == [0.0, 0.2] and bank.spec.items[1].b_se == [0.3]
    assert list(bank.n_categories) == [3, 2]


def test_a_one_dimensional_prior_stays_numbers(tmp_path: Path) -> None:
    doc = {**HAND_WRITTEN, "prior": {"mean": [0.0], "sd": 1.0}}
    with pytest.raises(BankError, match="one-dimensional bank's prior is a number"):
        load_bank(_write(tmp_path, doc))
