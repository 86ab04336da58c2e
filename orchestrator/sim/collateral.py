"""Collateral information: how many CAT items on bank B does a prior from bank A save?

For every ordered pair of banks sharing enough models, each shared model gets
a normal prior for its θ on B from its θ̂ on A (a regression cross-fitted over
folds, :func:`orchestrator.report._validity_stats.collateral_priors`), and a
max-information CAT is replayed on B's recorded responses twice: with that
prior and with B's own. The CATs draw from a random half of B's items; the
other half gives each subject an independent reference estimate, so neither
strategy shares an item with its yardstick. The results join the validity
report (:meth:`ValidityReport.set_collateral`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.cat import SelectionRule, make_selection
from orchestrator.data import AlignedResponses, Responses
from orchestrator.irt.ability import estimate_abilities
from orchestrator.report._validity_stats import collateral_priors
from orchestrator.report.validity import (
    BankInput,
    ModelScores,
    ValidityOptions,
    ValidityReport,
)
from orchestrator.sim.replay import StrategyResult, replay

__all__ = ["RMSE_AT", "collateral_replays"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

RMSE_AT = (0, 5, 10)
"""Test lengths at which the replays report RMSE against the reference."""


def collateral_replays(
    inputs: Sequence[BankInput],
    report: ValidityReport,
    options: ValidityOptions,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per ordered pair (A → B) sharing ``options.collateral_min_models`` models.

    Args:
        inputs: The banks, in the report's scale order.
        report: Their analysis (:func:`~orchestrator.report.validity.analyse_validity`).
        options: SE target, replay length, folds, seed.
        progress: Called with a short line per replayed pair.
    """
    labels = [s.label for s in report.scales]
    targets: dict[str, _Target] = {}
    rows = []
    for a, b in itertools.permutations(range(len(inputs)), 2):
        shared = report.shared(labels[a], labels[b])
        if len(shared) < options.collateral_min_models:
            continue
        if progress is not None:
            progress(f"collateral replay {labels[a]} → {labels[b]} ({len(shared)} models)")
        rows.append(
            _collateral(
                inputs[b], report.scales[a], report.scales[b], shared, (a, b), options, targets
            )
        )
    return rows


def _subset(
    aligned: AlignedResponses, keep_subjects: IntArray, keep_obs: NDArray[np.bool_]
) -> AlignedResponses:
    """Observations ``keep_obs`` of subjects ``keep_subjects`` (renumbered 0.. in that order)."""
    renumber = np.full(len(aligned.subjects), -1, dtype=np.int64)
    renumber[keep_subjects] = np.arange(len(keep_subjects))
    mask = keep_obs & (renumber[aligned.subject_idx] >= 0)
    r = aligned.responses
    sub = Responses(
        subjects=tuple(r.subjects[i] for i in keep_subjects),
        items=r.items,
        subject_idx=renumber[r.subject_idx[mask]],
        item_idx=r.item_idx[mask],
        score=r.score[mask],
        line=r.line[mask],
        source=r.source,
    )
    return AlignedResponses(sub, aligned.bank_item[mask], aligned.score[mask])


@dataclass(frozen=True)
class _Target:
    """A target bank split for replay: CATs draw from ``pool`` items, a reference
    θ̂ comes from the other half, so no strategy shares an item with its yardstick."""

    pool: NDArray[np.bool_]  # per observation of the bank's responses
    pool_items: int
    position: dict[str, int]  # subject → column of the arrays below
    reference: FloatArray
    reference_se: FloatArray
    has_reference: NDArray[np.bool_]  # the subject answered items outside the pool
    standard: StrategyResult  # the bank-prior replay of every matched subject
    available: IntArray  # pool items each subject answered (the most a CAT can give)
    steps: int


def _target(
    inp: BankInput, b: ModelScores, rng: np.random.Generator, opt: ValidityOptions
) -> _Target:
    r = inp.responses
    in_pool = rng.permutation(len(inp.bank)) < len(inp.bank) // 2
    pool = in_pool[r.bank_item]
    subject_pos = {s: i for i, s in enumerate(r.subjects)}
    every = np.array(sorted({subject_pos[s] for subs in b.subjects for s in subs}), dtype=np.int64)
    held = _subset(r, every, ~pool)
    prior = inp.bank.spec.prior
    ref = estimate_abilities(
        inp.bank.a,
        inp.bank.b,
        held.subject_idx,
        held.bank_item,
        held.score,
        len(every),
        prior_mean=prior.mean,
        prior_sd=prior.sd,
    )
    on_pool = _subset(r, every, pool)
    steps = opt.max_items or int(np.bincount(on_pool.subject_idx).max())
    res = replay(inp.bank, on_pool, _max_info(), max_items=steps, se_target=opt.se_target)
    position = {r.subjects[s]: k for k, s in enumerate(every)}
    n_pool = int(in_pool[np.unique(r.bank_item)].sum())
    has_ref = np.bincount(held.subject_idx, minlength=len(every)) > 0
    return _Target(
        pool,
        n_pool,
        position,
        ref.theta,
        ref.se,
        has_ref,
        res.strategies[0],
        res.n_responses,
        steps,
    )


