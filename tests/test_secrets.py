"""Secret scrubbing: values, environment, key shapes, zipped logs, the terminal, the journal."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

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
