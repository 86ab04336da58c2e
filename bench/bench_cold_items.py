"""CAT with cold items, and a bank that learns: text priors replayed and updated.

    nice .venv/bin/python bench/bench_cold_items.py cat   [--seeds 0 1 2 3 4]
    nice .venv/bin/python bench/bench_cold_items.py curve [--seeds 0 1] [--models 5 10 20 40]
        [--warm-start noisy|truth] [--scratch]
    nice .venv/bin/python bench/bench_cold_items.py drift [--seeds 0 1 2] [--models 5 10 20 40]

``cat`` (alpaca_eval, agentdojo; real responses, in-sample like the README's CAT table):
half of the items (random per seed) lose their calibrated parameters and get text
predictions from a model trained on the other half (``bank=`` the bank itself, so in its
θ scale). CAT (max_info) is replayed on every subject with (a) the calibrated bank,
(b) the half-cold bank, (c) the warm half only (cold items dropped), and random order
on the calibrated bank. RMSE at 10 and 20 items is against each subject's EAP from
*all* its responses under the calibrated bank, for every arm. Per seed and mean
[min, max] over seeds. Writes bench/results/cold_items.json.

``curve`` (simulated; alpaca_eval's calibrated parameters are the truth): the bank
starts as if calibrated on its own data — every item at truth + N(0, SE²) with its
stated SEs (``--warm-start noisy``; ``truth`` starts the warm items exactly at the
truth, which no real bank is) — then a random half of the items is replaced by text
predictions (provisional) from a model trained on the other half. Batches of new
simulated models (θ ~ N(0.3, 1): a population a bit stronger than the calibration's)
answer every item (a sweep), and the bank is updated with ``update_bank`` (``calibrate
--update``) after each batch; ``--models`` lists the cumulative number of models seen
after each update. Reported per step: RMSE of b and log a to the truth for the cold
and the warm half, items still provisional, the new subjects' population as the
update estimated it next to the batch's true θ mean/SD, and CAT (max_info) RMSE and
bias at 10/20 items on 300 fresh simulated subjects (true θ known) next to the same
CAT on the true parameters (the floor). ``--scratch`` adds a bank refitted from
scratch on all simulated responses so far (its own N(0, 1) scale: not linked to the
bank's). Writes bench/results/learning_curve[_<warm-start>].json.

``drift`` (same start as ``curve``): the batches of ``--models`` applied as sequential
updates vs all of them in one update; bias and RMSE of b and log a to the truth per
half, and the last update's population estimate next to its models' true θ mean/SD
(is a drift the scale or the items?). Writes bench/results/update_drift.json.
"""

from __future__ import annotations

import os

# small matrices: threads only contend (on the shared 2-core machine torch's two threads
# made a calibration ~10x slower than one: 9.7 s vs 0.5 s for 300 x 25 at load 19)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator._io import atomic_write_json
from orchestrator.bank import Calibration, ItemBank
from orchestrator.cat.selection import make_selection
from orchestrator.coldstart import MiniLMEmbedder, TextParamModel, training_items
from orchestrator.coldstart.text import bank_with_text
from orchestrator.coldstart.update import predicted_items_bank, update_bank
from orchestrator.data import Responses, read_responses
from orchestrator.irt.ability import estimate_abilities
from orchestrator.irt.calibrate import GRMCalibrator
from orchestrator.irt.grm import sample_responses
from orchestrator.sim.replay import replay

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CACHE = Path.home() / ".cache" / "agentcat"
STEPS = (10, 20)


