"""Person-fit null tables kept on disk, so a new process does not simulate them again.

:func:`orchestrator.cat.fit.simulate_fit_null` keys a table by the SHA-256 of
everything it depends on (the bank's content, the rule, lapse, batch size,
replicates, seed, grid, the code's ``NULL_VERSION``); this store keeps one
``<key>.npz`` per table. A file is written whole to a temporary name and
renamed (:func:`~orchestrator._io.atomic_write_bytes`), so concurrent sessions
never read half a table; two sessions computing the same table write the same
bytes. A file is trusted only when its recorded key is the one asked for and
its arrays hash to the recorded digest; anything else (truncated, garbled, an
older layout) is treated as absent, so the table is simulated again and the
file rewritten. Saving is best effort: a read-only cache folder costs speed,
never a session. The folder is kept under a size bound (``max_bytes``, default
256 MiB, ``$AGENTCAT_NULL_CACHE_MB`` overrides it): after each save the least
recently used tables (a hit refreshes a file's time) are deleted until the rest
fit, so a user who tries many banks does not fill the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from orchestrator._io import atomic_write_bytes, cache_dir, prune_least_recent
from orchestrator.cat.fit import set_null_store
from orchestrator.irt.personfit import FIT_COMPONENTS, FitNull

__all__ = ["DiskNullStore", "default_null_cache_dir", "install_disk_null_store"]

log = logging.getLogger(__name__)
_ARRAYS = ("nodes", "centres", "stats", "min_p")
DEFAULT_MAX_MB = 256


def _default_max_bytes() -> int:
    raw = os.environ.get("AGENTCAT_NULL_CACHE_MB", "")
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        log.warning("AGENTCAT_NULL_CACHE_MB=%r is not a number; using %d", raw, DEFAULT_MAX_MB)
        mb = DEFAULT_MAX_MB
    return max(0, int(mb * 2**20))


def default_null_cache_dir() -> Path:
    """``person-fit`` under agentcat's cache root (:func:`orchestrator._io.cache_dir`)."""
    return cache_dir() / "person-fit"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class DiskNullStore:
    """One ``<key>.npz`` per null table in ``folder`` (created on first save), at most
    ``max_bytes`` of them in all (least recently used removed first)."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.folder = Path(folder)
        self.max_bytes = _default_max_bytes() if max_bytes is None else max_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> FitNull | None:
        path = self.path(key)
        try:
            present = path.is_file()
        except OSError as exc:  # e.g. a folder without search permission
            log.warning("person-fit null cache %s unreadable (%s); building the null", path, exc)
            return None
        if not present:
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: np.array(npz[name]) for name in _ARRAYS}
                meta = json.loads(str(npz["meta"]))
            c, t, g, r = arrays["stats"].shape
            sound = (
                meta["key"] == key
                and meta["digest"] == _digest(arrays)
                and c == len(FIT_COMPONENTS)
                and arrays["nodes"].shape == (g,)
                and arrays["centres"].shape == (t, g)
                and arrays["min_p"].shape == (t, g, r)
            )
        except Exception as exc:  # any unreadable file is a cache miss
            log.warning("person-fit null cache %s is unreadable (%s); rebuilding it", path, exc)
            return None
        if not sound:
            log.warning("person-fit null cache %s does not match its key; rebuilding it", path)
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(path)  # recently used: the last to be pruned
        return FitNull(spec=meta["spec"], **arrays)

    def save(self, key: str, table: FitNull) -> None:
        arrays = {name: np.asarray(getattr(table, name)) for name in _ARRAYS}
        meta = {"key": key, "digest": _digest(arrays), "spec": table.spec}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta, default=str)), **arrays)
        try:
            atomic_write_bytes(self.path(key), buf.getvalue())
        except OSError as exc:
            log.warning("person-fit null not cached in %s: %s", self.folder, exc)
            return
        self.prune(keep=key)

    def prune(self, keep: str | None = None) -> list[Path]:
        """Delete least recently used tables until the folder holds at most ``max_bytes``
        (never the table ``keep``, just saved); returns what was deleted."""
        return prune_least_recent(self.folder, "*.npz", self.max_bytes, keep)


def install_disk_null_store(folder: str | os.PathLike[str] | None = None) -> DiskNullStore:
    """Make :func:`~orchestrator.cat.fit.simulate_fit_null` keep its tables in ``folder``
    (default :func:`default_null_cache_dir`) for this process."""
    store = DiskNullStore(default_null_cache_dir() if folder is None else folder)
    set_null_store(store)
    return store
