"""Calibration input: validate sparse ``(subject, item, score)`` triples and exclude unfit items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.errors import DataError

__all__ = ["Problem", "prepare"]

IntArray = NDArray[np.int64]


@dataclass
class Problem:
    """Data after validation and exclusions, in fitted-item numbering."""

    item_ids: list[str]
    item_index: IntArray  # fitted item -> original item number
    k: IntArray  # K per fitted item
    subject: IntArray  # per observation (kept observations only)
    item: IntArray  # fitted item per observation
    score: IntArray
    n_subjects: int
    n_subjects_used: int
    excluded: list[dict[str, Any]]
    unobserved: dict[str, list[int]]
    category_counts: IntArray  # (fitted items, K_max) observations per category

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_obs(self) -> int:
        return int(self.score.shape[0])


def _as_int_array(x: ArrayLike, name: str) -> IntArray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional; got shape {arr.shape}")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)))
    ):
        raise DataError(f"{name} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def prepare(
    subject_idx: ArrayLike,
    item_idx: ArrayLike,
    score: ArrayLike,
    n_categories: ArrayLike | None,
    item_ids: Sequence[str] | None,
    n_subjects: int | None,
    min_obs: int,
    *,
    exempt: NDArray[np.bool_] | None = None,
) -> Problem:
    s = _as_int_array(subject_idx, "subject_idx")
    i = _as_int_array(item_idx, "item_idx")
    x = _as_int_array(score, "score")
    if not (len(s) == len(i) == len(x)):
        raise DataError(
            f"subject_idx, item_idx and score must have equal length; "
            f"got {len(s)}, {len(i)}, {len(x)}"
        )
    if len(x) == 0:
        raise DataError("no observations to calibrate on")
    for arr, name in ((s, "subject_idx"), (i, "item_idx"), (x, "score")):
        if arr.min() < 0:
            raise DataError(f"{name} must be non-negative; found {int(arr.min())}")
    n_items = len(item_ids) if item_ids is not None else int(i.max()) + 1
    if int(i.max()) >= n_items:
        raise DataError(f"item_idx {int(i.max())} is out of range for {n_items} item ids")
    n_subj = int(s.max()) + 1 if n_subjects is None else int(n_subjects)
    if int(s.max()) >= n_subj:
        raise DataError(f"subject_idx {int(s.max())} is out of range for {n_subj} subjects")
    ids = [f"item{j}" for j in range(n_items)] if item_ids is None else [str(v) for v in item_ids]
    pair = s * n_items + i
    sorted_pair = np.sort(pair)
    dup = np.flatnonzero(sorted_pair[1:] == sorted_pair[:-1])
    if dup.size:
        p = int(sorted_pair[dup[0]])
        raise DataError(
            f"duplicate observation for subject {p // n_items}, item {ids[p % n_items]!r}",
            hint="keep one observation per (subject, item) pair",
        )
    n_obs_item = np.bincount(i, minlength=n_items)
    max_score = np.full(n_items, -1, dtype=np.int64)
    np.maximum.at(max_score, i, x)
    if n_categories is None:
        k = np.maximum(max_score + 1, 2)
    else:
        k = _as_int_array(n_categories, "n_categories")
        if len(k) != n_items:
            raise DataError(f"n_categories has {len(k)} entries for {n_items} items")
        bad = np.flatnonzero((max_score >= k) & (n_obs_item > 0))
        if bad.size:
            j = int(bad[0])
            raise DataError(
                f"item {ids[j]!r} has a score of {int(max_score[j])} but K = {int(k[j])} "
                f"(scores must be 0..{int(k[j]) - 1})",
                hint="check n_categories for this item or the scores in the data",
            )
        low = np.flatnonzero(k < 2)
        if low.size:
            raise DataError(f"item {ids[int(low[0])]!r} has K = {int(k[low[0]])}; K must be >= 2")
    k_max = int(k.max())
    # observed categories per item: one bincount over item * k_max + score
    cat_counts = np.bincount(i * k_max + x, minlength=n_items * k_max).reshape(n_items, k_max)
    seen = cat_counts > 0
    n_seen = seen.sum(axis=1)
    excluded: list[dict[str, Any]] = []
    keep = np.ones(n_items, dtype=bool)
    thin = (n_obs_item < min_obs) | (n_seen < 2)
    if exempt is not None:  # a per-item prior keeps an item finite on one observation
        thin = np.where(exempt, n_obs_item == 0, thin)
    for j in np.flatnonzero(thin):  # excluded items only
        j = int(j)
        keep[j] = False
        if n_obs_item[j] == 0:
            reason = "no observations"
        elif n_obs_item[j] < min_obs:
            reason = f"fewer than min_obs = {min_obs} observations"
        else:
            only = int(np.flatnonzero(seen[j])[0])
            reason = f"single observed category (every score = {only})"
        excluded.append({"id": ids[j], "reason": reason, "n_obs": int(n_obs_item[j])})
    item_index = np.flatnonzero(keep)
    new_number = np.full(n_items, -1, dtype=np.int64)
    new_number[item_index] = np.arange(len(item_index))
    kept_obs = keep[i]
    unobserved = {
        ids[j]: [int(c) for c in np.flatnonzero(~seen[j, : k[j]])]
        for j in item_index
        if not seen[j, : k[j]].all()
    }
    return Problem(
        item_ids=[ids[j] for j in item_index],
        item_index=item_index,
        k=k[item_index],
        subject=s[kept_obs],
        item=new_number[i[kept_obs]],
        score=x[kept_obs],
        n_subjects=n_subj,
        n_subjects_used=int(np.unique(s[kept_obs]).size),
        excluded=excluded,
        unobserved=unobserved,
        category_counts=cat_counts[item_index],
    )
