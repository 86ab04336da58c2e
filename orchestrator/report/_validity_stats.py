"""Statistics of cross-benchmark validity: pure numpy, no I/O.

Measurement error attenuates a correlation: if θ̂ = θ + e with e independent
of θ, corr(θ̂_A, θ̂_B) = corr(θ_A, θ_B) · √(rel_A · rel_B). Dividing by the
square root of the reliabilities (Spearman's correction) estimates the
correlation of the latent abilities themselves.

Reliability here is the *empirical* reliability of EAP estimates,

    rel = var(θ̂) / (var(θ̂) + mean SE²),

computed over the same models as the correlation. Why this form: for the EAP
with a correctly specified prior, Var(θ) = Var(E[θ|x]) + E[Var(θ|x)] exactly
(the law of total variance), so the ratio is var(θ̂)/Var(θ) = corr(θ̂, θ)²,
the quantity the correction needs; in the linear-Gaussian case the
correction is then exact for EAPs as well (the shrinkage is a common
rescaling, which a correlation ignores). The "marginal" form
1 − mean SE² / prior variance assumes the models at hand have the prior's
spread, which a subset of shared models rarely has. The ratio is estimated
on the shared models because reliability depends on the population: a
subset with a narrower spread of ability is measured less reliably.
``tests/test_validity_stats.py`` checks bias and CI coverage on simulated
data with a known correlation.

Every function here works on the last axis, so a ``(B, n)`` array of
bootstrap resamples is handled in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

__all__ = [
    "Interval",
    "PairStats",
    "Regression",
    "bootstrap_indices",
    "collateral_priors",
    "disattenuate",
    "empirical_reliability",
    "fit_regression",
    "pair_statistics",
    "pearson",
    "spearman",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_CHUNK = 1 << 20  # resampled values handled at once


def empirical_reliability(estimate: FloatArray, error_sd: FloatArray) -> FloatArray:
    """var(estimate) / (var(estimate) + mean error variance) along the last axis."""
    v = np.var(estimate, axis=-1, ddof=1)
    e = np.mean(np.square(error_sd), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(v / (v + e))


def pearson(x: FloatArray, y: FloatArray) -> FloatArray:
    """Pearson correlation along the last axis (NaN where either side is constant)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / denom
    return np.asarray(np.where(denom > 1e-12, r, np.nan))


def spearman(x: FloatArray, y: FloatArray) -> FloatArray:
    """Spearman rank correlation (average ranks for ties) along the last axis."""
    return pearson(rankdata(x, axis=-1), rankdata(y, axis=-1))


