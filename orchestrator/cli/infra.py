"""Infrastructure commands: images, scenarios, sim-server."""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli._common import (
    JSON_HELP,
    SubParsers,
    embedding_cache,
    finite_float,
    fmt_table,
    nonnegative_int,
    port,
    positive_float,
    print_json,
    probability,
)


# --------------------------------------------------------------------------- images
def _add_images(sub: SubParsers) -> None:
    p = sub.add_parser("images", help="build, list and clean the sandbox images and containers")
    isub = p.add_subparsers(dest="images_command", metavar="ACTION")
    isub.required = True
    b = isub.add_parser(
        "build",
        help="build every scenario image offline (cached by build-context hash)",
        description="Build the Debian base (debootstrap when no registry answers), the "
        "shared scenario base and one image per scenario family. Unchanged contexts are reused.",
    )
    b.add_argument(
        "--environments", default="environments", metavar="DIR", help="scenario families"
    )
    b.add_argument(
        "--base-image",
        default=None,
        metavar="IMAGE",
        help="Debian base to build on (default: debian:bookworm-slim, else a local "
        "debootstrap base)",
    )
    b.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME",
        help="build only this family (repeatable)",
    )
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.add_argument("--json", action="store_true", help=JSON_HELP)
    b.set_defaults(handler=_cmd_images_build)
    ls = isub.add_parser(
        "list",
        help="images agentcat built",
        description="Images agentcat built (labels agentcat.image.*) and their context hash.",
    )
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_cmd_images_list)
    pr = isub.add_parser(
        "prune",
        help="remove leftover sandboxes whose owner process is gone",
        description="Remove sandbox containers (label agentcat.role=sandbox) whose owner "
        "process has exited; a live process's sandboxes, and those whose owner cannot be "
        "checked from here, are kept.",
    )
    pr.add_argument(
        "--session",
        default=None,
        metavar="ID",
        help="only containers of this session (default: every session's)",
    )
    pr.add_argument(
        "--images",
        action="store_true",
        help="also remove the scenario images (namespace agentcat) that no container uses",
    )
    pr.set_defaults(handler=_cmd_images_prune)


def _cmd_images_build(args: argparse.Namespace) -> int:
    from orchestrator.api import build_images

    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows = build_images(
        args.environments,
        base_image=args.base_image,
        families=args.family,
        force=args.force,
        progress=progress,
    )
    if args.json:
        print_json({"schema_version": 1, "images": rows})
    else:
        print(
            fmt_table(
                ["image", "status", "seconds"],
                [[r["image"], r["status"], r["seconds"]] for r in rows],
            )
        )
    return 0


def _cmd_images_list(args: argparse.Namespace) -> int:
    from orchestrator.api import list_images

    rows = list_images()
    if args.json:
        print_json({"schema_version": 1, "images": rows})
    else:
        print(
            fmt_table(
                ["image", "kind", "context hash", "size MB", "created"],
                [
                    [r["image"], r["kind"], r["context_hash"], r["size_mb"], r["created"]]
                    for r in rows
                ],
            )
        )
    return 0


def _cmd_images_prune(args: argparse.Namespace) -> int:
    from orchestrator.api import prune

    out = prune(session=args.session, images=args.images)
    print(f"removed {len(out['containers'])} container(s) and {len(out['images'])} image(s)")
    if out["kept_containers"] or out["kept_images"]:
        print(
            f"kept {len(out['kept_containers'])} sandbox(es) whose owner runs (or cannot be "
            f"checked from here) and {len(out['kept_images'])} image(s) in use"
        )
    return 0


