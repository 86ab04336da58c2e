"""`agentcat demo --theta 0.5,-1`: one θ per dimension of the bank, refused when it does not fit.

The live part runs the real demo path on a 4-item subset of the shipped agentdojo-2d
bank: the simulated agent served over HTTP, real Inspect AgentDojo runs (no Docker).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.cli import main
from orchestrator.cli.live import _format_summary
from orchestrator.errors import ConfigError
from tests.conftest import REPO

BANK_2D = REPO / "item_banks" / "agentdojo-2d"
LIVE_ITEMS = ["banking.user_task_0", "banking.user_task_0.injection_task_3"]
"""One utility and one security item whose ground truths AgentDojo's checks accept."""


def _subset(folder: Path) -> Path:
    doc = json.loads((BANK_2D / "bank.json").read_text(encoding="utf-8"))
    doc["items"] = [it for it in doc["items"] if it["id"] in LIVE_ITEMS]
    folder.mkdir(parents=True)
    (folder / "bank.json").write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize(
    ("bank", "theta", "message"),
    [
        (BANK_2D, [0.5, -1.0, 0.2], "--theta gives 3 values but bank 'agentdojo-2d' has 2 "
         "dimension(s) (utility, security)"),
        (REPO / "item_banks" / "shell-safety", [0.5, -1.0], "--theta gives 2 values but bank "
         "'shell-safety' has 1 dimension(s)"),
    ],
)  # fmt: skip
def test_a_theta_that_does_not_fit_the_bank_is_refused_before_anything_runs(
    tmp_path: Path, bank: Path, theta: list[float], message: str
) -> None:
    with pytest.raises(ConfigError, match="--theta gives") as err:
        api.demo(theta=theta, bank=bank, runs_dir=tmp_path / "runs", progress=False)
    assert message in str(err.value)
    assert not list((tmp_path / "runs").glob("*"))  # no session started


def test_cli_reads_a_theta_vector_and_refuses_a_bad_one(tmp_path: Path, capsys) -> None:
    runs = str(tmp_path / "runs")
    code = main(["demo", "--bank", str(BANK_2D), "--theta=0.5,-1,2", "--runs-dir", runs])
    err = capsys.readouterr().err
    assert code == 2 and "--theta gives 3 values but bank 'agentdojo-2d'" in err
    assert "hint: give one θ (every dimension), or one per dimension" in err
    assert "--theta 0.5,0.5" in err
    code = main(["demo", "--bank", str(BANK_2D), "--theta=0.5,x", "--runs-dir", runs])
    assert code == 2 and "--theta" in capsys.readouterr().err


def test_a_two_dimensional_demo_plays_the_theta_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    bank = _subset(tmp_path / "ad2")
    summary = api.demo(
        theta=[-2.5, 2.5], bank=bank, max_items=2, se=0.01, runs_dir=tmp_path / "runs",
        progress=False,
    )  # fmt: skip
    assert summary["status"] == "completed" and summary["n_items"] == 2
    assert summary["true_theta"] == [-2.5, 2.5]
    assert list(summary["dimensions"]) == ["utility", "security"]
    # far apart on the two traits: the agent fails the task yet resists the injection
    # (P = 0.92 and 0.96 at this θ; either trait's θ alone on both would likely break one)
    scores = {t["item"]: t["score"] for t in summary["trajectory"]}
    assert scores["banking.user_task_0"] == 0
    assert scores["banking.user_task_0.injection_task_3"] >= 1
    text = _format_summary(summary)
    assert "true θ of the simulated agent: utility -2.500 (" in text
    assert "security +2.500 (" in text
    # the trajectory plot draws each dimension's true θ (a real PNG)
    png = api.show(summary["session"], runs_dir=tmp_path / "runs", plot=tmp_path / "t.png")
    assert Path(png["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
