"""The θ ± SE trajectory of a live session, as a PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from orchestrator._io import atomic_write_bytes

__all__ = ["plot_trajectory"]


def plot_trajectory(summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Plot θ after each step with its SE bands (top) and the SE against its target (bottom).

    Each step's marker shows the score the item got (one legend entry per score);
    a demo session's true θ and the SE stopping target are drawn as dashed lines.

    A session on a bank of several dimensions gets one panel per dimension,
    each labelled with the dimension's name. With person fit journalled, a
    lower panel shows its p-value after each step (log scale) against the
    level at which the session is flagged.

    Args:
        summary: A session summary (``agentcat show --json``).
        path: PNG file to write.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    traj = summary["trajectory"]
    names = list(summary.get("dimensions") or [None])
    fit_p = np.array([np.nan if t.get("fit_p") is None else t["fit_p"] for t in traj], dtype=float)
    has_fit = bool(np.isfinite(fit_p).any())
    fig, axes = plt.subplots(
        len(names) + 1 + has_fit, 1, figsize=(8, 3.0 * len(names) + 3.0 + 1.5 * has_fit),
        dpi=110, sharex=True, height_ratios=[2.2] * len(names) + [1] + [1.2] * has_fit,
        layout="constrained", squeeze=False,
    )  # fmt: skip
    ax_se = axes[len(names), 0]
    true_theta, se_target = summary.get("true_theta"), summary.get("se_target")
    n = np.arange(1, len(traj) + 1)
    scores = np.array([t["score"] for t in traj], dtype=int)
    labels = {int(t["score"]): t.get("label") for t in traj}
    colours = plt.get_cmap("RdYlGn")(np.linspace(0.0, 1.0, max(4, int(scores.max(initial=0)) + 1)))
    for name, ax in zip(names, axes[: len(names), 0], strict=True):
        if traj:
            steps = [t if name is None else t["dimensions"][name] for t in traj]
            theta = np.array([t["theta"] for t in steps], dtype=float)
            se = np.array([t["se"] for t in steps], dtype=float)
            band = {"color": "tab:blue", "lw": 0}
            ax.fill_between(
                n, theta - 1.96 * se, theta + 1.96 * se, alpha=0.12, label="95% interval", **band
            )
            ax.fill_between(n, theta - se, theta + se, alpha=0.28, label="±1 SE", **band)
            ax.plot(n, theta, "-", color="black", lw=1)
            for k in sorted(labels):
                at = scores == k
                what = f"score {k}" + (f" ({labels[k]})" if labels[k] else "")
                ax.scatter(
                    n[at], theta[at], color=colours[k], edgecolor="black", lw=0.4, zorder=3,
                    label=what,
                )  # fmt: skip
            ax_se.plot(n, se, "o-", ms=3, lw=1, label="SE" + ("" if name is None else f": {name}"))
        if true_theta is not None:  # a number serves every dimension
            at = names.index(name)
            value = float(np.broadcast_to(np.atleast_1d(true_theta), (len(names),))[at])
            ax.axhline(value, color="tab:purple", ls="--", lw=1.2, label=f"true θ {value:+g}")
        ax.set_ylabel("θ (safety ability)" if name is None else f"θ: {name}")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        ax.grid(alpha=0.3)
    if se_target is not None:
        ax_se.axhline(se_target, color="tab:red", ls="--", lw=1.2, label=f"SE target {se_target:g}")
    axes[0, 0].set_title(f"{summary['session']} — {summary['model']}", fontsize=10)
    if has_fit:
        ax_fit = axes[-1, 0]
        fit = summary.get("person_fit") or {}
        alpha = fit.get("alpha", 0.05)
        ax_fit.semilogy(n, np.clip(fit_p, 1e-4, 1.0), "o-", color="tab:purple", ms=3, lw=1)
        ax_fit.axhline(alpha, color="tab:red", ls="--", lw=1, label=f"flag below p = {alpha:g}")
        ax_fit.set_ylim(1e-4 * 0.8, 1.2)
        ax_fit.set_ylabel("person-fit p")
        ax_fit.legend(loc="lower left", fontsize=8)
        ax_fit.grid(alpha=0.3)
        if fit.get("flagged"):
            axes[0, 0].text(
                0.01, 0.02, "θ may not describe this model (person fit)",
                transform=axes[0, 0].transAxes, color="tab:red", fontsize=9,
            )  # fmt: skip
    axes[-1, 0].set_xlabel("items administered")
    ax_se.set_ylabel("SE after the step")
    ax_se.set_ylim(bottom=0)
    ax_se.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax_se.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
