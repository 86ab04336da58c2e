"""A session: one model × one bank × one config, driven step by step through the journal.

The loop per step: ask the controller whether to stop; select the next item(s);
journal them as ``started``; run them (the runner classifies faults); journal
each outcome (``scored`` or ``error``); apply the graded ones to the controller
in step order and journal the controller's new state in the same transaction;
repeat. Errored runs are retried up to ``retry.max_attempts`` and then skipped
(the item is marked unavailable) or the session pauses. A ``setup`` fault (the
endpoint or the set-up is wrong: rejected key, unknown model, refused
connection, missing path) says nothing about the item: it pauses the session
at once and is never charged to the item, and resume re-offers items that
were given up for such faults (journals of older versions classed them as
``model_api``; their messages still tell).

A batch (``cat.batch_size`` items) is committed in one transaction: its graded
steps, its given-up items and the controller state that absorbed both. Resume
re-selects the interrupted batch from the journalled controller state (the same
random stream gives the same items), applies results that were already
``scored``, gives up items whose attempts were already exhausted, and re-runs
only what was in flight, so a resumed session ends exactly where an
uninterrupted one would for the same responses.

Each run request also names the item the controller will likely pick next
(``RunRequest.next_item``), so the runner readies its sandbox while this one
runs; the guess draws from a copy of the random stream and changes no pick.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator._io import atomic_write_bytes, sha256_file
from orchestrator._secrets import scrub
from orchestrator._validation import parse_model
from orchestrator.bank import BANK_FILENAME, ItemBank, load_bank
from orchestrator.cat.controller import CatController
from orchestrator.config import CatSettings, ModelSpec, RunConfig
from orchestrator.errors import BankError, NoItemsAvailableError, SessionError
from orchestrator.runner.inspect_run import classify_error
from orchestrator.runner.result import ItemResult, ItemRunner, RunRequest
from orchestrator.session.journal import JOURNAL_FILENAME, Journal, SessionRow, StepRow

__all__ = ["Session", "SessionEvent", "find_session", "journal_bank", "new_session_id"]

EventHandler = Callable[["SessionEvent"], None]


@dataclass(frozen=True)
class SessionEvent:
    """Progress of a session, for progress bars and logs.

    ``theta`` and ``se`` are the first dimension's; for a bank of several
    dimensions ``by_dimension`` maps each dimension's name to its (θ, SE).
    """

    session_id: str
    kind: str  # "step" | "error" | "skip" | "stop" | "pause" | "resume"
    step: int = 0
    item_id: str | None = None
    score: int | None = None
    theta: float | None = None
    se: float | None = None
    n_items: int = 0
    message: str | None = None
    by_dimension: dict[str, tuple[float, float]] | None = None


def new_session_id(label: str) -> str:
    """``<UTC time>-<model label>``, safe as a folder name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")[:48] or "model"
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{slug}"


def find_session(session: str | Path, runs_dir: Path) -> Path:
    """A session id (under ``runs_dir``) or a path to its folder/journal → its folder."""
    p = Path(session)
    for candidate in (p, runs_dir / str(session)):
        if (candidate / JOURNAL_FILENAME).is_file():
            return candidate
        if candidate.name == JOURNAL_FILENAME and candidate.is_file():
            return candidate.parent
    raise SessionError(
        f"no session {str(session)!r} under {runs_dir}",
        hint="`agentcat sessions --runs-dir DIR` lists them",
    )


_REJUDGED_KINDS = ("model_api", "internal")
"""Kinds an older journal (before the ``setup`` kind) may have given a set-up fault.
Only these are re-read from their message: a ``sandbox`` or ``scorer`` message can
quote what a probe saw in the sandbox, which the agent controls, and the live run
judged it with its traceback, which the journal does not keep."""


def is_setup_fault(error_kind: str | None, error_message: str | None) -> bool:
    """Whether an errored run failed for the endpoint or the set-up, not for its item."""
    if error_kind == "setup":
        return True
    return error_kind in _REJUDGED_KINDS and classify_error(error_message or "") == "setup"


