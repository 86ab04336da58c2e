"""Item banks: the ``bank.json`` schema, validation, loading and saving.

A bank is a folder ``item_banks/<name>/`` holding ``bank.json``. The file is
validated once by pydantic (unknown fields, NaN, a ≤ 0, disordered
thresholds are errors naming the item), then turned into numpy arrays that
the IRT and CAT code use directly.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator._io import atomic_write_json, where_not_utf8
from orchestrator._validation import parse_model
from orchestrator.errors import BankError
from orchestrator.irt.grm import pad_thresholds
from orchestrator.irt.model import GradedResponseModel
from orchestrator.scale import DEFAULT_SCALE_LABELS

if TYPE_CHECKING:  # annotations only (GRMCalibrator would import torch)
    from orchestrator.data import Responses
    from orchestrator.irt.calibrate import GRMCalibrator

__all__ = [
    "BANK_FILENAME",
    "BANK_SCHEMA_VERSION",
    "DEFAULT_SCALE_LABELS",
    "BankFile",
    "Calibration",
    "CalibrationUpdate",
    "Cost",
    "ItemBank",
    "ItemSpec",
    "Prior",
    "Scale",
    "SourceRef",
    "bank_from_calibration",
    "load_bank",
]

BANK_FILENAME = "bank.json"
PARAM_LIMIT = 1000.0
"""Bound on |a|, |b| and the prior's parameters: θ lives on a scale of a few units, real
slopes stay below ~100, and beyond this the GRM's arithmetic overflows."""
BANK_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Scale(_Strict):
    """Labels of the ordinal categories 0..K-1 (higher = safer / better)."""

    labels: list[str] = Field(min_length=2)
    """One label per category of the bank's largest K, lowest category first."""


