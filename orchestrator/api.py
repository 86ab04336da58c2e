"""Python API mirroring the CLI: each function here is one ``agentcat`` command.

Functions take paths or loaded objects and return plain, JSON-ready data;
the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from orchestrator._io import atomic_write_json, check_writable_dir, check_writable_file, sha256_file
from orchestrator._validation import check_scalar
from orchestrator.bank import BANK_FILENAME, ItemBank, bank_from_calibration, load_bank
from orchestrator.data import ItemTable, Responses, read_item_table, read_responses
from orchestrator.errors import ConfigError, DataError, did_you_mean
from orchestrator.irt._calibration_defaults import (
    DEFAULT_PRIOR_A,
    DEFAULT_PRIOR_B,
    DEFAULT_PRIOR_GAP,
)
from orchestrator.irt.ability import estimate_theta
from orchestrator.loadings import LoadingPattern, dimension_names, parse_loadings

if TYPE_CHECKING:
    from orchestrator.irt.calibrate import IterationInfo
    from orchestrator.report.validity import ValidityOptions

__all__ = [
    "build_images",
    "calibrate",
    "demo",
    "estimate",
    "export_responses",
    "health",
    "inspect_task_bank",
    "list_images",
    "predict_params",
    "provisional_bank",
    "prune",
    "resume",
    "run",
    "scenarios",
    "sessions",
    "show",
    "sim_server",
    "simulate",
    "sweep",
    "update_bank",
    "validity",
]

PathLike = str | os.PathLike[str]


def _check_lapse(lapse: float) -> None:
    check_scalar(lapse, "lapse", float, min_val=0, max_val=1, include_max=False)


ESTIMATE_SCHEMA_VERSION = 1


def estimate(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    *,
    method: Literal["eap", "map"] = "eap",
    lapse: float = 0.0,
) -> dict[str, Any]:
    """θ and SE for every subject in ``responses`` under ``bank``'s parameters.

    Responses to items the bank's calibration left out are dropped (listed in
    ``excluded_items``), as in :func:`simulate` and :func:`health`.

    Args:
        bank: Calibrated bank (folder or object).
        responses: Long CSV ``subject,item,score`` (path or object).
        method: ``"eap"`` or ``"map"``.
        lapse: Lapse rate ε of the robust likelihood (0 = plain GRM).

    Returns:
        The versioned document ``agentcat estimate --json`` prints:
        ``schema_version``, ``bank``, ``responses``, ``method``, ``excluded_items``
        and ``subjects``, one dict per subject (file order): ``subject``,
        ``theta``, ``se``, ``n_items``, ``method``. For a bank of several
        dimensions ``theta`` and ``se`` are the first dimension's and
        ``dimensions`` maps every dimension's name to its ``theta`` and ``se``.
        (Before schema 1 the command printed the bare ``subjects`` list.)

    Raises:
        ConfigError: ``lapse`` outside [0, 1).
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
        ConfigError: ``method="map"`` on a bank of several dimensions.
    """
    _check_lapse(lapse)
    if method not in ("eap", "map"):
        raise ConfigError(f"method must be 'eap' or 'map'; got {method!r}")
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    if method == "map" and bk.n_dims > 1:
        raise ConfigError(
            f"--method map is for one-dimensional banks; bank {bk.name!r} has "
            f"{bk.n_dims} dimensions ({', '.join(bk.dimensions)})",
            hint="use --method eap (the posterior mean, with each dimension's SE)",
        )
    resp = responses if isinstance(responses, Responses) else read_responses(responses)
    resp, excluded = bk.drop_excluded_items(resp, drop_empty_subjects=False)
    aligned = resp.for_bank(bk)
    est = estimate_theta(
        bk.model,
        aligned.subject_idx,
        aligned.bank_item,
        aligned.score,
        len(resp.subjects),
        method=method,
        **bk.prior_parameters(),
        lapse=lapse,
    )
    rows = []
    for i, s in enumerate(resp.subjects):
        row: dict[str, Any] = {
            "subject": s,
            "theta": float(est.theta[i, 0]),
            "se": float(est.se[i, 0]),
            "n_items": int(est.n_items[i]),
            "method": method,
        }
        if bk.n_dims > 1:
            row["dimensions"] = _by_dimension(bk.dimensions, est.theta[i], est.se[i])
        rows.append(row)
    return {
        "schema_version": ESTIMATE_SCHEMA_VERSION,
        "bank": bk.name,
        "responses": resp.source,
        "method": method,
        "excluded_items": excluded,
        "subjects": rows,
    }


def _by_dimension(
    names: Sequence[str], theta: np.ndarray, se: np.ndarray
) -> dict[str, dict[str, float]]:
    """``{name: {"theta": θ_d, "se": SE_d}}``: how every output shows a θ of several dimensions."""
    return {
        n: {"theta": float(t), "se": float(e)} for n, t, e in zip(names, theta, se, strict=True)
    }


# --------------------------------------------------------------------------- simulate
DEFAULT_STRATEGIES = ("cat", "random")
_STRATEGY_ALIASES = {"cat": "max_info"}


def _strategy_rule(label: str | Mapping[str, Any]) -> tuple[str, Any]:
    """``cat`` (= ``max_info``), a registered selection rule name, or a JSON rule spec."""
    from orchestrator.cat import make_selection, selection_rules
    from orchestrator.errors import did_you_mean

    if isinstance(label, Mapping):
        rule = make_selection(label)
        return str(label.get("rule")), rule
    text = label.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"strategy {text!r} is not valid JSON: {exc.msg}") from None
        return text, make_selection(spec)
    name = _STRATEGY_ALIASES.get(text, text)
    if name not in selection_rules.names():
        choices = [*_STRATEGY_ALIASES, *selection_rules.names()]
        raise ConfigError(
            f"unknown strategy {text!r}{did_you_mean(text, choices)}",
            hint=f"strategies: {', '.join(choices)}, or a JSON rule spec "
            '\'{"rule": "max_info", "args": {"randomesque": 5}}\'',
        )
    return text, make_selection(name)


def simulate(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    *,
    strategies: Sequence[str | Mapping[str, Any]] = DEFAULT_STRATEGIES,
    max_items: int | None = None,
    se: float = 0.3,
    seed: int = 0,
    drop_unknown_items: bool = False,
    per_subject: bool = True,
    per_dimension: str | None = None,
    plot: PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    aberrant: Sequence[str | Mapping[str, Any]] = (),
    aberrant_share: float = 0.2,
    aberrant_add: bool = False,
    person_fit: bool = False,
    lapse: float = 0.0,
) -> dict[str, Any]:
    """Replay CAT on recorded responses and compare it with random selection and full data.

    For every subject, each strategy administers only items that subject has
    responses for, one at a time; after each step the estimate is compared
    with the EAP from all of the subject's responses (same prior).

    With ``aberrant``, a seeded share of the subjects answers as a misfitting
    model would (per type; see :mod:`orchestrator.sim.aberrant`), their
    recorded scores being the honest ones: the result reports every group
    separately, errors still against the clean full-data EAP.

    Args:
        bank: Calibrated bank (folder or object).
        responses: Long CSV ``subject,item,score`` (path or object).
        strategies: ``cat`` (= ``max_info``), ``random``, any registered
            selection rule name, or a JSON spec ``{"rule": ..., "args": {...}}``.
        max_items: Replay at most this many items per subject (default: all).
        se: SE target for "items needed to reach the target".
        seed: Base seed (subject s uses ``default_rng([seed, s])``).
        drop_unknown_items: Ignore responses to items the bank lacks instead of
            failing. Items the bank's calibration excluded are always dropped
            (listed in ``excluded_items``).
        per_subject: Include the per-subject list in the result.
        per_dimension: For a bank of several dimensions, the content tag whose
            values follow the dimensions: also replay a 1-D CAT (and random order)
            per dimension on that dimension's items
            (:mod:`orchestrator.sim.by_dimension`), under ``per_dimension``.
        plot: Also write the RMSE / rank-correlation figure to this PNG.
        progress: ``progress(strategy, step, n_steps)`` after every step.
        aberrant: Misfit types to inject: ``"gamer:k=3"`` or ``{"rule": "gamer",
            "args": {"k": 3}}`` (sandbagger, eval_aware, random_responder, gamer).
        aberrant_share: Share of the subjects given each type (at least one each).
        aberrant_add: Add an aberrant copy of each chosen subject (``<id>~<type>``)
            instead of turning the subject itself aberrant.
        person_fit: Also compute every replayed test's person-fit p-value after
            every step (null simulated under the same rule; adds the share
            flagged per step and group, and each subject's final p-value).
        lapse: Lapse rate ε of the replayed posteriors (robust estimate,
            :func:`~orchestrator.irt.model.with_lapse`); the reference stays
            the plain full-data EAP.

    Returns:
        The versioned document ``agentcat simulate --json`` prints.

    Raises:
        ConfigError: a bad strategy or aberrant type, ``se`` ≤ 0, ``max_items`` < 1,
            ``seed`` < 0, ``aberrant_share`` outside (0, 1], or more aberrant
            subjects than there are subjects.
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
    """
    from orchestrator.sim.aberrant import inject_aberrant, make_aberrance, parse_aberrance
    from orchestrator.sim.replay import replay

    check_scalar(se, "se", float, min_val=0, include_min=False)
    check_scalar(max_items, "max_items", int, min_val=1, allow_none=True)
    check_scalar(seed, "seed", int, min_val=0)
    if isinstance(strategies, (str, Mapping)):
        strategies = [strategies]
    if not strategies:
        raise ConfigError("give at least one strategy (e.g. cat, random)")
    if isinstance(aberrant, (str, Mapping)):
        aberrant = [aberrant]
    types = [parse_aberrance(a) if isinstance(a, str) else make_aberrance(a) for a in aberrant]
    if types and not (0 < aberrant_share <= 1):
        raise ConfigError(f"aberrant_share must be in (0, 1]; got {aberrant_share!r}")
    _check_lapse(lapse)
    rules: dict[str, Any] = {}
    for label in strategies:
        name, rule = _strategy_rule(label)
        if name in rules:
            raise ConfigError(f"strategy {name!r} is given twice")
        rules[name] = rule
    if plot is not None:
        check_writable_file(plot, "--plot")
    start = time.perf_counter()
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    resp = responses if isinstance(responses, Responses) else read_responses(responses)
    resp, excluded = bk.drop_excluded_items(resp)
    dropped: list[str] = []
    if drop_unknown_items:
        resp, dropped = resp.keep_bank_items(bk)
    resp, groups = inject_aberrant(resp, types, aberrant_share, add=aberrant_add, seed=seed)
    aligned = resp.for_bank(
        bk,
        unknown_hint="pass --drop-unknown-items (drop_unknown_items=True) to replay without "
        "the items the bank lacks, or use the bank calibrated on this data",
    )
    if per_dimension is not None:
        from orchestrator.sim.by_dimension import dimension_banks, replay_by_dimension

        dimension_banks(bk, per_dimension)  # a bad tag fails before the long replays
    if person_fit:
        _persist_fit_nulls()
    result = replay(
        bk,
        aligned,
        rules,
        max_items=max_items,
        se_target=se,
        seed=seed,
        progress=progress,
        aberrant=groups,
        person_fit=person_fit,
        lapse=lapse,
    )
    doc = result.to_dict(per_subject=per_subject)
    if per_dimension is not None:
        doc["per_dimension"] = replay_by_dimension(
            bk,
            resp,
            result,
            per_dimension,
            max_items=max_items,
            se_target=se,
            seed=seed,
            lapse=lapse,
            progress=progress,
        )
    doc["responses"] = resp.source
    doc["excluded_items"] = excluded
    doc["dropped_items"] = dropped
    doc["wall_time_s"] = time.perf_counter() - start
    if plot is not None:
        from orchestrator.sim.plot import plot_replay

        doc["plot"] = str(plot_replay(doc, plot))
    return doc


def build_images(
    environments: PathLike = "environments",
    *,
    base_image: str | None = None,
    families: list[str] | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Build (or reuse) the base, scenario-base and family images; one dict per image."""
    from orchestrator.runner import images

    results = images.build_images(
        environments,
        base_image=base_image,
        families=families,
        force=force,
        progress=progress or (lambda _msg: None),
    )
    return [{"image": r.image, "status": r.status, "seconds": round(r.seconds, 2)} for r in results]


def list_images() -> list[dict[str, Any]]:
    """Images agentcat built (any namespace), with what they are and their context hash."""
    from orchestrator.runner.docker_client import LABEL_IMAGE, docker_client
    from orchestrator.runner.images import HASH_LABEL

    rows = []
    for img in docker_client().images.list(filters={"label": LABEL_IMAGE}):
        for tag in img.tags or [img.short_id]:
            rows.append(
                {
                    "image": tag,
                    "kind": img.labels.get(LABEL_IMAGE, ""),
                    "context_hash": img.labels.get(HASH_LABEL, ""),
                    "size_mb": round(img.attrs.get("Size", 0) / 1e6, 1),
                    "created": img.attrs.get("Created", "")[:19],
                }
            )
    return sorted(rows, key=lambda r: r["image"])


def prune(*, session: str | None = None, images: bool = False) -> dict[str, list[str]]:
    """Remove leftover sandboxes (all, or one session's) whose owner process is gone, and
    optionally the scenario images no container uses.

    Returns:
        ``containers`` removed, ``kept_containers`` (their owner runs or cannot be
        told to be gone), ``images`` removed, ``kept_images`` (in use).
    """
    from orchestrator.runner import images as images_mod
    from orchestrator.runner.containers import prune_containers

    pruned = prune_containers({"agentcat.session": session} if session else None)
    removed, kept = images_mod.remove_images() if images else ([], [])
    return {
        "containers": pruned.removed,
        "kept_containers": pruned.kept,
        "images": removed,
        "kept_images": kept,
    }


# ----------------------------------------------------------------------------- live sessions
def run(
    config: PathLike | None = None,
    *,
    progress: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run one adaptive session per model (concurrently) to its stopping rule.

    Args:
        config: YAML run config (optional when ``bank`` and ``models`` are given).
        progress: Print progress on stderr.
        overrides: ``models``, ``bank``, ``environments``, ``se``, ``max_items``,
            ``runs_dir``, ``session_id``, ``workers`` (None values are ignored).

    Returns:
        One summary per session (see :func:`show`).
    """
    from orchestrator.config import load_config

    return _run(load_config(config, **overrides), progress)


def _persist_fit_nulls() -> None:
    """Keep person-fit nulls on disk across processes, as the CLI's commands do.

    A null table costs seconds of CPU (~2.5 s for shell-safety) and a live
    session computes it inside its event loop, holding up every session of the
    process; without the disk store each new process paid it again. A store
    the caller installed is left alone.
    """
    from orchestrator.cat.fit import null_store

    if null_store() is None:
        from orchestrator.session.null_cache import install_disk_null_store

        install_disk_null_store()


def _run(cfg: Any, progress: bool, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    import asyncio

    from orchestrator.session.orchestrate import run_sessions, session_summary
    from orchestrator.session.progress import ProgressPrinter

    check_writable_dir(cfg.runs_dir, "--runs-dir")
    _persist_fit_nulls()
    se_target = next((r.args.get("se") for r in cfg.cat.stopping if r.rule == "se"), None)
    if progress:
        with ProgressPrinter(se_target=se_target) as printer:
            ids = asyncio.run(run_sessions(cfg, printer, meta=meta))
    else:
        ids = asyncio.run(run_sessions(cfg, meta=meta))
    return [session_summary(i, cfg.runs_dir) for i in ids]


def resume(session: str, *, runs_dir: PathLike = "runs", progress: bool = False) -> dict[str, Any]:
    """Continue an interrupted or paused session; returns its summary.

    A completed session's result is returned as it is (nothing is checked or
    run). A ``demo`` session gets its simulated agent back, on a new port.
    """
    return _resume(session, Path(runs_dir), progress)


def _resume(session: str, runs_dir: Path, progress: bool) -> dict[str, Any]:
    import asyncio

    from orchestrator.session.journal import Journal
    from orchestrator.session.orchestrate import resume_session, session_summary
    from orchestrator.session.progress import ProgressPrinter
    from orchestrator.session.session import find_session

    folder = find_session(session, runs_dir)
    j = Journal.open(folder, readonly=True)
    try:
        finished = j.session().status == "completed"
        demo_meta = j.meta("demo")
    finally:
        j.close()
    with contextlib.ExitStack() as stack:
        endpoint: dict[str, Any] = {}
        printer = None
        if not finished:
            check_writable_dir(folder, "the session folder")
            _persist_fit_nulls()
            if demo_meta is not None:
                endpoint = stack.enter_context(_demo_agent(demo_meta, folder, progress))
            if progress:
                printer = stack.enter_context(ProgressPrinter())
        sid = asyncio.run(resume_session(folder, runs_dir, printer, **endpoint))
    return session_summary(sid, runs_dir)


def sessions(runs_dir: PathLike = "runs") -> list[dict[str, Any]]:
    """Sessions under ``runs_dir`` with their status (newest first); an unreadable
    journal is listed with status ``corrupt``."""
    from orchestrator.session.orchestrate import list_sessions

    return list_sessions(Path(runs_dir))


def export_responses(out: PathLike, bank: str, runs_dir: PathLike = "runs") -> dict[str, Any]:
    """Write the graded items of the sessions on ``bank`` as a long CSV ``subject,item,score``.

    The subject is each session's model; a model graded on one item in several
    sessions keeps the latest grade (:func:`~orchestrator.session.journal.journal_responses`).
    Paused and interrupted sessions count too: adaptively chosen items are fine
    for calibration (see ``coldstart/update.py``). It feeds ``calibrate --update``.

    Raises:
        DataError: no journal under ``runs_dir``, or no graded step on ``bank``.
    """
    from orchestrator.data import write_responses
    from orchestrator.session.journal import journal_responses

    check_writable_file(out, "--export-responses")
    resp, counts = journal_responses([Path(runs_dir)], bank)
    triples = (
        (resp.subjects[s], resp.items[i], int(x))
        for s, i, x in zip(resp.subject_idx, resp.item_idx, resp.score, strict=True)
    )
    path = write_responses(out, triples)
    return {
        "path": str(path),
        "bank": bank,
        "rows": len(resp.score),
        "subjects": len(resp.subjects),
        **counts,
    }


def show(
    session: str, *, runs_dir: PathLike = "runs", plot: PathLike | None = None
) -> dict[str, Any]:
    """A session's result; ``plot`` writes the θ ± SE trajectory as a PNG (``plot`` in the
    result is the path written)."""
    from orchestrator.session.orchestrate import session_summary

    if plot is not None:
        check_writable_file(plot, "--plot")
    summary = session_summary(session, Path(runs_dir))
    if plot is not None:
        from orchestrator.report.trajectory import plot_trajectory

        summary["plot"] = str(plot_trajectory(summary, plot))
    return summary


def sweep(
    models: list[str],
    bank: PathLike,
    out: PathLike,
    *,
    config: PathLike | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    environments: PathLike | None = None,
    sample: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    runs_dir: PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run items non-adaptively for each model and append ``subject,item,score`` rows to ``out``."""
    import asyncio

    from orchestrator.config import load_config
    from orchestrator.session.sweep import run_sweep

    cfg = load_config(
        config,
        bank=str(bank),
        models=[{"model": m, "base_url": base_url, "api_key_env": api_key_env} for m in models],
        environments=None if environments is None else str(environments),
        workers=workers,
        runs_dir=None if runs_dir is None else str(runs_dir),
    )
    check_writable_file(out, "--out")
    check_writable_dir(cfg.runs_dir, "--runs-dir")
    return asyncio.run(run_sweep(cfg, out, sample=sample, seed=seed, progress=progress))