def journal_bank(row: SessionRow, folder: Path, *, prefer_copy: bool = False) -> ItemBank:
    """The bank a session started with: its journalled path, else the copy in its folder.

    A bank changed at its journalled path is an error (resume must not silently
    measure on another scale) unless ``prefer_copy``: then the session folder's
    copy, checked against the journalled hash, is tried first (for reading a result).

    Raises:
        SessionError: no bank with the journalled hash is found.
    """
    stored = Path(row.bank_path)
    changed = SessionError(
        f"bank {row.bank_path} changed since session {row.id!r} started",
        hint="resume with the bank it started with; a changed bank changes θ's scale",
    )
    for candidate in (folder, stored) if prefer_copy else (stored, folder):
        file = candidate / BANK_FILENAME
        if not file.is_file():
            continue
        if sha256_file(file) == row.bank_sha256:
            try:
                return load_bank(candidate)
            except BankError as exc:
                raise SessionError(f"session {row.id!r}: {exc.message}") from None
        if candidate == stored:
            raise changed
    raise SessionError(
        f"session {row.id!r}: bank {row.bank_path} is not there and {folder} holds no copy of it",
        hint="put the bank back where it was, or copy its bank.json into the session folder",
    )


def _stopping_spec(cat: CatSettings) -> dict[str, Any]:
    rules = [{"rule": r.rule, "args": dict(r.args)} for r in cat.stopping]
    return rules[0] if len(rules) == 1 else {"rule": "any_of", "args": {"rules": rules}}


def config_for_journal(config: RunConfig, model: ModelSpec) -> dict[str, Any]:
    """The config as stored in the journal: one model, no secrets (``api_key`` is excluded)."""
    doc = config.model_dump(mode="json")
    doc["models"] = [model.model_dump(mode="json")]
    return doc


@dataclass
class _Slot:
    step: int
    item_id: str
    attempt: int
    result: ItemResult | None = None
    errors: int = 0
    skip_reason: str | None = None  # attempts exhausted: given up when the batch commits

    def give_up(self, error_kind: str | None) -> None:
        """The item's attempts are exhausted: it is skipped when its batch commits."""
        self.skip_reason = f"{error_kind} after {self.errors} attempt(s)"


