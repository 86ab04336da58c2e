"""A seeded, generated corpus of bad inputs: no traceback, ever; every error is one line + hint.

Each case builds its input in a scratch folder and runs one command through
``cli.main([...])`` (in this process, as the tests of each command do) or one
Python API call. Inputs are broken on purpose: corrupt, binary and wrongly
encoded CSVs, banks and configs, absurd numbers, unwritable outputs (``/proc``,
a file where a folder should be, a read-only mount, a full disk), tampered
journals, a port in use. Curated cases must fail (or, for a journal that can
still be read, report with a ``warning:``); randomly mutated inputs may happen
to stay valid and then must simply work.

What counts as clean: ``main`` returns an exit code (nothing escapes), numpy
warnings do not leak (they are turned into errors here), and stderr carries
exactly one ``error:`` line followed by one ``hint:`` line (progress and
``note:``/``warning:`` lines may come before). The corpus is rebuilt identically
from the seed every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orchestrator import api
from orchestrator.cli import main
from orchestrator.data import write_responses
from orchestrator.errors import AgentcatError
from orchestrator.irt import sample_responses
from orchestrator.session.journal import JOURNAL_FILENAME
from tests.conftest import REPO, make_bank

SEED = 17
K = 4
N_ITEMS = 12


# ----------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """Valid inputs every case starts from, and places that cannot be written."""

    root: Path
    bank: Path
    csv: Path
    config: Path
    runs: Path  # holds one finished session, "done"
    readonly: Path | None  # a read-only mount, when this machine lets us make one
    tiny: Path | None  # a 32 KiB file system: full after a few writes
    port: int  # a TCP port another socket holds

    def scratch(self, name: str) -> Path:
        folder = self.root / "cases" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@contextlib.contextmanager
def _mount(path: Path, options: str) -> Iterator[Path | None]:
    """A tmpfs at ``path`` (root only); None where the machine refuses."""
    path.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    try:
        yield path if made.returncode == 0 else None
    finally:
        if made.returncode == 0:
            subprocess.run(["umount", str(path)], capture_output=True)


def _finished_session(root: Path) -> Path:
    from orchestrator.session.session import Session
    from tests.test_session import TableRunner, _setup

    cfg, scores = _setup(root)
    session = Session.start(cfg, cfg.models[0], "done")
    asyncio.run(session.drive(TableRunner(scores)))
    session.journal.close()
    return root / "runs"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("fuzz")
    bank = make_bank(N_ITEMS, K, seed=SEED)
    bank.save(root / "bank")
    rng = np.random.default_rng(SEED)
    x = sample_responses(np.linspace(-2, 2, 20), bank.a, bank.b, rng)
    write_responses(
        root / "r.csv", [(f"m{i}", bank.ids[j], x[i, j]) for i in range(20) for j in range(N_ITEMS)]
    )
    (root / "run.yaml").write_text(
        f"bank: {root / 'bank'}\nmodels:\n  - model: openai-api/sim/theta_0\n"
        f"runs_dir: {root / 'runs-from-config'}\n"
    )
    runs = _finished_session(root / "session")
    with (
        _mount(root / "ro", "ro,size=64k") as readonly,
        _mount(root / "tiny", "size=32k") as tiny,
        socket.socket() as held,
    ):
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield Workspace(
            root, root / "bank", root / "r.csv", root / "run.yaml", runs, readonly, tiny,
            held.getsockname()[1],
        )  # fmt: skip


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One bad input: ``make`` returns the argv for ``cli.main`` (or runs an API call)."""

    name: str
    make: Callable[[Workspace, Path], list[str]]
    expect: str = "fail"  # "fail" | "warn" (exit 0 only with a warning) | "any"
    api: Callable[[Workspace, Path], object] | None = None


def _valid_csv_bytes(ws: Workspace) -> bytes:
    return ws.csv.read_bytes()


def _csv_case(name: str, content: Callable[[Workspace], bytes], expect: str = "fail") -> list[Case]:
    """The same broken CSV through estimate (CLI and API) and simulate."""

    def path(ws: Workspace, d: Path) -> Path:
        f = d / "r.csv"
        f.write_bytes(content(ws))
        return f

    return [
        Case(
            f"csv-{name}-estimate",
            lambda ws, d: ["estimate", "--bank", str(ws.bank), str(path(ws, d))],
            expect,
        ),
        Case(
            f"csv-{name}-simulate",
            lambda ws, d: [
                "simulate",
                "--bank",
                str(ws.bank),
                "--responses",
                str(path(ws, d)),
                "--max-items",
                "3",
            ],
            expect,
        ),
        Case(
            f"csv-{name}-api-estimate",
            lambda ws, d: [],
            expect,
            api=lambda ws, d: api.estimate(ws.bank, path(ws, d)),
        ),
    ]


