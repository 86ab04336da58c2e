"""Banks that learn: text-predicted items join a bank, and new responses update it.

* :func:`predicted_items_bank` turns a :class:`~orchestrator.coldstart.ParamPrediction`
  into bank items marked ``provisional``, their predictive SDs stored as ``a_se``/``b_se``
  (prior SDs, not sampling errors), optionally appended to an existing bank.
* :func:`bank_priors` states what a bank knows as per-item priors: log a ~ N(log a,
  (inflate · a_se/a)²), b_k ~ N(b_k, (inflate · b_se_k)²), with stated defaults where an
  item has no SEs.
* :func:`update_bank` re-estimates a bank on new responses with those priors (new items
  in the data get their text prediction or the global default prior), writes the
  result back into the bank, moves items from provisional to calibrated by
  :data:`STATUS_RULE`, and appends a :class:`~orchestrator.bank.CalibrationUpdate`.

Adaptively collected responses (CAT sessions) are fine here: the likelihood of the
responses given the parameters does not depend on how items were chosen, as long as
the choice depended only on responses already observed (the design is ignorable
given the responses). That assumes the selection used nothing else about the
subject (no peeking at unrecorded outcomes, no dropping of awkward runs) and that
each subject's θ stayed put during its session.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator import __version__
from orchestrator._validation import parse_model
from orchestrator.bank import BankFile, Calibration, CalibrationUpdate, ItemBank
from orchestrator.coldstart.model import ParamPrediction, require_one_dimension
from orchestrator.data import Responses
from orchestrator.errors import BankError, ConfigError
from orchestrator.irt.item_priors import ItemPriors

__all__ = [
    "CALIBRATED_SE",
    "DEFAULT_PRIOR_SD",
    "STATUS_RULE",
    "TEXT_PRIOR_METHOD",
    "UPDATE_METHOD",
    "append_items",
    "bank_priors",
    "predicted_items_bank",
    "update_bank",
]

FloatArray = NDArray[np.float64]
TEXT_PRIOR_METHOD = "text-prior-v1"
UPDATE_METHOD = "mml-em-update"
CALIBRATED_SE = 0.5
DEFAULT_PRIOR_SD = {"log_a": 0.5, "b": 2.0}
"""Prior SDs for bank items that carry no SEs (on log a and on each b_k), e.g. a
knob-rule provisional bank: about the text model's predictive SDs for a bank it has
never seen (bench/results/text_params.json, "across")."""
STATUS_RULE = (
    "an item moves from provisional to calibrated when an update fitted it to at least one "
    "response and every threshold's SE is <= {bound}; a calibrated item stays calibrated"
)


def predicted_items_bank(
    name: str,
    ids: Sequence[str],
    n_categories: Sequence[int],
    prediction: ParamPrediction,
    model_details: Mapping[str, Any],
    *,
    into: ItemBank | None = None,
    tags: Sequence[dict[str, str]] | None = None,
    extra: Sequence[Mapping[str, Any]] | None = None,
    description: str = "",
) -> ItemBank:
    """A bank of text-predicted, provisional items (appended to ``into`` when given).

    Args:
        ids, n_categories: The new items and their K.
        prediction: Their predicted parameters (in ``into``'s θ scale when given).
        model_details: :meth:`TextParamModel.describe`, kept in provenance.
        into: An existing bank: its items and provenance are kept, the new ones are
            appended with ``status: provisional``.
        tags: Content tags per new item.
        extra: Other ``ItemSpec`` fields per new item (``cost``, ``scenario`` …).

    Raises:
        BankError: an id is already in ``into``, or the result does not validate.
    """
    items = []
    for j, iid in enumerate(ids):
        k = int(n_categories[j])
        items.append(
            {
                "id": iid,
                "a": round(float(prediction.a[j]), 4),
                "b": [round(float(x), 4) for x in prediction.b[j, : k - 1]],
                "a_se": round(float(prediction.a_se[j]), 4),
                "b_se": [round(float(x), 4) for x in prediction.b_sd[j, : k - 1]],
                "tags": dict(tags[j]) if tags else {},
                "status": "provisional",
                **(dict(extra[j]) if extra else {}),
            }
        )
    details = {
        "text_model": dict(model_details),
        "uncertainty": "a_se and b_se of provisional items are predictive SDs (prior SDs), "
        "a_se = a * SD(log a) by the delta method",
    }
    if into is not None:
        return append_items(into, items, {"rule": TEXT_PRIOR_METHOD, **details})
    data: dict[str, Any] = {
        "name": name,
        "description": description or f"{len(ids)} items with text-predicted parameters",
        "calibration": Calibration(
            status="provisional",
            method=TEXT_PRIOR_METHOD,
            rule="parameters predicted from item text; not estimated from responses",
            date=_now(),
            software=f"agentcat {__version__}",
            details=details,
        ).model_dump(),
        "items": items,
        "scale": {"labels": [f"category {i}" for i in range(max(int(k) for k in n_categories))]},
    }
    return ItemBank(parse_model(BankFile, data, f"bank {name!r}", BankError))


def append_items(
    bank: ItemBank, items: Sequence[Mapping[str, Any]], addition: Mapping[str, Any]
) -> ItemBank:
    """``bank`` with ``items`` (item dicts, marked provisional) appended.

    ``calibration.details["additions"]`` gains ``addition`` with the new ids and the date:
    which rule produced the new items' parameters. The old items keep their parameters
    and get their status written out (the bank's status turns provisional).

    Raises:
        BankError: an id is already in ``bank``, or the result does not validate.
    """
    require_one_dimension(bank)
    ids = [it["id"] for it in items]
    clash = sorted(set(ids) & set(bank.ids))
    if clash:
        raise BankError(
            f"item(s) {clash[:5]} are already in bank {bank.name!r}",
            hint="predict only items the bank lacks; calibrate --update refines the others",
        )
    data = bank.to_dict()
    data["items"] = [
        {**it, "status": status} for it, status in zip(data["items"], bank.item_status, strict=True)
    ] + [{**it, "status": "provisional"} for it in items]
    cal = data["calibration"]
    cal["status"] = "provisional"
    details = cal.setdefault("details", {})
    details["additions"] = [
        *details.get("additions", []),
        {**addition, "ids": ids, "date": _now()},
    ]
    return ItemBank(parse_model(BankFile, data, f"bank {bank.name!r}", BankError))


def bank_priors(
    bank: ItemBank, ids: Sequence[str], *, inflate: float = 1.0
) -> tuple[ItemPriors, list[str]]:
    """Per-item priors from ``bank`` for ``ids`` (rows of ids the bank lacks are NaN).

    Returns:
        The priors and the list of ids that are not in the bank.
    """
    require_one_dimension(bank)
    if not (math.isfinite(inflate) and inflate > 0):
        raise ConfigError(f"prior inflation must be a number > 0; got {inflate!r}")
    log_a: list[tuple[float, float] | None] = []
    b: list[list[tuple[float, float]] | None] = []
    missing = []
    for iid in ids:  # once per item at the API edge
        if iid not in bank.index:
            missing.append(iid)
            log_a.append(None)
            b.append(None)
            continue
        it = bank.item(iid)
        sd_la = it.a_se / it.a if it.a_se else DEFAULT_PRIOR_SD["log_a"]
        sd_b = it.b_se if it.b_se is not None else [DEFAULT_PRIOR_SD["b"]] * len(it.b)
        log_a.append((math.log(it.a), inflate * sd_la))
        b.append([(bk, inflate * s) for bk, s in zip(it.b, sd_b, strict=True)])
    priors = ItemPriors.from_lists(log_a, b)
    return priors, missing


def update_bank(
    bank: ItemBank,
    responses: Responses,
    *,
    n_categories: Mapping[str, int] | None = None,
    predicted: tuple[Sequence[str], ParamPrediction] | None = None,
    inflate: float = 1.0,
    calibrated_se: float = CALIBRATED_SE,
    source: str,
    source_sha256: str,
    calibrator_args: Mapping[str, Any] | None = None,
) -> tuple[ItemBank, dict[str, Any]]:
    """Re-estimate ``bank`` on ``responses`` with its parameters as per-item priors.

    Args:
        bank: The bank to update (not modified; a new bank is returned).
        responses: New responses (subjects may be new or old; items new or old).
        n_categories: K of items new to the bank (default: highest score + 1).
        predicted: ``(ids, prediction)``: text-predicted priors for new items.
        inflate: Multiplies every prior SD taken from the bank (> 1 trusts it less).
        calibrated_se: The bound of :data:`STATUS_RULE`.
        source, source_sha256: The response file and its hash (provenance).
        calibrator_args: More :class:`~orchestrator.irt.calibrate.GRMCalibrator` arguments.

    Returns:
        The updated bank and a JSON-ready summary.
    """
    from orchestrator.irt.calibrate import GRMCalibrator  # torch: imported on use

    ids = list(responses.items)
    priors, new_ids = bank_priors(bank, ids, inflate=inflate)
    k = np.array(
        [
            int(bank.n_categories[bank.index[i]])
            if i in bank.index
            else int((n_categories or {}).get(i, 0))
            for i in ids
        ]
    )
    observed = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(observed, responses.item_idx, responses.score)
    k = np.maximum(k, np.maximum(observed + 1, 2))
    t_max = int(k.max()) - 1
    priors = _with_predictions(_widen(priors, t_max), ids, predicted)
    cal = GRMCalibrator(item_priors=priors, **dict(calibrator_args or {}))
    # the bank's reverse-keyed items are read reversed, as its priors are
    flip = np.array(
        [i in bank.index and bool(bank.reverse_keyed[bank.index[i]]) for i in ids], dtype=bool
    )
    j = responses.item_idx
    score = np.where(flip[j], k[j] - 1 - responses.score, responses.score)
    cal.fit(
        responses.subject_idx,
        responses.item_idx,
        score,
        n_categories=k,
        item_ids=ids,
        n_subjects=len(responses.subjects),
    )
    fitted = {iid: j for j, iid in enumerate(cal.item_ids_)}
    data = bank.to_dict()
    old_status = bank.item_status
    items: list[dict[str, Any]] = []
    promoted = 0
    for pos, spec in enumerate(data["items"]):
        status = old_status[pos]
        if spec["id"] in fitted:
            spec = _refit(spec, cal, fitted[spec["id"]])
            if status == "provisional" and _meets_rule(spec, calibrated_se):
                status, promoted = "calibrated", promoted + 1
        items.append({**spec, "status": status})
    added = [i for i in new_ids if i in fitted]
    pred_ids = set(predicted[0]) if predicted else set()
    for iid in added:
        spec = _refit({"id": iid, "tags": {}}, cal, fitted[iid])
        ok = _meets_rule(spec, calibrated_se)
        items.append({**spec, "status": "calibrated" if ok else "provisional"})
        promoted += ok
    statuses = {it["status"] for it in items}
    data["items"] = items
    record = data["calibration"]
    record["status"] = "calibrated" if statuses == {"calibrated"} else "provisional"
    update = CalibrationUpdate(
        date=_now(),
        method=UPDATE_METHOD,
        data=source,
        data_sha256=source_sha256,
        n_subjects=cal.n_subjects_,
        n_observations=cal.n_observations_,
        n_items_updated=len(fitted) - len(added),
        n_items_added=len(added),
        n_items_promoted=promoted,
        log_likelihood=cal.loglik_,
        details={
            "prior_old_items": f"bank values, SD = {inflate:g} x SE (no SE: log a "
            f"{DEFAULT_PRIOR_SD['log_a']}, b {DEFAULT_PRIOR_SD['b']})",
            "prior_new_items": {
                "text_predicted": sorted(pred_ids & set(added)),
                "default": sorted(set(added) - pred_ids),
            },
            "population": {"mean": cal.population_[0], "sd": cal.population_[1]},
            "status_rule": STATUS_RULE.format(bound=calibrated_se),
            "excluded_items": list(cal.excluded_),
            "converged": cal.converged_,
            "iterations": cal.n_iter_,
            "software": f"agentcat {__version__}",
        },
    )
    record["updates"] = [*record.get("updates", []), update.model_dump(mode="json")]
    new_bank = ItemBank(parse_model(BankFile, data, f"bank {bank.name!r}", BankError))
    summary = {
        "bank": bank.name,
        "n_subjects": cal.n_subjects_,
        "n_observations": cal.n_observations_,
        "n_items_updated": update.n_items_updated,
        "n_items_added": update.n_items_added,
        "n_items_promoted": promoted,
        "n_provisional": sum(s == "provisional" for s in new_bank.item_status),
        "population": {"mean": cal.population_[0], "sd": cal.population_[1]},
        "excluded": list(cal.excluded_),
        "log_likelihood": cal.loglik_,
        "converged": cal.converged_,
        "status": record["status"],
    }
    return new_bank, summary


def _widen(priors: ItemPriors, t: int) -> ItemPriors:
    extra = t - priors.b_mean.shape[1]
    if extra <= 0:
        return priors
    pad = ((0, 0), (0, extra))
    return ItemPriors(
        priors.log_a_mean,
        priors.log_a_sd,
        np.pad(priors.b_mean, pad, constant_values=np.nan),
        np.pad(priors.b_sd, pad, constant_values=np.nan),
    )


def _with_predictions(
    priors: ItemPriors, ids: Sequence[str], predicted: tuple[Sequence[str], ParamPrediction] | None
) -> ItemPriors:
    """Fill the rows of predicted new items with their predictions (means and SDs)."""
    if predicted is None:
        return priors
    pos = {iid: j for j, iid in enumerate(ids)}
    pred_ids, pred = predicted
    for r, iid in enumerate(pred_ids):  # once per new item
        j = pos.get(iid)
        if j is None or np.isfinite(priors.log_a_mean[j]):
            continue  # not in the data, or already in the bank
        t = int(np.isfinite(pred.b[r]).sum())
        priors.log_a_mean[j] = math.log(float(pred.a[r]))
        priors.log_a_sd[j] = float(pred.log_a_sd[r])
        priors.b_mean[j, :t] = pred.b[r, :t]
        priors.b_sd[j, :t] = pred.b_sd[r, :t]
    return priors


def _refit(spec: dict[str, Any], cal: Any, j: int) -> dict[str, Any]:
    b = [float(x) for x in cal.b_[j] if math.isfinite(x)]
    out = {**spec, "a": float(cal.a_[j]), "b": b}
    a_se, b_se = float(cal.a_se_[j]), [float(x) for x in cal.b_se_[j][: len(b)]]
    if math.isfinite(a_se) and all(math.isfinite(x) for x in b_se):
        out["a_se"], out["b_se"] = a_se, b_se
    else:
        out.pop("a_se", None)
        out.pop("b_se", None)
    return out


def _meets_rule(spec: Mapping[str, Any], bound: float) -> bool:
    return spec.get("b_se") is not None and max(spec["b_se"]) <= bound


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
