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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from orchestrator import __version__
from orchestrator.bank import ItemBank
from orchestrator.cat.fit import looks_like_test_flags
from orchestrator.data import Responses
from orchestrator.errors import ConfigError, DataError
from orchestrator.irt import fit
from orchestrator.irt.ability import estimate_abilities
from orchestrator.irt.personfit import fixed_items_p_values
from orchestrator.loadings import MAX_DIMS, LoadingPattern
from orchestrator.report._findings import (
    dimensionality_section,
    discrimination_section,
    information_section,
    item_fit_section,
    local_dependence_section,
    person_fit_section,
    rounded,
    rounded_req,
    summary_lines,
    tag_dependence,
)
from orchestrator.report.schema import (
    HEALTH_SCHEMA_VERSION,
    DimensionalitySection,
    HealthArrays,
    HealthReport,
    HealthThresholds,
    ItemRow,
    SubjectRow,
)

__all__ = [
    "HEALTH_SCHEMA_VERSION",
    "DimensionCheck",
    "HealthArrays",
    "HealthReport",
    "HealthThresholds",
    "analyse_health",
]

if TYPE_CHECKING:  # the calibration engine needs torch: imported where it runs
    from orchestrator.irt.calibrate.dimensionality import Candidate

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DimensionCheck:
    """``health --dims``: which numbers of dimensions to compare on the responses, and how.

    Each D is calibrated afresh on the responses (D = 1 too, so every structure
    is scored the same way, whatever the bank's own parameters): ``loadings``
    makes its own D confirmatory; every other D > 1 is exploratory.

    Raises:
        ConfigError: a D outside 1..3, fewer than two distinct D, ``folds`` < 2,
            or a loading pattern whose D is not among ``dims``.
    """

    dims: tuple[int, ...]
    folds: int = 5
    loadings: LoadingPattern | None = None
    """Rows in the bank's item order."""

    def __post_init__(self) -> None:
        bad = [d for d in self.dims if not 1 <= d <= MAX_DIMS]
        if bad:
            raise ConfigError(
                f"--dims takes numbers of dimensions from 1 to {MAX_DIMS}; got {bad[0]}",
                hint="e.g. --dims 1 2 (or 1 2 3)",
            )
        if len(set(self.dims)) < 2:
            raise ConfigError(
                f"--dims needs at least two different numbers of dimensions to compare; "
                f"got {list(self.dims)}",
                hint="e.g. --dims 1 2",
            )
        if self.folds < 2:
            raise ConfigError(
                f"--folds must be at least 2 (each fold is held out once); got {self.folds}",
                hint="e.g. --folds 5",
            )
        if self.loadings is not None and self.loadings.matrix.shape[1] not in self.dims:
            d = self.loadings.matrix.shape[1]
            raise ConfigError(
                f"--loadings gives {d} dimensions ({', '.join(self.loadings.dimensions)}) but "
                f"--dims {' '.join(map(str, self.dims))} does not compare D = {d}",
                hint=f"add {d} to --dims",
            )

    def candidates(self) -> list[tuple[Candidate, list[str]]]:
        """Each structure to fit, with its dimension names."""
        from orchestrator.irt.calibrate.dimensionality import Candidate

        out = []
        pattern = self.loadings
        for d in sorted(set(self.dims)):
            if d == 1:
                out.append((Candidate("D=1", 1), ["theta"]))
            elif pattern is not None and pattern.matrix.shape[1] == d:
                matrix = pattern.matrix.astype(np.int64)
                out.append((Candidate(f"D={d} confirmatory", d, matrix), pattern.dimensions))
            else:
                out.append((Candidate(f"D={d} exploratory", d), [f"F{k + 1}" for k in range(d)]))
        return out


