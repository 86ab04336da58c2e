"""Item text → GRM parameters with predictive uncertainty (the cold-start prior).

Trained on calibrated banks whose items have text. Two scalar targets per item get
an :class:`~orchestrator.coldstart.regression.EvidenceRidge` each: log a and the mean
threshold b̄ = mean_k b_k. The thresholds' spread around b̄ (K ≥ 3) is not predicted
from text: each new item gets the mean offsets b_k − b̄ of the training items with
the same K (in its own bank when that bank has such items, else pooled), with
their SD added to the threshold's uncertainty; a K no training item has gets
evenly spaced offsets (the pooled mean gap, 1.0 when there is none).

Predictions are in the θ scale of the bank the item is predicted *for*: with
``bank=`` one of the training banks, its learned offset is used; for a new bank
the offset is unknown and its variance is part of the predictive SD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from orchestrator.bank import ItemBank
from orchestrator.coldstart.features import Embedder, surface_features
from orchestrator.coldstart.regression import EvidenceRidge
from orchestrator.errors import BankError, ConfigError, NotFittedError

__all__ = [
    "ParamPrediction",
    "TextParamModel",
    "TrainingItem",
    "fit_text_model",
    "require_one_dimension",
    "training_items",
]

FloatArray = NDArray[np.float64]
_DEFAULT_GAP = 1.0
_DEFAULT_GAP_SD = 0.5


@dataclass(frozen=True)
class TrainingItem:
    """One calibrated item with text."""

    bank: str
    id: str
    text: str
    a: float
    b: tuple[float, ...]
    a_se: float | None = None
    b_se: tuple[float, ...] | None = None


def require_one_dimension(bank: ItemBank) -> None:
    """Raise BankError for a multidimensional bank: cold start models one slope per item."""
    if bank.n_dims > 1:
        raise BankError(
            f"bank {bank.name!r} has {bank.n_dims} dimensions; text priors and "
            "'calibrate --update' handle 1-D banks only",
            hint="calibrate a multidimensional bank from scratch (agentcat calibrate)",
        )


def training_items(bank: ItemBank, texts: Mapping[str, str]) -> list[TrainingItem]:
    """The items of ``bank`` that have text (others are skipped)."""
    require_one_dimension(bank)
    out = []
    for it in bank.spec.items:
        text = texts.get(it.id)
        if text:
            out.append(
                TrainingItem(
                    bank=bank.name,
                    id=it.id,
                    text=text,
                    a=it.a,
                    b=tuple(it.b),
                    a_se=it.a_se,
                    b_se=tuple(it.b_se) if it.b_se is not None else None,
                )
            )
    return out


@dataclass(frozen=True)
class ParamPrediction:
    """Predicted parameters of m items and their predictive SDs.

    ``a`` is exp of the predicted log a (the median of a log-normal); ``log_a_sd`` its
    SD on the log scale. ``b``/``b_sd`` are ``(m, K_max − 1)``, padded with +inf/NaN.
    """

    a: FloatArray
    log_a_sd: FloatArray
    b: FloatArray
    b_sd: FloatArray
    b_mean: FloatArray
    b_mean_sd: FloatArray

    @property
    def a_se(self) -> FloatArray:
        """SD of a by the delta method (a · SD(log a)), the form ``bank.json`` stores."""
        return self.a * self.log_a_sd


class TextParamModel:
    """Learns item text → (log a, b̄, threshold offsets) from calibrated banks.

    Args:
        embedder: Maps texts to vectors (e.g. :class:`~orchestrator.coldstart.MiniLMEmbedder`).
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    # ------------------------------------------------------------------ fit
    def fit(
        self, items: Sequence[TrainingItem], embeddings: FloatArray | None = None
    ) -> TextParamModel:
        """Fit on calibrated items (``embeddings`` of their texts may be passed to reuse them)."""
        if len(items) < 10:
            raise ConfigError(
                f"the text model needs at least 10 calibrated items with text; got {len(items)}",
                hint="train on banks with an items.csv (id,text), e.g. item_banks/alpaca_eval",
            )
        emb = self.embedder.embed([it.text for it in items]) if embeddings is None else embeddings
        surf = surface_features([it.text for it in items])
        self.surface_mean_ = surf.mean(axis=0)
        self.surface_sd_ = np.where(surf.std(axis=0) > 0, surf.std(axis=0), 1.0)
        self.banks_ = sorted({it.bank for it in items})
        group = np.array([self.banks_.index(it.bank) for it in items], dtype=np.int64)
        blocks = self._blocks(emb, surf)
        log_a = np.log([it.a for it in items])
        b_mean = np.array([np.mean(it.b) for it in items])
        self.log_a_gp_ = EvidenceRidge().fit(blocks, log_a, group)
        self.b_gp_ = EvidenceRidge().fit(blocks, b_mean, group)
        self._fit_offsets(items)
        self.n_items_ = len(items)
        return self

    def _blocks(self, emb: FloatArray, surf: FloatArray) -> list[FloatArray]:
        z = (surf - self.surface_mean_) / self.surface_sd_
        return [emb, z / np.sqrt(z.shape[1])]

    def _fit_offsets(self, items: Sequence[TrainingItem]) -> None:
        """Mean and SD of b_k − b̄ per (bank, K) and per K, from the training items."""
        by: dict[tuple[str | None, int], list[FloatArray]] = {}
        gaps: list[float] = []
        for it in items:
            if len(it.b) < 2:
                continue
            b = np.asarray(it.b)
            for key in ((it.bank, len(b) + 1), (None, len(b) + 1)):
                by.setdefault(key, []).append(b - b.mean())
            gaps.extend(np.diff(b))
        self.offsets_ = {
            key: (np.mean(rows, axis=0), np.std(rows, axis=0) if len(rows) > 1 else None)
            for key, rows in by.items()
        }
        self.default_gap_ = float(np.mean(gaps)) if gaps else _DEFAULT_GAP

    def _offsets(self, bank: str | None, k: int) -> tuple[FloatArray, FloatArray]:
        for key in ((bank, k), (None, k)):
            if key in self.offsets_:
                mean, sd = self.offsets_[key]
                return mean, (sd if sd is not None else np.full(k - 1, _DEFAULT_GAP_SD))
        mean = self.default_gap_ * (np.arange(k - 1) - (k - 2) / 2)
        return mean, np.full(k - 1, _DEFAULT_GAP_SD)

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        texts: Sequence[str],
        n_categories: Sequence[int] | int,
        *,
        bank: str | None = None,
        embeddings: FloatArray | None = None,
    ) -> ParamPrediction:
        """Parameters for new items in the θ scale of ``bank`` (None: a new bank).

        Raises:
            NotFittedError: :meth:`fit` has not been called.
            ConfigError: a K below 2.
        """
        if not hasattr(self, "b_gp_"):
            raise NotFittedError("this TextParamModel is not fitted yet; call fit() first")
        m = len(texts)
        ks = np.broadcast_to(np.asarray(n_categories, dtype=np.int64), (m,))
        if m and ks.min() < 2:
            raise ConfigError(f"every item needs K >= 2 categories; got K = {int(ks.min())}")
        emb = self.embedder.embed(list(texts)) if embeddings is None else embeddings
        blocks = self._blocks(emb, surface_features(list(texts)))
        group = np.full(m, self.banks_.index(bank) if bank in self.banks_ else -1, dtype=np.int64)
        log_a, log_a_sd = self.log_a_gp_.predict(blocks, group)
        b_mean, b_mean_sd = self.b_gp_.predict(blocks, group)
        t_max = int(ks.max()) - 1 if m else 1
        b = np.full((m, t_max), np.inf)
        b_sd = np.full((m, t_max), np.nan)
        for k in np.unique(ks):  # once per distinct K
            rows = np.flatnonzero(ks == k)
            off, off_sd = self._offsets(bank, int(k))
            b[rows, : k - 1] = b_mean[rows, None] + off[None, :]
            b_sd[rows, : k - 1] = np.sqrt(b_mean_sd[rows, None] ** 2 + off_sd[None, :] ** 2)
        return ParamPrediction(
            a=np.exp(log_a),
            log_a_sd=log_a_sd,
            b=b,
            b_sd=b_sd,
            b_mean=b_mean,
            b_mean_sd=b_mean_sd,
        )

    def describe(self) -> dict[str, object]:
        """JSON-ready summary of the fitted model (for ``calibration.details``)."""
        if not hasattr(self, "b_gp_"):
            raise NotFittedError("this TextParamModel is not fitted yet; call fit() first")

        def gp(m: EvidenceRidge) -> dict[str, object]:
            return {
                "s_embedding": float(m.scales_[0]),
                "s_surface": float(m.scales_[1]),
                "s_bank_offset": m.s_u_,
                "residual_sd": dict(zip(self.banks_, m.sigma_.tolist(), strict=True)),
            }

        return {
            "embedding": self.embedder.name,
            "regressor": "Bayesian ridge per feature block + a random offset and a residual SD "
            "per bank; hyperparameters by type-II maximum likelihood (evidence)",
            "targets": {"log_a": gp(self.log_a_gp_), "b_mean": gp(self.b_gp_)},
            "training_banks": list(self.banks_),
            "n_training_items": self.n_items_,
            "threshold_offsets": "mean b_k - b_mean of training items with the same K "
            "(own bank first, else pooled; evenly spaced by the mean gap otherwise)",
        }


def fit_text_model(
    banks: Sequence[tuple[ItemBank, Mapping[str, str]]], embedder: Embedder
) -> TextParamModel:
    """A :class:`TextParamModel` trained on the calibrated items (with text) of ``banks``.

    Provisional items are left out: their parameters are priors, not estimates.
    """
    items = []
    for bank, texts in banks:
        calibrated = {
            iid for iid, s in zip(bank.ids, bank.item_status, strict=True) if s == "calibrated"
        }
        items += [it for it in training_items(bank, texts) if it.id in calibrated]
    return TextParamModel(embedder).fit(items)