def _rows(*lines: str) -> Callable[[Workspace], bytes]:
    return lambda ws: ("subject,item,score\n" + "\n".join(lines) + "\n").encode()


_CURATED_CSV: dict[str, Callable[[Workspace], bytes]] = {
    "binary": lambda ws: np.random.default_rng(SEED).bytes(3000),
    "binary-after-header": lambda ws: b"subject,item,score\n" + bytes(range(128, 256)) * 8,
    "latin1": lambda ws: "subject,item,score\nmod\xe8le,it000,1\n".encode("latin-1"),
    "utf16": lambda ws: "subject,item,score\nm,it000,1\n".encode("utf-16"),
    "nul-in-subject": _rows("m\x00x,it000,1"),
    "newline-in-subject": _rows('"m\nx",it000,1'),
    "tab-in-item": _rows("m,it\t000,1"),
    "huge-score": _rows("m,it000,99999999999999999999999"),
    "score-100": _rows("m,it000,100"),
    "score-above-k": _rows("m,it000,4"),
    "negative-score": _rows("m,it000,-1"),
    "float-score": _rows("m,it000,1.5"),
    "nan-score": _rows("m,it000,nan"),
    "empty-score": _rows("m,it000,"),
    "empty-subject": _rows(",it000,1"),
    "unknown-item": _rows("m,nope,1"),
    "duplicate-pair": _rows("m,it000,1", "m,it000,2"),
    "ragged-row": _rows("m,it000,1,extra"),
    "short-row": _rows("m,it000"),
    "no-header": lambda ws: b"m,it000,1\nm,it001,2\n",
    "header-typo": lambda ws: b"subjct,item,score\nm,it000,1\n",
    "only-header": lambda ws: b"subject,item,score\n",
    "empty-file": lambda ws: b"",
    "unbalanced-quote": _rows('"m,it000,1'),
    "semicolons": lambda ws: b"subject;item;score\nm;it000;1\n",
    "long-id": _rows("m" * 100_000 + ",it000,1"),
    "many-digits": _rows("m,it000," + "9" * 5000),
}


def _mutated_csv(seed: int) -> Callable[[Workspace], bytes]:
    """Random byte edits of the valid file: flips, inserts, deletions, a truncation."""

    def content(ws: Workspace) -> bytes:
        r = np.random.default_rng([SEED, seed])
        data = bytearray(_valid_csv_bytes(ws))
        for _ in range(int(r.integers(1, 6))):
            at = int(r.integers(0, len(data)))
            op = int(r.integers(0, 4))
            if op == 0:
                data[at] = int(r.integers(0, 256))
            elif op == 1:
                data[at:at] = r.bytes(int(r.integers(1, 8)))
            elif op == 2:
                del data[at : at + int(r.integers(1, 20))]
            else:
                data = data[:at]
        return bytes(data)

    return content


def _bank_case(name: str, text: Callable[[Workspace], bytes]) -> list[Case]:
    def folder(ws: Workspace, d: Path) -> Path:
        (d / "bank").mkdir(exist_ok=True)
        (d / "bank" / "bank.json").write_bytes(text(ws))
        return d / "bank"

    return [
        Case(
            f"bank-{name}-estimate",
            lambda ws, d: ["estimate", "--bank", str(folder(ws, d)), str(ws.csv)],
        ),
        Case(
            f"bank-{name}-api-simulate",
            lambda ws, d: [],
            api=lambda ws, d: api.simulate(folder(ws, d), ws.csv, max_items=2),
        ),
    ]


def _bank_edit(edit: Callable[[dict], object]) -> Callable[[Workspace], bytes]:
    def text(ws: Workspace) -> bytes:
        doc = json.loads((ws.bank / "bank.json").read_text())
        edit(doc)
        return json.dumps(doc).encode()

    return text


def _set(path: str, value: object) -> Callable[[dict], object]:
    def edit(doc: dict) -> None:
        node: object = doc
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value  # type: ignore[index]

    return edit