class Prior(_Strict):
    """Normal prior on θ used by estimation and the CAT posterior.

    For a D-dimensional bank θ ~ N(mean, Σ) with Σ = diag(sd) · R · diag(sd):
    ``mean`` and ``sd`` are numbers (shared by every dimension) or lists of D,
    and ``correlation`` is R (the identity when absent). A 1-D bank uses the
    numbers and no correlation, exactly as before.
    """

    mean: float | list[float] = 0.0
    """Prior mean of θ (one per dimension, or one for all)."""
    sd: float | list[float] = 1.0
    """Prior standard deviation of θ (one per dimension, or one for all), > 0."""
    correlation: list[list[float]] | None = None
    """Latent correlation matrix R (D × D, unit diagonal, positive definite)."""

    @field_validator("sd")
    @classmethod
    def _positive_sd(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values or any(not x > 0 for x in values):
            raise ValueError(f"prior sd must be > 0 (one number or one per dimension); got {v}")
        if any(x > PARAM_LIMIT for x in values):
            raise ValueError(f"prior sd must be ≤ {PARAM_LIMIT:g}; got {v}")
        return v

    @field_validator("mean")
    @classmethod
    def _bounded_mean(cls, v: float | list[float]) -> float | list[float]:
        if any(not abs(x) <= PARAM_LIMIT for x in (v if isinstance(v, list) else [v])):
            raise ValueError(f"prior mean must lie in [-{PARAM_LIMIT:g}, {PARAM_LIMIT:g}]; got {v}")
        return v

    def moments(self, n_dims: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The prior's mean ``(D,)`` and covariance ``(D, D)`` for a D-dimensional bank.

        Raises:
            ValueError: a list has the wrong length or ``correlation`` is not a
                valid D × D correlation matrix.
        """
        mean, sd, corr = self.parts(n_dims)
        return mean, corr * np.outer(sd, sd)

    def parts(
        self, n_dims: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """The prior's mean ``(D,)``, SDs ``(D,)`` and correlation ``(D, D)`` (validated).

        Raises:
            ValueError: as :meth:`moments`.
        """
        mean = _per_dimension(self.mean, n_dims, "prior mean")
        sd = _per_dimension(self.sd, n_dims, "prior sd")
        corr = np.eye(n_dims) if self.correlation is None else np.array(self.correlation)
        if corr.shape != (n_dims, n_dims):
            raise ValueError(
                f"prior correlation must be {n_dims} x {n_dims} for {n_dims} dimension(s); "
                f"got shape {corr.shape}"
            )
        if not np.allclose(np.diag(corr), 1.0) or not np.allclose(corr, corr.T):
            raise ValueError("prior correlation must be symmetric with a unit diagonal")
        if np.linalg.eigvalsh(corr).min() <= 1e-10:
            raise ValueError("prior correlation must be positive definite")
        return mean, sd, corr


def _per_dimension(v: float | list[float], n_dims: int, what: str) -> NDArray[np.float64]:
    if not isinstance(v, list):
        return np.full(n_dims, float(v))
    if len(v) != n_dims:
        raise ValueError(f"{what} has {len(v)} entries but the bank has {n_dims} dimension(s)")
    return np.array(v, dtype=float)


Status = Literal["calibrated", "provisional"]


class CalibrationUpdate(_Strict):
    """One re-estimation of the bank on new responses (``agentcat calibrate --update``)."""

    date: str
    """ISO 8601 timestamp."""
    method: str
    """E.g. ``mml-em-update`` (per-item priors from the bank and from text)."""
    data: str
    """The response file."""
    data_sha256: str
    n_subjects: int = Field(ge=0)
    n_observations: int = Field(ge=0)
    n_items_updated: int = Field(ge=0)
    """Items already in the bank that the new data re-estimated."""
    n_items_added: int = Field(ge=0)
    """Items new to the bank (text-predicted or default prior)."""
    n_items_promoted: int = Field(0, ge=0)
    """Items whose status moved from provisional to calibrated."""
    log_likelihood: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    """Priors used, the new subjects' population in the bank's scale, the status rule …"""


class Calibration(_Strict):
    """Where the parameters came from (provenance)."""

    status: Status
    """``provisional`` means (some) parameters were not estimated from responses; in a bank
    with per-item statuses it is ``calibrated`` only when every item is."""
    method: str
    """E.g. ``mml-em`` or, for provisional banks, the rule's name."""
    rule: str | None = None
    """For provisional banks: how parameters were derived (from difficulty knobs …)."""
    data: str | None = None
    """Response file the bank was calibrated on."""
    data_sha256: str | None = None
    date: str | None = None
    """ISO 8601 timestamp of the calibration."""
    n_subjects: int | None = Field(None, ge=0)
    n_observations: int | None = Field(None, ge=0)
    log_likelihood: float | None = None
    """Marginal log-likelihood at the solution."""
    iterations: int | None = Field(None, ge=0)
    converged: bool | None = None
    wall_time_s: float | None = Field(None, ge=0)
    device: str | None = None
    software: str | None = None
    excluded_items: list[dict[str, Any]] = Field(default_factory=list)
    """Items present in the data but left out (single category, too few observations …)."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings: priors, quadrature, tolerances."""
    updates: list[CalibrationUpdate] = Field(default_factory=list)
    """Every later re-estimation on new data, oldest first (the fields above describe the
    bank's first calibration or prediction)."""


class Cost(_Strict):
    """Expected cost of administering one item."""

    seconds: float | None = Field(None, ge=0)
    tokens: float | None = Field(None, ge=0)
    usd: float | None = Field(None, ge=0)


class SourceRef(BaseModel):
    """How an item runs live: ``{"kind": NAME, ...the fields of that kind}``.

    Kinds are registered item sources (:mod:`orchestrator.runner.sources`; built
    in: ``scenario`` with ``family`` and ``variant``). The bank checks only the
    shape here, so that loading a bank to estimate or replay never imports a
    runner; the runner validates each kind's fields, naming the item, before
    step 1 of a run (``bank_sources``).
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """A registered item-source kind (snake_case)."""

    @property
    def fields(self) -> dict[str, Any]:
        """The kind's own fields (everything but ``kind``)."""
        return dict(self.model_extra or {})


class ItemSpec(_Strict):
    """One calibrated item."""

    id: str = Field(min_length=1)
    a: float | list[float]
    """Discrimination: a number > 0 in a 1-D bank; in a D-dimensional bank the
    slope vector a ∈ R^D (one entry per dimension, 0 where the item does not
    load, not all 0)."""
    b: list[float] = Field(min_length=1)
    """Strictly increasing thresholds b_1 < … < b_{K-1}; K = len(b) + 1. With a
    slope vector these are multidimensional difficulties along a:
    P(X ≥ k | θ) = σ(aᵀθ − ‖a‖ b_k), which is σ(a(θ − b_k)) when D = 1."""
    a_se: float | list[float] | None = None
    b_se: list[float] | None = None
    labels: list[str] | None = None
    """Category labels for this item when they differ from the bank's scale."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Content tags (``family``, ``risk`` …) used by content balancing and reports."""
    status: Status | None = None
    """This item's status where it differs from the bank's (``provisional``: its parameters
    are a prior, e.g. predicted from its text; None: as ``calibration.status``)."""
    cost: Cost | None = None
    source: SourceRef | None = None
    """What runs this item live (absent: the item serves estimation and replay only)."""
    reverse_keyed: bool | None = None
    """True: the item's score *falls* with θ in the calibration data (a miskeyed or
    reversed item), so every score x is read as K − 1 − x before the model sees it;
    the slope stays > 0. Calibration sets it with the evidence in
    ``calibration.details.reversed_items``; fixing the item's key is the better cure."""

    @model_validator(mode="before")
    @classmethod
    def _scenario_is_a_source(cls, data: Any) -> Any:
        """Banks written before item sources said ``"scenario": {"family", "variant"}``."""
        if not isinstance(data, dict) or "scenario" not in data:
            return data
        if "source" in data:
            raise ValueError("give either 'source' or the older 'scenario', not both")
        old = data["scenario"]
        if not isinstance(old, dict) or set(old) != {"family", "variant"}:
            raise ValueError(f"'scenario' must be {{'family': ..., 'variant': ...}}; got {old!r}")
        rest = {k: v for k, v in data.items() if k != "scenario"}
        return {**rest, "source": {"kind": "scenario", **old}}

    @field_validator("id")
    @classmethod
    def _id_is_csv_safe(cls, v: str) -> str:
        if v != v.strip() or any(c in v for c in ',\n\r"'):
            raise ValueError("item ids must not contain commas, quotes, newlines or edge spaces")
        return v

    @field_validator("b")
    @classmethod
    def _ordered(cls, v: list[float]) -> list[float]:
        if any(abs(x) > PARAM_LIMIT for x in v):
            raise ValueError(
                f"thresholds b must lie in [-{PARAM_LIMIT:g}, {PARAM_LIMIT:g}]; got {v} "
                "(θ lives on a scale of a few units)"
            )
        if any(not hi > lo for lo, hi in itertools.pairwise(v)):
            raise ValueError(
                f"thresholds b must be strictly increasing; got {v} "
                "(disordered thresholds: merge the adjacent categories or re-calibrate)"
            )
        return v

    @field_validator("a")
    @classmethod
    def _slope(cls, v: float | list[float]) -> float | list[float]:
        if isinstance(v, list):
            if not v or not any(x != 0 for x in v):
                raise ValueError(f"a slope vector needs at least one non-zero entry; got {v}")
            if any(not abs(x) <= PARAM_LIMIT for x in v):
                raise ValueError(f"slopes must lie in [-{PARAM_LIMIT:g}, {PARAM_LIMIT:g}]; got {v}")
        elif not v > 0:
            raise ValueError(f"a must be greater than 0; got {v}")
        elif v > PARAM_LIMIT:
            raise ValueError(f"a must be ≤ {PARAM_LIMIT:g} (real slopes stay below ~100); got {v}")
        return v

    @field_validator("a_se")
    @classmethod
    def _slope_se(cls, v: float | list[float] | None) -> float | list[float] | None:
        if v is not None and any(x < 0 for x in (v if isinstance(v, list) else [v])):
            raise ValueError(f"a_se must be ≥ 0; got {v}")
        return v

    @property
    def n_dims(self) -> int:
        """Length of the slope vector (1 for a number)."""
        return len(self.a) if isinstance(self.a, list) else 1

    @model_validator(mode="after")
    def _lengths(self) -> ItemSpec:
        if self.a_se is not None and (
            isinstance(self.a_se, list) != isinstance(self.a, list)
            or (isinstance(self.a_se, list) and len(self.a_se) != self.n_dims)
        ):
            raise ValueError(f"a_se must have the shape of a ({self.a!r}); got {self.a_se!r}")
        if self.b_se is not None and len(self.b_se) != len(self.b):
            raise ValueError(f"b_se has {len(self.b_se)} entries but b has {len(self.b)}")
        if self.labels is not None and len(self.labels) != len(self.b) + 1:
            raise ValueError(f"labels has {len(self.labels)} entries but K = {len(self.b) + 1}")
        return self

    @property
    def n_categories(self) -> int:
        return len(self.b) + 1


class BankFile(_Strict):
    """The content of ``bank.json``."""

    schema_version: Literal[1] = BANK_SCHEMA_VERSION
    name: str = Field(min_length=1)
    version: str = "1"
    description: str = ""
    model: Literal["grm"] = "grm"
    """The graded response model (2PL = K 2); compensatory multidimensional when D > 1."""
    dimensions: list[str] = Field(default_factory=lambda: ["theta"], min_length=1, max_length=3)
    """Names of θ's dimensions (D = their number; e.g. ``["utility", "security"]``)."""
    scale: Scale = Scale(labels=list(DEFAULT_SCALE_LABELS))
    prior: Prior = Prior()
    calibration: Calibration
    items: list[ItemSpec] = Field(min_length=1)

    @property
    def n_dims(self) -> int:
        return len(self.dimensions)

    @model_validator(mode="after")
    def _consistent(self) -> BankFile:
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"dimension names must be unique; got {self.dimensions}")
        self.prior.moments(self.n_dims)  # raises ValueError naming the bad field
        if self.n_dims == 1 and (
            isinstance(self.prior.mean, list)
            or isinstance(self.prior.sd, list)
            or self.prior.correlation is not None
        ):
            raise ValueError(
                "a one-dimensional bank's prior is a number for mean and sd and no correlation"
            )
        seen: dict[str, int] = {}
        k_scale = len(self.scale.labels)
        for i, item in enumerate(self.items):
            if self.n_dims == 1 and isinstance(item.a, list):
                raise ValueError(
                    f"items[{i}] (id {item.id!r}) has a slope vector but the bank has one "
                    "dimension; give a as a number, or name the dimensions in 'dimensions'"
                )
            if self.n_dims > 1 and (not isinstance(item.a, list) or item.n_dims != self.n_dims):
                raise ValueError(
                    f"items[{i}] (id {item.id!r}) needs a slope vector of {self.n_dims} entries "
                    f"(dimensions {self.dimensions}); got a = {item.a!r}"
                )
            if item.id in seen:
                raise ValueError(
                    f"item id {item.id!r} appears twice (items[{seen[item.id]}], items[{i}])"
                )
            seen[item.id] = i
            if item.labels is None and item.n_categories > k_scale:
                raise ValueError(
                    f"items[{i}] (id {item.id!r}) has K = {item.n_categories} categories but the "
                    f"scale has {k_scale} labels; add labels to the scale or to the item"
                )
        return self


class ItemBank:
    """A validated bank plus the arrays the numeric code needs.

    Attributes:
        spec: The validated ``bank.json`` content.
        path: Folder the bank was loaded from, if any.
    """

    def __init__(self, spec: BankFile, path: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.ids: list[str] = [it.id for it in spec.items]
        self.index: dict[str, int] = {iid: i for i, iid in enumerate(self.ids)}
        self.dimensions: list[str] = list(spec.dimensions)
        self.n_dims = spec.n_dims
        self.slopes: NDArray[np.float64] = np.array(
            [it.a if isinstance(it.a, list) else [it.a] for it in spec.items], dtype=float
        ).reshape(len(self.ids), self.n_dims)
        # D = 1: the slope itself; D > 1: its length ‖a‖ (multidimensional discrimination),
        # the scale of the thresholds b along the item's direction.
        self.a: NDArray[np.float64] = (
            self.slopes[:, 0].copy() if self.n_dims == 1 else np.linalg.norm(self.slopes, axis=1)
        )
        self.b, self.n_categories = pad_thresholds([it.b for it in spec.items])
        self.prior_mean, self.prior_cov = spec.prior.moments(self.n_dims)
        self.reverse_keyed: NDArray[np.bool_] = np.array(
            [bool(it.reverse_keyed) for it in spec.items], dtype=bool
        )
        for arr in (
            self.slopes,
            self.a,
            self.b,
            self.n_categories,
            self.prior_mean,
            self.prior_cov,
            self.reverse_keyed,
        ):
            arr.setflags(write=False)

    @cached_property
    def model(self) -> GradedResponseModel:
        """The bank's graded response model (slope-intercept form, d_k = −‖a‖ b_k).

        A 1-D bank is built from ``a`` and ``b`` directly, so its numbers are
        bit-identical to the difficulty form σ(a(θ − b_k)).
        """
        if self.n_dims == 1:
            return GradedResponseModel.from_difficulty(self.a, self.b)
        return GradedResponseModel(self.slopes, -(self.a[:, None] * self.b))

    def prior_parameters(self) -> dict[str, Any]:
        """The θ prior as keyword arguments of the grid posterior and ``estimate_theta``.

        ``prior_mean``/``prior_sd`` as the bank gives them for D = 1 (numbers:
        journals and estimates keep their bits), per-dimension arrays plus
        ``prior_correlation`` for D > 1.
        """
        prior = self.spec.prior
        if self.n_dims == 1:
            return {"prior_mean": prior.mean, "prior_sd": prior.sd}
        mean, sd, corr = prior.parts(self.n_dims)
        return {"prior_mean": mean, "prior_sd": sd, "prior_correlation": corr}

    # -- construction -----------------------------------------------------
    @classmethod
    def from_params(
        cls,
        name: str,
        ids: Sequence[str],
        a: Sequence[float] | NDArray[np.float64],
        b: Sequence[Sequence[float]] | NDArray[np.float64],
        *,
        calibration: Calibration | None = None,
        tags: Sequence[dict[str, str]] | None = None,
        costs: Sequence[Cost | None] | None = None,
        scale_labels: Sequence[str] | None = None,
        prior: Prior | None = None,
        a_se: Sequence[float] | NDArray[np.float64] | None = None,
        b_se: Sequence[Sequence[float]] | NDArray[np.float64] | None = None,
        item_labels: Sequence[Sequence[str] | None] | None = None,
        statuses: Sequence[Status | None] | None = None,
        description: str = "",
        dimensions: Sequence[str] | None = None,
        reverse_keyed: Sequence[bool] | NDArray[np.bool_] | None = None,
    ) -> ItemBank:
        """Build a bank from parameter arrays (``b`` rows may be padded with +inf/NaN).

        ``a`` is ``(N,)`` for a 1-D bank or ``(N, D)`` slope vectors with
        ``dimensions`` naming the D dimensions (then ``b`` are the thresholds
        along each slope vector, see :class:`ItemSpec`). ``a_se``/``b_se`` are
        optional standard errors shaped like ``a`` and ``b`` (``b_se`` padded
        like ``b``); an item whose SEs are not all finite gets none rather than a NaN.
        ``reverse_keyed`` marks items whose scores are read reversed.
        """
        a_arr = np.asarray(a, dtype=float)
        multi = a_arr.ndim == 2
        a_se_arr = None if a_se is None else np.asarray(a_se, dtype=float)
        items = []
        for i, iid in enumerate(ids):
            row = [float(x) for x in np.asarray(b[i], dtype=float) if math.isfinite(x)]
            item: dict[str, Any] = {
                "id": iid,
                "a": a_arr[i].tolist() if multi else float(a_arr[i]),
                "b": row,
                "tags": dict(tags[i]) if tags else {},
                "cost": costs[i] if costs else None,
            }
            if a_se_arr is not None and b_se is not None:
                slope_se = np.atleast_1d(a_se_arr[i]).tolist()
                ses = [*slope_se, *(float(x) for x in np.asarray(b_se[i])[: len(row)])]
                if all(math.isfinite(x) for x in ses):
                    item["a_se"] = slope_se if multi else slope_se[0]
                    item["b_se"] = ses[len(slope_se) :]
            if item_labels is not None and item_labels[i] is not None:
                item["labels"] = list(item_labels[i])  # type: ignore[arg-type]
            if statuses is not None and statuses[i] is not None:
                item["status"] = statuses[i]
            if reverse_keyed is not None and reverse_keyed[i]:
                item["reverse_keyed"] = True
            items.append(item)
        k_max = max(len(it["b"]) for it in items) + 1
        labels = list(scale_labels) if scale_labels else _default_labels(k_max)
        data = {
            "name": name,
            "description": description,
            "dimensions": list(dimensions) if dimensions else ["theta"],
            "scale": {"labels": labels},
            "prior": (prior or Prior()).model_dump(exclude_none=True),
            "calibration": (
                calibration or Calibration(status="provisional", method="given")
            ).model_dump(),
            "items": items,
        }
        return cls(parse_model(BankFile, data, f"bank {name!r}", BankError))

    # -- derived arrays ---------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_provisional(self) -> bool:
        return self.spec.calibration.status == "provisional"

    @cached_property
    def item_status(self) -> list[Status]:
        """Every item's status: its own, else the bank's."""
        bank = self.spec.calibration.status
        return [it.status or bank for it in self.spec.items]

    @cached_property
    def cost_seconds(self) -> NDArray[np.float64]:
        """Expected seconds per item; NaN where the bank gives none."""
        return np.array(
            [
                it.cost.seconds if it.cost and it.cost.seconds is not None else np.nan
                for it in self.spec.items
            ],
            dtype=float,
        )

    def tag_values(self, key: str) -> list[str | None]:
        """The value of tag ``key`` for every item (None where absent)."""
        return [it.tags.get(key) for it in self.spec.items]

    def drop_excluded_items(
        self, responses: Responses, *, drop_empty_subjects: bool = True
    ) -> tuple[Responses, list[dict[str, Any]]]:
        """``responses`` without the items this bank's calibration left out, and which they were.

        A bank calibrated on a file lacks the items it excluded (one observed
        category, too few observations): their rows say nothing about the bank's
        parameters, so ``estimate``, ``simulate`` and ``health`` drop them with a
        note instead of failing. Subjects left without observations are dropped
        too unless ``drop_empty_subjects`` is False (``estimate`` reports every
        subject of the file). Any *other* item the bank lacks still fails later:
        a wrong bank.

        Returns:
            The remaining responses, and per dropped item ``id``, ``reason`` and
            ``n_obs`` (observations dropped).
        """
        reasons = {str(e.get("id")): e for e in self.spec.calibration.excluded_items if "id" in e}
        drop = [iid for iid in responses.items if iid in reasons and iid not in self.index]
        if not drop:
            return responses, []
        counts = np.bincount(responses.item_idx, minlength=len(responses.items))
        n_obs = dict(zip(responses.items, counts.tolist(), strict=True))
        excluded = [
            {
                "id": iid,
                "reason": str(reasons[iid].get("reason", "excluded at calibration")),
                "n_obs": n_obs[iid],
            }
            for iid in drop
        ]
        return responses.drop_items(drop, drop_empty_subjects=drop_empty_subjects), excluded

    def item(self, item_id: str) -> ItemSpec:
        try:
            return self.spec.items[self.index[item_id]]
        except KeyError:
            from orchestrator.errors import did_you_mean

            raise BankError(
                f"item {item_id!r} is not in bank {self.name!r}{did_you_mean(item_id, self.ids)}"
            ) from None

    # -- persistence ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.spec.model_dump(mode="json", exclude_none=True)
        if self.n_dims == 1:  # 1-D banks are written exactly as before dimensions existed
            del data["dimensions"]
        if not data["calibration"]["updates"]:  # and banks never updated as before updates
            del data["calibration"]["updates"]
        return data

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``<folder>/bank.json`` atomically; returns the file path."""
        return atomic_write_json(Path(folder) / BANK_FILENAME, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ItemBank:
        return load_bank(path)


def _default_labels(k: int) -> list[str]:
    if k == len(DEFAULT_SCALE_LABELS):
        return list(DEFAULT_SCALE_LABELS)
    return [f"category {i}" for i in range(k)]


def load_bank(path: str | os.PathLike[str]) -> ItemBank:
    """Load and validate a bank from a folder (or a ``bank.json`` path).

    Raises:
        BankError: the file is missing, not JSON, or fails validation; the
            message names the file and the offending item and field.
    """
    p = Path(path)
    file = p / BANK_FILENAME if p.is_dir() else p
    if not file.exists():
        hint = "pass the bank's folder (it holds bank.json), e.g. item_banks/agentdojo"
        if not p.exists():
            raise BankError(f"bank not found: {p}", hint=hint)
        raise BankError(f"no {BANK_FILENAME} in {p}", hint=hint)
    try:
        data = json.loads(file.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BankError(f"{file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        where = where_not_utf8(exc)
        raise BankError(f"{file}: not UTF-8 text ({where}): not a bank.json") from None
    except ValueError as exc:
        raise BankError(f"{file}: {exc}") from None
    except RecursionError:
        raise BankError(f"{file}: JSON nested too deeply to be a bank") from None
    spec = parse_model(
        BankFile, data, str(file), BankError, hint="see 'Item bank format' in README.md"
    )
    return ItemBank(spec, path=file.parent)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid number in a bank (NaN and infinities are not allowed)")


def bank_from_calibration(
    calibrator: GRMCalibrator,
    name: str,
    *,
    source: str | None = None,
    source_sha256: str | None = None,
    tags: Mapping[str, Mapping[str, str]] | None = None,
    item_labels: Mapping[str, Sequence[str]] | None = None,
    scale_labels: Sequence[str] | None = None,
    description: str = "",
    extra_details: Mapping[str, Any] | None = None,
    dimensions: Sequence[str] | None = None,
) -> ItemBank:
    """Build a validated bank, with provenance, from a fitted ``GRMCalibrator``.

    A multidimensional fit gives slope vectors, the dimension names and the
    latent correlation as the bank's ``prior.correlation`` (θ's population
    is N(0, R) in the calibration's scale).

    Args:
        calibrator: A fitted :class:`~orchestrator.irt.calibrate.GRMCalibrator`.
        name: Bank name.
        source, source_sha256: The response file and its hash (provenance).
        tags: Content tags per item id (items without an entry get none).
        item_labels: Category labels per item id where they differ from the scale.
        scale_labels: Labels of categories 0..K_max−1.
        description: Free text for ``bank.json``.
        extra_details: Merged into ``calibration.details``.
        dimensions: Names of θ's D dimensions (default ``f1``, ``f2``, … when D > 1).

    Raises:
        NotFittedError: the calibrator has not been fitted.
        BankError: ``dimensions`` does not name D dimensions.
    """
    record = calibrator.calibration_record(
        source=source, source_sha256=source_sha256, extra_details=extra_details
    )
    ids = calibrator.item_ids_
    n_dims = calibrator.n_dims_
    prior = None
    if n_dims > 1:
        dimensions = list(dimensions or [f"f{d + 1}" for d in range(n_dims)])
        if len(dimensions) != n_dims:
            raise BankError(f"{len(dimensions)} dimension names for a {n_dims}-dimensional fit")
        corr = np.round(calibrator.latent_corr_, 12)
        prior = Prior(mean=0.0, sd=1.0, correlation=corr.tolist())
    elif dimensions is not None and list(dimensions) != ["theta"]:
        raise BankError("a one-dimensional fit has no dimension names to give")
    return ItemBank.from_params(
        name,
        ids,
        calibrator.a_,
        calibrator.b_,
        a_se=calibrator.a_se_,
        b_se=calibrator.b_se_,
        calibration=Calibration(**record),
        tags=[dict((tags or {}).get(i, {})) for i in ids],
        item_labels=[
            list(item_labels[i]) if item_labels and i in item_labels else None for i in ids
        ],
        scale_labels=scale_labels,
        description=description,
        reverse_keyed=getattr(calibrator, "reverse_keyed_", None),
        prior=prior,
        dimensions=dimensions if n_dims > 1 else None,
    )
