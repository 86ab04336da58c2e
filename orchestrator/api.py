"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from orchestrator._io import sha256_file
from orchestrator.bank import ItemBank, load_bank
from orchestrator.data import Responses, read_responses
from orchestrator.errors import ConfigError
from orchestrator.irt.ability import estimate_abilities

__all__ = ["estimate", "health"]

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
