"""Health report: planted defects are found, clean data raise no alarms, HTML/JSON/CLI work."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bank import ItemBank
from orchestrator.cli import main
from orchestrator.data import Responses, write_responses
from orchestrator.errors import DataError
from orchestrator.irt import sample_responses
from orchestrator.report import HealthReport, analyse_health, render_html
from orchestrator.report.html import SECTIONS
from tests.test_fit import spaced_params

N_ITEMS, N_SUB = 30, 600
REVERSED, LOW_A, MERGED, DUP_A, DUP_B = 0, 3, 4, 5, 6


def _responses(x: np.ndarray, ids: list[str], mask: np.ndarray | None = None) -> Responses:
    s, i = np.nonzero(np.ones_like(x, dtype=bool) if mask is None else mask)
    return Responses.from_triples(
        (f"s{a:04d}", ids[b], int(x[a, b])) for a, b in zip(s, i, strict=True)
    )


def planted() -> tuple[ItemBank, np.ndarray]:
    a, b = spaced_params(N_ITEMS, seed=11)
    a[LOW_A] = 0.2
    b[MERGED] = [-0.6, 0.0, 0.04]  # category 2 peaks at tanh(a·0.04/4) ≈ 0.01
    a[DUP_B], b[DUP_B] = a[DUP_A], b[DUP_A]
    ids = [f"it{j:02d}" for j in range(N_ITEMS)]
    bank = ItemBank.from_params("planted", ids, a, b)
    rng = np.random.default_rng(12)
    x = sample_responses(rng.normal(size=N_SUB), a, b, rng)
    x[:, REVERSED] = 3 - x[:, REVERSED]  # mislabelled: the scale is upside down
    noise = rng.random(N_SUB) < 0.1
    x[:, DUP_B] = np.where(noise, rng.integers(0, 4, N_SUB), x[:, DUP_A])
    x[0] = np.where(b[:, 1] < 0, 0, 3)  # s0000 games the test: fails easy, passes hard
    return bank, x


@pytest.fixture(scope="module")
def planted_report() -> HealthReport:
    bank, x = planted()
    return analyse_health(bank, _responses(x, bank.ids))


@pytest.fixture(scope="module")
def clean_report() -> HealthReport:
    a, b = spaced_params(N_ITEMS, seed=21)
    bank = ItemBank.from_params("clean", [f"it{j:02d}" for j in range(N_ITEMS)], a, b)
    rng = np.random.default_rng(22)
    x = sample_responses(rng.normal(size=N_SUB), a, b, rng)
    return analyse_health(bank, _responses(x, bank.ids))


def _flagged(report: HealthReport, flag: str) -> set[str]:
    return {it.id for it in report.items if flag in it.flags}


def test_reversed_item_is_defective_and_misfits(planted_report: HealthReport) -> None:
    r = planted_report
    assert r.discrimination.defective == ["it00"]
    item = r.items[REVERSED]
    assert item.item_rest_r is not None and item.item_rest_r < -0.3
    assert "misfit" in item.flags and item.outfit is not None and item.outfit > 1.3
    assert any("it00 (r = -0." in f for f in r.discrimination.findings)


def test_duplicated_pair_is_flagged_by_q3_and_clustered(planted_report: HealthReport) -> None:
    ld = planted_report.local_dependence
    assert [(p.item_a, p.item_b) for p in ld.flagged_pairs] == [("it05", "it06")]
    assert ld.flagged_pairs[0].q3_adjusted > 0.5
    assert [c.items for c in ld.clusters] == [["it05", "it06"]]
    assert _flagged(planted_report, "local_dependence") == {"it05", "it06"}


def test_gaming_subject_has_low_lz_and_p(planted_report: HealthReport) -> None:
    gamer = planted_report.subjects[0]
    assert gamer.subject == "s0000" and gamer.flagged
    assert gamer.lz is not None and gamer.lz < -3
    assert gamer.fit_p is not None and gamer.fit_p < 0.01
    assert planted_report.person_fit.flagged[0] == "s0000"  # the most aberrant one


def test_low_slope_and_merged_thresholds_are_flagged(planted_report: HealthReport) -> None:
    assert planted_report.discrimination.low_slope == ["it03"]
    assert planted_report.discrimination.merged_thresholds == ["it04"]
    assert planted_report.items[MERGED].min_category_max_prob < 0.02


def test_healthy_items_of_the_planted_bank_are_not_defective(planted_report: HealthReport) -> None:
    misfit = _flagged(planted_report, "misfit") - {"it00"}
    assert len(misfit) <= 2  # the reversed item distorts θ̂ a little for everyone
    assert _flagged(planted_report, "defective") == {"it00"}


def test_clean_data_raise_no_alarms(clean_report: HealthReport) -> None:
    r = clean_report
    assert r.discrimination.defective == []
    assert r.discrimination.low_slope == []
    assert r.discrimination.merged_thresholds == []
    assert r.local_dependence.flagged_pairs == []
    assert len(r.item_fit.misfit) <= 1
    assert r.item_fit.sx2_status == "computed"
    assert (r.item_fit.share_p_below_05["S-X2"] or 0) <= 0.15
    share = r.person_fit.share_flagged or 0.0
    assert 0.02 <= share <= 0.085  # nominal 5 %: the bootstrap p-value is not conservative


def test_saturation_at_the_top_is_reported() -> None:
    rng = np.random.default_rng(31)
    n = 40
    a = 1.5 * np.exp(rng.normal(0, 0.2, n))
    centre = rng.uniform(-2.0, 0.2, n)  # every item easy: nothing above θ ≈ 1.5
    b = centre[:, None] + np.array([-0.8, 0.0, 0.8])
    bank = ItemBank.from_params("easy", [f"e{j:02d}" for j in range(n)], a, b)
    theta = rng.normal(0.8, 1.0, 500)
    x = sample_responses(theta, a, b, rng)
    r = analyse_health(bank, _responses(x, bank.ids))
    inf = r.information
    assert inf.saturation_top is not None and 0.5 < inf.saturation_top < 2.0
    assert inf.share_above_saturation is not None and inf.share_above_saturation > 0.1
    assert inf.gaps[-1].hi == inf.theta[-1]
    assert any(f.startswith("Saturation at the top") for f in inf.findings)
    assert any(f.startswith("Saturation at the top") for f in r.summary)
    # the bank does measure well in the middle of its difficulty range
    assert any(iv.lo < -1.0 < iv.hi for iv in inf.well_measured)


def test_sparse_data_skip_sx2_but_keep_pairwise_statistics() -> None:
    bank, x = planted()
    mask = np.random.default_rng(41).random(x.shape) < 0.5
    mask[:, DUP_A] = mask[:, DUP_B] = True
    r = analyse_health(bank, _responses(x, bank.ids, mask))
    assert r.item_fit.sx2_status.startswith("skipped: 0 subjects answered all 30")
    assert all(it.sx2 is None for it in r.items)
    assert [c.items for c in r.local_dependence.clusters] == [["it05", "it06"]]
    assert "it00" in r.discrimination.defective
    assert r.data["density"] < 0.6


def test_json_is_valid_versioned_and_round_trips(planted_report: HealthReport) -> None:
    doc = planted_report.to_dict()
    text = json.dumps(doc, allow_nan=False)  # NaN would not be JSON
    assert doc["schema_version"] == 3
    again = HealthReport.model_validate_json(text)
    assert again.to_dict() == doc
    assert again.arrays is None  # plot arrays are not serialised
    for section in ("information", "discrimination", "item_fit", "local_dependence", "person_fit"):
        assert doc[section]["findings"], section
    assert doc["thresholds"]["fit_replicates"] == 100


def test_html_is_self_contained_with_every_section_and_images(planted_report) -> None:
    page = render_html(planted_report)
    for sid, _title in SECTIONS:
        assert f'id="{sid}"' in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # information, curves, item fit, Q3, person fit
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert "s0000" in page and "it05, it06" in page
    # a report read back from JSON still renders (without the Q3 map)
    again = HealthReport.model_validate_json(json.dumps(planted_report.to_dict()))
    assert "Q3 heat map: not available" in render_html(again)


def _write(tmp_path: Path) -> tuple[Path, Path]:
    bank, x = planted()
    bank.save(tmp_path / "bank")
    rows = [(f"s{i:04d}", bank.ids[j], int(x[i, j])) for i in range(200) for j in range(N_ITEMS)]
    return tmp_path / "bank", write_responses(tmp_path / "r.csv", rows)


def test_cli_writes_html_and_json_and_prints_json(tmp_path: Path, capsys) -> None:
    bank, csv = _write(tmp_path)
    out = tmp_path / "rep" / "health.html"
    code = main(
        ["health", "--bank", str(bank), "--responses", str(csv), "--out", str(out), "--json",
         "--figures", str(tmp_path / "figs"), "--fit-replicates", "40"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert doc == json.loads(out.with_suffix(".json").read_text())
    assert doc["thresholds"]["fit_replicates"] == 40
    assert doc["data"]["sha256"] and doc["data"]["n_subjects"] == 200
    assert "s0000" in doc["person_fit"]["flagged"]
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert {p.name for p in (tmp_path / "figs").iterdir()} >= {"information.png", "q3.png"}
    assert "Q3:" in captured.err and "S-X²" in captured.err  # progress on stderr


def test_cli_human_output_lists_the_summary(tmp_path: Path, capsys) -> None:
    bank, csv = _write(tmp_path)
    out = tmp_path / "h.html"
    assert main(["health", "--bank", str(bank), "--responses", str(csv), "--out", str(out),
                 "--quiet", "--q3-simulations", "0"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "- Items flagged: 1 defective/mislabelled, 0 suspect, 0 constant" in captured.out
    assert f"wrote {out}" in captured.out
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["local_dependence"]["n_bootstrap"] == 0
    assert doc["local_dependence"]["threshold"] == 0.2


def test_cli_bad_inputs_are_one_line_errors(tmp_path: Path, capsys) -> None:
    bank, csv = _write(tmp_path)
    (tmp_path / "bad.csv").write_text("subject,item,score\nm,it99,1\nm,it01,1\n")
    code = main(["health", "--bank", str(bank), "--responses", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "x.html")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "bad.csv:2: item 'it99' is not in bank 'planted'" in err
    assert "Traceback" not in err
    code = main(["health", "--bank", str(bank), "--responses", str(csv),
                 "--out", str(tmp_path / "x.pdf")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--out must name an .html file; got" in err
    code = main(["health", "--bank", str(bank), "--responses", str(csv),
                 "--out", str(tmp_path / "x.html"), "--q3-simulations", "-1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument --q3-simulations: must be ≥ 0; got -1" in err
    code = main(["health", "--bank", str(tmp_path / "nope"), "--responses", str(csv),
                 "--out", str(tmp_path / "x.html")])  # fmt: skip
    assert code == 1 and "bank not found" in capsys.readouterr().err
    one = tmp_path / "one.csv"
    one.write_text("subject,item,score\nm,it01,1\nm,it02,0\n")
    code = main(["health", "--bank", str(bank), "--responses", str(one),
                 "--out", str(tmp_path / "x.html")])  # fmt: skip
    assert code == 1 and "at least 2 subjects; got 1" in capsys.readouterr().err


def test_unknown_threshold_is_a_config_error(tmp_path: Path) -> None:
    from orchestrator.api import health
    from orchestrator.errors import ConfigError

    bank, csv = _write(tmp_path)
    with pytest.raises(ConfigError, match="fit_replicate"):
        health(bank, csv, thresholds={"fit_replicate": 30})
    with pytest.raises(ConfigError, match=r"q3_bootstrap = 10 can never reach alpha = 0\.05"):
        health(bank, csv, thresholds={"q3_bootstrap": 10})


def test_tag_dimension_and_constant_item_are_reported() -> None:
    rng = np.random.default_rng(51)
    n_sub, n = 300, 24
    a, b = spaced_params(n, seed=52)
    b[0] = [-9.0, -8.5, -8.0]  # nobody fails this item: a constant column
    t1 = rng.normal(size=n_sub)
    t2 = 0.3 * t1 + np.sqrt(0.91) * rng.normal(size=n_sub)
    x = sample_responses(t1, a, b, rng)
    x[:, 12:] = sample_responses(t2, a[12:], b[12:], rng)
    tags = [{"kind": "utility" if j < 12 else "security", "odd": str(j % 2)} for j in range(n)]
    bank = ItemBank.from_params("twodim", [f"t{j:02d}" for j in range(n)], a, b, tags=tags)
    r = analyse_health(bank, _responses(x, bank.ids))
    assert r.items[0].category_counts == [0, 0, 0, n_sub]
    assert r.discrimination.constant == ["t00"] and "constant" in r.items[0].flags
    by_tag = {t.tag: t for t in r.local_dependence.tag_dependence}
    assert by_tag["kind"].p_value < 0.01 and by_tag["kind"].within > by_tag["kind"].between
    assert by_tag["odd"].p_value > 0.05
    assert any(f.startswith("Items sharing the same 'kind'") for f in r.summary)
    assert not any("'odd'" in f for f in r.summary)
    assert r.items[5].tags == {"kind": "utility", "odd": "1"}


def test_unobserved_items_and_one_item_subjects_are_handled() -> None:
    a, b = spaced_params(12, seed=61)
    bank = ItemBank.from_params("gaps", [f"g{j:02d}" for j in range(12)], a, b)
    rng = np.random.default_rng(62)
    x = sample_responses(rng.normal(size=120), a, b, rng)
    mask = np.ones_like(x, dtype=bool)
    mask[:, 11] = False  # g11 is in the bank but nobody answered it
    mask[119, 1:] = False  # s0119 answered a single item
    r = analyse_health(bank, _responses(x, bank.ids, mask))
    g11 = r.items[11]
    assert g11.n_obs == 0 and g11.flags == [] and g11.infit is None and g11.item_rest_r is None
    assert g11.max_information > 0  # the bank's information still counts it
    lonely = r.subjects[119]
    assert lonely.n_items == 1 and not lonely.flagged
    assert r.person_fit.n_evaluated == 119
    assert r.data["n_items_observed"] == 11
    assert r.item_fit.sx2_status == "computed" and r.item_fit.n_complete_subjects == 119
    json.dumps(r.to_dict(), allow_nan=False)
    assert "g11" in render_html(r)


def test_items_excluded_at_calibration_are_dropped_and_reported(tmp_path: Path) -> None:
    from orchestrator.bank import Calibration

    a, b = spaced_params(10, seed=71)
    ids = [f"c{j:02d}" for j in range(10)]
    cal = Calibration(
        status="calibrated",
        method="test",
        excluded_items=[{"id": "dead", "reason": "single observed category (every score = 1)"}],
    )
    bank = ItemBank.from_params("cal", ids, a, b, calibration=cal)
    rng = np.random.default_rng(72)
    x = sample_responses(rng.normal(size=50), a, b, rng)
    rows = [(f"s{i}", ids[j], int(x[i, j])) for i in range(50) for j in range(10)]
    rows += [(f"s{i}", "dead", 1) for i in range(50)] + [("only-dead", "dead", 1)]
    r = analyse_health(bank, Responses.from_triples(rows))
    assert r.data["excluded_items"] == [
        {"id": "dead", "reason": "single observed category (every score = 1)", "n_obs": 51}
    ]
    assert r.discrimination.excluded_at_calibration == ["dead"]
    assert r.data["n_subjects"] == 50  # 'only-dead' answered nothing the bank has
    assert any("left out of the bank at calibration" in f for f in r.discrimination.findings)
    with pytest.raises(DataError, match="item 'stranger' is not in bank 'cal'"):
        analyse_health(bank, Responses.from_triples([*rows, ("s1", "stranger", 0)]))
