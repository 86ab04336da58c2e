"""`agentcat images build`: offline build, content-addressed tags, staleness, the build lock,
labels that never make a foreign container look like a sandbox, and an owner-aware prune.

Every test uses its own namespace or session label: the Docker engine is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.cli import main
from orchestrator.errors import PrerequisiteError
from orchestrator.runner.docker_client import docker_client
from orchestrator.runner.images import build_images, family_image
from tests.conftest import REPO, TEST_IMAGES

pytestmark = pytest.mark.docker
NS = TEST_IMAGES


def _environments(root: Path, hello: str = "v1\n", slow: bool = False) -> Path:
    (root / "_base").mkdir(parents=True)
    (root / "_base" / "Dockerfile").write_text(
        "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\nRUN useradd -m -u 1000 agent\n"
    )
    toy = root / "toy"
    toy.mkdir()
    (toy / "Dockerfile").write_text(
        "ARG SCENARIO_BASE=agentcat/scenario-base:latest\nFROM ${SCENARIO_BASE}\n"
        + ("RUN sleep 4\n" if slow else "")
        + "COPY hello.txt /srv/hello.txt\n"
    )
    (toy / "hello.txt").write_text(hello)
    (root / "_ignored").mkdir()
    return root


def _cat_hello(image: str) -> bytes:
    return docker_client().containers.run(image, ["cat", "/srv/hello.txt"], remove=True)


def test_build_is_cached_by_context_and_detects_stale_images(
    tmp_path: Path, base_image: str
) -> None:
    env = _environments(tmp_path / "environments", hello=f"v1 {uuid.uuid4().hex}\n")
    first = build_images(env, namespace=NS, base_image=base_image)
    assert first[0].image == base_image
    assert first[1].image.startswith(f"{NS}/scenario-base:")
    assert first[2].image.startswith(f"{NS}/env-toy:")
    again = build_images(env, namespace=NS, base_image=base_image)
    assert [r.status for r in again[1:]] == ["cached", "cached"]
    assert [r.image for r in again] == [r.image for r in first]
    assert family_image("toy", env, namespace=NS) == first[2].image

    v2 = f"v2 {uuid.uuid4().hex}\n"  # content never built before (tags are content hashes)
    (env / "toy" / "hello.txt").write_text(v2)
    with pytest.raises(PrerequisiteError, match="is stale") as exc:
        family_image("toy", env, namespace=NS)
    assert "agentcat images build" in (exc.value.hint or "")
    rebuilt = build_images(env, namespace=NS, base_image=base_image)
    assert [r.status for r in rebuilt[1:]] == ["cached", "built"]
    assert family_image("toy", env, namespace=NS) == rebuilt[2].image != first[2].image
    assert _cat_hello(rebuilt[2].image) == v2.encode()


def test_two_checkouts_on_one_engine_keep_their_own_images(tmp_path: Path, base_image: str) -> None:
    """Checkout A builds, then checkout B (same family, other content) builds: A must still
    run its own scenario, not B's (and not fail as "stale")."""
    mark = uuid.uuid4().hex[:8]
    env_a = _environments(tmp_path / "a" / "environments", hello=f"A {mark}\n")
    env_b = _environments(tmp_path / "b" / "environments", hello=f"B {mark}\n")
    build_images(env_a, namespace=NS, base_image=base_image)
    build_images(env_b, namespace=NS, base_image=base_image)
    image_a = family_image("toy", env_a, namespace=NS)
    image_b = family_image("toy", env_b, namespace=NS)
    assert image_a != image_b
    assert _cat_hello(image_a) == f"A {mark}\n".encode()
    assert _cat_hello(image_b) == f"B {mark}\n".encode()


