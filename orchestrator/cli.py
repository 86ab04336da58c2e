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


# --------------------------------------------------------------------------- main
def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="agentcat: adaptive (IRT/CAT) evaluation of agentic AI safety.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_estimate, _add_images):
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
