"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from orchestrator._io import sha256_file
from orchestrator.bank import BANK_FILENAME, ItemBank, load_bank
from orchestrator.data import ItemTable, Responses, read_item_table, read_responses
from orchestrator.errors import ConfigError, DataError
from orchestrator.irt._calibration_defaults import (
    DEFAULT_PRIOR_A,
    DEFAULT_PRIOR_B,
    DEFAULT_PRIOR_GAP,
)
from orchestrator.irt.ability import estimate_abilities

if TYPE_CHECKING:
    from orchestrator.irt.calibrate import IterationInfo

__all__ = ["calibrate", "estimate", "health"]

PathLike = str | os.PathLike[str]


def estimate(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    *,
    method: Literal["eap", "map"] = "eap",
) -> list[dict[str, Any]]:
    """θ and SE for every subject in ``responses`` under ``bank``'s parameters.

    Returns:
        One dict per subject (file order): ``subject``, ``theta``, ``se``,
        ``n_items``, ``method``.

    Raises:
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
    """
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    resp = responses if isinstance(responses, Responses) else read_responses(responses)
    resp = _drop_excluded_items(resp, bk)
    aligned = resp.for_bank(bk)
    est = estimate_abilities(
        bk.a,
        bk.b,
        aligned.subject_idx,
        aligned.bank_item,
        aligned.score,
        len(resp.subjects),
        method=method,
        prior_mean=bk.spec.prior.mean,
        prior_sd=bk.spec.prior.sd,
    )
    return [
        {
            "subject": s,
            "theta": float(est.theta[i]),
            "se": float(est.se[i]),
            "n_items": int(est.n_items[i]),
            "method": method,
        }
        for i, s in enumerate(resp.subjects)
    ]


def _drop_excluded_items(resp: Responses, bank: ItemBank) -> Responses:
    """Drop observations of items the bank's calibration left out on purpose.

    Calibrating on a file and then estimating on the same file must work, even
    though items with a single observed category have no parameters.
    """
    excluded = {str(e.get("id")) for e in bank.spec.calibration.excluded_items}
    if not excluded.intersection(resp.items):
        return resp
    drop = np.array([iid in excluded and iid not in bank.index for iid in resp.items])
    keep = ~drop[resp.item_idx]
    renumber = np.cumsum(~drop) - 1
    return dataclasses.replace(
        resp,
        items=tuple(iid for iid, d in zip(resp.items, drop, strict=True) if not d),
        subject_idx=resp.subject_idx[keep],
        item_idx=renumber[resp.item_idx[keep]],
        score=resp.score[keep],
        line=resp.line[keep],
    )


def calibrate(
    responses: PathLike,
    out: PathLike,
    *,
    name: str | None = None,
    items: PathLike | ItemTable | None = None,
    tag_columns: Sequence[str] = (),
    k_column: str | None = None,
    device: str = "cpu",
    n_quad: int | Literal["auto"] = "auto",
    max_iter: int = 2000,
    tol: float = 1e-4,
    prior_a: tuple[float, float] | None = DEFAULT_PRIOR_A,
    prior_b: tuple[float, float] | None = DEFAULT_PRIOR_B,
    prior_gap: float | None = DEFAULT_PRIOR_GAP,
    min_obs: int = 5,
    scale_labels: Sequence[str] | None = None,
    description: str = "",
    source_label: str | None = None,
    force: bool = False,
    progress: Callable[[IterationInfo], None] | None = None,
) -> dict[str, Any]:
    """Calibrate a GRM bank on a response CSV and write ``<out>/bank.json``.

    Args:
        responses: Long CSV ``subject,item,score``.
        out: Bank folder to create (``item_banks/<name>``).
        name: Bank name (default: the folder's name).
        items: Optional item metadata CSV (column ``item``): supplies K per item
            (column ``k_column``, default ``n_categories`` when present) and the
            content tags copied from ``tag_columns``.
        k_column: Column of ``items`` holding K; None uses ``n_categories`` if
            the file has it, else K = highest observed score + 1.
        device, n_quad, max_iter, tol, prior_a, prior_b, prior_gap, min_obs: Passed to
            :class:`~orchestrator.irt.calibrate.GRMCalibrator`.
        scale_labels: Labels of categories 0..K_max−1 for the bank's scale.
        description: Free text stored in ``bank.json``.
        source_label: How provenance names the data file (default: the path given).
        force: Overwrite an existing ``bank.json``.
        progress: Called after every EM iteration.

    Returns:
        JSON-ready fit summary (``bank`` path, counts, log-likelihood, iterations,
        convergence, wall time, device, excluded items).

    Raises:
        ConfigError: bad arguments or an existing bank without ``force``.
        DataError: unreadable responses or item file, K inconsistent with scores.
        PrerequisiteError: ``device="cuda"`` without CUDA.
    """
    from orchestrator.irt.calibrate import GRMCalibrator  # torch: imported on use

    folder = Path(out)
    if (folder / BANK_FILENAME).exists() and not force:
        raise ConfigError(
            f"{folder / BANK_FILENAME} already exists",
            hint="pass --force (force=True) to overwrite it, or choose another --out",
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} exists and is not a folder")
    resp = read_responses(responses)
    table = None
    if items is not None:
        table = items if isinstance(items, ItemTable) else read_item_table(items)
    elif tag_columns or k_column:
        raise ConfigError("tag or K columns need an item file", hint="pass --items items.csv")
    n_categories = _categories_from_table(resp, table, k_column)
    tags: dict[str, dict[str, str]] = {}
    if table is not None and tag_columns:
        table.require_columns(tag_columns)
        for iid in resp.items:
            row = table.rows.get(iid)
            if row is not None:
                tags[iid] = {c: row[c] for c in tag_columns if row[c] != ""}
    cal = GRMCalibrator(
        n_quad=n_quad,
        max_iter=max_iter,
        tol=tol,
        prior_a=prior_a,
        prior_b=prior_b,
        prior_gap=prior_gap,
        min_obs=min_obs,
        device=device,
        progress=progress,
    )
    cal.fit(
        resp.subject_idx,
        resp.item_idx,
        resp.score,
        n_categories=n_categories,
        item_ids=list(resp.items),
        n_subjects=len(resp.subjects),
    )
    bank_name = name or folder.resolve().name
    source = source_label or str(responses)
    bank = cal.to_bank(
        bank_name,
        source=source,
        source_sha256=sha256_file(responses),
        tags=tags,
        scale_labels=scale_labels,
        description=description or f"GRM calibrated by agentcat on {Path(source).name}",
        extra_details={"k_source": _k_source(table, k_column), "tag_columns": list(tag_columns)},
    )
    path = bank.save(folder)
    summary = cal.summary()
    summary.update(
        {
            "bank": str(path),
            "name": bank_name,
            "source": source,
            "excluded": list(cal.excluded_),
            "collapsed_categories": cal.collapsed_categories_,
            "unobserved_categories": cal.unobserved_categories_,
            "n_items_in_data": len(resp.items),
            "priors": {"log_a": prior_a, "b": prior_b, "gap_alpha": prior_gap},
        }
    )
    return summary


