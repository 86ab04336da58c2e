"""The session journal: one SQLite file (WAL) per session, committed before every next step.

Row life cycle of one scenario run (``steps`` table, key = step, attempt):

    started ──► scored ──► done          (graded; applied to the CAT controller)
       │  └───► error ──► skipped        (fault: never a score; retried, or given up)
       └──────► interrupted              (the process died mid-run; resume re-runs it)

``scored`` is written the moment a run's result is known and ``done`` when the
controller has absorbed it (same transaction as the controller's new state in
``sessions``), so a crash between the two loses nothing: resume applies
``scored`` rows without re-running them and re-runs only ``started`` ones.
Every text stored (error messages, explanations, status reasons, the config) is
scrubbed of secrets first (:mod:`orchestrator._secrets`).
A given-up item turns ``skipped`` in that same per-batch transaction, so the
journalled controller state is always the one from before the open batch.

θ and SE are stored as numbers (``theta``, ``se``: the first dimension, the
only one for a one-dimensional bank); a bank of several dimensions also stores
every dimension's θ, SE and the posterior correlation as JSON in
``estimate_json`` (``CatController.estimate()``). That column was added to
schema 1 without a new version: journals written before it read it as NULL and
gain it when opened for writing.

Inspect log paths are stored relative to the session folder (``logs/….eval``):
the same journal is then right on the host and inside a container that wrote it
under a bind mount.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from orchestrator._secrets import scrub, scrub_any
from orchestrator.data import Responses
from orchestrator.errors import DataError, SessionError

__all__ = ["JOURNAL_FILENAME", "Journal", "SessionRow", "StepRow", "journal_responses"]

JOURNAL_APP = "agentcat-journal"
JOURNAL_SCHEMA = 1
JOURNAL_FILENAME = "journal.sqlite"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE session (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    model TEXT NOT NULL,
    model_label TEXT NOT NULL,
    bank_path TEXT NOT NULL,
    bank_name TEXT NOT NULL,
    bank_sha256 TEXT NOT NULL,
    config_json TEXT NOT NULL,
    controller_json TEXT NOT NULL,
    theta REAL,
    se REAL,
    n_items INTEGER NOT NULL DEFAULT 0,
    estimate_json TEXT
);
CREATE TABLE steps (
    step INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    score INTEGER,
    label TEXT,
    explanation TEXT,
    theta REAL,
    se REAL,
    started_at REAL NOT NULL,
    finished_at REAL,
    wall_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens INTEGER,
    cost_usd REAL,
    error_kind TEXT,
    error_message TEXT,
    log_path TEXT,
    controller_json TEXT,
    estimate_json TEXT,
    PRIMARY KEY (step, attempt)
);
"""

SESSION_STATUSES = ("running", "paused", "completed", "failed")


@dataclass(frozen=True)
class SessionRow:
    id: str
    created: float
    updated: float
    status: str
    status_reason: str | None
    model: str
    model_label: str
    bank_path: str
    bank_name: str
    bank_sha256: str
    config_json: str
    controller_json: str
    theta: float | None
    se: float | None
    n_items: int
    estimate_json: str | None = None


@dataclass(frozen=True)
class StepRow:
    step: int
    attempt: int
    item_id: str
    status: str
    score: int | None
    label: str | None
    explanation: str | None
    theta: float | None
    se: float | None
    started_at: float
    finished_at: float | None
    wall_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    error_kind: str | None
    error_message: str | None
    log_path: str | None
    controller_json: str | None
    estimate_json: str | None = None


_STEP_COLS = [f.name for f in fields(StepRow)]
# what the session row must hold for anything to be read from it (SQLite stores whatever
# it is given, so a hand-edited journal can hold text where a time belongs)
_SESSION_TYPES: dict[str, tuple[type, ...]] = {
    **{c: (str,) for c in ("id", "status", "model", "bank_path", "bank_sha256", "config_json")},
    **{c: (str,) for c in ("controller_json", "bank_name", "model_label")},
    "created": (float, int),
    "updated": (float, int),
    "n_items": (int,),
}
_SESSION_COLS = [f.name for f in fields(SessionRow)]
_ADDED_COLUMNS = {"session": ("estimate_json",), "steps": ("estimate_json",)}
"""Columns added to schema 1 after journals were written: NULL in older files."""


