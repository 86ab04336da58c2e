"""Pictures of a :class:`HealthReport` (matplotlib, Agg, no global pyplot state).

Each function returns PNG bytes, so the HTML report can embed them and the
CLI can write them next to it. Figures use the object API (``Figure``), never
``pyplot``, so rendering in a server or a test leaks no state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.ticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from numpy.typing import NDArray
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from orchestrator.irt.grm import category_probs, expected_score, pad_thresholds
from orchestrator.report.schema import HealthReport, ItemRow

__all__ = [
    "information_figure",
    "item_curves_figure",
    "item_fit_figure",
    "person_fit_figure",
    "q3_figure",
    "q3_order",
    "render_figures",
    "select_items",
]

FloatArray = NDArray[np.float64]
_FLAG_COLOURS = {
    "defective": "#c0392b",
    "suspect": "#e67e22",
    "misfit": "#b8860b",
    "local_dependence": "#8e44ad",
    "merged_thresholds": "#2980b9",
    "low_slope": "#7f8c8d",
    "constant": "#34495e",
}
_SHORT = {
    "defective": "DEFECTIVE",
    "suspect": "suspect (low item–rest r)",
    "constant": "constant (one score)",
    "misfit": "misfit",
    "local_dependence": "loc. dependent",
    "merged_thresholds": "merged thresholds",
    "low_slope": "low a",
}
_DPI = 100


def _png(fig: Figure) -> bytes:
    """PNG bytes, quantised to a 256-colour palette (line plots and a 256-level
    colour map lose nothing visible; files shrink about threefold)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _numbered(
    ax: Axes, xs: Sequence[float], ys: Sequence[float], names: Sequence[str], colour: str
) -> None:
    """Number the points and list the names under the axes (labels on points pile up)."""
    if not names:
        return
    for k, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        ax.annotate(
            str(k), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=7,
            color=colour, fontweight="bold",
        )  # fmt: skip
    lines = [f"{k}  {n}" for k, n in enumerate(names, start=1)]
    ax.text(
        0.0, -0.25, "\n".join(lines), transform=ax.transAxes, va="top", ha="left",
        fontsize=7, color=colour, family="monospace",
    )  # fmt: skip


# --------------------------------------------------------------------------- information
def information_figure(report: HealthReport) -> bytes:
    """Test information and best-m information over θ (SE scale at right), θ̂ histogram below."""
    inf = report.information
    theta = np.asarray(inf.theta)
    total = np.asarray(inf.total_information)
    top = np.asarray(inf.top_m_information)
    th_hat = np.array([s.theta for s in report.subjects])
    fig = Figure(figsize=(10, 6.2))
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 1.2], hspace=0.08)
    ax = fig.add_subplot(gs[0])
    ax_h = fig.add_subplot(gs[1], sharex=ax)
    for gap in inf.gaps:
        for a in (ax, ax_h):
            a.axvspan(gap.lo, gap.hi, color="#e74c3c", alpha=0.09, lw=0)
    ax.plot(theta, total, color="#2c3e50", lw=2, label=f"whole bank ({len(report.items)} items)")
    ax.plot(theta, top, color="#16a085", lw=1.5, ls="--", label=f"best {inf.top_m} items at each θ")
    ax.axhline(
        inf.target_information,
        color="#c0392b",
        lw=1,
        ls=":",
        label=f"target I = {inf.target_information:.1f} (SE {inf.se_target:g})",
    )
    ymax = max(float(total.max()), inf.target_information) * 1.15
    ax.set_ylim(0, ymax)
    ax.set_ylabel("test information I(θ)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(
        f"Test information vs. subjects' abilities — bank {report.bank['name']!r} "
        "(red bands: information below target)",
        fontsize=10,
    )
    ax.tick_params(labelbottom=False)
    se_ax = ax.secondary_yaxis(
        "right",
        functions=(
            lambda i: 1 / np.sqrt(np.maximum(i, 1e-9)),
            lambda s: 1 / np.maximum(s, 1e-9) ** 2,
        ),
    )
    se_ticks: list[float] = [inf.se_target] if 1 / inf.se_target**2 <= ymax else []
    for s in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0):  # keep ticks ≥ 5 % of the axis apart
        i = 1 / s**2
        if i <= ymax and all(abs(i - 1 / t**2) >= 0.05 * ymax for t in se_ticks):
            se_ticks.append(s)
    se_ax.set_yticks(se_ticks)
    se_ax.set_ylabel("SE = 1/√I")
    bins = np.linspace(theta[0], theta[-1], 61)
    ax_h.hist(th_hat, bins=bins, color="#95a5a6", edgecolor="white")
    ax_h.plot(th_hat, np.zeros_like(th_hat), "|", color="#2c3e50", ms=8, alpha=0.6)
    ax_h.set_ylabel("subjects")
    ax_h.set_xlabel("θ (subjects: EAP θ̂)")
    lo = min(float(th_hat.min()) - 1.0, -3.0)
    hi = max(float(th_hat.max()) + 1.0, 3.0)
    ax.set_xlim(max(lo, theta[0]), min(hi, theta[-1]))
    return _png(fig)


