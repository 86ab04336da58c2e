"""θ per dimension wherever it is shown: estimate, simulate, journal, show, plots, sim agent."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.data import write_responses
from orchestrator.irt import category_probs
from orchestrator.session.journal import JOURNAL_FILENAME, Journal
from orchestrator.sim.agent import Persona, SimAgent, parse_personas
from tests._cat_helpers import DIMENSIONS, tagged_bank, two_dim_bank


@pytest.fixture(scope="module")
def data2d(tmp_path_factory) -> tuple[str, str, np.ndarray]:
    d = tmp_path_factory.mktemp("two")
    bank = two_dim_bank(40, seed=1, cross=False)
    bank.save(d / "bank")
    r = np.random.default_rng(2)
    theta = r.multivariate_normal(bank.prior_mean, bank.prior_cov, 30)
    x = bank.model.sample(theta, r)
    seen = r.random(x.shape) < 0.8
    rows = [(f"m{s}", bank.ids[j], x[s, j]) for s in range(30) for j in range(40) if seen[s, j]]
    write_responses(d / "r.csv", rows)
    return str(d / "bank"), str(d / "r.csv"), theta


def test_estimate_shows_every_dimension(data2d, capsys) -> None:
    bank, resp, theta = data2d
    assert main(["estimate", "--bank", bank, resp, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["subjects"]
    assert set(rows[0]) == {"subject", "theta", "se", "n_items", "method", "dimensions"}
    assert list(rows[0]["dimensions"]) == list(DIMENSIONS)
    est = np.array([[r["dimensions"][d]["theta"] for d in DIMENSIONS] for r in rows])
    se = np.array([[r["dimensions"][d]["se"] for d in DIMENSIONS] for r in rows])
    assert [r["theta"] for r in rows] == est[:, 0].tolist()  # the old field: the first dimension
    z = (est - theta) / se
    assert np.mean(np.abs(z) < 2.5) > 0.9 and 0.6 < z.std() < 1.4  # honest SEs
    assert main(["estimate", "--bank", bank, resp]) == 0
    head = capsys.readouterr().out.splitlines()[0].split()
    assert head == [
        "subject",
        "theta[utility]",
        "se[utility]",
        "theta[security]",
        "se[security]",
        "n_items",
    ]
    assert main(["estimate", "--bank", bank, resp, "--method", "map"]) == 2  # a ConfigError
    assert "--method map is for one-dimensional banks" in capsys.readouterr().err


def test_simulate_reports_each_dimension_and_the_one_dimensional_tests(
    data2d, tmp_path: Path, capsys
) -> None:
    bank, resp, _ = data2d
    argv = ["simulate", "--bank", bank, "--responses", resp, "--max-items", "8"]
    argv += ["--strategy", "cat", "--strategy", "random", "--per-dimension", "item_type"]
    assert main([*argv, "--json", "--plot", str(tmp_path / "p.png")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dimensions"] == list(DIMENSIONS)
    cat = doc["strategies"]["cat"]
    assert set(cat) == {"rule", "wall_time_s", "items_to_se", "steps", "dimensions"}
    assert cat["steps"] == cat["dimensions"]["utility"]["steps"]  # old fields: first dimension
    assert len(cat["dimensions"]["security"]["steps"]) == 8
    subject = doc["subjects"][0]
    assert set(subject["dimensions"]) == set(DIMENSIONS)
    assert subject["theta_full"] == subject["dimensions"]["utility"]["theta_full"]
    per = doc["per_dimension"]
    assert per["tag"] == "item_type"
    assert {d: e["tag_value"] for d, e in per["dimensions"].items()} == {
        "utility": "benign",
        "security": "injected",
    }
    assert all(e["n_items"] == 20 and e["cross_loading"] == 0 for e in per["dimensions"].values())
    one_d = per["dimensions"]["security"]["strategies"]
    assert set(one_d) == {"cat", "random"} and len(one_d["cat"]["steps"]) == 8
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dimension utility:" in out and "dimension security:" in out
    assert "1-D CAT on dimension security alone: the 20 items with item_type=injected" in out


def test_per_dimension_errors(data2d, tmp_path: Path, capsys) -> None:
    bank, resp, _ = data2d
    base = ["simulate", "--bank", bank, "--responses", resp, "--max-items", "3"]
    assert main([*base, "--per-dimension", "item_typ"]) == 2
    assert "did you mean 'item_type'" in capsys.readouterr().err
    assert main([*base, "--per-dimension", "family"]) == 2
    assert "does not separate the dimensions" in capsys.readouterr().err
    one = tagged_bank(20, seed=1)
    one.save(tmp_path / "one")
    rows = [(f"m{s}", one.ids[j], 0) for s in range(3) for j in range(20)]
    write_responses(tmp_path / "r1.csv", rows)
    one_argv = ["simulate", "--bank", str(tmp_path / "one"), "--responses"]
    assert main([*one_argv, str(tmp_path / "r1.csv"), "--per-dimension", "family"]) == 2
    assert "needs a bank of several dimensions" in capsys.readouterr().err


def _old_journal(folder: Path) -> None:
    """A journal as written before ``estimate_json`` existed (schema 1 without the column)."""
    folder.mkdir()
    conn = sqlite3.connect(folder / JOURNAL_FILENAME)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE session (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
            status TEXT NOT NULL, status_reason TEXT, model TEXT NOT NULL,
            model_label TEXT NOT NULL, bank_path TEXT NOT NULL, bank_name TEXT NOT NULL,
            bank_sha256 TEXT NOT NULL, config_json TEXT NOT NULL, controller_json TEXT NOT NULL,
            theta REAL, se REAL, n_items INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE steps (step INTEGER NOT NULL, attempt INTEGER NOT NULL,
            item_id TEXT NOT NULL, status TEXT NOT NULL, score INTEGER, label TEXT,
            explanation TEXT, theta REAL, se REAL, started_at REAL NOT NULL, finished_at REAL,
            wall_s REAL, input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER,
            cost_usd REAL, error_kind TEXT, error_message TEXT, log_path TEXT,
            controller_json TEXT, PRIMARY KEY (step, attempt));
        INSERT INTO meta VALUES ('app', 'agentcat-journal'), ('schema', '1'), ('session_id', 'old');
        INSERT INTO session (id, created, updated, status, model, model_label, bank_path,
            bank_name, bank_sha256, config_json, controller_json, theta, se, n_items)
            VALUES ('old', 1, 2, 'completed', 'm', 'm', 'b', 'b', 'h', '{}', '{}', 0.5, 0.3, 1);
        INSERT INTO steps (step, attempt, item_id, status, score, theta, se, started_at)
            VALUES (1, 1, 'a', 'done', 2, 0.5, 0.3, 1);
        """
    )
    conn.commit()
    conn.close()


