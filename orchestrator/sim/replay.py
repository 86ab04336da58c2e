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

Misfit can be injected (``simulate --aberrant``, one-dimensional banks):
chosen subjects answer as an aberrant type of :mod:`orchestrator.sim.aberrant`
would, their recorded score taken as the honest one and their full-data EAP
as their true θ; errors are still measured against that clean EAP, per
group. With ``person_fit``, every replayed test gets the person-fit p-value
after every step, its null simulated under the same rule
(:mod:`orchestrator.cat.fit`).
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
from orchestrator.cat.fit import looks_like_test_flags, require_one_dimension, simulate_fit_null
from orchestrator.cat.lockstep import run_lockstep
from orchestrator.cat.selection import SelectionRule
from orchestrator.cat.state import PreparedBank
from orchestrator.data import AlignedResponses
from orchestrator.irt.ability import estimate_theta
from orchestrator.irt.personfit import FIT_COMPONENTS, FitStatistics, fit_statistics
from orchestrator.irt.posterior import DEFAULT_GRID, GridPosterior, GridSpec
from orchestrator.sim.aberrant import Aberrance

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
        fit_p: ``(T, S)`` person-fit p-value after 1..T items (None: not computed).
    """

    name: str
    rule: dict[str, Any]
    theta: FloatArray
    se: FloatArray
    items: IntArray
    items_to_se: IntArray
    items_to_se_by_dimension: IntArray
    wall_time_s: float
    fit_p: FloatArray | None = None


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
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Injected misfit: group label → ``{"spec": type spec or None, "rows": subject indices}``."""
    fit_alpha: float = 0.05
    lapse: float = 0.0

    def steps(
        self, result: StrategyResult, dimension: int = 0, rows: IntArray | None = None
    ) -> list[dict[str, Any]]:
        """Per step t = 1..T: RMSE and bias to the full-data θ, Spearman ρ, mean SE, n_active.

        Of one dimension (the first by default). ``rows``: only these subjects (a
        group); with person fit, also the share flagged.
        """
        sel = slice(None) if rows is None else rows
        ref = np.ascontiguousarray(self.theta_full[sel, dimension])
        theta = np.ascontiguousarray(result.theta[:, sel, dimension])
        se = np.ascontiguousarray(result.se[:, sel, dimension])
        n_resp = self.n_responses[sel]
        err = theta[1:] - ref[None, :]
        rank_full = rankdata(ref)
        out = []
        for t in range(1, theta.shape[0]):
            row: dict[str, Any] = {
                "n_items": t,
                "rmse": float(np.sqrt(np.mean(err[t - 1] ** 2))),
                "bias": float(np.mean(err[t - 1])),
                "spearman": _spearman(rankdata(theta[t]), rank_full),
                "mean_se": float(np.mean(se[t])),
                "n_active": int(np.sum(n_resp >= t)),
            }
            if result.fit_p is not None:
                p = result.fit_p[t - 1, sel]
                ok = np.isfinite(p)
                row["flagged"] = float(np.mean(p[ok] < self.fit_alpha)) if ok.any() else None
            out.append(row)
        return out

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
            "lapse": self.lapse,
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
            if self.groups:
                entry["groups"] = {
                    g: {"n_subjects": len(v["rows"]), "steps": self.steps(res, rows=v["rows"])}
                    for g, v in self.groups.items()
                }
            doc["strategies"][res.name] = entry
        if self.groups:
            doc["aberrant"] = {
                g: {"spec": v["spec"], "n_subjects": len(v["rows"])} for g, v in self.groups.items()
            }
            doc["person_fit_alpha"] = self.fit_alpha
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

        out: dict[str, Any] = {"subject": subject, "n_responses": int(self.n_responses[i])}
        out.update(row(0, lambda r: r.items_to_se))
        group = next((g for g, v in self.groups.items() if i in v["rows"]), None)
        if group is not None:
            out["group"] = group
        fitted = [(r.name, r.fit_p) for r in self.strategies if r.fit_p is not None]
        if fitted:
            last = min(int(self.n_responses[i]), self.max_items) - 1
            out["fit_p_final"] = {n: _finite(p[last, i]) for n, p in fitted} if last >= 0 else {}
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


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


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
    aberrant: Mapping[str, tuple[Aberrance, IntArray]] | None = None,
    person_fit: bool = False,
    fit_replicates: int = 300,
    fit_alpha: float = 0.05,
    lapse: float = 0.0,
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
            full-data reference and the person-fit null always use the bank's prior.
        progress: Called as ``progress(label, step, n_steps)`` after each step.
        aberrant: Group label → (aberrant type, subject indices): those
            subjects answer as that type would (disjoint groups; one-dimensional banks).
        person_fit: Compute every test's person-fit p-value after every step
            (one-dimensional banks).
        fit_replicates: Null simulees per ability node (with ``person_fit``).
        fit_alpha: Level at which a test counts as flagged in the summaries.
        lapse: Lapse rate of the replayed posteriors (robust likelihood); the
            full-data reference stays the plain EAP.
    """
    if person_fit:
        require_one_dimension(bank)
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
    groups = _groups(aberrant or {}, n_subj, bank)
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
        groups={g: {"spec": v["spec"], "rows": v["rows"]} for g, v in groups.items()}
        if aberrant
        else {},
        fit_alpha=fit_alpha,
        lapse=lapse,
    )
    for label, rule in strategies.items():
        result.strategies.append(
            _replay_one(
                label,
                rule,
                prepared,
                scores,
                full.theta,
                groups,
                n_steps,
                moments,
                se_target=se_target,
                seed=seed,
                grid=grid,
                progress=progress,
                person_fit=person_fit,
                fit_replicates=fit_replicates,
                lapse=lapse,
            )
        )
    return result


def _replay_one(
    label: str,
    rule: SelectionRule,
    prepared: PreparedBank,
    scores: NDArray[np.int16],
    theta_full: FloatArray,
    groups: Mapping[str, dict[str, Any]],
    n_steps: int,
    moments: Mapping[str, Any],
    *,
    se_target: float,
    seed: int,
    grid: GridSpec | None,
    progress: Progress | None,
    person_fit: bool,
    fit_replicates: int,
    lapse: float,
) -> StrategyResult:
    """One strategy over all subjects (the lockstep loop, plus person fit)."""
    bank = prepared.bank
    rule.check_bank(prepared)
    start = time.perf_counter()
    n_subj = scores.shape[0]
    post = GridPosterior(
        prepared.model,
        n_subj,
        capacity=n_steps,
        grid=grid,
        track_information=rule.needs_grid_information,
        lapse=lapse,
        **moments,
    )
    rngs = [subject_rng(seed, s) for s in range(n_subj)]
    draws = np.random.default_rng([seed, 7])
    theta = np.empty((n_steps + 1, n_subj, bank.n_dims))
    se = np.empty_like(theta)
    theta[0], se[0] = post.eap, post.sd
    by_dim = np.where(post.sd <= se_target, 0, -1)
    cue = looks_like_test_flags(bank)
    stats = np.full((len(FIT_COMPONENTS), n_steps, n_subj), np.nan) if person_fit else None

    def respond(rows: IntArray, picks: IntArray, positions: IntArray) -> IntArray:
        given = scores[rows, picks].astype(np.int64)
        for g in groups.values():
            kind = g["type"]
            m = g["member"][rows]
            if kind is not None and m.any():
                given[m] = kind.modify(
                    bank, theta_full[rows[m], 0], picks[m], positions[m], given[m], draws
                )
        return given

    def after_step(t: int) -> None:
        theta[t], se[t] = post.eap, post.sd
        by_dim[(by_dim < 0) & (post.sd <= se_target)] = t
        if stats is not None:
            stats[:, t - 1] = fit_statistics(
                bank.a, bank.b, post.items[:, :t], post.scores[:, :t], post.eap[:, 0], cue
            ).stacked()
        if progress is not None:
            progress(label, t, n_steps)

    run_lockstep(prepared, post, rule, scores >= 0, respond, n_steps, rngs, after_step)
    fit_p = None
    if stats is not None:
        null = simulate_fit_null(
            bank,
            rule,
            n_steps,
            replicates=fit_replicates,
            seed=seed,
            grid=grid or DEFAULT_GRID,
            lapse=lapse,
        )
        fit_p = np.full((n_steps, n_subj), np.nan)
        n_responses = (scores >= 0).sum(axis=1)
        for t in range(1, n_steps + 1):  # a subject out of items keeps its last statistics
            count = np.minimum(n_responses, t)
            last = stats[:, np.maximum(count, 1) - 1, np.arange(n_subj)]
            fit_p[t - 1] = null.p_values(FitStatistics.from_stacked(last, count), theta[t, :, 0])[1]
    reached = (by_dim >= 0).all(axis=1)
    return StrategyResult(
        name=label,
        rule=rule.spec(),
        theta=theta,
        se=se,
        items=post.items[:, :n_steps],
        items_to_se=np.where(reached, by_dim.max(axis=1), -1),
        items_to_se_by_dimension=by_dim,
        wall_time_s=time.perf_counter() - start,
        fit_p=fit_p,
    )


def _groups(
    aberrant: Mapping[str, tuple[Aberrance, IntArray]], n_subj: int, bank: ItemBank
) -> dict[str, dict[str, Any]]:
    """``fitting`` (everyone not injected) plus one group per aberrant type, with member masks."""
    if aberrant:
        require_one_dimension(bank, "injected misfit")
    taken = np.zeros(n_subj, dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for label, (kind, rows) in aberrant.items():
        rows = np.asarray(rows, dtype=np.int64)
        if taken[rows].any():
            raise ValueError(f"aberrant group {label!r} overlaps another group")
        member = np.zeros(n_subj, dtype=bool)
        member[rows] = True
        taken |= member
        kind.prepare(bank)
        out[label] = {"spec": kind.spec(), "rows": rows, "member": member, "type": kind}
    fitting = np.flatnonzero(~taken)
    return {
        "fitting": {"spec": None, "rows": fitting, "member": ~taken, "type": None},
        **out,
    }
