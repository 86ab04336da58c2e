"""Which dimensions of θ each item loads on: dimension names and loading patterns.

A multidimensional calibration is confirmatory when the user says where each
item has a slope, in one of three ways (``agentcat calibrate --loadings SPEC``):

* ``tag:COLUMN`` — the item's value in column COLUMN of the item file names
  its dimension (``--dims`` names them, or the distinct values do);
* ``tag:COLUMN:VALUE=DIM[+DIM],VALUE=DIM…`` — each value mapped to one or more
  dimensions, e.g. ``tag:item_type:benign_utility=utility,injection_pair=utility+security``;
* ``bank:DIR`` — the zero pattern of an existing multidimensional bank's slopes;
* ``FILE.csv`` — a loading-pattern file: an ``item`` column and one 0/1 column
  per dimension, named by its header.

Without ``--loadings`` a multidimensional fit is exploratory. Every problem is
a one-line error naming the item, value or column, with a hint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from orchestrator.data import ItemTable, read_item_table
from orchestrator.errors import ConfigError, DataError, did_you_mean
from orchestrator.irt._calibration_defaults import MAX_DIMS

__all__ = ["MAX_DIMS", "LoadingPattern", "dimension_names", "parse_loadings"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class LoadingPattern:
    """A confirmatory structure for a list of items."""

    dimensions: list[str]
    matrix: NDArray[np.bool_]
    """``(items, D)``: True where the item has a slope on the dimension."""
    description: str
    """How it was given, for provenance (e.g. ``tag item_type: benign_utility -> utility``)."""


def dimension_names(dims: int | str | Sequence[str]) -> tuple[int, list[str] | None]:
    """``--dims``: a number (``2``) or names (``utility,security``) → (D, names or None).

    Raises:
        ConfigError: D outside 1..3, duplicate or malformed names.
    """
    if isinstance(dims, int) or (isinstance(dims, str) and dims.strip().isdigit()):
        n = int(dims)
        names = None
    else:
        names = [d.strip() for d in dims.split(",")] if isinstance(dims, str) else list(dims)
        n = len(names)
    if not 1 <= n <= MAX_DIMS:
        raise ConfigError(
            f"--dims must give 1 to {MAX_DIMS} dimensions; got {dims!r}",
            hint="e.g. --dims 2 or --dims utility,security",
        )
    if names is not None:
        bad = [d for d in names if not _NAME.match(d)]
        if bad:
            raise ConfigError(
                f"dimension name {bad[0]!r} is not a plain name (letters, digits, _ . -)",
                hint="e.g. --dims utility,security",
            )
        if len(set(names)) != n:
            raise ConfigError(f"dimension names must be unique; got {names}")
    return n, names


def parse_loadings(
    spec: str,
    item_ids: Sequence[str],
    *,
    n_dims: int | None,
    names: Sequence[str] | None = None,
    table: ItemTable | None = None,
) -> LoadingPattern:
    """The loading pattern ``spec`` gives for ``item_ids`` (see the module docstring).

    ``n_dims`` None takes the pattern's own number of dimensions (2..3).

    Raises:
        ConfigError: a malformed spec, a tag spec without an item file,
            dimension names that do not match ``--dims``.
        DataError: an item without a tag value or row, an unmapped value, a
            pattern cell that is not 0/1, an item that loads on nothing.
    """
    text = spec.strip()
    if text.startswith("tag:"):
        pattern = _from_tag(text, item_ids, names, table)
    elif text.startswith("bank:"):
        pattern = _from_bank(text[len("bank:") :], item_ids)
    else:
        pattern = _from_file(text, item_ids)
    return _check(pattern, n_dims, names, item_ids)


def _from_tag(
    spec: str, item_ids: Sequence[str], names: Sequence[str] | None, table: ItemTable | None
) -> LoadingPattern:
    parts = spec.split(":", 2)
    column = parts[1].strip()
    if not column:
        raise ConfigError(
            f"--loadings {spec!r} names no column",
            hint="e.g. --loadings tag:item_type (with --items items.csv)",
        )
    if table is None:
        raise ConfigError(
            f"--loadings {spec!r} reads tags from the item file",
            hint="pass --items items.csv with a column " + repr(column),
        )
    table.require_columns([column])
    values: list[str] = []
    for iid in item_ids:  # once per item, at the file edge
        row = table.rows.get(iid)
        value = "" if row is None else row[column]
        if not value:
            raise DataError(
                f"{table.source}: item {iid!r} has no {column!r} value (its dimension is unknown)",
                hint="give every calibrated item a value, or use a loading-pattern file",
            )
        values.append(value)
    if len(parts) == 3:
        mapping = _parse_mapping(parts[2], spec)
        dims = (
            list(names) if names else list(dict.fromkeys(d for ds in mapping.values() for d in ds))
        )
        description = f"tag {column}: " + "; ".join(
            f"{v} -> {'+'.join(ds)}" for v, ds in mapping.items()
        )
    else:
        dims = list(names) if names else sorted(set(values))
        mapping = {v: [v] for v in sorted(set(values))}
        description = f"tag {column}: each value is its dimension"
    unmapped = sorted(set(values) - mapping.keys())
    if unmapped:
        raise DataError(
            f"{column!r} value {unmapped[0]!r} (e.g. item "
            f"{item_ids[values.index(unmapped[0])]!r}) is not mapped to a dimension",
            hint=f"add {unmapped[0]}=DIM to --loadings, e.g. tag:{column}:{unmapped[0]}=...",
        )
    for v, ds in mapping.items():
        for d in ds:
            if d not in dims:
                raise ConfigError(
                    f"--loadings maps {column} value {v!r} to {d!r}, which is not one of the "
                    f"dimensions {dims}{did_you_mean(d, dims)}",
                    hint="name the dimensions with --dims NAME,NAME",
                )
    matrix = np.zeros((len(item_ids), len(dims)), dtype=bool)
    col = {d: k for k, d in enumerate(dims)}
    rows = {v: [col[d] for d in ds] for v, ds in mapping.items()}
    for j, v in enumerate(values):
        matrix[j, rows[v]] = True
    return LoadingPattern(dims, matrix, description)


def _parse_mapping(text: str, spec: str) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    for entry in text.split(","):
        value, sep, dims = entry.partition("=")
        targets = [d.strip() for d in dims.split("+") if d.strip()]
        if not sep or not value.strip() or not targets:
            raise ConfigError(
                f"--loadings {spec!r}: {entry.strip()!r} is not VALUE=DIM[+DIM]",
                hint="e.g. tag:item_type:benign_utility=utility,injection_pair=utility+security",
            )
        if value.strip() in mapping:
            raise ConfigError(f"--loadings {spec!r} maps {value.strip()!r} twice")
        mapping[value.strip()] = targets
    return mapping


def _from_file(path: str, item_ids: Sequence[str]) -> LoadingPattern:
    if not Path(path).is_file():
        raise ConfigError(
            f"--loadings {path!r} is neither tag:COLUMN, bank:DIR nor an existing file",
            hint="e.g. --loadings tag:item_type, or a CSV with columns item,DIM1,DIM2",
        )
    table = read_item_table(path)
    dims = [c for c in table.columns if c != "item"]
    if not dims:
        raise DataError(f"{path}:1: a loading-pattern file needs one 0/1 column per dimension")
    matrix = np.zeros((len(item_ids), len(dims)), dtype=bool)
    for j, iid in enumerate(item_ids):  # once per item, at the file edge
        row = table.rows.get(iid)
        if row is None:
            raise DataError(
                f"{path}: item {iid!r} has no row, so its dimensions are unknown",
                hint="add a row item,0/1,… for every calibrated item",
            )
        for k, d in enumerate(dims):
            if row[d] not in ("0", "1"):
                raise DataError(f"{path}: item {iid!r} has {d} = {row[d]!r}; cells must be 0 or 1")
            matrix[j, k] = row[d] == "1"
    return LoadingPattern(dims, matrix, f"loading-pattern file {Path(path).name}")


def _from_bank(folder: str, item_ids: Sequence[str]) -> LoadingPattern:
    from orchestrator.bank import load_bank

    bank = load_bank(folder)
    if bank.n_dims == 1:
        raise ConfigError(
            f"--loadings bank:{folder}: that bank is one-dimensional",
            hint="use a multidimensional bank, tag:COLUMN or a loading-pattern file",
        )
    missing = [i for i in item_ids if i not in bank.index]
    if missing:
        raise DataError(
            f"bank {bank.name!r} has no item {missing[0]!r}, so its dimensions are unknown",
            hint="calibrate only items the bank has, or use a loading-pattern file",
        )
    rows = np.array([bank.index[i] for i in item_ids], dtype=np.int64)
    matrix = bank.slopes[rows] != 0
    return LoadingPattern(list(bank.dimensions), matrix, f"zero slopes of bank {bank.name}")


def _check(
    pattern: LoadingPattern,
    n_dims: int | None,
    names: Sequence[str] | None,
    item_ids: Sequence[str],
) -> LoadingPattern:
    dims = pattern.dimensions
    n_dims = len(dims) if n_dims is None else n_dims
    if names is not None and set(names) != set(dims):
        raise ConfigError(
            f"--dims {','.join(names)} does not match the loading pattern's dimensions {dims}",
            hint="name the same dimensions in both, or give --dims as a number",
        )
    if len(dims) != n_dims:
        raise ConfigError(
            f"the loading pattern has {len(dims)} dimension(s) {dims} but --dims asks for {n_dims}",
            hint="make --dims match the pattern",
        )
    if not 2 <= n_dims <= MAX_DIMS:
        raise ConfigError(f"a loading pattern needs 2 to {MAX_DIMS} dimensions; got {n_dims}")
    matrix = pattern.matrix
    if names is not None:  # the user's order
        matrix = matrix[:, [dims.index(d) for d in names]]
        dims = list(names)
    empty = np.flatnonzero(~matrix.any(axis=1))
    if empty.size:
        raise DataError(
            f"item {item_ids[int(empty[0])]!r} loads on no dimension",
            hint="every item needs at least one dimension",
        )
    unused = [d for k, d in enumerate(dims) if not matrix[:, k].any()]
    if unused:
        raise DataError(
            f"no item loads on dimension {unused[0]!r}",
            hint="drop the dimension from --dims or map items to it",
        )
    return LoadingPattern(dims, matrix, pattern.description)
