"""Secret scrubbing: values, environment, key shapes, zipped logs, the terminal, the journal."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import zipfile
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log

from orchestrator._secrets import (
    REDACTED,
    _ScrubbingStream,
    register_secret,
    scrub,
    scrub_file,
    scrubbed_stdio,
)
from orchestrator.session.journal import Journal


def test_registered_and_environment_secrets_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret("plain-registered-value-42")
    monkeypatch.setenv("MY_SERVICE_API_KEY", "from-the-environment-77")
    monkeypatch.setenv("SOME_SETTING", "visible-value-12345")
    text = "a plain-registered-value-42 b from-the-environment-77 c visible-value-12345"
    assert scrub(text) == f"a {REDACTED} b {REDACTED} c visible-value-12345"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Incorrect API key provided: sk-proj-AbCdEf0123456789xyz.", "Incorrect API key provided"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "Authorization:"),
        ('{"api_key": "0123456789abcdefABCDEF"}', '{"api_key": "'),
        ("x-api-key=ZZZZZZZZZZZZZZZZZZZZ", "x-api-key="),
        ("aws AKIAABCDEFGHIJKLMNOP here", "aws"),
        ("gh ghp_" + "a" * 36, "gh"),
        ("hf hf_" + "b" * 34, "hf"),
    ],
)
def test_key_shapes_are_replaced(text: str, kept: str) -> None:
    out = scrub(text)
    assert REDACTED in out and kept in out
    assert "0123456789" not in out and "AbCdEf" not in out and "eyJ" not in out


def test_ordinary_text_is_left_alone() -> None:
    text = "category 2 (safe, task not done): sk-short, token scope 'deploy:write' required"
    assert scrub(text) == text


_ALL_SHAPES = re.compile(
    r"""
      \bsk-[A-Za-z0-9_\-]{12,}
    | \b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*
    | \bAKIA[0-9A-Z]{16}\b
    | \bgh[pousr]_[A-Za-z0-9]{30,}\b
    | \bxox[abprs]-[A-Za-z0-9\-]{10,}
    | \bAIza[0-9A-Za-z_\-]{35}
    | \bhf_[A-Za-z0-9]{30,}\b
    | (?P<name>(?i:api[_-]?key|x-api-key|access[_-]?token|client[_-]?secret|password)
        ["']?\s*[:=]\s*["']?)[A-Za-z0-9._~+/\-]{12,}
    """,
    re.VERBOSE,
)
"""Every key shape tried at every position in one pass: what ``scrub`` must keep matching
while it leaves out the shapes whose literals a text lacks."""


def test_leaving_out_shapes_a_text_cannot_hold_redacts_exactly_what_all_shapes_do() -> None:
    from orchestrator._secrets import _shape, _shapes

    pieces = [
        *("sk-", "Bearer ", "Basic ", "AKIA", "ghp_", "gho_", "xoxb-", "AIza", "hf_"),
        *("api_key=", "API-KEY: '", "x-api-key=", "access_token:", "client-secret=", "PassWord="),
        *("paſſword=", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "abc.def/ghi~+", "=", "-", "_"),
        *(" ", "\n", '"', "'", "é", "sk", "gh", "xox"),
    ]
    rng = random.Random(15)
    redacted = 0
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        want = _ALL_SHAPES.sub(_shape, text)
        assert _shapes(text).sub(_shape, text) == want, text
        redacted += want != text
    assert redacted > 1000  # the draw reaches the shapes, not only ordinary text


def test_overlapping_shapes_are_redacted_whole() -> None:
    """A bearer token that holds an ``sk-`` key: one pass, the longer match wins."""
    text = "Authorization: Bearer sk-AAAAAAAAAAAAAAAA.BBBBBBBB/CCCC"
    assert scrub(text) == f"Authorization: {REDACTED}"


def test_a_secret_variable_is_read_afresh_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a name holds a secret is remembered; its value is not (set, changed, new)."""
    monkeypatch.setenv("LATE_SERVICE_TOKEN", "short")
    assert scrub("value short-lived-token-0001") == "value short-lived-token-0001"
    monkeypatch.setenv("LATE_SERVICE_TOKEN", "short-lived-token-0001")
    assert scrub("value short-lived-token-0001") == f"value {REDACTED}"
    monkeypatch.setenv("LATE_SERVICE_TOKEN", "rotated-token-0002")
    monkeypatch.setenv("ANOTHER_PASSWORD", "hunter2-but-longer")
    out = scrub("short-lived-token-0001 rotated-token-0002 hunter2-but-longer")
    assert out == f"short-lived-token-0001 {REDACTED} {REDACTED}"


def test_zipped_logs_are_rewritten_member_by_member(tmp_path: Path) -> None:
    secret = "sk-zip-secret-" + "9" * 20
    log = tmp_path / "run.eval"
    with zipfile.ZipFile(log, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.json", json.dumps({"error": f"401: {secret}"}))
        z.writestr("samples/1.json", json.dumps({"ok": "nothing to hide"}))
    assert scrub_file(log) is True
    with zipfile.ZipFile(log) as z:
        header = json.loads(z.read("header.json"))  # still valid JSON
        assert header == {"error": f"401: {REDACTED}"}
        assert z.getinfo("header.json").compress_type == zipfile.ZIP_DEFLATED
    assert scrub_file(log) is False  # nothing left to change
    text = tmp_path / "trace.log"
    text.write_text(f"line {secret}\n")
    assert scrub_file(text) and text.read_text() == f"line {REDACTED}\n"


def test_the_terminal_stream_scrubs_secrets_split_across_writes() -> None:
    sink = io.StringIO()
    stream = _ScrubbingStream(sink)
    stream.write("key: sk-split-")
    stream.write("0123456789abcdef and more\nnext ")
    assert sink.getvalue() == f"key: {REDACTED} and more\n"
    stream.flush()
    assert sink.getvalue().endswith("next ")


def test_scrubbed_stdio_covers_print(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("printed-secret-value-99")
    with scrubbed_stdio():
        print("oops printed-secret-value-99")
        import sys

        print("err printed-secret-value-99", file=sys.stderr)
    out, err = capsys.readouterr()
    assert out == f"oops {REDACTED}\n" and err == f"err {REDACTED}\n"


def test_the_journal_stores_no_secret(tmp_path: Path) -> None:
    register_secret("journal-secret-value-55")
    j = Journal.create(
        tmp_path / "s",
        session_id="s",
        model="openai/x",
        model_label="x",
        bank_path="b",
        bank_name="b",
        bank_sha256="0",
        config={"models": [{"model_args": {"api_key": "journal-secret-value-55"}}]},
        controller={},
    )
    j.begin_step(1, 1, "it1")
    j.record_error(
        1, 1, error_kind="setup", error_message="401 journal-secret-value-55 Bearer abcdefghijkl"
    )
    j.set_status("paused", "Incorrect API key provided: journal-secret-value-55")
    j.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "s").iterdir())
    assert b"journal-secret-value-55" not in raw and b"abcdefghijkl" not in raw
    j = Journal.open(tmp_path / "s", readonly=True)
    assert j.steps()[0].error_message == f"401 {REDACTED} {REDACTED}"
    assert j.session().status_reason == f"Incorrect API key provided: {REDACTED}"
    j.close()


# ----------------------------------------------------------------------------- Inspect's trace log
def test_a_log_record_is_scrubbed_before_it_is_formatted_as_json() -> None:
    """A key with a quote in it is JSON-escaped in a trace line, so scrubbing only the
    formatted line would miss it: the record's fields are scrubbed first."""
    from inspect_ai._util.trace import TraceFormatter

    from orchestrator._secrets import ScrubbingFormatter, scrub_log_handler

    secret = 'quoted"secret-value-31'
    register_secret(secret)
    record = logging.LogRecord("inspect_ai", 5, __file__, 1, "401: %s", (secret,), None)
    record.__dict__.update(
        action="Model", detail=f"key {secret}", event="error", extra={"headers": [secret]}
    )
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(TraceFormatter())
    scrub_log_handler(handler)
    scrub_log_handler(handler)  # once is enough; twice wraps nothing more
    assert isinstance(handler.formatter, ScrubbingFormatter)
    assert not isinstance(handler.formatter.inner, ScrubbingFormatter)
    line = json.loads(handler.format(record))
    assert line["message"] == f"401: {REDACTED}" and line["detail"] == f"key {REDACTED}"
    assert record.extra == {"headers": [secret]}  # the record itself is left as it was
    assert "secret-value-31" not in json.dumps(line)


AD_ITEMS = ["banking.user_task_0", "slack.user_task_7.injection_task_3"]
"""AgentDojo items: real Inspect runs through the simulated agent, no Docker needed."""


def _trace_file(tmp_path: Path, own_file: bool) -> Path:
    if own_file:
        return tmp_path / "my-trace.log"
    (trace,) = (tmp_path / "xdg" / "inspect_ai" / "traces").glob("trace-*.log")
    return trace


@pytest.mark.parametrize("own_file", [False, True], ids=["inspect-trace-dir", "INSPECT_TRACE_FILE"])
def test_inspect_trace_log_never_holds_the_key_and_keeps_every_line(
    own_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker runs three items; the endpoint revokes the key for the second and its 401
    echoes the key, which Inspect traces. The key must never be written to the trace log
    (Inspect's own, or the file ``INSPECT_TRACE_FILE`` names), and the third item's trace
    lines must still land in that same file."""
    from orchestrator.bank import load_bank
    from orchestrator.runner.inspect_run import RunJob
    from orchestrator.runner.pool import WorkerPool
    from orchestrator.runner.sources import SourceContext, prepare_items
    from orchestrator.sim.agent import SimAgent, players_for_bank
    from orchestrator.sim.server import FaultConfig, SimServer
    from tests.test_agentdojo import _subset_bank

    key = "sk-trace-" + "5" * 24
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # Inspect's trace folder
    if own_file:
        monkeypatch.setenv("INSPECT_TRACE_FILE", str(tmp_path / "my-trace.log"))
    folder = _subset_bank(tmp_path / "bank", AD_ITEMS)
    bank = load_bank(folder)
    items = prepare_items(bank, SourceContext())
    agent = SimAgent(bank, {}, seed=1, players=players_for_bank(bank))

    def job(step: int, item_id: str, url: str) -> RunJob:
        spec = bank.item(item_id)
        return RunJob(
            session_id="trace",
            session_key="0" * 16,
            item_id=item_id,
            step=step,
            attempt=1,
            source=items.sources[item_id],
            n_categories=spec.n_categories,
            labels=tuple(spec.labels or bank.spec.scale.labels[: spec.n_categories]),
            model="openai-api/sim/theta_0.0",
            log_dir=str(tmp_path / "logs"),
            prepared=dict(items.prepared.get(item_id, {})),
            base_url=url,
            api_key=key,
        )

    with (
        SimServer(agent, api_key=key, faults=FaultConfig(echo_key=True)) as srv,
        WorkerPool(1) as pool,
    ):
        first = asyncio.run(pool.submit(job(1, AD_ITEMS[0], srv.url)))
        inode = _trace_file(tmp_path, own_file).stat().st_ino
        srv.api_key = "revoked-" + key  # the 401 now quotes the key the run presents
        second = asyncio.run(pool.submit(job(2, AD_ITEMS[1], srv.url)))
        srv.api_key = key
        third = asyncio.run(pool.submit(job(3, AD_ITEMS[1], srv.url)))
        trace = _trace_file(tmp_path, own_file)
        text = trace.read_text(encoding="utf-8")  # read while the worker still holds it open
        assert trace.stat().st_ino == inode  # never replaced under Inspect's handler
    assert first.error_kind is None and third.error_kind is None
    assert second.error_kind == "setup" and REDACTED in (second.error_message or "")
    assert key not in text
    assert f"Incorrect API key provided: {REDACTED}" in text  # Inspect traced the echo, scrubbed
    lines = text.splitlines()
    echoed = next(i for i, ln in enumerate(lines) if f"provided: {REDACTED}" in ln)
    runs = [
        (i, json.loads(ln)["event"])
        for i, ln in enumerate(lines)
        if '"action": "Run Task"' in ln and "inspect_evals/agentdojo" in ln
    ]
    assert [event for _, event in runs] == ["enter", "exit"] * 3  # every item's lines
    assert runs[4][0] > echoed  # the third item's, after the key went by, included
    # the eval logs: none holds the key (the 401's is rewritten, the clean ones are left as
    # Inspect wrote them), and each is complete enough to read back (what `show` and a
    # reader of the session folder rely on)
    for res in (first, second, third):
        assert res.log_path is not None
        with zipfile.ZipFile(res.log_path) as z:
            assert all(key.encode() not in _member(z, name) for name in z.namelist())
    for res in (first, third):
        log = read_eval_log(str(res.log_path))
        assert log.status == "success" and log.samples and log.results is not None
        assert log.samples[0].scores and log.samples[0].events
        assert sum(u.total_tokens for u in log.stats.model_usage.values()) > 0
    assert read_eval_log(str(second.log_path)).status == "error"


def _member(z: zipfile.ZipFile, name: str) -> bytes:
    import zipfile_zstd  # noqa: F401  (Inspect writes zstd members)

    return z.read(name)
