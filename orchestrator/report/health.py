"""Psychometric health of an item bank on a response matrix: analysis → JSON-ready report.

:func:`analyse_health` runs every diagnostic in :mod:`orchestrator.irt.fit`
and turns the arrays into a :class:`HealthReport` (pydantic, versioned with
``schema_version``) whose sections each carry the thresholds used, what was
flagged, and plain-language findings. The report is the JSON twin of the
HTML page; the arrays the plots need beyond it (the Q3 matrix, per-observation
scores) ride along as private attributes and are not serialised.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from scipy import stats

from orchestrator import __version__
from orchestrator.bank import ItemBank
from orchestrator.data import Responses
from orchestrator.errors import DataError
from orchestrator.irt import fit
from orchestrator.irt.ability import estimate_abilities

__all__ = [
    "HEALTH_SCHEMA_VERSION",
    "ClusterRow",
    "DiscriminationSection",
    "HealthArrays",
    "HealthReport",
    "HealthThresholds",
    "InformationSection",
    "Interval",
    "ItemFitSection",
    "ItemRow",
    "LocalDependenceSection",
    "PairRow",
    "PersonFitSection",
    "SubjectRow",
    "TagDependenceRow",
    "analyse_health",
]

HEALTH_SCHEMA_VERSION = 1
Progress = Callable[[str], None]
FloatArray = NDArray[np.float64]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HealthThresholds(_Model):
    """Every cut the report uses (all overridable; the defaults are the documented ones)."""

    se_target: float = Field(0.3, gt=0)
    """SE the bank should be able to reach; information target = 1 / se_target²."""
    top_m: int = Field(20, ge=1)
    """Length of the adaptive test whose best-case information is also shown."""
    min_slope: float = Field(0.5, gt=0)
    """Items with a below this are 'low discrimination' (logistic metric, no 1.702)."""
    min_category_prob: float = Field(0.1, gt=0, lt=1)
    """A middle category whose peak probability stays below this is 'nearly merged'
    (not repeated for items already flagged for a low slope, whose categories are all flat)."""
    min_item_rest: float = Field(0.1, gt=-1, lt=1)
    """An item is 'defective' when its item–rest r is significantly below this (BH FDR
    ``alpha`` over items), 'suspect' when r < 0 without that evidence."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Error rate of every flag: Benjamini–Hochberg FDR for items, family-wise for Q3 pairs."""
    ms_low: float = Field(0.7, gt=0)
    ms_high: float = Field(1.3, gt=0)
    """Infit/outfit outside [ms_low, ms_high] *and* significant flags misfit."""
    q3_excess: float = Field(0.2, gt=0)
    """Flag pairs with Q3 − mean(Q3) above this (and significant)."""
    q3_min_common: int = Field(10, ge=4)
    """Pairs with fewer common subjects are not tested."""
    q3_bootstrap: int = Field(50, ge=0)
    """Simulated data sets for the Q3 critical value (0: only the excess rule)."""
    seed: int = 0
    """Seed of the Q3 simulation and the tag permutation tests (reports are reproducible)."""
    lz_cut: float = -2.0
    """Subjects with l_z below this are flagged."""
    lz_min_items: int = Field(10, ge=1)
    """Subjects with fewer observed items get no l_z flag (too little evidence)."""
    sx2_min_subjects: int = Field(100, ge=2)
    """S-X² needs this many complete-case subjects; below it the test is skipped."""
    sx2_min_expected: float = Field(1.0, gt=0)


class Interval(_Model):
    """A θ range and the share of subjects (θ̂) inside it."""

    lo: float
    hi: float
    share_subjects: float
    n_subjects: int


class InformationSection(_Model):
    target_information: float
    se_target: float
    top_m: int
    theta: list[float]
    total_information: list[float]
    top_m_information: list[float]
    well_measured: list[Interval]
    """Where the whole bank reaches the target (SE ≤ se_target)."""
    gaps: list[Interval]
    """Where it does not; ``saturation_top``/``floor_bottom`` are the gaps at the ends."""
    top_m_well_measured: list[Interval]
    saturation_top: float | None
    """θ above which information stays below target (None: no gap at the top of the range)."""
    share_above_saturation: float | None
    floor_bottom: float | None
    share_below_floor: float | None
    peak_theta: float
    peak_information: float
    theta_quantiles: dict[str, float]
    findings: list[str]


class DiscriminationSection(_Model):
    min_slope: float
    min_category_prob: float
    min_item_rest: float
    low_slope: list[str]
    merged_thresholds: list[str]
    defective: list[str]
    """Items whose item–rest r is confidently below ``min_item_rest``."""
    suspect: list[str]
    """Items whose item–rest r is below ``min_item_rest`` at uncorrected level ``alpha``
    but not after correcting for the number of items (inspect them)."""
    constant: list[str]
    """Items every subject gave the same score: no information about these subjects."""
    merged_category_counts: dict[str, int]
    """For the merged-threshold items: how often each middle category is the one that vanishes."""
    findings: list[str]