_CURATED_BANKS: dict[str, Callable[[Workspace], bytes]] = {
    "nested-200000": lambda ws: b"[" * 200_000 + b"]" * 200_000,
    "nested-object": lambda ws: b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "binary": lambda ws: np.random.default_rng(SEED + 1).bytes(2000),
    "latin1": lambda ws: '{"name": "caf\xe9"}'.encode("latin-1"),
    "empty": lambda ws: b"",
    "truncated": lambda ws: (ws.bank / "bank.json").read_bytes()[:200],
    "list": lambda ws: b"[]",
    "null": lambda ws: b"null",
    "nan-literal": lambda ws: (
        (ws.bank / "bank.json").read_bytes().replace(b'"a": ', b'"a": NaN, "x": ', 1)
    ),
    "a-1e308": _bank_edit(_set("items.0.a", 1e308)),
    "a-negative": _bank_edit(_set("items.0.a", -1.0)),
    "a-zero": _bank_edit(_set("items.0.a", 0.0)),
    "a-string": _bank_edit(_set("items.0.a", "steep")),
    "b-1e308": _bank_edit(_set("items.0.b", [-1.0, 0.0, 1e308])),
    "b-disordered": _bank_edit(_set("items.0.b", [1.0, 0.0, 2.0])),
    "b-empty": _bank_edit(_set("items.0.b", [])),
    "b-nested": _bank_edit(_set("items.0.b", [[1.0]])),
    "prior-sd-zero": _bank_edit(_set("prior.sd", 0.0)),
    "prior-sd-huge": _bank_edit(_set("prior.sd", 1e300)),
    "prior-mean-huge": _bank_edit(_set("prior.mean", -1e300)),
    "no-items": _bank_edit(_set("items", [])),
    "duplicate-ids": _bank_edit(lambda d: d["items"].append(dict(d["items"][0]))),
    "unknown-field": _bank_edit(_set("colour", "red")),
    "id-newline": _bank_edit(_set("items.0.id", "it\n000")),
    "schema-99": _bank_edit(_set("schema_version", 99)),
    "model-irt": _bank_edit(_set("model", "3pl")),
    "labels-short": _bank_edit(_set("items.0.labels", ["x"])),
}


def _mutated_bank(seed: int) -> Callable[[Workspace], bytes]:
    def text(ws: Workspace) -> bytes:
        r = np.random.default_rng([SEED, 1000 + seed])
        data = bytearray((ws.bank / "bank.json").read_bytes())
        for _ in range(int(r.integers(1, 4))):
            at = int(r.integers(0, len(data)))
            data[at] = int(r.choice(list(b'{}[]",:0-9.eE-+ \x00\xff')))
        return bytes(data)

    return text


def _config_case(name: str, text: Callable[[Workspace], bytes]) -> Case:
    def argv(ws: Workspace, d: Path) -> list[str]:
        (d / "run.yaml").write_bytes(text(ws))
        return ["run", "--config", str(d / "run.yaml")]

    return Case(f"config-{name}", argv)


def _yaml(extra: str) -> Callable[[Workspace], bytes]:
    return lambda ws: (ws.config.read_text() + extra).encode()


_CURATED_CONFIGS: dict[str, Callable[[Workspace], bytes]] = {
    "binary": lambda ws: np.random.default_rng(SEED + 2).bytes(1500),
    "latin1": lambda ws: "bank: caf\xe9\nmodels: [x]\n".encode("latin-1"),
    "not-a-mapping": lambda ws: b"- just\n- a list\n",
    "scalar": lambda ws: b"42\n",
    "syntax": lambda ws: b"bank: [unclosed\n",
    "tabs": lambda ws: b"bank:\n\t- x\n",
    "nested": lambda ws: b"bank: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "empty": lambda ws: b"",
    "typo-key": _yaml("bnak: x\n"),
    "unknown-section": _yaml("catt: {}\n"),
    "model-without-provider": lambda ws: f"bank: {ws.bank}\nmodels: [gpt4]\n".encode(),
    "workers-zero": _yaml("workers: 0\n"),
    "workers-text": _yaml("workers: many\n"),
    "session-id-path": _yaml("session_id: ../escape\n"),
    "sandbox-unknown": _yaml("sandbox: vm\n"),
    "se-negative": _yaml("cat: {stopping: [{rule: se, args: {se: -1}}]}\n"),
    "se-nan": _yaml("cat: {stopping: [{rule: se, args: {se: .nan}}]}\n"),
    "rule-unknown": _yaml("cat: {selection: {rule: telepathy}}\n"),
    "batch-huge": _yaml("cat: {batch_size: 1000000}\n"),
    "limits-negative": _yaml("limits: {time_limit_s: -5}\n"),
    "runs-dir-proc": lambda ws: (
        ws.config.read_text()
        .replace(str(ws.root / "runs-from-config"), "/proc/agentcat-runs")
        .encode()
    ),
    "bank-missing": lambda ws: b"bank: /nonexistent/bank\nmodels: [openai/gpt-4o]\n",
    "schema-2": _yaml("schema_version: 2\n"),
    "aliases": lambda ws: b"a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\nbank: *c\n",
}


