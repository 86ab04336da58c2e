"""The 2-D agentdojo bank (utility, security) and how many dimensions the data support.

Calibrates ``item_banks/agentdojo-2d`` on the same derived responses as
``item_banks/agentdojo`` (injected items' source levels 0 and 1 merged, see
``calibrate_real_banks.merge_agentdojo``), confirmatory from ``item_type``:
benign items load on *utility*, injected items on *security* (injection
robustness), with the latent correlation estimated. Sources, labels and tags
come from ``item_banks/agentdojo`` so the bank runs live like it.

Then compares structures on the same cells (``dimensionality.compare_dimensions``):
D = 1, the confirmatory D = 2 above and (``--exploratory``) an exploratory D = 2 —
held-out log-likelihood over k folds of cells, AIC/BIC, Q3 after each fit.

    nice .venv/bin/python bench/build_agentdojo_2d.py --data ../shared/data [--folds 5]

Writes item_banks/agentdojo-2d/bank.json and bench/results/agentdojo_dims.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_real_banks import merge_agentdojo  # noqa: E402

from orchestrator.api import calibrate  # noqa: E402
from orchestrator.data import read_item_table, read_responses  # noqa: E402
from orchestrator.irt.calibrate.dimensionality import (  # noqa: E402
    Candidate,
    compare_dimensions,
    preferred,
)

LOADINGS = "tag:item_type:benign_utility=utility,injection_pair=security"
SOURCE = (
    "item_banks/agentdojo/responses.csv (shared/data/agentdojo/responses.csv with "
    "injected-item levels 0 and 1 merged)"
)


def _q3_summary(q3: np.ndarray) -> dict[str, float]:
    """max |Q3| and Q3* (max Q3 minus the mean, Christensen et al. 2017) over item pairs."""
    off = q3[np.triu_indices_from(q3, k=1)]
    off = off[np.isfinite(off)]
    return {
        "q3_max_abs": float(np.abs(off).max()),
        "q3_mean": float(off.mean()),
        "q3_star": float(off.max() - off.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "item_banks" / "agentdojo-2d")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exploratory", action="store_true", help="also an exploratory D = 2")
    ap.add_argument("--results", type=Path, default=REPO / "bench/results/agentdojo_dims.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        responses, items, _ = merge_agentdojo(args.data, Path(tmp))
        t0 = time.perf_counter()
        summary = calibrate(
            responses,
            args.out,
            name="agentdojo-2d",
            items=items,
            tag_columns=["suite", "item_type"],
            dims="utility,security",
            loadings=LOADINGS,
            description="AgentDojo prompt-injection traces, 17 agent pipelines: two traits, "
            "task utility (benign items) and injection robustness (injected items), "
            "confirmatory 2-D GRM with the latent correlation estimated",
            source_label=SOURCE,
            live_from=REPO / "item_banks" / "agentdojo",
            force=True,
        )
        fit_s = time.perf_counter() - t0
        resp = read_responses(responses)
        table = read_item_table(items)
    k = np.array([int(table.rows[i]["n_categories"]) for i in resp.items])
    benign = np.array([table.rows[i]["item_type"] == "benign_utility" for i in resp.items])
    conf = np.stack([benign, ~benign], axis=1).astype(np.int64)
    cands = [Candidate("D=1", 1), Candidate("D=2 confirmatory (item_type)", 2, conf)]
    if args.exploratory:
        cands.append(Candidate("D=2 exploratory (oblimin)", 2))
    t1 = time.perf_counter()
    comp = compare_dimensions(
        resp.subject_idx,
        resp.item_idx,
        resp.score,
        n_categories=k,
        n_subjects=len(resp.subjects),
        candidates=cands,
        folds=args.folds,
        seed=args.seed,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    cmp_s = time.perf_counter() - t1
    rows = [
        {
            "label": f.label,
            "n_dims": f.n_dims,
            "structure": f.structure,
            "log_likelihood": f.log_likelihood,
            "n_parameters": f.n_parameters,
            "aic": f.aic,
            "bic": f.bic,
            "converged": f.converged,
            "latent_correlation": np.asarray(f.latent_correlation).tolist(),
            "heldout_loglik": f.heldout_loglik,
            "heldout_per_obs": f.heldout_per_obs,
            "fold_loglik": f.fold_loglik,
            **_q3_summary(f.q3.q3),
        }
        for f in comp.fits
    ]
    doc = {
        "bank": str(args.out.relative_to(REPO)) if args.out.is_relative_to(REPO) else str(args.out),
        "latent_correlation": summary["latent_correlation"][0][1],
        "latent_correlation_se": summary["latent_correlation_se"][0][1],
        "bank_log_likelihood": summary["log_likelihood"],
        "bank_fit_wall_s": round(fit_s, 1),
        "folds": comp.folds,
        "seed": comp.seed,
        "n_heldout": comp.n_heldout,
        "baseline_item_shares_per_obs": comp.baseline_per_obs,
        "fits": rows,
        "preferred": {key: preferred(comp.fits, key).label for key in ("heldout", "aic", "bic")},
        "compare_wall_s": round(cmp_s, 1),
        "command": "nice .venv/bin/python bench/build_agentdojo_2d.py --data ../shared/data "
        f"--folds {args.folds}" + (" --exploratory" if args.exploratory else ""),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in doc.items() if k != "fits"}, indent=2))
    for r in rows:
        print(
            f"{r['label']:32s} loglik {r['log_likelihood']:9.2f}  p {r['n_parameters']:4d}  "
            f"AIC {r['aic']:8.1f}  BIC {r['bic']:8.1f}  held-out/obs {r['heldout_per_obs']:.4f}  "
            f"Q3 max {r['q3_max_abs']:.2f}"
        )


if __name__ == "__main__":
    main()