def test_journals_written_before_the_estimate_column_still_open(tmp_path: Path) -> None:
    _old_journal(tmp_path / "old")
    ro = Journal.open(tmp_path / "old", readonly=True)
    assert ro.session().estimate_json is None and ro.steps()[0].estimate_json is None
    assert ro.session().theta == 0.5
    ro.close()
    rw = Journal.open(tmp_path / "old")  # opened for writing: the column is added
    rw.begin_step(2, 1, "b")
    rw.record_result(2, 1, score=1)
    est = {"dimensions": ["u", "s"], "theta": [0.1, 0.2], "se": [0.3, 0.4], "correlation": []}
    rw.apply_steps([(2, 1, 0.1, 0.3)], {}, 0.1, 0.3, 2, estimates=[est], estimate=est)
    assert json.loads(rw.steps()[1].estimate_json) == est
    assert rw.steps()[0].estimate_json is None
    assert json.loads(rw.session().estimate_json) == est
    rw.close()


def test_session_summary_show_and_plot_are_per_dimension(tmp_path: Path, capsys) -> None:
    from orchestrator.cli.live import _format_summary
    from orchestrator.report.trajectory import plot_trajectory
    from orchestrator.session.orchestrate import list_sessions, session_summary

    runs = tmp_path / "runs"
    j = Journal.create(
        runs / "s2",
        session_id="s2",
        model="openai-api/sim/theta_1_-1",
        model_label="theta_1_-1",
        bank_path=str(tmp_path / "missing-bank"),
        bank_name="two",
        bank_sha256="x",
        config={},
        controller={},
    )
    for step, (t, s) in enumerate([((0.4, -0.2), (0.8, 0.9)), ((0.7, -0.5), (0.6, 0.8))], 1):
        j.begin_step(step, 1, f"it{step}")
        j.record_result(step, 1, score=step)
        est = {"dimensions": list(DIMENSIONS), "theta": list(t), "se": list(s)}
        est["correlation"] = [[1, 0.3], [0.3, 1]]
        j.apply_steps([(step, 1, t[0], s[0])], {}, t[0], s[0], step, estimates=[est], estimate=est)
    j.set_status("completed", "largest SE 0.800 ≤ target 0.8")
    j.close()
    summary = session_summary("s2", runs)
    assert summary["theta"] == 0.7 and summary["se"] == 0.6  # old fields: the first dimension
    sec = summary["dimensions"]["security"]
    assert sec["theta"] == -0.5 and sec["se"] == 0.8
    assert sec["ci95"] == pytest.approx([-0.5 - 1.96 * 0.8, -0.5 + 1.96 * 0.8])
    assert summary["posterior_correlation"] == [[1, 0.3], [0.3, 1]]
    assert summary["trajectory"][0]["dimensions"]["security"] == {"theta": -0.2, "se": 0.9}
    text = _format_summary(summary)
    assert "theta       utility  +0.700   95% interval" in text
    assert "security -0.500" in text and "utility–security +0.30 (posterior)" in text
    (row,) = list_sessions(runs)
    assert row["dimensions"]["utility"] == {"theta": 0.7, "se": 0.6}
    plot_trajectory(summary, tmp_path / "t.png")
    from PIL import Image

    assert Image.open(tmp_path / "t.png").size[1] > 600  # one panel per dimension


