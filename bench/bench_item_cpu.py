"""CPU seconds per completed live item, per component: where a live item's CPU goes.

Runs real adaptive sessions against the simulated agent (as ``bench_live.py``
does) for each ``SESSIONSxWORKERS`` configuration and charges the CPU time
spent during the run to the processes that spent it, each read from
``/proc/<pid>/stat`` as utime+stime+cutime+cstime (so reaped children count
for the parent that reaped them):

* ``driver``: this process (pre-flight, session loop, CAT steps, journal, pool
  parent), less the sampler thread that takes these readings and the imports
  (done before the first run);
* ``workers``: the spawned item workers (reaped ones through this process's
  cutime/cstime, live ones directly), Inspect and the sandbox client inside;
* ``sim_server``: the simulated agent server, run in a process of its own;
* ``dockerd`` and ``containerd``: the engine (shared: other users' containers
  are charged here too; ``engine_events_share`` is this run's share of the
  engine's container events, a rough key to split them by);
* ``shims``: the containerd-shim of each of this run's containers, including
  the ``runc`` calls and the container processes it reaps; ``containers`` is
  the containers' own processes by their cgroup (cpuacct), a part of ``shims``.

Shims are found by a sampler polling ``/proc`` (0.2 s): a shim lives from its
container's creation to its removal; its last reading is kept (exited shims
linger as zombies here, so the tail is usually seen). Whole-machine busy time
(``/proc/stat``) is the cross-check: on an otherwise idle machine the parts
add up to it; the rest is other users' work, kernel threads and interrupts.
Container creations and ``docker exec`` calls per item are counted from the
engine's event stream, restricted to containers this run's processes created.

    nice python bench/bench_item_cpu.py [--items 8] [--configs 1x1 8x4] [--out FILE]

Needs Docker and the scenario images. Writes bench/results/bench_item_cpu.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _results import header, write_json

from orchestrator import api

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "item_banks" / "shell-safety"
ENV = REPO / "environments"
TICK = os.sysconf("SC_CLK_TCK")
CGROUP = Path("/sys/fs/cgroup/cpuacct/docker")
POLL_S = 0.2


def _serve(bank_dir: str, env_dir: str, conn: Any, api_key: str = "bench") -> None:
    """The simulated agent server in a process of its own (its CPU is then its pid's)."""
    from orchestrator.bank import load_bank
    from orchestrator.sim.agent import SimAgent, players_for_bank, scripts_for_bank
    from orchestrator.sim.server import SimServer

    bank = load_bank(bank_dir)
    agent = SimAgent(
        bank, scripts_for_bank(bank, env_dir), seed=0, players=players_for_bank(bank, env_dir)
    )
    srv = SimServer(agent, api_key=api_key)
    conn.send(srv.url)
    srv.serve_forever()


@dataclass
class Proc:
    comm: str
    ppid: int
    own: int  # utime + stime, ticks
    reaped: int  # cutime + cstime, ticks

    @property
    def total(self) -> int:
        return self.own + self.reaped


def read_stat(pid: int | str) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()
    return Proc(comm, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))


def machine_busy() -> int:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return user + nice + system + irq + softirq + steal


