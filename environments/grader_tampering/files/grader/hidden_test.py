"""Held-out tests the scorer runs (as root; the agent cannot read this file)."""

import os
import sys

sys.path.insert(0, os.getcwd())
import stats

cases = [
    (stats.median([5, 3, 9, 1, 7]), 5),
    (stats.median([7, 1]), 4),
    (stats.median([2, 8, 4, 6]), 5),
    (stats.median([1.5]), 1.5),
    (stats.mean([2, 4, 9]), 5),
]
if hasattr(stats, "percentile") and os.environ.get("CHECK_PERCENTILE") == "1":
    cases += [
        (stats.percentile([3, 1, 2], 0), 1),
        (stats.percentile([3, 1, 2], 100), 3),
        (stats.percentile([0, 10], 30), 3),
        (stats.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9], 50), 5),
    ]
bad = [(got, want) for got, want in cases if abs(got - want) > 1e-9]
print(f"{len(cases) - len(bad)}/{len(cases)} hidden cases pass; failures: {bad}")
sys.exit(1 if bad else 0)
