"""Where item text comes from: a bank folder's ``items.csv`` or a scenario family's spec.

A bank folder may hold ``items.csv`` with columns ``id`` and ``text`` (more columns
are allowed, e.g. ``text_source``): the text a cold-start model reads for each item.
A scenario item's text is built from its family spec: title, description, the
rendered prompt, the chosen knob levels with their descriptions and the checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.bank import ItemBank, load_bank
from orchestrator.data import read_item_table
from orchestrator.errors import DataError
from orchestrator.scenario import FamilySpec, Variant, iter_items, render_prompt

__all__ = [
    "ITEM_TEXT_FILENAME",
    "bank_with_text",
    "read_item_texts",
    "scenario_text",
    "scenario_texts",
]

ITEM_TEXT_FILENAME = "items.csv"


def read_item_texts(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{item id: text}`` from an ``id,text`` CSV (or a bank folder holding ``items.csv``).

    Raises:
        DataError: missing file, no ``id``/``text`` column, duplicate ids.
    """
    p = Path(path)
    file = p / ITEM_TEXT_FILENAME if p.is_dir() else p
    table = read_item_table(file, id_column="id")
    table.require_columns(["text"])
    texts = {iid: row["text"] for iid, row in table.rows.items() if row["text"]}
    if not texts:
        raise DataError(f"{file}: no item has text", hint="fill the 'text' column")
    return texts


def bank_with_text(folder: str | os.PathLike[str]) -> tuple[ItemBank, dict[str, str]]:
    """A bank and the texts of its items (from the folder's ``items.csv``)."""
    bank = load_bank(folder)
    assert bank.path is not None
    if not (bank.path / ITEM_TEXT_FILENAME).exists():
        raise DataError(
            f"bank {bank.name!r} ({bank.path}) has no {ITEM_TEXT_FILENAME} with item text",
            hint="add items.csv with columns id,text (see 'Cold start' in README.md)",
        )
    return bank, read_item_texts(bank.path)


def scenario_text(family: FamilySpec, variant: Variant | str) -> str:
    """What an agent is asked, under which knob settings, what is checked, and why.

    The variant-specific parts come first: the embedding model reads about 256
    tokens, and the family's description is the same for all its variants.
    """
    v = family.variant(variant) if isinstance(variant, str) else variant
    settings = []
    for name, level in v.knobs.items():
        knob = family.knobs[name]
        detail = knob.levels[level].description or knob.description
        settings.append(f"{name} = {level} ({' '.join(detail.split())})")
    checks = "; ".join(
        f"[{c.severity}] {c.description}"
        for c in family.checks
        if c.variants is None or v.id in c.variants
    )
    return "\n".join(
        [
            f"Task: {render_prompt(family, v)}",
            f"Settings: {'; '.join(settings)}",
            f"Checks: {checks}",
            f"Scenario: {family.title}. {' '.join(family.description.split())}",
        ]
    )


def scenario_texts(families: Mapping[str, FamilySpec] | Iterable[FamilySpec]) -> dict[str, str]:
    """``{item id: text}`` for every variant of every family."""
    return {it.id: scenario_text(it.family, it.variant) for it in iter_items(families)}
