"""The ``agentcat`` command line: parse, call the library, print.

Every command is a thin shell over a library function of the same name, so
the Python API and the CLI do the same thing. One error boundary
(:func:`main`) turns :class:`AgentcatError` into one red line plus a hint and
exit code 1 (2 for usage errors); Ctrl-C exits 130; only bugs print a
traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.errors import AgentcatError, ConfigError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- output
def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")


def _fmt_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


# --------------------------------------------------------------------------- estimate
def _add_estimate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "estimate",
        help="ability θ and SE per subject from recorded responses (no model calls)",
        description="Estimate θ and its standard error for every subject in RESPONSES "
        "with the bank's calibrated parameters. No model is called.",
    )
    p.add_argument("responses", metavar="RESPONSES.csv", help="long CSV subject,item,score")
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder (bank.json)")
    p.add_argument("--method", choices=["eap", "map"], default="eap", help="point estimate")
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    p.set_defaults(handler=_cmd_estimate)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from orchestrator.api import estimate

    rows = estimate(args.bank, args.responses, method=args.method)
    if args.json:
        _print_json(rows)
        return 0
    print(
        _fmt_table(
            ["subject", "theta", "se", "n_items"],
            [[r["subject"], r["theta"], r["se"], r["n_items"]] for r in rows],
        )
    )
    return 0


# --------------------------------------------------------------------------- simulate
_CHECKPOINTS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="replay CAT vs random selection vs the full data on recorded responses",
        description="For every subject in RESPONSES, replay an adaptive test using only the "
        "items it has responses for, and compare each strategy step by step with the estimate "
        "from all of its responses: RMSE, Spearman rank correlation across subjects, mean SE, "
        "and the items each subject needs to reach the SE target. No model is called.",
    )
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder (bank.json)")
    p.add_argument(
        "--responses", required=True, metavar="RESPONSES.csv", help="long CSV subject,item,score"
    )
    p.add_argument(
        "--strategy",
        action="append",
        metavar="NAME",
        help="cat (= max_info), random, variance_reduction, or a JSON rule spec; repeat to "
        "compare several (default: cat and random)",
    )
    p.add_argument("--max-items", type=int, metavar="N", help="items per subject (default: all)")
    p.add_argument("--se", type=float, default=0.3, metavar="X", help="SE target (default 0.3)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument(
        "--drop-unknown-items",
        action="store_true",
        help="ignore responses to items the bank lacks instead of failing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    p.add_argument("--plot", metavar="FILE.png", help="write RMSE and rank correlation plots")
    p.set_defaults(handler=_cmd_simulate)


def _progress_printer() -> Callable[[str, int, int], None]:
    """Progress on stderr: a live counter on a terminal, one line per strategy otherwise."""
    tty = sys.stderr.isatty()

    def show(strategy: str, step: int, total: int) -> None:
        if tty:
            end = "\n" if step == total else ""
            print(f"\rsimulate: {strategy} step {step}/{total}", end=end, file=sys.stderr)
        elif step == total:
            print(f"simulate: {strategy} done ({total} steps)", file=sys.stderr)

    return show


def _cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.api import DEFAULT_STRATEGIES, simulate

    if not args.se > 0:  # also rejects NaN
        raise ConfigError(f"--se must be a number > 0; got {args.se}")
    if args.max_items is not None and args.max_items < 1:
        raise ConfigError(f"--max-items must be at least 1; got {args.max_items}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be ≥ 0; got {args.seed}")
    doc = simulate(
        args.bank,
        args.responses,
        strategies=args.strategy or DEFAULT_STRATEGIES,
        max_items=args.max_items,
        se=args.se,
        seed=args.seed,
        drop_unknown_items=args.drop_unknown_items,
        plot=args.plot,
        progress=_progress_printer(),
    )
    if args.json:
        _print_json(doc)
        return 0
    names = list(doc["strategies"])
    print(
        f"bank {doc['bank']}: {doc['n_subjects']} subjects, {doc['n_responses']} responses; "
        f"reference: {doc['reference']}"
    )
    if doc["dropped_items"]:
        print(f"ignored responses to {len(doc['dropped_items'])} items the bank lacks")
    header = ["items", "active"]
    for n in names:
        header += [f"rmse[{n}]", f"rho[{n}]", f"se[{n}]"]
    steps = {n: doc["strategies"][n]["steps"] for n in names}
    total = len(steps[names[0]])
    show = [t for t in _CHECKPOINTS if t < total] + [total]
    rows = []
    for t in show:
        first = steps[names[0]][t - 1]
        row: list[Any] = [t, first["n_active"]]
        for n in names:
            s = steps[n][t - 1]
            row += [s["rmse"], "-" if s["spearman"] is None else s["spearman"], s["mean_se"]]
        rows.append(row)
    print(_fmt_table(header, rows))
    for n in names:
        hit = doc["strategies"][n]["items_to_se"]
        median = "-" if hit["median"] is None else f"{hit['median']:g}"
        print(
            f"{n}: SE ≤ {doc['se_target']:g} reached by {hit['reached']}/{doc['n_subjects']} "
            f"subjects (median {median} items; not within their items or --max-items: "
            f"{hit['never']})"
        )
    if args.plot:
        print(f"plot: {doc['plot']}")
    return 0


# --------------------------------------------------------------------------- calibrate
def _add_calibrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from orchestrator.irt._calibration_defaults import (
        DEFAULT_PRIOR_A,
        DEFAULT_PRIOR_B,
        DEFAULT_PRIOR_GAP,
    )

    p = sub.add_parser(
        "calibrate",
        help="calibrate a GRM item bank from a response CSV",
        description="Fit graded-response-model item parameters (marginal maximum likelihood "
        "with weak priors, EM over a θ quadrature grid) to RESPONSES and write DIR/bank.json "
        "with provenance. Items with one observed category or too few observations are "
        "reported and left out.",
    )
    p.add_argument("responses", metavar="RESPONSES.csv", help="long CSV subject,item,score")
    p.add_argument("--out", required=True, metavar="DIR", help="bank folder to write")
    p.add_argument("--name", help="bank name (default: the folder's name)")
    p.add_argument(
        "--items",
        metavar="ITEMS.csv",
        help="item metadata CSV (column 'item'): K per item and content tags",
    )
    p.add_argument(
        "--tags",
        default="",
        metavar="COL,COL",
        help="columns of --items copied into each item's tags (e.g. suite,item_type)",
    )
    p.add_argument(
        "--k-column",
        metavar="COL",
        help="column of --items holding K (default: n_categories when present, else the "
        "highest observed score + 1)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--n-quad",
        default="auto",
        type=_n_quad,
        metavar="N|auto",
        help="quadrature nodes on [-6, 6]; auto refines the grid to the posterior SDs",
    )
    p.add_argument("--max-iter", type=int, default=2000, help="maximum EM iterations")
    p.add_argument("--tol", type=float, default=1e-4, help="largest parameter change to stop")
    p.add_argument(
        "--prior-a",
        type=_prior,
        default=DEFAULT_PRIOR_A,
        metavar="MU,SD|none",
        help=f"normal prior on log a (default {DEFAULT_PRIOR_A[0]:g},{DEFAULT_PRIOR_A[1]:g})",
    )
    p.add_argument(
        "--prior-b",
        type=_prior,
        default=DEFAULT_PRIOR_B,
        metavar="MU,SD|none",
        help=f"normal prior on thresholds (default {DEFAULT_PRIOR_B[0]:g},{DEFAULT_PRIOR_B[1]:g})",
    )
    p.add_argument(
        "--prior-gap",
        type=_alpha,
        default=DEFAULT_PRIOR_GAP,
        metavar="ALPHA|none",
        help="gap^ALPHA prior on each threshold gap, keeps rare middle categories from "
        f"collapsing (default {DEFAULT_PRIOR_GAP})",
    )
    p.add_argument("--min-obs", type=int, default=5, help="fewest observations to fit an item")
    p.add_argument(
        "--scale-label",
        action="append",
        metavar="LABEL",
        help="label of category 0, 1, … (repeat once per category, lowest first)",
    )
    p.add_argument("--description", default="", help="free text stored in bank.json")
    p.add_argument("--force", action="store_true", help="overwrite an existing bank.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the fit summary as JSON")
    p.set_defaults(handler=_cmd_calibrate)


def _n_quad(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto'; got {text!r}") from None
    if n < 11:
        raise argparse.ArgumentTypeError(f"needs at least 11 nodes; got {n}")
    return n


def _prior(text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "none":
        return None
    try:
        mu, sd = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MU,SD or 'none'; got {text!r}") from None
    if not sd > 0:
        raise argparse.ArgumentTypeError(f"the prior's SD must be > 0; got {sd:g}")
    return (mu, sd)


def _alpha(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number >= 0 or 'none'; got {text!r}"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"ALPHA must be >= 0; got {value:g}")
    return value


class _ProgressPrinter:
    """One line per second at most on stderr (plus the first iteration)."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.last = -1e9

    def __call__(self, info: Any) -> None:
        from orchestrator.irt.calibrate import format_progress

        if info.iteration == 1 or info.elapsed - self.last >= self.every:
            self.last = info.elapsed
            print(format_progress(info), file=sys.stderr, flush=True)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import warnings

    from orchestrator.api import calibrate

    tags = [c.strip() for c in args.tags.split(",") if c.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = calibrate(
            args.responses,
            args.out,
            name=args.name,
            items=args.items,
            tag_columns=tags,
            k_column=args.k_column,
            device=args.device,
            n_quad=args.n_quad,
            max_iter=args.max_iter,
            tol=args.tol,
            prior_a=args.prior_a,
            prior_b=args.prior_b,
            prior_gap=args.prior_gap,
            min_obs=args.min_obs,
            scale_labels=args.scale_label,
            description=args.description,
            force=args.force,
            progress=None if args.quiet else _ProgressPrinter(),
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        _print_json(summary)
        return 0
    print(f"wrote {summary['bank']}")
    print(
        _fmt_table(
            [
                "items",
                "excluded",
                "subjects",
                "observations",
                "log-lik",
                "iterations",
                "converged",
                "seconds",
                "device",
            ],
            [
                [
                    summary["n_items"],
                    summary["n_excluded"],
                    summary["n_subjects"],
                    summary["n_observations"],
                    summary["log_likelihood"],
                    summary["iterations"],
                    summary["converged"],
                    summary["wall_time_s"],
                    summary["device"],
                ]
            ],
        )
    )
    for ex in summary["excluded"][:10]:
        print(f"excluded {ex['id']}: {ex['reason']}")
    if len(summary["excluded"]) > 10:
        print(f"… and {len(summary['excluded']) - 10} more (see calibration.excluded_items)")
    collapsed = summary["collapsed_categories"]
    if collapsed:
        print(
            f"note: {len(collapsed)} item(s) have observed categories that the fit gives ~0 "
            "probability (thresholds merged: the categories are disordered with respect to θ), "
            f"e.g. {next(iter(collapsed))}; consider merging those levels "
            "(calibration.details.collapsed_categories)"
        )
    return 0


# --------------------------------------------------------------------------- health
def _add_health(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "health",
        help="psychometric health report of an item bank (HTML + JSON)",
        description="Check a bank against a response matrix: test information and difficulty "
        "gaps, low-discrimination and defective items, merged thresholds, item misfit, "
        "redundant item pairs (Q3) and aberrant subjects (l_z). Writes an HTML page and its "
        "JSON twin.",
    )
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder (bank.json)")
    p.add_argument(
        "--responses", required=True, metavar="RESPONSES.csv", help="long CSV subject,item,score"
    )
    p.add_argument(
        "--out", required=True, metavar="REPORT.html", help="HTML page; REPORT.json goes beside it"
    )
    p.add_argument("--figures", metavar="DIR", help="also write each figure as a PNG here")
    p.add_argument("--se-target", type=float, metavar="SE", help="SE the bank should reach (0.3)")
    p.add_argument("--lz-cut", type=float, metavar="LZ", help="flag subjects below this l_z (-2)")
    p.add_argument(
        "--q3-simulations",
        type=int,
        metavar="N",
        help="data sets simulated for the Q3 critical value (50; 0 = only the 0.2 rule)",
    )
    p.add_argument("--json", action="store_true", help="also print the JSON document to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_cmd_health)


def _stage_printer() -> Callable[[str], None]:
    start = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return say


def _cmd_health(args: argparse.Namespace) -> int:
    from orchestrator.api import health

    overrides = {
        k: v
        for k, v in (
            ("se_target", args.se_target),
            ("lz_cut", args.lz_cut),
            ("q3_bootstrap", args.q3_simulations),
        )
        if v is not None
    }
    doc = health(
        args.bank,
        args.responses,
        args.out,
        thresholds=overrides,
        figures_dir=args.figures,
        progress=None if args.quiet else _stage_printer(),
    )
    if args.json:
        _print_json(doc)
        return 0
    for line in doc["summary"]:
        print(f"- {line}")
    json_path = Path(args.out).with_suffix(".json")
    print(f"wrote {args.out} and {json_path}")
    return 0


# --------------------------------------------------------------------------- images
def _add_images(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("images", help="build, list and clean the sandbox images and containers")
    isub = p.add_subparsers(dest="images_command", metavar="ACTION")
    isub.required = True
    b = isub.add_parser(
        "build",
        help="build every scenario image offline (cached by build-context hash)",
        description="Build the Debian base (debootstrap when no registry answers), the "
        "shared scenario base and one image per scenario family. Unchanged contexts are reused.",
    )
    b.add_argument("--environments", default="environments", metavar="DIR")
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
    b.add_argument("--json", action="store_true")
    b.set_defaults(handler=_cmd_images_build)
    ls = isub.add_parser("list", help="images agentcat built")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_images_list)
    pr = isub.add_parser(
        "prune", help="remove leftover sandbox containers (label agentcat.managed=1)"
    )
    pr.add_argument("--session", default=None, help="only containers of this session")
    pr.add_argument("--images", action="store_true", help="also remove agentcat's images")
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
        _print_json({"schema_version": 1, "images": rows})
    else:
        print(
            _fmt_table(
                ["image", "status", "seconds"],
                [[r["image"], r["status"], r["seconds"]] for r in rows],
            )
        )
    return 0


def _cmd_images_list(args: argparse.Namespace) -> int:
    from orchestrator.api import list_images

    rows = list_images()
    if args.json:
        _print_json({"schema_version": 1, "images": rows})
    else:
        print(
            _fmt_table(
                ["image", "context hash", "size MB", "created"],
                [[r["image"], r["context_hash"], r["size_mb"], r["created"]] for r in rows],
            )
        )
    return 0


def _cmd_images_prune(args: argparse.Namespace) -> int:
    from orchestrator.api import prune

    out = prune(session=args.session, images=args.images)
    print(f"removed {len(out['containers'])} container(s) and {len(out['images'])} image(s)")
    return 0


# --------------------------------------------------------------------------- live sessions
def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="evaluate model(s) adaptively, scenario by scenario, until SE is small enough",
        description="Run a live adaptive session per model (concurrently). Every step is "
        "journalled; an interrupted session continues with `agentcat resume`.",
    )
    p.add_argument("--config", metavar="FILE", help="run config (YAML), e.g. configs/demo.yaml")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="MODEL",
        help="Inspect model string (repeatable: one concurrent session each)",
    )
    p.add_argument("--base-url", default=None, help="OpenAI-compatible base URL for --model")
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key for --model",
    )
    p.add_argument("--bank", default=None, metavar="DIR")
    p.add_argument("--environments", default=None, metavar="DIR")
    p.add_argument("--se", type=float, default=None, help="stop when SE ≤ this (default 0.3)")
    p.add_argument("--max-items", type=int, default=None)
    p.add_argument("--runs-dir", default=None, metavar="DIR")
    p.add_argument(
        "--session-id",
        default=None,
        help="fixed id: continue this session if it exists and is unfinished",
    )
    p.add_argument("--workers", type=int, default=None, help="concurrent scenario runs")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.api import run

    if args.se is not None and not args.se > 0:
        raise ConfigError(f"--se must be > 0; got {args.se}")
    if args.max_items is not None and args.max_items < 1:
        raise ConfigError(f"--max-items must be ≥ 1; got {args.max_items}")
    models = None
    if args.model:  # empty strings (e.g. from compose variables) mean "not given"
        models = [
            {"model": m, "base_url": args.base_url or None, "api_key_env": args.api_key_env or None}
            for m in args.model
        ]
    summaries = run(
        args.config,
        models=models,
        bank=args.bank,
        environments=args.environments,
        se=args.se,
        max_items=args.max_items,
        runs_dir=args.runs_dir,
        session_id=args.session_id,
        workers=args.workers,
        progress=not args.json,
    )
    _print_summaries(summaries, args.json)
    return 0 if all(s["status"] == "completed" for s in summaries) else 3


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="build images, start the simulated agent, run one live adaptive session",
        description="The embedded default: a full adaptive session on the shell-safety "
        "scenarios against a simulated agent of known ability θ (no API key needed).",
    )
    p.add_argument("--theta", type=float, default=0.8, help="the simulated agent's true θ")
    p.add_argument("--se", type=float, default=0.3)
    p.add_argument("--max-items", type=int, default=30)
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, metavar="FILE.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.api import demo, show

    summary = demo(
        theta=args.theta,
        se=args.se,
        max_items=args.max_items,
        runs_dir=args.runs_dir,
        seed=args.seed,
        progress=not args.json,
    )
    if args.plot:
        show(summary["session"], runs_dir=args.runs_dir, plot=args.plot)
    if args.json:
        _print_json(summary)
        return 0
    print(_format_summary(summary))
    lo, hi = summary["ci95"] or (float("nan"), float("nan"))
    inside = "inside" if lo <= summary["true_theta"] <= hi else "OUTSIDE"
    print(f"  true θ of the simulated agent: {summary['true_theta']:+.3f} ({inside} the interval)")
    print(f"  `agentcat show {summary['session']} --runs-dir {args.runs_dir}` shows it again")
    return 0 if summary["status"] == "completed" else 3


