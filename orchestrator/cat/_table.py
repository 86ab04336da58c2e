"""Every item's Fisher information tabulated on a fine θ grid, with a proven error bound.

The CAT step evaluates every eligible item's information at the current
estimate; on a 10,000-item bank that is the whole cost of a step. A bank's
items never change, so :class:`InformationTable` computes I_j(θ) once on an
even grid (float32) and a step interpolates two rows linearly. The rules do
not trust the interpolation: with ``eps`` bounding its error, any item whose
interpolated value is more than 2·eps below the best cannot be the exact
best, and only the few items within that margin are evaluated exactly (see
``selection.Bounded``). The choice is therefore the exact rule's own.

The bound per item is measured when the table is built: the interpolation
error at the midpoint and the quarter points of every interval (where linear
interpolation errs most for a function whose curvature changes little over
one interval), doubled, plus the float32 rounding. Items too steep for the
grid (a·Δ > 1/4: their curvature changes within one interval) get an
infinite bound and are always evaluated exactly. A test checks the bound
against dense exact evaluations.

A live step need not even interpolate every item: for each grid interval the
table keeps a *shortlist*, the ``SHORTLIST`` items whose larger endpoint
value is highest, and a *ceiling*, the largest endpoint value of any other
item. An interpolated value never exceeds its larger endpoint, so when the
best eligible shortlisted estimate beats the ceiling by more than 2·eps, no
item off the list can win, and the step reads a few hundred table entries
instead of N (``Bounded.shortlist``); otherwise it falls back to all items.

A batch's later picks score items by their variance reduction, a sum over the
posterior grid that no single interval's list bounds. For them the table keeps
*groups* (:meth:`InformationTable.groups`): the bounded items sorted by where
their information peaks, cut into bins of ``GROUP_BIN`` items, each bin cut by
peak height into groups (4 items of the highest peaks, … 128 of the lowest),
and per group and grid row the
largest value of any member (its *envelope*). A group's envelope bounds every
member's information on the whole grid, so a criterion increasing in the
information is bounded for a whole group at once, and a batch pick opens only
the few groups whose bound can still win (``selection._open_groups``).

θ is one-dimensional here; for D > 1 the rules evaluate every item exactly
(the same selection code, without a table).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from orchestrator.irt.model import GradedResponseModel

__all__ = ["InformationTable"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_BLOCK_ELEMS = 1 << 21
"""Grid points × items per block while the table is built (bounds the temporaries)."""
_STEEP = 0.25
"""Items with a·Δ above this are always evaluated exactly."""
SHORTLIST = 256
"""Items per grid interval a live step looks at first (the best by their endpoint values)."""
GROUP_BIN = 256
"""Items per location bin (of similar peak location; see :meth:`InformationTable.groups`)."""
GROUP_STARTS = (0, 4, 8, 16, 32, 64, 128)
"""Where a bin's groups start, by rank of peak height: small groups of the highest peaks
(the ones a pick opens), large groups of the low ones (never opened)."""
_ROUNDING = 1.0 + 2.0**-20
"""Float32 interpolation may exceed the larger endpoint by an ulp or two: the ceiling's margin."""