def disattenuate(r: FloatArray, rel_x: FloatArray, rel_y: FloatArray) -> FloatArray:
    """Spearman's correction r / √(rel_x · rel_y); not clipped to [−1, 1] (see the report)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(r / np.sqrt(rel_x * rel_y))


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> IntArray:
    """``(n_boot, n)`` indices: resamples of n models with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval.

    ``n_valid`` counts resamples where the statistic was defined (a resample
    that repeats one model is constant and has no correlation).
    """

    estimate: float | None
    lo: float | None
    hi: float | None
    n_valid: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "estimate": self.estimate,
            "lo": self.lo,
            "hi": self.hi,
            "n_boot_valid": self.n_valid,
        }


def _interval(point: float, boot: FloatArray, level: float) -> Interval:
    ok = boot[np.isfinite(boot)]
    est = float(point) if np.isfinite(point) else None
    if ok.size < 2:
        return Interval(est, None, None, int(ok.size))
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(ok, [tail, 100.0 - tail])
    return Interval(est, float(lo), float(hi), int(ok.size))


@dataclass(frozen=True)
class PairStats:
    """Correlations of two measures over the same models, with bootstrap intervals."""

    n: int
    pearson: Interval
    spearman: Interval
    reliability_a: Interval
    reliability_b: Interval
    disattenuated: Interval

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "pearson": self.pearson.to_dict(),
            "spearman": self.spearman.to_dict(),
            "reliability_a": self.reliability_a.to_dict(),
            "reliability_b": self.reliability_b.to_dict(),
            "disattenuated": self.disattenuated.to_dict(),
        }


def pair_statistics(
    x: FloatArray,
    err_x: FloatArray,
    y: FloatArray,
    err_y: FloatArray,
    resamples: IntArray,
    level: float = 0.95,
) -> PairStats:
    """Pearson, Spearman, both reliabilities and the disattenuated r of paired measures.

    Args:
        x, y: The two measures, one value per model, ``(n,)``.
        err_x, err_y: Their standard errors, ``(n,)``.
        resamples: ``(B, n)`` bootstrap indices (:func:`bootstrap_indices`);
            every statistic, the reliabilities included, is recomputed on each
            resample, so the intervals carry the uncertainty of the correction.
        level: Coverage of the percentile intervals.
    """

    def stats(ix: IntArray | slice) -> tuple[FloatArray, ...]:
        xs, ys, ex, ey = x[ix], y[ix], err_x[ix], err_y[ix]
        r = pearson(xs, ys)
        rel_x = empirical_reliability(xs, ex)
        rel_y = empirical_reliability(ys, ey)
        return r, spearman(xs, ys), rel_x, rel_y, disattenuate(r, rel_x, rel_y)

    point = stats(slice(None))
    rows = max(1, _CHUNK // max(1, len(x)))  # bound the (rows, n) temporaries
    parts = [stats(resamples[c : c + rows]) for c in range(0, len(resamples), rows)]
    boot = [np.concatenate(col) for col in zip(*parts, strict=True)] if parts else [np.empty(0)] * 5
    cis = [_interval(float(p), b, level) for p, b in zip(point, boot, strict=True)]
    return PairStats(len(x), *cis)


@dataclass(frozen=True)
class Regression:
    """Least-squares line y ≈ intercept + slope·x with leave-one-out errors."""

    n: int
    slope: float
    intercept: float
    residual_sd: float
    rmse_loo: float
    rmse_loo_mean_only: float
    r2_loo: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "slope": self.slope,
            "intercept": self.intercept,
            "residual_sd": self.residual_sd,
            "rmse_loo": self.rmse_loo,
            "rmse_loo_mean_only": self.rmse_loo_mean_only,
            "r2_loo": self.r2_loo,
        }


def fit_regression(x: FloatArray, y: FloatArray) -> Regression:
    """Fit y on x; leave-one-model-out errors in closed form, e / (1 − h_ii).

    ``rmse_loo_mean_only`` is the baseline that ignores x (predict each model
    by the mean of the others); ``r2_loo`` = 1 − (rmse_loo / baseline)².
    Needs n ≥ 3 and x not constant.
    """
    n = len(x)
    if n < 3:
        raise ValueError(f"a regression needs at least 3 models; got {n}")
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        raise ValueError("x is constant: no regression")
    slope = float(xc @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    resid = y - (intercept + slope * x)
    leverage = 1.0 / n + xc**2 / sxx
    loo = resid / (1.0 - leverage)
    mean_only = (y - y.mean()) * n / (n - 1)
    rmse_loo = float(np.sqrt(np.mean(loo**2)))
    base = float(np.sqrt(np.mean(mean_only**2)))
    return Regression(
        n=n,
        slope=slope,
        intercept=intercept,
        residual_sd=float(np.sqrt(resid @ resid / (n - 2))) if n > 2 else float("nan"),
        rmse_loo=rmse_loo,
        rmse_loo_mean_only=base,
        r2_loo=1.0 - (rmse_loo / base) ** 2 if base > 0 else float("nan"),
    )


def collateral_priors(
    theta_a: FloatArray,
    theta_b: FloatArray,
    se_b: FloatArray,
    folds: IntArray,
    max_explained: float = 0.99,
) -> tuple[FloatArray, FloatArray]:
    """A normal prior for each model's *true* θ on B from its θ̂ on A, cross-fitted.

    Model i's prior comes from the models outside its fold, so no model's own
    B responses shape its prior. With the EAPs' shrinkage undone (the
    regression of θ̂_B on θ̂_A is the regression of θ_B on θ̂_A times rel_B):

        Var(θ_B) = var(θ̂_B) + mean SE_B²,   rel_B = var(θ̂_B) / Var(θ_B)
        slope    = cov(θ̂_A, θ̂_B) / (var(θ̂_A) · rel_B)
        mean_i   = mean(θ̂_B) + slope · (θ̂_A,i − mean(θ̂_A))
        sd²      = Var(θ_B) · (1 − min(r² / rel_B, max_explained))

    where r = corr(θ̂_A, θ̂_B) and r² / rel_B is the share of Var(θ_B) that θ̂_A
    explains (capped so a noisy fold never claims certainty).

    Args:
        theta_a, theta_b, se_b: ``(n,)`` per model.
        folds: Fold number of each model, ``(n,)``; every fold needs at least 3
            models outside it.

    Returns:
        ``(means, sds)``, each ``(n,)``.
    """
    means = np.empty(len(theta_a))
    sds = np.empty(len(theta_a))
    for f in np.unique(folds):  # a handful of folds, each vectorised
        test = folds == f
        xa, xb, sb = theta_a[~test], theta_b[~test], se_b[~test]
        if len(xa) < 3:
            raise ValueError(f"fold {f} leaves {len(xa)} models to fit on; need at least 3")
        var_b = np.var(xb, ddof=1)
        total = var_b + np.mean(sb**2)
        rel_b = var_b / total
        var_a = np.var(xa, ddof=1)
        cov = np.cov(xa, xb, ddof=1)[0, 1]
        slope = cov / (var_a * rel_b) if var_a > 0 else 0.0
        explained = min(cov**2 / (var_a * var_b) / rel_b, max_explained) if var_a > 0 else 0.0
        means[test] = xb.mean() + slope * (theta_a[test] - xa.mean())
        sds[test] = np.sqrt(total * (1.0 - explained))
    return means, sds
