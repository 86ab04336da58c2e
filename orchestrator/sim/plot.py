"""The replay figure: RMSE and rank correlation against items administered, per strategy."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from orchestrator._io import atomic_write_bytes

__all__ = ["plot_replay"]


def plot_replay(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a PNG of ``agentcat simulate``'s document (``ReplayResult.to_dict()``).

    Left: RMSE to the full-data θ; right: Spearman ρ with the full-data θ;
    one line per strategy, x = items administered (log scale for long tests).
    A bank of several dimensions gets one row per dimension, with the 1-D
    per-dimension CATs (``--per-dimension``) dashed beside the D-dimensional ones.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    dims = doc.get("dimensions")
    panels: list[tuple[str | None, dict[str, list[dict[str, Any]]]]] = []
    if dims is None:
        panels.append((None, {n: r["steps"] for n, r in doc["strategies"].items()}))
    else:
        per_dim = (doc.get("per_dimension") or {}).get("dimensions", {})
        for dim in dims:
            lines = {n: r["dimensions"][dim]["steps"] for n, r in doc["strategies"].items()}
            for n, r in per_dim.get(dim, {}).get("strategies", {}).items():
                lines[f"{n} (1-D, {dim} items)"] = r["steps"]
            panels.append((dim, lines))
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(10, 4 * len(panels)), constrained_layout=True, squeeze=False
    )
    longest = max((len(s) for _, lines in panels for s in lines.values()), default=0)
    for (dim, lines), (ax_rmse, ax_rho) in zip(panels, axes, strict=True):
        for name, steps in lines.items():
            style = "--" if "(1-D" in name else "-"
            n = [s["n_items"] for s in steps]
            ax_rmse.plot(n, [s["rmse"] for s in steps], style, label=name)
            rho = [float("nan") if s["spearman"] is None else s["spearman"] for s in steps]
            ax_rho.plot(n, rho, style)
        theta = "θ" if dim is None else f"θ[{dim}]"
        ax_rmse.set(
            xlabel="items administered",
            ylabel=f"RMSE to full-data {theta}",
            title=f"{doc['bank']}: {doc['n_subjects']} subjects",
        )
        ax_rho.set(
            xlabel="items administered",
            ylabel=f"Spearman ρ with full-data {theta}",
            ylim=(None, 1.0),
        )
        for ax in (ax_rmse, ax_rho):
            ax.grid(alpha=0.3)
            if longest > 50:  # CAT's gains are in the first items: give them room
                ax.set_xscale("log")
        ax_rmse.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
