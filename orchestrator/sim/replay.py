"""Offline CAT replay on a recorded response matrix: how many items does CAT need?

For every subject, an adaptive test is replayed using only the items that
subject has responses for: the selection rule picks an item, the recorded
score is "administered", the posterior updates. Each strategy (a selection
rule: ``max_info`` for CAT, ``random`` as the baseline, …) is replayed to the
end of each subject's items (or ``max_items``), and compared step by step
with the estimate from *all* of that subject's responses (EAP, same prior).

All subjects advance in lockstep, one item per step, through the same
:class:`~orchestrator.cat.SelectionRule` objects the live controller uses
(S = all subjects instead of 1) and the same grid posterior
(:class:`~orchestrator.irt.GridPosterior`; the live controller's is its
one-row view). Each subject draws from its own random stream
``default_rng([seed, s])``, so subject s's replay is exactly what
``CatController(bank, rule, rng=default_rng([seed, s]))`` does on the same
responses (tested).

θ has the bank's D dimensions: trajectories are ``(T + 1, S, D)`` and every
summary is computed per dimension. The JSON keeps its one-dimensional fields
(for D > 1 they describe the first dimension; "SE ≤ target" means every
dimension's) and adds a ``dimensions`` entry with all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from orchestrator.bank import ItemBank
from orchestrator.cat.selection import SelectionRule
from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.data import AlignedResponses
from orchestrator.irt.ability import estimate_theta
from orchestrator.irt.posterior import GridPosterior, GridSpec

__all__ = ["REPLAY_SCHEMA_VERSION", "ReplayResult", "StrategyResult", "replay", "subject_rng"]

REPLAY_SCHEMA_VERSION = 1
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[str, int, int], None]


def subject_rng(seed: int, subject: int) -> np.random.Generator:
    """The random stream of replayed subject number ``subject`` (0-based, file order)."""
    return np.random.default_rng([seed, subject])


@dataclass(frozen=True)
class StrategyResult:
    """One strategy's replay.

    Attributes:
        name: Label (``cat``, ``random`` …).
        rule: The selection rule's spec.
        theta, se: ``(T + 1, S, D)`` estimates after 0..T items (carried forward
            once a subject has no items left).
        items: ``(S, T)`` bank indices administered, −1 after a subject's last item.
        items_to_se: ``(S,)`` items after which SE ≤ target first held on every
            dimension, −1 = never.
        items_to_se_by_dimension: ``(S, D)`` the same for each dimension alone.
    """

    name: str
    rule: dict[str, Any]
    theta: FloatArray
    se: FloatArray
    items: IntArray
    items_to_se: IntArray
    items_to_se_by_dimension: IntArray
    wall_time_s: float


@dataclass(frozen=True)
class ReplayResult:
    """Replays of several strategies on one response matrix, plus the full-data reference.

    ``theta_full`` and ``se_full`` are ``(S, D)``; ``dimensions`` names the D axes.
    """

    bank: str
    subjects: tuple[str, ...]
    n_responses: IntArray
    theta_full: FloatArray
    se_full: FloatArray
    se_target: float
    max_items: int
    seed: int
    dimensions: tuple[str, ...] = ("theta",)
    strategies: list[StrategyResult] = field(default_factory=list)

    def steps(self, result: StrategyResult, dimension: int = 0) -> list[dict[str, Any]]:
        """Per step t = 1..T: RMSE and bias to the full-data θ, Spearman ρ, mean SE, n_active.

        Of one dimension (the first by default).
        """
        ref = np.ascontiguousarray(self.theta_full[:, dimension])
        theta = np.ascontiguousarray(result.theta[..., dimension])
        se = np.ascontiguousarray(result.se[..., dimension])
        err = theta[1:] - ref[None, :]
        rank_full = rankdata(ref)
        rows = []
        for t in range(1, theta.shape[0]):
            rows.append(
                {
                    "n_items": t,
                    "rmse": float(np.sqrt(np.mean(err[t - 1] ** 2))),
                    "bias": float(np.mean(err[t - 1])),
                    "spearman": _spearman(rankdata(theta[t]), rank_full),
                    "mean_se": float(np.mean(se[t])),
                    "n_active": int(np.sum(self.n_responses >= t)),
                }
            )
        return rows

    def to_dict(self, per_subject: bool = True) -> dict[str, Any]:
        """The versioned JSON document ``agentcat simulate --json`` prints."""
        multi = len(self.dimensions) > 1
        doc: dict[str, Any] = {
            "schema_version": REPLAY_SCHEMA_VERSION,
            "command": "simulate",
            "bank": self.bank,
            "n_subjects": len(self.subjects),
            "n_responses": int(self.n_responses.sum()),
            "se_target": self.se_target,
            "max_items": self.max_items,
            "seed": self.seed,
            "reference": "EAP from all of each subject's responses, same prior",
            "strategies": {},
        }
        if multi:
            doc["dimensions"] = list(self.dimensions)
        for res in self.strategies:
            entry: dict[str, Any] = {
                "rule": res.rule,
                "wall_time_s": res.wall_time_s,
                "items_to_se": _items_to_se(res.items_to_se),
                "steps": self.steps(res),
            }
            if multi:
                entry["dimensions"] = {
                    name: {
                        "items_to_se": _items_to_se(res.items_to_se_by_dimension[:, d]),
                        "steps": self.steps(res, d),
                    }
                    for d, name in enumerate(self.dimensions)
                }
            doc["strategies"][res.name] = entry
        if per_subject:
            doc["subjects"] = [self._subject(i, s) for i, s in enumerate(self.subjects)]
        return doc

    def _subject(self, i: int, subject: str) -> dict[str, Any]:
        """One subject's row of the JSON (first dimension; all of them under ``dimensions``)."""

        def row(d: int, items_to_se: Callable[[StrategyResult], IntArray]) -> dict[str, Any]:
            return {
                "theta_full": float(self.theta_full[i, d]),
                "se_full": float(self.se_full[i, d]),
                "items_to_se": {
                    r.name: (int(items_to_se(r)[i]) if items_to_se(r)[i] >= 0 else None)
                    for r in self.strategies
                },
                "theta_final": {r.name: float(r.theta[-1, i, d]) for r in self.strategies},
            }

        out = {"subject": subject, "n_responses": int(self.n_responses[i])}
        out.update(row(0, lambda r: r.items_to_se))
        if len(self.dimensions) > 1:
            out["dimensions"] = {
                name: row(d, lambda r, d=d: r.items_to_se_by_dimension[:, d])
                for d, name in enumerate(self.dimensions)
            }
        return out


