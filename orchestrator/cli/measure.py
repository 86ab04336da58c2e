"""Measurement commands on recorded data (no model calls): estimate, simulate,
calibrate, health, validity.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cli._common import (
    JSON_HELP,
    SubParsers,
    embedding_cache,
    fmt_table,
    nonnegative_int,
    positive_float,
    positive_int,
    print_json,
    probability,
)
from orchestrator.errors import ConfigError


# --------------------------------------------------------------------------- estimate
def _add_estimate(sub: SubParsers) -> None:
    p = sub.add_parser(
        "estimate",
        help="ability θ and SE per subject from recorded responses (no model calls)",
        description="Estimate θ and its standard error for every subject in RESPONSES "
        "with the bank's calibrated parameters. No model is called.",
    )
    p.add_argument("responses", metavar="RESPONSES.csv", help="long CSV subject,item,score")
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder (bank.json)")
    p.add_argument(
        "--method",
        choices=["eap", "map"],
        default="eap",
        help="point estimate: posterior mean (eap) or mode (map)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help=JSON_HELP + " (schema_version 1; the per-subject rows are its 'subjects' list, "
        "which was the whole output before versioning)",
    )
    p.add_argument(
        "--lapse",
        type=float,
        default=0.0,
        metavar="EPS",
        help="robust estimate: lapse rate of the likelihood (default 0, the plain GRM)",
    )
    p.set_defaults(handler=_cmd_estimate)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from orchestrator.api import estimate

    doc = estimate(args.bank, args.responses, method=args.method, lapse=args.lapse)
    _note_excluded(doc["excluded_items"])
    if args.json:
        print_json(doc)
        return 0
    rows = doc["subjects"]
    if rows and "dimensions" in rows[0]:  # several dimensions: θ and SE of each
        names = list(rows[0]["dimensions"])
        header = ["subject", *(f"{c}[{n}]" for n in names for c in ("theta", "se")), "n_items"]
        table = [
            [
                r["subject"],
                *(r["dimensions"][n][c] for n in names for c in ("theta", "se")),
                r["n_items"],
            ]
            for r in rows
        ]
        print(fmt_table(header, table))
        return 0
    print(
        fmt_table(
            ["subject", "theta", "se", "n_items"],
            [[r["subject"], r["theta"], r["se"], r["n_items"]] for r in doc["subjects"]],
        )
    )
    return 0


def _note_excluded(excluded: list[dict[str, Any]]) -> None:
    """One stderr line on the responses left out because the bank's calibration excluded
    their items (estimate, simulate and health say it the same way)."""
    if excluded:
        ids = ", ".join(str(e["id"]) for e in excluded[:3]) + (", …" if len(excluded) > 3 else "")
        n_obs = sum(int(e["n_obs"]) for e in excluded)
        print(
            f"note: left out {n_obs} response(s) to {len(excluded)} item(s) the bank's "
            f"calibration excluded ({ids}; see calibration.excluded_items in bank.json)",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- simulate
_CHECKPOINTS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def _add_simulate(sub: SubParsers) -> None:
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
    p.add_argument(
        "--max-items", type=positive_int, metavar="N", help="items per subject (default: all)"
    )
    p.add_argument(
        "--se", type=positive_float, default=0.3, metavar="X", help="SE target (default 0.3)"
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, metavar="S", help="random seed (default 0)"
    )
    p.add_argument(
        "--drop-unknown-items",
        action="store_true",
        help="ignore responses to items the bank lacks instead of failing (responses to "
        "items the bank's calibration excluded are always left out, with a note)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument(
        "--plot", metavar="FILE.png", help="also write RMSE and rank correlation plots there"
    )
    p.add_argument(
        "--per-dimension",
        metavar="TAG",
        help="bank of several dimensions: also run a 1-D CAT (and random order) per dimension "
        "on the items of the TAG value that loads on it (e.g. item_type)",
    )
    p.add_argument(
        "--aberrant",
        action="append",
        default=[],
        metavar="TYPE[:k=v,...]",
        help="make a share of the subjects misfit on purpose: sandbagger, eval_aware, "
        "random_responder or gamer (e.g. gamer:k=3); repeat for several types; results are "
        "reported per group, errors against each subject's clean full-data estimate",
    )
    p.add_argument(
        "--aberrant-share",
        type=float,
        default=0.2,
        metavar="F",
        help="share of the subjects per aberrant type (default 0.2)",
    )
    p.add_argument(
        "--aberrant-add",
        action="store_true",
        help="add aberrant copies of the chosen subjects (<id>~<type>) instead of replacing them",
    )
    p.add_argument(
        "--lapse",
        type=float,
        default=0.0,
        metavar="EPS",
        help="robust estimate: lapse rate of the likelihood, P = EPS/K + (1-EPS) P_GRM "
        "(default 0, the plain GRM)",
    )
    p.add_argument(
        "--person-fit",
        action="store_true",
        help="person-fit p-value of every replayed test after every step (null simulated "
        "under the same rule) and the share flagged",
    )
    p.set_defaults(handler=_cmd_simulate, person_fit_cache=True)


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

    doc = simulate(
        args.bank,
        args.responses,
        strategies=args.strategy or DEFAULT_STRATEGIES,
        max_items=args.max_items,
        se=args.se,
        seed=args.seed,
        drop_unknown_items=args.drop_unknown_items,
        per_dimension=args.per_dimension,
        plot=args.plot,
        progress=_progress_printer(),
        aberrant=args.aberrant,
        aberrant_share=args.aberrant_share,
        aberrant_add=args.aberrant_add,
        person_fit=args.person_fit,
        lapse=args.lapse,
    )
    _note_excluded(doc["excluded_items"])
    if args.json:
        print_json(doc)
        return 0
    names = list(doc["strategies"])
    print(
        f"bank {doc['bank']}: {doc['n_subjects']} subjects, {doc['n_responses']} responses; "
        f"reference: {doc['reference']}"
    )
    if doc["dropped_items"]:
        print(f"ignored responses to {len(doc['dropped_items'])} items the bank lacks")
    if "dimensions" not in doc:
        print(_steps_table({n: doc["strategies"][n]["steps"] for n in names}))
        _print_items_to_se(doc, {n: doc["strategies"][n]["items_to_se"] for n in names})
        _print_groups(doc, names, args.person_fit)
    else:
        for dim in doc["dimensions"]:
            print(f"\ndimension {dim}:")
            by_dim = {n: doc["strategies"][n]["dimensions"][dim] for n in names}
            print(_steps_table({n: by_dim[n]["steps"] for n in names}))
            _print_items_to_se(doc, {n: by_dim[n]["items_to_se"] for n in names}, f" on {dim}")
        print()
        _print_items_to_se(doc, {n: doc["strategies"][n]["items_to_se"] for n in names}, " on all")
    per_dim = doc.get("per_dimension")
    if per_dim:
        for dim, entry in per_dim["dimensions"].items():
            print(
                f"\n1-D CAT on dimension {dim} alone: the {entry['n_items']} items with "
                f"{per_dim['tag']}={entry['tag_value']} (largest cross-loading share "
                f"{entry['cross_loading']:.2f})"
            )
            runs = entry["strategies"]
            print(_steps_table({n: runs[n]["steps"] for n in runs}))
            _print_items_to_se(doc, {n: runs[n]["items_to_se"] for n in runs}, f" on {dim}")
    if args.plot:
        print(f"plot: {doc['plot']}")
    return 0


def _steps_table(steps: dict[str, list[dict[str, Any]]]) -> str:
    """RMSE, rank correlation and mean SE per strategy at the checkpoints of the replay."""
    names = list(steps)
    header = ["items", "active"]
    for n in names:
        header += [f"rmse[{n}]", f"rho[{n}]", f"se[{n}]"]
    total = max(len(s) for s in steps.values())
    show = [t for t in _CHECKPOINTS if t < total] + [total]
    rows = []
    for t in show:
        first = next(s[t - 1] for s in steps.values() if len(s) >= t)
        row: list[Any] = [t, first["n_active"]]
        for n in names:
            if len(steps[n]) < t:
                row += ["-", "-", "-"]
                continue
            s = steps[n][t - 1]
            row += [s["rmse"], "-" if s["spearman"] is None else s["spearman"], s["mean_se"]]
        rows.append(row)
    return fmt_table(header, rows)


def _print_groups(doc: dict[str, Any], names: list[str], person_fit: bool) -> None:
    """Injected misfit (``--aberrant``): RMSE, bias and share flagged per group."""
    for g, info in doc.get("aberrant", {}).items():
        spec = info["spec"]
        what = "well-fitting" if spec is None else spec["rule"]
        args_ = "" if spec is None else ", ".join(f"{k}={v}" for k, v in spec["args"].items())
        print(f"group {g} ({info['n_subjects']} subjects, {what}{' ' + args_ if args_ else ''}):")
        total = len(doc["strategies"][names[0]]["groups"][g]["steps"])
        rows = []
        for t in [t for t in _CHECKPOINTS if t < total] + [total]:
            row: list[Any] = [t]
            for n in names:
                s = doc["strategies"][n]["groups"][g]["steps"][t - 1]
                row += [s["rmse"], s["bias"]]
                if "flagged" in s:
                    row.append("-" if s["flagged"] is None else s["flagged"])
            rows.append(row)
        header = ["items"]
        for n in names:
            header += [f"rmse[{n}]", f"bias[{n}]"] + (["flagged"] if person_fit else [])
        print(fmt_table(header, rows))


def _print_items_to_se(doc: dict[str, Any], hits: dict[str, Any], where: str = "") -> None:
    for n, hit in hits.items():
        median = "-" if hit["median"] is None else f"{hit['median']:g}"
        print(
            f"{n}: SE ≤ {doc['se_target']:g}{where} reached by {hit['reached']}/"
            f"{doc['n_subjects']} subjects (median {median} items; not within their items or "
            f"--max-items: {hit['never']})"
        )


# --------------------------------------------------------------------------- calibrate
def _add_calibrate(sub: SubParsers) -> None:
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
    p.add_argument("--name", metavar="NAME", help="bank name (default: the folder's name)")
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
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--n-quad",
        default="auto",
        type=_n_quad,
        metavar="N|auto",
        help="quadrature nodes on [-6, 6], 11..2001; auto refines the grid to the posterior "
        "SDs (default: auto)",
    )
    p.add_argument(
        "--max-iter", type=positive_int, default=2000, metavar="N", help="maximum EM iterations"
    )
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-4,
        metavar="X",
        help="largest parameter change to stop",
    )
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
    p.add_argument(
        "--min-obs",
        type=positive_int,
        default=5,
        metavar="N",
        help="fewest observations to fit an item",
    )
    p.add_argument(
        "--reversed-items",
        choices=["reverse", "exclude", "keep"],
        default="reverse",
        help="items whose score falls with θ (item–rest r < 0, BH q < 0.05): refit them "
        "reverse-keyed (default), leave them out, or keep them as fitted (a ≈ 0); "
        "reported either way",
    )
    p.add_argument(
        "--dims",
        default="1",
        metavar="N|NAME,NAME",
        help="dimensions of theta: a number (1-3) or their names, e.g. utility,security "
        "(default 1: the unidimensional GRM)",
    )
    p.add_argument(
        "--loadings",
        metavar="SPEC",
        help="confirmatory structure: tag:COLUMN (each value of the --items column names a "
        "dimension), tag:COLUMN:VALUE=DIM[+DIM],..., bank:DIR (another bank's zero slopes) "
        "or a CSV item,DIM1,DIM2 of 0/1; without it --dims > 1 is exploratory",
    )
    p.add_argument(
        "--rotation",
        choices=["oblimin", "varimax", "none"],
        default="oblimin",
        help="rotation of an exploratory solution (default oblimin, oblique)",
    )
    p.add_argument(
        "--quadrature",
        choices=["auto", "grid", "qmc"],
        default="auto",
        help="with --dims > 1: product grid (auto for 2) or quasi-Monte-Carlo (auto for 3)",
    )
    p.add_argument(
        "--qmc-points", type=int, default=5000, metavar="N", help="QMC points (default 5000)"
    )
    p.add_argument(
        "--scale-label",
        action="append",
        metavar="LABEL",
        help="label of category 0, 1, … (repeat once per category, lowest first)",
    )
    p.add_argument(
        "--description", default="", metavar="TEXT", help="free text stored in bank.json"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing bank.json")
    p.add_argument(
        "--live-from",
        metavar="BANK",
        help="take each item's source, labels and tags from this bank (the provisional bank a "
        "sweep ran), so the calibrated bank runs live",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (the fit summary)")
    learn = p.add_argument_group(
        "learning banks",
        "re-estimate an existing bank on new responses, its parameters as per-item priors",
    )
    learn.add_argument(
        "--update",
        metavar="BANK",
        help="bank folder to update (its items: prior = their values, SD = SE; new items: "
        "text-predicted prior from BANK/items.csv, else the default prior)",
    )
    learn.add_argument(
        "--prior-inflate",
        type=positive_float,
        default=1.0,
        metavar="F",
        help="multiply the bank's SEs by F for the prior SDs (default 1)",
    )
    learn.add_argument(
        "--calibrated-se",
        type=positive_float,
        metavar="SE",
        help="an item turns calibrated when all its threshold SEs are <= SE (default 0.5)",
    )
    learn.add_argument(
        "--no-text-prior", action="store_true", help="new items get the default prior"
    )
    learn.add_argument(
        "--train",
        nargs="+",
        metavar="BANK",
        help="banks the text model learns from (default: item_banks/* with items.csv)",
    )
    p.set_defaults(handler=_cmd_calibrate)


def _n_quad(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto'; got {text!r}") from None
    if not 11 <= n <= 2001:
        raise argparse.ArgumentTypeError(f"needs 11..2001 nodes; got {n}")
    return n


def _prior(text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "none":
        return None
    try:
        mu, sd = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MU,SD or 'none'; got {text!r}") from None
    if not (math.isfinite(mu) and math.isfinite(sd) and sd > 0):
        raise argparse.ArgumentTypeError(f"needs a finite MU and an SD > 0; got {text!r}")
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
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"ALPHA must be a finite number >= 0; got {value:g}")
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
    if args.update:
        if args.dims.strip() not in ("1", "theta") or args.loadings:
            raise ConfigError(
                "--update learns a one-dimensional bank; --dims/--loadings do not apply",
                hint="calibrate a multidimensional bank from scratch (without --update)",
            )
        return _cmd_update(args)
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
            reversed_items=args.reversed_items,
            scale_labels=args.scale_label,
            description=args.description,
            force=args.force,
            live_from=args.live_from,
            progress=None if args.quiet else _ProgressPrinter(),
            dims=args.dims,
            loadings=args.loadings,
            rotation=args.rotation,
            quadrature=args.quadrature,
            n_qmc=args.qmc_points,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        print_json(summary)
        return 0
    print(f"wrote {summary['bank']}")
    print(
        fmt_table(
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
    for rv in summary["reversed_items"]:
        se = "?" if rv.get("slope_se") is None else f"{rv['slope_se']:.2f}"
        print(
            f"reversed {rv['id']}: score falls with θ (item–rest r = {rv['item_rest_r']:+.2f}, "
            f"q = {rv['q']:.2g}; slope with the item reversed {rv['slope_unconstrained']:+.2f} "
            f"± {se}) → {rv['treatment']}"
        )
    if "dimensions" in summary:
        print(_latent_correlation_lines(summary))
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


def _cmd_update(args: argparse.Namespace) -> int:
    from orchestrator.api import update_bank

    doc = update_bank(
        args.update,
        args.responses,
        args.out,
        items=args.items,
        k_column=args.k_column,
        text_prior=not args.no_text_prior,
        train=args.train,
        inflate=args.prior_inflate,
        calibrated_se=args.calibrated_se,
        cache_dir=embedding_cache(),
        force=args.force,
        device=args.device,
        progress=None if args.quiet else _ProgressPrinter(),
    )
    if args.json:
        print_json(doc)
        return 0
    print(
        f"wrote {doc['path']}: {doc['n_items_updated']} items updated, {doc['n_items_added']} "
        f"added ({doc['text_prior_items']} with a text prior), {doc['n_items_promoted']} turned "
        f"calibrated, {doc['n_provisional']} provisional; new subjects' θ in the bank's scale: "
        f"mean {doc['population']['mean']:.2f}, SD {doc['population']['sd']:.2f}"
    )
    return 0


# --------------------------------------------------------------------------- predict-params
def _add_predict_params(sub: SubParsers) -> None:
    p = sub.add_parser(
        "predict-params",
        help="predict GRM parameters from item text (a provisional bank for items without data)",
        description="Learn item text -> (slope, thresholds) from calibrated banks with item text "
        "(a sentence embedding + surface features, Bayesian ridge with bank offsets) and write "
        "a bank whose items carry the predictions, marked provisional, their predictive SDs as "
        "a_se/b_se. 'calibrate --update' refines them as responses arrive.",
    )
    p.add_argument("items", metavar="ITEMS.csv", help="CSV with columns id,text[,n_categories]")
    p.add_argument("--out", required=True, metavar="DIR", help="bank folder to write")
    p.add_argument("--into", metavar="BANK", help="add the items to this bank (its θ scale)")
    p.add_argument("--name", help="bank name (default: the folder's or --into's name)")
    p.add_argument(
        "--train",
        nargs="+",
        metavar="BANK",
        help="calibrated bank folders with items.csv text (default: item_banks/*)",
    )
    p.add_argument(
        "--k", type=positive_int, default=2, metavar="K", help="K where ITEMS has no column"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing bank.json")
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (the summary)")
    p.set_defaults(handler=_cmd_predict_params)


def _cmd_predict_params(args: argparse.Namespace) -> int:
    from orchestrator.api import predict_params

    doc = predict_params(
        args.items,
        args.out,
        train=args.train,
        into=args.into,
        name=args.name,
        n_categories=args.k,
        cache_dir=embedding_cache(),
        force=args.force,
    )
    if args.json:
        print_json(doc)
        return 0
    print(
        f"wrote {doc['bank']}: {doc['n_items']} provisional items in the scale of "
        f"{doc['scale']}; mean predictive SD of log a {doc['mean_sd_log_a']:.2f}, "
        f"of the mean threshold {doc['mean_sd_b_mean']:.2f}"
    )
    return 0


def _latent_correlation_lines(summary: dict[str, Any]) -> str:
    """``dimensions a, b (structure); latent correlation a~b 0.52 (SE 0.11)`` lines."""
    dims = summary["dimensions"]
    corr, se = summary["latent_correlation"], summary["latent_correlation_se"]
    pairs = []
    for i in range(len(dims)):
        for j in range(i + 1, len(dims)):
            err = f" (SE {se[i][j]:.3f})" if se is not None and se[i][j] is not None else ""
            pairs.append(f"{dims[i]}~{dims[j]} {corr[i][j]:.3f}{err}")
    rot = f", rotation {summary['rotation']}" if summary.get("rotation") else ""
    return (
        f"dimensions {', '.join(dims)} ({summary['structure']}{rot}); "
        f"latent correlation {'; '.join(pairs)}"
    )


# --------------------------------------------------------------------------- health
def _add_health(sub: SubParsers) -> None:
    p = sub.add_parser(
        "health",
        help="psychometric health report of an item bank (HTML + JSON)",
        description="Check a bank against a response matrix: test information and difficulty "
        "gaps, low-discrimination and defective items, merged thresholds, item misfit, "
        "redundant item pairs (Q3) and aberrant subjects (l_z); with --dims, how many "
        "dimensions the responses support. Writes an HTML page and its JSON twin.",
    )
    p.add_argument("--bank", required=True, metavar="DIR", help="item bank folder (bank.json)")
    p.add_argument(
        "--responses", required=True, metavar="RESPONSES.csv", help="long CSV subject,item,score"
    )
    p.add_argument(
        "--out", required=True, metavar="REPORT.html", help="HTML page; REPORT.json goes beside it"
    )
    p.add_argument("--figures", metavar="DIR", help="also write each figure as a PNG here")
    p.add_argument(
        "--se-target",
        type=positive_float,
        metavar="SE",
        help="SE the bank should reach (default 0.3)",
    )
    p.add_argument(
        "--fit-replicates",
        type=int,
        metavar="R",
        help="patterns simulated per subject for the person-fit p-value (100)",
    )
    p.add_argument(
        "--q3-simulations",
        type=nonnegative_int,
        metavar="N",
        help="data sets simulated for the Q3 critical value (default 50; 0 = only the 0.2 rule)",
    )
    p.add_argument(
        "--dims",
        type=int,
        nargs="+",
        metavar="D",
        help="also compare these numbers of dimensions (1-3, e.g. --dims 1 2): each calibrated "
        "on the responses and scored by held-out log-likelihood (k folds of cells), AIC/BIC "
        "and Q3 after the fit; slow (one calibration per D and fold), needs torch",
    )
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="folds of the held-out comparison (default 5; with --dims)",
    )
    p.add_argument(
        "--loadings",
        metavar="SPEC",
        help="confirmatory pattern for the D it gives (with --dims): tag:TAG[:VALUE=DIM+DIM,…] "
        "of the bank's item tags, bank:DIR or a loading-pattern CSV; other D > 1 are "
        "exploratory (oblimin)",
    )
    p.add_argument("--json", action="store_true", help="also print the JSON document to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_cmd_health, person_fit_cache=True)


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
            ("fit_replicates", args.fit_replicates),
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
        dims=args.dims,
        folds=args.folds,
        loadings=args.loadings,
    )
    if args.json:
        print_json(doc)
        return 0
    for line in doc["summary"]:
        print(f"- {line}")
    json_path = Path(args.out).with_suffix(".json")
    print(f"wrote {args.out} and {json_path}")
    return 0


# --------------------------------------------------------------------------- validity
def _add_validity(sub: SubParsers) -> None:
    p = sub.add_parser(
        "validity",
        help="does θ on one bank predict θ on another? correlations, prediction, collateral priors",
        description="Estimate θ (EAP + SE) on every BANK from its recorded responses, match "
        "subjects to models through a reviewed mapping file, and report for every pair of banks "
        "the shared models, Pearson and Spearman of θ̂, the correlation corrected for "
        "measurement error, bootstrap intervals and the same for raw accuracy; for every "
        "ordered pair the leave-one-model-out prediction error and the CAT items a prior from "
        "the other bank saves (replayed). No model is called.",
    )
    p.add_argument("banks", nargs="+", metavar="BANK", help="item bank folders (two or more)")
    p.add_argument(
        "--responses",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="responses of bank NAME: a CSV, or session journals (a runs folder, a session "
        "folder or a journal.sqlite; subject = the session's model). Default: "
        "DIR/NAME/responses.csv of a --responses-dir, else responses.csv in the bank folder",
    )
    p.add_argument(
        "--responses-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder holding NAME/responses.csv per bank (e.g. ../shared/data/tinybench)",
    )
    p.add_argument(
        "--names",
        metavar="FILE.csv",
        help="reviewed model-name mapping (default data/model_names/model_names.csv)",
    )
    p.add_argument("--out", metavar="REPORT.html", help="write the HTML report; JSON beside it")
    p.add_argument("--figures", metavar="DIR", help="also write each figure as a PNG here")
    p.add_argument(
        "--bootstrap", type=positive_int, default=2000, metavar="N", help="resamples (≥ 100)"
    )
    p.add_argument(
        "--level", type=probability, default=0.95, metavar="X", help="interval level, in [0.5, 1)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="random seed")
    p.add_argument(
        "--se", type=positive_float, default=0.3, metavar="X", help="replayed CATs' SE target"
    )
    p.add_argument(
        "--max-items",
        type=positive_int,
        metavar="N",
        help="items per replayed CAT (default: every item)",
    )
    p.add_argument(
        "--no-collateral", action="store_true", help="skip the collateral-prior CAT replays"
    )
    p.add_argument(
        "--collateral-min-models",
        type=positive_int,
        default=20,
        metavar="N",
        help="fewest shared models for the collateral replay (≥ 10)",
    )
    p.add_argument("--per-model", action="store_true", help="every model's scores in the JSON")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_cmd_validity)


def _cmd_validity(args: argparse.Namespace) -> int:
    from orchestrator.api import validity
    from orchestrator.report.validity import format_interval

    given: dict[str, str] = {}
    for spec in args.responses:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--responses expects NAME=PATH; got {spec!r}",
                hint="e.g. --responses tinyarc=../shared/data/tinybench/tinyarc/responses.csv",
            )
        if name.strip() in given:
            raise ConfigError(f"--responses gives bank {name.strip()!r} twice")
        given[name.strip()] = path.strip()
    doc = validity(
        args.banks,
        responses=given,
        responses_dirs=args.responses_dir,
        names=args.names,
        out=args.out,
        figures_dir=args.figures,
        n_boot=args.bootstrap,
        level=args.level,
        seed=args.seed,
        se=args.se,
        max_items=args.max_items,
        collateral=not args.no_collateral,
        collateral_min_models=args.collateral_min_models,
        per_model=args.per_model,
        progress=None if args.quiet else _stage_printer(),
    )
    if args.json:
        print_json(doc)
        return 0
    rows = []
    for p in doc["pairs"]:
        t, r = p["theta"], p["raw"]
        cells = [t["pearson"], t["disattenuated"], r["pearson"]] if t else [None] * 3
        rows.append([p["a"], p["b"], p["n"], *(format_interval(c) for c in cells)])
    print(fmt_table(["a", "b", "n", "θ̂ r", "θ̂ r corrected", "raw r"], rows))
    for line in doc["summary"]:
        print(f"- {line}")
    if args.out:
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


def add_commands(sub: SubParsers) -> None:
    """Add this group's commands to the top-level parser, in help order."""
    for add in (
        _add_estimate,
        _add_simulate,
        _add_calibrate,
        _add_predict_params,
        _add_health,
        _add_validity,
    ):
        add(sub)
