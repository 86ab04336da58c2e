"""One self-contained HTML page (PNGs inlined as base64, no external assets) and its JSON twin."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from orchestrator.report.plots import render_figures
from orchestrator.report.schema import HealthReport, ItemRow

__all__ = ["DIMENSIONS_SECTION", "SECTIONS", "render_html", "write_report"]

SECTIONS = (
    ("information", "Test information and difficulty gaps"),
    ("discrimination", "Discrimination, thresholds and defective items"),
    ("item-fit", "Item fit"),
    ("local-dependence", "Redundancy (local dependence, Yen's Q3)"),
    ("person-fit", "Person fit"),
    ("items", "All items"),
    ("subjects", "All subjects"),
    ("methods", "Methods and thresholds"),
)

DIMENSIONS_SECTION = ("dimensions", "How many dimensions")
"""Shown only when the report compares numbers of dimensions (``health --dims``)."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1180px;padding:16px 28px;color:#1d2731;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.1em}h2{border-bottom:2px solid #dfe6e9;padding-bottom:4px;
margin-top:1.8em}.meta{color:#636e72;font-size:.9em}
.summary{background:#f4f8fb;border-left:5px solid #2c3e50;padding:8px 18px;margin:14px 0}
.summary li{margin:4px 0}.findings li{margin:3px 0}
table{border-collapse:collapse;font-size:.82em;margin:8px 0}
th,td{border:1px solid #dfe6e9;padding:3px 7px;text-align:right}
th{background:#f1f2f6;position:sticky;top:0}td.l,th.l{text-align:left}
tr.flag td{background:#fff5f3}img{max-width:100%;height:auto;display:block;margin:10px 0}
.kpi{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}.kpi div{background:#fff;
border:1px solid #dfe6e9;border-radius:6px;padding:6px 12px;min-width:110px}
.kpi b{display:block;font-size:1.35em}.note{color:#636e72;font-size:.85em}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
nav a{margin-right:12px;font-size:.9em}.nw{white-space:nowrap}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: float | int | None, fmt: str = ".3g") -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return str(v)
    return format(v, fmt)


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="note">({_e(alt)}: not available)</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _findings(lines: Sequence[str]) -> str:
    return '<ul class="findings">' + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    flagged: Sequence[bool] | None = None,
    left: Sequence[int] = (0, 1),
) -> str:
    head = "".join(
        f'<th class="{"l" if i in left else ""}">{_e(h)}</th>' for i, h in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cls = ' class="flag"' if flagged and flagged[r] else ""
        cells = "".join(
            f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_ITEM_HEADER = (
    "item", "flags", "K", "a", "b", "n", "mean", "max I", "θ at max I",
    "min cat. p", "item–rest r", "infit", "outfit", "outfit p", "S-X²", "df", "S-X² p",
)  # fmt: skip


def _item_cells(it: ItemRow) -> list[str]:
    return [
        _e(it.id),
        _e(", ".join(it.flags) or "–"),
        str(it.n_categories),
        _num(it.a),
        '<span class="nw">' + _e(" ".join(f"{v:.2f}" for v in it.b)) + "</span>",
        str(it.n_obs),
        _num(it.mean_score),
        _num(it.max_information),
        _num(it.theta_at_max_information, ".2f"),
        _num(it.min_category_max_prob, ".2f"),
        _num(it.item_rest_r, "+.2f"),
        _num(it.infit, ".2f"),
        _num(it.outfit, ".2f"),
        _num(it.outfit_p, ".2g"),
        _num(it.sx2, ".1f"),
        _num(it.sx2_df),
        _num(it.sx2_p, ".2g"),
    ]


def _items_table(items: Sequence[ItemRow]) -> str:
    return _table(_ITEM_HEADER, [_item_cells(it) for it in items], [bool(it.flags) for it in items])


def _flagged_table(report: HealthReport, keep: Callable[[ItemRow], bool]) -> str:
    rows = [it for it in report.items if keep(it)]
    if not rows:
        return ""
    opened = " open" if len(rows) <= 25 else ""
    return (
        f"<details{opened}><summary>{len(rows)} flagged item(s)</summary>"
        + _items_table(rows)
        + "</details>"
    )


def render_html(report: HealthReport, figures: Mapping[str, bytes] | None = None) -> str:
    """The whole report as one HTML document (figures rendered here unless given)."""
    figs = render_figures(report) if figures is None else figures
    r = report
    d = r.discrimination
    ld = r.local_dependence
    pf = r.person_fit
    sections = list(SECTIONS)
    if r.dimensionality is not None:
        sections.insert(4, DIMENSIONS_SECTION)
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in sections)
    kpis = [
        ("subjects", r.data["n_subjects"]),
        ("items", r.bank["n_items"]),
        ("observations", r.data["n_observations"]),
        ("defective", len(d.defective)),
        ("suspect", len(d.suspect)),
        ("constant", len(d.constant)),
        ("misfitting", len(r.item_fit.misfit)),
        ("low slope", len(d.low_slope)),
        ("merged thresholds", len(d.merged_thresholds)),
        ("redundant groups", len(ld.clusters)),
        ("aberrant subjects", len(pf.flagged)),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Psychometric health — {_e(r.bank['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Psychometric health of bank “{_e(r.bank['name'])}”</h1>",
        f'<p class="meta">{_e(r.software)} · generated {_e(r.generated_at)} · responses '
        f"{_e(r.data['source'])} · bank {_e(r.bank.get('path') or '(in memory)')} "
        f"({_e(r.bank['status'])}, {_e(r.bank['method'])}) · schema v{r.schema_version}</p>",
        f"<nav>{nav}</nav>",
        '<section id="summary" class="summary"><h2 style="margin-top:.4em">Summary</h2>',
        '<div class="kpi">'
        + "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in kpis)
        + "</div>",
        _findings(r.summary),
        "</section>",
        # information
        '<section id="information"><h2>Test information and difficulty gaps</h2>',
        _findings(r.information.findings),
        _img(figs.get("information"), "test information curve"),
        _interval_table(r),
        "</section>",
        # discrimination
        '<section id="discrimination"><h2>Discrimination, thresholds and defective items</h2>',
        _findings(d.findings),
        _img(figs.get("item_curves"), "category response curves of selected items"),
        _flagged_table(
            r,
            lambda it: bool(
                {"defective", "suspect", "constant", "low_slope", "merged_thresholds"}
                & set(it.flags)
            ),
        ),
        "</section>",
        # item fit
        '<section id="item-fit"><h2>Item fit</h2>',
        _findings(r.item_fit.findings),
        _img(figs.get("item_fit"), "item fit and discrimination plots"),
        _flagged_table(r, lambda it: "misfit" in it.flags),
        "</section>",
        # local dependence
        '<section id="local-dependence"><h2>Redundancy (local dependence, Yen\'s Q3)</h2>',
        _findings(ld.findings),
        _img(figs.get("q3"), "Q3 heat map"),
        _pairs_table(r),
        "</section>",
        _dimensions(r),
        # person fit
        '<section id="person-fit"><h2>Person fit</h2>',
        _findings(pf.findings),
        _img(figs.get("person_fit"), "person fit plots"),
        _subjects_table(r, only_flagged=True),
        "</section>",
        '<section id="items"><h2>All items</h2><details><summary>'
        f"{len(r.items)} items (flagged rows shaded)</summary>",
        _items_table(r.items),
        "</details></section>",
        '<section id="subjects"><h2>All subjects</h2><details><summary>'
        f"{len(r.subjects)} subjects</summary>",
        _subjects_table(r, only_flagged=False),
        "</details></section>",
        '<section id="methods"><h2>Methods and thresholds</h2>',
        _methods(r),
        "</section></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _interval_table(r: HealthReport) -> str:
    rows = []
    for kind, ivs in (
        ("well measured", r.information.well_measured),
        ("gap (I below target)", r.information.gaps),
        (f"best {r.information.top_m} items reach target", r.information.top_m_well_measured),
    ):
        for iv in ivs:
            rows.append(
                [
                    _e(kind),
                    "",
                    f"{iv.lo:.2f}",
                    f"{iv.hi:.2f}",
                    str(iv.n_subjects),
                    f"{100 * iv.share_subjects:.0f} %",
                ]
            )
    return _table(["range", "", "θ from", "θ to", "subjects", "share"], rows) if rows else ""


def _pairs_table(r: HealthReport) -> str:
    ld = r.local_dependence
    out = []
    if ld.tag_dependence:
        out.append(
            _table(
                ["tag", "items", "mean Q3 within", "mean Q3 between", "permutation p", "by group"],
                [
                    [
                        _e(t.tag),
                        str(t.n_items),
                        f"{t.within:+.3f}",
                        f"{t.between:+.3f}",
                        f"{t.p_value:.3g}",
                        _e(", ".join(f"{g}: {_num(v, '+.2f')}" for g, v in t.groups.items())),
                    ]
                    for t in ld.tag_dependence
                ],
                left=(0, 5),
            )
        )
    if ld.clusters:
        out.append(
            _table(
                ["group", "items", "mean Q3 − mean"],
                [
                    [str(i + 1), _e(", ".join(c.items)), _num(c.mean_q3_adjusted, "+.2f")]
                    for i, c in enumerate(ld.clusters)
                ],
            )
        )
    if ld.flagged_pairs:
        shown = ld.flagged_pairs[:200]
        out.append(
            _table(
                ["item", "item", "Q3", "Q3 − mean", "common subjects", "p (family-wise)"],
                [
                    [
                        _e(p.item_a),
                        _e(p.item_b),
                        f"{p.q3:+.2f}",
                        f"{p.q3_adjusted:+.2f}",
                        str(p.n_common),
                        _num(p.p_adjusted, ".2g"),
                    ]
                    for p in shown
                ],
            )
        )
        if len(ld.flagged_pairs) > len(shown):
            out.append(
                f'<p class="note">{len(ld.flagged_pairs) - len(shown)} more pairs in the JSON '
                "report.</p>"
            )
    return "\n".join(out)


def _dimensions(r: HealthReport) -> str:
    dm = r.dimensionality
    if dm is None:
        return ""
    rows = []
    for f in dm.fits:
        corr = []
        for i in range(f.n_dims):
            for j in range(i + 1, f.n_dims):
                se = None if f.latent_correlation_se is None else f.latent_correlation_se[i][j]
                corr.append(
                    f"{f.dimensions[i]}~{f.dimensions[j]} {f.latent_correlation[i][j]:+.2f}"
                    + ("" if se is None else f" ({se:.2f})")
                )
        label = f"<b>{_e(f.label)}</b> (preferred)" if f.label == dm.preferred else _e(f.label)
        rows.append(
            [
                label + ("" if f.converged else " (not converged)"),
                str(f.n_parameters),
                f"{f.log_likelihood:.1f}",
                f"{f.aic:.1f}",
                f"{f.bic:.1f}",
                f"{f.heldout_per_response:.4f}",
                f"{f.folds_won}/{dm.folds}",
                _e("; ".join(corr) or "–"),
                _num(f.q3_max_abs, ".2f"),
                _num(f.q3_mean_abs, ".3f"),
                str(f.q3_flagged_pairs),
            ]
        )
    header = [
        "structure", "parameters", "log-lik", "AIC", "BIC", "held-out LL / response",
        "folds won", "latent correlation (SE)", "max |Q3|", "mean |Q3|",
        f"Q3 pairs > mean + {dm.q3_excess:g}",
    ]  # fmt: skip
    sid, title = DIMENSIONS_SECTION
    note = (
        f"Each structure calibrated afresh on these responses; held-out: {dm.folds} folds of "
        f"the {dm.n_heldout} response cells (seed {dm.seed}), each scored by "
        "p(x | the subject's other responses). Confirmatory pattern: "
        f"{dm.loadings or 'none (every D > 1 exploratory, oblimin)'}. Q3 over "
        f"{dm.q3_pairs_tested} pairs with ≥ {dm.q3_min_common} common subjects (effect-size "
        "rule only; the simulated null of the section above is for the bank's own model)."
    )
    return "\n".join(
        [
            f'<section id="{sid}"><h2>{_e(title)}</h2>',
            _findings(dm.findings),
            _table(header, rows, left=(0, 7)),
            f'<p class="note">{_e(note)}</p>',
            "</section>",
        ]
    )


def _subjects_table(r: HealthReport, *, only_flagged: bool) -> str:
    subs = [s for s in r.subjects if s.flagged] if only_flagged else list(r.subjects)
    if only_flagged:
        subs.sort(key=lambda s: (s.fit_p if s.fit_p is not None else 1.0, s.lz or 0.0))
    if not subs:
        return ""
    return _table(
        ["subject", "", "θ̂", "SE", "items", "l_z", "person-fit p"],
        [
            [
                _e(s.subject),
                "flagged" if s.flagged else "",
                f"{s.theta:+.2f}",
                f"{s.se:.2f}",
                str(s.n_items),
                _num(s.lz, "+.2f"),
                _num(s.fit_p, ".3g"),
            ]
            for s in subs
        ],
        [s.flagged for s in subs],
    )


def _methods(r: HealthReport) -> str:
    stats_rows = [[_e(k), _e(v)] for k, v in r.item_fit.statistics.items()]
    stats_rows.append([_e("person fit"), _e(r.person_fit.statistic)])
    stats_rows.append(
        [
            _e("item–rest r"),
            _e(
                "Pearson correlation of an item's score with the EAP θ estimated from all the "
                "subject's other items; unconstrained, so a reversed item shows as negative; "
                "defective = significantly below min_item_rest (one-sided Fisher z, BH FDR)"
            ),
        ]
    )
    stats_rows.append(
        [
            _e("tag dependence"),
            _e(
                "mean Q3 over pairs of items sharing a tag value vs pairs across values; "
                "permutation test (tag values shuffled over items)"
            ),
        ]
    )
    stats_rows.append(
        [
            _e("Q3"),
            _e(
                "correlation of residuals x − E[X | θ̂] over subjects who answered both items; "
                "flag = Q3 − mean above both the excess and the critical value of the largest "
                "Q3 − mean in data simulated from the model (family-wise error alpha)"
            ),
        ]
    )
    th_rows = [[_e(k), _e(v)] for k, v in r.thresholds.model_dump().items()]
    return (
        "<h3>Statistics</h3>"
        + _table(["statistic", "definition and assumptions"], stats_rows).replace(
            '<td class="l">', '<td class="l" style="text-align:left">'
        )
        + "<h3>Thresholds used</h3>"
        + _table(["setting", "value"], th_rows)
        + f'<p class="note">Abilities: {_e(r.data["theta_method"])}. '
        + f"S-X²: {_e(r.item_fit.sx2_status)}.</p>"
    )


def write_report(
    report: HealthReport,
    out_html: str | os.PathLike[str],
    *,
    figures_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``out_html`` and its JSON twin (same stem, ``.json``) atomically.

    Args:
        figures_dir: Also write each figure there as ``<name>.png``.

    Returns:
        ``(html_path, json_path)``.
    """
    html_path = Path(out_html)
    json_path = html_path.with_suffix(".json")
    figs = render_figures(report)
    atomic_write_text(html_path, render_html(report, figs))
    atomic_write_json(json_path, report.to_dict())
    if figures_dir is not None:
        for name, png in figs.items():
            atomic_write_bytes(Path(figures_dir) / f"{name}.png", png)
    return html_path, json_path
