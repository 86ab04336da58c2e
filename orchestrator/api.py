"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from orchestrator.bank import ItemBank, load_bank
from orchestrator.data import Responses, read_responses
from orchestrator.irt.ability import estimate_abilities

__all__ = ["estimate"]

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