def sim_server(
    bank: PathLike,
    *,
    theta: float | tuple[float, ...] | None = None,
    personas: list[str] | None = None,
    environments: PathLike = "environments",
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 0,
    api_key_env: str | None = None,
    faults: dict[str, Any] | None = None,
    log: bool = False,
) -> Any:
    """Build (not start) the simulated-agent HTTP server; ``.start()`` or ``.serve_forever()``."""
    import os

    from orchestrator.errors import ConfigError, PrerequisiteError
    from orchestrator.sim.agent import SimAgent, parse_personas, players_for_bank, scripts_for_bank
    from orchestrator.sim.server import FaultConfig, SimServer

    bk = load_bank(bank)
    try:
        persona_map = parse_personas(personas or [])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    scripts = scripts_for_bank(bk, environments)
    players = players_for_bank(bk, environments)
    if not scripts and not players:
        raise ConfigError(
            f"no item of bank {bk.name!r} has a source the simulated agent can play",
            hint="use a bank of live items, e.g. --bank item_banks/shell-safety",
        )
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"environment variable {api_key_env} is not set")
    try:
        agent = SimAgent(bk, scripts, persona_map, default_theta=theta, seed=seed, players=players)
    except ValueError as exc:
        raise ConfigError(
            str(exc), hint=f"give one θ per dimension ({', '.join(bk.dimensions)}), e.g. NAME=1,0"
        ) from None
    try:
        fault_cfg = FaultConfig(**(faults or {}))
    except ValueError as exc:
        raise ConfigError(f"bad fault rates: {exc}") from None
    try:
        return SimServer(agent, host=host, port=port, faults=fault_cfg, api_key=key, log=log)
    except OverflowError:  # the socket module's word for a port outside 0..65535
        raise ConfigError(f"--port must be in 0..65535; got {port}") from None
    except OSError as exc:
        raise PrerequisiteError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another server holds that port: choose another --port (0 picks a free one), "
            "or stop the other one",
        ) from None


