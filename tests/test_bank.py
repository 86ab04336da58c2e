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