class ItemFitSection(_Model):
    statistics: dict[str, str]
    """Name → what it is and its assumptions."""
    sx2_status: str
    """``computed`` or why it was skipped."""
    n_complete_subjects: int
    sx2_params_estimated: bool
    """Whether df were reduced by the item parameters (bank calibrated on these very data)."""
    misfit: list[str]
    share_p_below_05: dict[str, float | None]
    """Fraction of items with p < 0.05 per statistic (≈ 0.05 when the model fits)."""
    findings: list[str]


class PairRow(_Model):
    item_a: str
    item_b: str
    q3: float
    q3_adjusted: float
    n_common: int
    p_adjusted: float | None
    """Family-wise p from the simulated null (None when not simulated)."""


class TagDependenceRow(_Model):
    """Residual correlation within vs between the groups of one item tag."""

    tag: str
    n_items: int
    groups: dict[str, float | None]
    """Mean Q3 among the items of each tag value."""
    within: float
    between: float
    p_value: float


class ClusterRow(_Model):
    items: list[str]
    mean_q3_adjusted: float | None


class LocalDependenceSection(_Model):
    mean_q3: float | None
    excess: float
    threshold: float | None
    """Q3 − mean a pair had to exceed: ``excess`` or the simulated critical value if larger."""
    n_bootstrap: int
    alpha: float
    min_common: int
    n_pairs_tested: int
    flagged_pairs: list[PairRow]
    clusters: list[ClusterRow]
    tag_dependence: list[TagDependenceRow]
    findings: list[str]


class PersonFitSection(_Model):
    statistic: str
    cut: float
    min_items: int
    n_evaluated: int
    flagged: list[str]
    share_flagged: float | None
    nominal_share: float
    findings: list[str]


class ItemRow(_Model):
    id: str
    n_categories: int
    a: float
    b: list[float]
    tags: dict[str, str]
    n_obs: int
    category_counts: list[int]
    mean_score: float | None
    max_information: float
    theta_at_max_information: float
    min_category_max_prob: float | None
    item_rest_r: float | None
    item_rest_p: float | None
    """One-sided p of H0: ρ ≥ min_item_rest (small: discriminates less than that)."""
    infit: float | None
    infit_t: float | None
    infit_p: float | None
    outfit: float | None
    outfit_t: float | None
    outfit_p: float | None
    sx2: float | None
    sx2_df: int | None
    sx2_p: float | None
    flags: list[str]


class SubjectRow(_Model):
    subject: str
    theta: float
    se: float
    n_items: int
    lz: float | None
    flagged: bool


class HealthReport(_Model):
    """The psychometric health of one bank on one response matrix (JSON twin of the HTML)."""

    schema_version: Literal[1] = HEALTH_SCHEMA_VERSION
    generated_at: str
    software: str
    bank: dict[str, Any]
    data: dict[str, Any]
    thresholds: HealthThresholds
    summary: list[str]
    information: InformationSection
    discrimination: DiscriminationSection
    item_fit: ItemFitSection
    local_dependence: LocalDependenceSection
    person_fit: PersonFitSection
    items: list[ItemRow]
    subjects: list[SubjectRow]
    _arrays: HealthArrays | None = PrivateAttr(default=None)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def arrays(self) -> HealthArrays | None:
        """Arrays for plots (None for a report read back from JSON)."""
        return self._arrays


@dataclass(frozen=True)
class HealthArrays:
    """What the plots need beyond the JSON: the Q3 matrix and per-observation values."""

    q3: FloatArray
    obs_item: NDArray[np.int64]
    obs_score: NDArray[np.int64]
    obs_theta_rest: FloatArray