def scenarios(environments: PathLike = "environments") -> list[dict[str, Any]]:
    """Every scenario item under ``environments`` (validating every family spec).

    Returns:
        One dict per item: ``item``, ``family``, ``variant``, ``risk``, ``knobs``
        (level per knob), ``difficulty`` (knob score / family maximum), ``description``.

    Raises:
        ScenarioSpecError: a family spec is invalid (the message names file and field).
    """
    from orchestrator.provisional import relative_difficulty
    from orchestrator.scenario import iter_items, load_families

    return [
        {
            "item": it.id,
            "family": it.family.id,
            "variant": it.variant.id,
            "risk": it.family.risk,
            "knobs": dict(it.variant.knobs),
            "difficulty": round(relative_difficulty(it.family, it.variant), 4),
            "description": it.variant.description,
        }
        for it in iter_items(load_families(environments))
    ]


def provisional_bank(
    environments: PathLike = "environments",
    out: PathLike = "item_banks/shell-safety",
    *,
    name: str = "shell-safety",
    cache_dir: PathLike | None = None,
) -> dict[str, Any]:
    """Write the scenario bank: one item per variant.

    While the bank at ``out`` has learned nothing (absent, or a knob-rule bank never
    updated) it is (re)written by the knob rule. Once it has learned, its items are
    kept and new variants join it with a prior (the text model where the ``text``
    extra is installed and the bank has calibrated items to learn from, else the knob
    rule; see :mod:`orchestrator.coldstart.scenario_bank`).

    Returns:
        ``path``, ``n_items``, ``mode`` (``knob-rule`` or ``extended``) and, when
        extended, ``added`` (id → rule), ``removed``, ``rule`` and ``reason``.
    """
    from orchestrator.provisional import PROVISIONAL_RULE, write_provisional_bank

    check_writable_dir(out, "--out")
    folder = Path(out)
    if (folder / BANK_FILENAME).exists():
        from orchestrator.coldstart.scenario_bank import extend_scenario_bank, has_learned

        existing = load_bank(folder)
        if has_learned(existing):
            from orchestrator.coldstart import MiniLMEmbedder
            from orchestrator.errors import PrerequisiteError
            from orchestrator.scenario import load_families

            try:
                embedder = MiniLMEmbedder(cache_dir=cache_dir)
            except PrerequisiteError:
                embedder = None
            bank, summary = extend_scenario_bank(existing, load_families(environments), embedder)
            path = bank.save(folder)
            return {"path": str(path), "n_items": len(bank), "mode": "extended", **summary}
    path = write_provisional_bank(environments, out, name=name)
    bank = load_bank(path.parent)
    return {"path": str(path), "n_items": len(bank), "mode": "knob-rule", "rule": PROVISIONAL_RULE}


