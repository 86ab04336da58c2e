"""Housekeeping of agentcat's sandbox containers: who owns one, listing, pruning.

Apart from :mod:`orchestrator.runner.sandbox` (the Inspect sandbox provider) because
it needs only the Docker SDK: the process that drives sessions prunes a session's
leftovers without importing Inspect (seconds of CPU per process).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from docker.errors import APIError, NotFound

from orchestrator.runner.docker_client import LABEL_ROLE, docker_client

__all__ = [
    "OWNER_HOST",
    "OWNER_PID",
    "Pruned",
    "managed_containers",
    "owner_labels",
    "owner_state",
    "prune_containers",
    "prune_orphans",
    "remove_container",
]

ROLE_SANDBOX = "sandbox"
OWNER_HOST = "agentcat.owner.host"
OWNER_PID = "agentcat.owner.pid"
OWNER_BOOT = "agentcat.owner.boot"
OWNER_START = "agentcat.owner.start"
"""Start time of the owner pid (clock ticks since boot): a reused pid is another process."""
SPARE = "agentcat.spare"
"""``1`` on a container started before its item was known (see the sandbox module)."""
SEED = "agentcat.seed"
"""On a container created (never started) only to read an image's content at this path."""


def remove_container(container_id: str) -> None:
    """Remove a container and its anonymous volumes; one already gone is fine, and so
    is one another process is removing (two runs' prunes of the same orphaned spare)."""
    try:
        docker_client().api.remove_container(container_id, v=True, force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc.explanation):
            raise


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` (field 22 of /proc/PID/stat), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_labels() -> dict[str, str]:
    """Labels naming this process as the owner of the sandboxes it starts."""
    return {
        OWNER_HOST: socket.gethostname(),
        OWNER_BOOT: _boot_id(),
        OWNER_PID: str(os.getpid()),
        OWNER_START: _start_ticks(os.getpid()) or "",
    }


def owner_state(labels: Mapping[str, str]) -> Literal["alive", "gone", "unknown"]:
    """Whether the process that started a sandbox still runs.

    Known for owners on this host (same hostname and boot: the pid and its start
    time) and for owners that ran in a container of this engine (Docker's default
    hostname is the short container id: gone once that container is). Anything
    else is ``unknown``, and prune keeps it.
    """
    host, pid = labels.get(OWNER_HOST), labels.get(OWNER_PID, "")
    if not host or not pid.isdigit():
        return "unknown"
    if host == socket.gethostname() and labels.get(OWNER_BOOT, "") == _boot_id():
        start = _start_ticks(int(pid))
        return "alive" if start is not None and start == labels.get(OWNER_START) else "gone"
    if re.fullmatch(r"[0-9a-f]{12}", host):
        found = docker_client().api.containers(all=True, filters={"id": host})
        if not any(c["Id"].startswith(host) and c["State"] == "running" for c in found):
            return "gone"
    return "unknown"


def _sandboxes(labels: Mapping[str, str] | None, has: str | None = None) -> list[dict[str, Any]]:
    """Containers agentcat started as sandboxes (a role label inherited from an image
    does not count), optionally filtered by more labels, and by a label ``has`` of any
    value."""
    api = docker_client().api
    wanted = [f"{LABEL_ROLE}={ROLE_SANDBOX}", *(f"{k}={v}" for k, v in (labels or {}).items())]
    wanted += [has] if has else []
    image_roles: dict[str, str | None] = {}
    found = []
    for c in api.containers(all=True, filters={"label": wanted}):
        image = c.get("ImageID", "")
        if image not in image_roles:
            try:
                image_labels = api.inspect_image(image)["Config"].get("Labels") or {}
            except (NotFound, APIError):
                image_labels = {}
            image_roles[image] = image_labels.get(LABEL_ROLE)
        if image_roles[image] is None:
            found.append(c)
    return found


def managed_containers(labels: Mapping[str, str] | None = None) -> list[str]:
    """Ids of agentcat sandboxes (running or not), optionally filtered by more labels."""
    return [c["Id"] for c in _sandboxes(labels)]


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune_containers` did."""

    removed: list[str]
    kept: list[str]
    """Sandboxes left alone: their owner runs, or cannot be told to be gone."""


def prune_containers(labels: Mapping[str, str] | None = None, *, any_owner: bool = False) -> Pruned:
    """Remove agentcat sandboxes (and their volumes) whose owner process is gone.

    Args:
        labels: Only sandboxes that also carry these labels, plus the spares and seed
            containers (which carry no session, item or run) whose owner is gone.
        any_owner: Remove regardless of the owner: only for the owner itself, or for
            the driver of a session that holds the session's lock (then no other
            process can own a sandbox of that session).
    """
    removed, kept = [], []
    found = _sandboxes(labels)
    for c in found:
        if any_owner or owner_state(c.get("Labels") or {}) == "gone":
            remove_container(c["Id"])
            removed.append(c["Id"])
        else:
            kept.append(c["Id"])
    if labels and SPARE not in labels:  # they carry no session/task: take the orphaned ones
        removed += prune_orphans()  # (the ones found above are removed or kept: not gone)
    return Pruned(removed, kept)


def prune_orphans() -> list[str]:
    """Remove the spares and seed containers whose owner process is gone (a SIGKILL leaves
    them); they belong to no session or task, so no prune of one would find them."""
    removed = []
    for label in (SPARE, SEED):
        for c in _sandboxes(None, has=label):
            if owner_state(c.get("Labels") or {}) == "gone":
                remove_container(c["Id"])
                removed.append(c["Id"])
    return removed