# --------------------------------------------------------------------------- item curves
def select_items(report: HealthReport, n_flagged: int = 9, n_good: int = 3) -> list[int]:
    """Items worth a picture: the worst of each kind of flag in turn, then healthy ones.

    Flags take turns (worst item of each kind first) so that one abundant
    kind cannot fill every panel; healthy items are the most informative
    ones whose scores vary.
    """
    items = report.items
    inf = float("inf")
    severity = {
        "defective": lambda it: it.item_rest_r if it.item_rest_r is not None else inf,
        "suspect": lambda it: it.item_rest_r if it.item_rest_r is not None else inf,
        "misfit": lambda it: -(it.outfit or 0.0),
        "local_dependence": lambda it: 0.0,
        "merged_thresholds": lambda it: it.min_category_max_prob or 0.0,
        "low_slope": lambda it: it.a,
        "constant": lambda it: 0.0,
    }
    queues = []
    for flag in _FLAG_COLOURS:
        members = [i for i, it in enumerate(items) if flag in it.flags and it.n_obs > 0]
        queues.append(sorted(members, key=lambda i, f=flag: severity[f](items[i])))
    chosen: list[int] = []
    while len(chosen) < n_flagged and any(queues):
        for q in queues:
            while q and q[0] in chosen:
                q.pop(0)
            if q and len(chosen) < n_flagged:
                chosen.append(q.pop(0))
    good = [
        i for i, it in enumerate(items)
        if not it.flags and it.n_obs > 0 and it.item_rest_r is not None
    ]  # fmt: skip
    clear = [i for i in good if (items[i].item_rest_r or 0.0) >= 0.3]
    good = clear if len(clear) >= n_good else good  # clear examples when there are enough
    good.sort(key=lambda i: -items[i].max_information)
    step = max(1, len(good) // max(n_good, 1))
    return chosen + good[::step][:n_good]


def _wrap_id(item_id: str, width: int = 30) -> str:
    """Break long dotted ids at a dot so that no part is cut off."""
    if len(item_id) <= width:
        return item_id
    cut = item_id.rfind(".", 0, width)
    if cut <= 0:
        return item_id[: width - 1] + "…"
    return item_id[: cut + 1] + "\n" + _wrap_id(item_id[cut + 1 :], width)


def item_curves_figure(report: HealthReport, items: Sequence[int] | None = None) -> bytes:
    """Category response curves with observed mean scores (by θ without the item) on top."""
    sel = list(select_items(report) if items is None else items)
    n = max(len(sel), 1)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.2 * cols, 2.9 * rows))
    theta = np.linspace(-4, 4, 161)
    arrays = report.arrays
    k_max = max((report.items[i].n_categories for i in sel), default=2)
    palette = matplotlib.colormaps["viridis"](np.linspace(0.05, 0.85, k_max))
    for p, i in enumerate(sel):
        it = report.items[i]
        ax = fig.add_subplot(rows, cols, p + 1)
        _item_panel(ax, it, theta, arrays, i, palette)
        if p % cols == 0:
            ax.set_ylabel("P(category) / mean score")
        if p // cols == rows - 1:
            ax.set_xlabel("θ")
    if not sel:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no observed items", ha="center", va="center")
        ax.set_axis_off()
    handles = [
        Line2D(
            [],
            [],
            color=palette[c],
            label=f"P(category {c})" + (" = top" if c == k_max - 1 else ""),
        )
        for c in range(k_max)
    ]
    handles += [
        Line2D([], [], color="black", lw=1.6, label="expected score / (K−1)"),
        Line2D(
            [],
            [],
            color="black",
            marker="o",
            ls="",
            label="observed mean score / (K−1), binned by θ without the item",
        ),
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False
    )
    fig.suptitle("Category response curves of flagged items (then a few healthy ones)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.1, 1, 1))
    return _png(fig)


def _item_panel(
    ax: Axes, it: ItemRow, theta: FloatArray, arrays: object, i: int, palette: FloatArray
) -> None:
    b, _ = pad_thresholds([it.b])
    a = np.array([it.a])
    k = it.n_categories
    probs = category_probs(theta, a, b)[:, 0, :k]
    for c in range(k):
        colour = palette[c] if c < k - 1 else palette[-1]  # the top category keeps one colour
        ax.plot(theta, probs[:, c], color=colour, lw=1.2)
    ax.plot(theta, expected_score(theta, a, b)[:, 0] / (k - 1), color="black", lw=1.6)
    obs_item = getattr(arrays, "obs_item", None)
    if obs_item is not None:
        sel = obs_item == i
        t = arrays.obs_theta_rest[sel]  # type: ignore[attr-defined]
        x = arrays.obs_score[sel]  # type: ignore[attr-defined]
        if t.size >= 4:
            n_bins = int(np.clip(t.size // 10, 3, 8)) if t.size >= 30 else max(2, t.size // 4)
            edges = np.quantile(t, np.linspace(0, 1, n_bins + 1))
            which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
            cnt = np.bincount(which, minlength=n_bins)
            ok = cnt > 0
            mt = np.bincount(which, weights=t, minlength=n_bins)[ok] / cnt[ok]
            mx = np.bincount(which, weights=x, minlength=n_bins)[ok] / cnt[ok]
            ax.scatter(mt, mx / (k - 1), s=10 + 3 * np.sqrt(cnt[ok]), color="black", zorder=5)
    flags = ", ".join(_SHORT[f] for f in it.flags) if it.flags else "no flags"
    first = next((f for f in _FLAG_COLOURS if f in it.flags), None)
    colour = _FLAG_COLOURS[first] if first else "#27ae60"
    r = f"{it.item_rest_r:+.2f}" if it.item_rest_r is not None else "n/a"
    ident = _wrap_id(it.id)
    ax.set_title(
        f"{ident}\n{flags}\na = {it.a:.2f}, item–rest r = {r}, n = {it.n_obs}",
        fontsize=7.5,
        color=colour,
    )
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(theta[0], theta[-1])
    ax.tick_params(labelsize=7)


# --------------------------------------------------------------------------- Q3
def q3_order(q3: FloatArray, clusters: Sequence[Sequence[int]]) -> list[int]:
    """Display order: flagged clusters contiguous (largest first), the rest by average linkage."""
    n = q3.shape[0]
    observed = np.flatnonzero(np.isfinite(q3).any(axis=1))
    in_cluster = [i for c in clusters for i in c]
    rest = np.setdiff1d(observed, in_cluster)
    if rest.size > 2:
        sub = np.nan_to_num(q3[np.ix_(rest, rest)], nan=0.0)
        dist = np.clip(1.0 - sub, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        rest = rest[leaves_list(linkage(squareform(dist, checks=False), method="average"))]
    order = in_cluster + [int(i) for i in rest]
    return order if n else []


def q3_figure(report: HealthReport) -> bytes | None:
    """Heat map of Q3 with flagged clusters boxed; None when the matrix is unavailable."""
    if report.arrays is None:
        return None
    ids = [it.id for it in report.items]
    pos = {iid: i for i, iid in enumerate(ids)}
    clusters = [[pos[i] for i in c.items] for c in report.local_dependence.clusters]
    order = q3_order(report.arrays.q3, clusters)
    if len(order) < 2:
        return None
    mat = report.arrays.q3[np.ix_(order, order)]
    n = len(order)
    size = 7.5 if n > 40 else 5.5
    fig = Figure(figsize=(size + 1.4, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="Q3 (residual correlation)")
    start = 0
    for c in clusters:
        ax.add_patch(
            Rectangle((start - 0.5, start - 0.5), len(c), len(c), fill=False, ec="#111111", lw=1.4)
        )
        start += len(c)
    if n <= 60:
        labels = [ids[i] for i in order]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(n), labels, fontsize=6)
    else:
        n_cl = sum(len(c) for c in clusters)
        ax.set_xticks([])
        ax.set_yticks(range(n_cl), [ids[i] for i in order[:n_cl]], fontsize=6)
        ax.set_xlabel(f"{n} items (flagged clusters first, then ordered by average linkage)")
    ld = report.local_dependence
    _tag_strips(ax, report, order)
    mean = f"{ld.mean_q3:+.3f}" if ld.mean_q3 is not None else "n/a"
    ax.set_title(f"Yen's Q3 (mean {mean}); boxed: {len(clusters)} redundant group(s)", fontsize=10)
    return _png(fig)


def _tag_strips(ax: Axes, report: HealthReport, order: Sequence[int]) -> None:
    """Colour strips along both edges for the tag with the strongest within-group dependence."""
    rows = report.local_dependence.tag_dependence
    if not rows:
        return
    best = min(rows, key=lambda t: (t.p_value, -(t.within - t.between)))
    values = [report.items[i].tags.get(best.tag) for i in order]
    groups = sorted({v for v in values if v is not None})
    if not 2 <= len(groups) <= 20:
        return
    cmap = matplotlib.colormaps["tab20" if len(groups) > 10 else "tab10"]
    colour = {g: cmap(k) for k, g in enumerate(groups)}
    strip = np.array([colour[v] if v is not None else (1, 1, 1, 1) for v in values])
    left = ax.inset_axes((-0.045, 0.0, 0.03, 1.0))
    top = ax.inset_axes((0.0, 1.015, 1.0, 0.03))
    left.imshow(strip[:, None, :], aspect="auto", interpolation="nearest")
    top.imshow(strip[None, :, :], aspect="auto", interpolation="nearest")
    for a in (left, top):
        a.set_axis_off()
    handles = [Rectangle((0, 0), 1, 1, color=colour[g], label=g) for g in groups]
    ax.legend(
        handles=handles,
        title=f"{best.tag} (p = {best.p_value:.2g})",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.06),
        ncol=min(len(groups), 5),
        frameon=False,
    )


# --------------------------------------------------------------------------- item fit
def item_fit_figure(report: HealthReport) -> bytes:
    """Infit vs outfit, discrimination (a vs item–rest r) and, if computed, S-X² p-values."""
    items = [it for it in report.items if it.n_obs > 0]
    has_sx2 = any(it.sx2_p is not None for it in items)
    ncol = 3 if has_sx2 else 2
    fig = Figure(figsize=(4.6 * ncol, 4.3))
    th = report.thresholds

    ax = fig.add_subplot(1, ncol, 1)
    inf = np.array([np.nan if it.infit is None else it.infit for it in items])
    out = np.array([np.nan if it.outfit is None else it.outfit for it in items])
    ax.add_patch(
        Rectangle(
            (th.ms_low, th.ms_low),
            th.ms_high - th.ms_low,
            th.ms_high - th.ms_low,
            color="#2ecc71",
            alpha=0.15,
            lw=0,
        )
    )
    ax.plot([0.05, 50], [0.05, 50], color="#bdc3c7", lw=0.6, zorder=0)
    ax.scatter(inf, out, s=12, color=_colours(items), alpha=0.8)
    worst = sorted(
        (k for k, it in enumerate(items) if {"misfit", "defective"} & set(it.flags)),
        key=lambda k: -np.nan_to_num(out[k]),
    )[:6]
    _numbered(
        ax, [inf[k] for k in worst], [out[k] for k in worst],
        [items[k].id for k in worst], _FLAG_COLOURS["misfit"],
    )  # fmt: skip
    _log_axis(ax, "x", np.r_[inf, th.ms_low, th.ms_high])
    _log_axis(ax, "y", np.r_[out, th.ms_low, th.ms_high])
    ax.set_xlabel("infit mean square")
    ax.set_ylabel("outfit mean square")
    ax.set_title(
        f"Item fit (green: both in [{th.ms_low:g}, {th.ms_high:g}]; > 1 noisier than the model)",
        fontsize=9,
    )

    ax = fig.add_subplot(1, ncol, 2)
    a = np.array([it.a for it in items])
    r = np.array([np.nan if it.item_rest_r is None else it.item_rest_r for it in items])
    ax.axhline(th.min_item_rest, color="#c0392b", ls=":", lw=1)
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(th.min_slope, color="#7f8c8d", ls=":", lw=1)
    ax.scatter(a, r, s=12, color=_colours(items), alpha=0.8)
    worst = sorted(
        (k for k, it in enumerate(items) if {"defective", "suspect", "low_slope"} & set(it.flags)),
        key=lambda k: np.nan_to_num(r[k]),
    )[:6]
    _numbered(
        ax, [a[k] for k in worst], [r[k] for k in worst],
        [items[k].id for k in worst], _FLAG_COLOURS["defective"],
    )  # fmt: skip
    _log_axis(ax, "x", np.r_[a, th.min_slope])
    ax.margins(y=0.08)
    ax.set_xlabel("calibrated slope a (log scale)")
    ax.set_ylabel("item–rest r (score vs θ without the item)")
    ax.set_title("Discrimination: calibrated vs unconstrained", fontsize=9)

    if has_sx2:
        ax = fig.add_subplot(1, ncol, 3)
        p = np.array([it.sx2_p for it in items if it.sx2_p is not None])
        ax.hist(p, bins=np.linspace(0, 1, 21), color="#34495e", edgecolor="white")
        ax.axhline(len(p) / 20, color="#c0392b", ls=":", lw=1, label="uniform (model fits)")
        ax.set_xlabel("S-X² p-value")
        ax.set_ylabel("items")
        ax.legend(fontsize=7, frameon=False)
        ax.set_title("S-X² p-values", fontsize=9)
    handles = [
        Line2D([], [], marker="o", ls="", color=c, label=name.replace("_", " "))
        for name, c in _FLAG_COLOURS.items()
    ]
    handles.append(Line2D([], [], marker="o", ls="", color="#27ae60", label="no flag"))
    fig.legend(handles=handles, loc="upper center", ncol=8, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return _png(fig)


_NICE_TICKS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.3, 2, 3, 5, 10, 20, 50, 100, 200)


def _log_axis(ax: Axes, which: str, values: FloatArray) -> None:
    """Log scale with plain-number ticks and the data (plus 15 % room) in view."""
    v = values[np.isfinite(values) & (values > 0)]
    lo, hi = (float(v.min()) / 1.15, float(v.max()) * 1.15) if v.size else (0.5, 2.0)
    ticks = [t for t in _NICE_TICKS if lo <= t <= hi]
    fmt = matplotlib.ticker.FuncFormatter(lambda t, _pos: f"{t:g}")
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)
    axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _colours(items: Sequence[ItemRow]) -> list[str]:
    out = []
    for it in items:
        first = next((f for f in _FLAG_COLOURS if f in it.flags), None)
        out.append(_FLAG_COLOURS[first] if first else "#27ae60")
    return out


# --------------------------------------------------------------------------- person fit
def person_fit_figure(report: HealthReport) -> bytes:
    """Person-fit p-values (uniform if every subject fits), and l_z against θ̂, flagged named."""
    pf = report.person_fit
    subs = [s for s in report.subjects if s.fit_p is not None and s.n_items >= pf.min_items]
    p = np.array([s.fit_p for s in subs], dtype=float)
    lz = np.array([np.nan if s.lz is None else s.lz for s in subs], dtype=float)
    th = np.array([s.theta for s in subs], dtype=float)
    fig = Figure(figsize=(10, 3.9))
    ax = fig.add_subplot(1, 2, 1)
    if p.size:
        bins = np.linspace(0.0, 1.0, 21)
        ax.hist(p, bins=bins, color="#95a5a6", edgecolor="white", label="subjects")
        ax.axhline(p.size / 20, color="#2c3e50", label="uniform (all fit)")
    ax.axvline(pf.alpha, color="#c0392b", ls=":", label=f"flag below {pf.alpha:g}")
    ax.set_xlabel("person-fit p-value")
    ax.set_ylabel("subjects")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"Person fit: {len(pf.flagged)} of {pf.n_evaluated} flagged", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    flagged = np.array([s.flagged for s in subs], dtype=bool)
    ax.scatter(th[~flagged], lz[~flagged], s=10, color="#7f8c8d", alpha=0.7)
    ax.scatter(th[flagged], lz[flagged], s=16, color="#c0392b")
    named = sorted((s for s in subs if s.flagged), key=lambda s: (s.fit_p, s.lz or 0.0))[:10]
    _numbered(
        ax, [s.theta for s in named], [s.lz or 0.0 for s in named],
        [f"{s.subject} (p {s.fit_p:.2g})" for s in named], "#c0392b",
    )  # fmt: skip
    ax.set_xlabel("θ̂ (EAP)")
    ax.set_ylabel("l_z")
    ax.set_title("l_z against ability (red: flagged by the p-value)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- all
def render_figures(report: HealthReport) -> dict[str, bytes]:
    """Every figure of the report, by file stem (the Q3 map only when its matrix is present)."""
    figs = {
        "information": information_figure(report),
        "item_curves": item_curves_figure(report),
        "item_fit": item_fit_figure(report),
        "person_fit": person_fit_figure(report),
    }
    q3 = q3_figure(report)
    if q3 is not None:
        figs["q3"] = q3
    return figs
