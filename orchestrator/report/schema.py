"""The JSON schema of a health report: pydantic models, versioned with ``schema_version``.

Every section carries the thresholds it used, what it flagged and
plain-language findings; floats are rounded and NaN becomes ``null`` so the
document is valid JSON. The arrays the plots need beyond it ride along on
:attr:`HealthReport.arrays` and are not serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = [
    "HEALTH_SCHEMA_VERSION",
    "ClusterRow",
    "DimensionRow",
    "DimensionalitySection",
    "DiscriminationSection",
    "HealthArrays",
    "HealthReport",
    "HealthThresholds",
    "InformationSection",
    "Interval",
    "ItemFitSection",
    "ItemRow",
    "LocalDependenceSection",
    "PairRow",
    "PersonFitSection",
    "SubjectRow",
    "TagDependenceRow",
]

HEALTH_SCHEMA_VERSION = 3
FloatArray = NDArray[np.float64]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HealthThresholds(_Model):
    """Every cut the report uses (all overridable; the defaults are the documented ones)."""

    se_target: float = Field(0.3, gt=0)
    """SE the bank should be able to reach; information target = 1 / se_target²."""
    top_m: int = Field(20, ge=1)
    """Length of the adaptive test whose best-case information is also shown."""
    min_slope: float = Field(0.5, gt=0)
    """Items with a below this are 'low discrimination' (logistic metric, no 1.702)."""
    min_category_prob: float = Field(0.1, gt=0, lt=1)
    """A middle category whose peak probability stays below this is 'nearly merged'
    (not repeated for items already flagged for a low slope, whose categories are all flat)."""
    min_item_rest: float = Field(0.1, gt=-1, lt=1)
    """An item is 'defective' when its item–rest r is significantly below this (BH FDR
    ``alpha`` over items), 'suspect' when r < 0 without that evidence."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Error rate of every flag: Benjamini–Hochberg FDR for items, family-wise for Q3 pairs,
    and for person fit the per-subject level (the share of well-fitting subjects flagged)."""
    ms_low: float = Field(0.7, gt=0)
    ms_high: float = Field(1.3, gt=0)
    """Infit/outfit outside [ms_low, ms_high] *and* significant flags misfit."""
    q3_excess: float = Field(0.2, gt=0)
    """Flag pairs with Q3 − mean(Q3) above this (and significant)."""
    q3_min_common: int = Field(10, ge=4)
    """Pairs with fewer common subjects are not tested."""
    q3_bootstrap: int = Field(50, ge=0)
    """Simulated data sets for the Q3 critical value (0: only the excess rule)."""
    seed: int = 0
    """Seed of the Q3 simulation and the tag permutation tests (reports are reproducible)."""
    fit_replicates: int = Field(100, ge=20)
    """Response patterns simulated per subject for the person-fit null (the smallest
    p-value is 0.5 / (fit_replicates + 1))."""
    lz_min_items: int = Field(10, ge=1)
    """Subjects with fewer observed items get no person-fit flag (too little evidence)."""
    sx2_min_subjects: int = Field(100, ge=2)
    """S-X² needs this many complete-case subjects; below it the test is skipped."""
    sx2_min_expected: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> HealthThresholds:
        need = int(np.ceil(1.0 / self.alpha - 1.0 - 1e-9))
        if 0 < self.q3_bootstrap < need:
            raise ValueError(
                f"q3_bootstrap = {self.q3_bootstrap} can never reach alpha = {self.alpha:g} "
                f"(the smallest p is 1/(q3_bootstrap + 1)); use at least {need}, or 0 for "
                "the bare excess rule"
            )
        if self.ms_low >= self.ms_high:
            raise ValueError(f"ms_low = {self.ms_low:g} must be below ms_high = {self.ms_high:g}")
        return self


class Interval(_Model):
    """A θ range and the share of subjects (θ̂) inside it."""

    lo: float
    hi: float
    share_subjects: float
    n_subjects: int


class InformationSection(_Model):
    target_information: float
    se_target: float
    top_m: int
    theta: list[float]
    total_information: list[float]
    top_m_information: list[float]
    well_measured: list[Interval]
    """Where the whole bank reaches the target (SE ≤ se_target)."""
    gaps: list[Interval]
    """Where it does not; ``saturation_top``/``floor_bottom`` are the gaps at the ends."""
    top_m_well_measured: list[Interval]
    saturation_top: float | None
    """θ above which information stays below target (None: no gap at the top of the range)."""
    share_above_saturation: float | None
    floor_bottom: float | None
    share_below_floor: float | None
    peak_theta: float
    peak_information: float
    theta_quantiles: dict[str, float]
    findings: list[str]


class DiscriminationSection(_Model):
    min_slope: float
    min_category_prob: float
    min_item_rest: float
    low_slope: list[str]
    merged_thresholds: list[str]
    defective: list[str]
    """Items whose item–rest r is confidently below ``min_item_rest``."""
    suspect: list[str]
    """Items whose item–rest r is below ``min_item_rest`` at uncorrected level ``alpha``
    but not after correcting for the number of items (inspect them)."""
    constant: list[str]
    """Items every subject gave the same score: no information about these subjects."""
    unobserved_categories: list[str]
    """Items with a category no subject scored in: its threshold rests on the prior alone."""
    reverse_keyed: list[str] = []
    """Items the bank reads reversed (calibration found their score falling with θ)."""
    excluded_at_calibration: list[str]
    """Items in the responses that the bank left out at calibration (not analysed)."""
    merged_category_counts: dict[str, int]
    """For the merged-threshold items: how often each middle category is the one that vanishes."""
    findings: list[str]


class ItemFitSection(_Model):
    statistics: dict[str, str]
    """Name → what it is and its assumptions."""
    sx2_status: str
    """``computed`` or why it was skipped."""
    n_complete_subjects: int
    sx2_params_estimated: bool
    """Whether df were reduced by the item parameters (bank calibrated on these very data)."""
    misfit: list[str]
    share_p_below_05: dict[str, float | None]
    """Fraction of items with p < 0.05 per statistic (≈ 0.05 when the model fits)."""
    findings: list[str]


class PairRow(_Model):
    item_a: str
    item_b: str
    q3: float
    q3_adjusted: float
    n_common: int
    p_adjusted: float | None
    """Family-wise p from the simulated null (None when not simulated)."""


class TagDependenceRow(_Model):
    """Residual correlation within vs between the groups of one item tag."""

    tag: str
    n_items: int
    groups: dict[str, float | None]
    """Mean Q3 among the items of each tag value."""
    within: float
    between: float
    p_value: float


class ClusterRow(_Model):
    items: list[str]
    mean_q3_adjusted: float | None


class LocalDependenceSection(_Model):
    mean_q3: float | None
    excess: float
    threshold: float | None
    """Q3 − mean a pair had to exceed: ``excess`` or the simulated critical value if larger."""
    n_bootstrap: int
    alpha: float
    min_common: int
    n_pairs_tested: int
    flagged_pairs: list[PairRow]
    clusters: list[ClusterRow]
    tag_dependence: list[TagDependenceRow]
    findings: list[str]


class PersonFitSection(_Model):
    statistic: str
    alpha: float
    replicates: int
    min_items: int
    n_evaluated: int
    flagged: list[str]
    share_flagged: float | None
    nominal_share: float
    findings: list[str]


class DimensionRow(_Model):
    """One candidate structure (D, confirmatory or exploratory), calibrated on these data."""

    label: str
    n_dims: int
    structure: str
    """``unidimensional``, ``confirmatory`` or ``exploratory``."""
    dimensions: list[str]
    n_parameters: int
    log_likelihood: float
    """Marginal log-likelihood of the fit on all responses."""
    aic: float
    bic: float
    converged: bool
    heldout_per_response: float
    """Mean over every held-out cell of log p(x | the subject's other responses)."""
    fold_loglik: list[float]
    """Held-out log-likelihood summed within each fold."""
    folds_won: int
    """Folds on which this structure scored best."""
    latent_correlation: list[list[float]]
    latent_correlation_se: list[list[float | None]] | None
    q3_max_abs: float | None
    """Largest |Q3| over the pairs tested (``q3_min_common`` common subjects) after this fit."""
    q3_mean_abs: float | None
    """Mean |Q3| over the same pairs: falls when the structure captures the dependence."""
    q3_flagged_pairs: int
    """Pairs with Q3 − mean above ``q3_excess`` after this fit (effect-size rule only)."""


class DimensionalitySection(_Model):
    """How many dimensions the responses support (``health --dims``)."""

    folds: int
    seed: int
    n_heldout: int
    """Cells scored out of sample (every fold together)."""
    loadings: str | None
    """The confirmatory pattern's provenance (None: every D > 1 is exploratory)."""
    baseline_per_response: float
    """Item category shares (no IRT) on the same held-out cells."""
    q3_excess: float
    q3_min_common: int
    q3_pairs_tested: int
    fits: list[DimensionRow]
    preferred: str
    """Label of the structure with the highest held-out log-likelihood."""
    preferred_n_dims: int
    preferred_by: dict[str, str]
    """Criterion (``heldout``, ``aic``, ``bic``) → label of the structure it prefers."""
    findings: list[str]


class ItemRow(_Model):
    id: str
    n_categories: int
    a: float
    b: list[float]
    tags: dict[str, str]
    n_obs: int
    category_counts: list[int]
    mean_score: float | None
    max_information: float
    theta_at_max_information: float
    min_category_max_prob: float | None
    item_rest_r: float | None
    item_rest_p: float | None
    """One-sided p of H0: ρ ≥ min_item_rest (small: discriminates less than that)."""
    infit: float | None
    infit_t: float | None
    infit_p: float | None
    outfit: float | None
    outfit_t: float | None
    outfit_p: float | None
    sx2: float | None
    sx2_df: int | None
    sx2_p: float | None
    flags: list[str]


class SubjectRow(_Model):
    subject: str
    theta: float
    se: float
    n_items: int
    lz: float | None
    fit_p: float | None
    flagged: bool


class HealthReport(_Model):
    """The psychometric health of one bank on one response matrix (JSON twin of the HTML)."""

    schema_version: Literal[3] = HEALTH_SCHEMA_VERSION
    generated_at: str
    software: str
    bank: dict[str, Any]
    data: dict[str, Any]
    thresholds: HealthThresholds
    summary: list[str]
    information: InformationSection
    discrimination: DiscriminationSection
    item_fit: ItemFitSection
    local_dependence: LocalDependenceSection
    person_fit: PersonFitSection
    dimensionality: DimensionalitySection | None = None
    """Present when asked for (``health --dims``): D = 1..3 compared on these data."""
    items: list[ItemRow]
    subjects: list[SubjectRow]
    _arrays: HealthArrays | None = PrivateAttr(default=None)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def arrays(self) -> HealthArrays | None:
        """Arrays for plots (None for a report read back from JSON)."""
        return self._arrays


@dataclass(frozen=True)
class HealthArrays:
    """What the plots need beyond the JSON: the Q3 matrix and per-observation values."""

    q3: FloatArray
    obs_item: NDArray[np.int64]
    obs_score: NDArray[np.int64]
    obs_theta_rest: FloatArray
