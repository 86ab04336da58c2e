"""`agentcat images build`: offline build, cache by context hash, staleness, prune."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import PrerequisiteError
from orchestrator.runner.docker_client import docker_client
from orchestrator.runner.images import build_images, family_image

pytestmark = pytest.mark.docker
NS = "agentcat-test"


def _environments(root: Path) -> Path:
    (root / "_base").mkdir(parents=True)
    (root / "_base" / "Dockerfile").write_text(
        "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\nRUN useradd -m -u 1000 agent\n"
    )
    toy = root / "toy"
    toy.mkdir()
    (toy / "Dockerfile").write_text(
        "ARG SCENARIO_BASE=agentcat/scenario-base:latest\nFROM ${SCENARIO_BASE}\n"
        "COPY hello.txt /srv/hello.txt\n"
    )
    (toy / "hello.txt").write_text("v1\n")
    (root / "_ignored").mkdir()
    return root


def test_build_is_cached_by_context_and_detects_stale_images(
    tmp_path: Path, base_image: str
) -> None:
    env = _environments(tmp_path / "environments")
    first = build_images(env, namespace=NS, base_image=base_image)
    assert [r.image for r in first] == [
        base_image,
        f"{NS}/scenario-base:latest",
        f"{NS}/env-toy:latest",
    ]
    again = build_images(env, namespace=NS, base_image=base_image)
    assert [r.status for r in again[1:]] == ["cached", "cached"]
    assert family_image("toy", env, namespace=NS) == f"{NS}/env-toy:latest"

    (env / "toy" / "hello.txt").write_text("v2\n")
    with pytest.raises(PrerequisiteError, match="is stale") as exc:
        family_image("toy", env, namespace=NS)
    assert "agentcat images build" in (exc.value.hint or "")
    rebuilt = build_images(env, namespace=NS, base_image=base_image)
    assert [r.status for r in rebuilt[1:]] == ["cached", "built"]
    out = docker_client().containers.run(
        f"{NS}/env-toy:latest", ["cat", "/srv/hello.txt"], remove=True
    )
    assert out == b"v2\n"


def test_unknown_family_and_missing_image_errors(tmp_path: Path, base_image: str) -> None:
    env = _environments(tmp_path / "environments")
    with pytest.raises(PrerequisiteError, match=r"unknown families \['nope'\]"):
        build_images(env, namespace=NS, families=["nope"])
    with pytest.raises(PrerequisiteError, match="no image for scenario family 'absent'"):
        family_image("absent", env, namespace=NS)


def test_cli_images_prune_and_errors(tmp_path: Path, sandbox_test_image: str, capsys) -> None:
    import asyncio

    from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec, managed_containers

    session = f"prune-{tmp_path.name[-8:]}"
    spec = SandboxSpec(image=sandbox_test_image, user="root", workdir="/root")
    asyncio.run(AgentcatSandbox.create(spec, {"agentcat.session": session}))
    assert len(managed_containers({"agentcat.session": session})) == 1
    assert main(["images", "prune", "--session", session]) == 0
    assert "removed 1 container(s)" in capsys.readouterr().out
    assert managed_containers({"agentcat.session": session}) == []
    code = main(["images", "build", "--environments", str(tmp_path / "missing"), "--json"])
    assert code == 1
    assert "environments folder not found" in capsys.readouterr().err
