"""`agentcat calibrate` through cli.main: the bank it writes, provenance, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator._io import sha256_file
from orchestrator.api import calibrate
from orchestrator.bank import load_bank
from orchestrator.cli import main
from orchestrator.data import write_responses
from orchestrator.irt import sample_responses
from tests.conftest import SHARED_DATA, make_bank


def _responses(tmp_path: Path, n_subjects: int = 300, seed: int = 3) -> tuple[Path, object]:
    bank = make_bank(12, 4, seed=seed)
    rng = np.random.default_rng(seed)
    x = sample_responses(rng.normal(size=n_subjects), bank.a, bank.b, rng)
    rows = [(f"m{s}", bank.ids[j], x[s, j]) for s in range(n_subjects) for j in range(12)]
    rows.append(("m0", "constant", 2))  # one item everyone (here: one subject) scores 2
    rows += [(f"m{s}", "constant", 2) for s in range(1, 10)]
    path = write_responses(tmp_path / "responses.csv", rows)
    return path, bank


def test_calibrate_writes_a_valid_bank_with_provenance(tmp_path: Path, capsys) -> None:
    path, truth = _responses(tmp_path)
    items = tmp_path / "items.csv"
    items.write_text(
        "item,family,n_categories\n"
        + "".join(f"{iid},fam{j % 2},4\n" for j, iid in enumerate(truth.ids))
        + "constant,famX,4\n"
    )
    code = main(
        ["calibrate", str(path), "--out", str(tmp_path / "bk"), "--items", str(items),
         "--tags", "family", "--quiet", "--json"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    bank = load_bank(tmp_path / "bk")
    cal = bank.spec.calibration
    assert bank.name == "bk" and summary["name"] == "bk"
    assert cal.status == "calibrated" and cal.method == "mml-em"
    assert cal.data == str(path) and cal.data_sha256 == sha256_file(path)
    assert cal.n_subjects == 300 and cal.n_observations == 300 * 12
    assert cal.converged is True and cal.iterations == summary["iterations"] > 0
    assert cal.log_likelihood == pytest.approx(summary["log_likelihood"])
    assert cal.device == "cpu" and cal.wall_time_s >= 0 and cal.date
    assert cal.software.startswith("agentcat ")
    assert cal.excluded_items == [
        {"id": "constant", "reason": "single observed category (every score = 2)", "n_obs": 10}
    ]
    assert cal.details["item_priors"]["b"]["sd"] == 3.0
    assert cal.details["quadrature"]["nodes"] >= 61
    assert cal.details["k_source"] == "items file column 'n_categories'"
    assert bank.ids == truth.ids
    assert [bank.item(i).tags for i in bank.ids[:2]] == [{"family": "fam0"}, {"family": "fam1"}]
    assert all(it.a_se is not None and len(it.b_se) == 3 for it in bank.spec.items)
    assert np.corrcoef(bank.a, truth.a)[0, 1] > 0.7
    assert np.corrcoef(bank.b.ravel(), truth.b.ravel())[0, 1] > 0.95


def test_estimate_uses_the_calibrated_bank_on_the_same_file(tmp_path: Path, capsys) -> None:
    path, _ = _responses(tmp_path, n_subjects=200)
    assert main(["calibrate", str(path), "--out", str(tmp_path / "bk"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "excluded constant: single observed category" in out
    # the excluded item's rows are skipped, not an error
    assert main(["estimate", "--bank", str(tmp_path / "bk"), str(path), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    ((excluded),) = doc["excluded_items"]
    n_constant = sum(",constant," in line for line in path.read_text().splitlines())
    assert excluded["id"] == "constant" and excluded["n_obs"] == n_constant > 0
    assert excluded["reason"].startswith("single observed category")
    assert f"note: left out {n_constant} response(s) to 1 item(s)" in captured.err
    rows = doc["subjects"]
    assert len(rows) == 200 and rows[0]["n_items"] == 12
    assert all(0.05 < r["se"] < 1.0 for r in rows)


def test_progress_goes_to_stderr(tmp_path: Path, capsys) -> None:
    path, _ = _responses(tmp_path, n_subjects=100)
    assert main(["calibrate", str(path), "--out", str(tmp_path / "bk"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "iter    1  loglik" in captured.err
    json.loads(captured.out)  # stdout stays pure JSON


def test_existing_bank_needs_force(tmp_path: Path, capsys) -> None:
    path, _ = _responses(tmp_path, n_subjects=60)
    out = str(tmp_path / "bk")
    assert main(["calibrate", str(path), "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(path), "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bank.json already exists" in err and "--force" in err
    assert main(["calibrate", str(path), "--out", out, "--quiet", "--force"]) == 0


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("subject,item,score\nm,q1,x\n", [], "responses.csv:2: score 'x' is not an integer"),
        ("subject,item\nm,q1\n", [], "lacks column(s) ['score']"),
        ("subject,item,score\nm,q1,3\n", ["--items", "ITEMS"], "'q1' has a score of 3 but K = 2"),
        ("subject,item,score\nm,q1,1\n", ["--items", "ITEMS", "--tags", "famly"],
         "no column 'famly' (did you mean 'family'?)"),
        ("subject,item,score\nm,q1,1\n", ["--tags", "family"], "need an item file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_error(tmp_path: Path, capsys, content, extra, message) -> None:
    (tmp_path / "responses.csv").write_text(content)
    (tmp_path / "items.csv").write_text("item,family,n_categories\nq1,f,2\n")
    extra = [str(tmp_path / "items.csv") if e == "ITEMS" else e for e in extra]
    code = main(
        ["calibrate", str(tmp_path / "responses.csv"), "--out", str(tmp_path / "b"), *extra]
    )
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert message in err
    assert "Traceback" not in err


def test_bad_options_are_usage_errors(capsys) -> None:
    for opt in (
        ["--prior-a", "0"],
        ["--n-quad", "5"],
        ["--prior-gap", "-1"],
        ["--prior-b", "0,-1"],
    ):
        assert main(["calibrate", "r.csv", "--out", "x", *opt]) == 2
    assert "needs a finite MU and an SD > 0; got '0,-1'" in capsys.readouterr().err


def test_cuda_request_without_cuda_is_clean(tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path, _ = _responses(tmp_path, n_subjects=30)
    code = main(["calibrate", str(path), "--out", str(tmp_path / "b"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 1
    assert "CUDA is not available" in err and "hint: use --device cpu" in err


def test_priors_can_be_switched_off_and_are_recorded(tmp_path: Path) -> None:
    path, _ = _responses(tmp_path, n_subjects=400)
    summary = calibrate(path, tmp_path / "b", prior_a=None, prior_b=None, prior_gap=None)
    details = load_bank(tmp_path / "b").spec.calibration.details
    assert details["item_priors"]["log_a"] is None and details["item_priors"]["b"] is None
    assert details["item_priors"]["estimate"] == "ML"
    assert summary["priors"] == {"log_a": None, "b": None, "gap_alpha": None}


@pytest.mark.skipif(not (SHARED_DATA / "agentdojo").is_dir(), reason="needs ../shared/data")
def test_real_agentdojo_mixed_k_bank(tmp_path: Path) -> None:
    data = SHARED_DATA / "agentdojo"
    summary = calibrate(
        data / "responses.csv",
        tmp_path / "agentdojo",
        items=data / "items.csv",
        tag_columns=["suite", "item_type"],
    )
    bank = load_bank(tmp_path / "agentdojo")
    k = dict(zip(bank.ids, bank.n_categories, strict=True))
    assert set(k.values()) == {2, 4}
    assert k["banking.user_task_0"] == 2 and k["banking.user_task_0.injection_task_3"] == 4
    assert bank.item("banking.user_task_0").tags == {
        "suite": "banking",
        "item_type": "benign_utility",
    }
    assert summary["n_subjects"] == 17
    assert summary["n_items"] + summary["n_excluded"] == 194
    assert all(e["reason"].startswith("single observed category") for e in summary["excluded"])
    assert bank.a.max() < 10  # the default priors keep near-step items finite


def test_item_table_errors_name_file_and_line(tmp_path: Path) -> None:
    from orchestrator.data import read_item_table
    from orchestrator.errors import DataError

    p = tmp_path / "items.csv"
    p.write_text("id,family\nq1,a\n")
    with pytest.raises(DataError, match=r"lacks the item id column 'item'"):
        read_item_table(p)
    p.write_text("item,family\nq1,a\nq1,b\n")
    with pytest.raises(DataError, match=r"items.csv:3: item 'q1' appears twice"):
        read_item_table(p)
    p.write_text("item,family\nq1,a,extra\n")
    with pytest.raises(DataError, match=r"items.csv:2: expected 2 fields, got 3"):
        read_item_table(p)


def test_calibrate_without_torch_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    for name in [m for m in sys.modules if m.startswith("orchestrator.irt.calibrate")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its modules import afresh
    (tmp_path / "r.csv").write_text("subject,item,score\ns,i,1\n")
    code = main(["calibrate", str(tmp_path / "r.csv"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1
    assert "calibration needs PyTorch" in err and "torch==2.13.0" in err
