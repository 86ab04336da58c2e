"""Response matrices in long format: CSV ``subject,item,score``, one row per observation.

Missing data is normal (not every model ran every scenario), so the in-memory
form is sparse too: three index arrays over the observations, never a dense
subjects × items matrix.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from orchestrator._io import atomic_write_text, where_not_utf8
from orchestrator.errors import DataError, did_you_mean

__all__ = [
    "REQUIRED_COLUMNS",
    "AlignedResponses",
    "ItemTable",
    "Responses",
    "read_item_table",
    "read_responses",
    "write_responses",
]

REQUIRED_COLUMNS = ("subject", "item", "score")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Responses:
    """Observed (subject, item, score) triples.

    Attributes:
        subjects: Distinct subject ids, in order of first appearance.
        items: Distinct item ids, in order of first appearance.
        subject_idx, item_idx, score: One entry per observation.
        line: 1-based line of each observation in ``source`` (for error messages).
        source: Where the data came from (file path or a description).
    """

    subjects: tuple[str, ...]
    items: tuple[str, ...]
    subject_idx: IntArray
    item_idx: IntArray
    score: IntArray
    line: IntArray
    source: str

    @property
    def n_obs(self) -> int:
        return int(self.score.shape[0])

    @classmethod
    def from_triples(
        cls, triples: Iterable[tuple[str, str, int]], source: str = "<memory>"
    ) -> Responses:
        """Build from ``(subject, item, score)`` tuples; same checks as :func:`read_responses`."""
        rows = ((i + 2, s, it, str(x)) for i, (s, it, x) in enumerate(triples))
        return _build(rows, source)

    def drop_items(
        self, item_ids: Iterable[str], *, drop_empty_subjects: bool = False
    ) -> Responses:
        """These responses without the observations of ``item_ids`` (order kept).

        Args:
            item_ids: Items to remove; ids not in the data are ignored.
            drop_empty_subjects: Also remove subjects left without any
                observation (otherwise they stay, with none).
        """
        gone = set(item_ids)
        drop = np.array([iid in gone for iid in self.items], dtype=bool)
        if not drop.any():
            return self
        keep = ~drop[self.item_idx]
        subjects, subject_idx = self.subjects, self.subject_idx[keep]
        if drop_empty_subjects:
            present = np.zeros(len(self.subjects), dtype=bool)
            present[subject_idx] = True
            subjects = tuple(s for s, p in zip(self.subjects, present, strict=True) if p)
            subject_idx = (np.cumsum(present) - 1)[subject_idx]
        return Responses(
            subjects=subjects,
            items=tuple(iid for iid, d in zip(self.items, drop, strict=True) if not d),
            subject_idx=subject_idx,
            item_idx=(np.cumsum(~drop) - 1)[self.item_idx[keep]],
            score=self.score[keep],
            line=self.line[keep],
            source=self.source,
        )

    def keep_bank_items(self, bank: ItemBankLike) -> tuple[Responses, list[str]]:
        """Only the observations of items in ``bank``, and the ids of the items dropped.

        Subjects left without any observation are dropped too.

        Raises:
            DataError: none of the items is in the bank (wrong bank).
        """
        dropped = [iid for iid in self.items if iid not in bank.index]
        if len(dropped) == len(self.items):
            raise DataError(
                f"{self.source}: none of its items is in bank {bank.name!r}",
                hint="is this the bank calibrated on this data?",
            )
        return self.drop_items(dropped, drop_empty_subjects=True), dropped

    def for_bank(self, bank: ItemBankLike, *, unknown_hint: str | None = None) -> AlignedResponses:
        """Map item ids onto ``bank``'s indices and check scores against each item's K.

        Scores of the bank's reverse-keyed items are read reversed (x → K − 1 − x)
        in the result's ``score``: everything downstream sees the model's keying.

        ``unknown_hint`` replaces the hint of the error for an item the bank lacks
        (a command can name its own way out, e.g. a flag that drops them).

        Raises:
            DataError: an item is not in the bank, or a score is outside 0..K-1
                for its item; the message names the file, line and values.
        """
        bank_idx = np.empty(len(self.items), dtype=np.int64)
        for j, iid in enumerate(self.items):  # once per distinct item
            if iid not in bank.index:
                obs = int(np.flatnonzero(self.item_idx == j)[0])
                raise DataError(
                    f"{self.source}:{self.line[obs]}: item {iid!r} is not in bank "
                    f"{bank.name!r}{did_you_mean(iid, bank.index)}",
                    hint=unknown_hint
                    or "use the bank calibrated on this data, or drop rows of items it lacks",
                )
            bank_idx[j] = bank.index[iid]
        item_in_bank = bank_idx[self.item_idx]
        k = bank.n_categories[item_in_bank]
        bad = np.flatnonzero(self.score >= k)
        if bad.size:
            o = int(bad[0])
            iid = self.items[self.item_idx[o]]
            raise DataError(
                f"{self.source}:{self.line[o]}: score {self.score[o]} for item {iid!r} is outside "
                f"the bank's scale 0..{k[o] - 1}",
                hint="check K for this item in bank.json (len(b) + 1) or the scores in the CSV",
            )
        reverse = np.asarray(getattr(bank, "reverse_keyed", np.zeros(len(bank.index), bool)))
        flip = reverse[item_in_bank]
        keyed = np.where(flip, k - 1 - self.score, self.score) if flip.any() else self.score
        return AlignedResponses(self, item_in_bank, keyed)


class ItemBankLike(Protocol):
    """What :meth:`Responses.for_bank` needs of a bank (keeps data.py free of bank.py)."""

    @property
    def name(self) -> str: ...

    index: dict[str, int]
    n_categories: IntArray


@dataclass(frozen=True)
class AlignedResponses:
    """Responses whose item indices point into a bank's arrays."""

    responses: Responses
    bank_item: IntArray
    """Bank index of each observation's item."""
    score: IntArray
    """Each observation's score as the bank's model reads it (reverse-keyed items reversed)."""

    @property
    def subject_idx(self) -> IntArray:
        return self.responses.subject_idx

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.responses.subjects


