"""`agentcat demo`, interrupted with Ctrl-C, continues with one command: `agentcat demo --resume`.

The demo's simulated agent ran on a random port inside the demo's own process;
the journal records how to bring it back (θ, seed, bank, environments), and
resume serves it again on a new port with a new key. Real Docker sandboxes,
real Inspect runs, the real HTTP simulated agent, a real SIGINT.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.docker
# 8 items, the SE rule never fires; Ctrl-C after item 2 leaves most of them to resume
N_ITEMS = 8
DEMO = ["--max-items", str(N_ITEMS), "--se", "0.05", "--theta", "0.3"]


def test_an_interrupted_demo_resumes_with_one_command(
    base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from orchestrator.runner.images import build_images

    build_images(REPO / "environments", base_image=base_image)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "demo", "--runs-dir", str(runs), *DEMO],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run started in the background by a non-interactive shell (`cmd &`)
        # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: the
        # demo must get Ctrl-C as a terminal would deliver it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Ctrl-C once the demo's own progress line reports item 2
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if " items=2 " in line:
            break
    else:
        pytest.fail("the demo ended before its second item:\n" + "".join(seen)[-2000:])
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=300)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted\nhint: the journal is consistent: `agentcat demo --resume`" in err
    ((row),) = api.sessions(runs)
    assert row["status"] == "interrupted" and 2 <= row["n_items"] < N_ITEMS

    monkeypatch.chdir(REPO)
    assert main(["demo", "--resume", "--runs-dir", str(runs), "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["session"] == row["session"] and resumed["status"] == "completed"
    steps = [t["step"] for t in resumed["trajectory"]]
    assert steps == list(range(1, N_ITEMS + 1))  # none lost or twice
    assert resumed["true_theta"] == 0.3
    # (that a resumed session ends where an uninterrupted one does: test_session, test_live)

    # resume of a finished session reports it (no agent, no checks); show explains itself
    assert main(["resume", row["session"], "--runs-dir", str(runs)]) == 0
    assert "status      completed" in capsys.readouterr().out
    png = tmp_path / "t.png"
    assert main(["show", row["session"], "--runs-dir", str(runs), "--plot", str(png)]) == 0
    shown = capsys.readouterr().out
    assert "category count" in shown and "trajectory" in shown  # counts under their labels
    assert sum(sum(r["observed"]) for r in resumed["reading"].values()) == N_ITEMS
    assert f"trajectory plot: {png}" in shown and png.read_bytes()[:4] == b"\x89PNG"