class Journal:
    """A session's SQLite journal. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd: int | None = None
        self._select = {"session": _SESSION_COLS, "steps": _STEP_COLS}
        for table, added in _ADDED_COLUMNS.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}
            for col in added:
                if col in have:
                    continue
                if readonly:  # an older journal, read as it is
                    self._select[table] = [
                        f"NULL AS {c}" if c == col else c for c in self._select[table]
                    ]
                else:
                    with contextlib.suppress(sqlite3.OperationalError):  # added meanwhile
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} TEXT")
        self._meta: dict[str, str] | None = None

    # -- opening --------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        session_id: str,
        model: str,
        model_label: str,
        bank_path: str,
        bank_name: str,
        bank_sha256: str,
        config: dict[str, Any],
        controller: dict[str, Any],
        meta: dict[str, Any] | None = None,
    ) -> Journal:
        """Create ``folder/journal.sqlite`` for a new session (the folder must not hold one).

        ``meta``: JSON values kept beside the session (e.g. how to restart a demo's
        simulated agent); read back with :meth:`meta`.
        """
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / JOURNAL_FILENAME
        if path.exists():
            raise SessionError(
                f"session {session_id!r} already exists at {path}",
                hint=f"`agentcat resume {session_id}` continues it",
            )
        try:
            conn = cls._connect(path)
            conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
        except sqlite3.OperationalError as exc:
            raise _write_error(path, exc) from None
        now = time.time()
        with _transaction(conn, path):
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("app", JOURNAL_APP),
                    ("schema", str(JOURNAL_SCHEMA)),
                    ("session_id", session_id),
                    *((f"x.{k}", json.dumps(v)) for k, v in (meta or {}).items()),
                ],
            )
            conn.execute(
                "INSERT INTO session (id, created, updated, status, model, model_label, bank_path, "
                "bank_name, bank_sha256, config_json, controller_json) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    now,
                    now,
                    model,
                    model_label,
                    bank_path,
                    bank_name,
                    bank_sha256,
                    json.dumps(scrub_any(config)),
                    json.dumps(controller),
                ),
            )
        return cls(path, conn)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Journal:
        """Open an existing journal; a corrupt or foreign file is a clear :class:`SessionError`."""
        file = path / JOURNAL_FILENAME if path.is_dir() else path
        if not file.is_file():
            raise SessionError(
                f"no session journal at {file}",
                hint="`agentcat sessions` lists the sessions under the runs folder",
            )
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{file}?mode=ro", uri=True, isolation_level=None, timeout=30
                )
            else:
                conn = cls._connect(file)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise SessionError(
                f"{file} is not a readable agentcat journal ({exc})",
                hint="the file is corrupt or belongs to another program; restore it or start a "
                "new session",
            ) from None
        if meta.get("app") != JOURNAL_APP:
            raise SessionError(f"{file} is not an agentcat journal (app={meta.get('app')!r})")
        if meta.get("schema") != str(JOURNAL_SCHEMA):
            raise SessionError(
                f"{file} has journal schema {meta.get('schema')}, this agentcat reads "
                f"{JOURNAL_SCHEMA}",
                hint="use the agentcat version that wrote it",
            )
        journal = cls(file, conn, readonly=readonly)
        journal._meta = meta
        return journal

    def close(self) -> None:
        self.unlock()
        self._conn.close()

    # -- single driver --------------------------------------------------------
    def lock(self) -> None:
        """Take the session's exclusive lock (released by the OS if the process dies).

        Raises:
            SessionError: another process drives this session.
        """
        lock_path = self.path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SessionError(
                f"session {self.session().id!r} is being run by another process ({holder})",
                hint="wait for it to finish or stop it; two drivers would corrupt the session",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_locked_elsewhere(self) -> bool:
        """True when some process (not this object) holds the session lock."""
        if self._lock_fd is not None:
            return False
        lock_path = self.path.with_suffix(".lock")
        if not lock_path.exists():
            return False
        fd = os.open(lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    # -- reading --------------------------------------------------------------
    def session(self) -> SessionRow:
        row = self._read(f"SELECT {', '.join(self._select['session'])} FROM session").fetchone()
        if row is None:
            raise SessionError(f"{self.path} holds no session row (corrupt journal)")
        session = SessionRow(*row)
        for name, kinds in _SESSION_TYPES.items():
            value = getattr(session, name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise SessionError(
                    f"{self.path} is a damaged journal: session.{name} holds "
                    f"{str(value)[:40]!r}, not a {kinds[0].__name__}",
                    hint="restore it from a backup, or start a new session",
                )
        return session

    def steps(self) -> list[StepRow]:
        rows = self._read(
            f"SELECT {', '.join(self._select['steps'])} FROM steps ORDER BY step, attempt"
        ).fetchall()
        return [StepRow(*r) for r in rows]

    def controller_state(self) -> dict[str, Any]:
        return self._json_object("controller_json", self.session().controller_json)

    def config(self) -> dict[str, Any]:
        return self._json_object("config_json", self.session().config_json)

    def meta(self, key: str) -> Any:
        """A value given to :meth:`create` as ``meta`` (None when absent)."""
        if self._meta is None:
            self._meta = dict(self._read("SELECT key, value FROM meta").fetchall())
        raw = self._meta.get(f"x.{key}")
        return None if raw is None else self._json("meta " + key, raw)

    def _read(self, sql: str) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql)
        except sqlite3.DatabaseError as exc:  # a table dropped or the file damaged
            raise SessionError(
                f"{self.path} is a damaged journal ({exc})",
                hint="restore it from a backup, or start a new session",
            ) from None

    def _json(self, what: str, raw: str) -> Any:
        try:
            return json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            raise SessionError(
                f"{self.path}: {what} is not valid JSON (the journal was edited or damaged)",
                hint="restore the journal from a backup, or start a new session",
            ) from None

    def _json_object(self, what: str, raw: str) -> dict[str, Any]:
        doc = self._json(what, raw)
        if not isinstance(doc, dict):
            raise SessionError(
                f"{self.path}: {what} is a JSON {type(doc).__name__}, not an object "
                "(the journal was edited or damaged)",
                hint="restore the journal from a backup, or start a new session",
            )
        return doc

    # -- writing --------------------------------------------------------------
    def begin_step(self, step: int, attempt: int, item_id: str) -> None:
        with _transaction(self._conn, self.path):
            self._conn.execute(
                "INSERT INTO steps (step, attempt, item_id, status, started_at) "
                "VALUES (?, ?, ?, 'started', ?)",
                (step, attempt, item_id, time.time()),
            )
            self._touch()

    def record_result(self, step: int, attempt: int, **result: Any) -> None:
        """The run finished with a grade: ``scored`` (not yet applied to the controller)."""
        self._finish(step, attempt, "scored", result)

    def record_error(self, step: int, attempt: int, **result: Any) -> None:
        """The run failed (``error_kind``, ``error_message``): never a score."""
        self._finish(step, attempt, "error", result)

    def apply_steps(
        self,
        applied: list[tuple[int, int, float, float]],
        controller: dict[str, Any],
        theta: float,
        se: float,
        n_items: int,
        skipped: Sequence[tuple[int, int]] = (),
        estimates: Sequence[dict[str, Any] | None] = (),
        estimate: dict[str, Any] | None = None,
    ) -> None:
        """Commit one batch atomically: ``(step, attempt, θ, SE)`` rows ``scored`` → ``done``,
        ``(step, attempt)`` rows ``error`` → ``skipped`` (attempts exhausted), and the
        controller state that has absorbed both.

        ``estimates`` (one per applied row) and ``estimate`` (the session's) are
        the full θ of a bank of several dimensions, stored as ``estimate_json``.
        """
        state = json.dumps(controller)
        per_step = list(estimates) or [None] * len(applied)
        with _transaction(self._conn, self.path):
            for (step, attempt, th, s), est in zip(applied, per_step, strict=True):
                self._conn.execute(
                    "UPDATE steps SET status='done', theta=?, se=?, controller_json=?, "
                    "estimate_json=? WHERE step=? AND attempt=? AND status='scored'",
                    (th, s, state, _json_or_none(est), step, attempt),
                )
            for step, attempt in skipped:
                self._conn.execute(
                    "UPDATE steps SET status='skipped' "
                    "WHERE step=? AND attempt=? AND status='error'",
                    (step, attempt),
                )
            self._conn.execute(
                "UPDATE session SET controller_json=?, theta=?, se=?, n_items=?, updated=?, "
                "estimate_json=?",
                (state, theta, se, n_items, time.time(), _json_or_none(estimate)),
            )

    def mark_interrupted(self) -> list[StepRow]:
        """Turn ``started`` rows left by a dead process into ``interrupted``; returns them."""
        in_flight = [s for s in self.steps() if s.status == "started"]
        with _transaction(self._conn, self.path):
            self._conn.execute(
                "UPDATE steps SET status='interrupted', finished_at=? WHERE status='started'",
                (time.time(),),
            )
        return in_flight

    def set_status(self, status: str, reason: str | None = None) -> None:
        if status not in SESSION_STATUSES:
            raise ValueError(f"status must be one of {SESSION_STATUSES}; got {status!r}")
        with _transaction(self._conn, self.path):
            self._conn.execute(
                "UPDATE session SET status=?, status_reason=?, updated=?",
                (status, None if reason is None else scrub(reason), time.time()),
            )

    def _finish(self, step: int, attempt: int, status: str, result: dict[str, Any]) -> None:
        allowed = set(_STEP_COLS) - {"step", "attempt", "item_id", "status", "started_at"}
        unknown = set(result) - allowed
        if unknown:
            raise ValueError(f"unknown step fields {sorted(unknown)}")
        if result.get("log_path"):
            result = {**result, "log_path": self._relative(result["log_path"])}
        now = time.time()
        cols = {"finished_at": now, **scrub_any(result)}
        sets = ", ".join(f"{k}=?" for k in cols)
        with _transaction(self._conn, self.path):
            cur = self._conn.execute(
                f"UPDATE steps SET status=?, {sets} "
                "WHERE step=? AND attempt=? AND status='started'",
                (status, *cols.values(), step, attempt),
            )
            if cur.rowcount != 1:
                raise SessionError(f"step {step} attempt {attempt} is not in flight")
            self._touch()

    def _relative(self, path: str) -> str:
        """A path inside the session folder as relative to it, so the journal stays right
        when the folder is seen from elsewhere (a compose bind mount, a moved runs folder)."""
        folder = self.path.parent.resolve()
        target = Path(path.removeprefix("file://")).resolve()  # Inspect may give a file URL
        return target.relative_to(folder).as_posix() if target.is_relative_to(folder) else path

    def resolve(self, path: str | None) -> str | None:
        """A journalled (possibly folder-relative) path as an absolute one."""
        if path is None:
            return None
        return str(self.path.parent.resolve() / path)

    def _touch(self) -> None:
        self._conn.execute("UPDATE session SET updated=?", (time.time(),))


def journal_responses(paths: Sequence[Path], bank_name: str) -> tuple[Responses, dict[str, int]]:
    """The graded steps of every session on ``bank_name`` as responses; subject = the model.

    Each path is a journal file, a session folder or a runs folder (every
    ``*/journal.sqlite`` below it). Sessions on other banks are skipped. A
    model graded on one item in two sessions keeps the later grade.

    Returns:
        The responses and counts: ``sessions`` used, ``other_bank`` skipped,
        ``replaced`` grades superseded by a later session.

    Raises:
        DataError: no journal under a path, or no graded step on ``bank_name``.
        SessionError: an unreadable journal.
    """
    files: list[Path] = []
    for p in paths:
        found = (
            [p]
            if p.is_file() or (p / JOURNAL_FILENAME).is_file()
            else sorted(p.glob(f"*/{JOURNAL_FILENAME}"))
        )
        if not found:
            raise DataError(
                f"no session journal at or under {p}",
                hint=f"give a runs folder, a session folder or a {JOURNAL_FILENAME} file",
            )
        files.extend(found)
    sessions = []
    for f in files:
        journal = Journal.open(f, readonly=True)
        try:
            sessions.append((journal.session(), journal.steps()))
        finally:
            journal.close()
    grades: dict[tuple[str, str], int] = {}
    counts = {"sessions": 0, "other_bank": 0, "replaced": 0}
    for session, steps in sorted(sessions, key=lambda x: x[0].created):
        if session.bank_name != bank_name:
            counts["other_bank"] += 1
            continue
        counts["sessions"] += 1
        for step in steps:
            if step.status in ("scored", "done") and step.score is not None:
                key = (session.model, step.item_id)
                counts["replaced"] += key in grades
                grades[key] = step.score
    if not grades:
        raise DataError(
            f"no graded step on bank {bank_name!r} in the sessions given "
            f"({counts['other_bank']} session(s) on other banks)"
        )
    source = ", ".join(str(p) for p in paths)
    triples = ((model, item, score) for (model, item), score in grades.items())
    return Responses.from_triples(triples, source=f"journals: {source}"), counts


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """One write transaction: all of it is committed or none of it.

    A write the disk refuses (full, read-only, gone) rolls back and becomes a
    :class:`SessionError`: the journal keeps its last committed state, which is
    exactly what ``resume`` continues from.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: sqlite3.OperationalError) -> SessionError:
    return SessionError(
        f"cannot write the session journal {path}: {exc}",
        hint="free disk space (or make the runs folder writable), then `agentcat resume "
        "SESSION`: every step committed before this one is kept",
    )