def test_concurrent_builds_are_serialised(tmp_path: Path, base_image: str) -> None:
    """Two processes build the same (new) context at once: one builds, the other waits for
    it and reuses its image."""
    env = _environments(tmp_path / "environments", hello=f"{uuid.uuid4().hex}\n", slow=True)
    code = textwrap.dedent(
        f"""
        import json
        from orchestrator.runner.images import build_images
        res = build_images({str(env)!r}, namespace={NS!r}, base_image={base_image!r},
                           families=["toy"])
        print(json.dumps([[r.image, r.status] for r in res]))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    toy = [r[-1] for r in results]
    assert toy[0][0] == toy[1][0]  # same content, same tag
    assert sorted(t[1] for t in toy) == ["built", "cached"], results


def test_images_never_mark_their_containers_as_sandboxes(
    tmp_path: Path, sandbox_test_image: str
) -> None:
    """A container that merely runs an agentcat image (the orchestrator, a compose service,
    someone's debugging shell) or an image that itself carries the sandbox label is not a
    sandbox: prune must leave it alone."""
    client = docker_client()
    session = f"labels-{uuid.uuid4().hex[:8]}"
    ctx = tmp_path / "hostile"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {sandbox_test_image}\nLABEL agentcat.role=sandbox agentcat.managed=1\n"
    )
    hostile, _ = client.images.build(path=str(ctx), tag=f"{NS}/hostile-label:{session}", rm=True)
    made = []
    try:
        for image in (sandbox_test_image, hostile.id):
            c = client.containers.run(
                image, ["sleep", "300"], detach=True, labels={"agentcat.session": session}
            )
            made.append(c)
        out = api.prune(session=session)
        # (a prune also removes dead workers' orphaned spares, which on a shared engine
        # may be another run's: only these containers must be left alone)
        assert not {c.id for c in made} & set(out["containers"])
        for c in made:
            c.reload()
            assert c.status == "running"
        assert "agentcat.role" not in client.images.get(sandbox_test_image).labels
    finally:
        for c in made:
            c.remove(force=True)
        client.images.remove(hostile.id, force=True)


_OWNER = textwrap.dedent(
    """
    import asyncio, os, sys
    from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec
    spec = SandboxSpec(image=sys.argv[1], user="root", workdir="/root")
    sb = asyncio.run(AgentcatSandbox.create(spec, {"agentcat.session": sys.argv[2]}))
    print(sb.container_id, flush=True)
    if sys.argv[3] == "crash":
        os._exit(0)  # no cleanup at all, as after SIGKILL
    sys.stdin.read()  # alive until the test closes stdin
    """
)


def test_prune_removes_only_sandboxes_whose_owner_is_gone(
    sandbox_test_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = docker_client()
    session = f"owner-{uuid.uuid4().hex[:8]}"

    def owner(mode: str) -> tuple[subprocess.Popen, str]:
        p = subprocess.Popen(
            [sys.executable, "-c", _OWNER, sandbox_test_image, session, mode],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        return p, p.stdout.readline().strip()

    crashed, orphan = owner("crash")
    crashed.wait(60)
    alive, live_one = owner("live")
    try:
        assert orphan and live_one
        assert main(["images", "prune", "--session", session]) == 0
        printed = capsys.readouterr().out
        assert "removed 1 container(s)" in printed and "kept 1 sandbox" in printed
        assert not client.api.containers(all=True, filters={"id": orphan})
        (running,) = client.api.containers(filters={"id": live_one})
        assert running["State"] == "running"
    finally:
        assert alive.stdin is not None
        alive.stdin.close()  # the owner exits; atexit removes its own sandbox
        alive.wait(60)
    assert not client.api.containers(all=True, filters={"id": live_one})


def test_unknown_family_and_missing_image_errors(tmp_path: Path, base_image: str) -> None:
    env = _environments(tmp_path / "environments")
    with pytest.raises(PrerequisiteError, match=r"unknown families \['nope'\]"):
        build_images(env, namespace=NS, families=["nope"])
    (env / "absent").mkdir()
    (env / "absent" / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(PrerequisiteError, match="no image for scenario family 'absent'"):
        family_image("absent", env, namespace=NS)


def test_cli_images_prune_and_errors(tmp_path: Path, sandbox_test_image: str, capsys) -> None:
    import asyncio

    from orchestrator.runner.sandbox import AgentcatSandbox, SandboxSpec, managed_containers

    session = f"prune-{tmp_path.name[-8:]}-{uuid.uuid4().hex[:6]}"
    spec = SandboxSpec(image=sandbox_test_image, user="root", workdir="/root")
    sb = asyncio.run(AgentcatSandbox.create(spec, {"agentcat.session": session}))
    assert managed_containers({"agentcat.session": session}) == [sb.container_id]
    assert main(["images", "prune", "--session", session]) == 0  # its owner (we) still runs
    assert "removed 0 container(s)" in capsys.readouterr().out
    asyncio.run(sb.remove())
    assert managed_containers({"agentcat.session": session}) == []
    code = main(["images", "build", "--environments", str(tmp_path / "missing"), "--json"])
    assert code == 1
    assert "environments folder not found" in capsys.readouterr().err
