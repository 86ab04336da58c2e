"""Figures of a validity report: a correlation heatmap with intervals and a scatter per pair.

Like :mod:`orchestrator.report.plots`: matplotlib's object API (no pyplot
state), each function returns PNG bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from orchestrator.report.plots import _numbered, _png
from orchestrator.report.validity import ValidityReport

__all__ = ["heatmap_figure", "render_validity_figures", "scatter_figure", "scatter_name"]

_NUMBER_POINTS_UP_TO = 30


def _cell_text(iv: dict[str, Any] | None, n: int) -> str:
    if iv is None or iv.get("estimate") is None:
        return f"n = {n}"
    band = ""
    if iv.get("lo") is not None and iv.get("hi") is not None:
        band = f"\n[{iv['lo']:.2f}, {iv['hi']:.2f}]"
    return f"{iv['estimate']:.2f}{band}\nn = {n}"


def heatmap_figure(report: ValidityReport) -> bytes:
    """θ̂ and raw-accuracy correlation matrices: observed r below the diagonal,
    disattenuated r above it, each with its bootstrap interval and n."""
    doc = report.to_dict()
    labels = [s["label"] for s in doc["scales"]]
    k = len(labels)
    pos = {lab: i for i, lab in enumerate(labels)}
    side = max(4.5, 1.25 * k + 1.5)
    fig = Figure(figsize=(2 * side, side))
    cmap = colormaps["RdBu_r"]
    norm = Normalize(-1.0, 1.0)
    for panel, (key, title) in enumerate((("theta", "θ̂ (EAP)"), ("raw", "raw accuracy"))):
        ax = fig.add_subplot(1, 2, panel + 1)
        ax.set_xlim(-0.5, k - 0.5)
        ax.set_ylim(k - 0.5, -0.5)
        for p in doc["pairs"]:
            i, j = pos[p["a"]], pos[p["b"]]
            stats = p[key]
            for (row, col), stat in (((j, i), "pearson"), ((i, j), "disattenuated")):
                iv = stats[stat] if stats else None
                value = iv["estimate"] if iv and iv.get("estimate") is not None else None
                colour = "#e6e6e6" if value is None else cmap(norm(np.clip(value, -1, 1)))
                ax.add_patch(_square(col, row, colour))
                dark = value is not None and abs(value) > 0.6
                ax.text(
                    col,
                    row,
                    _cell_text(iv, p["n"]),
                    ha="center",
                    va="center",
                    fontsize=7 if k <= 6 else 6,
                    color="white" if dark else "#1d2731",
                )
        for i, sc in enumerate(doc["scales"]):  # diagonal: reliability over all subjects
            ax.add_patch(_square(i, i, "#ffffff"))
            rel = sc["reliability_all_subjects"] if key == "theta" else None
            text = (
                f"rel {rel:.2f}\nn = {sc['n_models']}"
                if rel is not None
                else f"n = {sc['n_models']}"
            )
            ax.text(i, i, text, ha="center", va="center", fontsize=7, color="#636e72")
        ax.set_xticks(range(k), labels, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        ax.set_title(
            f"{title}: observed r below, disattenuated r above the diagonal\n"
            "(95 % bootstrap interval, shared models n; diagonal: reliability, models)",
            fontsize=9,
        )
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=fig.axes,
        shrink=0.6,
        label="r (colour clipped to ±1)",
    )
    return _png(fig)


def _square(x: float, y: float, colour: Any) -> Rectangle:
    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=colour, edgecolor="white", lw=1.5)


def scatter_name(a: str, b: str) -> str:
    """File stem of the scatter of pair (a, b)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{a}__{b}")
    return f"scatter_{safe}"


def scatter_figure(report: ValidityReport, pair: dict[str, Any]) -> bytes:
    """θ̂ on bank b against θ̂ on bank a for the shared models, ±1 SE bars, least-squares line."""
    a, b = report.scale(pair["a"]), report.scale(pair["b"])
    shared = report.shared(pair["a"], pair["b"])
    ta, sa, _, _ = a.take(shared)
    tb, sb, _, _ = b.take(shared)
    n = len(shared)
    fig = Figure(figsize=(5.2, 4.6 if n > _NUMBER_POINTS_UP_TO else 5.8))
    ax = fig.add_subplot(1, 1, 1)
    many = n > 300
    ax.errorbar(
        ta,
        tb,
        xerr=sa,
        yerr=sb,
        fmt="o",
        ms=1.5 if many else 4,
        color="#2c3e50",
        ecolor="#7f8c8d",
        elinewidth=0.4 if many else 0.8,
        alpha=0.25 if many else 0.9,
    )
    if n >= 3 and np.ptp(ta) > 0:
        slope, intercept = np.polyfit(ta, tb, 1)
        xs = np.array([ta.min(), ta.max()])
        ax.plot(xs, intercept + slope * xs, color="#c0392b", lw=1.2, label="least squares")
        ax.legend(loc="lower right", fontsize=7)
    if n <= _NUMBER_POINTS_UP_TO:
        _numbered(ax, ta.tolist(), tb.tolist(), shared, "#2c3e50")
    t = pair["theta"]
    title = f"{pair['a']} × {pair['b']} (n = {n})"
    if t is not None:
        title += (
            f"\nr = {t['pearson']['estimate']:.2f}, disattenuated "
            f"{_fmt(t['disattenuated']['estimate'])}"
        )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"θ̂ on {pair['a']} (±1 SE)", fontsize=8)
    ax.set_ylabel(f"θ̂ on {pair['b']} (±1 SE)", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def render_validity_figures(report: ValidityReport) -> dict[str, bytes]:
    """Every figure by file stem: ``heatmap`` and one ``scatter_<a>__<b>`` per pair with n ≥ 2."""
    figs = {"heatmap": heatmap_figure(report)}
    for p in report.to_dict()["pairs"]:
        if p["n"] >= 2:
            figs[scatter_name(p["a"], p["b"])] = scatter_figure(report, p)
    return figs