def _add_sim_server(sub: SubParsers) -> None:
    p = sub.add_parser(
        "sim-server",
        help="serve a simulated agent of ability θ (OpenAI-compatible chat completions)",
        description="A real HTTP server that plays an agent of ability θ: it recognises the "
        "scenario, draws the outcome from the bank's model at θ and replays that category's "
        "reference solution as tool calls. Model names select personas: NAME from --persona, "
        "theta_<x> for any x (theta_<x>_<y> on a bank of two dimensions), or the hostile "
        "escape, destroyer, garbage, slow and echo. A persona may misfit on purpose "
        "(one-dimensional banks): NAME=THETA:TYPE[:k=v,...] with TYPE sandbagger, eval_aware, "
        "random_responder or gamer (e.g. g=1:gamer:k=3).",
    )
    p.add_argument("--bank", required=True, metavar="DIR", help="scenario bank (the outcome model)")
    p.add_argument(
        "--theta",
        type=finite_float,
        default=None,
        help="θ for any other model name (default: other names are refused)",
    )
    p.add_argument(
        "--persona",
        action="append",
        default=[],
        metavar="NAME=THETA[:TYPE]",
        help="a model name and its θ (repeatable; default: none, only theta_<x> names); on a "
        "bank of several dimensions one θ per dimension, comma-separated: careful=1.5,0.2",
    )
    p.add_argument(
        "--environments",
        default="environments",
        metavar="DIR",
        help="scenario families (their reference solutions are replayed)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=port, default=8765, help="TCP port (0: any free one)")
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the outcome draws"
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="require this key (read from the variable) as a Bearer token",
    )
    for fault in ("429", "500", "slow", "malformed", "drop"):
        p.add_argument(
            f"--rate-{fault}",
            type=probability,
            default=0.0,
            metavar="P",
            help=f"fraction of requests answered with the '{fault}' fault",
        )
    p.add_argument(
        "--slow-s",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds a 'slow' answer waits",
    )
    p.add_argument(
        "--echo-key",
        action="store_true",
        help="401 answers echo the presented API key (a hostile endpoint)",
    )
    p.add_argument("--log", action="store_true", help="log every request to stderr")
    p.set_defaults(handler=_cmd_sim_server)


def _cmd_sim_server(args: argparse.Namespace) -> int:
    from orchestrator.api import sim_server

    faults = {
        f"rate_{k}": getattr(args, f"rate_{k}") for k in ("429", "500", "slow", "malformed", "drop")
    }
    server = sim_server(
        args.bank,
        theta=args.theta,
        personas=args.persona,
        environments=args.environments,
        host=args.host,
        port=args.port,
        seed=args.seed,
        api_key_env=args.api_key_env,
        faults={**faults, "slow_s": args.slow_s, "echo_key": args.echo_key, "seed": args.seed},
        log=args.log,
    )
    names = ", ".join(sorted(server.agent.personas)) or "theta_<x>"
    print(
        f"simulated agent on {server.url} (personas: {names}; "
        f"{len(server.agent.scripts) + sum(len(p.items) for p in server.agent.players)} "
        "items)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


# --------------------------------------------------------------------------- scenarios
def _add_scenarios(sub: SubParsers) -> None:
    p = sub.add_parser(
        "scenarios", help="list/validate scenario families; write a provisional bank"
    )
    ssub = p.add_subparsers(dest="scenarios_command", metavar="ACTION")
    ssub.required = True
    ls = ssub.add_parser(
        "list",
        help="validate every family.yaml and list its items",
        description="Load and validate every scenario family (templates rendered, checks "
        "built) and list the items with their knob settings.",
    )
    ls.add_argument(
        "--environments", default="environments", metavar="DIR", help="scenario families"
    )
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_cmd_scenarios_list)
    bk = ssub.add_parser(
        "bank",
        help="write the scenario bank (knob rule; new variants of a learned bank get a prior)",
        description="Write OUT/bank.json with one item per variant. While the bank has "
        "learned nothing, parameters follow a fixed rule over the knob scores (marked "
        "provisional). Once it has been updated from responses, its items are kept and new "
        "variants join it as provisional items: predicted from their text by a model trained "
        "on the bank's calibrated items (with the 'text' extra and at least 10 of them), else "
        "by the knob rule. The bank records which rule gave which items.",
    )
    bk.add_argument(
        "--environments", default="environments", metavar="DIR", help="scenario families"
    )
    bk.add_argument(
        "--out", default="item_banks/shell-safety", metavar="DIR", help="bank folder to write"
    )
    bk.add_argument("--name", default="shell-safety", help="the bank's name")
    bk.add_argument("--json", action="store_true", help=JSON_HELP)
    bk.set_defaults(handler=_cmd_scenarios_bank)