def _split(bank: ItemBank, texts: dict[str, str], seed: int) -> tuple[list[str], list[str]]:
    ids = [i for i in bank.ids if i in texts]
    rng = np.random.default_rng(seed)
    cold = set(rng.choice(ids, size=len(ids) // 2, replace=False).tolist())
    return [i for i in bank.ids if i not in cold], [i for i in bank.ids if i in cold]


def _half_cold(bank: ItemBank, texts: dict[str, str], seed: int) -> tuple[ItemBank, list[str]]:
    """``bank`` with a random half of its items replaced by text predictions."""
    warm, cold = _split(bank, texts, seed)
    emb = MiniLMEmbedder(cache_dir=CACHE)
    train = [it for it in training_items(bank, texts) if it.id in set(warm)]
    model = TextParamModel(emb).fit(train)
    ks = [int(bank.n_categories[bank.index[i]]) for i in cold]
    pred = model.predict([texts[i] for i in cold], ks, bank=bank.name)
    warm_bank = _subset(bank, warm)
    mixed = predicted_items_bank(bank.name, cold, ks, pred, model.describe(), into=warm_bank)
    return mixed, cold


def _subset(bank: ItemBank, keep: list[str]) -> ItemBank:
    data = bank.to_dict()
    wanted = set(keep)
    data["items"] = [it for it in data["items"] if it["id"] in wanted]
    return ItemBank(bank.spec.model_validate(data))


def _rmse_at(theta: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {str(t): round(float(np.sqrt(np.mean((theta[t] - ref) ** 2))), 4) for t in STEPS}


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "min": round(float(np.min(values)), 4),
        "max": round(float(np.max(values)), 4),
    }


# ------------------------------------------------------------------------------ cat
def run_cat(seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("alpaca_eval", "agentdojo"):
        t0 = time.perf_counter()
        bank, texts = bank_with_text(REPO / "item_banks" / name)
        resp = _only(read_responses(REPO / "item_banks" / name / "responses.csv"), set(bank.ids))
        full = estimate_abilities(bank.a, bank.b, *_aligned(resp, bank), len(resp.subjects)).theta
        per_seed, n_cold = {}, 0
        for seed in seeds:
            mixed, cold = _half_cold(bank, texts, seed)
            n_cold = len(cold)
            warm_only = _subset(bank, [i for i in bank.ids if i not in set(cold)])
            arms = {
                "calibrated_cat": (bank, "max_info"),
                "half_text_cat": (mixed, "max_info"),
                "warm_half_only_cat": (warm_only, "max_info"),
                "calibrated_random": (bank, "random"),
            }
            rows = {}
            for label, (bk, rule) in arms.items():
                r = _only(resp, set(bk.ids)).for_bank(bk)
                res = replay(bk, r, {label: make_selection(rule)}, max_items=20, seed=seed)
                rows[label] = _rmse_at(res.strategies[0].theta, full)
            per_seed[str(seed)] = rows
            print(name, seed, json.dumps(rows), file=sys.stderr, flush=True)
        arms_names = next(iter(per_seed.values())).keys()
        out[name] = {
            "n_subjects": len(resp.subjects),
            "n_items": len(bank),
            "n_cold": n_cold,
            "rmse_vs_full_calibrated_eap": {
                arm: {str(t): _spread([per_seed[s][arm][str(t)] for s in per_seed]) for t in STEPS}
                for arm in arms_names
            },
            "per_seed": per_seed,
            "wall_time_s": round(time.perf_counter() - t0, 1),
        }
    return out


def _only(resp: Responses, keep: set[str]) -> Responses:
    return Responses.from_triples(
        (
            (resp.subjects[s], resp.items[i], int(x))
            for s, i, x in zip(resp.subject_idx, resp.item_idx, resp.score, strict=True)
            if resp.items[i] in keep
        ),
        source=resp.source,
    )


def _aligned(resp: Responses, bank: ItemBank) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    al = resp.for_bank(bank)
    return al.subject_idx, al.bank_item, al.score


# ------------------------------------------------------------------------------ curve
def _as_calibrated(truth: ItemBank, rng: np.random.Generator) -> ItemBank:
    """The truth seen through a calibration with the bank's SEs: each item at
    truth + N(0, SE²) (b_k on its scale, a on the log scale), thresholds kept ordered."""
    data = truth.to_dict()
    for it in data["items"]:
        sd_log_a = it["a_se"] / it["a"]
        it["a"] = float(it["a"] * math.exp(sd_log_a * rng.normal()))
        b = np.asarray(it["b"]) + np.asarray(it["b_se"]) * rng.normal(size=len(it["b"]))
        it["b"] = np.sort(b).tolist()
    return ItemBank(truth.spec.model_validate(data))


def run_curve(seed: int, models: list[int], warm_start: str, scratch: bool) -> dict[str, Any]:
    truth, texts = bank_with_text(REPO / "item_banks" / "alpaca_eval")
    rng = np.random.default_rng(seed + 1)
    start = _as_calibrated(truth, rng) if warm_start == "noisy" else truth
    bank, cold = _half_cold(start, texts, seed)
    halves = {
        "cold": np.array([truth.index[i] for i in cold]),
        "warm": np.array([j for j, i in enumerate(truth.ids) if i not in set(cold)]),
    }
    test_theta = rng.normal(0.3, 1.0, 300)
    test_x = sample_responses(test_theta, truth.a, truth.b, rng)
    floor = _cat(truth, truth, test_theta, test_x, seed)
    rows = []
    seen: list[tuple[str, str, int]] = []
    current, n_seen = bank, 0
    for step, target in enumerate([0, *models]):
        row: dict[str, Any] = {"models_seen": target}
        if target > n_seen:
            theta = rng.normal(0.3, 1.0, target - n_seen)
            x = sample_responses(theta, truth.a, truth.b, rng)
            new = [
                (f"sim{step:02d}_{s}", truth.ids[j], int(x[s, j]))
                for s in range(len(theta))
                for j in range(len(truth))
            ]
            seen += new
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                current, summary = update_bank(
                    current,
                    Responses.from_triples(new, source=f"batch {step}"),
                    source=f"batch {step}",
                    source_sha256="0" * 64,
                )
            row["update_s"] = round(time.perf_counter() - t0, 1)
            row["population_estimated"] = {k: round(v, 3) for k, v in summary["population"].items()}
            row["batch_theta"] = {"mean": round(theta.mean(), 3), "sd": round(theta.std(), 3)}
            n_seen = target
        for half, idx in halves.items():
            row.update(_errors(current, truth, idx, half))
        row["n_provisional"] = current.item_status.count("provisional")
        row["cat"] = _cat(current, truth, test_theta, test_x, seed)
        if scratch and step > 0:
            sb = _scratch(seen, truth)
            row["scratch"] = {
                **_errors(sb, truth, halves["cold"], "cold"),
                **_errors(sb, truth, halves["warm"], "warm"),
                "cat": _cat(sb, truth, test_theta, test_x, seed),
            }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {"n_items": len(truth), "n_cold": len(cold), "cat_on_truth": floor, "rows": rows}


def _errors(bank: ItemBank, truth: ItemBank, idx: np.ndarray, half: str) -> dict[str, float]:
    pos = np.array([bank.index[truth.ids[j]] for j in idx])
    db = bank.b[pos, 0] - truth.b[idx, 0]
    da = np.log(bank.a[pos]) - np.log(truth.a[idx])
    return {
        f"rmse_b_{half}": round(float(np.sqrt(np.mean(db**2))), 4),
        f"rmse_log_a_{half}": round(float(np.sqrt(np.mean(da**2))), 4),
        f"bias_b_{half}": round(float(np.mean(db)), 4),
        f"bias_log_a_{half}": round(float(np.mean(da)), 4),
    }


def _cat(
    bank: ItemBank, truth: ItemBank, theta: np.ndarray, x: np.ndarray, seed: int
) -> dict[str, dict[str, float]]:
    """CAT RMSE and bias (mean θ̂ − θ) at 10/20 items against the true θ."""
    triples = (
        (f"t{s}", truth.ids[j], int(x[s, j])) for s in range(len(theta)) for j in range(len(truth))
    )
    resp = Responses.from_triples(triples).for_bank(bank)
    res = replay(bank, resp, {"cat": make_selection("max_info")}, max_items=20, seed=seed)
    est = res.strategies[0].theta
    # replay keeps the subjects in file order: t0, t1, … as written above
    order = np.array([int(s[1:]) for s in resp.subjects])
    ref = theta[order]
    return {
        "rmse": _rmse_at(est, ref),
        "bias": {str(t): round(float(np.mean(est[t] - ref)), 4) for t in STEPS},
    }


def _scratch(seen: list[tuple[str, str, int]], truth: ItemBank) -> ItemBank:
    resp = Responses.from_triples(seen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = GRMCalibrator(min_obs=1).fit(
            resp.subject_idx,
            resp.item_idx,
            resp.score,
            n_categories=np.full(len(resp.items), 2),
            item_ids=list(resp.items),
        )
    fitted = ItemBank.from_params(
        "scratch",
        cal.item_ids_,
        cal.a_,
        cal.b_,
        calibration=Calibration(status="calibrated", method="mml-em"),
    )
    # items the scratch fit excluded (one category so far) fall back to the bank median
    missing = [i for i in truth.ids if i not in fitted.index]
    if not missing:
        return fitted
    a = np.concatenate([fitted.a, np.full(len(missing), float(np.median(fitted.a)))])
    b = np.concatenate([fitted.b[:, 0], np.full(len(missing), float(np.median(fitted.b)))])
    return ItemBank.from_params(
        "scratch", [*fitted.ids, *missing], a, b[:, None], calibration=fitted.spec.calibration
    )


def run_drift(seed: int, models: list[int]) -> dict[str, Any]:
    """Sequential updates vs one update on the same models, from the same noisy start:
    where the parameters drift (bias to the truth) and how far off the scale is."""
    truth, texts = bank_with_text(REPO / "item_banks" / "alpaca_eval")
    rng = np.random.default_rng(seed + 1)
    bank, cold = _half_cold(_as_calibrated(truth, rng), texts, seed)
    halves = {
        "cold": np.array([truth.index[i] for i in cold]),
        "warm": np.array([j for j, i in enumerate(truth.ids) if i not in set(cold)]),
    }
    batches, thetas = [], []
    for n in np.diff([0, *models]):
        theta = rng.normal(0.3, 1.0, n)
        x = sample_responses(theta, truth.a, truth.b, rng)
        k = len(batches)
        batches.append(
            [(f"b{k}_{s}", truth.ids[j], int(x[s, j])) for s in range(n) for j in range(len(truth))]
        )
        thetas.append(theta)

    def fit(start: ItemBank, data: list[list[tuple[str, str, int]]]) -> dict[str, Any]:
        current, summary = start, {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in data:
                current, summary = update_bank(
                    current, Responses.from_triples(t), source="sim", source_sha256="0" * 64
                )
        out: dict[str, Any] = {}
        for half, idx in halves.items():
            out.update(_errors(current, truth, idx, half))
        last = np.concatenate(thetas[-1:] if len(data) > 1 else thetas)
        pop = summary["population"]
        out["population_last_update"] = {k: round(v, 3) for k, v in pop.items()}
        out["its_models_true_theta"] = {"mean": round(last.mean(), 3), "sd": round(last.std(), 3)}
        return out

    return {
        "sequential": fit(bank, batches),
        "one_update": fit(bank, [[r for t in batches for r in t]]),
    }


def _curve_summary(per_seed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean [min, max] over seeds of each step's errors and CAT numbers."""
    runs = list(per_seed.values())
    out = []
    for k, row in enumerate(runs[0]["rows"]):
        rows = [r["rows"][k] for r in runs]
        summ: dict[str, Any] = {"models_seen": row["models_seen"]}
        for key in row:
            if key.startswith(("rmse_", "bias_")) or key == "n_provisional":
                summ[key] = _spread([r[key] for r in rows])
        for what in ("rmse", "bias"):
            summ[f"cat_{what}"] = {
                str(t): _spread([r["cat"][what][str(t)] for r in rows]) for t in STEPS
            }
        out.append(summ)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["cat", "curve", "drift"])
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--models", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--warm-start", choices=["noisy", "truth"], default="noisy")
    ap.add_argument("--scratch", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.what == "drift":
        seeds = args.seeds or [0, 1, 2]
        doc = {
            "command": f"bench/bench_cold_items.py drift --seeds {' '.join(map(str, seeds))} "
            f"--models {' '.join(map(str, args.models))}",
            "start": "noisy (truth + N(0, SE^2)), half text-predicted, as curve",
            "per_seed": {str(s): run_drift(s, args.models) for s in seeds},
        }
        path = RESULTS / "update_drift.json"
    elif args.what == "cat":
        seeds = args.seeds or [0, 1, 2, 3, 4]
        doc = {
            "command": f"bench/bench_cold_items.py cat --seeds {' '.join(map(str, seeds))}",
            **run_cat(seeds),
        }
        path = RESULTS / "cold_items.json"
    else:
        seeds = args.seeds or [0, 1]
        if sorted(set(args.models)) != args.models or args.models[0] < 1:
            ap.error("--models must be increasing positive counts")
        per_seed = {str(s): run_curve(s, args.models, args.warm_start, args.scratch) for s in seeds}
        first = next(iter(per_seed.values()))
        doc = {
            "command": f"bench/bench_cold_items.py curve --seeds {' '.join(map(str, seeds))} "
            f"--models {' '.join(map(str, args.models))} --warm-start {args.warm_start}"
            + (" --scratch" if args.scratch else ""),
            "truth": "alpaca_eval calibrated parameters",
            "warm_start": args.warm_start,
            "n_items": first["n_items"],
            "n_cold": first["n_cold"],
            "population": "theta ~ N(0.3, 1) (bank scale)",
            "summary": _curve_summary(per_seed),
            "per_seed": per_seed,
        }
        suffix = "" if args.warm_start == "noisy" else f"_{args.warm_start}"
        path = RESULTS / f"learning_curve{suffix}.json"
    doc.update(schema_version=1, seeds=seeds, wall_time_s=round(time.perf_counter() - t0, 1))
    atomic_write_json(path, doc)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
