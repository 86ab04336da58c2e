"""The alternative to a multidimensional CAT: one 1-D CAT per dimension, on that dimension's items.

Without a multidimensional model, a bank with two traits is run as two
unidimensional tests restricted by content: the items tagged for one trait
measure that trait alone, the other test the other trait. This module builds
those tests from a D-dimensional bank and a content tag, and replays them on
the same responses, so ``agentcat simulate --per-dimension TAG`` can set them
beside the D-dimensional CAT:

* each dimension gets the tag value whose items load on it most (their mean
  share a_d² / ‖a‖², at least 60 %); the assignment must be one value per
  dimension;
* dimension d's test is the one-dimensional GRM of its items on θ_d alone:
  slope a_d and the same intercepts (thresholds b'_k = ‖a‖ b_k / a_d), with
  the bank's prior N(μ_d, σ_d²). Loadings on the other dimensions are
  ignored, as a unidimensional calibration per content area would; their
  size is reported (``cross_loading``);
* each test is replayed with ``max_info`` (the 1-D CAT) and ``random`` by
  :func:`~orchestrator.sim.replay.replay` itself, scored against the
  D-dimensional full-data reference θ_d, so its RMSE is comparable with the
  D-dimensional CAT's on that dimension.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from orchestrator.bank import ItemBank, Prior
from orchestrator.cat.selection import make_selection
from orchestrator.data import Responses
from orchestrator.errors import ConfigError, did_you_mean
from orchestrator.sim.replay import Progress, ReplayResult, replay

__all__ = ["dimension_banks", "replay_by_dimension"]

_MAIN_SHARE = 0.6
"""A tag value stands for a dimension when its items put this share of a² on it (on average)."""


def dimension_banks(bank: ItemBank, tag: str) -> dict[str, tuple[str, ItemBank, float]]:
    """For every dimension: its tag value, the 1-D bank of those items, their largest cross-loading.

    ``cross_loading`` is the largest share ‖a_other‖² / ‖a‖² among the items kept.
    Items of the value whose slope on the dimension is not positive cannot
    enter a one-dimensional bank and are left out.

    Raises:
        ConfigError: a one-dimensional bank, a tag no item carries, or a tag
            whose values do not map one-to-one onto the dimensions.
    """
    if bank.n_dims < 2:
        raise ConfigError(
            f"--per-dimension needs a bank of several dimensions; {bank.name!r} has one",
            hint="a one-dimensional bank's CAT already is the one-dimensional test",
        )
    values = bank.tag_values(tag)
    present = sorted({v for v in values if v is not None})
    if not present:
        known = sorted({k for it in bank.spec.items for k in it.tags})
        raise ConfigError(
            f"no item of bank {bank.name!r} has tag {tag!r}{did_you_mean(tag, known)}",
            hint=f"tags in the bank: {', '.join(known) or '(none)'}",
        )
    codes = np.array([present.index(v) if v is not None else -1 for v in values])
    share = bank.slopes**2 / (bank.slopes**2).sum(axis=1, keepdims=True)  # (N, D)
    mean_share = np.array([share[codes == c].mean(axis=0) for c in range(len(present))])
    chosen = mean_share.argmax(axis=0)  # a tag value per dimension
    weak = [
        name
        for d, name in enumerate(bank.dimensions)
        if mean_share[chosen[d], d] < _MAIN_SHARE or list(chosen).count(chosen[d]) > 1
    ]
    if weak:
        raise ConfigError(
            f"tag {tag!r} does not separate the dimensions of bank {bank.name!r}: no value of "
            f"it has items that load mainly (≥ {_MAIN_SHARE:.0%} of a²) on {', '.join(weak)}",
            hint="give a tag whose values follow the dimensions (e.g. item_type)",
        )
    mean, sd, _ = bank.spec.prior.parts(bank.n_dims)
    out = {}
    for d, name in enumerate(bank.dimensions):
        keep = np.flatnonzero((codes == chosen[d]) & (bank.slopes[:, d] > 0))
        a_d = bank.slopes[keep, d]
        b_d = bank.b[keep] * (bank.a[keep] / a_d)[:, None]
        sub = ItemBank.from_params(
            f"{bank.name}[{name}]",
            [bank.ids[i] for i in keep],
            a_d,
            b_d,
            prior=Prior(mean=float(mean[d]), sd=float(sd[d])),
            tags=[dict(bank.spec.items[i].tags) for i in keep],
            scale_labels=bank.spec.scale.labels,
        )
        cross = float((1.0 - share[keep, d]).max(initial=0.0))
        out[name] = (present[int(chosen[d])], sub, cross)
    return out


def replay_by_dimension(
    bank: ItemBank,
    responses: Responses,
    reference: ReplayResult,
    tag: str,
    *,
    max_items: int | None = None,
    se_target: float = 0.3,
    seed: int = 0,
    lapse: float = 0.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay one 1-D CAT (``cat`` = max_info, and ``random``) per dimension on its items.

    Args:
        bank: The D-dimensional bank.
        responses: The responses the D-dimensional replay used (its subjects, same order).
        reference: That replay: its full-data θ is the reference here too.
        tag: The content tag whose values follow the dimensions.
        lapse: The robust likelihood's lapse rate, as in the D-dimensional replay.

    Returns:
        The ``per_dimension`` entry of ``agentcat simulate --json``.
    """
    doc: dict[str, Any] = {
        "tag": tag,
        "reference": "the D-dimensional full-data EAP of the dimension",
        "dimensions": {},
    }
    for d, (name, (value, sub, cross)) in enumerate(dimension_banks(bank, tag).items()):
        own = responses.drop_items(set(responses.items) - sub.index.keys())
        res = replay(
            sub,
            own.for_bank(sub),
            {"cat": make_selection("max_info"), "random": make_selection("random")},
            max_items=max_items,
            se_target=se_target,
            seed=seed,
            lapse=lapse,
            progress=None
            if progress is None
            else (lambda label, t, n, name=name: progress(f"{label}[{name}]", t, n)),
        )
        scored = replace(
            res,
            theta_full=reference.theta_full[:, [d]],
            se_full=reference.se_full[:, [d]],
        )
        doc["dimensions"][name] = {
            "tag_value": value,
            "n_items": len(sub),
            "cross_loading": cross,
            "strategies": scored.to_dict(per_subject=False)["strategies"],
        }
    return doc
