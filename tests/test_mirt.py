"""Multidimensional GRM calibration: D = 1 unchanged, recovery, the CLI's bank, choosing D."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.bank import load_bank
from orchestrator.cli import main
from orchestrator.data import read_responses, write_responses
from orchestrator.errors import ConfigError
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.calibrate.dimensionality import (
    Candidate,
    compare_dimensions,
    n_parameters,
    preferred,
)
from orchestrator.irt.item_priors import ItemPriors
from orchestrator.irt.model import GradedResponseModel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the machine is shared; small fits gain nothing from threads


def _simulate(
    n_subjects: int, n_items: int, k: int, rho: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simple structure on 2 dimensions (even items on the first), θ ~ N(0, [[1, ρ], [ρ, 1]])."""
    r = np.random.default_rng(seed)
    corr = np.array([[1.0, rho], [rho, 1.0]])
    theta = r.normal(size=(n_subjects, 2)) @ np.linalg.cholesky(corr).T
    load = np.zeros((n_items, 2), dtype=np.int64)
    load[np.arange(n_items), np.arange(n_items) % 2] = 1
    a = np.exp(r.normal(0.2, 0.25, (n_items, 2))) * load
    b = r.normal(0.0, 0.8, (n_items, 1)) + np.sort(r.uniform(-1.2, 1.2, (n_items, k - 1)), 1)
    x = GradedResponseModel(a, -(np.linalg.norm(a, axis=1)[:, None] * b)).sample(theta, r)
    return a, b, load, x


def test_d1_reproduces_the_shipped_agentdojo_bank() -> None:
    """D = 1 through the multidimensional engine gives the shipped bank's numbers exactly."""
    bank = json.loads((REPO / "item_banks/agentdojo/bank.json").read_text())
    resp = read_responses(REPO / "item_banks/agentdojo/responses.csv")
    k_of = {it["id"]: len(it["b"]) + 1 for it in bank["items"]}
    tags = {it["id"]: it["tags"]["item_type"] for it in bank["items"]}
    # excluded items (one observed category) are not in the bank: their K as calibrated
    k = np.array([k_of.get(i, 2 if "injection" not in i else 3) for i in resp.items])
    cal = GRMCalibrator(n_dims=1).fit(
        resp.subject_idx, resp.item_idx, resp.score, n_categories=k, item_ids=list(resp.items)
    )
    assert cal.n_dims_ == 1 and cal.structure_ == "unidimensional"
    items = {it["id"]: it for it in bank["items"]}
    assert sorted(cal.item_ids_) == sorted(items)
    da = max(abs(items[i]["a"] - a) for i, a in zip(cal.item_ids_, cal.a_, strict=True))
    db = max(
        abs(x - y)
        for i, row in zip(cal.item_ids_, cal.b_, strict=True)
        for x, y in zip(items[i]["b"], row[np.isfinite(row)], strict=True)
    )
    assert da < 1e-9 and db < 1e-9
    assert cal.loglik_ == pytest.approx(bank["calibration"]["log_likelihood"], abs=1e-8)
    assert set(tags.values()) == {"benign_utility", "injection_pair"}


def test_confirmatory_2d_recovers_slopes_thresholds_and_the_latent_correlation() -> None:
    a, b, load, x = _simulate(600, 16, 3, rho=0.5, seed=7)
    s, i = np.nonzero(np.ones_like(x))
    cal = GRMCalibrator(n_dims=2, loadings=load, n_quad=31).fit(
        s, i, x[s, i], n_categories=np.full(16, 3)
    )
    assert cal.converged_ and cal.structure_ == "confirmatory"
    est = np.asarray(cal.a_)
    assert est.shape == (16, 2)
    assert np.all(est[load == 0] == 0.0)  # not loaded: no slope
    assert np.corrcoef(est[load > 0], a[load > 0])[0, 1] > 0.8
    assert np.corrcoef(cal.b_.ravel(), b.ravel())[0, 1] > 0.97
    rho, se = cal.latent_corr_[0, 1], cal.latent_corr_se_[0, 1]
    assert 0.0 < se < 0.15 and abs(rho - 0.5) < 3 * se + 0.05
    assert np.all(np.isfinite(np.asarray(cal.a_se_)[load > 0]))


