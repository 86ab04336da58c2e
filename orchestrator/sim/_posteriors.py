"""Many grid posteriors advanced together: :class:`~orchestrator.irt.Posterior` for S subjects.

The replay moves thousands of subjects one item per step; one Python
``Posterior`` per subject would spend the time in interpreter overhead. This
class keeps the S posteriors in ``(S, G)`` arrays and repeats exactly the
arithmetic of ``Posterior`` — same elementwise operations in the same order,
the same regrid rule (narrow to EAP ± 10 SD when SD < ratio × spacing, then
recompute the log-likelihood from the stored responses with
``log_category_probs``) — so each row matches the single-subject posterior;
``tests/test_replay.py`` checks that against ``CatController`` step by step.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.irt.posterior import DEFAULT_GRID, GridSpec, grid_summaries, make_grid

__all__ = ["PosteriorBatch"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_TINY = 1e-300


def _log_prob(theta: FloatArray, a: FloatArray, b_x: FloatArray, b_next: FloatArray) -> FloatArray:
    """log P(X = x | θ) from the thresholds b_x and b_{x+1} around category x (broadcast).

    The operations of :func:`orchestrator.irt.grm.log_category_probs` for one
    category, elementwise and in the same order, so results are bit-identical
    to what ``Posterior`` computes. The bounds P*_0 = 1 and P*_K = 0 come
    from thresholds −inf and +inf, for which ``expit`` gives exactly 1 and 0.
    """
    z_x = a * (theta - b_x)
    z_next = a * (theta - b_next)
    upper_next = expit(z_next)
    from_p = expit(z_x) - upper_next
    from_q = expit(-z_next) - expit(-z_x)
    prob = np.maximum(np.where(upper_next > 0.5, from_q, from_p), 0.0)
    return np.log(np.maximum(prob, _TINY))


class PosteriorBatch:
    """S grid posteriors with a common normal prior over one bank.

    Args:
        bank: The prepared bank (item parameters, information).
        n_subjects: S.
        max_steps: Most responses any row will receive.
        prior_mean, prior_sd, grid, regrid_ratio: As for ``Posterior``.
        track_information: Keep Σ information of administered items on each grid
            (for rules with ``needs_grid_information``).
    """

    def __init__(
        self,
        bank: PreparedBank,
        n_subjects: int,
        max_steps: int,
        *,
        prior_mean: float = 0.0,
        prior_sd: float = 1.0,
        grid: GridSpec = DEFAULT_GRID,
        regrid_ratio: float = 2.0,
        track_information: bool = True,
    ) -> None:
        self.bank = bank
        self.track_information = track_information
        self.prior_mean = prior_mean
        self.prior_sd = prior_sd
        self.grid = grid
        self.regrid_ratio = regrid_ratio
        base = make_grid(grid.lo, grid.hi, grid.n)
        self.points = np.tile(base, (n_subjects, 1))
        self.loglik = np.zeros((n_subjects, grid.n))
        self.admin_info = np.zeros((n_subjects, grid.n))
        self.items = np.full((n_subjects, max_steps), -1, dtype=np.int64)
        self.scores = np.full((n_subjects, max_steps), -1, dtype=np.int64)
        self.count = np.zeros(n_subjects, dtype=np.int64)
        b = bank.bank.b
        self._padded_b = np.concatenate(
            [np.full((len(b), 1), -np.inf), b, np.full((len(b), 1), np.inf)], axis=1
        )
        self.eap = np.empty(n_subjects)
        self.sd = np.empty(n_subjects)
        self._summarise(np.arange(n_subjects))

    def log_density(self, rows: IntArray) -> FloatArray:
        pts = self.points[rows]
        return self.loglik[rows] + -0.5 * ((pts - self.prior_mean) / self.prior_sd) ** 2

    def _summarise(self, rows: IntArray) -> None:
        self.eap[rows], self.sd[rows] = grid_summaries(self.points[rows], self.log_density(rows))

    def _bounds(self, items: IntArray, x: IntArray) -> tuple[FloatArray, FloatArray]:
        """Thresholds below and above category x of each item (−inf / +inf at the ends)."""
        b = self._padded_b[items]
        return (
            np.take_along_axis(b, x[..., None], axis=-1)[..., 0],
            np.take_along_axis(b, x[..., None] + 1, axis=-1)[..., 0],
        )

    def update(self, rows: IntArray, items: IntArray, scores: IntArray) -> None:
        """Row ``rows[i]`` observes ``scores[i]`` on bank item ``items[i]``."""
        b_x, b_next = self._bounds(items, scores)
        pts = self.points[rows]
        a = self.bank.a[items][:, None]
        self.loglik[rows] += _log_prob(pts, a, b_x[:, None], b_next[:, None])
        if self.track_information:
            self.admin_info[rows] += self.bank.information_paired(pts, items)
        step = self.count[rows]
        self.items[rows, step] = items
        self.scores[rows, step] = scores
        self.count[rows] += 1
        self._summarise(rows)
        if self.regrid_ratio > 0:
            spacing = self.points[rows, 1] - self.points[rows, 0]
            narrow = rows[self.sd[rows] < self.regrid_ratio * spacing]
            if narrow.size:
                self._regrid(narrow)

    def _regrid(self, rows: IntArray) -> None:
        """Narrow the grids of ``rows`` (all with the same number of responses)."""
        half = 10.0 * self.sd[rows]
        lo = np.maximum(self.grid.lo, self.eap[rows] - half)
        hi = np.minimum(self.grid.hi, self.eap[rows] + half)
        pts = np.linspace(lo, hi, self.grid.n, axis=1)
        n = int(self.count[rows[0]])
        items, x = self.items[rows, :n], self.scores[rows, :n]
        b_x, b_next = self._bounds(items, x)
        chunk = max(1, (1 << 22) // (self.grid.n * n))
        for c in range(0, len(rows), chunk):  # bound the (rows, G, n) temporaries
            sl = slice(c, c + chunk)
            # (rows, n, G) summed over n adds one response after another, the order
            # Posterior's sum over its (G, n) view uses: same bits, not just close.
            logp = _log_prob(
                pts[sl, None, :],
                self.bank.a[items[sl]][:, :, None],
                b_x[sl, :, None],
                b_next[sl, :, None],
            )
            self.loglik[rows[sl]] = logp.sum(axis=1)
            if self.track_information:
                self.admin_info[rows[sl]] = self.bank.information_rows(pts[sl], items[sl])
        self.points[rows] = pts
        self._summarise(rows)

    def state(self, rows: IntArray, eligible: NDArray[np.bool_]) -> CatState:
        """The :class:`CatState` of ``rows`` (``eligible`` already restricted to them)."""
        t = int(self.count[rows].max(initial=0))
        n = len(rows)
        return CatState(
            bank=self.bank,
            theta=self.eap[rows],
            se=self.sd[rows],
            points=self.points[rows],
            log_density=self.log_density(rows),
            eligible=eligible,
            administered=self.items[rows, :t],
            scores=self.scores[rows, :t],
            n_items=self.count[rows],
            spent_seconds=np.zeros(n),
            spent_tokens=np.zeros(n),
            prior_sd=self.prior_sd,
            admin_info=self.admin_info[rows] if self.track_information else None,
        )