def _cmd_scenarios_list(args: argparse.Namespace) -> int:
    from orchestrator.api import scenarios

    rows = scenarios(args.environments)
    if args.json:
        print_json(rows)
        return 0
    print(
        fmt_table(
            ["item", "risk", "difficulty", "knobs"],
            [
                [
                    r["item"],
                    r["risk"],
                    r["difficulty"],
                    " ".join(f"{k}={v}" for k, v in r["knobs"].items()),
                ]
                for r in rows
            ],
        )
    )
    return 0


def _cmd_scenarios_bank(args: argparse.Namespace) -> int:
    from orchestrator.api import provisional_bank

    doc = provisional_bank(args.environments, args.out, name=args.name, cache_dir=embedding_cache())
    if args.json:
        print_json(doc)
    elif doc["mode"] == "knob-rule":
        print(f"wrote {doc['path']} ({doc['n_items']} items, provisional knob-rule parameters)")
    else:
        print(
            f"wrote {doc['path']} ({doc['n_items']} items): kept the learned items, "
            f"{len(doc['added'])} new variant(s) added as provisional"
            + (f" by {doc['rule']} ({doc['reason']})" if doc["added"] else "")
            + (f"; removed {len(doc['removed'])} without a variant" if doc["removed"] else "")
        )
        for iid, rule in doc["added"].items():
            print(f"  + {iid}: {rule}")
    return 0


def _add_inspect_bank(sub: SubParsers) -> None:
    p = sub.add_parser(
        "inspect-bank",
        help="write a provisional bank of an Inspect task's samples (inspect_task items)",
        description="Make an Inspect eval adaptive, step 1: one item per sample of TASK, each "
        "mapping the task's Score to a category through the given score map, with provisional "
        "parameters. Then: agentcat sweep → agentcat calibrate --live-from → agentcat run.",
    )
    p.add_argument(
        "task", metavar="TASK", help="package/task (e.g. inspect_evals/gsm8k) or file.py@task"
    )
    p.add_argument(
        "-T",
        dest="task_args",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a task argument; a JSON value is parsed, anything else is a string "
        "(-T limit=10 -T ids=[1,2] -T mode=no)",
    )
    p.add_argument(
        "--score-map",
        required=True,
        metavar="FILE.json",
        help='{"cases": [{"value": <Score.value>, "category": k}, ...]}',
    )
    p.add_argument("--out", required=True, metavar="DIR", help="bank folder to write")
    p.add_argument("--name", default=None, help="bank name (default: the folder's name)")
    p.add_argument("--prefix", default="", help="put before each sample id to make item ids")
    p.add_argument(
        "--labels",
        default=None,
        metavar="L0,L1,…",
        help="the categories' labels, lowest first (e.g. 'task failed,task done')",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing bank.json")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_cmd_inspect_bank)


def _cmd_inspect_bank(args: argparse.Namespace) -> int:
    import json

    from orchestrator.api import inspect_task_bank
    from orchestrator.errors import ConfigError

    task_args = {}
    for pair in args.task_args:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-T takes NAME=VALUE; got {pair!r}")
        try:
            task_args[key] = json.loads(value)
        except ValueError:
            task_args[key] = value
    doc = inspect_task_bank(
        args.task,
        args.out,
        args.score_map,
        task_args=task_args,
        name=args.name,
        prefix=args.prefix,
        labels=args.labels.split(",") if args.labels else None,
        force=args.force,
    )
    if args.json:
        print_json(doc)
    else:
        print(f"wrote {doc['path']} ({doc['n_items']} items, provisional parameters)")
    return 0


def add_commands(sub: SubParsers) -> None:
    """Add this group's commands to the top-level parser, in help order."""
    for add in (
        _add_images,
        _add_inspect_bank,
        _add_scenarios,
        _add_sim_server,
    ):
        add(sub)
