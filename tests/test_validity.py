"""`agentcat validity`: scoring, matching, the report, journals, errors, and the real banks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.api import validity
from orchestrator.bank import ItemBank
from orchestrator.cli import main
from orchestrator.data import Responses, write_responses
from orchestrator.errors import DataError
from orchestrator.irt import sample_responses
from orchestrator.report.model_names import DEFAULT_NAMES_FILE, MappedSubject
from orchestrator.report.validity import BankInput, model_scores, raw_scores
from orchestrator.session.journal import Journal, journal_responses
from tests.conftest import REPO, SHARED_DATA, make_bank

NAMES = REPO / DEFAULT_NAMES_FILE
BANKS = REPO / "item_banks"


def _bank_folder(
    root: Path, bank: ItemBank, theta: np.ndarray, subjects: list[str], seed: int
) -> Path:
    """A bank folder with bank.json and the complete responses of ``subjects`` at ``theta``."""
    folder = root / bank.name
    bank.save(folder)
    x = sample_responses(theta, bank.a, bank.b, np.random.default_rng(seed))
    write_responses(
        folder / "responses.csv",
        ((s, bank.ids[j], int(x[i, j])) for i, s in enumerate(subjects) for j in range(len(bank))),
    )
    return folder


@pytest.fixture(scope="module")
def two_banks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """alpha (25 binary items) and beta (20 items, K = 3) measuring abilities correlated 0.8;
    250 models take both, 20 more take only beta."""
    root = tmp_path_factory.mktemp("banks")
    rng = np.random.default_rng(21)
    th = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=270)
    models = [f"org/m{i:03d}" for i in range(270)]
    alpha = _bank_folder(
        root, make_bank(25, 2, seed=11, name="alpha"), th[:250, 0], models[:250], 1
    )
    beta = _bank_folder(root, make_bank(20, 3, seed=12, name="beta"), th[:, 1], models, 2)
    return alpha, beta


# --------------------------------------------------------------------------- scores
def test_raw_scores_and_their_model_based_error() -> None:
    bank = ItemBank.from_params(
        "p", ["i1", "i2", "i3"], [1.0, 2.0, 1.5], [[0.0], [0.5], [-1.0, 1.0]]
    )
    resp = Responses.from_triples(
        [("s", "i1", 1), ("s", "i2", 0), ("s", "i3", 1), ("t", "i3", 2)]
    ).for_bank(bank)
    theta = np.array([0.3, -0.2])
    raw, raw_se = raw_scores(BankInput(bank, resp, theta, np.ones(2), "mem"))
    assert raw.tolist() == pytest.approx([(1 + 0 + 0.5) / 3, 1.0])
    p1 = 1 / (1 + np.exp(-1.0 * (0.3 - 0.0)))
    p2 = 1 / (1 + np.exp(-2.0 * (0.3 - 0.5)))
    up = 1 / (1 + np.exp(-1.5 * (0.3 - np.array([-1.0, 1.0]))))  # P(X ≥ 1), P(X ≥ 2)
    var3 = (up[0] + 3 * up[1] - up.sum() ** 2) / 4  # (K − 1)² = 4
    assert raw_se[0] == pytest.approx(np.sqrt((p1 * (1 - p1) + p2 * (1 - p2) + var3) / 9))


def test_a_model_scores_with_its_plain_subjects_or_else_the_mean_of_all() -> None:
    bank = make_bank(4, 2, seed=0)
    subjects = ["a", "a@x", "b@x", "b@y", "c"]
    resp = Responses.from_triples([(s, bank.ids[0], 1) for s in subjects]).for_bank(bank)
    inp = BankInput(
        bank, resp, np.array([1.0, 9.0, 2.0, 4.0, 0.0]), np.array([0.2, 0.2, 0.3, 0.4, 0.1]), "mem"
    )
    mapped = [
        MappedSubject("a", "m/a", "", "mapped", ""),
        MappedSubject("a@x", "m/a", "attack=x", "mapped", ""),
        MappedSubject("b@x", "m/b", "attack=x", "mapped", ""),
        MappedSubject("b@y", "m/b", "attack=y", "mapped", ""),
        MappedSubject("c", None, "", "excluded", "not a model"),
    ]
    s = model_scores(inp, mapped, np.zeros(5), np.zeros(5))
    assert s.models == ("m/a", "m/b")
    assert s.theta.tolist() == [1.0, 3.0]
    assert s.se.tolist() == pytest.approx([0.2, np.sqrt(0.3**2 + 0.4**2) / 2])
    assert s.subjects == (("a",), ("b@x", "b@y"))


# --------------------------------------------------------------------------- end to end
def test_cli_report_on_banks_with_a_known_correlation(two_banks, tmp_path: Path) -> None:
    """Synthetic truth ρ = 0.8: the corrected interval covers it, a prior from the other
    bank saves items without costing accuracy, and every output is written."""
    alpha, beta = two_banks
    out = tmp_path / "rep" / "validity.html"
    figs = tmp_path / "figs"
    rc = main(
        [
            "validity",
            str(alpha),
            str(beta),
            "--names",
            str(NAMES),
            "--out",
            str(out),
            "--figures",
            str(figs),
            "--bootstrap",
            "400",
            "--se",
            "0.5",
            "--quiet",
        ]
    )
    assert rc == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["schema_version"] == 1 and doc["command"] == "validity"
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("alpha", "beta", 250)
    t = pair["theta"]
    assert t["pearson"]["estimate"] < 0.75  # attenuated by measurement error …
    assert t["disattenuated"]["lo"] <= 0.8 <= t["disattenuated"]["hi"]  # … and corrected
    assert t["reliability_a"]["lo"] < t["reliability_a"]["estimate"] < t["reliability_a"]["hi"]
    assert pair["raw"]["pearson"]["estimate"] is not None
    assert [s["mapping"]["unmapped_bank"] for s in doc["scales"]] == [True, True]
    assert [s["n_models"] for s in doc["scales"]] == [250, 270]
    assert {(p["from"], p["to"]) for p in doc["predictions"]} == {
        ("alpha", "beta"),
        ("beta", "alpha"),
    }
    for p in doc["predictions"]:
        g = p["regression"]
        assert g["rmse_loo"] < g["rmse_loo_mean_only"] and 0.2 < g["r2_loo"] < 0.8
    assert len(doc["collateral"]) == 2
    for c in doc["collateral"]:
        assert c["n_subjects"] == 250 and c["prior_sd"]["mean"] < 0.9
        std, col = c["items_to_se"]["standard"], c["items_to_se"]["collateral"]
        assert col["mean"] < std["mean"] and c["items_saved"]["share"] > 0.05
        rm = c["rmse_vs_reference"]
        assert rm["0"]["collateral"] < rm["0"]["standard"] - 0.05  # the prior alone informs
        assert rm["5"]["collateral"] <= rm["5"]["standard"] + 0.02
    assert any("alpha × beta (n = 250)" in line for line in doc["summary"])
    page = out.read_text()
    assert "Cross-benchmark validity" in page and page.count("<img") == 2
    assert sorted(p.name for p in figs.iterdir()) == ["heatmap.png", "scatter_alpha__beta.png"]


def test_json_on_stdout_is_seeded(two_banks, capsys: pytest.CaptureFixture[str]) -> None:
    alpha, beta = two_banks
    argv = [
        "validity",
        str(alpha),
        str(beta),
        "--names",
        str(NAMES),
        "--bootstrap",
        "200",
        "--no-collateral",
        "--json",
        "--quiet",
        "--seed",
        "3",
    ]
    docs = []
    for _ in range(2):
        assert main(argv) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert docs[0]["pairs"] == docs[1]["pairs"] and docs[0]["collateral"] == []


def test_shipped_safety_banks_state_n_per_pair(tmp_path: Path) -> None:
    """On the banks the repository ships, few models are shared: n per pair is exact,
    no correlation is claimed, and the matching says who is who."""
    doc = validity(
        [BANKS / "agentdojo", BANKS / "jailbreakbench", BANKS / "xstest", BANKS / "alpaca_eval"],
        names=NAMES,
        n_boot=200,
        out=tmp_path / "safety.html",
    )
    n = {(p["a"], p["b"]): p["n"] for p in doc["pairs"]}
    assert n == {
        ("agentdojo", "jailbreakbench"): 1,
        ("agentdojo", "xstest"): 0,
        ("agentdojo", "alpaca_eval"): 0,
        ("jailbreakbench", "xstest"): 0,
        ("jailbreakbench", "alpaca_eval"): 2,
        ("xstest", "alpaca_eval"): 0,
    }
    assert all(p["theta"] is None and "at least 3" in p["note"] for p in doc["pairs"])
    by = {(p["a"], p["b"]): p for p in doc["pairs"]}
    assert [m["model"] for m in by[("jailbreakbench", "alpaca_eval")]["models"]] == [
        "lmsys/vicuna-13b-v1.5",
        "openai/gpt-3.5-turbo-1106",
    ]
    assert [m["model"] for m in by[("agentdojo", "jailbreakbench")]["models"]] == [
        "openai/gpt-4-0125-preview"
    ]
    scales = {s["label"]: s for s in doc["scales"]}
    assert scales["jailbreakbench"]["n_models"] == 4  # 18 model × attack subjects
    assert len(scales["xstest"]["mapping"]["excluded"]) == 5
    averaged = {a["model"]: a["subjects"] for a in scales["agentdojo"]["mapping"]["averaged"]}
    assert len(averaged["openai/gpt-4o-2024-05-13"]) == 4  # the four defence pipelines
    assert doc["collateral"] == [] and (tmp_path / "safety.json").is_file()


# --------------------------------------------------------------------------- journals
def _session(runs: Path, sid: str, model: str, bank: str, grades: list[tuple[str, int]]) -> None:
    j = Journal.create(
        runs / sid,
        session_id=sid,
        model=model,
        model_label=sid,
        bank_path=f"item_banks/{bank}",
        bank_name=bank,
        bank_sha256="x",
        config={},
        controller={},
    )
    for step, (item, score) in enumerate(grades, start=1):
        j.begin_step(step, 1, item)
        j.record_result(step, 1, score=score)
        if step < len(grades):  # the last one stays 'scored' (graded, not yet applied)
            j.apply_steps([(step, 1, 0.0, 1.0)], {}, 0.0, 1.0, step)
    j.begin_step(len(grades) + 1, 1, "it009")
    j.record_error(len(grades) + 1, 1, error_kind="sandbox", error_message="boom")  # no grade
    j.close()


def test_journal_responses_take_graded_steps_by_model(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _session(runs, "s1", "openai/m1", "alpha", [("it000", 1), ("it001", 0)])
    _session(runs, "s2", "openai/m1", "alpha", [("it001", 1), ("it002", 1)])  # later: wins
    _session(runs, "s3", "openai/m2", "alpha", [("it000", 0)])
    _session(runs, "s4", "openai/m1", "beta", [("it000", 1)])
    resp, counts = journal_responses([runs], "alpha")
    got = {
        (resp.subjects[s], resp.items[i]): int(x)
        for s, i, x in zip(resp.subject_idx, resp.item_idx, resp.score, strict=True)
    }
    assert got == {
        ("openai/m1", "it000"): 1,
        ("openai/m1", "it001"): 1,
        ("openai/m1", "it002"): 1,
        ("openai/m2", "it000"): 0,
    }
    assert counts == {"sessions": 3, "other_bank": 1, "replaced": 1}
    one, _ = journal_responses([runs / "s3" / "journal.sqlite"], "alpha")
    assert one.subjects == ("openai/m2",)
    with pytest.raises(DataError, match="no graded step on bank 'gamma'"):
        journal_responses([runs], "gamma")
    with pytest.raises(DataError, match="no session journal"):
        journal_responses([tmp_path / "empty"], "alpha")


def test_validity_reads_a_bank_from_session_journals(two_banks, tmp_path: Path) -> None:
    alpha, beta = two_banks
    runs = tmp_path / "runs"
    _session(runs, "s1", "org/m000", "alpha", [("it000", 1), ("it001", 0), ("it002", 1)])
    _session(runs, "s2", "org/m001", "alpha", [("it000", 0), ("it003", 1)])
    doc = validity([alpha, beta], responses={"alpha": runs}, names=NAMES, n_boot=100)
    scale = doc["scales"][0]
    assert scale["n_subjects"] == 2 and "2 session journal(s)" in scale["source"]
    assert doc["pairs"][0]["n"] == 2 and doc["pairs"][0]["theta"] is None


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["BANK_A"], 2, "give at least two banks"),
        (["BANK_A", "BANK_A"], 2, "bank 'alpha' is given twice"),
        (["BANK_A", "BANK_B", "--responses", "alpah=x.csv"], 2, "did you mean 'alpha'"),
        (["BANK_A", "BANK_B", "--responses", "alpha"], 2, "expects NAME=PATH"),
        (["BANK_A", "BANK_B", "--out", "r.txt"], 2, "must name an .html file"),
        (["BANK_A", "BANK_B", "--bootstrap", "5"], 2, "n_boot must be an integer ≥ 100"),
        (["BANK_A", str(BANKS / "shell-safety")], 1, "no responses for bank 'shell-safety'"),
    ],
    ids=["one-bank", "twice", "unknown-name", "no-equals", "out", "bootstrap", "no-responses"],
)
def test_bad_input_is_one_line_and_a_hint(
    two_banks, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, message: str
) -> None:
    alpha, beta = two_banks
    argv = [{"BANK_A": str(alpha), "BANK_B": str(beta)}.get(x, x) for x in extra]
    assert main(["validity", *argv, "--names", str(NAMES), "--quiet"]) == code
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:")


# --------------------------------------------------------------------------- real data
needs_tinybench = pytest.mark.skipif(
    not (SHARED_DATA / "tinybench").is_dir(),
    reason="needs ../shared/data/tinybench (not in a fresh clone: the responses are > 10 MB)",
)


@needs_tinybench
def test_tinybench_pair_matches_the_shared_model_count() -> None:
    doc = validity(
        [BANKS / "tinyarc", BANKS / "tinygsm8k"],
        responses_dirs=[SHARED_DATA / "tinybench"],
        names=NAMES,
        n_boot=200,
        collateral=False,
    )
    (pair,) = doc["pairs"]
    assert pair["n"] == 2081  # shared/data/tinybench/README.md, "Models in both benchmarks"
    t = pair["theta"]
    assert 0.55 < t["pearson"]["estimate"] < 0.75
    assert t["pearson"]["estimate"] < t["disattenuated"]["estimate"] < 0.8
    assert min(t["reliability_a"]["estimate"], t["reliability_b"]["estimate"]) > 0.9
    assert all(s["mapping"]["n_wildcard"] == s["n_subjects"] for s in doc["scales"])


@needs_tinybench
@pytest.mark.slow
def test_tinybench_collateral_prior_saves_items() -> None:
    doc = validity(
        [BANKS / "tinyarc", BANKS / "tinytruthfulqa"],
        responses_dirs=[SHARED_DATA / "tinybench"],
        names=NAMES,
        n_boot=200,
    )
    assert len(doc["collateral"]) == 2
    for c in doc["collateral"]:
        assert c["items_saved"]["share"] > 0.3
        rm = c["rmse_vs_reference"]
        assert rm["0"]["collateral"] < rm["0"]["standard"] - 0.2
        assert rm["5"]["collateral"] <= rm["5"]["standard"]
