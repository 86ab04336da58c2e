"""Section builders: flagged arrays → report sections with plain-language findings.

Kept apart from the analysis so the wording can be read and changed in one
place; nothing here computes a statistic, it only rounds, selects and words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.bank import ItemBank
from orchestrator.irt import fit
from orchestrator.report.schema import (
    ClusterRow,
    DimensionalitySection,
    DimensionRow,
    DiscriminationSection,
    HealthReport,
    HealthThresholds,
    InformationSection,
    Interval,
    ItemFitSection,
    LocalDependenceSection,
    PairRow,
    PersonFitSection,
    TagDependenceRow,
)

__all__ = [
    "dimensionality_section",
    "discrimination_section",
    "information_section",
    "item_fit_section",
    "local_dependence_section",
    "person_fit_section",
    "rounded",
    "rounded_req",
    "summary_lines",
    "tag_dependence",
]

if TYPE_CHECKING:  # the calibration engine needs torch: imported where it runs
    from orchestrator.irt.calibrate.dimensionality import DimensionComparison

FloatArray = NDArray[np.float64]


def rounded(x: Any, digits: int = 5) -> float | None:
    """JSON-safe float rounded to ``digits`` significant digits (NaN/inf → None)."""
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def rounded_req(x: Any, digits: int = 5) -> float:
    v = rounded(x, digits)
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
        lo=rounded_req(lo, 4),
        hi=rounded_req(hi, 4),
        share_subjects=rounded_req(inside.mean() if theta_hat.size else 0.0, 4),
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


def information_section(
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
            (rounded_req(v, 4) for v in q),
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
        outside = []
        above = int((theta_hat > top_good[-1][1]).sum()) if top_good[-1][1] < hi else 0
        below = int((theta_hat < top_good[0][0]).sum()) if top_good[0][0] > lo else 0
        n = max(theta_hat.size, 1)
        if above:
            outside.append(f"{above} subject(s) ({_pct(above / n)}) lie above it")
        if below:
            outside.append(f"{below} subject(s) ({_pct(below / n)}) lie below it")
        out.append(
            f"A {th.top_m}-item adaptive test (best {th.top_m} items at each θ) can reach SE "
            f"{se_t} only for θ in "
            f"{_fmt_iv([_interval(a, b, theta_hat) for a, b in top_good], lo, hi)}"
            + (f"; {' and '.join(outside)}." if outside else ".")
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
        target_information=rounded_req(target),
        se_target=th.se_target,
        top_m=th.top_m,
        theta=[rounded_req(v, 4) for v in grid],
        total_information=[rounded_req(v) for v in total],
        top_m_information=[rounded_req(v) for v in top],
        well_measured=good,
        gaps=gaps,
        top_m_well_measured=[_interval(a, b, theta_hat) for a, b in top_good],
        saturation_top=rounded(sat, 4) if sat is not None else None,
        share_above_saturation=rounded(share_sat, 4) if share_sat is not None else None,
        floor_bottom=rounded(flo, 4) if flo is not None else None,
        share_below_floor=rounded(share_flo, 4) if share_flo is not None else None,
        peak_theta=rounded_req(grid[ipk], 4),
        peak_information=rounded_req(total[ipk]),
        theta_quantiles=quant,
        findings=out,
    )


def _cat_counts(cats: list[int]) -> str:
    parts = [f"category {c} in {cats.count(c)}" for c in sorted(set(cats))]
    return "the vanishing category is " + ", ".join(parts)


def discrimination_section(
    th: HealthThresholds,
    low: list[str],
    merged: list[str],
    defective: list[str],
    suspect: list[str],
    constant: list[str],
    unobserved: list[str],
    excluded: list[dict[str, Any]],
    merged_cats: list[int],
    r_rest: FloatArray,
    ids: list[str],
    reverse_keyed: Sequence[str] = (),
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
    if unobserved:
        out.append(
            f"{len(unobserved)} item(s) have a category that no subject scored in, so its "
            f"threshold rests on the calibration prior alone: {_ids(unobserved)}."
        )
    if reverse_keyed:
        out.append(
            f"{len(reverse_keyed)} item(s) are reverse-keyed in the bank: at calibration their "
            "score fell with θ (a miskeyed answer or a reversed scale), so the bank reads them "
            f"reversed and they still carry information: {_ids(list(reverse_keyed))}. Their "
            "item–rest r above is computed on the reversed scores; check their answer keys."
        )
    if excluded:
        reasons = sorted({str(e["reason"]).split(" (")[0] for e in excluded})
        out.append(
            f"{len(excluded)} item(s) in the responses were left out of the bank at calibration "
            f"({'; '.join(reasons)}) and are not analysed: "
            f"{_ids([str(e['id']) for e in excluded])}."
        )
    return DiscriminationSection(
        reverse_keyed=list(reverse_keyed),
        min_slope=th.min_slope,
        min_category_prob=th.min_category_prob,
        min_item_rest=th.min_item_rest,
        low_slope=low,
        merged_thresholds=merged,
        defective=defective,
        suspect=suspect,
        constant=constant,
        unobserved_categories=unobserved,
        excluded_at_calibration=[str(e["id"]) for e in excluded],
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


def item_fit_section(
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
        return rounded((p[ok] < 0.05).mean()) if ok.any() else None

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


def tag_dependence(
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
                groups={
                    g: rounded(v, 4) for g, v in zip(res.groups, res.within_by_group, strict=True)
                },
                within=rounded_req(res.within, 4),
                between=rounded_req(res.between, 4),
                p_value=rounded_req(res.p_value, 3),
            )
        )
    return rows


def local_dependence_section(
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
            q3=rounded_req(q3.q3[i, j], 4),
            q3_adjusted=rounded_req(adj, 4),
            n_common=int(q3.n_common[i, j]),
            p_adjusted=rounded(p, 3),
        )
        for (i, j), adj, p in zip(qf.pairs, qf.q3_adj, qf.p_adjusted, strict=True)
    ]
    clusters = []
    for members in qf.clusters:
        sub = q3.q3[np.ix_(members, members)]
        clusters.append(
            ClusterRow(
                items=[ids[m] for m in members],
                mean_q3_adjusted=rounded(
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
        mean_q3=rounded(qf.mean_q3, 4),
        excess=th.q3_excess,
        threshold=rounded(qf.threshold, 4),
        n_bootstrap=th.q3_bootstrap,
        alpha=th.alpha,
        min_common=th.q3_min_common,
        n_pairs_tested=qf.n_tested,
        flagged_pairs=pairs,
        clusters=clusters,
        tag_dependence=tags,
        findings=out,
    )


def person_fit_section(
    th: HealthThresholds,
    lz: FloatArray,
    fit_p: FloatArray,
    ok: NDArray[np.bool_],
    flag: NDArray[np.bool_],
    subjects: Sequence[str],
) -> PersonFitSection:
    n_eval = int(ok.sum())
    flagged_idx = np.flatnonzero(flag)
    flagged_idx = flagged_idx[np.lexsort((lz[flagged_idx], fit_p[flagged_idx]))]
    names = [subjects[j] for j in flagged_idx]
    out = []
    if n_eval == 0:
        out.append(
            f"No subject has {th.lz_min_items} or more observed items; person fit not evaluated."
        )
    else:
        shown = [f"{subjects[j]} (p = {fit_p[j]:.2g}, l_z = {lz[j]:.2f})" for j in flagged_idx]
        out.append(
            f"{len(names)} of {n_eval} subjects ({_pct(len(names) / n_eval)}) have a person-fit "
            f"p-value below {th.alpha:g}: a response pattern less likely than the model allows "
            f"at their θ (≈ {_pct(th.alpha)} expected by chance if every subject fits)"
            + (f": {_ids(shown)}." if shown else ".")
        )
        if names:
            out.append(
                "Such a pattern (failing easy items while passing hard ones, or answering at "
                "random) is what a subject that games a test, sandbags, or a broken run looks "
                "like; inspect these runs."
            )
        excess = len(names) / n_eval - th.alpha
        if n_eval >= 50 and excess > 0.1:
            out.append(
                f"{_pct(len(names) / n_eval)} flagged against {_pct(th.alpha)} by chance: misfit "
                "is widespread, which points at the model (slopes, dimensionality) rather than "
                "at a few subjects."
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
    skipped = int((np.isfinite(fit_p) & ~ok).sum())
    if skipped:
        out.append(
            f"{skipped} subject(s) with fewer than {th.lz_min_items} items were not evaluated."
        )
    return PersonFitSection(
        statistic=(
            "l_z (Drasgow, Levine & Williams 1985), the largest single-item surprise and, where "
            "items carry the tag looks_like_test, the residual contrast of test-looking items, "
            "at the EAP θ̂; combined p-value from a parametric bootstrap on each subject's own "
            f"items ({th.fit_replicates} patterns at θ̂, θ re-estimated for each), so estimating "
            "θ from the same responses does not make it conservative as a fixed l_z cut is"
        ),
        alpha=th.alpha,
        replicates=th.fit_replicates,
        min_items=th.lz_min_items,
        n_evaluated=n_eval,
        flagged=names,
        share_flagged=rounded(len(names) / n_eval, 4) if n_eval else None,
        nominal_share=rounded_req(th.alpha, 4),
        findings=out,
    )


def dimensionality_section(
    comp: DimensionComparison,
    th: HealthThresholds,
    names: Mapping[str, list[str]],
    loadings: str | None,
    n_subjects: int,
) -> DimensionalitySection:
    """The D comparison as rows and findings; held-out log-likelihood picks the preferred D.

    ``names``: each candidate label's dimension names (for the correlation pairs).
    """
    from orchestrator.irt.calibrate.dimensionality import folds_won, preferred

    won = folds_won(comp.fits)
    rows: list[DimensionRow] = []
    n_tested = 0
    for f, w in zip(comp.fits, won, strict=True):
        iu, ju = np.triu_indices(f.q3.q3.shape[0], k=1)
        q = f.q3.q3[iu, ju]
        tested = np.isfinite(q) & (f.q3.n_common[iu, ju] >= th.q3_min_common)
        n_tested = max(n_tested, int(tested.sum()))
        flags = fit.flag_q3(f.q3, excess=th.q3_excess, min_common=th.q3_min_common)
        se = f.latent_correlation_se
        rows.append(
            DimensionRow(
                label=f.label,
                n_dims=f.n_dims,
                structure=f.structure,
                dimensions=list(names[f.label]),
                n_parameters=f.n_parameters,
                log_likelihood=rounded_req(f.log_likelihood, 8),
                aic=rounded_req(f.aic, 8),
                bic=rounded_req(f.bic, 8),
                converged=f.converged,
                heldout_per_response=rounded_req(f.heldout_per_obs, 6),
                fold_loglik=[rounded_req(v, 8) for v in f.fold_loglik],
                folds_won=int(w),
                latent_correlation=[[rounded_req(v, 4) for v in r] for r in f.latent_correlation],
                latent_correlation_se=None
                if se is None
                else [[rounded(v, 3) for v in r] for r in np.asarray(se, dtype=float)],
                q3_max_abs=rounded(np.abs(q[tested]).max(), 3) if tested.any() else None,
                q3_mean_abs=rounded(np.abs(q[tested]).mean(), 3) if tested.any() else None,
                q3_flagged_pairs=len(flags.pairs),
            )
        )
    by = {key: preferred(comp.fits, key).label for key in ("heldout", "aic", "bic")}
    best = next(r for r in rows if r.label == by["heldout"])
    others = [r for r in rows if r is not best]
    findings = [
        f"Held-out log-likelihood ({comp.folds}-fold over {comp.n_heldout} response cells) "
        f"prefers {best.label}: {best.heldout_per_response:.4f} per response vs "
        + ", ".join(
            f"{r.label} {r.heldout_per_response:.4f} "
            f"({best.heldout_per_response - r.heldout_per_response:+.4f})"
            for r in others
        )
        + f"; best on {best.folds_won} of {comp.folds} folds."
    ]
    verdicts = [
        f"{k.upper()} agrees" if by[k] == best.label else f"{k.upper()} prefers {by[k]}"
        for k in ("aic", "bic")
    ]
    findings.append(
        "; ".join(verdicts) + " (information criteria count parameters that the priors partly "
        "tie down; the held-out score does not rest on asymptotics, so it decides)."
    )
    if 2 * best.folds_won <= comp.folds:
        findings.append(
            f"{best.label} is best on only {best.folds_won} of {comp.folds} folds: the "
            "difference is within fold-to-fold noise, so treat the choice as uncertain."
        )
    for r in rows:
        if r.n_dims == 1:
            continue
        pairs = []
        for i in range(r.n_dims):
            for j in range(i + 1, r.n_dims):
                se = None if r.latent_correlation_se is None else r.latent_correlation_se[i][j]
                err = "" if se is None else f" (SE {se:.3f})"
                pairs.append(
                    f"{r.dimensions[i]}~{r.dimensions[j]} {r.latent_correlation[i][j]:.3f}{err}"
                )
        findings.append(f"Latent correlation under {r.label}: {'; '.join(pairs)}.")
    findings.append(
        f"Q3 after each fit (pairs with ≥ {th.q3_min_common} common subjects): "
        + ", ".join(
            f"{r.label} max |Q3| {_fmt_opt(r.q3_max_abs)}, mean |Q3| {_fmt_opt(r.q3_mean_abs)}, "
            f"{r.q3_flagged_pairs} pair(s) above mean + {th.q3_excess:g}"
            for r in rows
        )
        + "."
        + (
            f" With {n_subjects} subjects one Q3 has an SE of about "
            f"{1 / math.sqrt(n_subjects):.2f}: compare the fits with each other, not with zero."
            if n_subjects < 100
            else ""
        )
    )
    findings.append(
        f"Item category shares alone (no IRT) score {comp.baseline_per_obs:.4f} per response "
        "on the same cells."
    )
    findings.extend(
        f"{r.label} did not converge within the iteration limit: its numbers are provisional."
        for r in rows
        if not r.converged
    )
    return DimensionalitySection(
        folds=comp.folds,
        seed=comp.seed,
        n_heldout=comp.n_heldout,
        loadings=loadings,
        baseline_per_response=rounded_req(comp.baseline_per_obs, 6),
        q3_excess=th.q3_excess,
        q3_min_common=th.q3_min_common,
        q3_pairs_tested=n_tested,
        fits=rows,
        preferred=best.label,
        preferred_n_dims=best.n_dims,
        preferred_by=by,
        findings=findings,
    )


def _fmt_opt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def summary_lines(r: HealthReport, n_sub: int) -> list[str]:
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
    out.extend(f for f in inf.findings if f.startswith(f"A {inf.top_m}-item") and "lie " in f)
    out.extend(f for f in r.local_dependence.findings if f.startswith("Items sharing the same"))
    if r.dimensionality is not None:
        out.append(r.dimensionality.findings[0])
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
        f"patterns (person-fit p < {pf.alpha:g})."
    )
    if n_sub < 100:
        out.append(
            f"Only {n_sub} subjects: item-level statistics have little power here, so the absence "
            "of a flag is weak evidence that an item is fine."
        )
    return out
