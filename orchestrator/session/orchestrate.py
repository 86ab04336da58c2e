"""Live runs: checks before step 1, concurrent sessions, resume, summaries.

``run`` starts one session per model (all sharing one worker pool) and drives
them concurrently on one event loop; ``resume`` continues one session from its
journal. Before the first step, everything outside agentcat that a session
needs is checked (what each item's source needs — Docker and the scenario
images for scenarios —, the model endpoint, the API key), so a run fails in
seconds with a fix-it message instead of at step 7.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator._io import sha256_file
from orchestrator._validation import parse_model
from orchestrator.bank import BANK_FILENAME, ItemBank, load_bank
from orchestrator.config import ModelSpec, RunConfig
from orchestrator.errors import AgentcatError, PrerequisiteError, SessionError
from orchestrator.runner.pool import InspectRunner, WorkerPool
from orchestrator.runner.sources import LiveItems, SourceContext, bank_sources, prepare_items
from orchestrator.session.journal import JOURNAL_FILENAME, Journal, StepRow
from orchestrator.session.session import EventHandler, Session, find_session, journal_bank

__all__ = ["list_sessions", "preflight", "resume_session", "run_sessions", "session_summary"]

SUMMARY_SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- checks
def preflight(config: RunConfig, bank: ItemBank, models: list[ModelSpec]) -> LiveItems:
    """Check the items' sources (images, packages …), the runs folder and each model's key,
    all in this process; the request each model must answer is made by the worker pool
    once it starts (:meth:`WorkerPool.check_models`), so a run fails on a missing image
    without starting a worker, and this process never imports Inspect for it.

    Returns:
        Each runnable item's source and what its workers need.

    Raises:
        PrerequisiteError, ConfigError, BankError: what is missing and how to fix it.
    """
    items = prepare_items(bank, SourceContext(config.environments, config.sandbox))
    _check_runs_dir(config)
    for m in models:
        m.resolved_api_key()
    return items


def _check_runs_dir(config: RunConfig) -> None:
    """The runs folder can be written (sources check their own paths)."""
    try:
        config.runs_dir.mkdir(parents=True, exist_ok=True)
        probe = config.runs_dir / f".agentcat-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PrerequisiteError(
            f"runs folder {config.runs_dir} is not writable: {exc.strerror}",
            hint="set `runs_dir:` (or --runs-dir) to a writable folder",
        ) from None


# ----------------------------------------------------------------------------- driving
async def run_sessions(
    config: RunConfig, on_event: EventHandler | None = None, meta: dict[str, Any] | None = None
) -> list[str]:
    """Start (or, for a fixed ``session_id``, continue) one session per model; drive them all.

    ``meta`` is journalled with each new session (see :meth:`Journal.meta`).

    Returns:
        The session ids, in model order.
    """
    bank = load_bank(config.bank)
    items = preflight(config, bank, config.models)
    with WorkerPool(config.workers) as pool:
        pool.check_models(config.models, config.retry.model_timeout_s)
        sessions: list[Session] = []
        for m in config.models:
            sid = config.session_id
            if sid and (config.runs_dir / sid / JOURNAL_FILENAME).exists():
                sessions.append(Session.open(config.runs_dir / sid, api_key=m.api_key))
            else:
                sessions.append(Session.start(config, m, sid, meta=meta))
        await _drive_all(sessions, pool, bank, items, on_event)
    return [s.id for s in sessions]


async def resume_session(
    session: str | Path,
    runs_dir: Path,
    on_event: EventHandler | None = None,
    api_key: Any = None,
    base_url: str | None = None,
) -> str:
    """Continue an interrupted or paused session from its journal; returns its id.

    A completed session is left as it is, read only: its result needs neither its
    bank (which may since have changed or moved), nor the endpoint, nor Docker.
    """
    folder = find_session(session, runs_dir)
    j = Journal.open(folder, readonly=True)
    try:
        row = j.session()
    finally:
        j.close()
    if row.status == "completed":
        return row.id
    sess = Session.open(folder, api_key=api_key, base_url=base_url)
    try:
        items = preflight(sess.config, sess.bank, [sess.model])
        pool = WorkerPool(sess.config.workers)
    except BaseException:
        sess.journal.close()
        raise
    with pool:
        try:
            pool.check_models([sess.model], sess.config.retry.model_timeout_s)
        except BaseException:
            sess.journal.close()
            raise
        await _drive_all([sess], pool, sess.bank, items, on_event)
    return sess.id


async def _drive_all(
    sessions: list[Session],
    pool: WorkerPool,
    bank: ItemBank,
    items: LiveItems,
    on_event: EventHandler | None,
) -> None:
    drives = [
        s.drive(InspectRunner(pool, s.config, s.model, bank, s.log_dir, items), on_event)
        for s in sessions
    ]
    results = await asyncio.gather(*drives, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


# ----------------------------------------------------------------------------- reading
def list_sessions(runs_dir: Path) -> list[dict[str, Any]]:
    """One row per session folder under ``runs_dir`` (newest first).

    A journal that cannot be read is listed with status ``corrupt`` and the
    reason; it never hides the other sessions.

    Raises:
        SessionError: ``runs_dir`` is a file.
    """
    rows: list[dict[str, Any]] = []
    if runs_dir.exists() and not runs_dir.is_dir():
        raise SessionError(
            f"--runs-dir {runs_dir} is a file, not a folder of sessions",
            hint="pass the folder that holds the session folders (default: runs)",
        )
    if not runs_dir.is_dir():
        return rows
    for journal_file in sorted(runs_dir.glob(f"*/{JOURNAL_FILENAME}")):
        try:
            rows.append(_session_row(journal_file))
        except SessionError as exc:
            rows.append(
                {"session": journal_file.parent.name, "status": "corrupt", "error": exc.message}
            )
    return sorted(rows, key=lambda r: r.get("updated", ""), reverse=True)


def _session_row(journal_file: Path) -> dict[str, Any]:
    j = Journal.open(journal_file, readonly=True)
    try:
        s = j.session()
        status = s.status
        if status == "running" and not j.is_locked_elsewhere():
            status = "interrupted"
        try:
            updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.updated))
        except (ValueError, OverflowError, OSError):
            raise SessionError(f"{j.path}: its update time {s.updated!r} is not a time") from None
        return {
            "session": s.id,
            "model": s.model,
            "bank": s.bank_name,
            "status": status,
            "n_items": s.n_items,
            "theta": _finite_or_none(s.theta),
            "se": _finite_or_none(s.se),
            "updated": updated,
            "reason": s.status_reason,
            **(
                {"dimensions": _dimensions(_estimate(s.estimate_json, j.path))}
                if s.estimate_json
                else {}
            ),
        }
    finally:
        j.close()


def session_summary(session: str | Path, runs_dir: Path) -> dict[str, Any]:
    """The result of a session: θ with a 95 % interval, SE, items, categories, cost, trajectory.

    ``theta``, ``se`` and ``ci95`` are the first dimension's (the only one for a
    one-dimensional bank). A bank of several dimensions adds ``dimensions``
    (each one's θ, SE and interval, by name), ``posterior_correlation`` and,
    in every trajectory step, that step's ``dimensions``.

    What does not add up in the journal (a score outside its item's scale, an item
    the bank lacks, a missing or changed bank, an unreadable config) is listed
    under ``warnings`` instead of being shown as if it were fine.
    """
    folder = find_session(session, runs_dir).resolve()
    j = Journal.open(folder, readonly=True)
    try:
        s = j.session()
        steps = j.steps()
        locked = j.is_locked_elsewhere()
        demo = j.meta("demo")
        warnings: list[str] = []
        # a finished session is never resumed, so a damaged config or controller only
        # matters to an unfinished one
        damaged = "damaged journal" if s.status == "completed" else "resume would refuse it"
        config: dict[str, Any] | None = None
        try:
            config = j.config()
            parse_model(RunConfig, config, "its config", SessionError)
        except SessionError as exc:
            warnings.append(f"{damaged}: {exc.message.splitlines()[0]}")
        try:
            j.controller_state()
        except SessionError as exc:
            warnings.append(f"{damaged}: {exc.message}")
        logs = {(r.step, r.attempt): j.resolve(r.log_path) for r in steps}
    finally:
        j.close()
    try:
        bank: ItemBank | None = journal_bank(s, folder, prefer_copy=True)
    except SessionError as exc:
        bank = None
        warnings.append(f"{exc.message}; families are shown as '?'")
    stored_bank = Path(s.bank_path) / BANK_FILENAME
    if bank is not None and stored_bank.is_file() and sha256_file(stored_bank) != s.bank_sha256:
        warnings.append(
            f"bank {s.bank_path} changed since the session ran (shown with its copy in {folder})"
        )
    done = [r for r in steps if r.status == "done"]
    warnings += _step_warnings(done, bank)
    groups = _groups(bank) if bank is not None else {}
    families: dict[str, Counter[str]] = {}
    for r in done:
        families.setdefault(groups.get(r.item_id, "?"), Counter())[str(r.score)] += 1
    errors = Counter(r.error_kind for r in steps if r.status in ("error", "skipped"))
    theta, se = _finite_or_none(s.theta), _finite_or_none(s.se)
    est = _estimate(s.estimate_json, folder) if s.estimate_json else None
    if est:  # a bank of several dimensions: the reading is at the θ̂ vector
        point: np.ndarray | None = np.array(est["theta"], dtype=float)
    else:
        point = None if theta is None else np.array([theta], dtype=float)
    reading = _reading(bank, groups, families, point) if bank is not None else {}
    fit_by_step = {r.step: _person_fit(r.controller_json) for r in done}
    status = "interrupted" if s.status == "running" and not locked else s.status
    summary: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "session": s.id,
        "folder": str(folder),
        "model": s.model,
        "bank": s.bank_name,
        "status": status,
        "stop_reason": s.status_reason,
        "theta": theta,
        "se": se,
        "ci95": None if theta is None or se is None else [theta - 1.96 * se, theta + 1.96 * se],
        "se_target": _se_target(config),
        "true_theta": None if not isinstance(demo, dict) else demo.get("theta"),
        "n_items": len(done),
        "categories_by_family": {
            f: dict(sorted(c.items(), key=lambda kv: (len(kv[0]), kv[0])))
            for f, c in sorted(families.items())
        },
        "reading": reading,
        "runs": {
            "total": len(steps),
            "errored": sum(errors.values()),
            "errors_by_kind": dict(errors),
            "interrupted": sum(1 for r in steps if r.status == "interrupted"),
        },
        "tokens": sum(r.total_tokens or 0 for r in steps),
        "cost_usd": _sum_or_none([r.cost_usd for r in steps]),
        "wall_s": sum(r.wall_s or 0.0 for r in steps),
        "elapsed_s": s.updated - s.created,
        "person_fit": _person_fit(s.controller_json),
        "trajectory": [
            {
                "step": r.step,
                "item": r.item_id,
                "score": r.score,
                "label": r.label,
                "theta": r.theta,
                "se": r.se,
                "fit_p": (fit_by_step[r.step] or {}).get("p"),
                "wall_s": r.wall_s,
                "log": logs[(r.step, r.attempt)],
            }
            for r in done
        ],
        "config": config,
        "warnings": warnings,
    }
    if est:
        summary["dimensions"] = _dimensions(est, interval=True)
        summary["posterior_correlation"] = est["correlation"]
        for entry, r in zip(summary["trajectory"], done, strict=True):
            if r.estimate_json:
                entry["dimensions"] = _dimensions(_estimate(r.estimate_json, folder))
    return summary


def _estimate(text: str, where: object) -> dict[str, Any]:
    """A journalled per-dimension estimate (``CatController.estimate()``), checked:
    a damaged one is a :class:`SessionError`, never a traceback."""
    try:
        est = json.loads(text)
        ok = (
            isinstance(est, dict)
            and all(isinstance(est.get(k), list) for k in ("dimensions", "theta", "se"))
            and len(est["dimensions"]) == len(est["theta"]) == len(est["se"]) > 0
            and all(isinstance(x, (int, float)) for x in est["theta"] + est["se"])
            and isinstance(est.get("correlation"), list)
            and len(est["correlation"]) == len(est["theta"])
            and all(
                isinstance(row, list)
                and len(row) == len(est["theta"])
                and all(isinstance(x, (int, float)) for x in row)
                for row in est["correlation"]
            )
        )
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        raise SessionError(
            f"{where}: a journalled per-dimension estimate is damaged",
            hint="the journal was edited or corrupted; the session's steps are unaffected",
        )
    return est  # type: ignore[no-any-return]


def _dimensions(estimate: dict[str, Any], interval: bool = False) -> dict[str, Any]:
    """``{name: {"theta", "se"[, "ci95"]}}`` from a journalled ``CatController.estimate()``."""
    out = {}
    for name, theta, se in zip(
        estimate["dimensions"], estimate["theta"], estimate["se"], strict=True
    ):
        out[name] = {"theta": theta, "se": se}
        if interval:
            out[name]["ci95"] = [theta - 1.96 * se, theta + 1.96 * se]
    return out


def _reading(
    bank: ItemBank,
    groups: dict[str, str],
    seen: dict[str, Counter[str]],
    theta: np.ndarray | None,
) -> dict[str, dict[str, Any]]:
    """θ read on the bank's scale, per group: each category's label, how often the session saw
    it, and its probability at θ̂ (a point of the bank's D dimensions) on the group's median
    item (median slope vector and thresholds)."""
    from orchestrator.irt.model import GradedResponseModel

    out: dict[str, dict[str, Any]] = {}
    for group in sorted(seen):
        idx = [bank.index[i] for i, g in groups.items() if g == group]
        ks = {int(bank.n_categories[i]) for i in idx}
        if len(ks) != 1:
            continue  # items of different K: no common scale to read
        k = ks.pop()
        spec = bank.spec.items[idx[0]]
        labels = list(spec.labels or bank.spec.scale.labels[:k])
        entry: dict[str, Any] = {
            "labels": labels,
            "observed": [seen[group].get(str(c), 0) for c in range(k)],
        }
        if theta is not None:
            slopes = np.median(bank.slopes[idx], axis=0)
            b = np.median(bank.b[idx, : k - 1], axis=0)[None, :]
            if bank.n_dims == 1:
                median_item = GradedResponseModel.from_difficulty(slopes, b)
            else:  # thresholds along the slope vector, as the bank reads them
                median_item = GradedResponseModel(slopes[None, :], -np.linalg.norm(slopes) * b)
            probs = median_item.category_probs(theta[None, :])[0, 0, :k]
            entry["at_theta"] = [float(p) for p in probs]
        out[group] = entry
    return out


def _groups(bank: ItemBank) -> dict[str, str]:
    """Item → what the summary groups it under: its ``family`` tag, else its ``item_type``
    tag (AgentDojo's benign and injected items have different scales), else its source's
    group."""
    try:
        sources = bank_sources(bank)
    except AgentcatError:  # e.g. a kind whose plugin is not installed here
        sources = {}
    return {
        it.id: it.tags.get("family")
        or it.tags.get("item_type")
        or (sources[it.id].group() if it.id in sources else "?")
        for it in bank.spec.items
    }


def _person_fit(controller_json: str | None) -> dict[str, Any] | None:
    """The person fit journalled with a controller state (None: off, or before item 1)."""
    if not controller_json:
        return None
    try:
        fit = json.loads(controller_json).get("person_fit")
    except (ValueError, AttributeError, RecursionError):  # damaged: resume says so, show warns
        return None
    return fit if isinstance(fit, dict) else None


def _step_warnings(done: list[StepRow], bank: ItemBank | None) -> list[str]:
    """Graded steps that the bank cannot have produced (a hand-edited or foreign journal)."""
    out = []
    for r in done:
        if r.score is None or not isinstance(r.score, int) or r.score < 0:
            out.append(f"step {r.step}: score {r.score!r} is not a category")
        elif bank is not None and r.item_id not in bank.index:
            out.append(f"step {r.step}: item {r.item_id!r} is not in bank {bank.name!r}")
        elif bank is not None and r.score >= bank.item(r.item_id).n_categories:
            k = bank.item(r.item_id).n_categories
            out.append(
                f"step {r.step}: score {r.score} of item {r.item_id!r} is outside its scale "
                f"0..{k - 1}"
            )
        if not (_finite_or_none(r.theta) is not None and _finite_or_none(r.se) is not None):
            out.append(f"step {r.step}: θ/SE {r.theta!r}/{r.se!r} are not numbers")
    return out


def _se_target(config: dict[str, Any] | None) -> float | None:
    """The SE the session's ``se`` stopping rule aims at (also inside ``any_of``)."""
    stopping = ((config or {}).get("cat") or {}).get("stopping") or []
    rules = list(stopping) if isinstance(stopping, list) else []
    while rules:
        rule = rules.pop(0)
        if not isinstance(rule, dict):
            continue
        args = rule.get("args") or {}
        if rule.get("rule") == "se" and isinstance(args.get("se"), (int, float)):
            return float(args["se"])
        if rule.get("rule") == "any_of" and isinstance(args.get("rules"), list):
            rules += args["rules"]
    return None


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _sum_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return sum(known) if known else None
