"""One Docker SDK client per process, with prerequisite errors that say how to fix them.

Labels keep what agentcat creates apart from everything else on a shared engine,
and images apart from containers: a container inherits every label of its image,
so no label an image carries can mark a container as ours.

* images agentcat builds carry :data:`LABEL_IMAGE` (what the image is) and never
  :data:`LABEL_ROLE`;
* containers agentcat starts carry :data:`LABEL_ROLE` plus their owner (see
  :mod:`orchestrator.runner.sandbox`); only those are ever pruned.
"""

from __future__ import annotations

import os
import threading

import docker
from docker.errors import DockerException

from orchestrator.errors import PrerequisiteError

__all__ = ["LABEL_IMAGE", "LABEL_ROLE", "docker_client"]

LABEL_IMAGE = "agentcat.image"
"""On images agentcat builds: ``base``, ``scenario-base``, ``family`` or ``test``."""
LABEL_ROLE = "agentcat.role"
"""On containers agentcat starts (``sandbox``); never set on an image."""

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
                if client.api.base_url.startswith("http+docker://"):  # a unix socket
                    _no_environment_lookups(client)
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


def _no_environment_lookups(client: docker.DockerClient) -> None:
    """Have requests to a local socket skip what ``requests`` looks up for each request:
    ``~/.netrc`` and the proxy variables (a proxy cannot carry a unix socket; the SDK's
    socket adapter ignores proxies). About a third of the client's CPU per engine request,
    and a live item makes some twenty (each ``docker exec`` three or more)."""
    client.api.trust_env = False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
