"""The reviewed model-name mapping: the shipped file, matching rules and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.data import read_responses
from orchestrator.errors import DataError
from orchestrator.report.model_names import DEFAULT_NAMES_FILE, load_model_names
from tests.conftest import REPO

SHIPPED = ("agentdojo", "jailbreakbench", "xstest", "alpaca_eval", "alpaca_eval_3level")
HEADER = "banks,subject,model,condition,source,note\n"


def _write(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "names.csv"
    f.write_text(HEADER + body)
    return f


@pytest.mark.parametrize("bank", SHIPPED)
def test_shipped_mapping_reviews_every_subject_of_the_shipped_banks(bank: str) -> None:
    """Every subject has its own row with a source; no row names a subject the bank lacks."""
    names = load_model_names(REPO / DEFAULT_NAMES_FILE)
    subjects = read_responses(REPO / "item_banks" / bank / "responses.csv").subjects
    mapped = names.resolve(bank, subjects)
    assert {m.status for m in mapped} <= {"mapped", "excluded"}
    rows = {s for b, s in names.rows if b == bank}
    assert rows == set(subjects)
    assert all(names.rows[(bank, s)].source for s in subjects)
    assert all(m.note for m in mapped if m.status == "excluded")  # a reason for each


def test_shipped_mapping_identities_that_link_benchmarks() -> None:
    names = load_model_names(REPO / DEFAULT_NAMES_FILE)
    jbb = {m.subject: m for m in names.resolve("jailbreakbench", ["vicuna-13b-v1.5@GCG"])}
    assert jbb["vicuna-13b-v1.5@GCG"].model == "lmsys/vicuna-13b-v1.5"
    assert jbb["vicuna-13b-v1.5@GCG"].condition.startswith("attack=GCG")
    (ae,) = names.resolve("alpaca_eval", ["vicuna-13b-v1.5"])
    assert ae.model == "lmsys/vicuna-13b-v1.5" and ae.condition == ""
    (tiny,) = names.resolve("tinywinogrande", ["lmsys/vicuna-13b-v1.5"])
    assert (tiny.model, tiny.status) == ("lmsys/vicuna-13b-v1.5", "wildcard")


def test_resolve_reports_each_status(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "b1,x,org/x,,src,\n"
        "b1,y,,,src,not a model\n"
        "b1;b2,z,org/z,attack=A,src,\n"
        "b3,*,*,,src,ids are canonical\n",
    )
    names = load_model_names(f)
    got = {m.subject: (m.model, m.status) for m in names.resolve("b1", ["x", "y", "z", "w"])}
    assert got == {
        "x": ("org/x", "mapped"),
        "y": (None, "excluded"),
        "z": ("org/z", "mapped"),
        "w": (None, "unmatched"),
    }
    assert names.resolve("b2", ["z"])[0].condition == "attack=A"
    assert names.resolve("b3", ["org/q"])[0].status == "wildcard"
    assert names.resolve("live", ["openai/gpt-4o"])[0].status == "unmapped_bank"
    assert names.sha256 and names.source == str(f)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "b1,x,m,,src,\nb1,x,n,,src,\n",
            r"names.csv:3: bank 'b1' subject 'x' is already mapped on line 2",
        ),
        ("b1,*,org/x,,src,\n", r"names.csv:2: '\*' must be both subject and model"),
        ("b1,x,m,,,\n", r"names.csv:2: subject 'x' has no source"),
        (",x,m,,src,\n", r"names.csv:2: every row needs a bank and a subject"),
        ("b1,x,m,src\n", r"names.csv:2: expected 6 fields"),
    ],
    ids=["duplicate", "wildcard", "no-source", "no-bank", "ragged"],
)
def test_bad_mapping_files_name_file_and_line(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_model_names(_write(tmp_path, body))


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "n.csv"
    f.write_text("banks,subject,model,source,note\nb,x,m,s,\n")
    with pytest.raises(DataError, match="no column 'condition'"):
        load_model_names(f)
    with pytest.raises(DataError, match="does not exist") as exc:
        load_model_names(tmp_path / "nope.csv")
    assert "--names" in (exc.value.hint or "")