def _max_info() -> dict[str, SelectionRule]:
    return {"cat": make_selection("max_info")}


def _collateral(
    ib: BankInput,
    a: ModelScores,
    b: ModelScores,
    shared: list[str],
    positions: tuple[int, int],
    opt: ValidityOptions,
    targets: dict[str, _Target],
) -> dict[str, Any]:
    """Replay CAT on B for the shared models' subjects: bank prior vs prior from A's θ̂.

    Random draws come from streams of their own (the target bank's item split,
    this pair's folds), so the bootstrap size does not move these numbers.
    """
    tgt = targets.get(b.label)
    if tgt is None:  # once per target bank: max_info is deterministic per subject
        split_rng = np.random.default_rng([opt.seed, 1, positions[1]])
        tgt = targets[b.label] = _target(ib, b, split_rng, opt)
    n = len(shared)
    folds = np.random.default_rng([opt.seed, 2, *positions]).permutation(n) % opt.folds
    ta, _, _, _ = a.take(shared)
    tb, sb, _, _ = b.take(shared)
    means, sds = collateral_priors(ta, tb, sb, folds)
    # B's subjects behind each shared model's score get that model's prior
    subjects = [(k, s) for k, m in enumerate(shared) for s in b.subjects[b.index[m]]]
    cols = np.array([tgt.position[s] for _, s in subjects], dtype=np.int64)
    model_of = np.array([k for k, _ in subjects], dtype=np.int64)
    subject_pos = {s: i for i, s in enumerate(ib.responses.subjects)}
    keep = np.array([subject_pos[s] for _, s in subjects], dtype=np.int64)
    col = replay(
        ib.bank,
        _subset(ib.responses, keep, tgt.pool),
        _max_info(),
        max_items=tgt.steps,
        se_target=opt.se_target,
        prior=(means[model_of], sds[model_of]),
    ).strategies[0]
    std = tgt.standard
    ref = tgt.reference[cols]
    avail = tgt.available[cols]
    judged = tgt.has_reference[cols]  # RMSE only where a held-out estimate exists
    # a subject that never reaches the target counts all its pool items (censored)
    std_items = np.where(std.items_to_se[cols] >= 0, std.items_to_se[cols], avail)
    col_items = np.where(col.items_to_se >= 0, col.items_to_se, avail)
    std_hit, col_hit = std.items_to_se[cols] >= 0, col.items_to_se >= 0
    rmse: dict[str, Any] = {}
    for t in RMSE_AT:
        if t <= tgt.steps and judged.any():
            rmse[str(t)] = {
                "standard": _rmse(std.theta[t, cols, 0][judged], ref[judged]),
                "collateral": _rmse(col.theta[t, :, 0][judged], ref[judged]),
            }
    rows = np.flatnonzero(std_hit & col_hit & judged)
    if rows.size:
        rmse["at_stop"] = {
            "standard": _rmse(std.theta[std_items[rows], cols[rows], 0], ref[rows]),
            "collateral": _rmse(col.theta[col_items[rows], rows, 0], ref[rows]),
            "n_subjects": int(rows.size),
        }
    saved = std_items - col_items
    return {
        "from": a.label,
        "to": b.label,
        "n_models": n,
        "n_subjects": len(cols),
        "folds": opt.folds,
        "pool_items": tgt.pool_items,
        "prior_sd": {
            "mean": float(np.mean(sds)),
            "min": float(np.min(sds)),
            "max": float(np.max(sds)),
        },
        "items_to_se": {
            "standard": _items_summary(std_items, std_hit),
            "collateral": _items_summary(col_items, col_hit),
        },
        "items_saved": {
            "mean": float(saved.mean()),
            "median": float(np.median(saved)),
            "share": float(saved.sum() / std_items.sum()) if std_items.sum() > 0 else None,
        },
        "n_with_reference": int(judged.sum()),
        "reference_se_mean": float(np.mean(tgt.reference_se[cols][judged]))
        if judged.any()
        else None,
        "rmse_vs_reference": rmse,
    }


def _items_summary(items: IntArray, reached: NDArray[np.bool_]) -> dict[str, Any]:
    """Items to the SE target; subjects that never reach it count their pool size."""
    return {
        "reached": int(reached.sum()),
        "never": int((~reached).sum()),
        "mean": float(items.mean()),
        "median": float(np.median(items)) if 2 * reached.sum() > items.size else None,
    }


def _rmse(x: FloatArray, ref: FloatArray) -> float:
    return float(np.sqrt(np.mean((x - ref) ** 2)))
