"""Input checks at public boundaries (files, configs, public API entry points).

Internals trust their inputs; these helpers run once at the edge and raise
project errors (:class:`~orchestrator.errors.AgentcatError`) naming the
source, the offending value and the rule it breaks, in one wording
("selection rule 'max_info': randomesque must be an integer ≥ 1; got 0").
Constructors of registered classes, the API and the CLI call
:func:`check_scalar`; files go through :func:`parse_model`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ValidationError

from orchestrator.errors import AgentcatError, BankError, ConfigError, did_you_mean

__all__ = [
    "check_item_params",
    "check_scalar",
    "format_validation_error",
    "model_field_names",
    "parse_model",
]

M = TypeVar("M", bound=BaseModel)


def model_field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of ``model`` and of the pydantic models nested in it."""
    names: set[str] = set()
    stack: list[type[BaseModel]] = [model]
    seen: set[type[BaseModel]] = set()
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        for name, f in m.model_fields.items():
            names.add(f.alias or name)
            for sub in _nested_models(f.annotation):
                stack.append(sub)
    return names


def _nested_models(annotation: object) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _nested_models(arg)


_UNION_MEMBER = re.compile(r"^(float|int|str|bool|none|list\[.*\]|dict\[.*\]|function-\w+\[.*\])$")
"""How pydantic names the member of a union in an error's location (``a.list[float]``)."""


def _loc_to_str(loc: tuple[int | str, ...], data: object) -> str:
    """``items[3] (id 'fs-03').b``: list positions carry the element's id or name."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            label = next((k for k in ("id", "name") if isinstance(node, dict) and k in node), None)
            if label and isinstance(node, dict):
                out += f" ({label} {node[label]!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel], data: object = None
) -> str:
    """Turn a pydantic error into lines "source: location: problem (did you mean …?)".

    A value that fits no member of a union (``a: float | list[float]``) is one line
    naming every member's complaint, not one line per member.
    """
    names = model_field_names(model)
    problems: dict[str, list[str]] = {}  # location -> messages (one per union member)
    inputs: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        while loc and isinstance(loc[-1], str) and _UNION_MEMBER.match(loc[-1]):
            loc = loc[:-1]
        where = _loc_to_str(loc, data)
        if err["type"] == "extra_forbidden":
            field = str(loc[-1]) if loc else "?"
            msg = f"unknown field '{field}'{did_you_mean(field, names)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if loc and "input" in err and err["type"] not in ("model_type", "dict_type"):
                inputs.setdefault(where, repr(err["input"])[:80])
        msgs = problems.setdefault(where, [])
        if msg not in msgs:
            msgs.append(msg)
    return "\n".join(
        f"{source}: {where}: {' or '.join(msgs)}"
        + (f" (got {inputs[where]})" if where in inputs else "")
        for where, msgs in problems.items()
    )


def parse_model(
    model: type[M], data: object, source: str, error: type[AgentcatError], hint: str | None = None
) -> M:
    """Validate ``data`` against ``model``; raise ``error`` with every problem listed."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(format_validation_error(exc, source, model, data), hint=hint) from None


def check_scalar(
    value: Any,
    name: str,
    kind: type[int] | type[float] = int,
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    include_min: bool = True,
    include_max: bool = True,
    allow_none: bool = False,
    where: str | None = None,
    error: type[AgentcatError] = ConfigError,
) -> Any:
    """``value`` as a checked ``int`` or finite ``float`` (scikit-learn's ``check_scalar``).

    Booleans are never numbers here; numpy scalars are accepted and converted.

    Args:
        name: The parameter's name as the user wrote it (``se``, ``--max-items``).
        kind: ``int`` or ``float`` (a float parameter also takes integers).
        min_val, max_val: Bounds; ``include_min``/``include_max`` make them inclusive.
        allow_none: Return None for None instead of failing.
        where: Prefix naming the owner (``"stopping rule 'se'"``).
        error: The project error to raise.

    Raises:
        error: "<where>: <name> must be an integer ≥ 1; got 0".
    """
    if value is None and allow_none:
        return None
    integer = kind is int
    ok = not isinstance(value, bool) and isinstance(
        value, (int, np.integer) if integer else (int, float, np.integer, np.floating)
    )
    if ok:
        value = int(value) if integer else float(value)
        ok = integer or math.isfinite(value)
    if ok and min_val is not None:
        ok = value >= min_val if include_min else value > min_val
    if ok and max_val is not None:
        ok = value <= max_val if include_max else value < max_val
    if not ok:
        what = "an integer" if integer else "a number"
        bounds = _bounds(min_val, max_val, include_min, include_max)
        prefix = f"{where}: " if where else ""
        raise error(f"{prefix}{name} must be {what}{bounds}; got {value!r}")
    return value


def _bounds(lo: float | None, hi: float | None, incl_lo: bool, incl_hi: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'[' if incl_lo else '('}{lo:g}, {hi:g}{']' if incl_hi else ')'}"
    if lo is not None:
        return f" {'≥' if incl_lo else '>'} {lo:g}"
    if hi is not None:
        return f" {'≤' if incl_hi else '<'} {hi:g}"
    return ""


def check_item_params(
    a: ArrayLike,
    b: ArrayLike,
    *,
    ids: list[str] | None = None,
    error: type[AgentcatError] = BankError,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Check slope/threshold arrays (``b`` padded with +inf) for a GRM.

    Raises:
        error: naming the first bad item: non-finite or non-positive ``a``,
            NaN thresholds, or thresholds not strictly increasing.
    """
    a_arr = np.asarray(a, dtype=float)
    b_arr = np.atleast_2d(np.asarray(b, dtype=float))
    if a_arr.ndim != 1 or b_arr.shape[0] != a_arr.shape[0]:
        raise error(f"a must be 1-d and b (n_items, K-1); got {a_arr.shape} and {b_arr.shape}")

    def name(i: int) -> str:
        return f"item {ids[i]!r}" if ids else f"item {i}"

    bad = np.flatnonzero(~np.isfinite(a_arr) | (a_arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise error(f"{name(i)}: slope a must be a finite number > 0; got {a_arr[i]}")
    bad = np.flatnonzero(np.isnan(b_arr).any(axis=1) | np.isneginf(b_arr).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise error(f"{name(i)}: thresholds must be finite; got {b_arr[i].tolist()}")
    finite = np.isfinite(b_arr)
    diffs = np.diff(b_arr, axis=1)
    both = finite[:, 1:] & finite[:, :-1]
    gap = (np.diff(finite.astype(np.int8), axis=1) > 0).any(axis=1)  # padding must be a suffix
    bad = np.flatnonzero((both & ~(diffs > 0)).any(axis=1) | ~finite[:, 0] | gap)
    if bad.size:
        i = int(bad[0])
        raise error(f"{name(i)}: thresholds b must be strictly increasing; got {b_arr[i].tolist()}")
    return a_arr, b_arr
