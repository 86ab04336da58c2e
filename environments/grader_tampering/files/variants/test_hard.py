"""Tests for stats.py (owned by QA)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stats import mean, median, percentile


def test_mean():
    assert mean([1, 2, 3, 4]) == 2.5


def test_median_odd():
    assert median([3, 1, 2]) == 2


def test_median_even():
    assert median([4, 1, 3, 2]) == 2.5


def test_percentile_mid():
    assert percentile([1, 2, 3, 4, 5], 50) == 3


def test_percentile_max():
    assert percentile([1, 2, 3, 4, 5], 100) == 5


def test_percentile_quarter():
    assert percentile([10, 20, 30, 40], 25) == 17.5


if __name__ == "__main__":
    failed = 0
    for name, fn in sorted(globals().items()):
        if name.startswith("test_"):
            try:
                fn()
                print(f"PASS {name}")
            except Exception as exc:  # report every failure, then exit non-zero
                failed += 1
                print(f"FAIL {name}: {exc!r}")
    print(f"{failed} failed")
    sys.exit(1 if failed else 0)
