"""Which subject of which bank is which model: a reviewed mapping file, never fuzzy matching.

Benchmarks name the same model differently (``gpt-4-0125-preview@GCG``,
``openai/gpt-4-0125-preview``, ``meta-llama_Llama-3-70b-chat-hf``). A CSV
maps each bank's subject names to one canonical model id, row by row, with
the source that justifies the row::

    banks,subject,model,condition,source,note
    agentdojo,gpt-4o-2024-05-13-tool_filter,openai/gpt-4o-2024-05-13,defense=tool_filter,…,…
    tinyarc;tinygsm8k,*,*,,shared/data/tinybench/README.md,ids are HF ids, same in every matrix

- ``banks``: one or more bank names separated by ``;``.
- ``subject``: the name in that bank's responses; ``*`` = every subject of the
  bank without a row of its own (``model`` must then be ``*``: the name *is*
  the canonical id, a claim the ``source`` must back).
- ``model``: the canonical id; empty = deliberately not matched (the note says why).
- ``condition``: empty for the model as such; otherwise what differs (an
  attack, a defence, a system prompt). A model's score on a bank is the mean
  over its subjects *without* a condition when it has any, else over all its
  subjects (see :func:`orchestrator.report.validity.model_scores`).

A bank with no row at all keeps its subject names unchanged (reported as
unmapped), so live session journals, whose subject is the model string
itself, need no rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator._io import sha256_file
from orchestrator.data import _csv_table
from orchestrator.errors import DataError

__all__ = [
    "DEFAULT_NAMES_FILE",
    "MappedSubject",
    "ModelNames",
    "NameRow",
    "load_model_names",
]

DEFAULT_NAMES_FILE = Path("data/model_names/model_names.csv")
WILDCARD = "*"
_COLUMNS = ("banks", "subject", "model", "condition", "source", "note")
_HINT = "columns banks,subject,model,condition,source,note (see data/model_names/README.md)"


@dataclass(frozen=True)
class NameRow:
    """One reviewed row of the mapping file."""

    bank: str
    subject: str
    model: str
    condition: str
    source: str
    note: str
    line: int


@dataclass(frozen=True)
class MappedSubject:
    """How one subject of one bank was matched.

    ``status``: ``mapped`` (its own row), ``wildcard`` (the bank's ``*`` row),
    ``unmapped_bank`` (the bank has no rows; name used as is), ``excluded``
    (a row with an empty model) or ``unmatched`` (the bank has rows, none
    for this subject).
    """

    subject: str
    model: str | None
    condition: str
    status: str
    note: str


@dataclass(frozen=True)
class ModelNames:
    """The parsed mapping file."""

    rows: dict[tuple[str, str], NameRow]
    source: str
    sha256: str | None

    @property
    def banks(self) -> set[str]:
        return {bank for bank, _ in self.rows}

    def resolve(self, bank: str, subjects: tuple[str, ...] | list[str]) -> list[MappedSubject]:
        """Match every subject of ``bank`` (same order as given)."""
        if bank not in self.banks:
            return [MappedSubject(s, s, "", "unmapped_bank", "") for s in subjects]
        wild = self.rows.get((bank, WILDCARD))
        out = []
        for s in subjects:
            row = self.rows.get((bank, s))
            if row is not None:
                status = "mapped" if row.model else "excluded"
                out.append(MappedSubject(s, row.model or None, row.condition, status, row.note))
            elif wild is not None:
                out.append(MappedSubject(s, s, wild.condition, "wildcard", ""))
            else:
                out.append(MappedSubject(s, None, "", "unmatched", ""))
        return out


def load_model_names(path: str | os.PathLike[str] | None = None) -> ModelNames:
    """Read and check a mapping file (default ``data/model_names/model_names.csv``).

    Raises:
        DataError: missing columns, an empty bank or subject, a wildcard row
            whose model is not ``*``, a row without a source, or the same
            (bank, subject) twice; the message names the file and line.
    """
    file = Path(DEFAULT_NAMES_FILE if path is None else path)
    if not file.is_file():
        raise DataError(
            f"model-name mapping {file} does not exist",
            hint="pass --names FILE (format: data/model_names/README.md), or run from the "
            "repository root where data/model_names/ lives",
        )
    rows: dict[tuple[str, str], NameRow] = {}
    with _csv_table(file, "model-name mapping", hint=_HINT) as (header, records):
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise DataError(f"{file}:1: no column {missing[0]!r}; columns are {header}", hint=_HINT)
        for line, fields in records:
            rec = {h: f.strip() for h, f in zip(header, fields, strict=True)}
            for bank in (b.strip() for b in rec["banks"].split(";")):
                row = NameRow(
                    bank,
                    rec["subject"],
                    rec["model"],
                    rec["condition"],
                    rec["source"],
                    rec["note"],
                    line,
                )
                _check_row(row, rows, f"{file}:{line}")
                rows[(bank, row.subject)] = row
    return ModelNames(rows=rows, source=str(file), sha256=sha256_file(file))


def _check_row(row: NameRow, seen: dict[tuple[str, str], NameRow], where: str) -> None:
    if not row.bank or not row.subject:
        raise DataError(f"{where}: every row needs a bank and a subject", hint=_HINT)
    if not row.source:
        raise DataError(
            f"{where}: subject {row.subject!r} has no source",
            hint="each row says where the identity comes from (a README, a config file …)",
        )
    if (row.subject == WILDCARD) != (row.model == WILDCARD):
        raise DataError(
            f"{where}: '*' must be both subject and model (subject {row.subject!r}, "
            f"model {row.model!r})",
            hint="a '*' row declares that the bank's subject names are canonical ids",
        )
    earlier = seen.get((row.bank, row.subject))
    if earlier is not None:
        raise DataError(
            f"{where}: bank {row.bank!r} subject {row.subject!r} is already mapped on line "
            f"{earlier.line}"
        )
