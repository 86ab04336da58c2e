"""The SQLite session journal: life cycle of rows, lock, corrupt and foreign files."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import SessionError
from orchestrator.session.journal import JOURNAL_FILENAME, Journal


def _journal(tmp_path: Path) -> Journal:
    return Journal.create(
        tmp_path / "s1",
        session_id="s1",
        model="openai-api/sim/theta_0",
        model_label="theta_0",
        bank_path="item_banks/x",
        bank_name="x",
        bank_sha256="abc",
        config={"k": 1},
        controller={"state": 0},
    )


def test_rows_move_through_started_scored_done(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.begin_step(1, 1, "a")
    j.record_result(1, 1, score=2, label="safe", wall_s=1.5, total_tokens=10)
    j.apply_steps([(1, 1, 0.4, 0.8)], {"state": 1}, 0.4, 0.8, 1)
    j.begin_step(2, 1, "b")
    j.record_error(2, 1, error_kind="model_api", error_message="429")
    j.apply_steps([], {"state": 2}, 0.4, 0.8, 1, skipped=[(2, 1)])
    rows = j.steps()
    assert [(r.step, r.status, r.score) for r in rows] == [(1, "done", 2), (2, "skipped", None)]
    assert rows[0].theta == 0.4 and rows[0].controller_json == '{"state": 1}'
    assert j.controller_state() == {"state": 2}
    s = j.session()
    assert (s.theta, s.se, s.n_items, s.status) == (0.4, 0.8, 1, "running")
    with pytest.raises(SessionError, match="not in flight"):
        j.record_result(1, 1, score=0)
    with pytest.raises(ValueError, match="unknown step fields"):
        j.record_result(2, 1, colour="red")


def test_committed_rows_survive_and_in_flight_rows_become_interrupted(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.begin_step(1, 1, "a")
    j.record_result(1, 1, score=3)
    j.begin_step(2, 1, "b")
    # a "crash": the connection is simply dropped without closing
    again = Journal.open(tmp_path / "s1")
    interrupted = again.mark_interrupted()
    assert [(r.step, r.item_id) for r in interrupted] == [(2, "b")]
    assert [(r.step, r.status) for r in again.steps()] == [(1, "scored"), (2, "interrupted")]
    j.close()


def _hold_lock(path: str, ready, release) -> None:  # child process
    j = Journal.open(Path(path))
    j.lock()
    ready.set()
    release.wait(10)


def test_second_driver_is_refused_while_first_holds_the_lock(tmp_path: Path) -> None:
    _journal(tmp_path).close()
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path / "s1"), ready, release))
    child.start()
    try:
        assert ready.wait(20)
        j = Journal.open(tmp_path / "s1")
        assert j.is_locked_elsewhere()
        with pytest.raises(SessionError, match=r"being run by another process \(pid \d+"):
            j.lock()
    finally:
        release.set()
        child.join(10)
    j.lock()  # the holder is gone, so the lock is free again
    other = Journal.open(tmp_path / "s1")
    assert other.is_locked_elsewhere()  # ...and now we hold it
    j.close()
    assert not other.is_locked_elsewhere()
    other.close()


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / JOURNAL_FILENAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SessionError, match="not a readable agentcat journal"):
        Journal.open(bad)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / JOURNAL_FILENAME)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('app', 'something-else')")
    conn.commit()
    conn.close()
    with pytest.raises(SessionError, match="not an agentcat journal"):
        Journal.open(foreign)
    with pytest.raises(SessionError, match="no session journal"):
        Journal.open(tmp_path / "nothing")
    with pytest.raises(SessionError, match="already exists"):
        _journal(tmp_path)
        _journal(tmp_path)
