"""Cross-benchmark predictive validity: does ability on one bank predict ability on another?

For every bank: θ̂ and SE per subject (EAP from the bank's parameters),
subjects matched to canonical model ids through a reviewed mapping file
(:mod:`orchestrator.report.model_names`), one score per model. For every
pair of banks, over the models they share: Pearson and Spearman of θ̂, the
correlation corrected for measurement error with each bank's empirical
reliability, bootstrap intervals over models, and the same for raw accuracy.
For every ordered pair: how well a line predicts B's θ̂ from A's (leave one
model out), and how many CAT items on B a prior built from A's θ̂ saves
(collateral information, replayed on B's recorded responses).

The unit of analysis is a *scale*: one bank and one ability dimension. Banks
are one-dimensional today (dimension ``theta``); a multidimensional bank
becomes several scales (``bank:dimension``) and every table keeps its shape.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from orchestrator import __version__
from orchestrator.bank import ItemBank
from orchestrator.data import AlignedResponses
from orchestrator.report._findings import rounded
from orchestrator.report._validity_stats import (
    Regression,
    bootstrap_indices,
    empirical_reliability,
    fit_regression,
    pair_statistics,
    pearson,
)
from orchestrator.report.model_names import MappedSubject, ModelNames

__all__ = [
    "VALIDITY_SCHEMA_VERSION",
    "BankInput",
    "ModelScores",
    "ValidityOptions",
    "ValidityReport",
    "analyse_validity",
    "format_interval",
    "model_rows",
    "model_scores",
    "raw_scores",
]

VALIDITY_SCHEMA_VERSION = 1
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[str], None]

MIN_MODELS = 3
"""Fewest shared models for a correlation or a regression."""
SMALL_N = 10
"""Below this many shared models, intervals are flagged as rough."""
LIST_MODELS_UP_TO = 30
"""A pair with at most this many shared models lists them, with their scores."""


@dataclass(frozen=True)
class ValidityOptions:
    """Settings of one analysis (all recorded in the report)."""

    n_boot: int = 2000
    """Bootstrap resamples of models per pair."""
    level: float = 0.95
    """Coverage of the percentile intervals."""
    seed: int = 0
    """Seeds the bootstrap, the replay's item split and its cross-fitting folds."""
    se_target: float = 0.3
    """SE at which a replayed CAT stops counting items."""
    max_items: int | None = None
    """Items per replayed CAT (default: all of a subject's items)."""
    collateral: bool = True
    """Replay CATs with collateral priors (the slow part; :mod:`orchestrator.sim.collateral`)."""
    collateral_min_models: int = 20
    """Fewest shared models for the collateral replay (its prior is fitted on them)."""
    folds: int = 5
    """Cross-fitting folds: a model's prior is fitted on the other folds' models."""


@dataclass(frozen=True)
class BankInput:
    """One bank, the responses its θ comes from, and the estimates.

    Attributes:
        bank: The calibrated bank.
        responses: Responses aligned to ``bank`` (items it left out dropped).
        theta, se: EAP and posterior SD per subject of ``responses``.
        source: Where the responses came from (a path, or journal folders).
        dimension: The ability dimension (``theta`` for a one-dimensional bank).
    """

    bank: ItemBank
    responses: AlignedResponses
    theta: FloatArray
    se: FloatArray
    source: str
    dimension: str = "theta"

    @property
    def label(self) -> str:
        return self.bank.name if self.dimension == "theta" else f"{self.bank.name}:{self.dimension}"


def raw_scores(inp: BankInput) -> tuple[FloatArray, FloatArray]:
    """Raw accuracy per subject and its standard error.

    Raw accuracy is the mean of score / (K − 1) over the subject's items (so
    polytomous items count in [0, 1] too). Its error variance, for the fixed
    items the subject took, is Σ_j Var(X_j | θ) / ((K_j − 1)² n²) from the
    GRM at θ̂, using Var(X) = Σ_k (2k − 1) P(X ≥ k) − (Σ_k P(X ≥ k))².
    """
    bank, r = inp.bank, inp.responses
    n_sub = len(r.subjects)
    k1 = (bank.n_categories[r.bank_item] - 1).astype(float)
    count = np.bincount(r.subject_idx, minlength=n_sub).astype(float)
    raw = np.bincount(r.subject_idx, weights=r.score / k1, minlength=n_sub) / count
    b = bank.b[r.bank_item]  # (obs, K_max − 1), +inf padding gives P(X ≥ k) = 0
    upper = expit(bank.a[r.bank_item][:, None] * (inp.theta[r.subject_idx][:, None] - b))
    steps = 2.0 * np.arange(1, b.shape[1] + 1) - 1.0
    var_x = upper @ steps - upper.sum(axis=1) ** 2
    err = np.bincount(r.subject_idx, weights=var_x / k1**2, minlength=n_sub) / count**2
    return raw, np.sqrt(np.maximum(err, 0.0))


