"""CAT with cold items, and a bank that learns: text priors replayed and updated.

    nice .venv/bin/python bench/bench_cold_items.py cat   [--seed 0]
    nice .venv/bin/python bench/bench_cold_items.py curve [--seed 0] [--batches 8] [--batch 5]

``cat`` (alpaca_eval, agentdojo; real responses, in-sample like the README's CAT table):
half of the items (random, seeded) lose their calibrated parameters and get text
predictions from a model trained on the other half (``bank=`` the bank itself, so in its
θ scale). CAT (max_info) is replayed on every subject with (a) the calibrated bank,
(b) the half-cold bank, (c) the warm half only (cold items dropped), and random order
on the calibrated bank. RMSE at 10 and 20 items is against each subject's EAP from
*all* its responses under the calibrated bank, for every arm. Writes
bench/results/cold_items.json.

``curve`` (simulated, alpaca_eval's calibrated parameters as the truth): the bank starts
with the cold half text-predicted (provisional) and the warm half at the true
parameters; batches of new simulated models (θ ~ N(0.3, 1): a population a bit
stronger than the calibration's) answer every item (a sweep), and the bank is updated
with ``update_bank`` (``calibrate --update``) after each batch. Reported per batch:
RMSE of b and log a of the cold items to the truth, items turned calibrated, and CAT
RMSE at 10/20 items on 300 fresh simulated subjects (true θ known). A bank refitted
from scratch on all simulated responses so far is the comparison. Writes
bench/results/learning_curve.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import argparse
import json
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


def _rmse_at(theta: np.ndarray, ref: np.ndarray, steps: tuple[int, ...]) -> dict[str, float]:
    return {str(t): round(float(np.sqrt(np.mean((theta[t] - ref) ** 2))), 4) for t in steps}


def run_cat(seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("alpaca_eval", "agentdojo"):
        t0 = time.perf_counter()
        bank, texts = bank_with_text(REPO / "item_banks" / name)
        resp = read_responses(REPO / "item_banks" / name / "responses.csv")
        resp = _only(resp, set(bank.ids))
        mixed, cold = _half_cold(bank, texts, seed)
        warm_only = _subset(bank, [i for i in bank.ids if i not in set(cold)])
        full = estimate_abilities(bank.a, bank.b, *_aligned(resp, bank), len(resp.subjects)).theta
        arms = {
            "calibrated_cat": (bank, "max_info"),
            "half_text_cat": (mixed, "max_info"),
            "warm_half_only_cat": (warm_only, "max_info"),
            "calibrated_random": (bank, "random"),
        }
        rows = {}
        for label, (bk, rule) in arms.items():
            r = _only(resp, set(bk.ids))
            res = replay(bk, r.for_bank(bk), {label: make_selection(rule)}, max_items=20, seed=seed)
            rows[label] = _rmse_at(res.strategies[0].theta, full, (10, 20))
        out[name] = {
            "n_subjects": len(resp.subjects),
            "n_items": len(bank),
            "n_cold": len(cold),
            "rmse_vs_full_calibrated_eap": rows,
            "wall_time_s": round(time.perf_counter() - t0, 1),
        }
        print(name, json.dumps(rows), file=sys.stderr, flush=True)
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


def run_curve(seed: int, n_batches: int, batch: int) -> dict[str, Any]:
    truth, texts = bank_with_text(REPO / "item_banks" / "alpaca_eval")
    bank, cold = _half_cold(truth, texts, seed)
    warm = [i for i in truth.ids if i not in set(cold)]
    # warm items sit at the truth (as if calibrated long ago, with their SEs)
    rng = np.random.default_rng(seed + 1)
    cold_idx = np.array([truth.index[i] for i in cold])
    test_theta = rng.normal(0.3, 1.0, 300)
    test_x = sample_responses(test_theta, truth.a, truth.b, rng)
    rows = []
    seen: list[tuple[str, str, int]] = []
    current = bank
    for step in range(n_batches + 1):
        if step > 0:
            theta = rng.normal(0.3, 1.0, batch)
            x = sample_responses(theta, truth.a, truth.b, rng)
            new = [
                (f"sim{step:02d}_{s}", truth.ids[j], int(x[s, j]))
                for s in range(batch)
                for j in range(len(truth))
            ]
            seen += new
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                current, _ = update_bank(
                    current,
                    Responses.from_triples(new, source=f"batch {step}"),
                    source=f"batch {step}",
                    source_sha256="0" * 64,
                )
        row = {"models_seen": step * batch, **_errors(current, truth, cold_idx)}
        row["n_provisional"] = current.item_status.count("provisional")
        row["cat_rmse"] = _cat_rmse(current, truth, test_theta, test_x, seed)
        if step > 0:
            scratch = _scratch(seen, truth)
            row["scratch"] = {
                **_errors(scratch, truth, cold_idx),
                "cat_rmse": _cat_rmse(scratch, truth, test_theta, test_x, seed),
            }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {
        "truth": "alpaca_eval calibrated parameters",
        "n_items": len(truth),
        "n_cold": len(cold),
        "n_warm": len(warm),
        "batch_models": batch,
        "population": "theta ~ N(0.3, 1) (bank scale)",
        "rows": rows,
    }


def _errors(bank: ItemBank, truth: ItemBank, cold_idx: np.ndarray) -> dict[str, float]:
    pos = np.array([bank.index[truth.ids[j]] for j in cold_idx])
    db = bank.b[pos, 0] - truth.b[cold_idx, 0]
    da = np.log(bank.a[pos]) - np.log(truth.a[cold_idx])
    return {
        "rmse_b_cold": round(float(np.sqrt(np.mean(db**2))), 4),
        "rmse_log_a_cold": round(float(np.sqrt(np.mean(da**2))), 4),
    }


def _cat_rmse(
    bank: ItemBank, truth: ItemBank, theta: np.ndarray, x: np.ndarray, seed: int
) -> dict[str, float]:
    triples = (
        (f"t{s}", truth.ids[j], int(x[s, j])) for s in range(len(theta)) for j in range(len(truth))
    )
    resp = Responses.from_triples(triples).for_bank(bank)
    res = replay(bank, resp, {"cat": make_selection("max_info")}, max_items=20, seed=seed)
    return _rmse_at(res.strategies[0].theta, theta, (10, 20))


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
    # items the scratch fit excluded (one category so far) fall back to the bank mean
    missing = [i for i in truth.ids if i not in fitted.index]
    if not missing:
        return fitted
    a = np.concatenate([fitted.a, np.full(len(missing), float(np.median(fitted.a)))])
    b = np.concatenate([fitted.b[:, 0], np.full(len(missing), float(np.median(fitted.b)))])
    return ItemBank.from_params(
        "scratch", [*fitted.ids, *missing], a, b[:, None], calibration=fitted.spec.calibration
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["cat", "curve"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.what == "cat":
        doc = {"command": "bench/bench_cold_items.py cat", **run_cat(args.seed)}
        path = RESULTS / "cold_items.json"
    else:
        doc = {
            "command": f"bench/bench_cold_items.py curve --batches {args.batches} "
            f"--batch {args.batch}",
            **run_curve(args.seed, args.batches, args.batch),
        }
        path = RESULTS / "learning_curve.json"
    doc.update(schema_version=1, seed=args.seed, wall_time_s=round(time.perf_counter() - t0, 1))
    atomic_write_json(path, doc)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
