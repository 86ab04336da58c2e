"""Reversed items: found at calibration, reverse-keyed in the bank, read reversed."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.bank import bank_from_calibration, load_bank
from orchestrator.cat import CatController
from orchestrator.data import Responses
from orchestrator.errors import ConfigError
from orchestrator.irt import sample_responses
from orchestrator.irt.calibrate import GRMCalibrator

REVERSED = (3, 8)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    a = np.exp(rng.normal(0.2, 0.25, 12))
    b = rng.normal(0.0, 0.8, (12, 1))
    theta = rng.standard_normal(600)
    x = sample_responses(theta, a, b, rng)
    x[:, REVERSED] = 1 - x[:, REVERSED]  # keyed the wrong way round
    s, i = np.indices(x.shape)
    return a, s.ravel(), i.ravel(), x.ravel()


@pytest.fixture(scope="module")
def fits(data):
    _, s, i, x = data
    return {
        mode: GRMCalibrator(reversed_items=mode, n_quad=61).fit(s, i, x)
        for mode in ("reverse", "exclude", "keep")
    }


def test_reversed_items_are_found_with_their_evidence(data, fits) -> None:
    a = data[0]
    for cal in fits.values():
        found = {r["id"]: r for r in cal.reversed_}
        assert set(found) == {f"item{j}" for j in REVERSED}
        for j in REVERSED:
            row = found[f"item{j}"]
            assert row["item_rest_r"] < -0.2 and row["q"] < 1e-6
            assert row["slope_unconstrained"] == pytest.approx(-a[j], abs=0.3)
            assert row["slope_se"] < 0.3 and row["slope_plain"] < 0.3  # a ≈ 0 when held > 0


def test_the_three_treatments(data, fits) -> None:
    a = data[0]
    rev = fits["reverse"]
    assert [rev.item_ids_[j] for j in np.flatnonzero(rev.reverse_keyed_)] == ["item3", "item8"]
    for j in REVERSED:
        assert rev.a_[rev.item_ids_.index(f"item{j}")] == pytest.approx(a[j], abs=0.3)
    exc = fits["exclude"]
    assert "item3" not in exc.item_ids_ and len(exc.item_ids_) == 10
    assert {e["id"] for e in exc.excluded_} == {"item3", "item8"}
    keep = fits["keep"]
    assert len(keep.item_ids_) == 12 and not keep.reverse_keyed_.any()
    assert keep.a_[3] < 0.3  # today's behaviour, reported but untouched
    with pytest.raises(ConfigError, match="reversed_items"):
        GRMCalibrator(reversed_items="flip").fit([0, 1], [0, 0], [0, 1])


def test_a_reverse_keyed_bank_reads_scores_reversed_everywhere(data, fits, tmp_path) -> None:
    _, s, i, x = data
    bank = bank_from_calibration(fits["reverse"], "rev")
    bank.save(tmp_path)
    again = load_bank(tmp_path)
    assert again.reverse_keyed.tolist() == [j in REVERSED for j in range(12)]
    assert again.spec.calibration.details["reversed_items"]["treatment"] == "reverse"
    resp = Responses.from_triples(
        (f"s{u}", f"item{j}", int(v)) for u, j, v in zip(s[:64], i[:64], x[:64], strict=True)
    )
    aligned = resp.for_bank(again)
    flip = np.isin(aligned.bank_item, REVERSED)
    assert (aligned.score[flip] == 1 - resp.score[flip]).all()
    assert (aligned.score[~flip] == resp.score[~flip]).all()
    ctl = CatController(again, rng=0)
    ctl.record("item3", 1)  # raw 1 on a reversed item reads as 0: evidence of low θ
    plain = CatController(again, rng=0)
    plain.record("item4", 1)
    assert ctl.theta[0] < 0 < plain.theta[0] and ctl.scores == [0]