def read_responses(path: str | os.PathLike[str]) -> Responses:
    """Read and validate a long-format response CSV.

    The header must contain ``subject``, ``item`` and ``score`` (other columns
    are ignored). Scores are non-negative integers; each (subject, item) pair
    appears once.

    Raises:
        DataError: naming the file, the line and the problem.
    """
    p = Path(path)
    plain = _read_plain_responses(p)
    return plain if plain is not None else _read_responses_csv(p)


def _read_responses_csv(p: Path) -> Responses:
    """Every file, row by row through the csv module: what :func:`read_responses` does
    when the fast reader declines, and where every error message comes from."""
    with _csv_table(p, "response", _FORMAT_HINT) as (cols, records):
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            guess = "".join(did_you_mean(m, cols) for m in missing[:1])
            raise DataError(
                f"{p}:1: header {_clip(str(cols))} lacks column(s) {missing}{guess}",
                hint=_FORMAT_HINT,
            )
        i, j, k = (cols.index(c) for c in REQUIRED_COLUMNS)
        return _build(((line, f[i], f[j], f[k]) for line, f in records), str(p))


@contextlib.contextmanager
def _csv_table(
    p: Path, what: str, hint: str | None = None
) -> Iterator[tuple[list[str], Iterator[tuple[int, list[str]]]]]:
    """Open a CSV: its stripped header and its non-blank rows as ``(line, fields)``.

    Every row must have the header's width; a missing or empty file, a ragged
    row or malformed CSV is a DataError naming the file and line.
    """
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}")
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{p}: file is empty", hint=hint) from None
        except csv.Error as exc:
            raise DataError(f"{p}:1: malformed CSV: {exc}", hint=hint) from None
        except UnicodeDecodeError as exc:
            raise _not_utf8(p, 1, exc) from None

        def records() -> Iterator[tuple[int, list[str]]]:
            try:
                for fields in reader:
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    line = reader.line_num
                    if len(fields) != len(header):
                        raise DataError(
                            f"{p}:{line}: expected {len(header)} fields, got "
                            f"{len(fields)}: {_clip(repr(fields))}",
                            hint=hint,
                        )
                    yield line, fields
            except csv.Error as exc:
                raise DataError(f"{p}:{reader.line_num}: malformed CSV: {exc}") from None
            except UnicodeDecodeError as exc:
                raise _not_utf8(p, reader.line_num + 1, exc) from None

        yield header, records()