@dataclass(frozen=True)
class ModelScores:
    """One scale's scores per canonical model (sorted by model id)."""

    label: str
    bank: str
    dimension: str
    models: tuple[str, ...]
    theta: FloatArray
    se: FloatArray
    raw: FloatArray
    raw_se: FloatArray
    subjects: tuple[tuple[str, ...], ...]
    mapped: tuple[MappedSubject, ...]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {m: i for i, m in enumerate(self.models)})

    def take(self, models: Sequence[str]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        ix = np.array([self.index[m] for m in models], dtype=np.int64)
        return self.theta[ix], self.se[ix], self.raw[ix], self.raw_se[ix]


def model_scores(
    inp: BankInput, mapped: Sequence[MappedSubject], raw: FloatArray, raw_se: FloatArray
) -> ModelScores:
    """One score per model: its subjects without a condition if it has any, else all of them.

    Several subjects of one model (attacks, defences, prompts) are averaged;
    the SE of a mean of m independent estimates is √(Σ SE²) / m.
    """
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(mapped):
        if m.model is not None:
            groups.setdefault(m.model, []).append(i)
    models = tuple(sorted(groups))
    rows = []
    for model in models:
        members = groups[model]
        plain = [i for i in members if not mapped[i].condition]
        rows.append(plain or members)
    theta, se, rw, rse = (np.empty(len(models)) for _ in range(4))
    for k, ix in enumerate(rows):  # once per model, at the table edge
        m = len(ix)
        theta[k], rw[k] = inp.theta[ix].mean(), raw[ix].mean()
        se[k] = np.sqrt(np.sum(inp.se[ix] ** 2)) / m
        rse[k] = np.sqrt(np.sum(raw_se[ix] ** 2)) / m
    return ModelScores(
        label=inp.label,
        bank=inp.bank.name,
        dimension=inp.dimension,
        models=models,
        theta=theta,
        se=se,
        raw=rw,
        raw_se=rse,
        subjects=tuple(tuple(mapped[i].subject for i in ix) for ix in rows),
        mapped=tuple(mapped),
    )


def model_rows(s: ModelScores) -> list[dict[str, Any]]:
    """JSON rows of one scale's per-model scores."""
    return _json(
        [
            {
                "model": m,
                "theta": s.theta[i],
                "se": s.se[i],
                "raw": s.raw[i],
                "raw_se": s.raw_se[i],
                "subjects": list(s.subjects[i]),
            }
            for i, m in enumerate(s.models)
        ]
    )


@dataclass
class ValidityReport:
    """The JSON document plus what the figures need (the per-model scores)."""

    doc: dict[str, Any]
    scales: list[ModelScores]

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def shared(self, a: str, b: str) -> list[str]:
        sa, sb = self.scale(a), self.scale(b)
        return sorted(set(sa.models) & set(sb.models))

    def scale(self, label: str) -> ModelScores:
        return next(s for s in self.scales if s.label == label)

    def set_collateral(self, rows: list[dict[str, Any]]) -> None:
        """Add the collateral-information replays (:mod:`orchestrator.sim.collateral`)."""
        self.doc["collateral"] = _json(rows)
        self.doc["summary"] = summary_lines(self.doc)


# --------------------------------------------------------------------------- analysis
def analyse_validity(
    inputs: Sequence[BankInput],
    names: ModelNames,
    options: ValidityOptions | None = None,
    progress: Progress | None = None,
) -> ValidityReport:
    """Match, score, correlate and predict (the collateral replays are added by
    :func:`orchestrator.sim.collateral.collateral_replays`, a floor up).

    Args:
        inputs: Two or more banks with their responses and estimates.
        names: The reviewed model-name mapping.
        options: Bootstrap, seed and replay settings.
        progress: Called with short status lines.

    Raises:
        ValueError: fewer than two inputs, or two with the same label.
    """
    opt = options or ValidityOptions()
    say = progress or (lambda _m: None)
    labels = [i.label for i in inputs]
    if len(inputs) < 2:
        raise ValueError("cross-bank validity needs at least two banks")
    if len(set(labels)) != len(labels):
        raise ValueError(f"each bank may appear once; got {labels}")
    rng = np.random.default_rng(opt.seed)
    scales = []
    for inp in inputs:
        raw, raw_se = raw_scores(inp)
        mapped = names.resolve(inp.bank.name, list(inp.responses.subjects))
        scales.append(model_scores(inp, mapped, raw, raw_se))
    report = ValidityReport(doc={}, scales=scales)
    pairs = []
    for a, b in itertools.combinations(range(len(inputs)), 2):
        say(f"correlations {labels[a]} × {labels[b]}")
        pairs.append(_pair(inputs[a], inputs[b], scales[a], scales[b], rng, opt))
    predictions = [
        _prediction(scales[a], scales[b], report.shared(labels[a], labels[b]))
        for a, b in itertools.permutations(range(len(inputs)), 2)
    ]
    report.doc = _json(
        {
            "schema_version": VALIDITY_SCHEMA_VERSION,
            "command": "validity",
            "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "software": f"agentcat {__version__}",
            "options": {
                "n_boot": opt.n_boot,
                "level": opt.level,
                "seed": opt.seed,
                "se_target": opt.se_target,
                "max_items": opt.max_items,
                "collateral": opt.collateral,
                "collateral_min_models": opt.collateral_min_models,
                "folds": opt.folds,
                "min_models": MIN_MODELS,
            },
            "names": {"file": names.source, "sha256": names.sha256},
            "scales": [_scale_doc(i, s) for i, s in zip(inputs, scales, strict=True)],
            "pairs": pairs,
            "predictions": predictions,
            "collateral": [],
        }
    )
    report.doc["summary"] = summary_lines(report.doc)
    return report


def _scale_doc(inp: BankInput, s: ModelScores) -> dict[str, Any]:
    by_status: dict[str, list[MappedSubject]] = {}
    for m in s.mapped:
        by_status.setdefault(m.status, []).append(m)
    return {
        "label": s.label,
        "bank": s.bank,
        "dimension": s.dimension,
        "source": inp.source,
        "n_subjects": len(inp.responses.subjects),
        "n_items": len(inp.bank),
        "n_observations": int(inp.responses.score.shape[0]),
        "n_models": len(s.models),
        "reliability_all_subjects": float(empirical_reliability(inp.theta, inp.se)),
        "theta_raw_pearson": float(pearson(s.theta, s.raw)) if len(s.models) > 2 else None,
        "mapping": {
            "unmapped_bank": "unmapped_bank" in by_status,
            "n_mapped": len(by_status.get("mapped", [])),
            "n_wildcard": len(by_status.get("wildcard", [])),
            "excluded": [
                {"subject": m.subject, "note": m.note} for m in by_status.get("excluded", [])
            ],
            "unmatched": [m.subject for m in by_status.get("unmatched", [])],
            "averaged": [
                {"model": model, "subjects": list(subs)}
                for model, subs in zip(s.models, s.subjects, strict=True)
                if len(subs) > 1
            ],
        },
    }


def _pair(
    ia: BankInput,
    ib: BankInput,
    a: ModelScores,
    b: ModelScores,
    rng: np.random.Generator,
    opt: ValidityOptions,
) -> dict[str, Any]:
    shared = sorted(set(a.models) & set(b.models))
    n = len(shared)
    warnings = []
    overlap = len(set(ia.bank.ids) & set(ib.bank.ids))
    if overlap:
        warnings.append(
            f"the banks share {overlap} item id(s): if they are the same items with the same "
            "responses, the measurement errors are correlated and the correction overstates r"
        )
    doc: dict[str, Any] = {"a": a.label, "b": b.label, "n": n, "theta": None, "raw": None}
    if n < MIN_MODELS:
        doc["note"] = f"{n} shared model(s): a correlation needs at least {MIN_MODELS}"
    else:
        if n < SMALL_N:
            warnings.append(f"only {n} shared models: the intervals are rough and wide")
        ta, sa, ra, rsa = a.take(shared)
        tb, sb, rb, rsb = b.take(shared)
        idx = bootstrap_indices(n, opt.n_boot, rng)
        doc["theta"] = pair_statistics(ta, sa, tb, sb, idx, opt.level).to_dict()
        doc["raw"] = pair_statistics(ra, rsa, rb, rsb, idx, opt.level).to_dict()
    if n <= LIST_MODELS_UP_TO:
        doc["models"] = [
            {
                "model": m,
                "theta_a": float(a.theta[a.index[m]]),
                "se_a": float(a.se[a.index[m]]),
                "theta_b": float(b.theta[b.index[m]]),
                "se_b": float(b.se[b.index[m]]),
                "raw_a": float(a.raw[a.index[m]]),
                "raw_b": float(b.raw[b.index[m]]),
            }
            for m in shared
        ]
    doc["warnings"] = warnings
    return doc


def _prediction(a: ModelScores, b: ModelScores, shared: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"from": a.label, "to": b.label, "n": len(shared), "regression": None}
    if len(shared) < MIN_MODELS:
        return doc
    ta, _, _, _ = a.take(shared)
    tb, sb, _, _ = b.take(shared)
    try:
        reg: Regression = fit_regression(ta, tb)
    except ValueError as exc:
        doc["note"] = str(exc)
        return doc
    doc["regression"] = reg.to_dict()
    doc["mean_se_to"] = float(np.mean(sb))
    return doc


# --------------------------------------------------------------------------- summary
def format_interval(iv: Mapping[str, Any] | None) -> str:
    """``0.64 [0.62, 0.66]`` from an interval of the JSON document; ``–`` when undefined."""
    if iv is None or iv.get("estimate") is None:
        return "–"
    lo, hi = iv.get("lo"), iv.get("hi")
    band = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{iv['estimate']:.2f}{band}"


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """Plain-language findings, one line each, from the JSON document."""
    lines = []
    computed = [p for p in doc["pairs"] if p["theta"] is not None]
    too_few = [p for p in doc["pairs"] if p["theta"] is None]
    for p in computed:
        t = p["theta"]
        d = t["disattenuated"]
        verdict = ""
        if p["n"] >= SMALL_N and d["lo"] is not None and d["hi"] is not None:
            if d["lo"] <= 0 <= d["hi"]:
                verdict = "; corrected CI includes 0: no evidence of a relation at this n"
            elif d["hi"] >= 1.0:
                verdict = "; corrected CI reaches 1: these data cannot tell the abilities apart"
            else:
                verdict = f"; corrected CI below 1: related but distinct (at most {d['hi']:.2f})"
        rough = f" (n < {SMALL_N}: intervals rough, no verdict)" if p["n"] < SMALL_N else ""
        r, rho = (format_interval(t[k]) for k in ("pearson", "spearman"))
        lines.append(
            f"{p['a']} × {p['b']} (n = {p['n']}){rough}: θ̂ r = {r}, corrected "
            f"{format_interval(d)}, Spearman {rho}; raw accuracy r = "
            f"{format_interval(p['raw']['pearson'])}{verdict}"
        )
    if too_few:
        listed = ", ".join(f"{p['a']} × {p['b']} (n = {p['n']})" for p in too_few)
        lines.append(f"{len(too_few)} pair(s) share fewer than {MIN_MODELS} models, no r: {listed}")
    for c in doc["collateral"]:
        s, n = c["items_saved"], c["n_subjects"]
        std, col = c["items_to_se"]["standard"], c["items_to_se"]["collateral"]
        at = c["rmse_vs_reference"].get("at_stop")
        check = (
            f"; RMSE at stop vs the held-out half {at['standard']:.2f} → {at['collateral']:.2f}"
            if at
            else ""
        )
        lines.append(
            f"collateral {c['from']} → {c['to']}: items to SE {doc['options']['se_target']:g} "
            f"{std['mean']:.1f} → {col['mean']:.1f} on average ({100 * (s['share'] or 0):.0f} % "
            f"saved; reached by {std['reached']} → {col['reached']} of {n}){check}"
        )
    for sc in doc["scales"]:
        m = sc["mapping"]
        if m["unmatched"]:
            lines.append(
                f"{sc['label']}: {len(m['unmatched'])} subject name(s) without a reviewed mapping "
                f"row: {', '.join(m['unmatched'][:6])}{' …' if len(m['unmatched']) > 6 else ''}"
            )
        if m["unmapped_bank"]:
            lines.append(f"{sc['label']}: no rows in the mapping file; subject names used as is")
    return lines


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def _json(x: Any) -> Any:
    """Round floats to 5 significant digits; NaN and inf become null."""
    if isinstance(x, dict):
        return {k: _json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return rounded(x)
    if isinstance(x, np.integer):
        return int(x)
    return x
