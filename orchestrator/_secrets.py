"""Keep secrets out of everything agentcat writes or prints.

An endpoint can put the key it was given into its error body ("Incorrect API
key provided: sk-…"), and from there it would reach the journal, the terminal
and Inspect's logs. So every text agentcat stores or prints goes through
:func:`scrub`, which replaces

* every configured secret value: keys registered by the run
  (:func:`register_secret`, called where a model's key is resolved) and the
  value of every environment variable whose name says it holds one
  (``*API_KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``);
* common key shapes: ``sk-…``, ``Bearer …``/``Basic …``, ``api_key=…``-style
  assignments, AWS, GitHub, Slack, Google and Hugging Face tokens,

with ``[redacted]``. Where it applies: journal rows (:mod:`orchestrator.session.journal`),
the CLI's stdout/stderr and the worker processes' (:func:`scrubbed_stdio`),
Inspect's trace log and Python log file, record by record as they are written
(:class:`ScrubbingFormatter` on Inspect's file handlers), and its ``.eval`` logs,
read after every run and rewritten when they hold a secret (:func:`scrub_file`;
Inspect offers no hook that filters an eval log before it is written).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "REDACTED",
    "ScrubbingFormatter",
    "install_scrubbed_stdio",
    "register_secret",
    "scrub",
    "scrub_any",
    "scrub_file",
    "scrub_files",
    "scrub_log_handler",
    "scrubbed_stdio",
]

REDACTED = "[redacted]"
_MIN_SECRET = 8
_SECRET_VAR = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MARKED_SHAPES: tuple[tuple[tuple[str, ...], str], ...] = (
    # (literals one of which every match contains, pattern): case-sensitive, in this order
    (("sk-",), r"\bsk-[A-Za-z0-9_\-]{12,}"),  # OpenAI / Anthropic style
    (("Bearer", "Basic"), r"\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*"),  # Authorization
    (("AKIA",), r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub
    (("xox",), r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    (("AIza",), r"\bAIza[0-9A-Za-z_\-]{35}"),  # Google
    (("hf_",), r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face
)
_NAMED_SHAPE = (  # key = value; case-insensitive, so always tried (no cheap literal test)
    r"""(?P<name>(?i:api[_-]?key|x-api-key|access[_-]?token|client[_-]?secret|password)"""
    r"""["']?\s*[:=]\s*["']?)[A-Za-z0-9._~+/\-]{12,}"""
)
_SHAPE_MARKS = tuple((mark, i) for i, (marks, _) in enumerate(_MARKED_SHAPES) for mark in marks)
_shape_cache: dict[frozenset[int], re.Pattern[str]] = {}


def _shapes(text: str) -> re.Pattern[str]:
    """One alternation of the key shapes that can match in ``text``.

    A shape whose every match contains a literal that ``text`` lacks cannot
    match, so leaving it out changes nothing (the rest keep their order and
    still run as one pass, so overlapping matches resolve as before). Trying
    every shape at every position made an item's eval log take ~30 ms to scrub.
    """
    present = frozenset(i for mark, i in _SHAPE_MARKS if mark in text)
    rx = _shape_cache.get(present)
    if rx is None:
        branches = [_MARKED_SHAPES[i][1] for i in sorted(present)] + [_NAMED_SHAPE]
        rx = _shape_cache[present] = re.compile("|".join(branches))
    return rx


_registered: set[str] = set()
_lock = threading.Lock()
_literal_cache: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from now on (in this process); short values are ignored."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _registered.add(value)


_secret_names: dict[str, bool] = {}
"""Whether an environment variable's name says it holds a secret, by name (names are few
and fixed; their values are read afresh every time)."""


def _is_secret_name(name: str) -> bool:
    known = _secret_names.get(name)
    if known is None:
        known = _secret_names[name] = _SECRET_VAR.search(name) is not None
    return known


def _secrets() -> frozenset[str]:
    from_env = {v for k, v in os.environ.items() if len(v) >= _MIN_SECRET and _is_secret_name(k)}
    with _lock:
        return frozenset(_registered | from_env)


def _literals() -> re.Pattern[str] | None:
    global _literal_cache
    secrets = _secrets()
    cached, rx = _literal_cache
    if secrets != cached:
        # longest first, so a key that contains another is replaced whole
        alts = sorted(secrets, key=len, reverse=True)
        rx = re.compile("|".join(re.escape(s) for s in alts)) if alts else None
        _literal_cache = (secrets, rx)
    return rx


def _shape(m: re.Match[str]) -> str:
    return (m.group("name") or "") + REDACTED


def scrub(text: str) -> str:
    """``text`` with every known secret and key-shaped token replaced by ``[redacted]``."""
    return _scrub_with(_literals(), text) if text else text


def _scrub_with(literals: re.Pattern[str] | None, text: str) -> str:
    if not text:
        return text
    if literals is not None:
        text = literals.sub(REDACTED, text)
    return _shapes(text).sub(_shape, text)


def scrub_any(value: Any) -> Any:
    """:func:`scrub` applied to a string, or to every string inside lists and dicts."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_any(v) for v in value)
    return value


def _scrub_bytes(data: bytes) -> bytes:
    return scrub(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def scrub_file(path: str | os.PathLike[str]) -> bool:
    """Rewrite ``path`` (a zip archive member by member, e.g. an Inspect ``.eval`` log, or any
    text file) without secrets, atomically; returns whether anything changed."""
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            return _scrub_zip(p)
        data = p.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return False
    clean = _scrub_bytes(data)
    if clean == data:
        return False
    _replace(p, clean)
    return True


def _scrub_zip(p: Path) -> bool:
    with contextlib.suppress(ImportError):  # Inspect writes zstd members; this teaches zipfile
        import zipfile_zstd  # type: ignore[import-not-found, import-untyped]  # noqa: F401
    with zipfile.ZipFile(p) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    clean = [_scrub_bytes(data) for _, data in members]
    if all(c == data for c, (_, data) in zip(clean, members, strict=True)):
        return False  # nothing to hide: the archive stays as Inspect wrote it, not recompressed
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for (info, _), data in zip(members, clean, strict=True):
            dst.writestr(info, data, compress_type=info.compress_type)
    _replace(p, out.getvalue())
    return True


def _replace(p: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".scrub")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def scrub_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    for path in paths:
        scrub_file(path)


class ScrubbingFormatter(logging.Formatter):
    """Wraps a log handler's formatter so that no record reaches its file with a secret.

    The record's message and text fields are scrubbed before the inner formatter
    runs (a secret is found before it is JSON-escaped into a trace line), and the
    formatted line once more (for whatever the formatter adds, e.g. ``str()`` of
    an object). Applied at format time, so a key registered later is caught too.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        rx = _literals()  # once per record, not once per field
        fields = {
            k: _scrub_with(rx, v)
            if isinstance(v, str)
            else scrub_any(v)  # a dict or list (e.g. `detail`): before json.dumps escapes it
            if isinstance(v, dict | list | tuple)
            else v
            for k, v in vars(record).items()
        }
        clean = logging.makeLogRecord(fields)
        clean.msg, clean.args = _scrub_with(rx, record.getMessage()), None
        return _scrub_with(rx, self.inner.format(clean))


def scrub_log_handler(handler: logging.Handler) -> None:
    """Make ``handler`` write every record scrubbed (once; calling again changes nothing)."""
    if not isinstance(handler.formatter, ScrubbingFormatter):
        handler.setFormatter(ScrubbingFormatter(handler.formatter))


class _ScrubbingStream(io.TextIOBase):
    """A text stream that scrubs what passes through it, a line at a time (a secret split
    across two writes of one line is still caught)."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
        if cut >= 0:
            self._inner.write(scrub(self._buf[: cut + 1]))
            self._buf = self._buf[cut + 1 :]
        return len(s)

    def flush(self) -> None:
        if self._buf:
            self._inner.write(scrub(self._buf))
            self._buf = ""
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def scrubbed_stdio() -> Iterator[None]:
    """Scrub everything this process prints to ``sys.stdout``/``sys.stderr`` in the block."""
    old = sys.stdout, sys.stderr
    out, err = _ScrubbingStream(old[0]), _ScrubbingStream(old[1])
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield
    finally:
        for s in (out, err):
            with contextlib.suppress(Exception):
                s.flush()
        sys.stdout, sys.stderr = old


def install_scrubbed_stdio() -> None:
    """For a process's whole life (worker processes): scrub its stdout and stderr."""
    if not isinstance(sys.stdout, _ScrubbingStream):
        sys.stdout = _ScrubbingStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _ScrubbingStream):
        sys.stderr = _ScrubbingStream(sys.stderr)  # type: ignore[assignment]