class InformationTable:
    """I_j(θ) of all N items at ``n`` even points of [lo, hi], with an error bound.

    Args:
        model: A one-dimensional graded response model.
        lo, hi: The θ range (the posterior grid's bounds: every EAP lies in it).
        max_bytes: Memory for the table; the grid is as fine as it allows
            (step at most 0.025, at least 61 points).

    Attributes:
        theta: The grid, ``(n,)``.
        values: ``(n, N)`` float32 information.
        eps: Largest interpolation error of any item with a finite bound.
        steep: Items always evaluated exactly (infinite bound), ascending.
        order: ``(n − 1, M)`` per interval, the M bounded items with the largest
            endpoint value, best first (M = min(``SHORTLIST``, bounded items − 1)).
        row_max: ``(n,)`` the largest value of each grid row.
        ceiling: ``(n − 1,)`` per interval, an upper bound on the interpolated value
            of every bounded item not in ``order`` (−inf when none is left out).
    """

    def __init__(
        self, model: GradedResponseModel, lo: float, hi: float, max_bytes: int = 64 << 20
    ) -> None:
        if model.n_dims != 1:
            raise ValueError("the information table is one-dimensional")
        n_items = model.n_items
        n = int(np.clip(max_bytes // (4 * max(n_items, 1)), 61, (hi - lo) / 0.025 + 1))
        self.model = model
        self.lo, self.hi = float(lo), float(hi)
        self.theta = np.linspace(lo, hi, n)
        self.step = float(self.theta[1] - self.theta[0])
        self.values = np.empty((n, n_items), dtype=np.float32)
        rows = max(1, _BLOCK_ELEMS // max(n_items * model.k_max, 1))
        for g0 in range(0, n, rows):
            self.values[g0 : g0 + rows] = self._exact(self.theta[g0 : g0 + rows])
        top = self.values.max(axis=0).astype(float)
        err = np.zeros(n_items)
        for g0 in range(0, n - 1, rows):  # interpolation error inside each interval
            lo_g = np.arange(g0, min(g0 + rows, n - 1))
            left, right = self.values[lo_g], self.values[lo_g + 1]
            for frac in (0.25, 0.5, 0.75):
                approx = (1 - frac) * left + frac * right
                exact = self._exact(self.theta[lo_g] + frac * self.step)
                err = np.maximum(err, np.abs(exact - approx).max(axis=0))
        steep = model.slopes[:, 0] * self.step > _STEEP
        bound = 2.0 * err + 2.0**-22 * top  # doubled, plus float32 rounding of both rows
        self.steep: IntArray = np.flatnonzero(steep)
        self.eps = float(bound[~steep].max(initial=0.0))
        self.row_max = self.values.max(axis=1).astype(float)
        self._rows_per_block = rows
        self._groups: tuple[IntArray, IntArray, NDArray[np.float32]] | None = None
        self._shortlists(rows)

    def groups(self) -> tuple[IntArray, IntArray, NDArray[np.float32]]:
        """The bounded items in groups of similar information curves, built on first use.

        Returns ``members (M,)`` (item indices, group by group), ``starts (C + 1,)`` (group
        c is ``members[starts[c]:starts[c + 1]]``) and ``envelope (n, C)``: per grid row
        the largest tabulated value of any member. The members' interpolated (and, within
        ``eps``, exact) information at θ in interval i is at most
        ``max(envelope[i], envelope[i + 1])``. Sorted by peak location, then cut by peak
        height, so a group's envelope is close to each member's curve and the groups of
        high, nearby peaks are the only ones a pick needs to open.
        """
        if self._groups is not None:
            return self._groups
        bounded = np.setdiff1d(np.arange(self.values.shape[1]), self.steep)
        peak_row = np.empty(bounded.size, dtype=np.int64)
        peak = np.empty(bounded.size, dtype=np.float32)
        step = max(1, _BLOCK_ELEMS // max(len(self.theta), 1))
        for c0 in range(0, bounded.size, step):  # blocks of items bound the temporaries
            block = self.values[:, bounded[c0 : c0 + step]]
            peak_row[c0 : c0 + step] = block.argmax(axis=0)
            peak[c0 : c0 + step] = block.max(axis=0)
        perm = np.lexsort((-peak, peak_row))  # by location, then height
        by_place, peak = bounded[perm], peak[perm]
        members, starts, base = [], [], 0
        for b0 in range(0, by_place.size, GROUP_BIN):  # each bin by height, in groups
            order = np.argsort(-peak[b0 : b0 + GROUP_BIN], kind="stable")
            members.append(by_place[b0 : b0 + GROUP_BIN][order])
            starts.extend(base + c for c in GROUP_STARTS if c < order.size)
            base += order.size
        starts.append(base)
        member = np.concatenate(members) if members else np.empty(0, dtype=np.int64)
        start = np.array(starts, dtype=np.int64)
        envelope = np.empty((len(self.theta), max(len(start) - 1, 0)), dtype=np.float32)
        if member.size:
            for r0 in range(0, len(self.theta), self._rows_per_block):
                block = self.values[r0 : r0 + self._rows_per_block][:, member]
                envelope[r0 : r0 + self._rows_per_block] = np.maximum.reduceat(
                    block, start[:-1], axis=1
                )
        self._groups = (member, start, envelope)
        return self._groups

    def _shortlists(self, rows: int) -> None:
        """Per interval, the best ``SHORTLIST`` bounded items by their larger endpoint value,
        and the ceiling of all the others (see the module docstring)."""
        bounded = np.setdiff1d(np.arange(self.values.shape[1]), self.steep)
        m = max(0, min(SHORTLIST, bounded.size - 1))
        n_int = len(self.theta) - 1
        self.order = np.empty((n_int, m), dtype=np.int64)
        self.ceiling = np.full(n_int, -np.inf)
        # the listed items' left values and right − left differences, as interpolate()
        # computes them: a step reads two rows of M values instead of gathering them
        self._listed_lo = np.empty((n_int, m), dtype=np.float32)
        self._listed_diff = np.empty((n_int, m), dtype=np.float32)
        if m == 0:
            return
        for g0 in range(0, n_int, rows):  # blocks of intervals bound the temporaries
            g = np.arange(g0, min(g0 + rows, n_int))
            upper = np.maximum(self.values[g][:, bounded], self.values[g + 1][:, bounded])
            part = np.argpartition(-upper, m, axis=1)
            top = part[:, :m]
            best = np.take_along_axis(upper, top, axis=1)
            rank = np.argsort(-best, axis=1, kind="stable")
            cols = bounded[np.take_along_axis(top, rank, axis=1)]
            self.order[g] = cols
            lo = np.take_along_axis(self.values[g], cols, axis=1)
            self._listed_lo[g] = lo
            self._listed_diff[g] = np.take_along_axis(self.values[g + 1], cols, axis=1) - lo
            rest = np.take_along_axis(upper, part[:, m : m + 1], axis=1)[:, 0]
            # argpartition puts the (m+1)-th largest at position m: the largest left out
            self.ceiling[g] = rest.astype(float) * _ROUNDING

    def _exact(self, theta: FloatArray) -> FloatArray:
        return self.model.information(np.asarray(theta, dtype=float)[:, None])

    def covers(self, theta: FloatArray) -> bool:
        """Whether every value of ``theta`` lies on the table's range."""
        if theta.size == 1:  # a live step: no reductions
            return bool(self.lo <= theta.flat[0] <= self.hi)
        return bool(self.lo <= theta.min() and theta.max() <= self.hi)

    def position(self, theta: FloatArray) -> tuple[IntArray, NDArray[np.float32]]:
        """Interval index and fraction of each θ (as :meth:`interpolate` computes them)."""
        pos = (np.asarray(theta, dtype=float).reshape(-1) - self.lo) / self.step
        i = pos.astype(np.int64)
        np.minimum(i, len(self.theta) - 2, out=i)
        return i, (pos - i).astype(np.float32)

    def _position_one(self, theta: float) -> tuple[int, np.float32]:
        """:meth:`position` of one θ on the table's range, as numbers (the same values)."""
        pos = (theta - self.lo) / self.step
        i = min(int(pos), len(self.theta) - 2)
        return i, np.float32(pos - i)

    def shortlist(self, theta: FloatArray) -> tuple[IntArray, NDArray[np.float32], FloatArray]:
        """For each θ: its interval's shortlisted items ``(S, M)``, their interpolated
        information ``(S, M)`` (the same bits as :meth:`interpolate`), and the ceiling of
        every other bounded item ``(S,)``."""
        if theta.size == 1:  # a live step: one interval, rows as views, no gathers
            g, f = self._position_one(float(theta.flat[0]))
            out = self._listed_diff[g : g + 1] * f
            out += self._listed_lo[g : g + 1]
            return self.order[g : g + 1], out, self.ceiling[g : g + 1]
        i, frac = self.position(theta)
        out = self._listed_diff[i]
        out *= frac[:, None]
        out += self._listed_lo[i]
        return self.order[i], out, self.ceiling[i]

    def interpolate(self, theta: FloatArray) -> NDArray[np.float32]:
        """Interpolated information of every item at each θ, ``(len(theta), N)``."""
        i, frac = self.position(theta)
        if len(i) == 1:  # a live test: two rows as views, no gather
            out = np.subtract(self.values[i[0] + 1], self.values[i[0]])[None, :]
            lo = self.values[i[0]][None, :]
        else:  # many subjects: two gathers, the second one becomes the result
            lo = self.values[i]
            out = self.values[i + 1]
            out -= lo
        out *= frac[:, None]
        out += lo
        return out