def _args(*argv: str) -> Callable[[Workspace, Path], list[str]]:
    """argv with {bank} {csv} {runs} {ro} {tiny} {port} {d} placeholders."""

    def make(ws: Workspace, d: Path) -> list[str]:
        if ("{ro}" in " ".join(argv) and ws.readonly is None) or (
            "{tiny}" in " ".join(argv) and ws.tiny is None
        ):
            pytest.skip("this machine does not let the test mount a small file system")
        (d / "a-file").write_text("x")
        (d / "binary.csv").write_bytes(bytes(range(256)))
        (d / "texts.csv").write_text("id,text\nq1,How do I list files?\n")
        (d / "map.json").write_text(
            '{"cases": [{"value": "C", "category": 1}, {"value": "I", "category": 0}]}'
        )
        (d / "empty-map.json").write_text('{"cases": []}')
        (d / "t.py").write_text(
            "from inspect_ai import Task, task\n\n@task\ndef t():\n    return Task(dataset=[])\n"
        )
        values = {
            "bank": ws.bank,
            "csv": ws.csv,
            "runs": ws.runs,
            "ro": ws.readonly,
            "tiny": ws.tiny,
            "port": ws.port,
            "d": d,
            "shell": REPO / "item_banks" / "shell-safety",
        }
        out = []
        for a in argv:
            for key, value in values.items():
                a = a.replace(f"{{{key}}}", str(value))
            out.append(a)
        return out

    return make


