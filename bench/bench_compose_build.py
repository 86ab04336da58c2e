"""What `.dockerignore` saves on `docker compose build`: context size and cached build time.

    nice .venv/bin/python bench/bench_compose_build.py [--base-image agentcat/base:bookworm]

Builds the orchestrator image from two hard-linked copies of this checkout (its
`.venv`, runs and all), one without `.dockerignore` and one with it, after a
warm-up build so that every layer is cached and only the context transfer and
layer checks remain. Both compose services build the image, so the context is
sent twice per `build`. Uses `docker-compose` (v1.29) or `docker compose` (v2).
Writes bench/results/compose_build.json; the image is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG = f"agentcat-bench-{os.getpid()}/orchestrator:ctx"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def _context_bytes(root: Path) -> int:
    """Bytes the client tars up, honouring .dockerignore as the Docker client does."""
    from docker.utils.build import exclude_paths

    ignore = root / ".dockerignore"
    patterns = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [p for p in patterns if p.strip() and not p.startswith("#")]
    return sum(
        (root / f).stat().st_size
        for f in exclude_paths(str(root), patterns)
        if (root / f).is_file() and not (root / f).is_symlink()
    )


def _build(root: Path, base_image: str) -> float:
    env = {**os.environ, "AGENTCAT_IMAGE": TAG, "BASE_IMAGE": base_image}
    t0 = time.perf_counter()
    compose = [*_compose(), "-p", f"benchctx{os.getpid()}", "-f", str(root / "docker-compose.yml")]
    proc = subprocess.run(
        [*compose, "build"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-image", default="agentcat/base:bookworm")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="agentcat-ctx-") as tmp:
        copies = {}
        for variant in ("without", "with"):
            copy = Path(tmp) / variant
            subprocess.run(["cp", "-al", str(REPO), str(copy)], check=True)  # hard links
            if HOST_CA.exists():  # pip inside the build may go through a TLS proxy
                ca = copy / "docker" / "extra-ca-certificates" / "host.crt"
                ca.unlink(missing_ok=True)
                shutil.copyfile(HOST_CA, ca)
            if variant == "without":
                (copy / ".dockerignore").unlink()
            copies[variant] = copy
        try:
            print("warm-up build (fills the layer cache) …", flush=True)
            _build(copies["with"], args.base_image)
            for variant, copy in copies.items():
                size = _context_bytes(copy)
                wall = _build(copy, args.base_image)
                results[variant] = {"context_mb": size / 1e6, "cached_build_s": wall}
                mb = size / 1e6
                print(f"{variant} .dockerignore: context {mb:.1f} MB, cached build {wall:.1f} s")
        finally:
            subprocess.run(["docker", "rmi", TAG], capture_output=True)
    out = REPO / "bench" / "results" / "compose_build.json"
    out.write_text(json.dumps({"compose": " ".join(_compose()), **results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
