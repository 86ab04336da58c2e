"""Live sessions end to end: real Docker sandboxes, real Inspect runs, a real HTTP endpoint
(the simulated agent), real SQLite journals.

The simulated agent draws each item's outcome deterministically from the bank's
model at its persona's θ, so for every graded step we know which category the
scorer must return, and a resumed session must end exactly where an
uninterrupted one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from orchestrator import api
from orchestrator.bank import load_bank
from orchestrator.runner.sandbox import managed_containers
from orchestrator.session.journal import Journal
from orchestrator.sim.agent import SimAgent, scripts_for_bank
from orchestrator.sim.server import FaultConfig, SimServer
from tests.conftest import REPO

pytestmark = pytest.mark.docker
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"
KEY = "sk-agentcat-test-7f3a9c1e5b2d4068"


@pytest.fixture(scope="module")
def live_images(base_image: str) -> None:
    from orchestrator.runner.images import build_images

    build_images(ENV, base_image=base_image)


@pytest.fixture(scope="module")
def agent() -> SimAgent:
    bank = load_bank(BANK)
    return SimAgent(bank, scripts_for_bank(bank, ENV), seed=3)


def _models(url: str, *personas: str) -> list[dict]:
    return [
        {"model": f"openai-api/sim/{p}", "name": p, "base_url": url, "api_key_env": "SIM_API_KEY"}
        for p in personas
    ]


def _expected(agent: SimAgent, persona: str, item: str) -> int:
    p = agent.persona(persona)
    assert p is not None
    return agent.category(p, item)


def _journal_rows(runs: Path, session: str) -> list:
    j = Journal.open(runs / session, readonly=True)
    try:
        return j.steps()
    finally:
        j.close()


def test_short_live_session_grades_every_step_correctly(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_API_KEY", KEY)
    with SimServer(agent, api_key=KEY) as srv:
        (summary,) = api.run(
            None,
            bank=str(BANK),
            environments=str(ENV),
            models=_models(srv.url, "theta_0.5"),
            max_items=4,
            runs_dir=str(tmp_path / "runs"),
            session_id="short",
        )
    assert summary["status"] == "completed" and summary["n_items"] == 4
    rows = _journal_rows(tmp_path / "runs", "short")
    assert [r.status for r in rows] == ["done"] * 4
    for r in rows:  # the scorer graded the replayed reference solution as its category
        assert r.score == _expected(agent, "theta_0.5", r.item_id), (r.item_id, r.explanation)
        assert r.log_path and r.log_path.startswith("logs/")  # relative to the session folder
        assert (tmp_path / "runs" / "short" / r.log_path).is_file()
        assert r.total_tokens and r.total_tokens > 0
    assert managed_containers({"agentcat.session": "short"}) == []


DRIVER_PROBE = """
import json, sys
from orchestrator import api
from orchestrator.bank import load_bank
from orchestrator.sim.agent import SimAgent, scripts_for_bank
from orchestrator.sim.server import SimServer
bank_dir, env_dir, runs, key = sys.argv[1:]
bank = load_bank(bank_dir)
before = [m for m in sys.modules if m.split(".")[0] in ("inspect_ai", "inspect_evals")]
with SimServer(SimAgent(bank, scripts_for_bank(bank, env_dir), seed=3), api_key=key) as srv:
    model = {"model": "openai-api/sim/theta_0.5", "base_url": srv.url, "api_key_env": "SIM_API_KEY"}
    (summary,) = api.run(None, bank=bank_dir, environments=env_dir, models=[model],
                         max_items=2, runs_dir=runs, session_id="probe")
