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
    """
    remaining = eligible.sum(axis=1)  # eligible items per test, kept as they are used
    for t in range(1, n_steps + 1):
        rows = np.flatnonzero(remaining)
        if rows.size:
            state = CatState.of_posterior(
                bank, post, rows, eligible[rows], n_eligible=remaining[rows]
            )
            picks = selection.select_each(state, [rngs[s] for s in rows])
            scores = respond(rows, picks, post.count[rows].copy())
            post.update(rows, picks, np.asarray(scores, dtype=np.int64))
            eligible[rows, picks] = False
            remaining[rows] -= 1
        if after_step is not None:
            after_step(t)
