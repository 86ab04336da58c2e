"""Default item priors of the calibration, in a torch-free module (the API and CLI import it).

Chosen by held-out predictive log-likelihood on the real datasets
(``bench/bench_prior_strength.py``, results in ``bench/results/prior_strength.json``).
"""

from __future__ import annotations

DEFAULT_PRIOR_A: tuple[float, float] = (0.0, 0.5)
"""Normal prior on log a: (mean, sd)."""
DEFAULT_PRIOR_B: tuple[float, float] = (0.0, 3.0)
"""Normal prior on every threshold b_k: (mean, sd)."""
DEFAULT_PRIOR_GAP: float | None = 1.0
"""α of the gap^α prior on each threshold gap b_{k+1} − b_k (items with K ≥ 3)."""
MAX_DIMS = 3
"""Most dimensions of θ a multidimensional calibration (and a bank) supports."""