# --------------------------------------------------------------------------- analysis
def analyse_health(
    bank: ItemBank,
    responses: Responses,
    *,
    thresholds: HealthThresholds | None = None,
    responses_sha256: str | None = None,
    progress: Progress | None = None,
    dimensions: DimensionCheck | None = None,
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
        dimensions: Also compare numbers of dimensions (slow: one calibration per
            structure and fold; needs torch).

    Raises:
        DataError: items missing from the bank, scores outside an item's
            scale, or fewer than 2 subjects.
    """
    th = thresholds or HealthThresholds()
    say = progress or (lambda _msg: None)
    responses, excluded = bank.drop_excluded_items(responses)
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
    info_section = information_section(grid, total, top, theta_hat, th)
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
    tag_rows = tag_dependence(bank, q3.q3, rng)

    # --- person fit
    say(f"person fit: l_z and its null, {th.fit_replicates} patterns simulated per subject")
    lz, n_per = fit.person_fit_lz(a, b, s_idx, i_idx, x, theta_hat, n_sub)
    _, fit_p = fixed_items_p_values(
        a, b, *_padded(s_idx, i_idx, x, n_sub),
        replicates=th.fit_replicates, rng=rng, prior_mean=prior.mean, prior_sd=prior.sd,
        test_cue=looks_like_test_flags(bank),
    )  # fmt: skip
    lz_ok = np.isfinite(fit_p) & (n_per >= th.lz_min_items)
    lz_flag = lz_ok & (fit_p < th.alpha)

    # --- flags per item
    with np.errstate(invalid="ignore"):
        low_slope = a < th.min_slope
        # a flat (low-a) item's middle categories never peak either; that is its slope's fault
        merged = (min_cat < th.min_category_prob) & ~low_slope
        defective = fit.benjamini_hochberg(r_p) < th.alpha
        suspect = (r_p < th.alpha) & ~defective
    constant = (n_obs > 0) & ((counts > 0).sum(axis=1) == 1)
    unobserved = (n_obs > 0) & ~constant & ((counts > 0).sum(axis=1) < kcat)
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
                a=rounded_req(a[i]),
                b=[rounded_req(v) for v in b[i, : k - 1]],
                tags=dict(bank.spec.items[i].tags),
                n_obs=int(n_obs[i]),
                category_counts=[int(c) for c in counts[i, :k]],
                mean_score=rounded(mean_score[i]),
                max_information=rounded_req(item_info[imax[i], i]),
                theta_at_max_information=rounded_req(grid[imax[i]], 4),
                min_category_max_prob=rounded(min_cat[i]),
                item_rest_r=rounded(r_rest[i]),
                item_rest_p=rounded(r_p[i]),
                infit=rounded(ms.infit[i]),
                infit_t=rounded(ms.infit_t[i]),
                infit_p=rounded(ms.infit_p[i]),
                outfit=rounded(ms.outfit[i]),
                outfit_t=rounded(ms.outfit_t[i]),
                outfit_p=rounded(ms.outfit_p[i]),
                sx2=rounded(sx2_stat[i]),
                sx2_df=int(sx2_df[i]) if sx2_df[i] >= 0 and np.isfinite(sx2_stat[i]) else None,
                sx2_p=rounded(sx2_p[i]),
                flags=[name for name, m in flag_table.items() if bool(m[i])],
            )
        )
    subjects = [
        SubjectRow(
            subject=s,
            theta=rounded_req(theta_hat[j], 4),
            se=rounded_req(est.se[j], 4),
            n_items=int(n_per[j]),
            lz=rounded(lz[j], 4),
            fit_p=rounded(fit_p[j], 5),
            flagged=bool(lz_flag[j]),
        )
        for j, s in enumerate(responses.subjects)
    ]

    disc = discrimination_section(
        th,
        names(low_slope),
        names(merged),
        names(defective),
        names(suspect),
        names(constant),
        names(unobserved),
        excluded,
        [int(merged_cat[i]) for i in np.flatnonzero(merged)],
        r_rest,
        ids,
        [iid for iid, rev in zip(ids, bank.reverse_keyed, strict=True) if rev],
    )
    item_fit = item_fit_section(
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
    local = local_dependence_section(th, qf, q3, ids, tag_rows)
    person = person_fit_section(th, lz, fit_p, lz_ok, lz_flag, responses.subjects)
    dim_section = None
    if dimensions is not None:
        dim_section = _compare_dimensions(dimensions, s_idx, i_idx, x, kcat, n_sub, th, say)

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
            "density": rounded_req(responses.n_obs / (n_sub * max(observed_items.size, 1)), 4),
            "theta_method": "EAP under the bank's prior (601-point grid)",
            "excluded_items": excluded,
        },
        thresholds=th,
        summary=[],
        information=info_section,
        discrimination=disc,
        item_fit=item_fit,
        local_dependence=local,
        person_fit=person,
        dimensionality=dim_section,
        items=items,
        subjects=subjects,
    )
    report.summary = summary_lines(report, n_sub)
    report._arrays = HealthArrays(q3=q3.q3, obs_item=i_idx, obs_score=x, obs_theta_rest=theta_rest)
    say("analysis done")
    return report


def _compare_dimensions(
    check: DimensionCheck,
    s_idx: NDArray[np.int64],
    i_idx: NDArray[np.int64],
    x: NDArray[np.int64],
    kcat: NDArray[np.int64],
    n_sub: int,
    th: HealthThresholds,
    say: Progress,
) -> DimensionalitySection:
    from orchestrator.irt.calibrate.dimensionality import compare_dimensions

    cands = check.candidates()
    labels = ", ".join(c.label for c, _ in cands)
    say(f"dimensions: {labels}; {check.folds} folds, {len(cands) * (check.folds + 1)} fits")
    comp = compare_dimensions(
        s_idx,
        i_idx,
        x,
        n_categories=kcat,
        n_subjects=n_sub,
        candidates=[c for c, _ in cands],
        folds=check.folds,
        seed=th.seed,
        progress=say,
    )
    loadings = None if check.loadings is None else check.loadings.description
    return dimensionality_section(comp, th, {c.label: n for c, n in cands}, loadings, n_sub)


def _padded(
    s_idx: NDArray[np.int64], i_idx: NDArray[np.int64], x: NDArray[np.int64], n_sub: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sparse observations as ``(n_sub, max items)`` item and score arrays padded with −1."""
    order = np.argsort(s_idx, kind="stable")
    s_sorted = s_idx[order]
    n = np.bincount(s_idx, minlength=n_sub)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    col = np.arange(len(order)) - start[s_sorted]
    items = np.full((n_sub, int(n.max(initial=1))), -1, dtype=np.int64)
    scores = np.full_like(items, -1)
    items[s_sorted, col] = i_idx[order]
    scores[s_sorted, col] = x[order]
    return items, scores
