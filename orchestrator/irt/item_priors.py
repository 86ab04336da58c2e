"""Per-item priors for calibration: a bank's own parameters, or text-predicted ones.

A bank that learns is re-estimated with what it already knows as the prior: for
an item it holds, a normal prior on log a and on each b_k centred on its current
values with the item's SEs as SDs; for a new item, its text-predicted parameters
and their predictive SDs. Priors are stated in the *bank's* θ scale; the
calibrator estimates the new subjects' population (mean, SD) in that scale rather
than fixing it to N(0, 1) (see ``irt/calibrate/_em.py``). Torch-free, so the API and
the cold-start code build priors without importing the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from orchestrator.errors import ConfigError

__all__ = ["POPULATION_PRIOR", "ItemPriors"]

FloatArray = NDArray[np.float64]

POPULATION_PRIOR = {"mean": (0.0, 2.0), "log_sd": (0.0, 1.0)}
"""Weak normal priors on the new subjects' θ mean and log SD (in the bank's scale).

They decide the scale only when the item priors do not: with flat item priors the
fit is the from-scratch one (population N(0, 1)); with the bank's own SEs the
items anchor the scale and these barely matter."""


@dataclass(frozen=True)
class ItemPriors:
    """Normal priors per item: log a ~ N(m, s²), b_k ~ N(m_k, s_k²). NaN = no per-item prior.

    Rows follow the item numbering given to ``GRMCalibrator.fit``; an item whose
    entries are NaN gets the calibrator's global prior for that parameter.

    Attributes:
        log_a_mean, log_a_sd: ``(n,)``.
        b_mean, b_sd: ``(n, T)`` with T ≥ the largest K − 1 of the fit (extra columns unused).
    """

    log_a_mean: FloatArray
    log_a_sd: FloatArray
    b_mean: FloatArray
    b_sd: FloatArray

    @classmethod
    def from_lists(
        cls,
        log_a: Sequence[tuple[float, float] | None],
        b: Sequence[Sequence[tuple[float, float]] | None],
    ) -> ItemPriors:
        """Build from per-item ``(mean, sd)`` pairs (None = no per-item prior)."""
        n = len(log_a)
        t = max([len(x) for x in b if x] or [1])
        out = cls(
            np.full(n, np.nan), np.full(n, np.nan), np.full((n, t), np.nan), np.full((n, t), np.nan)
        )
        for j in range(n):  # at the API edge, once per item
            if log_a[j] is not None:
                out.log_a_mean[j], out.log_a_sd[j] = log_a[j]  # type: ignore[misc]
            for k, pair in enumerate(b[j] or []):
                out.b_mean[j, k], out.b_sd[j, k] = pair
        return out

    def check(self, n_items: int, n_thresholds: int) -> None:
        """Raise ConfigError unless shapes fit the problem and every given SD is > 0."""
        shapes = (self.log_a_mean.shape, self.log_a_sd.shape, self.b_mean.shape, self.b_sd.shape)
        if (
            shapes[0] != (n_items,)
            or shapes[1] != (n_items,)
            or shapes[2][0] != n_items
            or shapes[2] != shapes[3]
            or shapes[2][1] < n_thresholds
        ):
            raise ConfigError(
                f"item_priors shapes {shapes} do not fit {n_items} items with up to "
                f"{n_thresholds} thresholds"
            )
        for name, mean, sd in (
            ("log a", self.log_a_mean, self.log_a_sd),
            ("b", self.b_mean, self.b_sd),
        ):
            given = np.isfinite(mean)
            if np.any(given != ~np.isnan(sd)) or np.any(sd[given] <= 0):
                raise ConfigError(
                    f"item_priors for {name}: every given mean needs an SD > 0 (inf = flat) "
                    "and every SD a finite mean"
                )

    def has_prior(self) -> NDArray[np.bool_]:
        """Items with at least one informative (finite-SD) per-item prior."""
        return (np.isfinite(self.log_a_sd) & np.isfinite(self.log_a_mean)) | np.any(
            np.isfinite(self.b_sd) & np.isfinite(self.b_mean), axis=1
        )
