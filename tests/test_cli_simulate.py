"""`agentcat simulate` through cli.main: JSON shape, plot, human table, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.api import simulate
from orchestrator.cli import main
from orchestrator.data import write_responses
from orchestrator.irt import sample_responses
from tests.conftest import make_bank


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("sim")
    bank = make_bank(30, 4, seed=1)
    bank.save(d / "bank")
    r = np.random.default_rng(0)
    x = sample_responses(r.normal(0, 1, 40), bank.a, bank.b, r)
    seen = r.random(x.shape) < 0.8
    rows = [(f"m{s}", bank.ids[j], x[s, j]) for s in range(40) for j in range(30) if seen[s, j]]
    write_responses(d / "r.csv", rows)
    return str(d / "bank"), str(d / "r.csv")


def test_json_document_shape(data, capsys) -> None:
    bank, resp = data
    code = main(["simulate", "--bank", bank, "--responses", resp, "--max-items", "12", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["command"] == "simulate"
    assert doc["n_subjects"] == 40 and doc["max_items"] == 12 and doc["se_target"] == 0.3
    assert list(doc["strategies"]) == ["cat", "random"]
    cat = doc["strategies"]["cat"]
    assert cat["rule"] == {
        "rule": "max_info",
        "args": {"randomesque": 1, "content": None, "cost": None, "probe": 0},
    }
    assert [s["n_items"] for s in cat["steps"]] == list(range(1, 13))
    assert set(cat["steps"][0]) == {"n_items", "rmse", "bias", "spearman", "mean_se", "n_active"}
    assert set(cat["items_to_se"]) == {"reached", "never", "mean", "median"}
    assert len(doc["subjects"]) == 40
    subj = doc["subjects"][0]
    assert set(subj) == {
        "subject",
        "n_responses",
        "theta_full",
        "se_full",
        "items_to_se",
        "theta_final",
    }
    assert set(subj["items_to_se"]) == {"cat", "random"}
    assert cat["steps"][-1]["rmse"] < doc["strategies"]["random"]["steps"][-1]["rmse"] + 0.1


def test_plot_and_human_output(data, tmp_path, capsys) -> None:
    bank, resp = data
    png = tmp_path / "out" / "curves.png"
    argv = ["simulate", "--bank", bank, "--responses", resp, "--plot", str(png)]
    argv += ["--strategy", "cat", "--strategy", "variance_reduction", "--strategy", "random"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "rmse[cat]" in out.out and "rho[variance_reduction]" in out.out
    assert "cat: SE ≤ 0.3 reached by" in out.out
    assert "simulate: random done" in out.err  # progress goes to stderr


def test_json_strategy_spec_and_seed_reproducibility(data) -> None:
    bank, resp = data
    spec = '{"rule": "max_info", "args": {"randomesque": 3}}'
    docs = [simulate(bank, resp, strategies=[spec], seed=4, max_items=8) for _ in range(2)]
    first, second = (d["strategies"][spec] for d in docs)
    assert first["steps"] == second["steps"] and first["items_to_se"] == second["items_to_se"]
    assert first["rule"]["args"]["randomesque"] == 3
    other = simulate(bank, resp, strategies=[spec], seed=5, max_items=8)["strategies"][spec]
    assert other["steps"] != first["steps"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--se", "-1"], "argument --se: must be > 0; got -1"),
        (["--se", "nan"], "argument --se: expected a finite number of sensible size; got 'nan'"),
        (["--max-items", "0"], "argument --max-items: must be ≥ 1; got 0"),
        (["--strategy", "catt"], "unknown strategy 'catt' \\(did you mean 'cat'\\?\\)"),
        (["--strategy", "cat", "--strategy", "cat"], "strategy 'cat' is given twice"),
        (
            ["--strategy", '{"rule": "max_info", "args": {"randomesqe": 3}}'],
            "has no argument 'randomesqe' \\(did you mean 'randomesque'\\?\\)",
        ),
        (["--strategy", "{nope"], "is not valid JSON"),
    ],
)
def test_bad_arguments_are_one_line_errors_with_exit_2(data, capsys, extra, message) -> None:
    bank, resp = data
    code = main(["simulate", "--bank", bank, "--responses", resp, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("error: ")
    import re

    assert re.search(message, first), first
    assert len(err.splitlines()) <= 2  # the error and at most a hint


def test_unknown_items_fail_unless_dropped(data, tmp_path, capsys) -> None:
    bank, resp = data
    text = Path(resp).read_text() + "m0,retired-item,1\nghost,retired-item,0\n"
    extra = tmp_path / "extra.csv"
    extra.write_text(text)
    code = main(["simulate", "--bank", bank, "--responses", str(extra)])
    err = capsys.readouterr().err
    assert code == 1 and "item 'retired-item' is not in bank" in err and "extra.csv:" in err
    argv = ["simulate", "--bank", bank, "--responses", str(extra), "--drop-unknown-items"]
    assert main([*argv, "--json", "--max-items", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dropped_items"] == ["retired-item"] and doc["n_subjects"] == 40  # ghost dropped
