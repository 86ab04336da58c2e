"""New scenario variants join a scenario bank with a prior, the bank's learning kept.

``agentcat scenarios bank`` writes a knob-rule bank (``provisional.py``) while the bank
has learned nothing. Once it has (an update, a calibrated item, another method),
rewriting it would throw the learning away, so instead :func:`extend_scenario_bank`
keeps every item that still has a variant and appends the new variants, marked
provisional, with parameters from one of two rules:

* ``text-prior-v1`` when an embedder is available (the ``text`` extra) and the bank has
  at least :data:`MIN_TEXT_TRAINING` calibrated items: a text model trained on those
  items' scenario texts (prompt, knob settings, checks) predicts the new variants in
  the bank's own θ scale, with predictive SDs as their prior SDs.
* ``knob-rule-v1`` otherwise: the knob rule's parameters, with the default prior SDs
  of ``calibrate --update`` (the text model has nothing in this bank's scale to learn
  from, and across banks text did not rank items: bench/results/text_params.json).

``calibration.details["additions"]`` records which rule produced which items, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.bank import ItemBank
from orchestrator.coldstart.features import Embedder
from orchestrator.coldstart.model import fit_text_model
from orchestrator.coldstart.text import scenario_texts
from orchestrator.coldstart.update import (
    DEFAULT_PRIOR_SD,
    TEXT_PRIOR_METHOD,
    append_items,
    predicted_items_bank,
)
from orchestrator.errors import BankError
from orchestrator.provisional import provisional_bank
from orchestrator.scenario import FamilySpec

__all__ = ["MIN_TEXT_TRAINING", "extend_scenario_bank", "has_learned"]

MIN_TEXT_TRAINING = 10
"""Fewest calibrated items with text for the text rule (``TextParamModel`` needs 10)."""


def has_learned(bank: ItemBank) -> bool:
    """True when ``bank`` holds more than the knob rule: an update or a calibrated item."""
    cal = bank.spec.calibration
    return bool(cal.updates) or cal.method != "knob-rule-v1" or "calibrated" in bank.item_status


def extend_scenario_bank(
    bank: ItemBank, families: Mapping[str, FamilySpec], embedder: Embedder | None
) -> tuple[ItemBank, dict[str, Any]]:
    """``bank`` with the variants it lacks appended (provisional) and vanished ones dropped.

    Args:
        bank: An existing scenario bank (1-D).
        families: Every family now under the environments folder.
        embedder: For the text rule; None when the ``text`` extra is not installed.

    Returns:
        The bank and a summary: ``added`` (id → rule), ``removed`` ids, ``rule``, ``reason``.

    Raises:
        BankError: ``bank`` holds items that are not scenario variants.
    """
    foreign = [it.id for it in bank.spec.items if it.source is None or it.source.kind != "scenario"]
    if foreign:
        raise BankError(
            f"bank {bank.name!r} holds items that are not scenario variants "
            f"({', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''})",
            hint="'scenarios bank --out' must name a scenario bank folder (or a new one)",
        )
    fresh = provisional_bank(families, name=bank.name)
    new_specs = [it for it in fresh.to_dict()["items"] if it["id"] not in bank.index]
    removed = [i for i in bank.ids if i not in fresh.index]
    if removed:
        data = bank.to_dict()
        data["items"] = [
            {**it, "status": st}
            for it, st in zip(data["items"], bank.item_status, strict=True)
            if it["id"] not in set(removed)
        ]
        bank = ItemBank(bank.spec.model_validate(data))
    summary: dict[str, Any] = {"added": {}, "removed": removed, "rule": None, "reason": None}
    if not new_specs:
        return bank, summary
    texts = scenario_texts(families)
    calibrated = [i for i, st in zip(bank.ids, bank.item_status, strict=True) if st == "calibrated"]
    trained = [i for i in calibrated if i in texts]
    if embedder is None:
        reason = "the text extra is not installed (pip install 'agentcat[text]')"
    elif len(trained) < MIN_TEXT_TRAINING:
        reason = (
            f"{len(trained)} calibrated item(s) with text in this bank, fewer than "
            f"{MIN_TEXT_TRAINING}: the text model has nothing in its θ scale to learn from"
        )
    else:
        reason = f"text model trained on the bank's {len(trained)} calibrated items"
    if embedder is not None and len(trained) >= MIN_TEXT_TRAINING:
        model = fit_text_model([(bank, texts)], embedder)
        ids = [it["id"] for it in new_specs]
        ks = [len(it["b"]) + 1 for it in new_specs]
        pred = model.predict([texts[i] for i in ids], ks, bank=bank.name)
        extra = [{k: it[k] for k in ("cost", "source") if k in it} for it in new_specs]
        out = predicted_items_bank(
            bank.name,
            ids,
            ks,
            pred,
            {**model.describe(), "reason": reason},
            into=bank,
            tags=[it["tags"] for it in new_specs],
            extra=extra,
        )
        rule = TEXT_PRIOR_METHOD
    else:
        rule = "knob-rule-v1"
        out = append_items(
            bank,
            new_specs,
            {
                "rule": rule,
                "reason": reason,
                "detail": fresh.spec.calibration.rule,
                "prior_sd": "none stored; calibrate --update uses log a "
                f"{DEFAULT_PRIOR_SD['log_a']}, b {DEFAULT_PRIOR_SD['b']}",
            },
        )
    summary.update(added={it["id"]: rule for it in new_specs}, rule=rule, reason=reason)
    return out, summary
