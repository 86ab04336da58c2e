"""Many adaptive tests advanced together, one item per step: the loop of replay and simulation.

The offline replay (recorded responses), the null of the person-fit statistics
(simulees answering from the model) and the detection benchmarks (simulees
answering aberrantly) all run the same loop: the live selection rule picks one
item for every test still running, a ``respond`` callback supplies the scores,
the many-subject posterior absorbs them. Only ``respond`` differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from orchestrator.cat.selection import SelectionRule
from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.irt.posterior import GridPosterior

__all__ = ["Respond", "run_lockstep"]

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

Respond = Callable[[IntArray, IntArray, IntArray], IntArray]
"""``respond(rows, items, positions)`` → scores: row ``rows[i]`` answers bank item
``items[i]`` as the ``positions[i]``-th item (0-based) of its test."""


def run_lockstep(
    bank: PreparedBank,
    post: GridPosterior,
    selection: SelectionRule,
    eligible: BoolArray,
    respond: Respond,
    n_steps: int,
    rngs: Sequence[np.random.Generator],
    after_step: Callable[[int], None] | None = None,
    batch_size: int = 1,
) -> None:
    """Advance every test with an eligible item by one item, ``n_steps`` times.

    Args:
        bank: The prepared bank the posterior's model is.
        post: The posteriors of the S tests (updated in place).
        selection: The selection rule, as used live.
        eligible: ``(S, N)`` items each test may still take (updated in place).
        respond: Supplies the scores of the picked items.
        n_steps: Steps to run; tests without an eligible item sit still.
        rngs: One random stream per test, for randomised rules.
        after_step: Called with t = 1..n_steps after each step.
        batch_size: Items picked together, as a live session with ``cat.batch_size``
            does (:meth:`~orchestrator.cat.selection.SelectionRule.select_batch_each`),
            then answered and absorbed one step each.
    """
    remaining = eligible.sum(axis=1)  # eligible items per test, kept as they are used
    rows = np.empty(0, dtype=np.int64)
    round_picks = np.empty((0, 1), dtype=np.int64)
    for t in range(1, n_steps + 1):
        j = (t - 1) % batch_size
        if j == 0:  # a new round: pick for every test still running
            rows = np.flatnonzero(remaining)
            if rows.size:
                state = CatState.of_posterior(
                    bank, post, rows, eligible[rows], n_eligible=remaining[rows]
                )
                tests_rngs = [rngs[s] for s in rows]
                round_picks = (
                    selection.select_each(state, tests_rngs)[:, None]
                    if batch_size == 1
                    else selection.select_batch_each(state, batch_size, tests_rngs)
                )
        picks = round_picks[:, j] if rows.size else round_picks[:0, 0]
        taking = rows[picks >= 0]
        picks = picks[picks >= 0]
        if taking.size:
            scores = respond(taking, picks, post.count[taking].copy())
            post.update(taking, picks, np.asarray(scores, dtype=np.int64))
            eligible[taking, picks] = False
            remaining[taking] -= 1
        if after_step is not None:
            after_step(t)