def _items_to_se(items_to_se: IntArray) -> dict[str, Any]:
    reached = items_to_se[items_to_se >= 0]
    return {
        "reached": int(reached.size),
        "never": int((items_to_se < 0).sum()),
        "mean": float(reached.mean()) if reached.size else None,
        "median": float(np.median(reached)) if reached.size else None,
    }


def _spearman(ranks: FloatArray, ranks_ref: FloatArray) -> float | None:
    """Pearson correlation of ranks; None when either side is constant."""
    x = ranks - ranks.mean()
    y = ranks_ref - ranks_ref.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else None


def replay(
    bank: ItemBank,
    responses: AlignedResponses,
    strategies: Mapping[str, SelectionRule],
    *,
    max_items: int | None = None,
    se_target: float = 0.3,
    seed: int = 0,
    grid: GridSpec | None = None,
    prior: tuple[FloatArray, FloatArray] | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay each strategy for every subject and keep the trajectories.

    Args:
        bank: The calibrated bank (its prior is used unless ``prior`` is given).
        responses: Responses aligned to ``bank``.
        strategies: Label → selection rule.
        max_items: Stop each replay after this many items (default: all of
            a subject's items).
        se_target: SE target for "items needed to reach the target".
        seed: Base seed; subject s uses :func:`subject_rng`.
        grid: Posterior grid per axis (as live; default by the bank's D).
        prior: Per-subject normal prior ``(means, sds)``, each ``(S,)``, for the
            adaptive tests of a one-dimensional bank (e.g. collateral information
            from another test); default: the bank's prior for everyone. The
            full-data reference always uses the bank's prior.
        progress: Called as ``progress(label, step, n_steps)`` after each step.
    """
    prepared = PreparedBank.of(bank)
    n_subj = len(responses.subjects)
    scores = np.full((n_subj, len(bank)), -1, dtype=np.int16)  # dense, S × N: 2 bytes a cell
    scores[responses.subject_idx, responses.bank_item] = responses.score
    answered = scores >= 0
    n_responses = answered.sum(axis=1)
    n_steps = int(n_responses.max()) if max_items is None else int(max_items)
    bank_moments = bank.prior_parameters()
    moments = bank_moments if prior is None else {"prior_mean": prior[0], "prior_sd": prior[1]}
    full = estimate_theta(
        prepared.model,
        responses.subject_idx,
        responses.bank_item,
        responses.score,
        n_subj,
        **bank_moments,
    )
    result = ReplayResult(
        bank=bank.name,
        subjects=tuple(responses.subjects),
        n_responses=n_responses,
        theta_full=full.theta,
        se_full=full.se,
        se_target=float(se_target),
        max_items=n_steps,
        seed=int(seed),
        dimensions=tuple(bank.dimensions),
    )
    for label, rule in strategies.items():
        rule.check_bank(prepared)
        start = time.perf_counter()
        post = GridPosterior(
            prepared.model,
            n_subj,
            capacity=n_steps,
            grid=grid,
            track_information=rule.needs_grid_information,
            **moments,
        )
        rngs = [subject_rng(seed, s) for s in range(n_subj)]
        eligible = answered.copy()
        theta = np.empty((n_steps + 1, n_subj, bank.n_dims))
        se = np.empty_like(theta)
        theta[0], se[0] = post.eap, post.sd
        by_dim = np.where(post.sd <= se_target, 0, -1)
        for t in range(1, n_steps + 1):
            rows = np.flatnonzero(eligible.any(axis=1))
            if rows.size:
                state = CatState.of_posterior(prepared, post, rows, eligible[rows])
                picks = rule.select_each(state, [rngs[s] for s in rows])
                post.update(rows, picks, scores[rows, picks].astype(np.int64))
                eligible[rows, picks] = False
            theta[t], se[t] = post.eap, post.sd
            by_dim[(by_dim < 0) & (post.sd <= se_target)] = t
            if progress is not None:
                progress(label, t, n_steps)
        reached = (by_dim >= 0).all(axis=1)
        result.strategies.append(
            StrategyResult(
                name=label,
                rule=rule.spec(),
                theta=theta,
                se=se,
                items=post.items[:, :n_steps],
                items_to_se=np.where(reached, by_dim.max(axis=1), -1),
                items_to_se_by_dimension=by_dim,
                wall_time_s=time.perf_counter() - start,
            )
        )
    return result
