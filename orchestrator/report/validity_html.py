"""The validity report as one self-contained HTML page (figures inlined) plus its JSON twin."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from orchestrator.report.html import _CSS, _e, _findings, _img, _num, _table
from orchestrator.report.validity import MIN_MODELS, SMALL_N, ValidityReport, format_interval
from orchestrator.report.validity_plots import render_validity_figures, scatter_name

__all__ = ["render_validity_html", "write_validity_report"]


def _iv(iv: Mapping[str, Any] | None) -> str:
    return f'<span class="nw">{_e(format_interval(iv))}</span>'


def _pairs_table(doc: Mapping[str, Any]) -> str:
    header = [
        "a",
        "b",
        "n",
        "θ̂ Pearson",
        "θ̂ Spearman",
        "rel a",
        "rel b",
        "θ̂ disattenuated",
        "raw Pearson",
        "raw Spearman",
        "raw disattenuated",
        "notes",
    ]
    rows, flagged = [], []
    for p in doc["pairs"]:
        t, r = p["theta"] or {}, p["raw"] or {}
        notes = [p.get("note", "")] + p["warnings"]
        rows.append(
            [
                _e(p["a"]),
                _e(p["b"]),
                str(p["n"]),
                _iv(t.get("pearson")),
                _iv(t.get("spearman")),
                _iv(t.get("reliability_a")),
                _iv(t.get("reliability_b")),
                _iv(t.get("disattenuated")),
                _iv(r.get("pearson")),
                _iv(r.get("spearman")),
                _iv(r.get("disattenuated")),
                _e("; ".join(x for x in notes if x) or "–"),
            ]
        )
        flagged.append(p["n"] < SMALL_N)
    return _table(header, rows, flagged, left=(0, 1, 11))


def _predictions_table(doc: Mapping[str, Any]) -> str:
    header = [
        "from",
        "to",
        "n",
        "slope",
        "intercept",
        "residual SD",
        "LOO RMSE",
        "LOO RMSE, mean only",
        "LOO R²",
        "mean SE on 'to'",
    ]
    rows = []
    for p in doc["predictions"]:
        g = p["regression"]
        if g is None:
            continue
        rows.append(
            [
                _e(p["from"]),
                _e(p["to"]),
                str(p["n"]),
                _num(g["slope"], ".2f"),
                _num(g["intercept"], "+.2f"),
                _num(g["residual_sd"], ".2f"),
                _num(g["rmse_loo"], ".3f"),
                _num(g["rmse_loo_mean_only"], ".3f"),
                _num(g["r2_loo"], ".2f"),
                _num(p.get("mean_se_to"), ".2f"),
            ]
        )
    if not rows:
        return f'<p class="note">No pair shares {MIN_MODELS} or more models.</p>'
    return _table(header, rows)


def _collateral_table(doc: Mapping[str, Any]) -> str:
    header = [
        "from",
        "to",
        "models",
        "subjects",
        "pool items",
        "prior SD (mean)",
        "items to SE, mean: standard → collateral",
        "median",
        "reached",
        "items saved (mean, share)",
        "RMSE @0",
        "RMSE @5",
        "RMSE @10",
        "RMSE at stop",
        "reference SE",
    ]
    rows = []

    def pair(rm: Mapping[str, Any], key: str) -> str:
        v = rm.get(key)
        if v is None:
            return "–"
        return f'<span class="nw">{v["standard"]:.3f} → {v["collateral"]:.3f}</span>'

    for c in doc["collateral"]:
        std, col = c["items_to_se"]["standard"], c["items_to_se"]["collateral"]
        s, rm = c["items_saved"], c["rmse_vs_reference"]
        rows.append(
            [
                _e(c["from"]),
                _e(c["to"]),
                str(c["n_models"]),
                str(c["n_subjects"]),
                str(c["pool_items"]),
                _num(c["prior_sd"]["mean"], ".2f"),
                f"{std['mean']:.1f} → {col['mean']:.1f}",
                f"{_med(std['median'])} → {_med(col['median'])}",
                f"{std['reached']} → {col['reached']}",
                f"{s['mean']:.1f} ({_num(s['share'], '.0%')})",
                pair(rm, "0"),
                pair(rm, "5"),
                pair(rm, "10"),
                pair(rm, "at_stop"),
                _num(c["reference_se_mean"], ".2f"),
            ]
        )
    if not rows:
        return (
            f'<p class="note">Not computed: no ordered pair shares '
            f"{doc['options']['collateral_min_models']} or more models "
            "(or the replay was switched off).</p>"
        )
    return _table(header, rows)


def _med(v: float | None) -> str:
    return "> half never" if v is None else f"{v:g}"


def _banks_table(doc: Mapping[str, Any]) -> str:
    header = [
        "scale",
        "responses",
        "subjects",
        "items",
        "models",
        "reliability (all)",
        "mapped / wildcard",
        "excluded",
        "unmatched",
        "averaged over subjects",
    ]
    rows = []
    for s in doc["scales"]:
        m = s["mapping"]
        mapped = (
            "none: names used as is"
            if m["unmapped_bank"]
            else f"{m['n_mapped']} / {m['n_wildcard']}"
        )
        excluded = "; ".join(f"{x['subject']} ({x['note']})" for x in m["excluded"]) or "–"
        averaged = "; ".join(f"{x['model']}: {len(x['subjects'])}" for x in m["averaged"]) or "–"
        rows.append(
            [
                _e(s["label"]),
                _e(s["source"]),
                str(s["n_subjects"]),
                str(s["n_items"]),
                str(s["n_models"]),
                _num(s["reliability_all_subjects"], ".3f"),
                _e(mapped),
                _e(excluded),
                _e(", ".join(m["unmatched"]) or "–"),
                _e(averaged),
            ]
        )
    return _table(header, rows, left=(0, 1, 6, 7, 8, 9))


_METHODS = """
<p>θ̂ is each subject's EAP under its bank's calibrated parameters and prior (as
<code>agentcat estimate</code>), the SE its posterior SD. Raw accuracy is the mean of
score / (K − 1); its SE comes from the GRM's variance of each item score at θ̂
(fixed items). Subjects become models through the reviewed mapping file; a model with
several subjects in one bank (attacks, defences, prompts) gets the mean of its subjects
without a condition if it has any, else of all of them (SE of a mean of m independent
estimates: √ΣSE² / m).</p>
<p><b>Reliability</b> = var(θ̂) / (var(θ̂) + mean SE²) over the models of the pair (empirical
reliability; for EAPs under a correct prior it equals corr(θ̂, θ)²). <b>Disattenuated r</b> =
r / √(rel_a · rel_b), not clipped to [−1, 1]. It assumes independent measurement errors: banks
sharing items and responses violate that (flagged). <b>Intervals</b>: percentile bootstrap over
models (every statistic, reliabilities included, recomputed per resample), seeded; below
{small} models they are rough. In simulation (tests/test_validity_stats.py) the corrected r
is unbiased to about ±0.01 with coverage 0.93–0.96 (bench/validity_simulation.py).</p>
<p><b>Prediction</b>: least-squares line of θ̂_to on θ̂_from, leave-one-model-out RMSE
against predicting the mean of the other models. <b>Collateral information</b>: each model's
prior on the target bank is N(m, s²) from a regression fitted on the other folds' models
(cross-fitted, {folds} folds), with the EAP shrinkage undone (slope / rel_to) and s² the
unexplained share of the true-θ variance; a max-information CAT is replayed on the target
bank's recorded responses with that prior and with the bank's own prior, to SE ≤ {se} (a
subject that never gets there counts all its pool items, so means are lower bounds). The
CATs draw from a random half of the target bank's items (the pool); the other half gives each
subject an independent reference EAP, so neither strategy shares an item with its yardstick
(RMSE² ≈ the estimate's error² + the reference's SE², the same for both strategies).</p>
"""


def render_validity_html(report: ValidityReport, figures: Mapping[str, bytes] | None = None) -> str:
    """The whole report as one HTML document (figures rendered here unless given)."""
    doc = report.to_dict()
    figs = render_validity_figures(report) if figures is None else figures
    opt = doc["options"]
    scatters = "".join(
        '<div style="display:inline-block;width:48%;vertical-align:top">'
        + _img(figs.get(scatter_name(p["a"], p["b"])), f"scatter {p['a']} × {p['b']}")
        + "</div>"
        for p in doc["pairs"]
        if p["n"] >= 2
    )
    banks = ", ".join(_e(s["label"]) for s in doc["scales"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>agentcat validity: {banks}</title><style>{_CSS}</style></head><body>"
        f"<h1>Cross-benchmark validity</h1><p class='meta'>{banks} · {_e(doc['software'])} · "
        f"{_e(doc['generated_at'])} · mapping {_e(doc['names']['file'])} · "
        f"bootstrap {opt['n_boot']}×, seed {opt['seed']}, {opt['level']:.0%} intervals</p>"
        f"<div class='summary'>{_findings(doc['summary'])}</div>"
        "<h2>Correlations</h2>"
        f"{_img(figs.get('heatmap'), 'correlation heatmap')}"
        f"<p class='note'>Rows shaded: fewer than {SMALL_N} shared models.</p>"
        f"{_pairs_table(doc)}"
        "<h2>Predicting one bank's θ̂ from another's</h2>"
        f"{_predictions_table(doc)}"
        "<h2>Collateral information: CAT items saved by a prior from the other bank</h2>"
        f"{_collateral_table(doc)}"
        "<h2>Scatter per pair</h2>"
        f"{scatters or '<p class=note>No pair shares two or more models.</p>'}"
        "<h2>Banks and name matching</h2>"
        f"{_banks_table(doc)}"
        "<h2>Methods</h2>"
        + _METHODS.format(small=SMALL_N, folds=opt["folds"], se=opt["se_target"])
        + "</body></html>"
    )


def write_validity_report(
    report: ValidityReport,
    out_html: str | os.PathLike[str],
    *,
    figures_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``out_html`` and its JSON twin (same stem, ``.json``) atomically.

    Returns:
        ``(html_path, json_path)``.
    """
    html_path = Path(out_html)
    json_path = html_path.with_suffix(".json")
    figs = render_validity_figures(report)
    atomic_write_text(html_path, render_validity_html(report, figs))
    atomic_write_json(json_path, report.to_dict())
    if figures_dir is not None:
        for name, png in figs.items():
            atomic_write_bytes(Path(figures_dir) / f"{name}.png", png)
    return html_path, json_path