@dataclass
class Session:
    """A live session bound to its journal. Create with :meth:`start` or :meth:`open`."""

    journal: Journal
    bank: ItemBank
    config: RunConfig
    model: ModelSpec
    controller: CatController
    folder: Path
    _consecutive_errors: int = field(default=0, init=False)

    @property
    def id(self) -> str:
        return self.journal.session().id

    @property
    def key(self) -> str:
        """Unique key of this session (its id and creation time): session ids repeat
        across runs folders, sandbox labels must not."""
        row = self.journal.session()
        return hashlib.sha256(f"{row.id}\0{row.created!r}".encode()).hexdigest()[:16]

    @property
    def log_dir(self) -> Path:
        return self.folder / "logs"

    # -- construction ---------------------------------------------------------
    @classmethod
    def start(
        cls,
        config: RunConfig,
        model: ModelSpec,
        session_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Session:
        """Create a new session folder ``runs_dir/<id>`` with a fresh journal.

        The journal holds absolute bank and environment paths, and the folder a copy
        of the bank, so ``show`` and ``resume`` work from any directory.
        """
        config = config.model_copy(
            update={"bank": config.bank.resolve(), "environments": config.environments.resolve()}
        )
        bank = load_bank(config.bank)
        sid = session_id or config.session_id or new_session_id(model.label)
        controller = CatController(
            bank,
            selection={"rule": config.cat.selection.rule, "args": dict(config.cat.selection.args)},
            stopping=_stopping_spec(config.cat),
            rng=config.cat.seed,
            lapse=config.cat.lapse,
            # person fit is one-dimensional: on by default, so off for a D > 1 bank
            person_fit=(
                config.cat.person_fit.for_controller(config.cat.batch_size)
                if bank.n_dims == 1
                else None
            ),
        )
        folder = config.runs_dir / sid
        bank_bytes = ((bank.path or config.bank) / BANK_FILENAME).read_bytes()
        journal = Journal.create(
            folder,
            session_id=sid,
            model=model.model,
            model_label=model.label,
            bank_path=str(config.bank),
            bank_name=bank.name,
            bank_sha256=hashlib.sha256(bank_bytes).hexdigest(),
            config=config_for_journal(config, model),
            controller=controller.to_dict(),
            meta=meta,
        )
        atomic_write_bytes(folder / BANK_FILENAME, bank_bytes)
        return cls(journal, bank, config, model, controller, folder)

    @classmethod
    def open(cls, folder: Path, *, api_key: Any = None, base_url: str | None = None) -> Session:
        """Reopen a journalled session (bank re-validated against the journalled hash).

        ``api_key`` and ``base_url`` replace the journalled model's (a key is never
        journalled; a demo's simulated agent comes back on another port).
        """
        journal = Journal.open(folder)
        try:
            row = journal.session()
            stored = journal.config()
            models = stored.get("models")
            if not (isinstance(models, list) and models and isinstance(models[0], dict)):
                raise SessionError(
                    f"{journal.path}: the journalled config has no model (edited or damaged)",
                    hint="restore the journal from a backup, or start a new session",
                )
            if api_key is not None:
                models[0]["api_key"] = api_key
            if base_url is not None:
                models[0]["base_url"] = base_url
            config = parse_model(RunConfig, stored, f"{journal.path} (config_json)", SessionError)
            bank = journal_bank(row, Path(folder))
            try:
                controller = CatController.from_dict(journal.controller_state(), bank)
            except (AttributeError, IndexError, OverflowError) as exc:  # the rest: from_dict
                raise SessionError(
                    f"{journal.path}: the journalled controller state is malformed "
                    f"({type(exc).__name__}: {exc})",
                    hint="restore the journal from a backup, or start a new session",
                ) from None
        except BaseException:
            journal.close()
            raise
        return cls(journal, bank, config, config.models[0], controller, Path(folder))

    # -- driving --------------------------------------------------------------
    async def drive(self, runner: ItemRunner, on_event: EventHandler | None = None) -> str:
        """Run until a stopping rule fires (or the session pauses); returns the final status.

        Raises:
            SessionError: another process drives this session.
        """
        emit = on_event or (lambda _e: None)
        self.journal.lock()
        try:
            status = self.journal.session().status
            if status == "completed":
                return status
            self.journal.set_status("running")
            prepare = getattr(runner, "prepare", None)
            if prepare is not None:  # e.g. remove sandboxes a killed driver left behind
                await prepare(self.key)
            self._skip_unrunnable(getattr(runner, "runnable", None))
            pending = self._recover()
            if pending:
                emit(self._event("resume", message=f"re-running {len(pending)} interrupted run(s)"))
            while True:
                slots = pending or self._select()
                pending = []
                if slots is None:
                    return "completed"
                outcome = await self._run_batch(slots, runner, emit)
                if outcome != "ok":
                    return outcome
        finally:
            self.journal.unlock()

    def _skip_unrunnable(self, runnable: Collection[str] | None) -> None:
        """Items the runner cannot run (a bank item with no live source) are never selected."""
        if runnable is None:
            return
        known = self.controller.unavailable
        for iid in self.bank.ids:
            if iid not in runnable and iid not in known:
                self.controller.mark_unavailable(iid, "no live source")

    def _select(self) -> list[_Slot] | None:
        """Next batch of slots, or None after journalling the stop."""
        decision = self.controller.should_stop()
        if not decision.stop:
            try:
                items = self.controller.next_items(self.config.cat.batch_size)
            except NoItemsAvailableError as exc:
                decision = type(decision)(True, exc.message)
        if decision.stop:
            fit = self.controller.person_fit()
            flag = None if fit is None else fit.message()
            reason = decision.reason if flag is None else f"{decision.reason}; {flag}"
            self.journal.set_status("completed", reason)
            return None
        first = self._next_step()
        slots = [_Slot(first + i, item, 1) for i, item in enumerate(items)]
        for s in slots:
            self.journal.begin_step(s.step, s.attempt, s.item_id)
        return slots

    def _next_step(self) -> int:
        steps = self.journal.steps()
        return (max(s.step for s in steps) + 1) if steps else 1

    def _recover(self) -> list[_Slot]:
        """Bring the journal back to a consistent point after a crash; returns runs to redo."""
        self.journal.mark_interrupted()
        rows = self.journal.steps()
        resolved = {r.step for r in rows if r.status in ("done", "skipped")}
        retry = self.config.retry
        open_steps: dict[int, list[StepRow]] = {}
        for r in rows:
            if r.step not in resolved:
                open_steps.setdefault(r.step, []).append(r)
        if not open_steps:
            self._reoffer(rows)
            return []
        # Re-select the interrupted batch so the controller's random stream advances
        # exactly as it did the first time; it must be the same batch.
        batch_items = [rs[0].item_id for _, rs in sorted(open_steps.items())]
        reselected = self.controller.next_items(len(batch_items))
        if reselected != batch_items:
            raise SessionError(
                f"session {self.id!r}: resuming re-selects {reselected} but the journal has "
                f"{batch_items} in flight; the bank or the rules changed since it started",
            )
        slots: list[_Slot] = []
        for step, rs in sorted(open_steps.items()):
            last = rs[-1]
            slot = _Slot(step, last.item_id, last.attempt)
            slot.errors = sum(
                1
                for r in rs
                if r.status == "error" and not is_setup_fault(r.error_kind, r.error_message)
            )
            if last.status == "scored":
                slot.result = _result_from_row(last)
            elif (
                last.status == "error"
                and not is_setup_fault(last.error_kind, last.error_message)
                and retry.on_exhausted == "skip"
                and slot.errors >= retry.max_attempts
            ):
                slot.give_up(last.error_kind)
            else:  # error or interrupted: run again as a new attempt
                slot.attempt = last.attempt + 1
                self.journal.begin_step(slot.step, slot.attempt, slot.item_id)
            slots.append(slot)
        self._reoffer(rows)
        return slots

    def _reoffer(self, rows: list[StepRow]) -> None:
        """Make items available again whose last give-up was for setup faults only (after
        the interrupted batch is re-selected, so its random stream is unchanged)."""
        unavailable = self.controller.unavailable
        last_skip: dict[str, int] = {}
        for r in rows:
            if r.status == "skipped":
                last_skip[r.item_id] = r.step
        for item, step in last_skip.items():
            errors = [r for r in rows if r.step == step and r.status in ("error", "skipped")]
            if item in unavailable and all(
                is_setup_fault(r.error_kind, r.error_message) for r in errors
            ):
                self.controller.mark_available(item)

    async def _run_batch(self, slots: list[_Slot], runner: ItemRunner, emit: EventHandler) -> str:
        retry = self.config.retry
        key = self.key
        todo = [s for s in slots if s.result is None and s.skip_reason is None]
        following = self._likely_next(slots)
        while todo:
            results = await asyncio.gather(
                *(
                    runner.run(
                        RunRequest(
                            self.id, s.item_id, s.step, s.attempt, key, following.get(s.step)
                        )
                    )
                    for s in todo
                )
            )
            again: list[_Slot] = []
            setup_fault: ItemResult | None = None
            for slot, res in zip(todo, results, strict=True):
                if res.ok:
                    self._consecutive_errors = 0
                    self.journal.record_result(slot.step, slot.attempt, **res.journal_fields())
                    slot.result = res
                    continue
                if res.error_kind == "setup":  # not the item's doing: no attempt charged
                    self.journal.record_error(slot.step, slot.attempt, **res.journal_fields())
                    emit(
                        self._event(
                            "error",
                            step=slot.step,
                            item_id=slot.item_id,
                            message=f"setup: {res.error_message}",
                        )
                    )
                    setup_fault = res
                    continue
                self._consecutive_errors += 1
                slot.errors += 1
                self.journal.record_error(slot.step, slot.attempt, **res.journal_fields())
                emit(
                    self._event(
                        "error",
                        step=slot.step,
                        item_id=slot.item_id,
                        message=f"{res.error_kind}: {res.error_message}",
                    )
                )
                if self._consecutive_errors >= retry.max_consecutive_errors:
                    reason = (
                        f"{self._consecutive_errors} errored runs in a row; last: "
                        f"{res.error_kind}: {(res.error_message or '')[:200]}"
                    )
                    return self._pause(reason, emit)
                if slot.errors < retry.max_attempts:
                    slot.attempt += 1
                    self.journal.begin_step(slot.step, slot.attempt, slot.item_id)
                    again.append(slot)
                elif retry.on_exhausted == "pause":
                    return self._pause(
                        f"item {slot.item_id!r} failed {slot.errors} time(s): {res.error_kind}",
                        emit,
                    )
                else:
                    slot.give_up(res.error_kind)
                    emit(
                        self._event(
                            "skip",
                            step=slot.step,
                            item_id=slot.item_id,
                            message=f"skipped after {slot.errors} failed attempt(s)",
                        )
                    )
            if setup_fault is not None:
                return self._pause(
                    "the endpoint or the set-up failed (no item is charged): "
                    f"{(setup_fault.error_message or '')[:300]}; fix it, then "
                    f"`agentcat resume {self.id}`",
                    emit,
                )
            todo = again
        self._apply(slots, emit)
        return "ok"

    def _likely_next(self, slots: list[_Slot]) -> dict[int, str]:
        """Step → the item the controller will likely pick after this batch, one per slot
        (the batch it would pick with these items in flight): the runner readies its
        sandbox meanwhile. The controller's random stream is not touched
        (:meth:`CatController.likely_next`), so picks and resume stay exact."""
        guesses = self.controller.likely_next([s.item_id for s in slots], len(slots))
        return {s.step: item for s, item in zip(slots, guesses, strict=False)}

    def _apply(self, slots: list[_Slot], emit: EventHandler) -> None:
        """Record graded slots in step order and give up exhausted ones; journal it all
        with the new controller state in one transaction."""
        graded = [s for s in sorted(slots, key=lambda s: s.step) if s.result and s.result.ok]
        skipped = [s for s in slots if s.skip_reason is not None]
        for slot in skipped:
            self.controller.mark_unavailable(slot.item_id, slot.skip_reason)
        trajectory = []
        for slot in graded:
            res = slot.result
            assert res is not None and res.score is not None
            self.controller.record(
                slot.item_id, res.score, cost_seconds=res.wall_s, tokens=res.total_tokens
            )
            trajectory.append((*self._headline(), self._estimate(), self._by_dimension()))
        self.journal.apply_steps(
            [
                (s.step, s.attempt, th, se)
                for s, (th, se, _, _) in zip(graded, trajectory, strict=True)
            ],
            self.controller.to_dict(),
            *self._headline(),
            self.controller.n_items,
            skipped=[(s.step, s.attempt) for s in skipped],
            estimates=[est for _, _, est, _ in trajectory],
            estimate=self._estimate(),
        )
        for slot, (theta, se, _, by_dim) in zip(graded, trajectory, strict=True):
            score = slot.result.score if slot.result else None
            emit(
                self._event(
                    "step",
                    step=slot.step,
                    item_id=slot.item_id,
                    score=score,
                    theta=theta,
                    se=se,
                    by_dimension=by_dim,
                )
            )

    def _headline(self) -> tuple[float, float]:
        """θ and SE of the first dimension: the journal's number columns."""
        return float(self.controller.theta[0]), float(self.controller.se[0])

    def _estimate(self) -> dict[str, Any] | None:
        """Every dimension's θ and SE (bank of several dimensions; None for one)."""
        return self.controller.estimate() if self.bank.n_dims > 1 else None

    def _by_dimension(self) -> dict[str, tuple[float, float]] | None:
        if self.bank.n_dims == 1:
            return None
        ctl = self.controller
        return {
            n: (float(t), float(e))
            for n, t, e in zip(ctl.dimensions, ctl.theta, ctl.se, strict=True)
        }

    def _pause(self, reason: str, emit: EventHandler) -> str:
        self.journal.set_status("paused", reason)
        emit(self._event("pause", message=reason))
        return "paused"

    def _event(self, kind: str, **kw: Any) -> SessionEvent:
        if kw.get("message"):
            kw["message"] = scrub(kw["message"])
        theta, se = self._headline()
        base: dict[str, Any] = {
            "theta": theta,
            "se": se,
            "n_items": self.controller.n_items,
            "by_dimension": self._by_dimension(),
        }
        base.update(kw)
        return SessionEvent(session_id=self.id, kind=kind, **base)


def _result_from_row(row: StepRow) -> ItemResult:
    return ItemResult(
        item_id=row.item_id,
        score=row.score,
        label=row.label,
        explanation=row.explanation,
        wall_s=row.wall_s or 0.0,
        input_tokens=row.input_tokens or 0,
        output_tokens=row.output_tokens or 0,
        total_tokens=row.total_tokens or 0,
        cost_usd=row.cost_usd,
        log_path=row.log_path,
    )