_CURATED_ARGS: dict[str, Callable[[Workspace, Path], list[str]]] = {
    # numbers
    "simulate-se-nan": _args("simulate", "--bank", "{bank}", "--responses", "{csv}", "--se", "nan"),
    "simulate-se-inf": _args("simulate", "--bank", "{bank}", "--responses", "{csv}", "--se", "inf"),
    "simulate-se-zero": _args("simulate", "--bank", "{bank}", "--responses", "{csv}", "--se", "0"),
    "simulate-se-1e400": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--se", "1e400"
    ),
    "simulate-se-text": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--se", "low"
    ),
    "simulate-max-items-0": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--max-items", "0"
    ),
    "simulate-max-items-huge": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--max-items", "1" + "0" * 30
    ),
    "simulate-max-items-float": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--max-items", "2.5"
    ),
    "simulate-seed-negative": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--seed", "-1"
    ),
    "simulate-strategy-unknown": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--strategy", "psychic"
    ),
    "simulate-strategy-bad-json": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--strategy", "{nope"
    ),
    "simulate-strategy-json-list": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--strategy", "[1, 2]"
    ),
    "simulate-strategy-bad-arg": _args(
        "simulate",
        "--bank",
        "{bank}",
        "--responses",
        "{csv}",
        "--strategy",
        '{"rule": "max_info", "args": {"randomesque": -4}}',
    ),
    "estimate-method": _args("estimate", "--bank", "{bank}", "{csv}", "--method", "mle"),
    "estimate-no-bank": _args("estimate", "{csv}"),
    "estimate-unknown-option": _args("estimate", "--bank", "{bank}", "{csv}", "--colour"),
    "calibrate-n-quad-5": _args("calibrate", "{csv}", "--out", "{d}/b", "--n-quad", "5"),
    "calibrate-n-quad-huge": _args(
        "calibrate", "{csv}", "--out", "{d}/b", "--n-quad", "1000000000"
    ),
    "calibrate-tol-zero": _args("calibrate", "{csv}", "--out", "{d}/b", "--tol", "0"),
    "calibrate-max-iter-negative": _args(
        "calibrate", "{csv}", "--out", "{d}/b", "--max-iter", "-3"
    ),
    "calibrate-prior-nan": _args("calibrate", "{csv}", "--out", "{d}/b", "--prior-a", "nan,1"),
    "calibrate-prior-text": _args("calibrate", "{csv}", "--out", "{d}/b", "--prior-b", "a,b"),
    "calibrate-gap-inf": _args("calibrate", "{csv}", "--out", "{d}/b", "--prior-gap", "inf"),
    "calibrate-device": _args("calibrate", "{csv}", "--out", "{d}/b", "--device", "tpu"),
    "calibrate-items-missing": _args(
        "calibrate", "{csv}", "--out", "{d}/b", "--items", "{d}/nope.csv"
    ),
    "calibrate-tags-without-items": _args(
        "calibrate", "{csv}", "--out", "{d}/b", "--tags", "suite"
    ),
    "health-q3-negative": _args(
        "health",
        "--bank",
        "{bank}",
        "--responses",
        "{csv}",
        "--out",
        "{d}/r.html",
        "--q3-simulations",
        "-1",
    ),
    "health-se-target-nan": _args(
        "health",
        "--bank",
        "{bank}",
        "--responses",
        "{csv}",
        "--out",
        "{d}/r.html",
        "--se-target",
        "nan",
    ),
    "health-out-pdf": _args(
        "health", "--bank", "{bank}", "--responses", "{csv}", "--out", "{d}/r.pdf"
    ),
    "demo-theta-nan": _args("demo", "--theta", "nan", "--runs-dir", "{d}/runs"),
    "demo-se-negative": _args("demo", "--se", "-0.3", "--runs-dir", "{d}/runs"),
    "demo-max-items-0": _args("demo", "--max-items", "0", "--runs-dir", "{d}/runs"),
    "run-se-zero": _args("run", "--bank", "{bank}", "--model", "openai/x", "--se", "0"),
    "run-workers-0": _args("run", "--bank", "{bank}", "--model", "openai/x", "--workers", "0"),
    "run-no-model": _args("run", "--bank", "{bank}"),
    "run-model-without-provider": _args(
        "run", "--bank", "{bank}", "--model", "gpt-4o", "--runs-dir", "{d}/runs"
    ),
    "run-session-id-slash": _args(
        "run",
        "--bank",
        "{bank}",
        "--model",
        "openai/x",
        "--session-id",
        "a/b",
        "--runs-dir",
        "{d}/runs",
    ),
    "run-bank-is-a-file": _args(
        "run", "--bank", "{d}/a-file", "--model", "openai/x", "--runs-dir", "{d}/runs"
    ),
    "run-config-missing": _args("run", "--config", "{d}/nope.yaml"),
    "run-config-is-a-folder": _args("run", "--config", "{d}"),
    "sim-server-port-negative": _args("sim-server", "--bank", "{shell}", "--port", "-1"),
    "sim-server-port-70000": _args("sim-server", "--bank", "{shell}", "--port", "70000"),
    "sim-server-port-in-use": _args("sim-server", "--bank", "{shell}", "--port", "{port}"),
    "sim-server-host-bogus": _args(
        "sim-server", "--bank", "{shell}", "--host", "999.1.1.1", "--port", "0"
    ),
    "sim-server-rate-above-1": _args("sim-server", "--bank", "{shell}", "--rate-429", "1.5"),
    "sim-server-rate-nan": _args("sim-server", "--bank", "{shell}", "--rate-500", "nan"),
    "sim-server-persona-bad": _args(
        "sim-server", "--bank", "{shell}", "--persona", "x=high", "--port", "0"
    ),
    "sim-server-not-a-scenario-bank": _args("sim-server", "--bank", "{bank}", "--port", "0"),
    "sim-server-key-unset": _args(
        "sim-server", "--bank", "{shell}", "--api-key-env", "AGENTCAT_FUZZ_UNSET", "--port", "0"
    ),
    "sweep-sample-0": _args(
        "sweep", "--models", "openai/x", "--bank", "{bank}", "--out", "{d}/o.csv", "--sample", "0"
    ),
    "images-build-no-environments": _args("images", "build", "--environments", "{d}/none"),
    "scenarios-list-no-environments": _args("scenarios", "list", "--environments", "{d}/none"),
    "scenarios-bank-out-proc": _args(
        "scenarios", "bank", "--environments", str(REPO / "environments"), "--out", "/proc/agentcat"
    ),
    # inputs that are not what they claim
    "estimate-bank-missing": _args("estimate", "--bank", "{d}/nope", "{csv}"),
    "estimate-bank-is-a-file": _args("estimate", "--bank", "{d}/a-file", "{csv}"),
    "estimate-responses-folder": _args("estimate", "--bank", "{bank}", "{d}"),
    "estimate-responses-missing": _args("estimate", "--bank", "{bank}", "{d}/nope.csv"),
    "estimate-responses-proc": _args("estimate", "--bank", "{bank}", "/proc/self/status"),
    "health-responses-dev-null": _args(
        "health", "--bank", "{bank}", "--responses", "/dev/null", "--out", "{d}/r.html"
    ),
    # unwritable outputs: /proc, a file in the way, a read-only mount, a full disk
    "run-runs-dir-proc": _args(
        "run",
        "--config",
        str(REPO / "configs" / "compose.yaml"),
        "--model",
        "openai/x",
        "--runs-dir",
        "/proc/agentcat-runs",
    ),
    "run-runs-dir-file": _args(
        "run", "--bank", "{bank}", "--model", "openai/x", "--runs-dir", "{d}/a-file"
    ),
    "run-runs-dir-readonly": _args(
        "run", "--bank", "{bank}", "--model", "openai/x", "--runs-dir", "{ro}/runs"
    ),
    "demo-runs-dir-proc": _args("demo", "--runs-dir", "/proc/agentcat-runs"),
    "demo-runs-dir-readonly": _args("demo", "--runs-dir", "{ro}"),
    "demo-plot-proc": _args("demo", "--runs-dir", "{d}/runs", "--plot", "/proc/x.png"),
    "demo-resume-nothing": _args("demo", "--resume", "--runs-dir", "{d}/runs"),
    "show-plot-proc": _args("show", "done", "--runs-dir", "{runs}", "--plot", "/proc/x.png"),
    "show-plot-in-a-file": _args(
        "show", "done", "--runs-dir", "{runs}", "--plot", "{d}/a-file/x.png"
    ),
    "show-plot-readonly": _args("show", "done", "--runs-dir", "{runs}", "--plot", "{ro}/x.png"),
    "show-plot-is-a-folder": _args("show", "done", "--runs-dir", "{runs}", "--plot", "{d}"),
    "simulate-plot-proc": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--plot", "/proc/x.png"
    ),
    "simulate-plot-readonly": _args(
        "simulate", "--bank", "{bank}", "--responses", "{csv}", "--plot", "{ro}/x.png"
    ),
    "health-out-proc": _args(
        "health", "--bank", "{bank}", "--responses", "{csv}", "--out", "/proc/r.html"
    ),
    "health-out-readonly": _args(
        "health", "--bank", "{bank}", "--responses", "{csv}", "--out", "{ro}/r.html"
    ),
    "health-out-disk-full": _args(
        "health",
        "--bank",
        "{bank}",
        "--responses",
        "{csv}",
        "--out",
        "{tiny}/r.html",
        "--q3-simulations",
        "0",
        "--quiet",
    ),
    "health-figures-in-a-file": _args(
        "health",
        "--bank",
        "{bank}",
        "--responses",
        "{csv}",
        "--out",
        "{d}/r.html",
        "--figures",
        "{d}/a-file/figs",
    ),
    "calibrate-out-proc": _args("calibrate", "{csv}", "--out", "/proc/agentcat-bank", "--quiet"),
    "calibrate-out-file": _args("calibrate", "{csv}", "--out", "{d}/a-file", "--quiet"),
    "calibrate-out-readonly": _args("calibrate", "{csv}", "--out", "{ro}/bank", "--quiet"),
    "calibrate-out-disk-full": _args(
        "calibrate", "{csv}", "--out", "{tiny}/bank", "--quiet", "--description", "x" * 60_000
    ),
    "sweep-out-proc": _args(
        "sweep", "--models", "openai/x", "--bank", "{bank}", "--out", "/proc/o.csv"
    ),
    "sweep-out-readonly": _args(
        "sweep", "--models", "openai/x", "--bank", "{bank}", "--out", "{ro}/o.csv"
    ),
    "sweep-runs-dir-file": _args(
        "sweep",
        "--models",
        "openai/x",
        "--bank",
        "{bank}",
        "--out",
        "{d}/o.csv",
        "--runs-dir",
        "{d}/a-file",
    ),
    "resume-runs-dir-proc": _args("resume", "done", "--runs-dir", "/proc/agentcat-runs"),
    "resume-unknown": _args("resume", "nope", "--runs-dir", "{runs}"),
    "show-unknown": _args("show", "nope", "--runs-dir", "{runs}"),
    "sessions-runs-dir-is-a-file": _args("sessions", "--runs-dir", "{d}/a-file"),
    # commands that came with validity, cold start and live Inspect tasks
    "validity-one-bank": _args("validity", "{bank}", "--no-collateral"),
    "validity-bank-twice": _args("validity", "{bank}", "{bank}", "--no-collateral"),
    "validity-bootstrap-10": _args("validity", "{bank}", "{shell}", "--bootstrap", "10"),
    "validity-bootstrap-text": _args("validity", "{bank}", "{shell}", "--bootstrap", "many"),
    "validity-level-2": _args("validity", "{bank}", "{shell}", "--level", "2"),
    "validity-se-nan": _args("validity", "{bank}", "{shell}", "--se", "nan"),
    "validity-min-models-5": _args("validity", "{bank}", "{shell}", "--collateral-min-models", "5"),
    "validity-out-pdf": _args("validity", "{bank}", "{shell}", "--out", "{d}/v.pdf"),
    "validity-out-proc": _args("validity", "{bank}", "{shell}", "--out", "/proc/agentcat/v.html"),
    "validity-figures-file": _args("validity", "{bank}", "{shell}", "--figures", "{d}/a-file"),
    "validity-responses-no-equals": _args("validity", "{bank}", "{shell}", "--responses", "{csv}"),
    "validity-responses-unknown-bank": _args(
        "validity", "{bank}", "{shell}", "--responses", "nope={csv}"
    ),
    "validity-no-responses": _args("validity", "{bank}", "{shell}", "--no-collateral"),
    "validity-names-not-a-mapping": _args(
        "validity", "{bank}", "{shell}", "--responses", "synthetic={csv}", "--names", "{d}/a-file"
    ),
    "predict-params-missing-items": _args("predict-params", "{d}/nope.csv", "--out", "{d}/b"),
    "predict-params-items-without-text": _args("predict-params", "{csv}", "--out", "{d}/b"),
    "predict-params-items-not-csv": _args("predict-params", "{d}/a-file", "--out", "{d}/b"),
    "predict-params-k-0": _args("predict-params", "{d}/texts.csv", "--out", "{d}/b", "--k", "0"),
    "predict-params-out-proc": _args("predict-params", "{d}/texts.csv", "--out", "/proc/agentcat"),
    "predict-params-out-exists": _args("predict-params", "{d}/texts.csv", "--out", "{bank}"),
    "predict-params-into-missing": _args(
        "predict-params", "{d}/texts.csv", "--out", "{d}/b", "--into", "{d}/nope"
    ),
    "calibrate-update-missing-bank": _args(
        "calibrate", "{csv}", "--update", "{d}/nope", "--out", "{d}/b"
    ),
    "calibrate-update-out-exists": _args(
        "calibrate", "{csv}", "--update", "{bank}", "--out", "{bank}"
    ),
    "calibrate-update-out-proc": _args(
        "calibrate", "{csv}", "--update", "{bank}", "--out", "/proc/agentcat", "--force"
    ),
    "calibrate-update-inflate-0": _args(
        "calibrate", "{csv}", "--update", "{bank}", "--out", "{d}/b", "--prior-inflate", "0"
    ),
    "calibrate-update-calibrated-se-nan": _args(
        "calibrate", "{csv}", "--update", "{bank}", "--out", "{d}/b", "--calibrated-se", "nan"
    ),
    "calibrate-update-binary-responses": _args(
        "calibrate", "{d}/binary.csv", "--update", "{bank}", "--out", "{d}/b"
    ),
    "inspect-bank-missing-score-map": _args(
        "inspect-bank", "nope/task", "--score-map", "{d}/nope.json", "--out", "{d}/b"
    ),
    "inspect-bank-score-map-not-json": _args(
        "inspect-bank", "nope/task", "--score-map", "{d}/a-file", "--out", "{d}/b"
    ),
    "inspect-bank-score-map-empty": _args(
        "inspect-bank", "nope/task", "--score-map", "{d}/empty-map.json", "--out", "{d}/b"
    ),
    "inspect-bank-bad-task-arg": _args(
        "inspect-bank",
        "nope/task",
        "-T",
        "novalue",
        "--score-map",
        "{d}/map.json",
        "--out",
        "{d}/b",
    ),
    "inspect-bank-unknown-task": _args(
        "inspect-bank", "nope_pkg/nope_task", "--score-map", "{d}/map.json", "--out", "{d}/b"
    ),
    "inspect-bank-missing-task-file": _args(
        "inspect-bank", "{d}/nope.py@t", "--score-map", "{d}/map.json", "--out", "{d}/b"
    ),
    "inspect-bank-out-is-a-file": _args(
        "inspect-bank", "{d}/t.py@t", "--score-map", "{d}/map.json", "--out", "{d}/a-file"
    ),
    "inspect-bank-out-exists": _args(
        "inspect-bank", "{d}/t.py@t", "--score-map", "{d}/map.json", "--out", "{bank}"
    ),
    "sessions-export-without-bank": _args(
        "sessions", "--runs-dir", "{runs}", "--export-responses", "{d}/o.csv"
    ),
    "sessions-export-proc": _args(
        "sessions",
        "--runs-dir",
        "{runs}",
        "--export-responses",
        "/proc/o.csv",
        "--bank",
        "synthetic",
    ),
    "sessions-export-to-a-folder": _args(
        "sessions", "--runs-dir", "{runs}", "--export-responses", "{d}", "--bank", "synthetic"
    ),
    "sessions-export-readonly": _args(
        "sessions",
        "--runs-dir",
        "{runs}",
        "--export-responses",
        "{ro}/o.csv",
        "--bank",
        "synthetic",
    ),
    "sessions-export-unknown-bank": _args(
        "sessions", "--runs-dir", "{runs}", "--export-responses", "{d}/o.csv", "--bank", "nope"
    ),
    "sessions-export-no-sessions": _args(
        "sessions", "--runs-dir", "{d}/empty", "--export-responses", "{d}/o.csv", "--bank", "x"
    ),
}


