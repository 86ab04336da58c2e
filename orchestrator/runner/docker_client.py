"""One Docker SDK client per process, with prerequisite errors that say how to fix them."""

from __future__ import annotations

import os
import threading

import docker
from docker.errors import DockerException

from orchestrator.errors import PrerequisiteError

__all__ = ["LABEL_MANAGED", "docker_client"]

LABEL_MANAGED = "agentcat.managed"
"""Every container and image agentcat creates carries this label (value "1")."""

_lock = threading.Lock()
_client: docker.DockerClient | None = None
_client_pid: int | None = None


def docker_client() -> docker.DockerClient:
    """The process's Docker client (re-created after a fork).

    Raises:
        PrerequisiteError: the engine cannot be reached.
    """
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except DockerException as exc:
                where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                raise PrerequisiteError(
                    f"cannot reach the Docker engine at {where}: {_short(exc)}",
                    hint="start the Docker daemon (e.g. `sudo systemctl start docker` or "
                    "`dockerd &`) or set DOCKER_HOST; `docker version` must show a Server",
                ) from None
            _client, _client_pid = client, os.getpid()
        return _client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
