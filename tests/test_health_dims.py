"""`health --dims`: how many dimensions the responses support, in the JSON, HTML and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.bank import ItemBank
from orchestrator.cli import main
from orchestrator.data import Responses, write_responses
from orchestrator.errors import ConfigError
from orchestrator.irt.model import GradedResponseModel
from orchestrator.report import (
    DimensionCheck,
    HealthReport,
    HealthThresholds,
    analyse_health,
    render_html,
)
from orchestrator.report.html import DIMENSIONS_SECTION

N_SUB, N_ITEMS, K = 300, 12, 3
FAST = {"q3_bootstrap": 0, "fit_replicates": 20}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the machine is shared; small fits gain nothing from threads


def _bank_and_responses(rho: float | None, seed: int) -> tuple[ItemBank, Responses]:
    """Even items on one trait, odd on another (θ correlation ``rho``; None: one trait).

    The bank is one-dimensional (what health's other sections use) and tags each
    item's trait as ``trait``; the comparison calibrates afresh on the responses.
    """
    r = np.random.default_rng(seed)
    if rho is None:
        theta = np.repeat(r.normal(size=(N_SUB, 1)), 2, axis=1)
    else:
        theta = r.normal(size=(N_SUB, 2)) @ np.linalg.cholesky([[1.0, rho], [rho, 1.0]]).T
    load = np.zeros((N_ITEMS, 2))
    load[np.arange(N_ITEMS), np.arange(N_ITEMS) % 2] = 1.0
    a = 1.6 * np.exp(r.normal(0.0, 0.2, N_ITEMS))
    b = r.normal(0.0, 0.6, (N_ITEMS, 1)) + np.linspace(-1.0, 1.0, K - 1)
    x = GradedResponseModel(a[:, None] * load, -a[:, None] * b).sample(theta, r)
    ids = [f"it{j:02d}" for j in range(N_ITEMS)]
    tags = [{"trait": "even" if j % 2 == 0 else "odd"} for j in range(N_ITEMS)]
    bank = ItemBank.from_params("twotraits", ids, a, b, tags=tags)
    s, i = np.nonzero(np.ones_like(x))
    resp = Responses.from_triples(
        (f"s{p:04d}", ids[q], int(x[p, q])) for p, q in zip(s, i, strict=True)
    )
    return bank, resp


def _report(
    rho: float | None, seed: int, dims: tuple[int, ...], loadings: str | None
) -> tuple[HealthReport, list[str]]:
    """Through the API (what the CLI calls), read back into the report model."""
    from orchestrator.api import health

    bank, resp = _bank_and_responses(rho, seed)
    lines: list[str] = []
    doc = health(
        bank, resp, thresholds=FAST, dims=dims, folds=2, loadings=loadings, progress=lines.append
    )
    return HealthReport.model_validate(doc), lines


@pytest.fixture(scope="module")
def two_d() -> tuple[HealthReport, list[str]]:
    return _report(0.2, seed=3, dims=(1, 2), loadings="tag:trait")


def test_two_dimensional_data_prefer_two_dimensions(two_d) -> None:
    report, lines = two_d
    dm = report.dimensionality
    assert dm is not None
    one, two = dm.fits
    assert (one.label, two.label) == ("D=1", "D=2 confirmatory")
    assert dm.preferred == "D=2 confirmatory" and dm.preferred_n_dims == 2
    assert dm.preferred_by == {"heldout": two.label, "aic": two.label, "bic": two.label}
    assert two.heldout_per_response > one.heldout_per_response + 0.02
    assert two.folds_won == 2 and one.folds_won == 0
    assert dm.n_heldout == N_SUB * N_ITEMS
    assert one.heldout_per_response > dm.baseline_per_response  # IRT beats item shares
    # slopes + thresholds (+ the one correlation of the confirmatory fit)
    assert (one.n_parameters, two.n_parameters) == (N_ITEMS * K, N_ITEMS * K + 1)
    assert two.dimensions == ["even", "odd"]
    rho, se = two.latent_correlation[0][1], two.latent_correlation_se
    assert se is not None and 0.0 < se[0][1] < 0.15
    assert abs(rho - 0.2) < 3 * se[0][1]
    # the 1-D fit leaves same-trait pairs' residuals correlated; the 2-D fit does not
    assert one.q3_flagged_pairs > two.q3_flagged_pairs
    assert one.q3_max_abs is not None and two.q3_max_abs is not None
    assert two.q3_max_abs < one.q3_max_abs
    assert two.q3_mean_abs is not None and one.q3_mean_abs is not None
    assert two.q3_mean_abs < one.q3_mean_abs
    assert "prefers D=2 confirmatory" in dm.findings[0]
    assert "even~odd" in " ".join(dm.findings)
    assert dm.findings[0] in report.summary
    # progress: the plan, then every fit (2 structures × (all + 2 folds))
    assert any("dimensions: D=1, D=2 confirmatory; 2 folds, 6 fits" in m for m in lines)
    assert sum(m.startswith("dimensions: fold") for m in lines) == 4


def test_one_dimensional_data_prefer_one_dimension() -> None:
    report, _ = _report(None, seed=4, dims=(2, 1), loadings=None)
    dm = report.dimensionality
    assert dm is not None
    assert [f.label for f in dm.fits] == ["D=1", "D=2 exploratory"]
    one, two = dm.fits
    assert dm.preferred == "D=1" and dm.preferred_by["bic"] == "D=1"
    assert one.heldout_per_response > two.heldout_per_response
    assert two.structure == "exploratory" and two.dimensions == ["F1", "F2"]


def test_json_schema_round_trips_and_html_shows_the_table(two_d) -> None:
    report, _ = two_d
    doc = report.to_dict()
    assert doc["schema_version"] == 3
    text = json.dumps(doc, allow_nan=False)
    again = HealthReport.model_validate_json(text)
    assert again.to_dict() == doc
    row = doc["dimensionality"]["fits"][1]
    assert set(row) >= {
        "n_parameters", "log_likelihood", "aic", "bic", "heldout_per_response", "fold_loglik",
        "folds_won", "latent_correlation", "latent_correlation_se", "q3_max_abs", "q3_mean_abs",
        "q3_flagged_pairs",
    }  # fmt: skip
    assert doc["dimensionality"]["loadings"] == "tag trait: each value is its dimension"
    page = render_html(again)
    sid, title = DIMENSIONS_SECTION
    assert f'id="{sid}"' in page and f'href="#{sid}"' in page and title in page
    assert "<b>D=2 confirmatory</b> (preferred)" in page and "even~odd" in page


def test_report_without_dims_has_no_dimension_section(tmp_path: Path) -> None:
    bank, resp = _bank_and_responses(0.2, seed=3)
    report = analyse_health(bank, resp, thresholds=HealthThresholds(**FAST))
    assert report.dimensionality is None and report.to_dict()["dimensionality"] is None
    assert f'id="{DIMENSIONS_SECTION[0]}"' not in render_html(report)


def test_dimension_check_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="from 1 to 3; got 4"):
        DimensionCheck((1, 4))
    with pytest.raises(ConfigError, match="from 1 to 3; got 0"):
        DimensionCheck((0, 1))
    with pytest.raises(ConfigError, match="at least two different"):
        DimensionCheck((2, 2))
    with pytest.raises(
        ConfigError, match=r"--folds must be at least 2 \(each fold is held out once\); got 1"
    ):
        DimensionCheck((1, 2), folds=1)


def _write(tmp_path: Path) -> tuple[Path, Path]:
    bank, resp = _bank_and_responses(0.2, seed=3)
    bank.save(tmp_path / "bank")
    rows = [(resp.subjects[s], resp.items[i], int(v)) for s, i, v in zip(
        resp.subject_idx, resp.item_idx, resp.score, strict=True)]  # fmt: skip
    return tmp_path / "bank", write_responses(tmp_path / "r.csv", rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dims", "1", "4"], "--dims takes numbers of dimensions from 1 to 3; got 4"),
        (["--dims", "2"], "--dims needs at least two different numbers of dimensions"),
        (["--dims", "1", "2", "--folds", "1"], "--folds must be at least 2"),
        (["--folds", "3"], "--loadings and --folds belong to the dimension comparison"),
        (["--loadings", "tag:trait"], "--loadings and --folds belong to the dimension"),
        (["--dims", "1", "3", "--loadings", "tag:trait"], "does not compare D = 2"),
        (["--dims", "1", "2", "--loadings", "tag:trat"], "no column 'trat'"),
    ],
)
def test_cli_refuses_bad_dimension_options(tmp_path: Path, capsys, extra, message) -> None:
    bank, csv = _write(tmp_path)
    out = tmp_path / "h.html"
    code = main(["health", "--bank", str(bank), "--responses", str(csv), "--out", str(out),
                 "--quiet", *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert code in (1, 2) and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one line + hint
    assert not out.exists()


def test_cli_prints_the_preferred_dimension(tmp_path: Path, capsys) -> None:
    bank, csv = _write(tmp_path)
    out = tmp_path / "h.html"
    code = main(["health", "--bank", str(bank), "--responses", str(csv), "--out", str(out),
                 "--q3-simulations", "0", "--fit-replicates", "20",
                 "--dims", "1", "2", "--folds", "2", "--loadings", "tag:trait"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "prefers D=2 confirmatory" in captured.out
    assert "dimensions: fold 2/2, D=2 confirmatory" in captured.err  # progress on stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["dimensionality"]["preferred_n_dims"] == 2