def test_personas_with_a_theta_vector_draw_from_the_banks_model() -> None:
    bank = two_dim_bank(200, seed=3, cross=False)
    personas = parse_personas(["strong=2,-2", "flat=0.5"])
    assert personas["strong"] == Persona("strong", (2.0, -2.0))
    assert personas["flat"] == Persona("flat", 0.5)
    with pytest.raises(ValueError, match="NAME=THETA,THETA"):
        parse_personas(["x=1,a"])
    agent = SimAgent(bank, {}, personas, seed=1)
    named = agent.persona("theta_2_-2")
    assert named == Persona("theta_2_-2", (2.0, -2.0))
    assert agent.persona("theta_1_2_3") is None  # three numbers for two dimensions
    drawn = np.array([agent.category(named, i) for i in bank.ids])
    expected = bank.model.expected_score(np.array([[2.0, -2.0]]))[0]
    utility = bank.slopes[:, 0] > 0
    for part in (utility, ~utility):  # high on utility items, low on security items
        assert abs(drawn[part].mean() - expected[part].mean()) < 0.25
    assert drawn[utility].mean() > drawn[~utility].mean() + 1.0
    # one number serves every dimension
    same = [agent.category(Persona("p", 0.5), i) for i in bank.ids[:20]]
    assert same == [agent.category(Persona("p", (0.5, 0.5)), i) for i in bank.ids[:20]]
    with pytest.raises(ValueError, match="has θ of 3 entries; the bank has 2"):
        SimAgent(bank, {}, {"x": Persona("x", (1.0, 2.0, 3.0))})


def test_one_dimensional_persona_draws_are_unchanged() -> None:
    """The bank's model gives the draws the difficulty-form formula gave before."""
    bank = tagged_bank(40, seed=2)
    agent = SimAgent(bank, {}, seed=4)
    persona = Persona("theta_0.7", 0.7)
    for i, item in enumerate(bank.ids):
        p = category_probs(np.array(0.7), bank.a[i : i + 1], bank.b[i : i + 1])[0]
        p = p[: int(bank.n_categories[i])]
        import zlib

        rng = np.random.default_rng([4, zlib.crc32(b"theta_0.7"), zlib.crc32(item.encode())])
        assert agent.category(persona, item) == int(rng.choice(len(p), p=p / p.sum()))


def test_summary_reading_is_at_the_theta_vector() -> None:
    """A group of security items is read at θ̂'s security coordinate, whatever utility's is."""
    from orchestrator.bank import ItemBank
    from orchestrator.session.orchestrate import _reading

    bank = ItemBank.from_params(
        "two",
        ["s1", "s2", "u1"],
        [[0.0, 1.2], [0.0, 1.2], [1.0, 0.0]],
        [[-0.3, 0.4], [-0.3, 0.4], [0.0, 0.5]],
        tags=[{"family": "sec"}, {"family": "sec"}, {"family": "use"}],
        dimensions=list(DIMENSIONS),
    )
    groups = {"s1": "sec", "s2": "sec", "u1": "use"}
    seen = {"sec": Counter({"0": 1, "2": 1})}  # as the summary counts them: by score text
    one_dim = category_probs(np.array(-0.5), np.array([1.2]), np.array([[-0.3, 0.4]]))[0]
    for utility in (0.7, -2.0):
        reading = _reading(bank, groups, seen, np.array([utility, -0.5]))
        assert reading["sec"]["observed"] == [1, 0, 1]
        assert reading["sec"]["at_theta"] == pytest.approx(one_dim.tolist(), abs=1e-12)
