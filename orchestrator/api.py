"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from orchestrator.bank import ItemBank, load_bank
from orchestrator.data import Responses, read_responses
from orchestrator.errors import ConfigError, DataError
from orchestrator.irt.ability import estimate_abilities

__all__ = ["estimate", "simulate"]

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


# --------------------------------------------------------------------------- simulate
DEFAULT_STRATEGIES = ("cat", "random")
_STRATEGY_ALIASES = {"cat": "max_info"}


def _strategy_rule(label: str | Mapping[str, Any]) -> tuple[str, Any]:
    """``cat`` (= ``max_info``), a registered selection rule name, or a JSON rule spec."""
    from orchestrator.cat import make_selection, selection_rules
    from orchestrator.errors import did_you_mean

    if isinstance(label, Mapping):
        rule = make_selection(label)
        return str(label.get("rule")), rule
    text = label.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"strategy {text!r} is not valid JSON: {exc.msg}") from None
        return text, make_selection(spec)
    name = _STRATEGY_ALIASES.get(text, text)
    if name not in selection_rules.names():
        choices = [*_STRATEGY_ALIASES, *selection_rules.names()]
        raise ConfigError(
            f"unknown strategy {text!r}{did_you_mean(text, choices)}",
            hint=f"strategies: {', '.join(choices)}, or a JSON rule spec "
            '\'{"rule": "max_info", "args": {"randomesque": 5}}\'',
        )
    return text, make_selection(name)


def _drop_unknown_items(resp: Responses, bank: ItemBank) -> tuple[Responses, list[str]]:
    """Keep observations of items in ``bank``; drop subjects left without any."""
    known = np.array([i in bank.index for i in resp.items], dtype=bool)
    dropped = [i for i, k in zip(resp.items, known, strict=True) if not k]
    if not dropped:
        return resp, []
    keep = known[resp.item_idx]
    if not keep.any():
        raise DataError(
            f"{resp.source}: none of its items is in bank {bank.name!r}",
            hint="is this the bank calibrated on this data?",
        )
    subj_used, subj_idx = np.unique(resp.subject_idx[keep], return_inverse=True)
    item_used, item_idx = np.unique(resp.item_idx[keep], return_inverse=True)
    return (
        Responses(
            subjects=tuple(resp.subjects[i] for i in subj_used),
            items=tuple(resp.items[i] for i in item_used),
            subject_idx=subj_idx.astype(np.int64),
            item_idx=item_idx.astype(np.int64),
            score=resp.score[keep],
            line=resp.line[keep],
            source=resp.source,
        ),
        dropped,
    )


def simulate(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    *,
    strategies: Sequence[str | Mapping[str, Any]] = DEFAULT_STRATEGIES,
    max_items: int | None = None,
    se: float = 0.3,
    seed: int = 0,
    drop_unknown_items: bool = False,
    per_subject: bool = True,
    plot: PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Replay CAT on recorded responses and compare it with random selection and full data.

    For every subject, each strategy administers only items that subject has
    responses for, one at a time; after each step the estimate is compared
    with the EAP from all of the subject's responses (same prior).

    Args:
        bank: Calibrated bank (folder or object).
        responses: Long CSV ``subject,item,score`` (path or object).
        strategies: ``cat`` (= ``max_info``), ``random``, any registered
            selection rule name, or a JSON spec ``{"rule": ..., "args": {...}}``.
        max_items: Replay at most this many items per subject (default: all).
        se: SE target for "items needed to reach the target".
        seed: Base seed (subject s uses ``default_rng([seed, s])``).
        drop_unknown_items: Ignore responses to items the bank lacks (e.g.
            items calibration excluded) instead of failing.
        per_subject: Include the per-subject list in the result.
        plot: Also write the RMSE / rank-correlation figure to this PNG.
        progress: ``progress(strategy, step, n_steps)`` after every step.

    Returns:
        The versioned document ``agentcat simulate --json`` prints.

    Raises:
        ConfigError: a bad strategy, ``se`` ≤ 0, ``max_items`` < 1, ``seed`` < 0.
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
    """
    from orchestrator.sim.replay import replay

    if isinstance(se, bool) or not isinstance(se, (int, float)) or not math.isfinite(se) or se <= 0:
        raise ConfigError(f"se must be a number > 0; got {se!r}")
    if max_items is not None and (
        isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1
    ):
        raise ConfigError(f"max_items must be an integer ≥ 1; got {max_items!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer ≥ 0; got {seed!r}")
    if isinstance(strategies, (str, Mapping)):
        strategies = [strategies]
    if not strategies:
        raise ConfigError("give at least one strategy (e.g. cat, random)")
    rules: dict[str, Any] = {}
    for label in strategies:
        name, rule = _strategy_rule(label)
        if name in rules:
            raise ConfigError(f"strategy {name!r} is given twice")
        rules[name] = rule
    start = time.perf_counter()
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    resp = responses if isinstance(responses, Responses) else read_responses(responses)
    dropped: list[str] = []
    if drop_unknown_items:
        resp, dropped = _drop_unknown_items(resp, bk)
    aligned = resp.for_bank(bk)
    result = replay(
        bk, aligned, rules, max_items=max_items, se_target=se, seed=seed, progress=progress
    )
    doc = result.to_dict(per_subject=per_subject)
    doc["responses"] = resp.source
    doc["dropped_items"] = dropped
    doc["wall_time_s"] = time.perf_counter() - start
    if plot is not None:
        from orchestrator.sim.plot import plot_replay

        doc["plot"] = str(plot_replay(doc, plot))
    return doc
