"""Build every sandbox image offline, cached by the content of its build context.

Three layers:

1. the Debian base: ``debian:bookworm-slim`` when it is present or a registry
   answers; otherwise made here with ``debootstrap --variant=minbase`` +
   ``docker import`` and tagged ``agentcat/base:bookworm`` (about 35 s);
2. ``agentcat/scenario-base`` from ``environments/_base`` (common tools,
   the unprivileged ``agent`` user), built ``--build-arg BASE_IMAGE=<1>``;
3. one ``agentcat/env-<family>`` per ``environments/<family>/Dockerfile``,
   built ``--build-arg SCENARIO_BASE=<2>``.

Each image carries the label ``agentcat.context-hash``: a hash of its build
context, build arguments and parent image id. An image whose label matches is
reused; anything else is rebuilt, and ``run`` refuses a stale image rather
than silently testing an old scenario.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from orchestrator.errors import PrerequisiteError, SandboxError
from orchestrator.runner.docker_client import LABEL_MANAGED, docker_client

__all__ = [
    "LOCAL_BASE",
    "SCENARIO_BASE",
    "ImageBuild",
    "build_context_image",
    "build_images",
    "ensure_base_image",
    "family_dirs",
    "family_image",
    "remove_images",
]

REGISTRY_BASE = "debian:bookworm-slim"
LOCAL_BASE = "agentcat/base:bookworm"
NAMESPACE = "agentcat"
SCENARIO_BASE = f"{NAMESPACE}/scenario-base:latest"
HASH_LABEL = "agentcat.context-hash"
DEBIAN_MIRROR = os.environ.get("AGENTCAT_DEBIAN_MIRROR", "http://deb.debian.org/debian")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageBuild:
    """Outcome of one image in :func:`build_images`."""

    image: str
    status: str  # "built" | "cached" | "imported" | "present"
    seconds: float


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- base image
def ensure_base_image(base_image: str | None = None, progress: Progress = _quiet) -> ImageBuild:
    """Return a usable Debian base, making one with debootstrap when no registry answers.

    Args:
        base_image: An image to use as is (present locally or pullable); by
            default ``debian:bookworm-slim``, falling back to the local
            debootstrap base.
    """
    client = docker_client()
    t0 = time.perf_counter()
    candidates = [base_image] if base_image else [REGISTRY_BASE, LOCAL_BASE]
    for name in candidates:
        if _exists(name):
            return ImageBuild(name, "present", time.perf_counter() - t0)
    if base_image or not _exists(LOCAL_BASE):
        target = base_image or REGISTRY_BASE
        progress(f"pulling {target} …")
        try:
            repo, _, tag = target.partition(":")
            client.images.pull(repo, tag=tag or "latest")
            return ImageBuild(target, "pulled", time.perf_counter() - t0)
        except (APIError, DockerException) as exc:
            if base_image:
                raise PrerequisiteError(
                    f"base image {base_image!r} is not present and cannot be pulled: "
                    f"{str(exc).splitlines()[0][:160]}",
                    hint="pull it where a registry answers, or omit --base-image to build one "
                    "locally with debootstrap",
                ) from None
            progress(f"no registry answers ({str(exc).splitlines()[0][:80]}); using debootstrap")
    _debootstrap_base(progress)
    return ImageBuild(LOCAL_BASE, "imported", time.perf_counter() - t0)


def _debootstrap_base(progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise PrerequisiteError(
            "no Debian base image is available and `debootstrap` is not installed",
            hint="`apt-get install debootstrap` (needs root), or pull debian:bookworm-slim "
            "where a registry answers",
        )
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "building the Debian base image with debootstrap needs root",
            hint="run `agentcat images build` as root once, or pull debian:bookworm-slim",
        )
    with tempfile.TemporaryDirectory(prefix="agentcat-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"debootstrap --variant=minbase bookworm ({DEBIAN_MIRROR}) …")
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-5:] + proc.stderr.splitlines()[-5:])
            raise PrerequisiteError(
                f"debootstrap failed (exit {proc.returncode}):\n{tail}",
                hint="check that the Debian mirror answers (set AGENTCAT_DEBIAN_MIRROR)",
            )
        progress(f"docker import → {LOCAL_BASE}")
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        docker_client().api.import_image_from_file(
            str(archive),
            repository=LOCAL_BASE.split(":")[0],
            tag=LOCAL_BASE.split(":")[1],
            changes=[f"LABEL {LABEL_MANAGED}=1", 'CMD ["bash"]'],
        )


# ----------------------------------------------------------------------------- contexts
def family_dirs(environments: str | os.PathLike[str] = "environments") -> dict[str, Path]:
    """Scenario families that have a Docker build context (``_``-prefixed dirs excluded)."""
    root = Path(environments)
    if not root.is_dir():
        raise PrerequisiteError(f"environments folder not found: {root}")
    return {
        d.name: d
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(("_", ".")) and (d / "Dockerfile").is_file()
    }


def _iter_files(context: Path) -> Iterator[Path]:
    for path in sorted(context.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def context_hash(context: Path, build_args: dict[str, str], parent_id: str) -> str:
    """sha256 over relative paths, modes and contents of the context, args and parent id."""
    h = hashlib.sha256()
    h.update(json.dumps({"args": build_args, "parent": parent_id}, sort_keys=True).encode())
    for path in _iter_files(context):
        rel = path.relative_to(context).as_posix()
        h.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _exists(name: str) -> bool:
    try:
        docker_client().images.get(name)
        return True
    except ImageNotFound:
        return False


def _image_id(name: str) -> str:
    return str(docker_client().images.get(name).id)


def _label(name: str) -> str | None:
    try:
        return docker_client().images.get(name).labels.get(HASH_LABEL)
    except ImageNotFound:
        return None


def _build(context: Path, tag: str, args: dict[str, str], digest: str, progress: Progress) -> None:
    api = docker_client().api
    log: list[str] = []
    try:
        for chunk in api.build(
            path=str(context),
            tag=tag,
            buildargs=args,
            labels={LABEL_MANAGED: "1", HASH_LABEL: digest},
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "stream" in chunk:
                line = chunk["stream"].rstrip()
                if line:
                    log.append(line)
                    if line.startswith("Step "):
                        progress(f"  {tag}: {line}")
            if "error" in chunk:
                raise BuildError(chunk["error"], log)
    except (BuildError, APIError) as exc:
        tail = "\n".join(log[-15:])
        raise SandboxError(f"building {tag} from {context} failed: {exc}\n{tail}") from None


def build_context_image(
    context: Path,
    tag: str,
    args: dict[str, str],
    parent: str,
    force: bool = False,
    progress: Progress = _quiet,
) -> ImageBuild:
    """Build ``context`` as ``tag`` unless an image with the same context hash exists."""
    t0 = time.perf_counter()
    digest = context_hash(context, args, _image_id(parent))
    if not force and _label(tag) == digest:
        return ImageBuild(tag, "cached", time.perf_counter() - t0)
    progress(f"building {tag} from {context} …")
    _build(context, tag, args, digest, progress)
    return ImageBuild(tag, "built", time.perf_counter() - t0)


# ----------------------------------------------------------------------------- public
def build_images(
    environments: str | os.PathLike[str] = "environments",
    *,
    base_image: str | None = None,
    families: list[str] | None = None,
    force: bool = False,
    progress: Progress = _quiet,
    namespace: str = NAMESPACE,
) -> list[ImageBuild]:
    """Build (or reuse) the base, the scenario base and every family image.

    ``namespace`` prefixes the scenario-base and family tags (tests use their own).

    Raises:
        PrerequisiteError: Docker, debootstrap or the environments folder is missing.
        SandboxError: a Dockerfile failed to build (the message has the log tail).
    """
    env_root = Path(environments)
    dirs = family_dirs(env_root)
    if families:
        unknown = sorted(set(families) - set(dirs))
        if unknown:
            raise PrerequisiteError(f"unknown families {unknown}; known: {sorted(dirs)}")
        dirs = {k: v for k, v in dirs.items() if k in families}
    base = ensure_base_image(base_image, progress)
    results = [base]
    base_ctx = env_root / "_base"
    if not (base_ctx / "Dockerfile").is_file():
        raise PrerequisiteError(f"{base_ctx}/Dockerfile not found (the shared scenario base)")
    scenario_base = _scenario_base_tag(namespace)
    results.append(
        build_context_image(
            base_ctx, scenario_base, {"BASE_IMAGE": base.image}, base.image, force, progress
        )
    )
    for name, ctx in dirs.items():
        results.append(
            build_context_image(
                ctx,
                _family_tag(name, namespace),
                {"SCENARIO_BASE": scenario_base},
                scenario_base,
                force,
                progress,
            )
        )
    return results


def _scenario_base_tag(namespace: str) -> str:
    return f"{namespace}/scenario-base:latest"


def _family_tag(family: str, namespace: str = NAMESPACE) -> str:
    return f"{namespace}/env-{family}:latest"


def family_image(
    family: str,
    environments: str | os.PathLike[str] = "environments",
    namespace: str = NAMESPACE,
) -> str:
    """The image that runs ``family``, checked to exist and to match its build context.

    Raises:
        PrerequisiteError: the image is missing or older than its context.
    """
    tag = _family_tag(family, namespace)
    scenario_base = _scenario_base_tag(namespace)
    label = _label(tag)
    if label is None:
        raise PrerequisiteError(
            f"no image for scenario family {family!r} ({tag})",
            hint="run `agentcat images build` first",
        )
    ctx = Path(environments) / family
    if ctx.is_dir() and _exists(scenario_base):
        want = context_hash(ctx, {"SCENARIO_BASE": scenario_base}, _image_id(scenario_base))
        if want != label:
            raise PrerequisiteError(
                f"image {tag} is stale: environments/{family} changed since it was built",
                hint="run `agentcat images build` to rebuild it",
            )
    return tag


def remove_images() -> list[str]:
    """Remove every image agentcat built (label ``agentcat.managed=1``)."""
    client = docker_client()
    removed = []
    for img in client.images.list(filters={"label": f"{LABEL_MANAGED}=1"}):
        for tag in img.tags or [img.id]:
            try:
                client.images.remove(tag, force=True)
                removed.append(tag)
            except ImageNotFound:
                pass
    return removed
