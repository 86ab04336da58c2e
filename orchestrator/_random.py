"""One seed convention: every ``rng`` argument goes through :func:`as_generator`."""

from __future__ import annotations

import numpy as np

RandomLike = int | np.random.Generator | None


def as_generator(rng: RandomLike) -> np.random.Generator:
    """Turn ``None`` / an int seed / a Generator into a numpy ``Generator``.

    A Generator is returned as is (shared state, like scikit-learn's
    ``check_random_state``); ``None`` gives fresh OS entropy.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy Generator; got {type(rng).__name__}")
