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
import sys
from collections.abc import Callable, Sequence
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
            f"subjects (median {median} items; never within their items: {hit['never']})"
        )
    if args.plot:
        print(f"plot: {doc['plot']}")
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
    for add in (_add_estimate, _add_simulate):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "agentcat") -> int:
    """Run the CLI; returns the exit code (tests call this directly)."""
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
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
