"""Person fit for adaptive tests: statistics over a test in order, and their simulated null.

Why not plain l_z. Drasgow's l_z standardises the log-likelihood of a response
pattern at θ̂ as if θ̂ were θ and the items were fixed in advance. Neither
holds in a CAT: θ̂ is fitted to the same responses (which pulls l_z towards
fit, Snijders 2001), and the items are chosen *from* the responses, near θ̂,
where every outcome is about as likely as the other, so a pattern has little
room to look improbable. Under CAT l_z is therefore far from N(0, 1) and a
fixed cut (−2) has an unknown false-alarm rate. Snijders' l_z* corrects the
first effect only. Here the null distribution is instead *simulated*:
well-fitting simulees at abilities θ_g on a grid take the same adaptive test
(same bank, selection rule and posterior), and a subject's statistic after
t items is referred to the simulees' statistics after t items at its θ̂
(interpolated between the two nearest θ_g) — a parametric bootstrap at θ̂
that includes both the estimation of θ and the adaptive choice of items.
Building that table needs the selection rules, so it lives in
:mod:`orchestrator.cat.fit`; this module only computes statistics and
looks p-values up.

The statistics (per subject, over its items in administration order, at the
θ̂ after the last of them), each oriented so that *small* means misfit:

* ``lz`` — l_z, the standardised log-likelihood (low: improbable responses
  anywhere, e.g. random answers or passing items far above θ̂);
* ``cusum_low`` — min over j ≥ 1 of Σ_{i ≤ j} z_i / √n with standardised
  residuals z = (x − E[X | θ̂]) / SD[X | θ̂]: a run of under-performance
  that the rest of the test contradicts (failing the first items on purpose);
* ``cusum_high`` — minus the max of the same partial sums: a run of
  over-performance (van Krimpen-Stoop & Meijer's CUSUM for CAT, on
  standardised residuals at the final θ̂);
* ``test_cue`` — minus |D|, D the standardised difference between the mean
  residual on items that look like a test (the bank tag ``looks_like_test``)
  and on the others: a model that behaves differently when it notices an
  evaluation (NaN unless both kinds were administered);
* ``surprise`` — the log of the smallest tail probability, min over items of
  min(P(X ≤ x | θ̂), P(X ≥ x | θ̂)): one score far from the level (a single
  item passed far above θ̂, the tell of a model failing the rest on purpose).

The reported p-value combines them: the smallest of their one-sided
p-values, itself referred to the null distribution of that smallest value
(computed from the same simulees), so the combination keeps its level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from orchestrator.irt.fit import observation_probs

__all__ = [
    "FIT_COMPONENTS",
    "FitNull",
    "FitStatistics",
    "fit_statistics",
    "score_tail_probs",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

FIT_COMPONENTS = ("lz", "cusum_low", "cusum_high", "test_cue", "surprise")
_TINY = 1e-300


@dataclass(frozen=True)
class FitStatistics:
    """Person-fit statistics of S tests, ``(S,)`` each (NaN where undefined).

    Attributes:
        lz: Standardised log-likelihood at θ̂.
        cusum_low: Lowest partial sum of standardised residuals, / √n.
        cusum_high: Minus the highest partial sum, / √n.
        test_cue: Minus |standardised residual difference, test-looking vs other items|.
        surprise: log of the smallest tail probability of any one score at θ̂.
        n_items: Items counted per test.
    """

    lz: FloatArray
    cusum_low: FloatArray
    cusum_high: FloatArray
    test_cue: FloatArray
    surprise: FloatArray
    n_items: IntArray

    def stacked(self) -> FloatArray:
        """The components in :data:`FIT_COMPONENTS` order, ``(C, S)``."""
        return np.stack([self.lz, self.cusum_low, self.cusum_high, self.test_cue, self.surprise])

    @classmethod
    def from_stacked(cls, values: FloatArray, n_items: IntArray) -> FitStatistics:
        """The inverse of :meth:`stacked`."""
        return cls(*values, n_items=np.asarray(n_items, dtype=np.int64))


def _observation_probs(
    a: FloatArray, b: FloatArray, items: IntArray, theta: FloatArray
) -> FloatArray:
    """P(X = k | θ̂_s) for every (test s, position), ``(S, T, K_max)``; padding rows are junk."""
    s, t = items.shape
    safe = np.maximum(items, 0).ravel()
    probs = observation_probs(np.repeat(np.asarray(theta, dtype=float), t), a[safe], b[safe])
    return probs.reshape(s, t, -1)


def fit_statistics(
    a: FloatArray,
    b: FloatArray,
    items: IntArray,
    scores: IntArray,
    theta: FloatArray,
    test_cue: BoolArray | None = None,
) -> FitStatistics:
    """Person-fit statistics of S tests at once.

    Args:
        a, b: Bank slopes ``(N,)`` and thresholds ``(N, K_max − 1)`` padded with +inf.
        items: Bank indices in administration order, ``(S, T)``, padded with −1.
        scores: Scores in the same layout.
        theta: θ̂ of each test after its last item, ``(S,)``.
        test_cue: ``(N,)`` which bank items look like a test (None: none do).
    """
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.int64)
    valid = items >= 0
    n = valid.sum(axis=1)
    p = _observation_probs(a, b, items, theta)
    logp = np.log(np.maximum(p, _TINY))
    plogp = np.where(p > 0, p * logp, 0.0)
    e_l = plogp.sum(axis=-1)
    v_l = np.where(p > 0, p * logp**2, 0.0).sum(axis=-1) - e_l**2
    x = np.where(valid, scores, 0)
    l_obs = np.take_along_axis(logp, x[..., None], axis=-1)[..., 0]
    big_l = np.where(valid, l_obs - e_l, 0.0).sum(axis=1)
    big_v = np.where(valid, v_l, 0.0).sum(axis=1)
    k = np.arange(p.shape[-1], dtype=float)
    mean = p @ k
    var = np.maximum(p @ k**2 - mean**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lz = np.where(big_v > 1e-12, big_l / np.sqrt(big_v), np.nan)
        z = np.where(valid & (var > 1e-12), (x - mean) / np.sqrt(var), 0.0)
        partial = np.cumsum(z, axis=1) / np.sqrt(np.maximum(n, 1))[:, None]
    low = np.where(valid, partial, np.inf).min(axis=1)
    high = np.where(valid, partial, -np.inf).max(axis=1)
    none = n == 0
    cue = np.full(len(n), np.nan)
    if test_cue is not None:
        flagged = valid & np.asarray(test_cue, dtype=bool)[np.maximum(items, 0)]
        other = valid & ~flagged
        n_c, n_o = flagged.sum(axis=1), other.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (
                np.where(flagged, z, 0.0).sum(axis=1) / n_c
                - np.where(other, z, 0.0).sum(axis=1) / n_o
            ) / np.sqrt(1.0 / n_c + 1.0 / n_o)
        cue = np.where((n_c > 0) & (n_o > 0), -np.abs(d), np.nan)
    at_most, at_least = _tails(p, x)
    tail = np.where(valid, np.minimum(at_most, at_least), 1.0)
    surprise = np.log(np.maximum(tail.min(axis=1), _TINY))
    return FitStatistics(
        lz=lz,
        cusum_low=np.where(none, np.nan, low),
        cusum_high=np.where(none, np.nan, -high),
        test_cue=cue,
        surprise=np.where(none, np.nan, surprise),
        n_items=n.astype(np.int64),
    )


def score_tail_probs(
    a: FloatArray, b: FloatArray, items: IntArray, scores: IntArray, theta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """How surprising each score is at θ̂: ``(P(X ≤ x), P(X ≥ x))``, each ``(S, T)``.

    A small first value is a score far *below* the test's level (an easy item
    failed), a small second value one far *above* it. NaN at padding.
    """
    items = np.asarray(items, dtype=np.int64)
    valid = items >= 0
    x = np.where(valid, np.asarray(scores, dtype=np.int64), 0)
    at_most, at_least = _tails(_observation_probs(a, b, items, theta), x)
    return np.where(valid, at_most, np.nan), np.where(valid, at_least, np.nan)


def _tails(p: FloatArray, x: IntArray) -> tuple[FloatArray, FloatArray]:
    """P(X ≤ x) and P(X ≥ x) from category probabilities ``p (..., K)`` and scores ``x (...)``."""
    cdf = np.cumsum(p, axis=-1)
    at_most = np.take_along_axis(cdf, x[..., None], axis=-1)[..., 0]
    below = np.take_along_axis(cdf, np.maximum(x - 1, 0)[..., None], axis=-1)[..., 0]
    at_least = np.where(x == 0, 1.0, 1.0 - below)
    return np.clip(at_most, 0.0, 1.0), np.clip(at_least, 0.0, 1.0)


def _interp_nodes(
    centres: FloatArray, t: IntArray, theta: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Bracketing nodes of each θ̂ among ``centres[t]`` and the upper one's weight (clamped)."""
    pos = np.empty(len(t))
    for step in np.unique(t):  # tests of one length share a row of centres
        at = t == step
        row = centres[step]
        pos[at] = np.interp(theta[at], row, np.arange(len(row), dtype=float))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, centres.shape[1] - 1)
    return lo, hi, pos - lo