def _journal_case(name: str, sql: str | None, command: str, expect: str) -> Case:
    """A copy of the finished session, tampered with by ``sql`` (or, for None, by
    damaging the file itself), then shown / resumed / listed."""

    def argv(ws: Workspace, d: Path) -> list[str]:
        runs = d / "runs"
        shutil.copytree(ws.runs, runs, dirs_exist_ok=True)
        journal = runs / "done" / JOURNAL_FILENAME
        if sql is None:
            journal.write_bytes(journal.read_bytes()[:1500])
            for side in ("-wal", "-shm"):
                Path(f"{journal}{side}").unlink(missing_ok=True)
        elif sql == "missing-bank":
            (runs / "done" / "bank.json").unlink()
            _exec(journal, "UPDATE session SET bank_path='/nonexistent/bank'")
        else:
            _exec(journal, sql)
        return [command, *(["done"] if command != "sessions" else []), "--runs-dir", str(runs)]

    return Case(f"journal-{name}-{command}", argv, expect)


def _exec(journal: Path, sql: str) -> None:
    conn = sqlite3.connect(journal)
    conn.executescript(sql)
    conn.commit()
    conn.close()


_JOURNAL_DAMAGE: dict[str, str | None] = {
    "controller-garbage": "UPDATE session SET controller_json='{not json'",
    "controller-list": "UPDATE session SET controller_json='[]'",
    "controller-deep": "UPDATE session SET controller_json='" + "[" * 100_000 + "'",
    "config-list": "UPDATE session SET config_json='[1, 2]'",
    "config-garbage": "UPDATE session SET config_json='{'",
    "config-no-models": 'UPDATE session SET config_json=\'{"bank": "x"}\'',
    "score-99": "UPDATE steps SET score=99 WHERE step=1",
    "score-text": "UPDATE steps SET score='high' WHERE step=2",
    "unknown-item": "UPDATE steps SET item_id='ghost' WHERE step=3",
    "theta-text": "UPDATE steps SET theta='x', se='y' WHERE step=1",
    "updated-text": "UPDATE session SET updated='soon'",
    "no-session-row": "DELETE FROM session",
    "steps-dropped": "DROP TABLE steps",
    "foreign-app": "UPDATE meta SET value='other' WHERE key='app'",
    "schema-2": "UPDATE meta SET value='2' WHERE key='schema'",
    "missing-bank": "missing-bank",
    "truncated-file": None,
}
# damage show reads around (with a warning); resume of this finished session reports it
# as show does (it needs neither the bank nor the config nor the controller state)
_SHOWABLE = {"score-99", "score-text", "unknown-item", "theta-text", "missing-bank",
             "config-list", "config-garbage", "config-no-models",
             "controller-garbage", "controller-list", "controller-deep"}  # fmt: skip