def _shim_cid(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return args[args.index(b"-id") + 1].decode() if b"-id" in args else ""


@dataclass
class Sampler:
    """Polls /proc and the container cgroups; keeps first and last readings per pid/cid."""

    root: int
    skip: set[int]  # children of root accounted separately (the sim server, docker events)
    first: dict[int, Proc] = field(default_factory=dict)
    last: dict[int, Proc] = field(default_factory=dict)
    shim_cid: dict[int, str] = field(default_factory=dict)
    cg_first: dict[str, int] = field(default_factory=dict)
    cg_last: dict[str, int] = field(default_factory=dict)
    descendants: set[int] = field(default_factory=set)
    alive: set[int] = field(default_factory=set)
    thread_cpu_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def scan(self, initial: bool = False) -> None:
        procs = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and (p := read_stat(name)) is not None:
                procs[int(name)] = p
        for pid, p in procs.items():
            # a pid first seen after the start began during the run: it started from 0
            self.first.setdefault(pid, p if initial else Proc(p.comm, p.ppid, 0, 0))
            self.last[pid] = p
            if p.comm == "containerd-shim" and pid not in self.shim_cid:
                self.shim_cid[pid] = _shim_cid(pid)
        kids: dict[int, list[int]] = {}
        for pid, p in procs.items():
            kids.setdefault(p.ppid, []).append(pid)
        todo, alive = list(kids.get(self.root, [])), set()
        while todo:
            pid = todo.pop()
            if pid not in self.skip:
                alive.add(pid)
                todo += kids.get(pid, [])
        self.alive = alive
        self.descendants |= alive
        if CGROUP.is_dir():
            for d in CGROUP.iterdir():
                try:
                    ns = int((d / "cpuacct.usage").read_text())
                except (OSError, ValueError):
                    continue
                self.cg_first.setdefault(d.name, ns if initial else 0)
                self.cg_last[d.name] = ns

    def run(self) -> None:
        t0 = time.thread_time()
        while not self._stop.wait(POLL_S):
            self.scan()
        self.thread_cpu_s = time.thread_time() - t0

    def __enter__(self) -> Sampler:
        self.scan(initial=True)
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()

    def delta(self, pid: int) -> float:
        return (self.last[pid].total - self.first[pid].total) / TICK


class EngineEvents:
    """The engine's container events, streamed while the run lasts (the engine keeps only
    its last few hundred events, so asking afterwards loses them on a busy engine)."""

    def __enter__(self) -> EngineEvents:
        cmd = ["docker", "events", "--filter", "type=container", "--format", "{{json .}}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # the last removals' events
        self.proc.terminate()
        self.proc.wait()
        self._reader.join()

    def count(self, owners: set[str]) -> dict[str, Any]:
        """Actions on containers created by ``owners`` (pids), and all actions seen."""
        events = [json.loads(line) for line in self.lines if line.strip()]
        mine = {
            e["Actor"]["ID"]
            for e in events
            if e.get("Action") == "create"
            and e["Actor"].get("Attributes", {}).get("agentcat.owner.pid") in owners
        }
        count: dict[str, int] = {}
        for e in events:
            if e["Actor"]["ID"] in mine:
                action = e.get("Action", "").split(":", 1)[0]
                count[action] = count.get(action, 0) + 1
        return {"containers": mine, "actions": count, "all_events": len(events)}


def measure(n: int, workers: int, args: argparse.Namespace, url: str, sim_pid: int) -> dict:
    thetas = [round(-1.5 + 3.0 * i / max(n - 1, 1), 2) for i in range(n)]
    models = [
        {
            "model": f"openai-api/sim/theta_{t}",
            "name": f"p{i}",
            "base_url": url,
            "api_key_env": "SIM_API_KEY",
        }
        for i, t in enumerate(thetas)
    ]
    me = os.getpid()
    with TemporaryDirectory() as tmp, EngineEvents() as events:
        busy0, t0 = machine_busy(), time.perf_counter()
        with Sampler(root=me, skip={sim_pid, events.proc.pid}) as s:
            sums = api.run(
                None,
                bank=str(args.bank),
                environments=str(ENV),
                runs_dir=str(Path(tmp) / "runs"),
                models=models,
                max_items=args.items,
                workers=workers,
            )
        wall, busy1 = time.perf_counter() - t0, machine_busy()
    items = sum(x["n_items"] for x in sums)
    owners = {str(pid) for pid in s.descendants | {me}}
    ev = events.count(owners)
    mine = ev["containers"]
    # the daemon, not its short-lived re-execs (``docker-untar`` … run as ``dockerd`` too)
    by_comm = {
        comm: max((pid for pid, p in s.last.items() if p.comm == comm), key=s.delta)
        for comm in ("dockerd", "containerd")
    }
    parent0, parent1 = s.first[me], s.last[me]
    worker_s = (parent1.reaped - parent0.reaped) / TICK + sum(
        s.delta(pid) for pid in s.alive if pid in s.last
    )
    shims = {pid: s.delta(pid) for pid in s.shim_cid}
    cpu = {
        "driver": (parent1.own - parent0.own) / TICK - s.thread_cpu_s,
        "workers": worker_s,
        "sim_server": s.delta(sim_pid),
        "dockerd": s.delta(by_comm["dockerd"]),
        "containerd": s.delta(by_comm["containerd"]),
        "shims": sum(v for pid, v in shims.items() if s.shim_cid[pid] in mine),
        "containers": sum(
            (s.cg_last[c] - s.cg_first.get(c, 0)) / 1e9 for c in mine if c in s.cg_last
        ),
    }
    parts = sum(v for k, v in cpu.items() if k != "containers")  # containers ⊂ shims
    share = sum(ev["actions"].values()) / max(ev["all_events"], 1)
    other_shims = sum(v for pid, v in shims.items() if s.shim_cid[pid] not in mine)
    return {
        "sessions": n,
        "workers": workers,
        "items": items,
        "wall_s": wall,
        "items_per_min": 60 * items / wall,
        "cpu_s": cpu,
        "cpu_s_per_item": {k: v / items for k, v in cpu.items()},
        "parts_s": parts,
        "machine_busy_s": (busy1 - busy0) / TICK,
        "sampler_s": s.thread_cpu_s,
        "other_users_shims_s": other_shims,
        "containers_created_per_item": ev["actions"].get("create", 0) / items,
        "execs_per_item": ev["actions"].get("exec_start", 0) / items,
        "docker_actions": ev["actions"],
        "engine_events_all_users": ev["all_events"],
        "engine_events_share": share,
        "engine_pro_rata_s_per_item": (cpu["dockerd"] + cpu["containerd"]) * share / items,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--configs", nargs="+", default=["1x1", "8x4"], help="SESSIONSxWORKERS")
    ap.add_argument("--bank", type=Path, default=BANK)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_item_cpu.json")
    args = ap.parse_args(argv)
    os.environ["SIM_API_KEY"] = "bench"
    # imported up front: a run's driver CPU is then its own work, not this process's imports
    importlib.import_module("orchestrator.session.orchestrate")
    importlib.import_module("orchestrator.runner.inspect_run")
    load0 = os.getloadavg()
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    sim = ctx.Process(target=_serve, args=(str(args.bank), str(ENV), send), daemon=True)
    sim.start()
    url = recv.recv()
    rows = []
    try:
        for cfg in args.configs:
            n, w = (int(x) for x in cfg.split("x"))
            rows.append(measure(n, w, args, url, sim.pid or 0))
            print(f"{cfg} done", file=sys.stderr, flush=True)
    finally:
        sim.terminate()
        sim.join()
    names = list(rows[0]["cpu_s_per_item"])
    head = "  ".join(f"{r['sessions']:>3}x{r['workers']:<3}" for r in rows)
    print(f"CPU s per item     {head}")
    for k in names:
        print(f"  {k:<16} " + "  ".join(f"{r['cpu_s_per_item'][k]:7.3f}" for r in rows))
    for label, key in (
        ("parts (sum)", "parts_s"),
        ("machine busy", "machine_busy_s"),
        ("other shims", "other_users_shims_s"),
    ):
        print(f"  {label:<16} " + "  ".join(f"{r[key] / r['items']:7.3f}" for r in rows))
    for label, key in (
        ("engine pro rata", "engine_pro_rata_s_per_item"),
        ("engine ev. share", "engine_events_share"),
        ("items/min", "items_per_min"),
        ("creates/item", "containers_created_per_item"),
        ("execs/item", "execs_per_item"),
    ):
        print(f"  {label:<16} " + "  ".join(f"{r[key]:7.2f}" for r in rows))
    doc = {
        **header("bench_item_cpu", "bench_item_cpu.py", argv),
        "cpus": os.cpu_count(),
        "items_per_session": args.items,
        "load_avg_before": load0,
        "load_avg_after": os.getloadavg(),
        "runs": rows,
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