# --------------------------------------------------------------------------- helpers
def _f(x: Any, digits: int = 5) -> float | None:
    """JSON-safe float rounded to ``digits`` significant digits (NaN/inf → None)."""
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _fx(x: Any, digits: int = 5) -> float:
    v = _f(x, digits)
    if v is None:
        raise ValueError(f"expected a finite number, got {x!r}")
    return v


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _ids(ids: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _interval(lo: float, hi: float, theta_hat: FloatArray) -> Interval:
    inside = (theta_hat >= lo) & (theta_hat <= hi)
    return Interval(
        lo=_fx(lo, 4),
        hi=_fx(hi, 4),
        share_subjects=_fx(inside.mean() if theta_hat.size else 0.0, 4),
        n_subjects=int(inside.sum()),
    )


def _complement(
    intervals: list[tuple[float, float]], lo: float, hi: float
) -> list[tuple[float, float]]:
    out, cur = [], lo
    for a, b in intervals:
        if a > cur:
            out.append((cur, a))
        cur = max(cur, b)
    if cur < hi:
        out.append((cur, hi))
    return out


def _fmt_iv(ivs: Sequence[Interval], lo: float | None = None, hi: float | None = None) -> str:
    """``[a, b]``; an end that is the end of the examined θ range is marked as open."""

    def end(v: float, edge: float | None, sign: str) -> str:
        return f"{v:.2f}" + (
            f" ({sign}the examined range)" if edge is not None and v == edge else ""
        )

    return ", ".join(f"[{end(iv.lo, lo, 'start of ')}, {end(iv.hi, hi, 'end of ')}]" for iv in ivs)


# --------------------------------------------------------------------------- analysis
def analyse_health(
    bank: ItemBank,
    responses: Responses,
    *,
    thresholds: HealthThresholds | None = None,
    responses_sha256: str | None = None,
    progress: Progress | None = None,
) -> HealthReport:
    """Run every health diagnostic of ``bank`` on ``responses``.

    Args:
        bank: The item bank (parameters used as given).
        responses: Observed scores; every item must be in the bank.
        thresholds: Cuts and settings; defaults documented on :class:`HealthThresholds`.
        responses_sha256: Hash of the response file; when it equals the bank's
            ``calibration.data_sha256`` the parameters were estimated from
            these data and S-X² degrees of freedom are reduced accordingly.
        progress: Called with short status lines during the slow parts.

    Raises:
        DataError: items missing from the bank, scores outside an item's
            scale, or fewer than 2 subjects.
    """
    th = thresholds or HealthThresholds()
    say = progress or (lambda _msg: None)
    aligned = responses.for_bank(bank)
    n_sub = len(responses.subjects)
    if n_sub < 2:
        raise DataError(
            f"{responses.source}: health needs responses from at least 2 subjects; got {n_sub}",
            hint="pass the response matrix the bank was calibrated on",
        )
    a, b, kcat = bank.a, bank.b, bank.n_categories
    n_items = len(bank)
    s_idx, i_idx, x = aligned.subject_idx, aligned.bank_item, aligned.score
    prior = bank.spec.prior

    say(f"abilities: {n_sub} subjects, {responses.n_obs} observations")
    est = estimate_abilities(a, b, s_idx, i_idx, x, n_sub, prior_mean=prior.mean, prior_sd=prior.sd)
    theta_hat = est.theta

    # --- per-item basics
    k_max = b.shape[1] + 1
    n_obs = np.bincount(i_idx, minlength=n_items)
    counts = np.bincount(i_idx * k_max + x, minlength=n_items * k_max).reshape(n_items, k_max)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(i_idx, weights=x, minlength=n_items) / n_obs

    # --- information
    say("test information")
    lo = min(-4.0, math.floor(float(theta_hat.min()) - 0.5))
    hi = max(4.0, math.ceil(float(theta_hat.max()) + 0.5))
    grid = np.round(np.arange(lo, hi + 1e-9, 0.05), 10)
    item_info, total, top = fit.information_curve(grid, a, b, top_m=th.top_m)
    info_section = _information_section(grid, total, top, theta_hat, th)
    imax = item_info.argmax(axis=0)

    # --- discrimination / thresholds / item–rest
    say("discrimination and item–rest correlations")
    cat_max = fit.category_max_prob(a, b)
    finite = np.isfinite(cat_max)
    min_cat = (
        np.where(finite.any(axis=1), np.where(finite, cat_max, np.inf).min(axis=1), np.nan)
        if cat_max.shape[1]
        else np.full(n_items, np.nan)
    )
    theta_rest = fit.rest_abilities(
        a, b, s_idx, i_idx, x, n_sub, prior_mean=prior.mean, prior_sd=prior.sd
    )
    r_rest, r_p, _ = fit.item_rest_correlation(
        i_idx, x, theta_rest, n_items, reference=th.min_item_rest
    )

    # --- item fit
    say("item fit: infit/outfit")
    ms = fit.mean_squares(a, b, s_idx, i_idx, x, theta_hat)
    observed_items = np.flatnonzero(n_obs > 0)
    complete_subj, xc = fit.complete_case_matrix(s_idx, i_idx, x, n_sub, observed_items)
    params_estimated = bool(
        responses_sha256 is not None
        and bank.spec.calibration.status == "calibrated"
        and bank.spec.calibration.data_sha256 == responses_sha256
    )
    sx2_stat = np.full(n_items, np.nan)
    sx2_df = np.full(n_items, -1, dtype=np.int64)
    sx2_p = np.full(n_items, np.nan)
    if complete_subj.size >= th.sx2_min_subjects and observed_items.size >= 3:
        say(
            f"item fit: S-X² on {complete_subj.size} complete subjects × "
            f"{observed_items.size} items"
        )
        res = fit.summed_score_fit(
            xc,
            a[observed_items],
            b[observed_items],
            kcat[observed_items],
            prior_mean=prior.mean,
            prior_sd=prior.sd,
            min_expected=th.sx2_min_expected,
            params_estimated=params_estimated,
            progress=say,
        )
        sx2_stat[observed_items], sx2_df[observed_items], sx2_p[observed_items] = (
            res.stat,
            res.df,
            res.p,
        )
        sx2_status = "computed"
    elif observed_items.size < 3:
        sx2_status = "skipped: fewer than 3 observed items"
    else:
        sx2_status = (
            f"skipped: {complete_subj.size} subjects answered all {observed_items.size} observed "
            f"items; S-X² needs complete data and at least {th.sx2_min_subjects} such subjects"
        )
    sx2_q = fit.benjamini_hochberg(sx2_p)
    in_q = fit.benjamini_hochberg(ms.infit_p)
    out_q = fit.benjamini_hochberg(ms.outfit_p)
    outside = lambda v: (v < th.ms_low) | (v > th.ms_high)  # noqa: E731
    with np.errstate(invalid="ignore"):
        ms_misfit = ((in_q < th.alpha) & outside(ms.infit)) | (
            (out_q < th.alpha) & outside(ms.outfit)
        )
        misfit = ms_misfit | (sx2_q < th.alpha)

    # --- Q3
    say(f"local dependence: Q3 over {observed_items.size} items")
    q3 = fit.residual_correlations(a, b, s_idx, i_idx, x, theta_hat, n_sub, progress=say)
    rng = np.random.default_rng(th.seed)
    null_max = None
    if th.q3_bootstrap > 0:
        say(f"Q3 null: simulating {th.q3_bootstrap} data sets from the model")
        null_max = fit.q3_null_max(
            a, b, s_idx, i_idx, theta_hat, n_sub,
            n_boot=th.q3_bootstrap, min_common=th.q3_min_common,
            prior_mean=prior.mean, prior_sd=prior.sd, rng=rng, progress=say,
        )  # fmt: skip
    qf = fit.flag_q3(
        q3, excess=th.q3_excess, min_common=th.q3_min_common, null_max=null_max, alpha=th.alpha
    )
    tag_rows = _tag_dependence(bank, q3.q3, rng)

    # --- person fit
    say("person fit: l_z")
    lz, n_per = fit.person_fit_lz(a, b, s_idx, i_idx, x, theta_hat, n_sub)
    lz_ok = np.isfinite(lz) & (n_per >= th.lz_min_items)
    lz_flag = lz_ok & (lz < th.lz_cut)

    # --- flags per item
    with np.errstate(invalid="ignore"):
        low_slope = a < th.min_slope
        # a flat (low-a) item's middle categories never peak either; that is its slope's fault
        merged = (min_cat < th.min_category_prob) & ~low_slope
        defective = fit.benjamini_hochberg(r_p) < th.alpha
        suspect = (r_p < th.alpha) & ~defective
    constant = (n_obs > 0) & ((counts > 0).sum(axis=1) == 1)
    merged_cat = (  # which middle category vanishes (1-based category number)
        np.argmin(np.where(finite, cat_max, np.inf), axis=1) + 1
        if cat_max.shape[1]
        else np.zeros(n_items, dtype=np.int64)
    )
    in_pair = np.zeros(n_items, dtype=bool)
    in_pair[qf.pairs.ravel()] = True
    ids = bank.ids

    def names(mask: NDArray[np.bool_]) -> list[str]:
        return [ids[i] for i in np.flatnonzero(mask)]

    flag_table = {
        "low_slope": low_slope,
        "merged_thresholds": merged,
        "defective": defective,
        "suspect": suspect,
        "constant": constant,
        "misfit": misfit,
        "local_dependence": in_pair,
    }
    items = []
    for i in range(n_items):  # building output rows (I/O edge), not numeric work
        k = int(kcat[i])
        items.append(
            ItemRow(
                id=ids[i],
                n_categories=k,
                a=_fx(a[i]),
                b=[_fx(v) for v in b[i, : k - 1]],
                tags=dict(bank.spec.items[i].tags),
                n_obs=int(n_obs[i]),
                category_counts=[int(c) for c in counts[i, :k]],
                mean_score=_f(mean_score[i]),
                max_information=_fx(item_info[imax[i], i]),
                theta_at_max_information=_fx(grid[imax[i]], 4),
                min_category_max_prob=_f(min_cat[i]),
                item_rest_r=_f(r_rest[i]),
                item_rest_p=_f(r_p[i]),
                infit=_f(ms.infit[i]),
                infit_t=_f(ms.infit_t[i]),
                infit_p=_f(ms.infit_p[i]),
                outfit=_f(ms.outfit[i]),
                outfit_t=_f(ms.outfit_t[i]),
                outfit_p=_f(ms.outfit_p[i]),
                sx2=_f(sx2_stat[i]),
                sx2_df=int(sx2_df[i]) if sx2_df[i] >= 0 and np.isfinite(sx2_stat[i]) else None,
                sx2_p=_f(sx2_p[i]),
                flags=[name for name, m in flag_table.items() if bool(m[i])],
            )
        )
    subjects = [
        SubjectRow(
            subject=s,
            theta=_fx(theta_hat[j], 4),
            se=_fx(est.se[j], 4),
            n_items=int(n_per[j]),
            lz=_f(lz[j], 4),
            flagged=bool(lz_flag[j]),
        )
        for j, s in enumerate(responses.subjects)
    ]

    disc = _discrimination_section(
        th,
        names(low_slope),
        names(merged),
        names(defective),
        names(suspect),
        names(constant),
        [int(merged_cat[i]) for i in np.flatnonzero(merged)],
        r_rest,
        ids,
    )
    item_fit = _item_fit_section(
        th,
        sx2_status,
        int(complete_subj.size),
        params_estimated,
        names(misfit),
        ms,
        sx2_p,
        n_obs,
        ids,
        misfit,
    )
    local = _local_dependence_section(th, qf, q3, ids, tag_rows)
    person = _person_fit_section(th, lz, lz_ok, lz_flag, responses.subjects)

    report = HealthReport(
        generated_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        software=f"agentcat {__version__}",
        bank={
            "name": bank.name,
            "path": str(bank.path) if bank.path else None,
            "n_items": n_items,
            "status": bank.spec.calibration.status,
            "method": bank.spec.calibration.method,
            "calibration_n_subjects": bank.spec.calibration.n_subjects,
            "prior": {"mean": prior.mean, "sd": prior.sd},
        },
        data={
            "source": responses.source,
            "sha256": responses_sha256,
            "n_subjects": n_sub,
            "n_observations": responses.n_obs,
            "n_items_observed": int(observed_items.size),
            "density": _fx(responses.n_obs / (n_sub * max(observed_items.size, 1)), 4),
            "theta_method": "EAP under the bank's prior (601-point grid)",
        },
        thresholds=th,
        summary=[],
        information=info_section,
        discrimination=disc,
        item_fit=item_fit,
        local_dependence=local,
        person_fit=person,
        items=items,
        subjects=subjects,
    )
    report.summary = _summary(report, n_sub)
    report._arrays = HealthArrays(q3=q3.q3, obs_item=i_idx, obs_score=x, obs_theta_rest=theta_rest)
    say("analysis done")
    return report


# --------------------------------------------------------------------------- sections
def _information_section(
    grid: FloatArray,
    total: FloatArray,
    top: FloatArray,
    theta_hat: FloatArray,
    th: HealthThresholds,
) -> InformationSection:
    target = 1.0 / th.se_target**2
    lo, hi = float(grid[0]), float(grid[-1])
    gaps_raw = fit.below_target_intervals(grid, total, target)
    good_raw = _complement(gaps_raw, lo, hi)
    top_good = _complement(fit.below_target_intervals(grid, top, target), lo, hi)
    good = [_interval(a, b, theta_hat) for a, b in good_raw]
    gaps = [_interval(a, b, theta_hat) for a, b in gaps_raw]
    sat = flo = None
    share_sat = share_flo = None
    if good_raw and gaps_raw and gaps_raw[-1][1] >= hi:
        sat = gaps_raw[-1][0]
        share_sat = float((theta_hat > sat).mean())
    if good_raw and gaps_raw and gaps_raw[0][0] <= lo:
        flo = gaps_raw[0][1]
        share_flo = float((theta_hat < flo).mean())
    ipk = int(np.argmax(total))
    q = np.quantile(theta_hat, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    quant = dict(
        zip(
            ["min", "p05", "p25", "median", "p75", "p95", "max"],
            (_fx(v, 4) for v in q),
            strict=True,
        )
    )

    se_t = f"{th.se_target:.2f}"
    out: list[str] = []
    if not good:
        out.append(
            f"The bank never reaches SE {se_t} (information {target:.1f}) anywhere: its "
            "information "
            f"peaks at {total[ipk]:.1f} at θ = {grid[ipk]:.2f} (SE "
            f"{1 / math.sqrt(total[ipk]):.2f})."
        )
    else:
        share = sum(iv.share_subjects for iv in good)
        out.append(
            f"With all its items the bank reaches SE ≤ {se_t} (information ≥ {target:.1f}) "
            "for θ in "
            f"{_fmt_iv(good, lo, hi)}, where {_pct(share)} of the subjects' θ̂ lie."
        )
    if sat is not None:
        who = (
            f"{_pct(share_sat or 0.0)} of subjects lie above it (highest θ̂ = {theta_hat.max():.2f})"
            if share_sat
            else f"no subject lies above it (highest θ̂ = {theta_hat.max():.2f})"
        )
        out.append(
            f"Saturation at the top: above θ = {sat:.2f} information stays below {target:.1f}, "
            f"so SE {se_t} is out of reach there even with the whole bank; {who}."
        )
    if flo is not None:
        who = (
            f"{_pct(share_flo or 0.0)} of subjects lie below it (lowest θ̂ = {theta_hat.min():.2f})"
            if share_flo
            else f"no subject lies below it (lowest θ̂ = {theta_hat.min():.2f})"
        )
        out.append(
            f"Floor at the bottom: below θ = {flo:.2f} information stays below {target:.1f}; {who}."
        )
    for iv in gaps:
        if iv.lo > lo and iv.hi < hi:
            out.append(
                f"Difficulty gap: θ in [{iv.lo:.2f}, {iv.hi:.2f}] has information below "
                f"{target:.1f}; "
                f"{_pct(iv.share_subjects)} of subjects lie there."
            )
    if top_good:
        out.append(
            f"A {th.top_m}-item adaptive test (best {th.top_m} items at each θ) can reach SE "
            f"{se_t} "
            f"only for θ in {_fmt_iv([_interval(a, b, theta_hat) for a, b in top_good], lo, hi)}."
        )
    else:
        out.append(
            f"No {th.top_m}-item adaptive test reaches SE {se_t} anywhere: the best "
            f"{th.top_m} items "
            f"give at most information {top.max():.1f} (SE {1 / math.sqrt(top.max()):.2f})."
        )
    out.append(
        f"Information peaks at θ = {grid[ipk]:.2f} (I = {total[ipk]:.1f}). Subjects' θ̂ (EAP, "
        "pulled "
        f"toward the prior mean) span [{q[0]:.2f}, {q[-1]:.2f}], median {q[3]:.2f}."
    )
    return InformationSection(
        target_information=_fx(target),
        se_target=th.se_target,
        top_m=th.top_m,
        theta=[_fx(v, 4) for v in grid],
        total_information=[_fx(v) for v in total],
        top_m_information=[_fx(v) for v in top],
        well_measured=good,
        gaps=gaps,
        top_m_well_measured=[_interval(a, b, theta_hat) for a, b in top_good],
        saturation_top=_f(sat, 4) if sat is not None else None,
        share_above_saturation=_f(share_sat, 4) if share_sat is not None else None,
        floor_bottom=_f(flo, 4) if flo is not None else None,
        share_below_floor=_f(share_flo, 4) if share_flo is not None else None,
        peak_theta=_fx(grid[ipk], 4),
        peak_information=_fx(total[ipk]),
        theta_quantiles=quant,
        findings=out,
    )


def _cat_counts(cats: list[int]) -> str:
    parts = [f"category {c} in {cats.count(c)}" for c in sorted(set(cats))]
    return "the vanishing category is " + ", ".join(parts)


def _discrimination_section(
    th: HealthThresholds,
    low: list[str],
    merged: list[str],
    defective: list[str],
    suspect: list[str],
    constant: list[str],
    merged_cats: list[int],
    r_rest: FloatArray,
    ids: list[str],
) -> DiscriminationSection:
    pos = {iid: i for i, iid in enumerate(ids)}

    def with_r(names: list[str]) -> str:
        return _ids([f"{iid} (r = {r_rest[pos[iid]]:+.2f})" for iid in names])

    out = []
    out.append(
        f"{len(low)} item(s) have low discrimination (a < {th.min_slope:g}): {_ids(low)}."
        if low
        else f"No item has a < {th.min_slope:g}."
    )
    out.append(
        f"{len(merged)} item(s) have nearly merged thresholds (a middle category never reaches "
        f"probability {th.min_category_prob:g}, so it carries almost no information; "
        f"{_cat_counts(merged_cats)}): {_ids(merged)}."
        if merged
        else "No item has nearly merged thresholds (every middle category reaches probability "
        f"{th.min_category_prob:g})."
    )
    if defective:
        out.append(
            f"{len(defective)} item(s) look defective or mislabelled: their score does not rise "
            "with θ estimated from the other items (item–rest r significantly below "
            f"{th.min_item_rest:g}, FDR {th.alpha:g}): {with_r(defective)}. The calibrated a is "
            "held positive and cannot show this."
        )
    else:
        out.append(
            "No item is significantly non-discriminating (item–rest r below "
            f"{th.min_item_rest:g}, FDR {th.alpha:g})."
        )
    if suspect:
        out.append(
            f"{len(suspect)} item(s) are suspect: item–rest r below {th.min_item_rest:g} at "
            f"p < {th.alpha:g} for the item alone, but not after correcting for the "
            f"{len(ids)} items tested: {with_r(suspect)}. Read their transcripts or scoring "
            "rules."
        )
    if constant:
        out.append(
            f"{len(constant)} item(s) received the same score from every subject and carry no "
            f"information about them: {_ids(constant)}. Calibration should leave them out."
        )
    return DiscriminationSection(
        min_slope=th.min_slope,
        min_category_prob=th.min_category_prob,
        min_item_rest=th.min_item_rest,
        low_slope=low,
        merged_thresholds=merged,
        defective=defective,
        suspect=suspect,
        constant=constant,
        merged_category_counts={str(c): merged_cats.count(c) for c in sorted(set(merged_cats))},
        findings=out,
    )


_STATISTICS = {
    "infit": "information-weighted mean square Σ(x−E)²/ΣW at θ̂ (expected 1); Wilson–Hilferty t; "
    "two-sided p treating θ̂ as known (approximate; estimated θ pulls MS below 1)",
    "outfit": "unweighted mean square mean((x−E)²/W) at θ̂ (expected 1), sensitive to outlying "
    "responses far from an item's difficulty; Wilson–Hilferty t; two-sided p (approximate)",
    "S-X2": "Orlando–Thissen summed-score χ² generalised to graded items (Kang & Chen), expected "
    "proportions by the Lord–Wingersky recursion over the θ prior; complete-case subjects only; "
    "score groups pooled to expected counts ≥ min_expected",
}


def _item_fit_section(
    th: HealthThresholds,
    sx2_status: str,
    n_complete: int,
    params_estimated: bool,
    misfit: list[str],
    ms: fit.MeanSquares,
    sx2_p: FloatArray,
    n_obs: NDArray[np.int64],
    ids: list[str],
    mask: NDArray[np.bool_],
) -> ItemFitSection:
    def share(p: FloatArray) -> float | None:
        ok = np.isfinite(p)
        return _f((p[ok] < 0.05).mean()) if ok.any() else None

    shares = {"infit": share(ms.infit_p), "outfit": share(ms.outfit_p), "S-X2": share(sx2_p)}
    n_tested = int((n_obs > 0).sum())
    rule = (
        f"flagged when S-X² is significant, or infit/outfit lies outside "
        f"[{th.ms_low:g}, {th.ms_high:g}] and is significant (Benjamini–Hochberg FDR {th.alpha:g})"
    )
    out = []
    if misfit:
        order = np.argsort(-np.nan_to_num(ms.outfit[mask], nan=0.0))
        shown = [f"{misfit[j]} (outfit {ms.outfit[np.flatnonzero(mask)[j]]:.2f})" for j in order]
        out.append(f"{len(misfit)} of {n_tested} items misfit ({rule}): {_ids(shown)}.")
    else:
        out.append(f"No item misfits ({rule}).")
    if sx2_status == "computed":
        out.append(
            f"S-X² used {n_complete} complete-case subjects; {_pct(shares['S-X2'] or 0)} of "
            "items have "
            f"p < 0.05 (≈ 5 % expected when the model fits)"
            + (
                "."
                if params_estimated
                else "; df not reduced for estimated parameters (bank not calibrated on this file)."
            )
        )
    else:
        out.append(f"S-X² {sx2_status}.")
    out.append(
        f"Infit/outfit p < 0.05 for {_pct(shares['infit'] or 0)} / "
        f"{_pct(shares['outfit'] or 0)} of "
        "items; these p-values treat θ̂ as known and are only a rough guide."
    )
    return ItemFitSection(
        statistics=dict(_STATISTICS),
        sx2_status=sx2_status,
        n_complete_subjects=n_complete,
        sx2_params_estimated=params_estimated,
        misfit=misfit,
        share_p_below_05=shares,
        findings=out,
    )


def _tag_dependence(
    bank: ItemBank, q3: FloatArray, rng: np.random.Generator
) -> list[TagDependenceRow]:
    """Within- vs between-group residual correlation for every tag key the bank's items carry."""
    keys = sorted({k for it in bank.spec.items for k in it.tags})
    rows = []
    for key in keys:
        res = fit.group_dependence(q3, bank.tag_values(key), rng=rng)
        if res is None:
            continue
        rows.append(
            TagDependenceRow(
                tag=key,
                n_items=res.n_items,
                groups={g: _f(v, 4) for g, v in zip(res.groups, res.within_by_group, strict=True)},
                within=_fx(res.within, 4),
                between=_fx(res.between, 4),
                p_value=_fx(res.p_value, 3),
            )
        )
    return rows


def _local_dependence_section(
    th: HealthThresholds,
    qf: fit.Q3Flags,
    q3: fit.Q3Result,
    ids: list[str],
    tags: list[TagDependenceRow],
) -> LocalDependenceSection:
    pairs = [
        PairRow(
            item_a=ids[i],
            item_b=ids[j],
            q3=_fx(q3.q3[i, j], 4),
            q3_adjusted=_fx(adj, 4),
            n_common=int(q3.n_common[i, j]),
            p_adjusted=_f(p, 3),
        )
        for (i, j), adj, p in zip(qf.pairs, qf.q3_adj, qf.p_adjusted, strict=True)
    ]
    clusters = []
    for members in qf.clusters:
        sub = q3.q3[np.ix_(members, members)]
        clusters.append(
            ClusterRow(
                items=[ids[m] for m in members],
                mean_q3_adjusted=_f(
                    np.nanmean(sub[np.triu_indices(len(members), 1)]) - qf.mean_q3, 4
                ),
            )
        )
    simulated = th.q3_bootstrap > 0
    rule = (
        f"more than {qf.threshold:.2f} above the mean (the larger of {th.q3_excess:g} and the "
        f"level that chance alone exceeds with probability {th.alpha:g}, simulated from the "
        f"model {th.q3_bootstrap} times)"
        if simulated and np.isfinite(qf.threshold)
        else f"more than {th.q3_excess:g} above the mean (no simulated null: pairs may be noise)"
    )
    out = []
    if qf.n_tested == 0:
        out.append(f"Q3 not tested: no item pair shares at least {th.q3_min_common} subjects.")
    else:
        tested = np.isfinite(q3.q3) & (q3.n_common >= th.q3_min_common)
        n_med = int(np.median(q3.n_common[tested])) if tested.any() else 0
        out.append(
            f"Mean Q3 = {qf.mean_q3:+.3f} over {qf.n_tested} item pairs (median {n_med} "
            "common subjects)."
        )
        if pairs:
            groups = "; ".join(
                "{" + ", ".join(c.items[:6]) + (" …" if len(c.items) > 6 else "") + "}"
                for c in clusters[:5]
            ) + ("; …" if len(clusters) > 5 else "")
            out.append(
                f"{len(pairs)} pair(s) have Q3 {rule}, forming {len(clusters)} group(s) of "
                f"items that measure the same thing beyond θ: {groups}."
            )
        else:
            out.append(f"No item pair has Q3 {rule}.")
        if simulated and np.isfinite(qf.threshold) and qf.threshold > th.q3_excess + 0.05:
            out.append(
                f"With about {n_med} common subjects per pair, chance alone produces Q3 − mean "
                f"up to {qf.threshold:.2f}, so only stronger dependence between single pairs "
                "can be seen; the tag-level comparison below averages over many pairs."
            )
    for t in tags:
        diff = t.within - t.between
        if t.p_value < th.alpha and diff > 0:
            top = sorted(
                ((g, v) for g, v in t.groups.items() if v is not None), key=lambda gv: -gv[1]
            )
            shown = ", ".join(f"{g} {v:+.2f}" for g, v in top[:4])
            out.append(
                f"Items sharing the same '{t.tag}' have mean residual correlation "
                f"{t.within:+.3f} vs {t.between:+.3f} between groups (permutation p = "
                f"{t.p_value:.3g}; within each group: {shown}): '{t.tag}' marks a second "
                "dimension that one θ does not capture. Consider separate banks (or scales) "
                "per group."
            )
        else:
            out.append(
                f"No excess residual correlation within '{t.tag}' groups ({t.within:+.3f} "
                f"within vs {t.between:+.3f} between, permutation p = {t.p_value:.3g})."
            )
    return LocalDependenceSection(
        mean_q3=_f(qf.mean_q3, 4),
        excess=th.q3_excess,
        threshold=_f(qf.threshold, 4),
        n_bootstrap=th.q3_bootstrap,
        alpha=th.alpha,
        min_common=th.q3_min_common,
        n_pairs_tested=qf.n_tested,
        flagged_pairs=pairs,
        clusters=clusters,
        tag_dependence=tags,
        findings=out,
    )


def _person_fit_section(
    th: HealthThresholds,
    lz: FloatArray,
    ok: NDArray[np.bool_],
    flag: NDArray[np.bool_],
    subjects: Sequence[str],
) -> PersonFitSection:
    n_eval = int(ok.sum())
    flagged_idx = np.flatnonzero(flag)
    flagged_idx = flagged_idx[np.argsort(lz[flagged_idx])]
    names = [subjects[j] for j in flagged_idx]
    nominal = float(stats.norm.cdf(th.lz_cut))
    out = []
    if n_eval == 0:
        out.append(f"No subject has {th.lz_min_items} or more observed items; l_z not evaluated.")
    else:
        shown = [f"{subjects[j]} (l_z = {lz[j]:.2f})" for j in flagged_idx]
        out.append(
            f"{len(names)} of {n_eval} subjects ({_pct(len(names) / n_eval)}) have l_z < "
            f"{th.lz_cut:g}, "
            f"a response pattern less likely than the model allows at their θ (≈ {_pct(nominal)} "
            "expected by chance; fewer with estimated θ)" + (f": {_ids(shown)}." if shown else ".")
        )
        if names:
            out.append(
                "Such a pattern (failing easy items while passing hard ones) is what a "
                "subject that "
                "games an adaptive test, or a broken run, looks like; inspect these runs."
            )
    if n_eval >= 10:
        med = float(np.median(lz[ok]))
        if med > 1.0:
            out.append(
                f"Most subjects fit better than the model expects (median l_z = {med:+.2f}, "
                "≈ 0 under the model): responses are more deterministic than the slopes imply, "
                "as when slopes are shrunk by a calibration prior; SEs are then conservative."
            )
        elif med < -1.0:
            out.append(
                f"Most subjects fit worse than the model expects (median l_z = {med:+.2f}): "
                "the slopes may be too steep or the scale not unidimensional."
            )
    skipped = int((np.isfinite(lz) & ~ok).sum())
    if skipped:
        out.append(
            f"{skipped} subject(s) with fewer than {th.lz_min_items} items were not evaluated."
        )
    return PersonFitSection(
        statistic="l_z (Drasgow, Levine & Williams 1985) for polytomous items at the EAP θ̂",
        cut=th.lz_cut,
        min_items=th.lz_min_items,
        n_evaluated=n_eval,
        flagged=names,
        share_flagged=_f(len(names) / n_eval, 4) if n_eval else None,
        nominal_share=_fx(nominal, 4),
        findings=out,
    )


def _summary(r: HealthReport, n_sub: int) -> list[str]:
    d = r.discrimination
    out = [
        f"Bank {r.bank['name']!r} ({r.bank['n_items']} items, {r.bank['status']}) on "
        f"{n_sub} subjects × {r.data['n_items_observed']} observed items "
        f"({r.data['n_observations']} observations, {_pct(r.data['density'])} of the matrix)."
    ]
    out.append(r.information.findings[0])
    inf = r.information
    if inf.share_above_saturation:
        out.extend(f for f in inf.findings if f.startswith("Saturation"))
    if inf.share_below_floor:
        out.extend(f for f in inf.findings if f.startswith("Floor"))
    out.extend(f for f in r.local_dependence.findings if f.startswith("Items sharing the same"))
    n_ld = len(
        {p.item_a for p in r.local_dependence.flagged_pairs}
        | {p.item_b for p in r.local_dependence.flagged_pairs}
    )
    out.append(
        f"Items flagged: {len(d.defective)} defective/mislabelled, {len(d.suspect)} suspect, "
        f"{len(d.constant)} constant, "
        f"{len(r.item_fit.misfit)} misfitting, {len(d.low_slope)} low-discrimination, "
        f"{len(d.merged_thresholds)} with nearly merged thresholds, {n_ld} in "
        f"{len(r.local_dependence.clusters)} locally dependent group(s)."
    )
    pf = r.person_fit
    out.append(
        f"Person fit: {len(pf.flagged)} of {pf.n_evaluated} subjects have aberrant response "
        f"patterns (l_z < {pf.cut:g})."
    )
    if n_sub < 100:
        out.append(
            f"Only {n_sub} subjects: item-level statistics have little power here, so the absence "
            "of a flag is weak evidence that an item is fine."
        )
    return out