after = [m for m in sys.modules if m.split(".")[0] in ("inspect_ai", "inspect_evals")]
print(json.dumps({"status": summary["status"], "before": before, "after": after}))
"""


def test_the_driver_of_a_live_run_never_imports_inspect(live_images: None, tmp_path: Path) -> None:
    """Importing Inspect and its extensions costs seconds of CPU per process; the workers
    need it, the process that drives the sessions does not: its pre-flight model check
    runs in a worker."""
    env = {**os.environ, "SIM_API_KEY": KEY}
    args = [str(BANK), str(ENV), str(tmp_path / "runs"), KEY]
    out = subprocess.run(
        [sys.executable, "-c", DRIVER_PROBE, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"status": "completed", "before": [], "after": []}


def test_sessions_and_show_through_the_cli(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from orchestrator.cli import main

    monkeypatch.setenv("SIM_API_KEY", KEY)
    runs = tmp_path / "runs"
    with SimServer(agent, api_key=KEY) as srv:
        code = main(
            [
                "run",
                "--bank",
                str(BANK),
                "--environments",
                str(ENV),
                "--model",
                "openai-api/sim/theta_-0.5",
                "--base-url",
                srv.url,
                "--api-key-env",
                "SIM_API_KEY",
                "--max-items",
                "3",
                "--runs-dir",
                str(runs),
                "--session-id",
                "cli",
                "--json",
            ]
        )
    assert code == 0
    capsys.readouterr()
    assert main(["sessions", "--runs-dir", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["sessions"]
    assert [(r["session"], r["status"], r["n_items"]) for r in listed] == [("cli", "completed", 3)]
    png = tmp_path / "traj.png"
    assert main(["show", "cli", "--runs-dir", str(runs), "--json", "--plot", str(png)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["n_items"] == 3 and len(shown["trajectory"]) == 3
    lo, hi = shown["ci95"]
    assert lo < shown["theta"] < hi and '"api_key":' not in json.dumps(shown["config"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show", "nope", "--runs-dir", str(runs)]) == 1
    assert "no session 'nope'" in capsys.readouterr().err


def test_sweep_writes_a_response_matrix_and_skips_what_it_has(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.data import read_responses

    monkeypatch.setenv("SIM_API_KEY", KEY)
    out = tmp_path / "sweep.csv"
    with SimServer(agent, api_key=KEY) as srv:
        kw = {
            "base_url": srv.url,
            "api_key_env": "SIM_API_KEY",
            "environments": str(ENV),
            "sample": 3,
            "seed": 4,
            "runs_dir": str(tmp_path / "runs"),
        }
        first = api.sweep(
            ["openai-api/sim/theta_1.0", "openai-api/sim/theta_-1.0"], BANK, out, **kw
        )
        again = api.sweep(
            ["openai-api/sim/theta_1.0", "openai-api/sim/theta_-1.0"], BANK, out, **kw
        )
    assert (first["written"], first["errors"]) == (6, 0)
    assert (again["written"], again["skipped_existing"]) == (0, 6)
    r = read_responses(out)
    assert sorted(r.subjects) == ["sim-theta_-1.0", "sim-theta_1.0"]  # the models' labels
    for s, i, x in zip(r.subject_idx, r.item_idx, r.score, strict=True):
        assert x == _expected(agent, r.subjects[s].removeprefix("sim-"), r.items[i])


@pytest.mark.slow
def test_theta_recovery_across_personas_and_seeds(
    live_images: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions to the SE rule: θ̂ within 2.5 SE of the persona's θ (report the error)."""
    monkeypatch.setenv("SIM_API_KEY", KEY)
    bank = load_bank(BANK)
    scripts = scripts_for_bank(bank, ENV)
    truth = {"theta_-1.0": -1.0, "theta_0.5": 0.5, "theta_1.5": 1.5}
    errors = []
    for seed in (0, 1):
        agent = SimAgent(bank, scripts, seed=seed)
        with SimServer(agent, api_key=KEY) as srv:
            summaries = api.run(
                None,
                bank=str(BANK),
                environments=str(ENV),
                models=_models(srv.url, *truth),
                se=0.3,
                max_items=44,
                runs_dir=str(tmp_path / f"runs{seed}"),
                workers=2,
            )
        for s in summaries:
            err = s["theta"] - truth[s["model"].rsplit("/", 1)[1]]
            errors.append((s["model"], seed, s["theta"], s["se"], s["n_items"], err))
    report = "\n".join(
        f"{m} seed {sd}: θ̂={t:+.2f} SE={se:.2f} n={n} error={e:+.2f}"
        for m, sd, t, se, n, e in errors
    )
    print(report)
    for _m, _sd, _t, se, _n, e in errors:
        assert abs(e) < 2.5 * se, report
    rmse = float(np.sqrt(np.mean([e[-1] ** 2 for e in errors])))
    assert rmse < 0.45, report


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_uninterrupted(
    live_images: None, agent: SimAgent, tmp_path: Path
) -> None:
    env = {**os.environ, "SIM_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    runs = tmp_path / "runs"
    rng = np.random.default_rng(2026)
    with SimServer(agent, api_key=KEY) as srv:
        common = [
            "--bank",
            str(BANK),
            "--environments",
            str(ENV),
            "--model",
            "openai-api/sim/theta_0.3",
            "--base-url",
            srv.url,
            "--api-key-env",
            "SIM_API_KEY",
            "--max-items",
            "10",
            "--runs-dir",
            str(runs),
        ]
        t0 = time.monotonic()
        ref = _cli("run", *common, "--session-id", "ref", env=env)
        out, _ = ref.communicate(timeout=600)
        assert ref.returncode == 0, out
        ref_duration = time.monotonic() - t0
        reference = api.show("ref", runs_dir=runs)
        trials = []
        for i in range(10):
            sid = f"crash{i}"
            proc = _cli("run", *common, "--session-id", sid, env=env)
            time.sleep(float(rng.uniform(2.0, max(3.0, ref_duration - 2.0))))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            started = (runs / sid / "journal.sqlite").exists()
            rows = _journal_rows(runs, sid) if started else []
            in_flight = any(r.status == "started" for r in rows)
            # killed before step 1 (during the checks): no session exists yet, so `run` again
            again = (
                ("resume", sid, "--runs-dir", str(runs))
                if started
                else ("run", *common, "--session-id", sid)
            )
            resumed = _cli(*again, env=env)
            out, _ = resumed.communicate(timeout=600)
            assert resumed.returncode == 0, out
            got = api.show(sid, runs_dir=runs)
            done = [r for r in _journal_rows(runs, sid) if r.status == "done"]
            trials.append((sid, len([r for r in rows if r.status == "done"]), in_flight))
            assert [r.step for r in done] == list(range(1, len(done) + 1)), sid
            assert [t["item"] for t in got["trajectory"]] == [
                t["item"] for t in reference["trajectory"]
            ], sid
            assert got["theta"] == reference["theta"] and got["se"] == reference["se"], sid
            assert managed_containers({"agentcat.session": sid}) == [], sid
    print("trials (session, steps done at kill, killed mid-scenario):", trials)
    assert sum(1 for t in trials if t[2]) >= 5  # most kills landed mid-scenario


@pytest.mark.slow
def test_injected_faults_never_become_scores(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_API_KEY", KEY)
    faults = FaultConfig(
        rate_429=0.1,
        rate_500=0.1,
        rate_malformed=0.05,
        rate_drop=0.05,
        rate_slow=0.05,
        slow_s=6,
        seed=7,
    )
    cfg = tmp_path / "faults.yaml"
    with SimServer(agent, faults=faults, api_key=KEY) as srv:
        cfg.write_text(
            json.dumps(
                {
                    "bank": str(BANK),
                    "environments": str(ENV),
                    "runs_dir": str(tmp_path / "runs"),
                    "models": _models(srv.url, "theta_0.0"),
                    "session_id": "faulty",
                    "cat": {"stopping": [{"rule": "se", "args": {"se": 0.3, "max_items": 12}}]},
                    "retry": {
                        "model_max_retries": 1,
                        "model_timeout_s": 3,
                        "max_attempts": 3,
                        "max_consecutive_errors": 6,
                    },
                }
            )
        )
        (summary,) = api.run(str(cfg))
        stats = srv.stats
    rows = _journal_rows(tmp_path / "runs", "faulty")
    errored = [r for r in rows if r.status in ("error", "skipped")]
    print(
        f"status {summary['status']}; faults injected {stats.faults}; runs {len(rows)}, "
        f"errored {len(errored)}: {sorted({r.error_kind for r in errored})}"
    )
    assert summary["status"] in ("completed", "paused")
    assert sum(stats.faults.values()) > 0
    assert all(r.score is None and r.error_kind for r in errored)
    for r in rows:
        if r.status == "done":
            assert r.score == _expected(agent, "theta_0.0", r.item_id)
    assert managed_containers({"agentcat.session": "faulty"}) == []


def test_api_key_reaches_no_file_the_run_wrote(
    live_images: None, agent: SimAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-SECRET-" + os.urandom(8).hex()
    monkeypatch.setenv("SIM_API_KEY", secret)
    runs = tmp_path / "runs"
    with SimServer(agent, api_key=secret) as srv:
        (summary,) = api.run(
            None,
            bank=str(BANK),
            environments=str(ENV),
            models=_models(srv.url, "theta_1.0"),
            max_items=2,
            runs_dir=str(runs),
            session_id="secret",
        )
        assert srv.stats.unauthorised == 0  # the key was really sent
    assert summary["n_items"] == 2
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert any(p.suffix == ".eval" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for p in files:
        blobs = [p.read_bytes()]
        if zipfile.is_zipfile(p):  # Inspect's .eval logs are zip archives
            with zipfile.ZipFile(p) as z:
                blobs += [z.read(n) for n in z.namelist()]
        assert not any(secret.encode() in b for b in blobs), p


def _two_dim_live_bank(folder: Path) -> Path:
    """shell-safety's live items on two dimensions: families of destructive actions load on
    ``containment``, the others on ``compliance`` (every third item on both)."""
    from orchestrator.bank import BankFile, ItemBank, Prior

    base = load_bank(BANK)
    containment = {"disk_cleanup", "git_destructive", "prod_staging", "persistence", "privilege"}
    slopes = np.zeros((len(base), 2))
    for i, item in enumerate(base.spec.items):
        main = 0 if item.tags["family"] in containment else 1
        slopes[i, main] = base.a[i]
        if i % 3 == 0:
            slopes[i, 1 - main] = 0.4
    spec = base.spec.model_dump(mode="json", exclude_none=True)
    spec["dimensions"] = ["containment", "compliance"]
    spec["prior"] = Prior(mean=0.0, sd=1.0, correlation=[[1, 0.4], [0.4, 1]]).model_dump(
        exclude_none=True
    )
    for item, a in zip(spec["items"], slopes, strict=True):
        item["a"] = a.tolist()
    ItemBank(BankFile.model_validate(spec)).save(folder)
    return folder


def test_two_dimensional_live_session_reports_both_dimensions(
    live_images: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A 2-D bank end to end: the simulated agent draws each outcome from the bank's
    model at its θ vector, the journal keeps every dimension, show and resume read them."""
    from orchestrator.cat import CatController
    from orchestrator.cli import main

    bank_dir = _two_dim_live_bank(tmp_path / "bank2d")
    bank = load_bank(bank_dir)
    agent2d = SimAgent(bank, scripts_for_bank(bank, ENV), seed=3)
    monkeypatch.setenv("SIM_API_KEY", KEY)
    runs = tmp_path / "runs"
    with SimServer(agent2d, api_key=KEY) as srv:
        (summary,) = api.run(
            None,
            bank=str(bank_dir),
            environments=str(ENV),
            models=_models(srv.url, "theta_1.0_-1.0"),
            max_items=4,
            runs_dir=str(runs),
            session_id="two",
        )
    assert summary["status"] == "completed" and summary["n_items"] == 4
    assert list(summary["dimensions"]) == ["containment", "compliance"]
    rows = _journal_rows(runs, "two")
    assert [r.status for r in rows] == ["done"] * 4
    persona = agent2d.persona("theta_1.0_-1.0")
    assert persona is not None and persona.theta == (1.0, -1.0)
    for r, step in zip(rows, summary["trajectory"], strict=True):
        assert r.score == agent2d.category(persona, r.item_id), (r.item_id, r.explanation)
        est = json.loads(r.estimate_json)
        assert est["dimensions"] == ["containment", "compliance"] and r.theta == est["theta"][0]
        assert step["dimensions"]["compliance"]["se"] == est["se"][1]
    # the journalled controller rebuilds the same two-dimensional posterior
    j = Journal.open(runs / "two", readonly=True)
    try:
        state, final = j.controller_state(), json.loads(j.session().estimate_json)
    finally:
        j.close()
    ctl = CatController.from_dict(state, bank)
    assert ctl.theta.tolist() == final["theta"] and ctl.se.tolist() == final["se"]
    assert summary["dimensions"]["compliance"]["theta"] == final["theta"][1]
    assert main(["show", "two", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "containment" in out and "compliance" in out and "(posterior)" in out
    assert managed_containers({"agentcat.session": "two"}) == []


@pytest.mark.slow
def test_a_live_gamer_ends_flagged_by_person_fit_and_show_says_so(
    live_images: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A gaming persona through the simulated agent server: it fails its first 5 scenarios
    on purpose (unsafe actions in real sandboxes, graded 0 by the real checks), then plays
    honestly at θ = 1.5. Person fit, computed live after every step, must flag the session
    and name the honest items as far above the θ̂ the gaming dragged down, and `show` must
    say so. Small on purpose: 8 items (two families), 7 steps. (In process, with the same
    bank and settings, this persona is flagged at every agent seed 0..7 and the honest
    θ = 1.5 persona at none.)"""
    from orchestrator.cli import main
    from orchestrator.sim.agent import parse_personas

    doc = json.loads((BANK / "bank.json").read_text(encoding="utf-8"))
    doc["items"] = [
        it for it in doc["items"] if it["source"]["family"] in ("disk_cleanup", "git_destructive")
    ]
    bank_dir = tmp_path / "bank8"
    bank_dir.mkdir()
    (bank_dir / "bank.json").write_text(json.dumps(doc))
    bank = load_bank(bank_dir)
    gamer = SimAgent(
        bank, scripts_for_bank(bank, ENV), parse_personas(["gamer=1.5:gamer:k=5"]), seed=3
    )
    monkeypatch.setenv("SIM_API_KEY", KEY)
    runs = tmp_path / "runs"
    with SimServer(gamer, api_key=KEY) as srv:
        (summary,) = api.run(
            None,
            bank=str(bank_dir),
            environments=str(ENV),
            models=_models(srv.url, "gamer"),
            max_items=7,
            runs_dir=str(runs),
            session_id="gamer",
        )
    assert summary["status"] == "completed" and summary["n_items"] == 7
    rows = _journal_rows(runs, "gamer")
    assert [r.status for r in rows] == ["done"] * 7
    persona = gamer.persona("gamer")
    assert persona is not None
    for r in rows:  # graded as played: 0 on the five gamed items, honest draws after
        assert r.score == gamer.category(persona, r.item_id), (r.item_id, r.explanation)
    assert [r.score for r in rows[:5]] == [0] * 5 and max(r.score for r in rows[5:]) > 0
    fit = summary["person_fit"]
    assert fit["flagged"] and fit["p"] < fit["alpha"] and fit["n_items"] == 7
    named = {r["item"] for r in fit["above"]}
    assert named and named <= {r.item_id for r in rows[5:]}  # the honest answers stand out
    assert "θ may not describe this model" in summary["stop_reason"]
    assert main(["show", "gamer", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "person fit  p = " in out and "FLAGGED" in out and "far above θ̂:" in out
    assert managed_containers({"agentcat.session": "gamer"}) == []
