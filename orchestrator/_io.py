"""Small file helpers: atomic writes, hashing, versioned JSON documents, output checks."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "check_writable_dir",
    "check_writable_file",
    "prune_least_recent",
    "sha256_file",
    "where_not_utf8",
]


_UMASK = os.umask(0)
os.umask(_UMASK)
"""The process umask, read once at import: flipping it at write time would let files other
threads create meanwhile be world-writable."""


def cache_dir() -> Path:
    """agentcat's cache root: ``$AGENTCAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/agentcat``
    (``~/.cache/agentcat`` without XDG). The first lets a test run or a container keep its
    own caches (text embeddings, person-fit nulls, image content) out of the user's."""
    own = os.environ.get("AGENTCAT_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "agentcat"


def prune_least_recent(
    folder: Path, pattern: str, max_bytes: int, keep: str | None = None
) -> list[Path]:
    """Delete the least recently modified ``pattern`` files of ``folder`` until the rest
    hold at most ``max_bytes`` (never the file whose stem is ``keep``); returns what was
    deleted. A cache's reader refreshes a file's time on a hit, so it goes last."""
    try:
        files = [(f.stat(), f) for f in folder.glob(pattern)]
    except OSError:
        return []
    total = sum(st.st_size for st, _ in files)
    removed: list[Path] = []
    for st, f in sorted(files, key=lambda sf: sf[0].st_mtime):
        if total <= max_bytes:
            break
        if f.stem == keep:
            continue
        try:
            f.unlink()
        except OSError:  # another process removed it, or no permission: leave it
            continue
        total -= st.st_size
        removed.append(f)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` via a temp file + ``os.replace``: readers never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], doc: Any) -> Path:
    """Pretty, key-stable JSON; NaN/inf are refused (they are not JSON)."""
    return atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Make sure ``path`` is (or can become) a folder we can write in, before long work.

    Creates the folder (and its parents) and writes and removes a probe file in it:
    permission bits alone do not tell about read-only mounts, ``/proc`` or a full disk.

    Args:
        what: How the user named it (``--runs-dir``), for the message.

    Raises:
        ConfigError: naming the folder and the reason.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{what} {folder} is a file, not a folder",
            hint=f"choose another {what}, or move the file away",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".agentcat-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"{what} {folder}: cannot write there ({exc.strerror or exc})",
            hint=f"choose a {what} on a writable disk that you own (e.g. under your home)",
        ) from None
    return folder


def check_writable_file(path: str | os.PathLike[str], what: str) -> Path:
    """Make sure the file ``path`` can be written (its folder is writable, it is no folder)."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(
            f"{what} {target} is a folder; it must name a file",
            hint=f"name a file inside it, e.g. {target / 'out'}",
        )
    if target.name in ("", ".", ".."):
        raise ConfigError(f"{what} {str(path)!r} does not name a file")
    check_writable_dir(target.parent, f"the folder of {what}")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(
            f"{what} {target} exists and cannot be overwritten",
            hint=f"choose another {what}, or fix the file's permissions",
        )
    return target


def where_not_utf8(exc: UnicodeDecodeError) -> str:
    """``byte 0xff at offset 12``: where a file that should be UTF-8 text is not."""
    return f"byte 0x{exc.object[exc.start : exc.start + 1].hex()} at offset {exc.start}"
