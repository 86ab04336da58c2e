"""Live-session commands: demo, run, resume, sessions, show, sweep."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator._io import check_writable_file
from orchestrator.cli._common import (
    JSON_HELP,
    SubParsers,
    finite_float,
    fmt_table,
    nonnegative_int,
    positive_float,
    positive_int,
    print_json,
)
from orchestrator.errors import ConfigError

_RESUME = (
    "the journal is consistent: `agentcat sessions` lists the session, `agentcat resume "
    "SESSION` continues it"
)
_RESUME_DEMO = "the journal is consistent: `agentcat demo --resume` continues the demo"
_SWEEP_AGAIN = "rows already written stay: the same `agentcat sweep` command continues"


# --------------------------------------------------------------------------- live sessions
def _add_run(sub: SubParsers) -> None:
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
        help="Inspect model string (repeatable: one concurrent session each); default: the "
        "config's models",
    )
    p.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="OpenAI-compatible base URL for --model (default: the provider's own)",
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key for --model (default: the "
        "provider's usual variable, e.g. OPENAI_API_KEY)",
    )
    p.add_argument(
        "--bank", default=None, metavar="DIR", help="item bank folder (default: the config's)"
    )
    p.add_argument(
        "--environments",
        default=None,
        metavar="DIR",
        help="scenario families (default: the config's, else ./environments)",
    )
    p.add_argument(
        "--se",
        type=positive_float,
        default=None,
        metavar="X",
        help="stop when SE ≤ X (default: the config's, else 0.3)",
    )
    p.add_argument(
        "--max-items",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after N items (default: the config's, else no limit)",
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="where session folders go (default: the config's, else ./runs)",
    )
    p.add_argument(
        "--session-id",
        default=None,
        metavar="ID",
        help="fixed id: continue this session if it exists and is unfinished (default: "
        "<time>-<model>)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="concurrent scenario runs (default: the config's, else 2)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_cmd_run, person_fit_cache=True, interrupt_hint=_RESUME)


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.api import run

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


def _add_demo(sub: SubParsers) -> None:
    p = sub.add_parser(
        "demo",
        help="build images, start the simulated agent, run one live adaptive session",
        description="The embedded default: a full adaptive session on the shell-safety "
        "scenarios against a simulated agent of known ability θ (no API key needed). "
        "--bank agentdojo runs live AgentDojo instead (no Docker needed). Interrupted "
        "(Ctrl-C), it continues with `agentcat demo --resume`.",
    )
    p.add_argument(
        "--theta",
        type=_theta_values,
        default=0.8,
        metavar="X[,X…]",
        help="the simulated agent's true θ: one number (every dimension) or one per dimension "
        "of the bank, comma-separated (agentdojo-2d: --theta=0.5,-1 for utility, security)",
    )
    p.add_argument(
        "--bank",
        default="shell-safety",
        metavar="NAME|DIR",
        help="a bank under item_banks/ (shell-safety, agentdojo, agentdojo-full) or its folder",
    )
    p.add_argument("--se", type=positive_float, default=0.3, metavar="X", help="stop when SE ≤ X")
    p.add_argument(
        "--max-items", type=positive_int, default=30, metavar="N", help="stop after N items"
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where the session goes")
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=0,
        metavar="S",
        help="seed of the simulated agent's draws",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also write the θ ± SE trajectory plot there (default: no plot)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="SESSION",
        help="continue an interrupted demo (default without SESSION: the latest one under "
        "--runs-dir) instead of starting a new one",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_cmd_demo, person_fit_cache=True, interrupt_hint=_RESUME_DEMO)


def _theta_values(text: str) -> float | list[float]:
    """``0.8`` → 0.8; ``0.5,-1`` → [0.5, -1.0] (one θ per dimension)."""
    values = [finite_float(v.strip()) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.api import demo, show

    if args.plot:
        check_writable_file(args.plot, "--plot")
    summary = demo(
        theta=args.theta,
        bank=args.bank,
        se=args.se,
        max_items=args.max_items,
        runs_dir=args.runs_dir,
        seed=args.seed,
        progress=not args.json,
        resume=args.resume,
    )
    if args.plot:
        summary["plot"] = show(summary["session"], runs_dir=args.runs_dir, plot=args.plot)["plot"]
    if args.json:
        print_json(summary)
        return 0
    print(_format_summary(summary))
    if args.plot:
        print(f"  trajectory plot: {summary['plot']}")
    print(f"  `agentcat show {summary['session']} --runs-dir {args.runs_dir}` shows it again")
    _print_warnings(summary)
    return 0 if summary["status"] == "completed" else 3


def _add_resume(sub: SubParsers) -> None:
    p = sub.add_parser(
        "resume",
        help="continue an interrupted or paused session",
        description="Continue a session from its journal: completed steps are never re-run, "
        "a run that was in flight is re-run once, and the result equals an uninterrupted "
        "session's. Checks Docker, images and the endpoint first. A demo session gets its "
        "simulated agent back; a completed session just prints its result.",
    )
    p.add_argument("session", metavar="SESSION", help="session id (or its folder)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where the session is")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_cmd_resume, person_fit_cache=True, interrupt_hint=_RESUME)


def _cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.api import resume

    summary = resume(args.session, runs_dir=args.runs_dir, progress=not args.json)
    _print_summaries([summary], args.json)
    return 0 if summary["status"] == "completed" else 3


def _add_sessions(sub: SubParsers) -> None:
    p = sub.add_parser(
        "sessions",
        help="list sessions and their status",
        description="One line per session folder under --runs-dir, newest first: model, "
        "status (running, interrupted, paused, completed; corrupt for a journal that cannot "
        "be read), items, θ, SE and when it last changed.",
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where sessions are")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument(
        "--export-responses",
        metavar="OUT.csv",
        help="write the graded items of the sessions on --bank as subject,item,score "
        "(subject = the session's model) for 'calibrate --update' (default: only list)",
    )
    p.add_argument("--bank", metavar="NAME", help="with --export-responses: the bank's name")
    p.set_defaults(handler=_cmd_sessions)


def _cmd_sessions(args: argparse.Namespace) -> int:
    from orchestrator.api import export_responses, sessions

    if args.export_responses:
        if not args.bank:
            raise ConfigError(
                "--export-responses needs --bank NAME (the bank the sessions ran on)",
                hint="'agentcat sessions' lists each session's bank",
            )
        doc = export_responses(args.export_responses, args.bank, args.runs_dir)
        if args.json:
            print_json({"schema_version": 1, **doc})
        else:
            print(
                f"wrote {doc['path']}: {doc['rows']} responses of {doc['subjects']} model(s) "
                f"from {doc['sessions']} session(s) on {doc['bank']} "
                f"({doc['replaced']} earlier grades replaced by later sessions)"
            )
        return 0
    rows = sessions(args.runs_dir)
    if args.json:
        print_json({"schema_version": 1, "sessions": rows})
    elif not rows:
        print(f"no sessions under {args.runs_dir}")
    else:
        print(
            fmt_table(
                ["session", "model", "status", "items", "theta", "se", "updated"],
                [
                    [
                        r["session"],
                        r.get("model", ""),
                        r["status"],
                        r.get("n_items", ""),
                        *_theta_cells(r),
                        r.get("updated", ""),
                    ]
                    for r in rows
                ],
            )
        )
        for r in rows:
            if r["status"] == "corrupt":
                print(f"warning: {r['session']}: {r['error']}", file=sys.stderr)
    return 0


def _add_show(sub: SubParsers) -> None:
    p = sub.add_parser(
        "show",
        help="a session's result: θ with interval, SE, items, trajectory",
        description="θ with its 95%% interval, SE, the scores per scenario family and every "
        "step (item, score, θ and SE after it). Warns about anything in the journal that does "
        "not add up (scores outside an item's scale, unknown items, a changed or missing bank).",
    )
    p.add_argument("session", metavar="SESSION", help="session id (or its folder)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where the session is")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", metavar="FILE.png", help="also write the θ ± SE trajectory plot there")
    p.set_defaults(handler=_cmd_show, person_fit_cache=True)


def _cmd_show(args: argparse.Namespace) -> int:
    from orchestrator.api import show

    summary = show(args.session, runs_dir=args.runs_dir, plot=args.plot)
    if args.json:
        print_json(summary)
    else:
        print(_format_summary(summary, steps=True))
        if args.plot:
            print(f"trajectory plot: {summary['plot']}")
    _print_warnings(summary)
    return 0


def _theta_cells(row: dict[str, Any]) -> list[Any]:
    """θ and SE cells of a sessions row: numbers, or one per dimension ("+0.51/-0.23")."""
    if "dimensions" in row:
        dims = row["dimensions"].values()
        return [
            "/".join(f"{d['theta']:+.2f}" for d in dims),
            "/".join(f"{d['se']:.2f}" for d in dims),
        ]
    return ["" if row.get(k) is None else row[k] for k in ("theta", "se")]


def _print_summaries(summaries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json({"schema_version": 1, "sessions": summaries})
    else:
        for s in summaries:
            print(_format_summary(s))
    for s in summaries:
        _print_warnings(s)


def _print_warnings(summary: dict[str, Any]) -> None:
    for warning in summary.get("warnings", []):
        print(f"warning: {summary['session']}: {warning}", file=sys.stderr)


def _format_summary(s: dict[str, Any], steps: bool = False) -> str:
    lines = [
        f"session {s['session']}  ({s['model']} on bank {s['bank']})",
        f"  status      {s['status']}" + (f" — {s['stop_reason']}" if s.get("stop_reason") else ""),
    ]
    if "dimensions" in s:  # several dimensions: θ, interval and SE of each
        width = max(len(n) for n in s["dimensions"])
        for i, (name, d) in enumerate(s["dimensions"].items()):
            lo, hi = d["ci95"]
            lines.append(
                f"  {'theta' if i == 0 else '':<11} {name:<{width}} {d['theta']:+.3f}   "
                f"95% interval [{lo:+.3f}, {hi:+.3f}]   SE {d['se']:.3f}"
            )
        names = list(s["dimensions"])
        corr = s["posterior_correlation"]
        pairs = [
            f"{names[i]}–{names[j]} {corr[i][j]:+.2f}"
            for i in range(len(names))
            for j in range(i + 1, len(names))
        ]
        lines.append(f"  correlation {', '.join(pairs)} (posterior)")
    elif s.get("theta") is not None:
        lo, hi = s["ci95"]
        lines.append(f"  theta       {s['theta']:+.3f}   95% interval [{lo:+.3f}, {hi:+.3f}]")
        lines.append(f"  SE          {s['se']:.3f}")
    lines.append(
        f"  items       {s['n_items']}   (runs {s['runs']['total']}, "
        f"errored {s['runs']['errored']})"
    )
    reading = s.get("reading") or {}
    families = s.get("categories_by_family", {})
    if families:
        what = "category count" if set(families) <= set(reading) else "score:count"
        lines.append(f"    {'family':<28} {what}")
    for fam, counts in families.items():
        if fam not in reading:
            cells = " ".join(f"{k}:{v}" for k, v in counts.items())
            lines.append(f"    {fam:<28} {cells}")
            continue
        r = reading[fam]
        seen = " · ".join(f"{lab} {n}" for lab, n in zip(r["labels"], r["observed"], strict=True))
        lines.append(f"    {fam:<28} {seen}")
        if "at_theta" in r:
            at = " · ".join(
                f"{lab} {p:.0%}" for lab, p in zip(r["labels"], r["at_theta"], strict=True)
            )
            lines.append(f"    {'':<28} at θ̂, median item: {at}")
    cost = "" if s.get("cost_usd") is None else f", ${s['cost_usd']:.4f}"
    lines.append(f"  cost        {s['tokens']} tokens{cost}, {s['wall_s']:.1f} s of runs")
    true_theta = s.get("true_theta")
    if true_theta is not None and "dimensions" in s:  # a demo's agent, several dimensions
        dims = s["dimensions"]
        truth = true_theta if isinstance(true_theta, list) else [true_theta] * len(dims)
        cells = []
        for value, (name, d) in zip(truth, dims.items(), strict=True):
            lo, hi = d["ci95"]
            where = "inside" if lo <= value <= hi else "OUTSIDE"
            cells.append(f"{name} {value:+.3f} ({where} its interval)")
        lines.append(f"  true θ of the simulated agent: {', '.join(cells)}")
    elif isinstance(true_theta, (int, float)) and s.get("ci95"):  # a demo's simulated agent
        lo, hi = s["ci95"]
        inside = "inside" if lo <= true_theta <= hi else "OUTSIDE"
        lines.append(f"  true θ of the simulated agent: {true_theta:+.3f} ({inside} the interval)")
    if steps and s.get("trajectory"):
        lines.append("  trajectory")
        table = fmt_table(
            ["step", "item", "score", "label", "θ after", "SE after"],
            [
                [t["step"], t["item"], t["score"], t.get("label") or "", t["theta"], t["se"]]
                for t in s["trajectory"]
            ],
        )
        lines += [f"    {line}" for line in table.splitlines()]
    lines += _format_person_fit(s.get("person_fit"))
    return "\n".join(lines)


def _format_person_fit(fit: dict[str, Any] | None) -> list[str]:
    """The person-fit lines of ``show``: the p-value, and the items behind a flag."""
    if fit is None:
        return []
    if fit.get("p") is None:
        return [f"  person fit  not assessed after {fit['n_items']} items"]
    verdict = (
        f"FLAGGED (p < {fit['alpha']:g}): {fit['message']}"
        if fit["flagged"]
        else f"fits (p ≥ {fit['alpha']:g})"
    )
    lines = [f"  person fit  p = {fit['p']:.3g} after {fit['n_items']} items — {verdict}"]
    if fit["flagged"]:
        for side, words in (("below", "far below θ̂"), ("above", "far above θ̂")):
            if fit[side]:
                cells = ", ".join(
                    f"{r['item']} (score {r['score']}, P = {r['prob']:.2g})" for r in fit[side]
                )
                lines.append(f"    {words}: {cells}")
    return lines


def _add_sweep(sub: SubParsers) -> None:
    p = sub.add_parser(
        "sweep",
        help="run every (or a sampled set of) item(s) non-adaptively; write a response matrix",
        description="Gather calibration data: run the bank's items for each model and append "
        "subject,item,score rows to OUT. Rows already in OUT are not re-run.",
    )
    p.add_argument(
        "--models", nargs="+", required=True, metavar="MODEL", help="Inspect model strings"
    )
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder")
    p.add_argument(
        "--out", required=True, metavar="RESPONSES.csv", help="response CSV to append to"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="limits/retry/workers from this run config (default: built-in defaults)",
    )
    p.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="OpenAI-compatible base URL (default: the provider's own)",
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key (default: the provider's usual one)",
    )
    p.add_argument(
        "--environments",
        default=None,
        metavar="DIR",
        help="scenario families (default: the config's, else ./environments)",
    )
    p.add_argument(
        "--sample",
        type=positive_int,
        default=None,
        metavar="N",
        help="run a random sample of N items per model (default: all)",
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the sample"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="concurrent scenario runs (default: the config's, else 2)",
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="where Inspect logs go (default: the config's, else ./runs)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_cmd_sweep, person_fit_cache=True, interrupt_hint=_SWEEP_AGAIN)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.api import sweep

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
        print_json(report)
    else:
        print(
            f"wrote {report['written']} new row(s) to {report['out']} "
            f"({report['skipped_existing']} already there, {report['errors']} errored)"
        )
    return 0 if report["errors"] == 0 else 3


def add_commands(sub: SubParsers) -> None:
    """Add this group's commands to the top-level parser, in help order."""
    for add in (
        _add_demo,
        _add_run,
        _add_resume,
        _add_sessions,
        _add_show,
        _add_sweep,
    ):
        add(sub)
