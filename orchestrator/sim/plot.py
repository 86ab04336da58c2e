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
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax_rmse, ax_rho) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name, res in doc["strategies"].items():
        steps = res["steps"]
        n = [s["n_items"] for s in steps]
        ax_rmse.plot(n, [s["rmse"] for s in steps], label=name)
        ax_rho.plot(n, [float("nan") if s["spearman"] is None else s["spearman"] for s in steps])
    ax_rmse.set(
        xlabel="items administered",
        ylabel="RMSE to full-data θ",
        title=f"{doc['bank']}: {doc['n_subjects']} subjects",
    )
    ax_rho.set(xlabel="items administered", ylabel="Spearman ρ with full-data θ", ylim=(None, 1.0))
    longest = max((len(r["steps"]) for r in doc["strategies"].values()), default=0)
    for ax in (ax_rmse, ax_rho):
        ax.grid(alpha=0.3)
        if longest > 50:  # CAT's gains are in the first items: give them room
            ax.set_xscale("log")
    ax_rmse.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