@dataclass(frozen=True)
class FitNull:
    """The simulated null distribution of the person-fit statistics under one adaptive test.

    A subject's θ̂ after t items is placed among the nodes by the simulees'
    *mean θ̂* after t items (``centres``), not by the nodes' true θ: the
    posterior mean is shrunk towards the prior, so simulees of θ_g = 2 report
    θ̂ ≈ 1.6 after 20 items, and a subject reporting 1.6 is compared with them.
    (Comparing it with simulees of θ = 1.6 made p-values conservative.)

    Attributes:
        nodes: Abilities θ_g of the simulees, ``(G,)`` increasing.
        centres: Mean θ̂ of each node's simulees after t = 1..T items, ``(T, G)``.
        stats: Each component's simulated values after t = 1..T items,
            ``(C, T, G, R)``, sorted along R (NaN sorts last).
        min_p: The smallest component p-value of each simulee, ``(T, G, R)``, sorted.
        spec: What was simulated (bank fingerprint, rule, replicates, seed) — JSON.
    """

    nodes: FloatArray
    centres: FloatArray
    stats: FloatArray
    min_p: FloatArray
    spec: dict

    @property
    def max_items(self) -> int:
        """T: the longest test the table covers."""
        return int(self.stats.shape[1])

    @classmethod
    def from_simulation(
        cls, nodes: FloatArray, per_step: FloatArray, theta_hat: FloatArray, spec: dict
    ) -> FitNull:
        """Build the table from simulated statistics.

        Args:
            nodes: ``(G,)`` abilities.
            per_step: ``(C, T, G, R)`` statistics of R simulees per node after each step.
            theta_hat: ``(T, G, R)`` their θ̂ after each step.
            spec: Provenance.
        """
        stats = np.sort(per_step, axis=-1)
        # each simulee's own component p-values, against its node's null (itself included)
        p = np.empty_like(per_step)
        for c in range(per_step.shape[0]):  # C components
            for t in range(per_step.shape[1]):  # once per table, T ≤ a few hundred
                p[c, t] = _p_value(stats[c, t], per_step[c, t])
        p = np.where(np.isnan(per_step), np.inf, p)
        min_p = np.sort(np.min(p, axis=0), axis=-1)
        # strictly increasing centres (the mean θ̂ is monotone in θ up to noise)
        centres = np.maximum.accumulate(theta_hat.mean(axis=-1), axis=1)
        centres = centres + 1e-9 * np.arange(centres.shape[1])
        return cls(np.asarray(nodes, dtype=float), centres, stats, min_p, dict(spec))

    def p_values(self, stats: FitStatistics, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """One-sided p-value of each component and the combined p-value, at θ̂ and n.

        Args:
            stats: The subjects' statistics.
            theta: Their θ̂ (the estimate the statistics were computed at).

        Returns:
            ``(component_p (C, S), p (S,))``; NaN where a test has no items, more
            items than the table covers, or an undefined statistic.
        """
        values = stats.stacked()
        n = stats.n_items
        ok = (n >= 1) & (n <= self.max_items)
        t = np.clip(n - 1, 0, self.max_items - 1)
        lo, hi, w = _interp_nodes(self.centres, t, np.asarray(theta, dtype=float))
        comp = np.zeros(values.shape)
        combined = np.zeros(len(n))
        for g, weight in ((lo, 1.0 - w), (hi, w)):  # each node whole, then interpolated
            pc = _p_value(self.stats[..., t, g, :], values[..., None])[..., 0]
            pc = np.where(np.isnan(values), np.inf, pc)
            smallest = pc.min(axis=0)
            with np.errstate(invalid="ignore"):  # 0 · inf where a component is undefined
                comp += weight * pc
            combined += weight * _p_value(self.min_p[t, g, :], smallest[:, None])[:, 0]
        comp = np.where(np.isfinite(comp) & ok, comp, np.nan)
        defined = ok & np.isfinite(comp).any(axis=0)
        return comp, np.where(defined, np.minimum(combined, 1.0), np.nan)


def _p_value(null: FloatArray, values: FloatArray) -> FloatArray:
    """(#{v < x} + ½ #{v = x} + ½) / (R + 1): the mid-p of ``values`` against ``null`` rows.

    ``null (..., R)`` sorted along R (NaN last), ``values (..., M)`` → ``(..., M)``. R
    counts the defined (non-NaN) null values only. One formula for a subject and
    for the simulees themselves (a simulee is counted in its own row, an O(1/R)
    bias), so equal statistics get equal p. Mid-ranks, so tied discrete
    statistics still give p-values that average ½; "equal" allows 1e-9
    relative, because one pattern's statistic computed in two places (a live
    test and its simulated twin) may differ in the last bits.
    """
    lead = np.broadcast_shapes(null.shape[:-1], values.shape[:-1])
    rows = np.broadcast_to(null, (*lead, null.shape[-1])).reshape(-1, null.shape[-1])
    vals = np.broadcast_to(values, (*lead, values.shape[-1])).reshape(-1, values.shape[-1])
    out = np.empty(vals.shape)
    tol = 1e-9 * np.maximum(1.0, np.abs(vals))
    for r in range(rows.shape[0]):  # one searchsorted per null row: O(M log R)
        below = np.searchsorted(rows[r], vals[r] - tol[r], side="left")
        upto = np.searchsorted(rows[r], vals[r] + tol[r], side="right")
        defined = rows.shape[1] - np.isnan(rows[r]).sum()
        out[r] = (below + 0.5 * (upto - below) + 0.5) / (defined + 1.0)
    return out.reshape(*lead, values.shape[-1])


def fixed_items_p_values(
    a: FloatArray,
    b: FloatArray,
    items: IntArray,
    scores: IntArray,
    *,
    replicates: int,
    rng: np.random.Generator,
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
    grid: FloatArray | None = None,
    test_cue: BoolArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Person-fit p-values of tests whose items were fixed in advance (not adaptive).

    The same statistics and the same combination as under CAT, with each
    subject's null simulated on *its own* items: R response patterns drawn at
    its θ̂ (EAP), θ re-estimated from each (same prior and grid), statistics
    recomputed — a parametric bootstrap that accounts for θ̂ being fitted to
    the responses (what makes plain l_z conservative). There is no
    administration order in a response matrix, so the CUSUMs are left out.

    Args:
        a, b: Bank parameters.
        items, scores: ``(S, T)`` padded with −1 (any order).
        replicates: R patterns per subject.
        rng: Random source.
        prior_mean, prior_sd: The θ prior of the estimates.
        grid: EAP grid (default 121 points on [−6, 6]).
        test_cue: Items that look like a test (None: none).

    Returns:
        ``(component_p (C, S), p (S,))`` like :meth:`FitNull.p_values`.
    """
    from orchestrator.irt.ability import estimate_abilities

    items = np.asarray(items, dtype=np.int64)
    s, t = items.shape
    valid = items >= 0
    pts = np.linspace(-6.0, 6.0, 121) if grid is None else grid

    def eap(items: IntArray, scores: IntArray) -> FloatArray:
        sub, pos = np.nonzero(items >= 0)
        return estimate_abilities(
            a, b, sub, items[sub, pos], scores[sub, pos], items.shape[0],
            prior_mean=prior_mean, prior_sd=prior_sd, grid=pts,
        ).theta  # fmt: skip

    theta = eap(items, np.asarray(scores, dtype=np.int64))
    observed = fit_statistics(a, b, items, scores, theta, test_cue).stacked()
    order = [FIT_COMPONENTS.index(c) for c in ("lz", "test_cue", "surprise")]
    comp = np.full((len(FIT_COMPONENTS), s), np.nan)
    combined = np.full(s, np.nan)
    chunk = max(1, 2_000_000 // max(1, replicates * t))  # bound the (chunk·R, T) arrays
    for lo in range(0, s, chunk):
        rows = np.arange(lo, min(s, lo + chunk))
        rep_items = np.repeat(items[rows], replicates, axis=0)  # (n·R, T)
        rep_theta = np.repeat(np.asarray(theta, dtype=float)[rows], replicates)
        ok = rep_items >= 0
        safe = np.maximum(rep_items, 0)
        probs = observation_probs(np.repeat(rep_theta, t), a[safe.ravel()], b[safe.ravel()])
        upper = 1.0 - np.cumsum(probs, axis=-1)[:, :-1]
        u = rng.random(rep_items.size)
        rep_scores = np.where(ok, (u[:, None] < upper).sum(axis=-1).reshape(ok.shape), -1)
        null = fit_statistics(
            a, b, rep_items, rep_scores, eap(rep_items, rep_scores), test_cue
        ).stacked()
        null = null[order].reshape(len(order), len(rows), replicates)  # (C', n, R)
        table = np.sort(null, axis=-1)
        obs = observed[order][:, rows]
        p_obs = _p_value(table, obs[..., None])[..., 0]
        p_obs = np.where(np.isnan(obs), np.nan, p_obs)
        p_null = _p_value(table, null)  # each replicate among its own subject's
        p_null = np.where(np.isnan(null), np.inf, p_null)
        with np.errstate(all="ignore"):
            smallest = np.nanmin(np.where(np.isnan(p_obs), np.inf, p_obs), axis=0)
        min_null = p_null.min(axis=0)  # (n, R)
        comb = _p_value(np.sort(min_null, axis=-1), smallest[:, None])[:, 0]
        comp[np.asarray(order)[:, None], rows[None, :]] = p_obs
        combined[rows] = np.where(np.isfinite(smallest) & valid[rows].any(axis=1), comb, np.nan)
    return comp, combined
