"""Shared fixtures. Every random draw is seeded."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bank import ItemBank

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_IMAGES = f"agentcat-test-{os.getpid()}"
"""Namespace of the images the tests build for themselves, removed when the test session
ends; unique per test process, so parallel test runs on one engine never remove each
other's. (The scenario images `agentcat images build` makes for users are left in place.)"""


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches the tests fill (the person-fit null on disk) go to a folder of this test
    session, for the CLI processes the tests start too: never into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTCAT_CACHE_DIR", str(tmp_path_factory.mktemp("agentcat-cache")))
        yield


@pytest.fixture(autouse=True)
def _no_leftover_null_store() -> Iterator[None]:
    """A CLI command run in-process installs the disk store of person-fit nulls for the
    process; put back what was there so a later test's result never depends on order."""
    from orchestrator.cat.fit import set_null_store

    previous = set_null_store(None)
    set_null_store(previous)
    yield
    set_null_store(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def make_bank(n_items: int = 40, k: int = 4, seed: int = 0, name: str = "synthetic") -> ItemBank:
    """A bank with known parameters: a ~ LogNormal(0, 0.3), ordered b around N(0, 1)."""
    r = np.random.default_rng(seed)
    a = np.exp(r.normal(0.0, 0.3, n_items))
    centre = r.normal(0.0, 1.0, n_items)
    if k == 2:
        b = centre[:, None]
    else:
        steps = np.sort(r.uniform(-1.5, 1.5, (n_items, k - 1)), axis=1)
        b = centre[:, None] + steps
    ids = [f"it{i:03d}" for i in range(n_items)]
    return ItemBank.from_params(name, ids, a, b)


@pytest.fixture
def bank4() -> ItemBank:
    return make_bank(40, 4)


# ----------------------------------------------------------------------------- docker
@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """Skip (or, with AGENTCAT_REQUIRE_DOCKER=1 as in CI, fail) without a Docker engine.

    At the end of the session, no container labelled by this test process may remain.
    """
    from orchestrator.errors import PrerequisiteError
    from orchestrator.runner.docker_client import docker_client
    from orchestrator.runner.sandbox import OWNER_PID, finish_removals, managed_containers

    try:
        docker_client()
    except PrerequisiteError as exc:
        if os.environ.get("AGENTCAT_REQUIRE_DOCKER"):
            pytest.fail(f"Docker is required here: {exc}")
        pytest.skip(f"no Docker engine: {exc.message}")
    yield
    finish_removals()  # finished runs' containers are removed in the background
    leftovers = managed_containers({OWNER_PID: str(os.getpid())})
    assert not leftovers, f"sandbox containers left behind by the tests: {leftovers}"
    remove_test_images()


def remove_test_images() -> list[str]:
    """Remove every image tagged under :data:`TEST_IMAGES` (and nothing else)."""
    from docker.errors import APIError

    from orchestrator.runner.docker_client import docker_client

    client = docker_client()
    removed = []
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{TEST_IMAGES}/"):
                try:
                    client.images.remove(tag)
                    removed.append(tag)
                except APIError as exc:  # e.g. a container of another test still uses it
                    warnings.warn(f"could not remove test image {tag}: {exc}", stacklevel=1)
    return removed


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    from orchestrator.runner.images import ensure_base_image

    return ensure_base_image().image


@pytest.fixture(scope="session")
def sandbox_test_image(base_image: str) -> str:
    """tests/docker/sandbox built on the local Debian base (cached by context hash)."""
    from orchestrator.runner.images import build_context_image

    return build_context_image(
        REPO / "tests" / "docker" / "sandbox",
        f"{TEST_IMAGES}/sandbox",
        {"BASE_IMAGE": base_image},
        base_image,
    ).image
