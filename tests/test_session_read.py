"""Reading sessions back: from another directory, with the bank moved or changed, with a
damaged or hand-edited journal, and resuming one that already finished.

Real journals written by the real session loop (the in-process runner of
test_session.py answers from a fixed response table).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import SessionError
from orchestrator.session.journal import JOURNAL_FILENAME, Journal
from orchestrator.session.orchestrate import list_sessions, resume_session, session_summary
from orchestrator.session.session import Session
from tests.test_session import Crash, TableRunner, _setup


def _interrupted(tmp_path: Path, sid: str = "s1") -> tuple[Session, dict[str, int]]:
    cfg, scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], sid)
    with pytest.raises(Crash):
        asyncio.run(session.drive(TableRunner(scores, crash_at_call=4)))
    session.journal.close()
    return session, scores


def _sql(folder: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(folder / JOURNAL_FILENAME)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


def test_a_session_started_with_relative_paths_reads_and_resumes_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, scores = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    relative = cfg.model_copy(update={"bank": Path("bank"), "runs_dir": Path("runs")})
    session = Session.start(relative, relative.models[0], "rel")
    asyncio.run(session.drive(TableRunner(scores, crash_at_call=10**6)))
    session.journal.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shown = session_summary("rel", tmp_path / "runs")
    assert list(shown["categories_by_family"]) == ["f"]  # not "?": the bank was found
    seen = shown["reading"]["f"]["observed"]  # the counts, read on the bank's scale
    assert seen == [shown["categories_by_family"]["f"].get(str(k), 0) for k in range(len(seen))]
    assert sum(seen) == shown["n_items"] > 0
    assert shown["warnings"] == []
    assert Path(shown["config"]["bank"]).is_absolute()
    assert Session.open(tmp_path / "runs" / "rel").bank.name == "synthetic"


def test_resume_uses_the_session_folder_copy_when_the_bank_is_gone(tmp_path: Path) -> None:
    session, scores = _interrupted(tmp_path)
    shutil.rmtree(tmp_path / "bank")
    resumed = Session.open(session.folder)
    assert asyncio.run(resumed.drive(TableRunner(scores))) == "completed"
    shown = session_summary("s1", tmp_path / "runs")
    assert shown["status"] == "completed" and list(shown["categories_by_family"]) == ["f"]
    (session.folder / "bank.json").unlink()  # an old session folder without the copy
    shown = session_summary("s1", tmp_path / "runs")
    assert list(shown["categories_by_family"]) == ["?"]
    assert any("is not there" in w for w in shown["warnings"])
    with pytest.raises(SessionError, match="holds no copy"):
        Session.open(session.folder)


def test_show_warns_about_a_changed_bank_and_a_tampered_journal(tmp_path: Path) -> None:
    session, scores = _interrupted(tmp_path)
    resumed = Session.open(session.folder)
    asyncio.run(resumed.drive(TableRunner(scores)))
    resumed.journal.close()
    assert session_summary("s1", tmp_path / "runs")["warnings"] == []
    bank_file = tmp_path / "bank" / "bank.json"
    bank_file.write_text(bank_file.read_text().replace('"version": "1"', '"version": "2"'))
    _sql(session.folder, "UPDATE steps SET score=99 WHERE step=2")
    _sql(session.folder, "UPDATE steps SET item_id='no-such-item' WHERE step=3")
    shown = session_summary("s1", tmp_path / "runs")
    warnings = "\n".join(shown["warnings"])
    assert "changed since the session ran" in warnings
    assert "step 2: score 99 of item" in warnings and "outside its scale 0..3" in warnings
    assert "step 3: item 'no-such-item' is not in bank 'synthetic'" in warnings


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("controller_json", "{not json", "controller_json is not valid JSON"),
        ("config_json", "[1, 2]", "config_json is a JSON list, not an object"),
        ("config_json", '{"models": 3}', "the journalled config has no model"),
    ],
)
def test_a_damaged_journal_is_a_clear_error_on_resume(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    session, _ = _interrupted(tmp_path)
    _sql(session.folder, f"UPDATE session SET {column}=?", value)
    with pytest.raises(SessionError, match=message):
        Session.open(session.folder)
    with pytest.raises(SessionError, match=message):
        asyncio.run(resume_session("s1", tmp_path / "runs"))
    if value == "[1, 2]":  # show still reports what it can
        shown = session_summary("s1", tmp_path / "runs")
        assert shown["config"] is None and message in " ".join(shown["warnings"])


def test_one_corrupt_journal_does_not_hide_the_other_sessions(tmp_path: Path) -> None:
    _interrupted(tmp_path, "good")
    for name, damage in [("garbage", b"not sqlite" * 50), ("empty", b"")]:
        (tmp_path / "runs" / name).mkdir()
        (tmp_path / "runs" / name / JOURNAL_FILENAME).write_bytes(damage)
    _interrupted(tmp_path / "second", "dropped")
    shutil.move(tmp_path / "second" / "runs" / "dropped", tmp_path / "runs" / "dropped")
    _sql(tmp_path / "runs" / "dropped", "DROP TABLE steps")
    _sql(tmp_path / "runs" / "dropped", "DROP TABLE session")
    rows = {r["session"]: r for r in list_sessions(tmp_path / "runs")}
    assert rows["good"]["status"] == "interrupted"
    assert {rows[n]["status"] for n in ("garbage", "empty", "dropped")} == {"corrupt"}
    assert "damaged journal" in rows["dropped"]["error"]


@pytest.mark.parametrize(
    "damage",
    ["{bad", "[]", '{"dimensions": ["u"], "theta": [], "se": []}', '{"theta": "x"}'],
)
def test_a_damaged_per_dimension_estimate_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    _interrupted(tmp_path, "good")
    _interrupted(tmp_path / "second", "bad")
    shutil.move(tmp_path / "second" / "runs" / "bad", tmp_path / "runs" / "bad")
    _sql(tmp_path / "runs" / "bad", "UPDATE session SET estimate_json=?", damage)
    rows = {r["session"]: r for r in list_sessions(tmp_path / "runs")}
    assert rows["good"]["status"] == "interrupted" and rows["bad"]["status"] == "corrupt"
    assert "per-dimension estimate is damaged" in rows["bad"]["error"]
    with pytest.raises(SessionError, match="per-dimension estimate is damaged"):
        session_summary("bad", tmp_path / "runs")


@pytest.mark.parametrize("bank", ["kept", "changed", "gone"])
def test_resuming_a_completed_session_reports_it_without_any_check(
    tmp_path: Path, bank: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished session's result needs neither its bank, its endpoint nor Docker: resume
    reports it as `show` does (with show's warnings), whatever became of the bank."""
    from orchestrator.cli import main

    session, scores = _interrupted(tmp_path)
    resumed = Session.open(session.folder)
    asyncio.run(resumed.drive(TableRunner(scores)))
    resumed.journal.close()
    bank_file = tmp_path / "bank" / "bank.json"
    if bank == "changed":
        bank_file.write_text(bank_file.read_text().replace('"version": "1"', '"version": "2"'))
        (session.folder / "bank.json").write_text(bank_file.read_text())  # the copy too
    elif bank == "gone":
        shutil.rmtree(tmp_path / "bank")
        (session.folder / "bank.json").unlink()
    shown = session_summary("s1", tmp_path / "runs")
    before = (session.folder / JOURNAL_FILENAME).read_bytes()
    # its model endpoint is gone and no Docker image exists for family "f": a preflight
    # would fail, but a finished session needs neither
    sid = asyncio.run(resume_session("s1", tmp_path / "runs", base_url="http://127.0.0.1:9/v1"))
    assert sid == "s1"
    assert (session.folder / JOURNAL_FILENAME).read_bytes() == before  # nothing was written
    capsys.readouterr()
    code = main(["resume", "s1", "--runs-dir", str(tmp_path / "runs"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (reported,) = json.loads(out)["sessions"]
    assert reported["status"] == "completed" and reported["n_items"] == shown["n_items"] > 0
    assert reported["theta"] == shown["theta"] and reported["warnings"] == shown["warnings"]
    assert bool(shown["warnings"]) == (bank != "kept")  # e.g. the bank is not there
    for warning in shown["warnings"]:
        assert warning in err
    assert (session.folder / JOURNAL_FILENAME).read_bytes() == before


def test_the_journal_keeps_log_paths_relative_to_the_session_folder(tmp_path: Path) -> None:
    j = Journal.create(
        tmp_path / "runs" / "s1",
        session_id="s1",
        model="openai-api/sim/x",
        model_label="x",
        bank_path="/b",
        bank_name="b",
        bank_sha256="0",
        config={},
        controller={},
        meta={"demo": {"theta": 0.8}},
    )
    inside = tmp_path / "runs" / "s1" / "logs" / "a.eval"
    for step, path in enumerate([str(inside), f"file://{inside}", "/elsewhere/b.eval"], 1):
        j.begin_step(step, 1, "i")
        j.record_result(step, 1, score=1, log_path=path)
    stored = [r.log_path for r in j.steps()]
    assert stored == ["logs/a.eval", "logs/a.eval", "/elsewhere/b.eval"]
    assert j.resolve(stored[0]) == str(inside.resolve())
    assert j.resolve(stored[2]) == "/elsewhere/b.eval"
    assert j.meta("demo") == {"theta": 0.8} and j.meta("absent") is None


def test_a_full_disk_mid_session_is_a_clear_error_and_resume_continues(tmp_path: Path) -> None:
    from tests.test_session import _direct

    cfg, scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], "full")
    conn = session.journal._conn  # SQLite's own "database or disk is full" (SQLITE_FULL)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(SessionError, match=r"cannot write the session journal .*is full"):
        asyncio.run(session.drive(TableRunner(scores)))
    session.journal.close()
    resumed = Session.open(session.folder)  # a fresh connection: the disk has room again
    rows = resumed.journal.steps()
    assert 0 < sum(r.status == "done" for r in rows) < len(scores)  # stopped part-way …
    assert asyncio.run(resumed.drive(TableRunner(scores))) == "completed"
    ref = _direct(cfg, scores)  # … and ends where an uninterrupted session ends
    assert resumed.controller.administered == ref.administered
    assert resumed.controller.theta == ref.theta
