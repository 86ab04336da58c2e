"""How well does item text predict calibrated GRM parameters? Held-out items, in and across banks.

    nice .venv/bin/python bench/bench_text_params.py [--folds 5] [--seed 0]

Banks with item text: alpaca_eval, xstest, jailbreakbench, agentdojo (alpaca_eval_3level
has the same items as alpaca_eval and is left out so no item is in two folds). Targets:
the calibrated mean threshold b̄ and log a of each item (``item_banks/<bank>/bank.json``).

* within: k-fold over a bank's items; the text model is trained on the other folds of
  that bank ("own") or on them plus every other bank ("pooled", bank offsets learned),
  and predicts in the bank's own θ scale. Baseline: the training folds' bank mean.
* across: leave one bank out; the model trained on the other banks predicts the held-out
  bank as a *new* bank (its offset unknown, its variance in the interval). Baselines:
  the training items' pooled mean, and (oracle, not available for a new bank) the
  held-out bank's own mean.

Reported per bank and target: Spearman ρ(prediction, calibrated), RMSE of the
prediction and of the baseline, coverage of the central 80 % predictive interval and
the mean predictive SD. Writes bench/results/text_params.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from orchestrator.coldstart import MiniLMEmbedder, TextParamModel, TrainingItem, training_items
from orchestrator.coldstart.text import bank_with_text

REPO = Path(__file__).resolve().parents[1]
BANKS = ("alpaca_eval", "xstest", "jailbreakbench", "agentdojo")
Z80 = 1.2815515655446004


def load_items() -> dict[str, list[TrainingItem]]:
    out = {}
    for name in BANKS:
        bank, texts = bank_with_text(REPO / "item_banks" / name)
        out[name] = training_items(bank, texts)
    return out


def targets(items: list[TrainingItem]) -> dict[str, np.ndarray]:
    return {
        "b_mean": np.array([np.mean(it.b) for it in items]),
        "log_a": np.log([it.a for it in items]),
    }


def score(y: np.ndarray, mu: np.ndarray, sd: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    rho = spearmanr(mu, y).statistic if np.std(mu) > 0 else float("nan")
    return {
        "n": int(y.size),
        "spearman": round(float(rho), 3),
        "rmse": round(float(np.sqrt(np.mean((mu - y) ** 2))), 3),
        "rmse_baseline": round(float(np.sqrt(np.mean((base - y) ** 2))), 3),
        "coverage80": round(float(np.mean(np.abs(y - mu) <= Z80 * sd)), 3),
        "mean_pred_sd": round(float(np.mean(sd)), 3),
    }


def predict(
    model: TextParamModel, items: list[TrainingItem], emb: np.ndarray, bank: str | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pred = model.predict(
        [it.text for it in items], [len(it.b) + 1 for it in items], bank=bank, embeddings=emb
    )
    return {"b_mean": (pred.b_mean, pred.b_mean_sd), "log_a": (np.log(pred.a), pred.log_a_sd)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "agentcat")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "text_params.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    embedder = MiniLMEmbedder(cache_dir=args.cache)
    items = load_items()
    emb = {b: embedder.embed([it.text for it in its]) for b, its in items.items()}
    print(f"embedded {sum(map(len, items.values()))} items", file=sys.stderr, flush=True)
    rng = np.random.default_rng(args.seed)
    results: dict[str, Any] = {"within": {}, "across": {}}
    for name, its in items.items():
        y = targets(its)
        fold = rng.permutation(len(its)) % args.folds
        preds: dict[str, dict[str, np.ndarray]] = {
            mode: {t: np.zeros((2, len(its))) for t in y} for mode in ("own", "pooled")
        }
        base = {t: np.zeros(len(its)) for t in y}
        for f in range(args.folds):
            test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
            tr_items = [its[i] for i in train]
            others = [it for b, o in items.items() if b != name for it in o]
            other_emb = [emb[b] for b in items if b != name]
            for mode, extra, extra_emb in (("own", [], []), ("pooled", others, other_emb)):
                model = TextParamModel(embedder).fit(
                    tr_items + extra, embeddings=np.vstack([emb[name][train], *extra_emb])
                )
                out = predict(model, [its[i] for i in test], emb[name][test], name)
                for t, (mu, sd) in out.items():
                    preds[mode][t][:, test] = mu, sd
            for t in y:
                base[t][test] = y[t][train].mean()
        results["within"][name] = {
            mode: {t: score(y[t], *preds[mode][t], base[t]) for t in y} for mode in preds
        }
        # across: the other banks predict this one as a new bank
        others = [it for b, o in items.items() if b != name for it in o]
        model = TextParamModel(embedder).fit(
            others, embeddings=np.vstack([emb[b] for b in items if b != name])
        )
        out = predict(model, its, emb[name], None)
        pooled = targets(others)
        results["across"][name] = {
            t: {
                **score(y[t], *out[t], np.full(len(its), pooled[t].mean())),
                "rmse_oracle_bank_mean": round(float(np.std(y[t])), 3),
            }
            for t in y
        }
        print(f"{name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    doc = {
        "schema_version": 1,
        "command": "bench/bench_text_params.py",
        "folds": args.folds,
        "seed": args.seed,
        "embedding": embedder.name,
        "banks": list(BANKS),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print_table(doc)
    return 0


def print_table(doc: dict[str, Any]) -> None:
    print("| bank | setting | target | n | Spearman | RMSE | RMSE baseline | cover 80% | mean SD |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in doc["banks"]:
        for mode, per_t in doc["within"][name].items():
            for t, r in per_t.items():
                print(
                    f"| {name} | within ({mode}) | {t} | {r['n']} | {r['spearman']} | "
                    f"{r['rmse']} | {r['rmse_baseline']} | {r['coverage80']} | "
                    f"{r['mean_pred_sd']} |"
                )
        for t, r in doc["across"][name].items():
            print(
                f"| {name} | across (new bank) | {t} | {r['n']} | {r['spearman']} | {r['rmse']} | "
                f"{r['rmse_baseline']} (oracle {r['rmse_oracle_bank_mean']}) | "
                f"{r['coverage80']} | {r['mean_pred_sd']} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