def _not_utf8(p: Path, line: int, exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{p}: not UTF-8 text ({where_not_utf8(exc)}, near line {line}): a binary file, or "
        "another encoding such as Latin-1",
        hint=f"convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 {p} > utf8.csv`",
    )


def _clip(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


MAX_ID_LENGTH = 1000
"""Longest subject or item id: a longer one is a broken row (an open quote, a shifted
column), never a name."""

MAX_SCORE = 99
"""Largest score accepted as a category (K ≤ 100): a bigger number is a data error
(a percentage, a typo), not a scale anyone calibrates a GRM on."""


_FORMAT_HINT = "expected a CSV with header 'subject,item,score' and one integer score per row"

_PLAIN_CHUNK_BYTES = 8 << 20
"""Bytes the fast reader parses at a time (plus the rest of the last line)."""


def _read_plain_responses(p: Path, chunk_bytes: int = _PLAIN_CHUNK_BYTES) -> Responses | None:
    """The fast reader: a *plain* valid file in vectorised chunks, else None.

    Plain means no quotes, NUL bytes or lone carriage returns, no blank lines
    except at the end, every row the header's width, ids without surrounding
    whitespace. Ids are mapped to indices by two dicts of bytes and scores
    parsed a chunk at a time, so memory stays near the output arrays (the
    row-by-row reader held Python objects per cell). Anything else, and
    every invalid file, returns None: :func:`_read_responses_csv` then reads
    it and raises the file:line error, so both readers give one behaviour.
    """
    if not p.is_file():
        return None
    subjects: defaultdict[bytes, int] = defaultdict(itertools.count().__next__)
    items: defaultdict[bytes, int] = defaultdict(itertools.count().__next__)
    columns: tuple[list[IntArray], ...] = ([], [], [])  # subject index, item index, score
    with open(p, "rb") as fh:
        head = fh.readline()
        if b'"' in head:
            return None
        try:
            cols = [h.strip() for h in head.decode("utf-8-sig").rstrip("\r\n").split(",")]
        except UnicodeDecodeError:
            return None
        if any(c not in cols for c in REQUIRED_COLUMNS):
            return None
        i, j, k = (cols.index(c) for c in REQUIRED_COLUMNS)
        chunk = fh.read(chunk_bytes) + fh.readline()
        while chunk:
            following = fh.read(chunk_bytes) + fh.readline()
            while following and not following.strip(b"\r\n"):  # blank lines: the end, or mid-file
                following = fh.read(chunk_bytes) + fh.readline()
                if following.strip(b"\r\n"):
                    return None
            if not following:  # the last chunk: blank lines may close the file
                chunk = chunk.rstrip(b"\r\n") + b"\n"
            part = _plain_chunk(chunk, len(cols), (i, j, k), subjects, items)
            if part is None:
                return None
            for column, values in zip(columns, part, strict=True):
                column.append(values)
            chunk = following
    return _plain_responses(columns, subjects, items, str(p))


def _plain_chunk(
    chunk: bytes,
    width: int,
    where: tuple[int, int, int],
    subjects: defaultdict[bytes, int],
    items: defaultdict[bytes, int],
) -> tuple[IntArray, IntArray, IntArray] | None:
    """(subject index, item index, score) of each row of whole lines; None if not plain."""
    if b'"' in chunk or b"\0" in chunk:
        return None
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
        if b"\r" in chunk:
            return None
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    raw = np.frombuffer(chunk, dtype=np.uint8)
    delims = raw[(raw == ord(",")) | (raw == ord("\n"))]
    shape = [ord(",")] * (width - 1) + [ord("\n")]
    if delims.size % width or not (delims.reshape(-1, width) == shape).all():
        return None  # a ragged or blank line
    n = delims.size // width
    fields = chunk.replace(b"\n", b",").split(b",")
    del fields[-1]  # after the last newline
    i, j, k = where
    score = _plain_scores(fields[k::width])
    if score is None:
        return None
    return (
        np.fromiter(map(subjects.__getitem__, fields[i::width]), dtype=np.int64, count=n),
        np.fromiter(map(items.__getitem__, fields[j::width]), dtype=np.int64, count=n),
        score,
    )


def _plain_scores(fields: list[bytes]) -> IntArray | None:
    """Integer scores; single digits (K ≤ 10, nearly every file) without a call per cell."""
    digits = b"".join(fields)
    if len(digits) == len(fields) and b"" not in fields:
        score = np.frombuffer(digits, dtype=np.uint8) - ord("0")
        if score.max(initial=0) <= 9:
            return score.astype(np.int64)
    try:
        return np.fromiter(map(int, fields), dtype=np.int64, count=len(fields))
    except (ValueError, OverflowError):  # not an integer, or too big for one
        return None


def _plain_responses(
    columns: tuple[list[IntArray], ...],
    subjects: dict[bytes, int],
    items: dict[bytes, int],
    source: str,
) -> Responses | None:
    """The chunks as one Responses, or None if a check of :func:`_build` fails."""
    try:
        names = [tuple(k.decode() for k in ids) for ids in (subjects, items)]
    except UnicodeDecodeError:
        return None
    if not columns[0] or any(
        not k or k != k.strip() or len(k) > MAX_ID_LENGTH or _CONTROL.search(k)
        for ids in names
        for k in ids
    ):
        return None  # the row-by-row reader says which line and why
    whole = []
    for column in columns:  # the chunks of one column are freed before the next is joined
        whole.append(np.concatenate(column))
        column.clear()
    subject_idx, item_idx, score = whole
    if score.min() < 0 or score.max() > MAX_SCORE:
        return None
    pairs = subject_idx * len(items) + item_idx
    pairs.sort()
    if (pairs[1:] == pairs[:-1]).any():
        return None  # a duplicate row
    del pairs
    return Responses(
        subjects=names[0],
        items=names[1],
        subject_idx=subject_idx,
        item_idx=item_idx,
        score=score,
        line=np.arange(2, score.size + 2, dtype=np.int64),
        source=source,
    )


def _build(rows: Iterable[tuple[int, str, str, str]], source: str) -> Responses:
    subjects: dict[str, int] = {}
    items: dict[str, int] = {}
    s_idx: list[int] = []
    i_idx: list[int] = []
    scores: list[int] = []
    lines: list[int] = []
    first_line: dict[tuple[int, int], int] = {}
    for line, subj, item, raw in rows:
        subj, item, raw = subj.strip(), item.strip(), raw.strip()
        if not subj or not item:
            raise DataError(f"{source}:{line}: empty subject or item id", hint=_FORMAT_HINT)
        for what, text in (("subject", subj), ("item", item)):
            if len(text) > MAX_ID_LENGTH:
                raise DataError(
                    f"{source}:{line}: {what} id of {len(text)} characters (at most "
                    f"{MAX_ID_LENGTH}): {_clip(repr(text), 40)}",
                    hint="is a column shifted, or a quote left open? fix the file's rows",
                )
            if _CONTROL.search(text):
                raise DataError(
                    f"{source}:{line}: {what} id {_clip(repr(text), 60)} contains a control "
                    "character (NUL, newline, tab …)",
                    hint="ids are printable text; fix the file that produced these rows",
                )
        try:
            score = int(raw)
        except ValueError:
            raise DataError(
                f"{source}:{line}: score {_clip(repr(raw), 60)} is not an integer",
                hint="scores are integer categories 0..K-1 (higher = safer/better)",
            ) from None
        if score < 0:
            raise DataError(f"{source}:{line}: score {score} is negative; categories start at 0")
        if score > MAX_SCORE:
            raise DataError(
                f"{source}:{line}: score {_clip(str(score), 40)} is not a category (scores are "
                f"0..K-1 with K ≤ {MAX_SCORE + 1})",
                hint="is the column a percentage or a raw count? map it onto ordered categories",
            )
        si = subjects.setdefault(subj, len(subjects))
        ii = items.setdefault(item, len(items))
        key = (si, ii)
        if key in first_line:
            raise DataError(
                f"{source}:{line}: duplicate row for subject {subj!r}, item {item!r} "
                f"(first seen on line {first_line[key]})",
                hint="keep one observation per (subject, item) pair",
            )
        first_line[key] = line
        s_idx.append(si)
        i_idx.append(ii)
        scores.append(score)
        lines.append(line)
    if not scores:
        raise DataError(f"{source}: no observations (only a header?)", hint=_FORMAT_HINT)
    return Responses(
        subjects=tuple(subjects),
        items=tuple(items),
        subject_idx=np.asarray(s_idx, dtype=np.int64),
        item_idx=np.asarray(i_idx, dtype=np.int64),
        score=np.asarray(scores, dtype=np.int64),
        line=np.asarray(lines, dtype=np.int64),
        source=source,
    )


@dataclass(frozen=True)
class ItemTable:
    """Item metadata (``items.csv``): one row of string fields per item id."""

    columns: tuple[str, ...]
    rows: dict[str, dict[str, str]]
    source: str

    def require_columns(self, names: Iterable[str]) -> None:
        """Raise DataError naming the first of ``names`` that is not a column."""
        for name in names:
            if name not in self.columns:
                raise DataError(
                    f"{self.source}:1: no column {name!r}{did_you_mean(name, self.columns)}; "
                    f"columns are {list(self.columns)}"
                )

    def k_column(self, column: str | None = None) -> str | None:
        """The column that holds K per item: ``column``, else ``n_categories`` if present.

        Raises:
            DataError: ``column`` is given but is not a column of the table.
        """
        if column is not None:
            self.require_columns([column])
            return column
        return "n_categories" if "n_categories" in self.columns else None

    def n_categories(self, responses: Responses, column: str | None = None) -> IntArray | None:
        """K per item of ``responses`` from :meth:`k_column`; None when the table has none.

        Items the table lacks get the highest observed score + 1 (at least 2).

        Raises:
            DataError: a K cell is not an integer (naming the file, item and value).
        """
        col = self.k_column(column)
        if col is None:
            return None
        observed_max = np.zeros(len(responses.items), dtype=np.int64)
        np.maximum.at(observed_max, responses.item_idx, responses.score)
        k = np.empty(len(responses.items), dtype=np.int64)
        for j, iid in enumerate(responses.items):  # once per item, at the file edge
            row = self.rows.get(iid)
            if row is None:
                k[j] = max(int(observed_max[j]) + 1, 2)
                continue
            try:
                k[j] = int(row[col])
            except ValueError:
                raise DataError(
                    f"{self.source}: item {iid!r} has {col} = {row[col]!r}, not an integer"
                ) from None
        return k

    def tags(self, item_ids: Iterable[str], columns: Sequence[str]) -> dict[str, dict[str, str]]:
        """``{item: {column: value}}`` for the ``item_ids`` the table has (empty cells left out).

        Raises:
            DataError: a column is not in the table.
        """
        self.require_columns(columns)
        return {
            iid: {c: row[c] for c in columns if row[c] != ""}
            for iid in item_ids
            if (row := self.rows.get(iid)) is not None
        }


def read_item_table(path: str | os.PathLike[str], id_column: str = "item") -> ItemTable:
    """Read an item metadata CSV whose ``id_column`` (default ``item``) names each item.

    Raises:
        DataError: missing file or id column, empty or duplicate ids, ragged rows.
    """
    p = Path(path)
    with _csv_table(p, "item") as (header, records):
        if id_column not in header:
            raise DataError(
                f"{p}:1: header {_clip(str(header))} lacks the item id column {id_column!r}"
                f"{did_you_mean(id_column, header)}"
            )
        pos = header.index(id_column)
        rows: dict[str, dict[str, str]] = {}
        for line, fields in records:
            iid = fields[pos].strip()
            if not iid:
                raise DataError(f"{p}:{line}: empty item id")
            if iid in rows:
                raise DataError(f"{p}:{line}: item {iid!r} appears twice")
            rows[iid] = {h: f.strip() for h, f in zip(header, fields, strict=True)}
    return ItemTable(tuple(header), rows, str(p))


def write_responses(path: str | os.PathLike[str], triples: Iterable[tuple[str, str, int]]) -> Path:
    """Write ``(subject, item, score)`` rows as a long CSV, atomically."""
    out = ["subject,item,score"]
    for s, i, x in triples:
        out.append(f"{_csv_field(s)},{_csv_field(i)},{int(x)}")
    return atomic_write_text(path, "\n".join(out) + "\n")


def _csv_field(v: str) -> str:
    return f'"{v.replace(chr(34), chr(34) * 2)}"' if any(c in v for c in ',"\n') else v
