"""Build every sandbox image offline, content-addressed by its build context.

Three layers:

1. the Debian base: ``debian:bookworm-slim`` when it is present or a registry
   answers; otherwise made here with ``debootstrap --variant=minbase`` +
   ``docker import`` and tagged ``agentcat/base:bookworm`` (about 35 s);
2. ``<namespace>/scenario-base:<hash>`` from ``environments/_base`` (common
   tools, the unprivileged ``agent`` user), built ``--build-arg BASE_IMAGE=<1>``;
3. one ``<namespace>/env-<family>:<hash>`` per ``environments/<family>/Dockerfile``,
   built ``--build-arg SCENARIO_BASE=<2>``.

``<hash>`` covers the build context (paths, modes, contents), the build
arguments, the parent image's id and :data:`IMAGE_SCHEMA`, so a tag names
exactly one content: two checkouts (or agentcat versions) sharing a Docker
engine never overwrite each other's images, an unchanged context is reused,
and ``run`` resolves the exact tag of the current context (a changed scenario
without a rebuild is an error, never an old image run silently).

Builds on one engine are serialised by a file lock (see :func:`build_lock`).
Images carry :data:`~orchestrator.runner.docker_client.LABEL_IMAGE` and never
the sandbox role label, which containers would inherit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from orchestrator.errors import PrerequisiteError, SandboxError
from orchestrator.runner.docker_client import LABEL_IMAGE, docker_client

__all__ = [
    "HASH_LABEL",
    "LOCAL_BASE",
    "NAMESPACE",
    "ImageBuild",
    "build_context_image",
    "build_images",
    "build_lock",
    "ensure_base_image",
    "family_dirs",
    "family_image",
    "remove_images",
]

REGISTRY_BASE = "debian:bookworm-slim"
LOCAL_BASE = "agentcat/base:bookworm"
NAMESPACE = "agentcat"
IMAGE_SCHEMA = 2
"""Part of every context hash: bump it when what agentcat expects of an image changes."""
HASH_LABEL = "agentcat.context-hash"
NAMESPACE_LABEL = "agentcat.image.namespace"
FAMILY_LABEL = "agentcat.image.family"
BASE_LABEL = "agentcat.image.base"
"""On a scenario base: the Debian base image it was built on."""
DEBIAN_MIRROR = os.environ.get("AGENTCAT_DEBIAN_MIRROR", "http://deb.debian.org/debian")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageBuild:
    """Outcome of one image in :func:`build_images`."""

    image: str
    status: str  # "built" | "cached" | "imported" | "present" | "pulled"
    seconds: float


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- lock
_lock_guard = threading.RLock()
_lock_depth = 0


@contextlib.contextmanager
def build_lock(progress: Progress = _quiet) -> Iterator[None]:
    """Hold the image-build lock of this Docker engine (re-entrant within a process).

    A ``flock`` on ``<tmp>/agentcat-images-<engine>.lock``: the kernel releases it
    when the holder dies, so a killed build never leaves a stale lock. It
    serialises builds by processes of this host (checkouts, tests, CLI); a
    builder on another host sharing the engine is not excluded, and needs not
    be: tags are content hashes, so two such builds write the same content
    under the same name.
    """
    global _lock_depth
    with _lock_guard:
        if _lock_depth:
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
            return
        path = Path(tempfile.gettempdir()) / f"agentcat-images-{_engine_key()}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                progress(f"waiting for another image build on this engine ({holder}) …")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
            _lock_depth = 1
            try:
                yield
            finally:
                _lock_depth = 0
        finally:
            os.close(fd)  # releases the flock


def _engine_key() -> str:
    engine = str(docker_client().info().get("ID") or os.environ.get("DOCKER_HOST", "default"))
    return hashlib.sha256(engine.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- base image
def ensure_base_image(base_image: str | None = None, progress: Progress = _quiet) -> ImageBuild:
    """Return a usable Debian base, making one with debootstrap when no registry answers.

    Args:
        base_image: An image to use as is (present locally or pullable); by
            default ``debian:bookworm-slim``, falling back to the local
            debootstrap base.
    """
    t0 = time.perf_counter()
    candidates = [base_image] if base_image else [REGISTRY_BASE, LOCAL_BASE]
    for name in candidates:
        if _exists(name):
            return ImageBuild(name, "present", time.perf_counter() - t0)
    with build_lock(progress):
        for name in candidates:  # another process may have made it while we waited
            if _exists(name):
                return ImageBuild(name, "present", time.perf_counter() - t0)
        target = base_image or REGISTRY_BASE
        progress(f"pulling {target} …")
        try:
            repo, _, tag = target.partition(":")
            docker_client().images.pull(repo, tag=tag or "latest")
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
        if _exists(LOCAL_BASE):  # made meanwhile by a builder that does not take the lock
            progress(f"{LOCAL_BASE} appeared meanwhile; using it")
            return
        progress(f"docker import → {LOCAL_BASE}")
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        docker_client().api.import_image_from_file(
            str(archive),
            repository=LOCAL_BASE.split(":")[0],
            tag=LOCAL_BASE.split(":")[1],
            # what the image is, nothing that would mark its containers as sandboxes
            changes=[f"LABEL {LABEL_IMAGE}=base", 'CMD ["bash"]'],
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
    """sha256 over relative paths, modes and contents of the context, args, parent id and
    :data:`IMAGE_SCHEMA` (16 hex digits: the image's tag)."""
    h = hashlib.sha256()
    meta = {"args": build_args, "parent": parent_id, "schema": IMAGE_SCHEMA}
    h.update(json.dumps(meta, sort_keys=True).encode())
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


def _build(
    context: Path, tag: str, args: dict[str, str], labels: dict[str, str], progress: Progress
) -> None:
    api = docker_client().api
    log: list[str] = []
    try:
        for chunk in api.build(
            path=str(context),
            tag=tag,
            buildargs=args,
            labels=labels,
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
    repository: str,
    args: dict[str, str],
    parent: str,
    *,
    kind: str = "test",
    labels: dict[str, str] | None = None,
    force: bool = False,
    progress: Progress = _quiet,
) -> ImageBuild:
    """Build ``context`` as ``<repository>:<context hash>`` unless that image exists.

    Args:
        repository: Image name without tag (``<namespace>/<name>``).
        parent: The image the Dockerfile builds ``FROM`` (its id enters the hash).
        kind: Value of the image's ``agentcat.image`` label.
    """
    t0 = time.perf_counter()
    digest = context_hash(context, args, _image_id(parent))
    tag = f"{repository}:{digest}"
    if not force and _label(tag) == digest:
        return ImageBuild(tag, "cached", time.perf_counter() - t0)
    with build_lock(progress):
        if not force and _label(tag) == digest:  # built by another process meanwhile
            return ImageBuild(tag, "cached", time.perf_counter() - t0)
        progress(f"building {tag} from {context} …")
        all_labels = {
            LABEL_IMAGE: kind,
            HASH_LABEL: digest,
            NAMESPACE_LABEL: repository.split("/", 1)[0],
            **(labels or {}),
        }
        _build(context, tag, args, all_labels, progress)
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

    ``namespace`` prefixes the scenario-base and family repositories (tests use their own).
    The whole build holds the engine's :func:`build_lock`.

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
    base_ctx = env_root / "_base"
    if not (base_ctx / "Dockerfile").is_file():
        raise PrerequisiteError(f"{base_ctx}/Dockerfile not found (the shared scenario base)")
    with build_lock(progress):
        base = ensure_base_image(base_image, progress)
        scenario_base = build_context_image(
            base_ctx,
            f"{namespace}/scenario-base",
            {"BASE_IMAGE": base.image},
            base.image,
            kind="scenario-base",
            labels={BASE_LABEL: base.image},
            force=force,
            progress=progress,
        )
        results = [base, scenario_base]
        for name, ctx in dirs.items():
            results.append(
                build_context_image(
                    ctx,
                    f"{namespace}/env-{name}",
                    {"SCENARIO_BASE": scenario_base.image},
                    scenario_base.image,
                    kind="family",
                    labels={FAMILY_LABEL: name},
                    force=force,
                    progress=progress,
                )
            )
    return results


def _scenario_bases(env_root: Path, namespace: str) -> Iterator[str]:
    """Existing scenario-base tags that match ``_base`` on some present Debian base."""
    base_ctx = env_root / "_base"
    if not (base_ctx / "Dockerfile").is_file():
        return
    client = docker_client()
    built = client.images.list(
        filters={"label": [f"{LABEL_IMAGE}=scenario-base", f"{NAMESPACE_LABEL}={namespace}"]}
    )
    bases = dict.fromkeys([REGISTRY_BASE, LOCAL_BASE, *(i.labels.get(BASE_LABEL) for i in built)])
    for base in bases:
        if base and _exists(base):
            digest = context_hash(base_ctx, {"BASE_IMAGE": base}, _image_id(base))
            tag = f"{namespace}/scenario-base:{digest}"
            if _label(tag) == digest:
                yield tag


def family_image(
    family: str,
    environments: str | os.PathLike[str] = "environments",
    namespace: str = NAMESPACE,
) -> str:
    """The exact image tag that runs ``family`` as its build context is now.

    Raises:
        PrerequisiteError: the family has no build context, or its image (for the
            current context) is not built.
    """
    env_root = Path(environments)
    ctx = env_root / family
    if not (ctx / "Dockerfile").is_file():
        raise PrerequisiteError(
            f"scenario family {family!r} has no build context at {ctx}",
            hint="check `environments:` in the run config (it must hold the bank's families)",
        )
    for scenario_base in _scenario_bases(env_root, namespace):
        digest = context_hash(ctx, {"SCENARIO_BASE": scenario_base}, _image_id(scenario_base))
        tag = f"{namespace}/env-{family}:{digest}"
        if _label(tag) == digest:
            return tag
    older = docker_client().images.list(
        filters={"label": [f"{FAMILY_LABEL}={family}", f"{NAMESPACE_LABEL}={namespace}"]}
    )
    if older:
        raise PrerequisiteError(
            f"image of scenario family {family!r} is stale: {ctx} (or environments/_base) "
            "changed since it was built",
            hint="run `agentcat images build` to build the current context",
        )
    raise PrerequisiteError(
        f"no image for scenario family {family!r} in namespace {namespace!r}",
        hint="run `agentcat images build` first",
    )


def remove_images(namespace: str = NAMESPACE) -> tuple[list[str], list[str]]:
    """Remove the scenario images of ``namespace`` that no container uses.

    The Debian base is shared by every namespace and kept. Returns the removed
    tags and the tags kept because a container (of anyone) still uses them.
    """
    client = docker_client()
    removed: list[str] = []
    kept: list[str] = []
    for img in client.images.list(filters={"label": f"{NAMESPACE_LABEL}={namespace}"}):
        for tag in img.tags or [img.id]:
            try:
                client.images.remove(tag)  # no force: an image in use stays
                removed.append(tag)
            except ImageNotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:
                    raise
                kept.append(tag)
    return removed, kept
