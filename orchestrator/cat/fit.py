"""Person fit of an adaptive test: its null distribution by simulation, and one test's verdict.

:mod:`orchestrator.irt.personfit` computes the statistics; their null depends
on the bank, the selection rule and the posterior, so it is simulated here:
R well-fitting simulees at each ability of a grid take the very test a
subject takes (same :class:`~orchestrator.cat.SelectionRule` object, same
grid posterior), all advancing in lockstep like the offline replay, and the
statistics after every step are kept (:func:`simulate_fit_null`). A table is
deterministic for its inputs and seed and cached per process, so a resumed
session gets the same p-values without storing the table. A process may also
install a :class:`NullStore` (:func:`set_null_store`; the CLI and the API's live
runs install a disk cache, :mod:`orchestrator.session.null_cache`) so the next process starts
without simulating again; this module itself does no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from orchestrator.bank import ItemBank
from orchestrator.cat.lockstep import run_lockstep
from orchestrator.cat.selection import SelectionRule
from orchestrator.cat.state import PreparedBank
from orchestrator.errors import ConfigError
from orchestrator.irt.fit import observation_probs
from orchestrator.irt.personfit import (
    FIT_COMPONENTS,
    FitNull,
    FitStatistics,
    fit_statistics,
    score_tail_probs,
)
from orchestrator.irt.posterior import DEFAULT_GRID, GridPosterior, GridSpec

__all__ = [
    "DEFAULT_NODES",
    "NULL_VERSION",
    "NullStore",
    "PersonFitResult",
    "SimulatedTests",
    "assess_fit",
    "draw_scores",
    "looks_like_test_flags",
    "null_store",
    "require_one_dimension",
    "set_null_store",
    "simulate_fit_null",
    "simulate_tests",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_NODES = np.arange(-4.0, 4.001, 0.5)
"""Null abilities in prior SDs from the prior mean (17 nodes)."""
NULL_VERSION = 3
"""Bumped whenever a null table for the same inputs would come out different
(statistics, simulation), so stored tables of older code are not reused."""
_CACHE: OrderedDict[str, FitNull] = OrderedDict()
_CACHE_SIZE = 8


class NullStore(Protocol):
    """Keeps null tables beyond one process, by the key of their inputs."""

    def load(self, key: str) -> FitNull | None:
        """The table stored under ``key``; None when absent or not trustworthy."""

    def save(self, key: str, table: FitNull) -> None:
        """Store ``table`` under ``key`` (best effort: a failure must not raise)."""


_STORE: NullStore | None = None


def null_store() -> NullStore | None:
    """The store installed by :func:`set_null_store` (None: memory only)."""
    return _STORE


def set_null_store(store: NullStore | None) -> NullStore | None:
    """Install the store consulted after the in-memory cache (None: memory only);
    returns the one it replaces."""
    global _STORE
    previous, _STORE = _STORE, store
    return previous


def require_one_dimension(bank: ItemBank, what: str = "person fit") -> None:
    """Raise ConfigError for a multidimensional bank: person fit and aberrant
    simulees read one slope and one θ per item."""
    if bank.n_dims > 1:
        raise ConfigError(
            f"{what} is one-dimensional; bank {bank.name!r} has {bank.n_dims} dimensions",
            hint="use it with a one-dimensional bank, or turn it off for this one",
        )


def looks_like_test_flags(bank: ItemBank) -> NDArray[np.bool_] | None:
    """Which items look like a test (tag ``looks_like_test``); None when no item says so."""
    tags = bank.tag_values("looks_like_test")
    flags = np.array([str(t).strip().lower() in ("1", "true", "yes") for t in tags])
    return flags if flags.any() else None


def draw_scores(theta: FloatArray, a: FloatArray, b: FloatArray, u: FloatArray) -> IntArray:
    """Scores of S subjects on one item each: ``a``, ``b`` are the items' rows, ``u`` ~ U(0, 1).

    Inverse CDF: X = #{k : u < P*_k(θ)}, P*_k = P(X ≥ k) decreasing in k.
    """
    probs = observation_probs(np.asarray(theta, dtype=float), a, b)
    upper = 1.0 - np.cumsum(probs, axis=-1)[:, :-1]  # P(X ≥ k), k = 1..K−1
    return (u[:, None] < upper).sum(axis=-1).astype(np.int64)


def _key(bank: ItemBank, rule: SelectionRule, **kw: Any) -> str:
    """SHA-256 of everything the table depends on: the bank's whole content (items,
    prior, tags, costs), the rule, the simulation's settings and :data:`NULL_VERSION`."""
    text = json.dumps(
        {
            "bank": hashlib.sha256(bank.spec.model_dump_json().encode()).hexdigest(),
            "rule": rule.spec(),
            "version": NULL_VERSION,
            "components": FIT_COMPONENTS,
            **kw,
        },
        sort_keys=True,
        default=_exact_text,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _exact_text(value: Any) -> str:
    """Key text of a non-JSON value; arrays (a grid) by their bytes, since ``str`` elides them."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return f"ndarray:{arr.dtype.str}:{arr.shape}:{hashlib.sha256(arr.tobytes()).hexdigest()}"
    return str(value)


Modify = Callable[[IntArray, IntArray, IntArray, IntArray], IntArray]
"""``modify(rows, items, positions, honest)`` → the scores actually given (aberrant simulees)."""


@dataclass(frozen=True)
class SimulatedTests:
    """S simulated adaptive tests of T items.

    Attributes:
        theta: True abilities, ``(S,)``.
        theta_hat, se: Estimates after 0..T items, ``(T + 1, S)``.
        items, scores: Administered bank indices and scores, ``(S, T)``.
        stats: Person-fit statistics after each step, ``(C, T, S)``.
    """

    theta: FloatArray
    theta_hat: FloatArray
    se: FloatArray
    items: IntArray
    scores: IntArray
    stats: FloatArray


def simulate_tests(
    bank: ItemBank,
    selection: SelectionRule,
    theta: FloatArray,
    n_steps: int,
    *,
    modify: Modify | None = None,
    seed: int = 0,
    grid: GridSpec = DEFAULT_GRID,
    lapse: float = 0.0,
    batch_size: int = 1,
) -> SimulatedTests:
    """Simulees of abilities ``theta`` take the adaptive test; responses from the bank's GRM.

    Args:
        bank: The bank; its prior is the posterior's prior.
        selection: The rule that picks items, exactly as live.
        theta: True abilities, ``(S,)``.
        n_steps: Items per test (capped at the bank's size).
        modify: Turns honest scores into the scores given (None: well-fitting).
        seed: Seeds responses and the rule's random streams.
        grid: The posterior's grid.
        lapse: The posterior's lapse rate (robust likelihood), as live.
        batch_size: Items picked together per round, as live (``cat.batch_size``).
    """
    require_one_dimension(bank)
    prior = bank.spec.prior
    theta = np.asarray(theta, dtype=float)
    s = theta.size
    n_steps = int(min(n_steps, len(bank)))
    prepared = PreparedBank.of(bank)
    selection.check_bank(prepared)
    post = GridPosterior(
        prepared.model,
        s,
        capacity=n_steps,
        prior_mean=prior.mean,
        prior_sd=prior.sd,
        grid=grid,
        track_information=selection.needs_grid_information,
        lapse=lapse,
    )
    rngs = [np.random.default_rng([seed, 1, i]) for i in range(s)]
    draws = np.random.default_rng([seed, 0])
    theta_hat = np.empty((n_steps + 1, s))
    se = np.empty((n_steps + 1, s))
    cue = looks_like_test_flags(bank)
    stats = np.empty((len(FIT_COMPONENTS), n_steps, s))
    theta_hat[0], se[0] = post.eap[:, 0], post.sd[:, 0]

    def respond(rows: IntArray, items: IntArray, positions: IntArray) -> IntArray:
        honest = draw_scores(theta[rows], bank.a[items], bank.b[items], draws.random(rows.size))
        return honest if modify is None else modify(rows, items, positions, honest)

    def after_step(t: int) -> None:
        theta_hat[t], se[t] = post.eap[:, 0], post.sd[:, 0]
        stats[:, t - 1] = fit_statistics(
            bank.a, bank.b, post.items[:, :t], post.scores[:, :t], theta_hat[t], cue
        ).stacked()

    eligible = np.ones((s, len(bank)), dtype=bool)
    run_lockstep(
        prepared, post, selection, eligible, respond, n_steps, rngs, after_step, batch_size
    )
    return SimulatedTests(theta, theta_hat, se, post.items, post.scores, stats)


def simulate_fit_null(
    bank: ItemBank,
    selection: SelectionRule,
    n_steps: int,
    *,
    replicates: int = 400,
    nodes: FloatArray | None = None,
    seed: int = 0,
    grid: GridSpec = DEFAULT_GRID,
    lapse: float = 0.0,
    batch_size: int = 1,
) -> FitNull:
    """Null distribution of the person-fit statistics for tests of up to ``n_steps`` items.

    Args:
        bank: The bank (its prior sets the posterior and, scaled, the abilities).
        selection: The rule that picks items, exactly as the test uses it.
        n_steps: T, the longest test to cover (capped at the bank's size).
        replicates: R simulees per ability.
        nodes: Abilities in prior SDs from the prior mean (default ``DEFAULT_NODES``).
        seed: Seeds responses and the rule's random streams.
        grid: The posterior's grid, as in the test.
        lapse: The posterior's lapse rate, as in the test.
        batch_size: Items picked together per round, as in the test: a batch's
            later picks do not see the earlier ones' scores, which changes the
            items a test gets and so the statistics' null.
    """
    prior = bank.spec.prior
    rel = DEFAULT_NODES if nodes is None else np.asarray(nodes, dtype=float)
    abil = prior.mean + prior.sd * rel
    n_steps = int(min(n_steps, len(bank)))
    key = _key(
        bank,
        selection,
        T=n_steps,
        R=replicates,
        nodes=abil.tolist(),
        seed=seed,
        grid=grid,
        lapse=lapse,
        batch_size=batch_size,
    )
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    stored = None if _STORE is None else _STORE.load(key)
    if stored is not None:
        return _remember(key, stored)
    sims = simulate_tests(
        bank,
        selection,
        np.repeat(abil, replicates),
        n_steps,
        seed=seed,
        grid=grid,
        lapse=lapse,
        batch_size=batch_size,
    )
    spec = {
        "bank_fingerprint": PreparedBank.of(bank).fingerprint,
        "selection": selection.spec(),
        "max_items": n_steps,
        "replicates": replicates,
        "nodes": abil.tolist(),
        "seed": seed,
        "lapse": lapse,
        "batch_size": batch_size,
    }
    shape = (n_steps, len(abil), replicates)
    table = FitNull.from_simulation(
        abil,
        sims.stats.reshape(len(FIT_COMPONENTS), *shape),
        sims.theta_hat[1:].reshape(shape),
        spec,
    )
    if _STORE is not None:
        _STORE.save(key, table)
    return _remember(key, table)


def _remember(key: str, table: FitNull) -> FitNull:
    _CACHE[key] = table
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return table


@dataclass(frozen=True)
class PersonFitResult:
    """One test's person fit after its n-th item.

    Attributes:
        n_items: Items the statistics cover.
        statistics: Each of :data:`~orchestrator.irt.personfit.FIT_COMPONENTS` (None: undefined).
        p_components: One-sided p-value of each statistic (simulated null at θ̂).
        p: Combined p-value (None when the null table does not cover n).
        flagged: ``p < alpha``.
        below: Items scored far below θ̂ (P(X ≤ x | θ̂) < ``item_alpha``), with that probability.
        above: Items scored far above θ̂ (P(X ≥ x | θ̂) < ``item_alpha``).
    """

    n_items: int
    statistics: dict[str, float | None]
    p_components: dict[str, float | None]
    p: float | None
    alpha: float
    flagged: bool
    below: list[tuple[str, int, float]]
    above: list[tuple[str, int, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "statistics": self.statistics,
            "p_components": self.p_components,
            "p": self.p,
            "alpha": self.alpha,
            "flagged": self.flagged,
            "below": [{"item": i, "score": x, "prob": p} for i, x, p in self.below],
            "above": [{"item": i, "score": x, "prob": p} for i, x, p in self.above],
        }

    def message(self) -> str | None:
        """The plain-words verdict when flagged, else None."""
        if not self.flagged:
            return None
        parts = []
        if self.below:
            parts.append(f"{len(self.below)} item(s) answered far below its level")
        if self.above:
            parts.append(f"{len(self.above)} item(s) answered far above its level")
        detail = " and ".join(parts) if parts else "an improbable pattern of scores"
        items = [i for i, _, _ in self.below] + [i for i, _, _ in self.above]
        tail = f" ({', '.join(items)})" if items else ""
        return (
            f"θ may not describe this model: {detail}{tail}; person-fit p = {self.p:.3g} "
            f"after {self.n_items} items"
        )


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


def assess_fit(
    bank: ItemBank,
    items: IntArray,
    scores: IntArray,
    theta: float,
    null: FitNull,
    *,
    alpha: float = 0.05,
    item_alpha: float = 0.1,
) -> PersonFitResult:
    """Person fit of one test (bank indices and scores in order) at its θ̂."""
    it = np.asarray(items, dtype=np.int64)[None, :]
    sc = np.asarray(scores, dtype=np.int64)[None, :]
    th = np.array([theta], dtype=float)
    stats: FitStatistics = fit_statistics(bank.a, bank.b, it, sc, th, looks_like_test_flags(bank))
    comp, p = null.p_values(stats, th)
    low, high = score_tail_probs(bank.a, bank.b, it, sc, th)
    ids = bank.ids
    below = [
        (ids[int(i)], int(x), round(float(q), 6))
        for i, x, q in zip(it[0], sc[0], low[0], strict=True)
        if q < item_alpha
    ]
    above = [
        (ids[int(i)], int(x), round(float(q), 6))
        for i, x, q in zip(it[0], sc[0], high[0], strict=True)
        if q < item_alpha
    ]
    p0 = float(p[0])
    return PersonFitResult(
        n_items=int(stats.n_items[0]),
        statistics={n: _num(v) for n, v in zip(FIT_COMPONENTS, stats.stacked()[:, 0], strict=True)},
        p_components={n: _num(v) for n, v in zip(FIT_COMPONENTS, comp[:, 0], strict=True)},
        p=_num(p0),
        alpha=alpha,
        flagged=bool(np.isfinite(p0) and p0 < alpha),
        below=below,
        above=above,
    )