def _corpus() -> list[Case]:
    cases: list[Case] = []
    for name, content in _CURATED_CSV.items():
        cases += _csv_case(name, content)
    for i in range(25):
        cases += _csv_case(f"mutated{i:02d}", _mutated_csv(i), expect="any")
    for name, text in _CURATED_BANKS.items():
        cases += _bank_case(name, text)
    for i in range(12):
        cases.append(
            Case(
                f"bank-mutated{i:02d}-estimate",
                _bank_case("m", _mutated_bank(i))[0].make,
                expect="any",
            )
        )
    cases += [_config_case(name, text) for name, text in _CURATED_CONFIGS.items()]
    cases += [Case(f"args-{name}", make) for name, make in _CURATED_ARGS.items()]
    for name, sql in _JOURNAL_DAMAGE.items():
        for command in ("show", "resume"):
            cases.append(_journal_case(name, sql, command, "warn" if name in _SHOWABLE else "fail"))
        cases.append(_journal_case(name, sql, "sessions", "any"))
    return cases


CORPUS = _corpus()


def test_the_corpus_is_big_enough_and_named_uniquely() -> None:
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names))
    assert len(CORPUS) >= 200, len(CORPUS)


# ----------------------------------------------------------------------------- the check
def _check_stderr(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line:\n{err}"
    at = errors[0]
    assert lines[at + 1 :] and lines[at + 1].startswith("hint: "), f"no hint:\n{err}"
    assert len(lines) == at + 2, f"more than one line + hint:\n{err}"
    assert len(lines[at]) <= 400, f"error line of {len(lines[at])} characters"


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_bad_input_never_ends_in_a_traceback(
    case: Case, ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTCAT_DEBUG", raising=False)
    d = ws.scratch(case.name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. numpy overflow on a = 1e308
        if case.api is not None:
            try:
                case.api(ws, d)
            except AgentcatError as exc:
                assert "\n" not in exc.message and len(exc.message) <= 400, exc.message
            else:
                assert case.expect == "any", "accepted silently"
            return
        argv = case.make(ws, d)
        code = main(argv)
    out, err = capsys.readouterr()
    assert isinstance(code, int)
    if code == 0:
        assert "Traceback" not in err
        if case.expect == "warn":
            assert "warning: " in err, f"no warning: {argv[:6]}\n{out[-500:]}"
        else:
            assert case.expect == "any", f"accepted silently: {argv[:6]}\n{out[-500:]}"
        return
    _check_stderr(err)


def test_a_closed_stdout_ends_quietly(ws: Workspace) -> None:
    """`agentcat estimate … | head -1`: the reader goes away; no BrokenPipeError traceback."""
    big = ws.scratch("broken-pipe") / "r.csv"
    rows = _valid_csv_bytes(ws).decode().splitlines()
    body = [f"s{i}-{line}" for i in range(400) for line in rows[1:]]
    big.write_text(rows[0] + "\n" + "\n".join(body) + "\n")
    proc = subprocess.run(
        f"'{sys.executable}' -m orchestrator.cli estimate --bank '{ws.bank}' '{big}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.split() == ["subject", "theta", "se", "n_items"]
    assert proc.stderr == ""
