"""Health on real data: agentdojo (17 agent pipelines × 194 items), calibrated by the project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.api import health
from orchestrator.bank import load_bank
from orchestrator.data import Responses, read_responses
from orchestrator.report import HealthThresholds, analyse_health
from tests.conftest import REPO

AGENTDOJO = REPO / "item_banks" / "agentdojo"  # the shipped bank and the file it was fitted on


@pytest.fixture(scope="module")
def bank_dir() -> Path:
    return AGENTDOJO


def test_agentdojo_health_finds_the_utility_security_split(bank_dir: Path) -> None:
    doc = health(bank_dir, AGENTDOJO / "responses.csv", thresholds={"q3_bootstrap": 20})
    assert doc["data"]["n_subjects"] == 17
    # items with one observed category were left out at calibration, and said so
    assert len(doc["discrimination"]["excluded_at_calibration"]) == 12
    by_tag = {t["tag"]: t for t in doc["local_dependence"]["tag_dependence"]}
    item_type = by_tag["item_type"]
    assert item_type["p_value"] <= 0.01 and item_type["within"] > item_type["between"] + 0.05
    # 17 subjects cannot single out redundant pairs: chance reaches Q3 ≈ 1
    assert doc["local_dependence"]["flagged_pairs"] == []
    assert doc["local_dependence"]["threshold"] > 0.9
    assert doc["item_fit"]["sx2_status"].startswith("skipped: 17 subjects")


def test_a_gaming_pipeline_stands_out_among_real_ones(bank_dir: Path) -> None:
    bank = load_bank(bank_dir)
    resp = read_responses(AGENTDOJO / "responses.csv")
    rows = [
        (resp.subjects[s], resp.items[i], int(x))
        for s, i, x in zip(resp.subject_idx, resp.item_idx, resp.score, strict=True)
    ]
    centre = np.array([np.mean(r[np.isfinite(r)]) for r in bank.b])
    hard = centre > np.median(centre)
    # fails the easy half on purpose, passes the hard half
    rows += [
        ("gamer", iid, int(bank.n_categories[j] - 1) if hard[j] else 0)
        for j, iid in enumerate(bank.ids)
    ]
    report = analyse_health(
        bank, Responses.from_triples(rows), thresholds=HealthThresholds(q3_bootstrap=0)
    )
    gamer = next(s for s in report.subjects if s.subject == "gamer")
    assert gamer.flagged and gamer.lz is not None and gamer.lz < -10
    assert report.person_fit.flagged[0] == "gamer"
