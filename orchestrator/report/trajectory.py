"""The θ ± SE trajectory of a live session, as a PNG."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_trajectory"]


def plot_trajectory(summary: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Plot θ after each step with a ±1 SE band (and the 95 % band at the end).

    A session on a bank of several dimensions gets one panel per dimension,
    each labelled with the dimension's name. With person fit journalled, a
    lower panel shows its p-value after each step (log scale) against the
    level at which the session is flagged.

    Args:
        summary: A session summary (``agentcat show --json``).
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    traj = summary["trajectory"]
    names = list(summary.get("dimensions") or [None])
    fit_p = np.array([np.nan if t.get("fit_p") is None else t["fit_p"] for t in traj], dtype=float)
    has_fit = bool(np.isfinite(fit_p).any())
    fig, axes = plt.subplots(
        len(names) + has_fit, 1,
        figsize=(8, (4.5 if len(names) == 1 else 3.2 * len(names)) + 1.5 * has_fit), dpi=110,
        sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [3.0] * len(names) + [1.2] * has_fit},
    )  # fmt: skip
    for name, ax in zip(names, axes[: len(names), 0], strict=True):
        if traj:
            steps = [t if name is None else t["dimensions"][name] for t in traj]
            n = np.arange(1, len(traj) + 1)
            theta = np.array([t["theta"] for t in steps], dtype=float)
            se = np.array([t["se"] for t in steps], dtype=float)
            ax.fill_between(
                n, theta - 1.96 * se, theta + 1.96 * se, alpha=0.15, label="95% interval"
            )
            ax.fill_between(n, theta - se, theta + se, alpha=0.3, label="±1 SE")
            ax.plot(n, theta, "-", color="black", lw=1)
            scores = np.array([t["score"] for t in traj], dtype=float)
            sc = ax.scatter(
                n,
                theta,
                c=scores,
                cmap="RdYlGn",
                vmin=0,
                vmax=max(3, scores.max()),
                zorder=3,
                edgecolor="black",
                linewidth=0.4,
            )
            fig.colorbar(sc, ax=ax, label="score of the item at this step")
        ax.set_ylabel("θ (safety ability)" if name is None else f"θ: {name}")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{summary['session']} — {summary['model']}", fontsize=10)
    if has_fit:
        ax_fit = axes[-1, 0]
        fit = summary.get("person_fit") or {}
        alpha = fit.get("alpha", 0.05)
        n = np.arange(1, len(traj) + 1)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