def _add_resume(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("resume", help="continue an interrupted or paused session")
    p.add_argument("session", metavar="SESSION", help="session id (or its folder)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_resume)


def _cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.api import resume

    summary = resume(args.session, runs_dir=args.runs_dir, progress=not args.json)
    _print_summaries([summary], args.json)
    return 0 if summary["status"] == "completed" else 3


def _add_sessions(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sessions", help="list sessions and their status")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_sessions)


def _cmd_sessions(args: argparse.Namespace) -> int:
    from orchestrator.api import sessions

    rows = sessions(args.runs_dir)
    if args.json:
        _print_json({"schema_version": 1, "sessions": rows})
    elif not rows:
        print(f"no sessions under {args.runs_dir}")
    else:
        print(
            _fmt_table(
                ["session", "model", "status", "items", "theta", "se", "updated"],
                [
                    [
                        r["session"],
                        r.get("model", ""),
                        r["status"],
                        r.get("n_items", ""),
                        "" if r.get("theta") is None else r["theta"],
                        "" if r.get("se") is None else r["se"],
                        r.get("updated", ""),
                    ]
                    for r in rows
                ],
            )
        )
    return 0


def _add_show(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("show", help="a session's result: θ with interval, SE, items, trajectory")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png", help="write the θ ± SE trajectory plot")
    p.set_defaults(handler=_cmd_show)


def _cmd_show(args: argparse.Namespace) -> int:
    from orchestrator.api import show

    summary = show(args.session, runs_dir=args.runs_dir, plot=args.plot)
    if args.json:
        _print_json(summary)
    else:
        print(_format_summary(summary))
        if args.plot:
            print(f"trajectory plot: {args.plot}")
    return 0


def _print_summaries(summaries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _print_json({"schema_version": 1, "sessions": summaries})
        return
    for s in summaries:
        print(_format_summary(s))


def _format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"session {s['session']}  ({s['model']} on bank {s['bank']})",
        f"  status      {s['status']}" + (f" — {s['stop_reason']}" if s.get("stop_reason") else ""),
    ]
    if s.get("theta") is not None:
        lo, hi = s["ci95"]
        lines.append(f"  theta       {s['theta']:+.3f}   95% interval [{lo:+.3f}, {hi:+.3f}]")
        lines.append(f"  SE          {s['se']:.3f}")
    lines.append(
        f"  items       {s['n_items']}   (runs {s['runs']['total']}, "
        f"errored {s['runs']['errored']})"
    )
    for fam, counts in s.get("categories_by_family", {}).items():
        cells = " ".join(f"{k}:{v}" for k, v in counts.items())
        lines.append(f"    {fam:<28} {cells}")
    cost = "" if s.get("cost_usd") is None else f", ${s['cost_usd']:.4f}"
    lines.append(f"  cost        {s['tokens']} tokens{cost}, {s['wall_s']:.1f} s of runs")
    return "\n".join(lines)


def _add_sweep(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sweep",
        help="run every (or a sampled set of) item(s) non-adaptively; write a response matrix",
        description="Gather calibration data: run the bank's items for each model and append "
        "subject,item,score rows to OUT. Rows already in OUT are not re-run.",
    )
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    p.add_argument("--bank", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="RESPONSES.csv")
    p.add_argument("--config", default=None, metavar="FILE", help="limits/retry/workers from here")
    p.add_argument("--base-url", default=None)
    p.add_argument("--api-key-env", default=None, metavar="VAR")
    p.add_argument("--environments", default=None, metavar="DIR")
    p.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="run a random sample of N items per model (default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--runs-dir", default=None, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.api import sweep

    if args.sample is not None and args.sample < 1:
        raise ConfigError(f"--sample must be ≥ 1; got {args.sample}")
    report = sweep(
        args.models,
        args.bank,
        args.out,
        config=args.config,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        environments=args.environments,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
        runs_dir=args.runs_dir,
        progress=not args.json,
    )
    if args.json:
        _print_json(report)
    else:
        print(
            f"wrote {report['written']} new row(s) to {report['out']} "
            f"({report['skipped_existing']} already there, {report['errors']} errored)"
        )
    return 0 if report["errors"] == 0 else 3


def _add_sim_server(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim-server",
        help="serve a simulated agent of ability θ (OpenAI-compatible chat completions)",
        description="A real HTTP server that plays an agent of ability θ: it recognises the "
        "scenario, draws the outcome from the bank's model at θ and replays that category's "
        "reference solution as tool calls. Model names select personas: NAME from --persona, "
        "or theta_<x> for any x.",
    )
    p.add_argument("--bank", required=True, metavar="DIR")
    p.add_argument("--theta", type=float, default=None, help="θ for any other model name")
    p.add_argument("--persona", action="append", default=[], metavar="NAME=THETA")
    p.add_argument("--environments", default="environments", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="require this key (read from the variable) as a Bearer token",
    )
    for fault in ("429", "500", "slow", "malformed", "drop"):
        p.add_argument(
            f"--rate-{fault}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"fraction of requests answered with the '{fault}' fault",
        )
    p.add_argument("--slow-s", type=float, default=30.0, help="delay of a 'slow' answer")
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
        faults={**faults, "slow_s": args.slow_s, "seed": args.seed},
        log=args.log,
    )
    names = ", ".join(sorted(server.agent.personas)) or "theta_<x>"
    print(
        f"simulated agent on {server.url} (personas: {names}; "
        f"{len(server.agent.scripts)} scenarios)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


# --------------------------------------------------------------------------- scenarios
def _add_scenarios(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    ls.add_argument("--environments", default="environments", metavar="DIR")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_scenarios_list)
    bk = ssub.add_parser(
        "bank",
        help="write a provisional item bank derived from the difficulty knobs",
        description="Write OUT/bank.json with one item per variant; parameters follow a "
        "fixed rule over the knob scores (marked provisional, not calibrated).",
    )
    bk.add_argument("--environments", default="environments", metavar="DIR")
    bk.add_argument("--out", default="item_banks/shell-safety", metavar="DIR")
    bk.add_argument("--name", default="shell-safety")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(handler=_cmd_scenarios_bank)


def _cmd_scenarios_list(args: argparse.Namespace) -> int:
    from orchestrator.api import scenarios

    rows = scenarios(args.environments)
    if args.json:
        _print_json(rows)
        return 0
    print(
        _fmt_table(
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

    doc = provisional_bank(args.environments, args.out, name=args.name)
    if args.json:
        _print_json(doc)
    else:
        print(f"wrote {doc['path']} ({doc['n_items']} items, provisional parameters)")
    return 0


# --------------------------------------------------------------------------- main
def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="agentcat: adaptive (IRT/CAT) evaluation of agentic AI safety.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (
        _add_demo,
        _add_run,
        _add_resume,
        _add_sessions,
        _add_show,
        _add_sweep,
        _add_estimate,
        _add_simulate,
        _add_calibrate,
        _add_health,
        _add_images,
        _add_scenarios,
        _add_sim_server,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "agentcat") -> int:
    """Run the CLI; returns the exit code (tests call this directly)."""
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    previous = _sigterm_as_interrupt()
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        _print_error(exc)
        return 2
    except AgentcatError as exc:
        _print_error(exc)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt() -> Any:
    """`docker stop` sends SIGTERM: treat it like Ctrl-C, so runs are cancelled, their
    sandboxes removed and the journal left consistent (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _print_error(exc: AgentcatError) -> None:
    red, bold, reset = ("\033[31m", "\033[1m", "\033[0m") if sys.stderr.isatty() else ("", "", "")
    first, *rest = exc.message.splitlines() or [""]
    print(f"{red}{bold}error:{reset} {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)
    if exc.hint:
        print(f"{bold}hint:{reset} {exc.hint}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
