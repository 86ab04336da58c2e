"""Write a bank with known GRM parameters and responses drawn from it, for `agentcat simulate`.

    python bench/make_known_bank.py --items 300 --k 4 --subjects 500 --seed 0 --out /tmp/known
    agentcat simulate --bank /tmp/known/bank --responses /tmp/known/responses.csv

Parameters: a ~ LogNormal(0, 0.3); item location ~ N(0, 1) plus K − 1 sorted
offsets ~ U(−1.5, 1.5); θ ~ N(0, 1); every subject answers every item.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from orchestrator.bank import Calibration, ItemBank
from orchestrator.data import write_responses
from orchestrator.irt import sample_responses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--subjects", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    r = np.random.default_rng(args.seed)
    a = np.exp(r.normal(0.0, 0.3, args.items))
    offsets = np.sort(r.uniform(-1.5, 1.5, (args.items, args.k - 1)), axis=1)
    b = r.normal(0.0, 1.0, args.items)[:, None] + offsets
    ids = [f"item{i:04d}" for i in range(args.items)]
    calib = Calibration(
        status="provisional",
        method="known-parameters",
        rule=f"simulated: bench/make_known_bank.py --seed {args.seed}",
    )
    bank = ItemBank.from_params("known", ids, a, b, calibration=calib)
    bank.save(args.out / "bank")
    theta = r.normal(0.0, 1.0, args.subjects)
    x = sample_responses(theta, bank.a, bank.b, r)
    rows = [
        (f"s{s:04d}", ids[j], int(x[s, j])) for s in range(args.subjects) for j in range(args.items)
    ]
    write_responses(args.out / "responses.csv", rows)
    truth = "\n".join(f"s{s:04d},{float(t)!r}" for s, t in enumerate(theta))
    (args.out / "theta_true.csv").write_text("subject,theta\n" + truth + "\n")
    print(f"wrote {args.out}/bank/bank.json, responses.csv ({len(rows)} rows), theta_true.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
