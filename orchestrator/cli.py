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


def _progress_printer() -> Callable[[str], None]:
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
        progress=None if args.quiet else _progress_printer(),
    )
    if args.json:
        _print_json(doc)
        return 0
    for line in doc["summary"]:
        print(f"- {line}")
    json_path = Path(args.out).with_suffix(".json")
    print(f"wrote {args.out} and {json_path}")
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
    for add in (_add_estimate, _add_health):
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
