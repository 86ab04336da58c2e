"""`agentcat estimate` through cli.main: JSON shape, recovery, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.cli import main
from orchestrator.data import write_responses
from orchestrator.irt import sample_responses
from tests.conftest import make_bank


def test_estimate_json_recovers_known_abilities(tmp_path: Path, capsys) -> None:
    bank = make_bank(60, 4, seed=1)
    bank.save(tmp_path / "bank")
    rng = np.random.default_rng(5)
    theta = np.linspace(-2, 2, 9)
    x = sample_responses(theta, bank.a, bank.b, rng)
    rows = [(f"s{i}", bank.ids[j], x[i, j]) for i in range(9) for j in range(60)]
    write_responses(tmp_path / "r.csv", rows)
    code = main(["estimate", "--bank", str(tmp_path / "bank"), str(tmp_path / "r.csv"), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["bank"] == "synthetic" and doc["method"] == "eap"
    rows = doc["subjects"]
    assert [d["subject"] for d in rows] == [f"s{i}" for i in range(9)]
    assert all(d["n_items"] == 60 for d in rows)
    est = np.array([d["theta"] for d in rows])
    se = np.array([d["se"] for d in rows])
    assert np.all(np.abs(est - theta) < 3 * se)  # within 3 SE of the truth
    assert np.corrcoef(est, theta)[0, 1] > 0.97


def test_estimate_bad_input_is_one_line_error_not_traceback(tmp_path: Path, capsys) -> None:
    make_bank(5, 4).save(tmp_path / "bank")
    (tmp_path / "r.csv").write_text("subject,item,score\nm,it001,7\n")
    code = main(["estimate", "--bank", str(tmp_path / "bank"), str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: " in err and "r.csv:2: score 7 for item 'it001'" in err
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys) -> None:
    assert main(["estimate"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: the following arguments are required: RESPONSES.csv, --bank",
        "hint: `agentcat estimate --help` lists the options",
    ]
