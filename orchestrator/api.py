"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

from orchestrator.bank import ItemBank, load_bank
from orchestrator.data import Responses, read_responses
from orchestrator.irt.ability import estimate_abilities

__all__ = ["build_images", "estimate", "list_images", "prune"]

PathLike = str | os.PathLike[str]


def estimate(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    *,
    method: Literal["eap", "map"] = "eap",
) -> list[dict[str, Any]]:
    """θ and SE for every subject in ``responses`` under ``bank``'s parameters.

    Returns:
        One dict per subject (file order): ``subject``, ``theta``, ``se``,
        ``n_items``, ``method``.

    Raises:
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
    """
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    resp = responses if isinstance(responses, Responses) else read_responses(responses)
    aligned = resp.for_bank(bk)
    est = estimate_abilities(
        bk.a,
        bk.b,
        aligned.subject_idx,
        aligned.bank_item,
        aligned.score,
        len(resp.subjects),
        method=method,
        prior_mean=bk.spec.prior.mean,
        prior_sd=bk.spec.prior.sd,
    )
    return [
        {
            "subject": s,
            "theta": float(est.theta[i]),
            "se": float(est.se[i]),
            "n_items": int(est.n_items[i]),
            "method": method,
        }
        for i, s in enumerate(resp.subjects)
    ]


def build_images(
    environments: PathLike = "environments",
    *,
    base_image: str | None = None,
    families: list[str] | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Build (or reuse) the base, scenario-base and family images; one dict per image."""
    from orchestrator.runner import images

    results = images.build_images(
        environments,
        base_image=base_image,
        families=families,
        force=force,
        progress=progress or (lambda _msg: None),
    )
    return [{"image": r.image, "status": r.status, "seconds": round(r.seconds, 2)} for r in results]


def list_images() -> list[dict[str, Any]]:
    """Images agentcat built, with their context hash."""
    from orchestrator.runner.docker_client import LABEL_MANAGED, docker_client
    from orchestrator.runner.images import HASH_LABEL

    rows = []
    for img in docker_client().images.list(filters={"label": f"{LABEL_MANAGED}=1"}):
        for tag in img.tags or [img.short_id]:
            rows.append(
                {
                    "image": tag,
                    "context_hash": img.labels.get(HASH_LABEL, ""),
                    "size_mb": round(img.attrs.get("Size", 0) / 1e6, 1),
                    "created": img.attrs.get("Created", "")[:19],
                }
            )
    return sorted(rows, key=lambda r: r["image"])


def prune(*, session: str | None = None, images: bool = False) -> dict[str, list[str]]:
    """Remove leftover sandbox containers (all, or one session's) and optionally images."""
    from orchestrator.runner import images as images_mod
    from orchestrator.runner.sandbox import prune_containers

    containers = prune_containers({"agentcat.session": session} if session else None)
    removed_images = images_mod.remove_images() if images else []
    return {"containers": containers, "images": removed_images}
