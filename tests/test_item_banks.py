"""The shipped item banks: valid, documented, and replayable from inside the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator._io import sha256_file
from orchestrator.api import estimate
from orchestrator.bank import load_bank

BANKS = Path(__file__).resolve().parents[1] / "item_banks"
FOLDERS = sorted(
    p.parent
    for p in BANKS.glob("*/bank.json")
    if not load_bank(p.parent).is_provisional  # shell-safety: see test_scenario_spec.py
)


def test_banks_are_shipped() -> None:
    names = {p.name for p in FOLDERS}
    assert {"agentdojo", "xstest", "jailbreakbench", "alpaca_eval", "alpaca_eval_3level"} <= names
    # at least one bank can be replayed from a fresh clone (responses in the repository)
    assert (BANKS / "agentdojo" / "responses.csv").is_file()


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_bank_is_valid_calibrated_and_documented(folder: Path) -> None:
    bank = load_bank(folder)
    cal = bank.spec.calibration
    assert cal.status == "calibrated" and cal.converged is True
    assert cal.n_subjects and cal.log_likelihood is not None and cal.data_sha256
    assert np.all(bank.a > 0) and np.all(bank.a < 20)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for heading in ("## Data", "License", "## Fit", "## How far to trust it"):
        assert heading in readme
    copy = folder / "responses.csv"
    if copy.exists():  # the copy is the very file the bank was calibrated on
        assert sha256_file(copy) == cal.data_sha256
        rows = estimate(bank, copy)["subjects"]
        assert len(rows) == cal.n_subjects
        assert all(np.isfinite(r["theta"]) and r["se"] > 0 for r in rows)