def _k_source(table: ItemTable | None, k_column: str | None) -> str:
    if table is not None and (k_column or "n_categories") in table.columns:
        return f"items file column {k_column or 'n_categories'!r}"
    return "highest observed score + 1"


def _categories_from_table(
    resp: Responses, table: ItemTable | None, k_column: str | None
) -> np.ndarray | None:
    """K per item of ``resp`` from the item file, or None to infer it from the scores."""
    if table is None:
        return None
    col = k_column or "n_categories"
    if col not in table.columns:
        if k_column is not None:
            table.require_columns([k_column])
        return None
    observed_max = np.zeros(len(resp.items), dtype=np.int64)
    np.maximum.at(observed_max, resp.item_idx, resp.score)
    k = np.empty(len(resp.items), dtype=np.int64)
    for j, iid in enumerate(resp.items):  # once per item, at the file edge
        row = table.rows.get(iid)
        if row is None:
            k[j] = max(int(observed_max[j]) + 1, 2)
            continue
        try:
            k[j] = int(row[col])
        except ValueError:
            raise DataError(
                f"{table.source}: item {iid!r} has {col} = {row[col]!r}, not an integer"
            ) from None
    return k


def health(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    out: PathLike | None = None,
    *,
    thresholds: dict[str, Any] | None = None,
    figures_dir: PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Psychometric health report of ``bank`` on ``responses`` (``agentcat health``).

    Args:
        out: Where to write the HTML page; its JSON twin goes next to it
            (same name, ``.json``). Nothing is written when None.
        thresholds: Overrides of :class:`~orchestrator.report.HealthThresholds` fields.
        figures_dir: Also write each figure as a PNG there.
        progress: Called with short status lines during the slow parts.

    Returns:
        The JSON document (``HealthReport.to_dict()``), ``schema_version`` 1.

    Raises:
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
        ConfigError: an unknown threshold or an ``out`` that is not ``.html``.
    """
    from orchestrator._validation import parse_model
    from orchestrator.report import HealthThresholds, analyse_health, write_report

    th = parse_model(HealthThresholds, thresholds or {}, "health thresholds", ConfigError)
    if out is not None and Path(out).suffix.lower() not in (".html", ".htm"):
        raise ConfigError(
            f"--out must name an .html file; got {str(out)!r}",
            hint="e.g. --out reports/agentdojo.html (the JSON twin is written beside it)",
        )
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    if isinstance(responses, Responses):
        resp, digest = responses, None
    else:
        resp, digest = read_responses(responses), sha256_file(responses)
    report = analyse_health(bk, resp, thresholds=th, responses_sha256=digest, progress=progress)
    if out is not None:
        if progress is not None:
            progress("rendering figures and HTML")
        write_report(report, out, figures_dir=figures_dir)
    return report.to_dict()