def test_cli_calibrates_a_2d_bank_from_a_tag_that_estimate_loads(tmp_path: Path, capsys) -> None:
    _a, _b, load, x = _simulate(300, 12, 3, rho=0.3, seed=1)
    ids = [f"{'use' if load[j, 0] else 'safe'}{j}" for j in range(12)]
    rows = [(f"m{s}", ids[j], x[s, j]) for s in range(300) for j in range(12)]
    path = write_responses(tmp_path / "responses.csv", rows)
    items = tmp_path / "items.csv"
    kind = ["utility" if load[j, 0] else "security" for j in range(12)]
    items.write_text(
        "item,item_type,n_categories\n"
        + "".join(f"{i},{t},3\n" for i, t in zip(ids, kind, strict=True))
    )
    out = tmp_path / "bk"
    code = main(
        ["calibrate", str(path), "--items", str(items), "--tags", "item_type", "--dims", "2",
         "--loadings", "tag:item_type", "--n-quad", "31", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "latent correlation" in printed and "confirmatory" in printed
    bank = load_bank(out)
    assert bank.n_dims == 2 and sorted(bank.dimensions) == ["security", "utility"]
    on = bank.slopes != 0
    is_use = np.array([i.startswith("use") for i in bank.ids])
    util = bank.dimensions.index("utility")
    assert np.array_equal(on[:, util], is_use) and np.array_equal(on[:, 1 - util], ~is_use)
    corr = np.array(bank.spec.prior.correlation)
    assert corr.shape == (2, 2) and -1 < corr[0, 1] < 1 and corr[0, 1] > 0
    details = bank.spec.calibration.details
    assert details["dimensions"]["structure"] == "confirmatory"
    assert details["dimensions"]["latent_correlation_se"][0][1] > 0
    assert main(["estimate", "--bank", str(out), str(path)]) == 0
    assert "m0" in capsys.readouterr().out


def test_cli_refuses_loadings_without_dimensions(tmp_path: Path, capsys) -> None:
    path = write_responses(tmp_path / "r.csv", [("m0", "i0", 0), ("m1", "i0", 1)])
    code = main(["calibrate", str(path), "--loadings", "tag:item_type", "--out", str(tmp_path)])
    assert code != 0
    err = capsys.readouterr().err
    assert "--loadings needs several dimensions" in err


def test_per_item_priors_are_one_dimensional() -> None:
    priors = ItemPriors.from_lists([(0.0, 0.5), None], [[(0.0, 1.0)], None])
    with pytest.raises(ConfigError, match="one-dimensional"):
        GRMCalibrator(n_dims=2, item_priors=priors).fit([0, 1], [0, 1], [0, 1])


def test_heldout_loglik_prefers_two_dimensions_on_two_dimensional_data() -> None:
    _a, _b, load, x = _simulate(400, 16, 3, rho=0.1, seed=11)
    s, i = np.nonzero(np.ones_like(x))
    comp = compare_dimensions(
        s, i, x[s, i], n_categories=np.full(16, 3), n_subjects=400, folds=2, seed=0,
        candidates=[Candidate("D=1", 1), Candidate("D=2", 2, load)],
        calibrator_args={"n_quad": 25},
    )  # fmt: skip
    one, two = comp.fits
    assert comp.n_heldout == 400 * 16 and one.n_heldout == two.n_heldout == comp.n_heldout
    assert two.heldout_loglik > one.heldout_loglik + 20  # far beyond fold noise here
    assert one.heldout_per_obs > comp.baseline_per_obs  # IRT beats item base rates
    assert preferred(comp.fits, "heldout") is two and preferred(comp.fits, "bic") is two
    # parameters: 16 slopes + 32 thresholds (+ 1 correlation for the confirmatory D = 2)
    assert (one.n_parameters, two.n_parameters) == (48, 49)
    assert two.latent_correlation[0, 1] < 0.4
    # Q3 after the fit: the 1-D model leaves same-dimension pairs' residuals correlated
    same = load[:, :1] == load[:, :1].T
    np.fill_diagonal(same, False)
    assert np.mean(one.q3.q3[same]) > np.mean(two.q3.q3[same]) + 0.05


def test_n_parameters_of_an_exploratory_fit_subtracts_the_rotation() -> None:
    _a, _b, _load, x = _simulate(300, 10, 2, rho=0.3, seed=5)
    s, i = np.nonzero(np.ones_like(x))
    cal = GRMCalibrator(n_dims=2, n_quad=21, compute_se=False, max_iter=50).fit(
        s, i, x[s, i], n_categories=np.full(10, 2)
    )
    assert cal.structure_ == "exploratory"
    free = int((np.asarray(cal.a_) != 0).sum())
    assert n_parameters(cal) == free + 10 - 1


def test_cli_update_refuses_dimensions(tmp_path: Path, capsys) -> None:
    path = write_responses(tmp_path / "r.csv", [("m0", "i0", 0), ("m1", "i0", 1)])
    code = main(
        ["calibrate", str(path), "--update", str(REPO / "item_banks/xstest"), "--dims", "2",
         "--out", str(tmp_path / "bk")]
    )  # fmt: skip
    assert code != 0
    assert "--update learns a one-dimensional bank" in capsys.readouterr().err


def test_qmc_points_are_not_refined_so_no_e_step_or_convergence_check_is_wasted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QMC points are fixed: the fit stops at its first converged iteration, one E-step each."""
    from orchestrator.irt.calibrate._em import EMModel

    _a, _b, load, x = _simulate(300, 12, 3, rho=0.3, seed=7)
    s, i = np.nonzero(np.ones_like(x))
    calls: list[int] = []
    e_step = EMModel.e_step

    def counted(self: EMModel, *args: object, **kwargs: object):
        calls.append(1)
        return e_step(self, *args, **kwargs)

    monkeypatch.setattr(EMModel, "e_step", counted)
    cal = GRMCalibrator(n_dims=2, loadings=load, quadrature="qmc", n_qmc=500, compute_se=False).fit(
        s, i, x[s, i], n_categories=np.full(12, 3)
    )
    assert cal.converged_ and cal.n_quad_ == 500
    assert len(calls) == cal.n_iter_ + 1  # one per iteration and the final one
    changes = [h.change for h in cal.history_]
    assert changes[-1] < cal.tol <= min(changes[:-1])
