"""The session loop over a real SQLite journal and the real CAT controller.

The runner here answers from a fixed response table in-process (the loop's only
dependency is the ItemRunner role); the Docker + Inspect + HTTP path is covered
end to end in test_live.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bank import ItemBank
from orchestrator.cat.controller import CatController
from orchestrator.config import RunConfig
from orchestrator.errors import SessionError
from orchestrator.irt import sample_responses
from orchestrator.runner.result import ItemResult, RunRequest
from orchestrator.session.session import Session, is_setup_fault
from tests.conftest import make_bank


class Crash(BaseException):
    """Stands in for the process dying mid-run (nothing after it runs)."""


@dataclass
class TableRunner:
    scores: dict[str, int]
    crash_at_call: int | None = None
    fail: dict[str, int] = field(default_factory=dict)  # item -> number of failures before success
    calls: list[RunRequest] = field(default_factory=list)
    fail_kind: str = "model_api"
    fail_message: str = "HTTP 500"

    async def run(self, request: RunRequest) -> ItemResult:
        self.calls.append(request)
        if self.crash_at_call is not None and len(self.calls) == self.crash_at_call:
            raise Crash
        await asyncio.sleep(0)
        if self.fail.get(request.item_id, 0) > 0:
            self.fail[request.item_id] -= 1
            return ItemResult(
                request.item_id,
                error_kind=self.fail_kind,  # type: ignore[arg-type]
                error_message=self.fail_message,
            )
        return ItemResult(
            request.item_id, score=self.scores[request.item_id], wall_s=1.0, total_tokens=100
        )


def _setup(
    tmp_path: Path, theta: float = 0.7, max_consecutive: int = 3, **cat: object
) -> tuple[RunConfig, dict[str, int]]:
    base = make_bank(80, 4, seed=5)
    items = [
        {**it.model_dump(), "source": {"kind": "scenario", "family": "f", "variant": it.id}}
        for it in base.spec.items
    ]
    bank = ItemBank(
        base.spec.model_copy(update={"items": [type(base.spec.items[0])(**i) for i in items]})
    )
    bank.save(tmp_path / "bank")
    x = sample_responses(np.array([theta]), bank.a, bank.b, np.random.default_rng(9))[0]
    scores = {iid: int(x[i]) for i, iid in enumerate(bank.ids)}
    cfg = RunConfig.model_validate(
        {
            "bank": str(tmp_path / "bank"),
            "models": [{"model": "openai-api/sim/theta_0.7"}],
            "runs_dir": str(tmp_path / "runs"),
            "cat": {"stopping": [{"rule": "se", "args": {"se": 0.35, "max_items": 40}}], **cat},
            "retry": {"max_attempts": 2, "max_consecutive_errors": max_consecutive},
        }
    )
    return cfg, scores


def _direct(cfg: RunConfig, scores: dict[str, int]) -> CatController:
    """The same test driven by hand, no journal."""
    s = Session.start(cfg, cfg.models[0], "reference")
    c = s.controller
    while not c.should_stop().stop:
        (item,) = c.next_items(cfg.cat.batch_size)
        c.record(item, scores[item], cost_seconds=1.0, tokens=100)
    return c


def test_session_runs_to_the_se_rule_and_journals_every_step(tmp_path: Path) -> None:
    cfg, scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], "s1")
    status = asyncio.run(session.drive(TableRunner(scores)))
    assert status == "completed"
    again = Session.open(session.folder)
    rows = again.journal.steps()
    assert [r.step for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.status == "done" for r in rows)
    assert again.controller.se <= 0.35 < rows[-2].se
    assert again.journal.session().status_reason
    ref = _direct(cfg, scores)
    assert again.controller.administered == ref.administered
    assert again.controller.theta == ref.theta


@pytest.mark.parametrize("crash_at", [1, 2, 5, 9])
def test_crash_and_resume_gives_the_uninterrupted_result(tmp_path: Path, crash_at: int) -> None:
    cfg, scores = _setup(tmp_path, selection={"rule": "max_info", "args": {"randomesque": 3}})
    session = Session.start(cfg, cfg.models[0], "s1")
    with pytest.raises(Crash):
        asyncio.run(session.drive(TableRunner(scores, crash_at_call=crash_at)))
    resumed = Session.open(session.folder)
    runner = TableRunner(scores)
    assert asyncio.run(resumed.drive(runner)) == "completed"
    assert runner.calls[0].step == crash_at and runner.calls[0].attempt == 2  # re-run once
    rows = resumed.journal.steps()
    done = [r for r in rows if r.status == "done"]
    assert [r.step for r in done] == list(range(1, len(done) + 1))  # none lost or duplicated
    assert [r.status for r in rows if r.step == crash_at] == ["interrupted", "done"]
    ref = _direct(cfg, scores)
    assert resumed.controller.administered == ref.administered
    assert resumed.controller.theta == ref.theta and resumed.controller.se == ref.se


@pytest.mark.parametrize("batch_size", [1, 3])
def test_naming_the_likely_next_item_changes_no_pick_and_no_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    """Each run request names the item the CAT will likely pick next (the batch it would
    add with this one in flight), for the runner's next sandbox; a session that names
    them picks, journals and resumes exactly as one that does not (randomesque draws:
    the guess must not advance the random stream). The guess is often the real pick."""
    cfg, scores = _setup(
        tmp_path,
        batch_size=batch_size,
        selection={"rule": "max_info", "args": {"randomesque": 3}},
        person_fit={"enabled": False},  # (its null for batches takes a minute to simulate)
    )
    named = Session.start(cfg, cfg.models[0], "named")
    runner = TableRunner(scores)
    assert asyncio.run(named.drive(runner)) == "completed"
    with monkeypatch.context() as m:
        m.setattr(CatController, "likely_next", lambda self, pending, k=1: [])
        silent = Session.start(cfg, cfg.models[0], "silent")
        quiet = TableRunner(scores)
        assert asyncio.run(silent.drive(quiet)) == "completed"
    assert all(c.next_item is None for c in quiet.calls)

    def journal(s: Session) -> list[tuple[object, ...]]:
        return [(r.step, r.attempt, r.item_id, r.status, r.score, r.theta, r.se) for r in
                s.journal.steps()]  # fmt: skip

    assert journal(named) == journal(silent)
    assert named.journal.controller_state() == silent.journal.controller_state()
    items = [c.item_id for c in runner.calls]
    hints = [c.next_item for c in runner.calls]
    assert all(h is not None and h not in items[: i + 1] for i, h in enumerate(hints[:-1]))
    # step n's guess against what step n + batch_size really ran
    right = [h == items[i + batch_size] for i, h in enumerate(hints[:-batch_size])]
    assert sum(right) >= len(right) / 3


def test_errored_runs_are_retried_then_skipped_never_scored(tmp_path: Path) -> None:
    cfg, scores = _setup(tmp_path)
    first = Session.start(cfg, cfg.models[0], "probe").controller.next_items(1)[0]
    runner = TableRunner(scores, fail={first: 5})
    session = Session.start(cfg, cfg.models[0], "s1")
    assert asyncio.run(session.drive(runner)) == "completed"
    rows = session.journal.steps()
    first_rows = [r for r in rows if r.item_id == first]
    assert [r.status for r in first_rows] == ["error", "skipped"]
    assert all(r.score is None for r in first_rows)
    assert first not in session.controller.administered
    assert first in session.controller.unavailable


def _batch_setup(
    tmp_path: Path, max_consecutive: int
) -> tuple[RunConfig, dict[str, int], list[str]]:
    cfg, scores = _setup(
        tmp_path,
        max_consecutive=max_consecutive,
        batch_size=3,
        selection={"rule": "max_info", "args": {"randomesque": 3}},
    )
    first_batch = Session.start(cfg, cfg.models[0], "probe").controller.next_items(3)
    return cfg, scores, first_batch


def _reference(cfg: RunConfig, scores: dict[str, int], fail: dict[str, int]) -> Session:
    """The same batched session run without interruption or pause."""
    doc = cfg.model_dump(mode="json")
    doc["retry"]["max_consecutive_errors"] = 100
    doc["runs_dir"] = str(cfg.runs_dir / "reference")
    ref_cfg = RunConfig.model_validate(doc)
    ref = Session.start(ref_cfg, ref_cfg.models[0], "ref")
    assert asyncio.run(ref.drive(TableRunner(scores, fail=dict(fail)))) == "completed"
    return ref


def test_batch_paused_after_a_give_up_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    cfg, scores, (_x0, x1, x2) = _batch_setup(tmp_path, max_consecutive=4)
    fail = {x1: 2, x2: 9}  # x1 exhausts its 2 attempts, then x2's 4th error in a row pauses
    session = Session.start(cfg, cfg.models[0], "s1")
    assert asyncio.run(session.drive(TableRunner(scores, fail=dict(fail)))) == "paused"
    resumed = Session.open(session.folder)
    runner = TableRunner(scores)
    assert asyncio.run(resumed.drive(runner)) == "completed"
    assert {x1, x2}.isdisjoint(c.item_id for c in runner.calls)  # exhausted: not re-run
    rows = resumed.journal.steps()
    assert [r.status for r in rows if r.item_id == x1] == ["error", "skipped"]
    assert {x1, x2} <= set(resumed.controller.unavailable)
    ref = _reference(cfg, scores, fail)
    assert resumed.controller.administered == ref.controller.administered
    assert resumed.controller.theta == ref.controller.theta


def test_crash_before_a_batch_commits_resumes_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, scores, (_x0, x1, _x2) = _batch_setup(tmp_path, max_consecutive=3)
    fail = {x1: 5}
    real_apply = Session._apply

    def dies_once(self: Session, slots: list, emit: object) -> None:
        monkeypatch.setattr(Session, "_apply", real_apply)
        raise Crash  # x1 given up and x0, x2 scored, none of it committed yet

    monkeypatch.setattr(Session, "_apply", dies_once)
    session = Session.start(cfg, cfg.models[0], "s1")
    with pytest.raises(Crash):
        asyncio.run(session.drive(TableRunner(scores, fail=dict(fail))))
    assert Session.open(session.folder).journal.session().n_items == 0
    resumed = Session.open(session.folder)
    runner = TableRunner(scores)
    assert asyncio.run(resumed.drive(runner)) == "completed"
    assert [c.step for c in runner.calls[:1]] == [4]  # the first batch is not run again
    ref = _reference(cfg, scores, fail)
    assert resumed.controller.administered == ref.controller.administered
    assert resumed.controller.theta == ref.controller.theta
    assert resumed.controller.se == ref.controller.se


def _with_retry(cfg: RunConfig, **retry: object) -> RunConfig:
    doc = cfg.model_dump(mode="json")
    doc["retry"].update(retry)
    return RunConfig.model_validate(doc)


def test_a_setup_fault_pauses_at_once_and_charges_no_attempt(tmp_path: Path) -> None:
    """With one attempt per item, a charged fault would give the item up; a set-up fault
    (e.g. the key was revoked) pauses instead, and the resumed session ends exactly where
    an uninterrupted one does."""
    cfg, scores = _setup(tmp_path)
    cfg = _with_retry(cfg, max_attempts=1)
    ref = _direct(cfg, scores)
    third = ref.administered[2]
    session = Session.start(cfg, cfg.models[0], "s1")
    runner = TableRunner(scores, fail={third: 1}, fail_kind="setup", fail_message="401 rejected")
    assert asyncio.run(session.drive(runner)) == "paused"
    assert "no item is charged" in session.journal.session().status_reason
    rows = session.journal.steps()
    assert [(r.step, r.status, r.error_kind) for r in rows if r.status != "done"] == [
        (3, "error", "setup")
    ]
    assert third not in session.controller.unavailable
    resumed = Session.open(session.folder)
    assert asyncio.run(resumed.drive(TableRunner(scores))) == "completed"
    step3 = [(r.attempt, r.status) for r in resumed.journal.steps() if r.step == 3]
    assert step3 == [(1, "error"), (2, "done")]
    assert resumed.controller.administered == ref.administered
    assert resumed.controller.theta == ref.theta and resumed.controller.se == ref.se


def test_resume_reoffers_an_item_given_up_for_auth_failures(tmp_path: Path) -> None:
    """A journal where a rejected key gave an item up (older versions charged it as
    model_api): resuming with a valid key makes the item available again."""
    cfg, scores = _setup(tmp_path)
    first = Session.start(cfg, cfg.models[0], "probe").controller.next_items(1)[0]
    session = Session.start(cfg, cfg.models[0], "s1")
    runner = TableRunner(
        scores,
        fail={first: 2},
        fail_message="Error code: 401 - Incorrect API key provided",
        crash_at_call=6,
    )
    with pytest.raises(Crash):
        asyncio.run(session.drive(runner))
    assert [r.status for r in session.journal.steps() if r.item_id == first] == [
        "error",
        "skipped",
    ]
    assert first in Session.open(session.folder).controller.unavailable
    resumed = Session.open(session.folder)
    assert asyncio.run(resumed.drive(TableRunner(scores))) == "completed"
    assert first not in resumed.controller.unavailable


def test_only_endpoint_kinds_of_older_journals_are_rejudged_as_setup() -> None:
    """A sandbox or scorer message may quote what a probe saw (the agent's words):
    resume must not turn such a charged fault into an uncharged set-up fault."""
    assert is_setup_fault("setup", None)
    assert is_setup_fault("model_api", "Error code: 401 - Incorrect API key provided")
    assert not is_setup_fault("sandbox", "step 2 exited 1: Temporary failure in name resolution")
    assert not is_setup_fault("scorer", "score NotFoundError gives 3")
    assert not is_setup_fault(None, "Error code: 401")


def test_consecutive_errors_pause_and_resume_continues(tmp_path: Path) -> None:
    cfg, scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], "s1")
    broken = TableRunner(scores, fail=dict.fromkeys(scores, 2))
    assert asyncio.run(session.drive(broken)) == "paused"
    assert "3 errored runs in a row" in session.journal.session().status_reason
    resumed = Session.open(session.folder)
    assert asyncio.run(resumed.drive(TableRunner(scores))) == "completed"
    assert all(r.score is None for r in resumed.journal.steps() if r.status == "error")


def test_a_second_driver_is_refused(tmp_path: Path) -> None:
    cfg, scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], "s1")

    async def both() -> None:
        running, release = asyncio.Event(), asyncio.Event()

        class Held(TableRunner):
            """Holds its first run open until the second driver has been refused."""

            async def run(self, request: RunRequest) -> ItemResult:
                running.set()
                await release.wait()
                return await super().run(request)

        first = asyncio.create_task(session.drive(Held(scores)))
        await running.wait()  # the first driver holds the session and is mid-run
        other = Session.open(session.folder)
        with pytest.raises(SessionError, match="being run by another process"):
            await other.drive(TableRunner(scores))
        release.set()
        assert await first == "completed"  # the first driver is undisturbed

    asyncio.run(both())


def test_changed_bank_refuses_to_resume(tmp_path: Path) -> None:
    cfg, _scores = _setup(tmp_path)
    session = Session.start(cfg, cfg.models[0], "s1")
    text = (tmp_path / "bank" / "bank.json").read_text().replace('"version": "1"', '"version": "2"')
    (tmp_path / "bank" / "bank.json").write_text(text)
    with pytest.raises(SessionError, match="changed since session 's1' started"):
        Session.open(session.folder)
