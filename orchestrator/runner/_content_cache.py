"""Image directories' content kept on disk, so a new process does not read it again.

A sandbox's writable paths are tmpfs volumes seeded with what the image holds
there, read through a *seed* container (created, never started, read, removed).
Each process caches that in memory; without a disk copy every new worker paid
one seed container per image and path, which in short runs was about one extra
container per item. A file is keyed by the image's id (a content hash: a
rebuilt image is a new key) and the path, and trusted only when its recorded key
and digest match; anything else is a miss, read again from the image. Saving
is best effort, and the folder is kept under ``MAX_BYTES`` (least recently
used first), like the person-fit nulls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from orchestrator._io import atomic_write_bytes, cache_dir, prune_least_recent

__all__ = ["MAX_BYTES", "content_cache_dir", "load_content", "save_content"]

log = logging.getLogger(__name__)
MAX_BYTES = 64 * 1024 * 1024


def content_cache_dir() -> Path:
    """``image-content`` under agentcat's cache root (:func:`orchestrator._io.cache_dir`)."""
    return cache_dir() / "image-content"


def _key(image_id: str, path: str) -> str:
    return hashlib.sha256(f"{image_id}\0{path}".encode()).hexdigest()


def load_content(image_id: str, path: str) -> tuple[int, int, int, bytes] | None:
    """``(uid, gid, mode, tar)`` of the image's directory at ``path``, or None."""
    key = _key(image_id, path)
    file = content_cache_dir() / f"{key}.bin"
    try:
        raw = file.read_bytes()
    except OSError:  # absent, or a folder we may not read: a miss
        return None
    head, sep, tar = raw.partition(b"\n")
    try:
        meta = json.loads(head)
        sound = (
            bool(sep) and meta["key"] == key and meta["sha256"] == hashlib.sha256(tar).hexdigest()
        )
        found = (int(meta["uid"]), int(meta["gid"]), int(meta["mode"]), tar)
    except (ValueError, KeyError, TypeError):
        sound = False
    if not sound:
        log.warning("image content cache %s does not match its key; reading the image", file)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(file)  # recently used: the last to be pruned
    return found


def save_content(image_id: str, path: str, uid: int, gid: int, mode: int, tar: bytes) -> None:
    """Keep the content for the next process (best effort: a failure costs speed only)."""
    key = _key(image_id, path)
    meta = {
        "key": key,
        "image": image_id,
        "path": path,
        "uid": uid,
        "gid": gid,
        "mode": mode,
        "sha256": hashlib.sha256(tar).hexdigest(),
    }
    folder = content_cache_dir()
    try:
        atomic_write_bytes(folder / f"{key}.bin", json.dumps(meta).encode() + b"\n" + tar)
    except OSError as exc:
        log.warning("image content not cached in %s: %s", folder, exc)
        return
    prune_least_recent(folder, "*.bin", MAX_BYTES, keep=key)