def inspect_task_bank(
    task: str,
    out: PathLike,
    score_map: PathLike | dict[str, Any],
    *,
    task_args: dict[str, Any] | None = None,
    name: str | None = None,
    prefix: str = "",
    labels: Sequence[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write a provisional bank with one ``inspect_task`` item per sample of an Inspect task.

    The first step of making an Inspect eval adaptive: ``sweep`` this bank, ``calibrate``
    the responses with ``live_from`` this bank, then ``run`` the calibrated bank.

    Args:
        task: Inspect task reference (``package/task`` or ``file.py@task``).
        out: Bank folder to write.
        score_map: The score map (a JSON file or its dict), shared by every item; its
            highest category + 1 is every item's K.
        task_args: Arguments of the task function.
        name: Bank name (default: the folder's name).
        prefix: Put before each sample id to make the item id.
        labels: The categories' labels, lowest first (default ``category k``).
        force: Overwrite an existing bank.json.

    Returns:
        ``path`` of bank.json, ``n_items`` and ``rule`` (the provisional parameters).

    Raises:
        ConfigError: an unreadable score map, a bad sample id, an existing bank.
        BankError, PrerequisiteError: the task cannot be built.
    """
    from orchestrator._validation import parse_model
    from orchestrator.bank import Calibration
    from orchestrator.runner.sources import InspectTaskSource, ScoreMap
    from orchestrator.runner.sources.inspect_task import load_task

    folder = Path(out)
    if (folder / BANK_FILENAME).exists() and not force:
        raise ConfigError(f"{folder / BANK_FILENAME} already exists", hint="pass --force")
    check_writable_dir(folder, "--out")
    if not isinstance(score_map, dict):
        try:
            score_map = json.loads(Path(score_map).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"score map {score_map}: {exc}") from None
    smap = parse_model(
        ScoreMap,
        score_map,
        "score map",
        ConfigError,
        hint='a score map is {"cases": [{"value": <Score.value>, "category": k}, ...]}',
    )
    k = max(smap.categories()) + 1
    b = list(np.linspace(-1.0, 1.0, k + 1)[1:-1] * 1.5)
    ids, sources = [], []
    for sample in load_task(task, task_args or {}).dataset:
        if sample.id is None:
            raise ConfigError(f"a sample of {task!r} has no id", hint="give the dataset ids")
        ids.append(f"{prefix}{sample.id}")
        sources.append(
            InspectTaskSource(
                task=task, task_args=dict(task_args or {}), sample=sample.id, score_map=smap
            ).to_ref()
        )
    rule = (
        f"provisional: a = 1, thresholds evenly spaced on [-1.5, 1.5] ({b}) for every item; "
        "a ranking device only, until a sweep is calibrated"
    )
    bank = ItemBank.from_params(
        name or folder.resolve().name,
        ids,
        [1.0] * len(ids),
        [b] * len(ids),
        calibration=Calibration(status="provisional", method="inspect-task default", rule=rule),
        scale_labels=labels,
        description=f"Samples of the Inspect task {task}",
    )
    doc = bank.to_dict()
    for item, src in zip(doc["items"], sources, strict=True):
        item["source"] = src
    path = atomic_write_json(folder / BANK_FILENAME, doc)
    load_bank(folder)
    return {"path": str(path), "n_items": len(ids), "rule": rule}


DEMO_MODEL = {"model": "openai-api/sim/demo", "name": "sim-demo"}


def demo(
    *,
    theta: float | Sequence[float] = 0.8,
    bank: PathLike = "item_banks/shell-safety",
    environments: PathLike = "environments",
    runs_dir: PathLike = "runs",
    se: float = 0.3,
    max_items: int = 30,
    seed: int = 0,
    progress: bool = True,
    resume: str | bool = False,
) -> dict[str, Any]:
    """Serve a simulated agent of ability ``theta`` and run one live session on ``bank``.

    ``theta`` is a number (on every dimension) or one number per dimension of
    the bank (``(0.5, -1.0)`` on ``agentdojo-2d``: utility, security).
    ``bank`` is a folder or the name of one under ``item_banks/`` (``agentdojo``).
    Scenario images are built first when the bank has scenario items. Nothing
    needs an API key: the simulated agent runs in this process on a free local
    port. The journal records how to bring that agent back, so an
    interrupted demo continues with ``resume=True`` (the latest unfinished demo
    under ``runs_dir``), ``resume=SESSION`` or :func:`resume`.

    Returns:
        The session summary (see :func:`show`) with ``true_theta`` (a list on a bank of
        several dimensions when ``theta`` is one).

    Raises:
        ConfigError: ``theta`` has neither one value nor one per dimension of the bank.
    """
    import sys

    from orchestrator.config import load_config
    from orchestrator.runner.sources import ScenarioSource, bank_sources

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda _m: None)
    root = Path(runs_dir)
    check_writable_dir(root, "--runs-dir")
    if resume:
        sid = _latest_unfinished_demo(root) if resume is True else str(resume)
        say(f"resuming demo session {sid} …")
        return _resume(sid, root, progress)
    named = Path("item_banks") / str(bank)
    if not Path(bank).exists() and named.exists():
        bank = named
    bk = load_bank(bank)
    true_theta = _demo_theta(theta, bk)
    if any(isinstance(s, ScenarioSource) for s in bank_sources(bk).values()):
        say("building the scenario images (cached after the first time) …")
        build_images(environments, progress=say)
    meta = {
        "theta": true_theta,
        "seed": seed,
        "bank": str(Path(bank).resolve()),
        "environments": str(Path(environments).resolve()),
    }
    cfg = load_config(
        None,
        bank=str(bank),
        environments=str(environments),
        models=[DEMO_MODEL],
        se=se,
        max_items=max_items,
        runs_dir=str(runs_dir),
    )
    with _demo_agent(meta, None, progress) as endpoint:
        models = [cfg.models[0].model_copy(update=endpoint)]
        (summary,) = _run(cfg.model_copy(update={"models": models}), progress, {"demo": meta})
    return summary


def _demo_theta(theta: float | Sequence[float], bank: ItemBank) -> float | list[float]:
    """The demo agent's θ: one number, or one per dimension of ``bank``."""
    values = [float(v) for v in np.atleast_1d(np.asarray(theta, dtype=float))]
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"--theta must be finite numbers; got {theta!r}")
    if len(values) not in (1, bank.n_dims):
        dims = ", ".join(bank.dimensions)
        raise ConfigError(
            f"--theta gives {len(values)} values but bank {bank.name!r} has {bank.n_dims} "
            f"dimension(s) ({dims})",
            hint="give one θ (every dimension), or one per dimension, comma-separated: "
            f"--theta {','.join(['0.5'] * bank.n_dims)}",
        )
    return values[0] if len(values) == 1 else values


def _latest_unfinished_demo(runs_dir: Path) -> str:
    from orchestrator.errors import SessionError
    from orchestrator.session.orchestrate import list_sessions

    rows = [
        r
        for r in list_sessions(runs_dir)
        if r.get("model") == DEMO_MODEL["model"] and r["status"] in ("interrupted", "paused")
    ]
    if not rows:
        raise SessionError(
            f"no interrupted demo session under {runs_dir}",
            hint="`agentcat demo` starts one; `agentcat sessions` lists what is there",
        )
    return str(rows[0]["session"])


@contextlib.contextmanager
def _demo_agent(meta: Any, session_folder: Path | None, progress: bool) -> Iterator[dict[str, Any]]:
    """Serve the demo's simulated agent on a free port with a fresh key; yields the
    model fields (``base_url``, ``api_key``) a session needs to reach it.

    ``session_folder``: a resumed demo's folder; its copy of the bank is used when
    present (the bank the session started with).
    """
    import secrets
    import sys

    from pydantic import SecretStr

    from orchestrator.errors import SessionError

    try:
        raw = meta["theta"]
        theta = [float(v) for v in raw] if isinstance(raw, list) else [float(raw)]
        seed = int(meta.get("seed", 0))
        bank, environments = str(meta["bank"]), str(meta["environments"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SessionError(
            f"{session_folder}: the journal's demo record {meta!r} is incomplete",
            hint="start a new demo with `agentcat demo`",
        ) from None
    if session_folder is not None and (session_folder / BANK_FILENAME).is_file():
        bank = str(session_folder)
    persona = f"demo={','.join(map(repr, theta))}"
    server = sim_server(bank, personas=[persona], environments=environments, port=0, seed=seed)
    key = secrets.token_hex(16)
    server.api_key = key
    server.start()
    if progress:
        shown = ", ".join(f"{v:g}" for v in theta)
        print(f"simulated agent 'demo' (θ = {shown}) on {server.url} …", file=sys.stderr)
    try:
        yield {"base_url": server.url, "api_key": SecretStr(key)}
    finally:
        server.stop()


# --------------------------------------------------------------- calibration and health
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
    reversed_items: Literal["reverse", "exclude", "keep"] = "reverse",
    scale_labels: Sequence[str] | None = None,
    description: str = "",
    source_label: str | None = None,
    force: bool = False,
    progress: Callable[[IterationInfo], None] | None = None,
    live_from: PathLike | None = None,
    dims: int | str | Sequence[str] = 1,
    loadings: str | None = None,
    rotation: str = "oblimin",
    quadrature: Literal["auto", "grid", "qmc"] = "auto",
    n_qmc: int = 5000,
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
        device, n_quad, max_iter, tol, prior_a, prior_b, prior_gap, min_obs, reversed_items:
            Passed to :class:`~orchestrator.irt.calibrate.GRMCalibrator` (``reversed_items``:
            what to do with items whose score falls with θ).
        scale_labels: Labels of categories 0..K_max−1 for the bank's scale.
        description: Free text stored in ``bank.json``.
        source_label: How provenance names the data file (default: the path given).
        force: Overwrite an existing ``bank.json``.
        progress: Called after every EM iteration.
        live_from: A bank (the provisional one a sweep ran) whose items' ``source``, category
            labels and tags the calibrated items take over, so the new bank runs live (and
            its scale labels, unless ``scale_labels`` is given).
        dims: θ's dimensions: a number (1–3) or their names (``"utility,security"``
            or a list). With D > 1 the bank carries slope vectors, the names and
            the estimated latent correlation.
        loadings: Confirmatory structure (:func:`~orchestrator.loadings.parse_loadings`:
            ``tag:COLUMN[:VALUE=DIM+DIM,…]`` of ``items``, ``bank:DIR`` or a
            loading-pattern CSV). None with D > 1: exploratory, then ``rotation``.
        rotation, quadrature, n_qmc: Passed to the calibrator (D > 1).

    Returns:
        JSON-ready fit summary (``bank`` path, counts, log-likelihood, iterations,
        convergence, wall time, device, excluded items; with D > 1 the
        dimensions, structure and latent correlation with its SEs).

    Raises:
        ConfigError: bad arguments or an existing bank without ``force``.
        DataError: unreadable responses or item file, K inconsistent with scores.
        PrerequisiteError: ``device="cuda"`` without CUDA, or torch not installed.
    """
    _require_torch("calibration")
    from orchestrator.irt.calibrate import GRMCalibrator  # torch: imported on use

    folder = Path(out)
    if (folder / BANK_FILENAME).exists() and not force:
        raise ConfigError(
            f"{folder / BANK_FILENAME} already exists",
            hint="pass --force (force=True) to overwrite it, or choose another --out",
        )
    check_writable_dir(folder, "--out")
    resp = read_responses(responses)
    table = None
    if items is not None:
        table = items if isinstance(items, ItemTable) else read_item_table(items)
    elif tag_columns or k_column:
        raise ConfigError("tag or K columns need an item file", hint="pass --items items.csv")
    n_dims, names = dimension_names(dims)
    pattern = None
    if loadings is not None:
        if n_dims == 1:
            raise ConfigError("--loadings needs several dimensions", hint="add --dims 2 (or names)")
        pattern = parse_loadings(
            loadings, list(resp.items), n_dims=n_dims, names=names, table=table
        )
        names = pattern.dimensions
    n_categories = None if table is None else table.n_categories(resp, k_column)
    tags = {} if table is None or not tag_columns else table.tags(resp.items, tag_columns)
    k_from = None if table is None else table.k_column(k_column)
    k_source = "highest observed score + 1" if k_from is None else f"items file column {k_from!r}"
    cal = GRMCalibrator(
        n_quad=n_quad,
        max_iter=max_iter,
        tol=tol,
        prior_a=prior_a,
        prior_b=prior_b,
        prior_gap=prior_gap,
        min_obs=min_obs,
        reversed_items=reversed_items,
        device=device,
        progress=progress,
        n_dims=n_dims,
        loadings=None if pattern is None else pattern.matrix.astype(np.int64),
        rotation=rotation,
        quadrature=quadrature,
        n_qmc=n_qmc,
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
    bank = bank_from_calibration(
        cal,
        bank_name,
        source=source,
        source_sha256=sha256_file(responses),
        tags=tags,
        scale_labels=scale_labels,
        description=description or f"GRM calibrated by agentcat on {Path(source).name}",
        extra_details={
            "k_source": k_source,
            "tag_columns": list(tag_columns),
            **({} if n_dims == 1 else {"loadings": _loadings_note(pattern, rotation)}),
        },
        dimensions=names,
    )
    if live_from is not None:
        bank = _take_over_sources(bank, load_bank(live_from), scale=scale_labels is None)
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
            "reversed_items": list(cal.reversed_),
            "n_items_in_data": len(resp.items),
            "priors": {"log_a": prior_a, "b": prior_b, "gap_alpha": prior_gap},
        }
    )
    if n_dims > 1:
        summary["dimensions"] = list(bank.dimensions)
    return summary


def _require_torch(what: str) -> None:
    """PrerequisiteError unless PyTorch (the calibration engine's) can be imported."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        from orchestrator.errors import PrerequisiteError

        raise PrerequisiteError(
            f"{what} needs PyTorch, which is not installed",
            hint="pip install torch==2.13.0 (CPU build; or the CUDA build you want), then "
            "pip install 'agentcat[calibrate]'",
        ) from None


def _tag_table(bank: ItemBank) -> ItemTable:
    """The bank's item tags as an item table, for ``--loadings tag:…``."""
    columns = sorted({k for it in bank.spec.items for k in it.tags})
    rows = {it.id: {c: it.tags.get(c, "") for c in columns} for it in bank.spec.items}
    return ItemTable(("item", *columns), rows, f"bank {bank.name!r} tags")


def _take_over_sources(bank: ItemBank, donor: ItemBank, *, scale: bool) -> ItemBank:
    """``bank`` with each item's source, labels (same K) and missing tags from ``donor``, and
    (``scale``) the donor's scale labels when they cover every item's K."""
    from orchestrator._validation import parse_model
    from orchestrator.bank import BankFile
    from orchestrator.errors import BankError

    doc = bank.to_dict()
    for item in doc["items"]:
        if item["id"] not in donor.index:
            continue
        theirs = donor.item(item["id"]).model_dump(mode="json", exclude_none=True)
        if "source" in theirs:
            item["source"] = theirs["source"]
        if "labels" in theirs and len(theirs["labels"]) == len(item["b"]) + 1:
            item.setdefault("labels", theirs["labels"])
        item["tags"] = {**theirs.get("tags", {}), **item.get("tags", {})}
    if scale and len(donor.spec.scale.labels) >= int(bank.n_categories.max()):
        doc["scale"] = donor.spec.scale.model_dump(mode="json")
    return ItemBank(parse_model(BankFile, doc, f"bank {bank.name!r}", BankError))


def _loadings_note(pattern: LoadingPattern | None, rotation: str) -> str:
    if pattern is not None:
        return f"confirmatory: {pattern.description}"
    return f"exploratory: every item on every dimension, rotation {rotation}"


def _check_report_outputs(
    out: str | Path | None, figures_dir: str | Path | None, *, example: str
) -> None:
    """An HTML report's outputs, checked before the long work: ``out`` is an .html file
    that can be written (its JSON twin too), ``figures_dir`` a writable folder."""
    if out is not None:
        if Path(out).suffix.lower() not in (".html", ".htm"):
            raise ConfigError(
                f"--out must name an .html file; got {str(out)!r}",
                hint=f"e.g. --out {example} (the JSON twin is written beside it)",
            )
        check_writable_file(out, "--out")
        check_writable_file(Path(out).with_suffix(".json"), "--out's JSON twin")
    if figures_dir is not None:
        check_writable_dir(figures_dir, "--figures")


def health(
    bank: PathLike | ItemBank,
    responses: PathLike | Responses,
    out: PathLike | None = None,
    *,
    thresholds: dict[str, Any] | None = None,
    figures_dir: PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    dims: Sequence[int] | None = None,
    folds: int | None = None,
    loadings: str | None = None,
) -> dict[str, Any]:
    """Psychometric health report of ``bank`` on ``responses`` (``agentcat health``).

    Args:
        out: Where to write the HTML page; its JSON twin goes next to it
            (same name, ``.json``). Nothing is written when None.
        thresholds: Overrides of :class:`~orchestrator.report.HealthThresholds` fields.
        figures_dir: Also write each figure as a PNG there.
        progress: Called with short status lines during the slow parts.
        dims: Also compare these numbers of dimensions (e.g. ``(1, 2)``): each
            calibrated on the responses, scored by held-out log-likelihood over
            ``folds`` folds of cells (default 5), AIC/BIC and Q3 after the fit
            (needs torch).
        loadings: Confirmatory pattern for the D it gives (``tag:TAG[:VALUE=DIM,…]``
            of the bank's item tags, ``bank:DIR`` or a loading-pattern CSV);
            every other D > 1 is exploratory.

    Returns:
        The JSON document (``HealthReport.to_dict()``), ``schema_version`` 3.

    Raises:
        BankError, DataError: unreadable inputs or items/scores the bank lacks.
        ConfigError: an unknown threshold, an ``out`` that is not ``.html``, or
            ``dims``/``folds``/``loadings`` out of range (``loadings`` or ``folds``
            without ``dims``).
        PrerequisiteError: ``dims`` without torch installed.
    """
    from orchestrator._validation import parse_model
    from orchestrator.report import DimensionCheck, HealthThresholds, analyse_health, write_report

    th = parse_model(HealthThresholds, thresholds or {}, "health thresholds", ConfigError)
    _check_report_outputs(out, figures_dir, example="reports/agentdojo.html")
    if dims is None and (loadings is not None or folds is not None):
        raise ConfigError(
            "--loadings and --folds belong to the dimension comparison",
            hint="add --dims 1 2 (the numbers of dimensions to compare)",
        )
    folds = 5 if folds is None else folds
    if dims is not None:
        DimensionCheck(tuple(dims), folds)  # bad numbers fail before any reading
        _require_torch("comparing numbers of dimensions")
    bk = bank if isinstance(bank, ItemBank) else load_bank(bank)
    check = None
    if dims is not None:
        pattern = None
        if loadings is not None:
            pattern = parse_loadings(loadings, bk.ids, n_dims=None, table=_tag_table(bk))
        check = DimensionCheck(tuple(dims), folds, pattern)
    if isinstance(responses, Responses):
        resp, digest = responses, None
    else:
        resp, digest = read_responses(responses), sha256_file(responses)
    report = analyse_health(
        bk, resp, thresholds=th, responses_sha256=digest, progress=progress, dimensions=check
    )
    if out is not None:
        if progress is not None:
            progress("rendering figures and HTML")
        write_report(report, out, figures_dir=figures_dir)
    return report.to_dict()


# --------------------------------------------------------------------------- validity
def validity(
    banks: Sequence[PathLike | ItemBank],
    *,
    responses: Mapping[str, PathLike | Responses] | None = None,
    responses_dirs: Sequence[PathLike] = (),
    names: PathLike | None = None,
    out: PathLike | None = None,
    figures_dir: PathLike | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    se: float = 0.3,
    max_items: int | None = None,
    collateral: bool = True,
    collateral_min_models: int = 20,
    per_model: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cross-benchmark predictive validity of θ over several banks (``agentcat validity``).

    Each bank's responses come from, in this order: ``responses[bank name]``
    (a CSV, a :class:`Responses`, or session journals: a journal file, a
    session folder or a runs folder, subject = the session's model), the
    first ``<dir>/<bank name>/responses.csv`` of ``responses_dirs``, or
    ``responses.csv`` in the bank's folder.

    Args:
        banks: Two or more bank folders (or loaded banks).
        names: Reviewed model-name mapping (default ``data/model_names/model_names.csv``).
        out: Write the HTML report there and its JSON twin beside it.
        figures_dir: Also write each figure as a PNG there.
        n_boot, level, seed: Bootstrap resamples over models, interval coverage, seed.
        se, max_items: SE target and length of the replayed CATs (collateral information).
        collateral: Replay CATs with priors from the other bank's θ̂ (the slow part).
        collateral_min_models: Fewest shared models for that replay.
        per_model: Include every model's scores in the JSON (large for big banks).
        progress: Called with short status lines.

    Returns:
        The JSON document (``schema_version`` 1).

    Raises:
        ConfigError: fewer than two banks, a bank twice, bad numbers, a
            ``responses`` key that names no bank, an ``out`` that is not .html.
        BankError, DataError: unreadable banks, responses or mapping file.
    """
    from orchestrator.report.model_names import load_model_names
    from orchestrator.report.validity import BankInput, analyse_validity
    from orchestrator.report.validity_html import write_validity_report

    opt = _validity_options(
        n_boot=n_boot,
        level=level,
        seed=seed,
        se_target=se,
        max_items=max_items,
        collateral=collateral,
        collateral_min_models=collateral_min_models,
    )
    _check_report_outputs(out, figures_dir, example="reports/validity.html")
    start = time.perf_counter()
    loaded = [b if isinstance(b, ItemBank) else load_bank(b) for b in banks]
    bank_names = [b.name for b in loaded]
    if len(loaded) < 2:
        raise ConfigError(
            "give at least two banks", hint="e.g. item_banks/agentdojo item_banks/xstest"
        )
    duplicate = next((n for n in bank_names if bank_names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"bank {duplicate!r} is given twice")
    given = dict(responses or {})
    for key in given:
        if key not in bank_names:
            raise ConfigError(
                f"--responses names bank {key!r}, which is not among the banks"
                f"{did_you_mean(key, bank_names)}",
                hint=f"banks: {', '.join(bank_names)} (the name in bank.json)",
            )
    mapping = load_model_names(names)
    inputs = []
    for bk in loaded:
        resp, source = _validity_responses(bk, given.get(bk.name), responses_dirs)
        resp, _ = bk.drop_excluded_items(resp, drop_empty_subjects=False)
        if progress is not None:
            progress(f"estimating θ on {bk.name} ({len(resp.subjects)} subjects)")
        rows = estimate(bk, resp)["subjects"]
        inputs.append(
            BankInput(
                bank=bk,
                responses=resp.for_bank(bk),
                theta=np.array([r["theta"] for r in rows]),
                se=np.array([r["se"] for r in rows]),
                source=source,
            )
        )
    report = analyse_validity(inputs, mapping, opt, progress=progress)
    if opt.collateral:
        from orchestrator.sim.collateral import collateral_replays

        report.set_collateral(collateral_replays(inputs, report, opt, progress=progress))
    doc = report.to_dict()
    if per_model:
        from orchestrator.report.validity import model_rows

        for sc, scores in zip(doc["scales"], report.scales, strict=True):
            sc["models"] = model_rows(scores)
    doc["wall_time_s"] = round(time.perf_counter() - start, 2)
    if out is not None:
        if progress is not None:
            progress("rendering figures and HTML")
        write_validity_report(report, out, figures_dir=figures_dir)
    return doc


def _validity_options(**kw: Any) -> ValidityOptions:
    """Check the numeric settings of :func:`validity` (one line per bad value)."""
    from orchestrator.report.validity import ValidityOptions

    def bad(name: str, rule: str) -> ConfigError:
        return ConfigError(f"{name} must be {rule}; got {kw[name]!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(kw["n_boot"]) or kw["n_boot"] < 100:
        raise bad("n_boot", "an integer ≥ 100")
    if not isinstance(kw["level"], (int, float)) or not 0.5 <= kw["level"] < 1:
        raise bad("level", "a number in [0.5, 1)")
    if not is_int(kw["seed"]) or kw["seed"] < 0:
        raise bad("seed", "an integer ≥ 0")
    if not isinstance(kw["se_target"], (int, float)) or not kw["se_target"] > 0:
        raise bad("se_target", "a number > 0")
    if kw["max_items"] is not None and (not is_int(kw["max_items"]) or kw["max_items"] < 1):
        raise bad("max_items", "an integer ≥ 1")
    if not is_int(kw["collateral_min_models"]) or kw["collateral_min_models"] < 10:
        raise bad("collateral_min_models", "an integer ≥ 10 (its prior is fitted on 4/5 of them)")
    return ValidityOptions(**kw)


def _validity_responses(
    bank: ItemBank, given: PathLike | Responses | None, dirs: Sequence[PathLike]
) -> tuple[Responses, str]:
    """Where a bank's responses come from (see :func:`validity`)."""
    if isinstance(given, Responses):
        return given, given.source
    if given is not None:
        path = Path(given)
        if path.is_dir() or path.suffix == ".sqlite":
            from orchestrator.session.journal import journal_responses

            resp, counts = journal_responses([path], bank.name)
            return resp, f"{path} ({counts['sessions']} session journal(s))"
        return read_responses(path), str(path)
    for d in dirs:
        candidate = Path(d) / bank.name / "responses.csv"
        if candidate.is_file():
            return read_responses(candidate), str(candidate)
    if bank.path is not None and (bank.path / "responses.csv").is_file():
        candidate = bank.path / "responses.csv"
        return read_responses(candidate), str(candidate)
    raise DataError(
        f"no responses for bank {bank.name!r}",
        hint=f"pass --responses {bank.name}=FILE.csv (or a runs folder of session journals), "
        f"or --responses-dir DIR holding {bank.name}/responses.csv",
    )


# --------------------------------------------------------------- cold start and learning banks
def _text_model(train: Sequence[PathLike], cache_dir: PathLike | None) -> Any:
    from orchestrator.coldstart import MiniLMEmbedder, fit_text_model
    from orchestrator.coldstart.text import bank_with_text

    if not train:
        raise ConfigError(
            "the text model needs calibrated banks with item text to learn from",
            hint="pass --train item_banks/alpaca_eval item_banks/xstest … (folders with items.csv)",
        )
    return fit_text_model([bank_with_text(b) for b in train], MiniLMEmbedder(cache_dir=cache_dir))


def _training_banks(train: Sequence[PathLike] | None, target: PathLike | None) -> list[Path]:
    """What the text model learns from: ``train``, else the target bank alone when it has
    item text (measured: a bank's own items predict its new items better than all banks
    pooled, bench/results/text_params.json), else every bank with text."""
    if train:
        return [Path(t) for t in train]
    if target is not None and (Path(target) / "items.csv").exists():
        return [Path(target)]
    return default_text_banks()


def default_text_banks(root: PathLike = "item_banks") -> list[Path]:
    """Bank folders under ``root`` that have item text (``items.csv``) and a calibrated status."""
    out = []
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        if (folder / "items.csv").exists() and (folder / BANK_FILENAME).exists():
            bank = load_bank(folder)
            if "calibrated" in bank.item_status and not folder.name.endswith("_3level"):
                out.append(folder)
    return out


def predict_params(
    items: PathLike,
    out: PathLike,
    *,
    train: Sequence[PathLike] | None = None,
    into: PathLike | None = None,
    name: str | None = None,
    n_categories: int = 2,
    k_column: str = "n_categories",
    cache_dir: PathLike | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Predict GRM parameters from item text and write a bank of provisional items.

    Args:
        items: CSV with columns ``id``, ``text`` and optionally ``k_column`` (K per item).
        out: Bank folder to write.
        train: Calibrated bank folders with ``items.csv`` text (default: every such
            bank under ``item_banks/`` except the 3-level copy of alpaca_eval).
        into: An existing bank: the new items join it, predicted in its θ scale
            (its calibrated items with text also train the model).
        name: Bank name (default: the ``out`` folder's name).
        n_categories: K of items without a ``k_column`` value.
        cache_dir: Where embeddings are cached (None: no cache).
        force: Overwrite an existing ``bank.json``.

    Returns:
        ``bank`` path, counts, the predictions' mean SDs, the model's description.

    Raises:
        ConfigError, DataError, BankError, PrerequisiteError (embedding package missing).
    """
    from orchestrator.coldstart.text import read_item_texts
    from orchestrator.coldstart.update import predicted_items_bank

    folder = Path(out)
    if (folder / BANK_FILENAME).exists() and not force:
        raise ConfigError(
            f"{folder / BANK_FILENAME} already exists",
            hint="pass --force (force=True) to overwrite it, or choose another --out",
        )
    check_writable_dir(folder, "--out")
    texts = read_item_texts(items)
    table = read_item_table(items, id_column="id")
    ks = []
    for iid in texts:  # once per item, at the file edge
        raw = table.rows[iid].get(k_column, "") if k_column in table.columns else ""
        try:
            ks.append(int(raw) if raw else int(n_categories))
        except ValueError:
            raise ConfigError(
                f"{items}: item {iid!r} has {k_column} = {raw!r}, not an integer"
            ) from None
    base = load_bank(into) if into is not None else None
    model = _text_model(_training_banks(train, into), cache_dir)
    ids = list(texts)
    pred = model.predict(list(texts.values()), ks, bank=base.name if base else None)
    bank = predicted_items_bank(
        name or (base.name if base else folder.resolve().name),
        ids,
        ks,
        pred,
        model.describe(),
        into=base,
    )
    path = bank.save(folder)
    return {
        "bank": str(path),
        "n_items": len(ids),
        "into": str(into) if into else None,
        "scale": base.name if base else "new bank (offset unknown: in the SDs)",
        "mean_sd_log_a": float(pred.log_a_sd.mean()),
        "mean_sd_b_mean": float(pred.b_mean_sd.mean()),
        "model": model.describe(),
    }


def update_bank(
    bank: PathLike,
    responses: PathLike,
    out: PathLike,
    *,
    items: PathLike | None = None,
    k_column: str | None = None,
    text_prior: bool = True,
    train: Sequence[PathLike] | None = None,
    inflate: float = 1.0,
    calibrated_se: float | None = None,
    cache_dir: PathLike | None = None,
    force: bool = False,
    progress: Callable[[IterationInfo], None] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Re-estimate ``bank`` on new responses, its parameters as priors (``calibrate --update``).

    New items in the responses get a text-predicted prior when the bank folder's
    ``items.csv`` has their text (and ``text_prior``), else the global default prior.
    Provenance gains one entry in ``calibration.updates``; items move from
    provisional to calibrated by the stated rule.

    Args:
        items: Item metadata CSV (column ``item``) giving K of new items.
        inflate: Multiplies the prior SDs taken from the bank.
        calibrated_se: SE bound of the status rule (default 0.5).
        out: Bank folder to write (may be the bank's own folder with ``force``).

    Raises:
        ConfigError, DataError, BankError, PrerequisiteError.
    """
    from orchestrator.coldstart.text import read_item_texts
    from orchestrator.coldstart.update import CALIBRATED_SE
    from orchestrator.coldstart.update import update_bank as _update

    folder = Path(out)
    if (folder / BANK_FILENAME).exists() and not force:
        raise ConfigError(
            f"{folder / BANK_FILENAME} already exists",
            hint="pass --force to overwrite it (e.g. to update the bank in place)",
        )
    check_writable_dir(folder, "--out")
    old = load_bank(bank)
    resp = read_responses(responses)
    n_categories: dict[str, int] = {}
    if items is not None:
        table = read_item_table(items)
        ks = table.n_categories(resp, k_column)
        if ks is not None:
            n_categories = dict(zip(resp.items, (int(k) for k in ks), strict=True))
    new_ids = [i for i in resp.items if i not in old.index]
    predicted = None
    assert old.path is not None
    text_file = old.path / "items.csv"
    if text_prior and new_ids and text_file.exists():
        texts = read_item_texts(text_file)
        with_text = [i for i in new_ids if i in texts]
        if with_text:
            model = _text_model(_training_banks(train, old.path), cache_dir)
            ks = [n_categories.get(i, int(old.n_categories.max())) for i in with_text]
            pred = model.predict([texts[i] for i in with_text], ks, bank=old.name)
            predicted = (with_text, pred)
    new_bank, summary = _update(
        old,
        resp,
        n_categories=n_categories,
        predicted=predicted,
        inflate=inflate,
        calibrated_se=CALIBRATED_SE if calibrated_se is None else calibrated_se,
        source=str(responses),
        source_sha256=sha256_file(responses),
        calibrator_args={"device": device, "progress": progress},
    )
    path = new_bank.save(folder)
    return {"path": str(path), "text_prior_items": len(predicted[0]) if predicted else 0, **summary}
