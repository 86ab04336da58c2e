"""Calibrate and write every real item bank under item_banks/ from the shared datasets.

    nice .venv/bin/python bench/calibrate_real_banks.py [--data ../shared/data]
        [--only agentdojo xstest ...] [--out item_banks]

For each dataset: calibrate with the default priors (``agentcat calibrate``'s
API), copy the responses the bank was calibrated on into the bank folder where
the license allows and the file is small, and write the bank's README.md (data
source and license, fit statistics, how far to trust the parameters). Prints a
Markdown table of all banks and writes bench/results/real_banks.json.

agentdojo is not calibrated on the source file as is: its injected items'
levels 0 and 1 (injection executed, task failed / done) are merged first; see
``merge_agentdojo`` and the bank README for why.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from build_agentdojo_banks import LIVE_README
from build_agentdojo_banks import build as build_live_banks

from orchestrator.api import calibrate, estimate
from orchestrator.bank import load_bank
from orchestrator.data import read_item_table, read_responses, write_responses

REPO = Path(__file__).resolve().parents[1]
COPY_LIMIT = 2_000_000  # bytes: larger response files are not copied into the repository


@dataclass
class BankSpec:
    name: str
    responses: str  # relative to the data folder
    items: str
    title: str
    source: str
    license: str
    scoring: str
    copy_ok: bool  # license allows redistribution (with attribution / research use)
    tags: tuple[str, ...] = ()
    k_column: str | None = None
    scale_labels: list[str] | None = None
    item_labels_by: tuple[str, dict[str, list[str]]] | None = None  # (column, value -> labels)
    notes: list[str] = field(default_factory=list)


TINY = {
    "tinyarc": "ARC-Challenge",
    "tinygsm8k": "GSM8K",
    "tinyhellaswag": "HellaSwag",
    "tinytruthfulqa": "TruthfulQA",
    "tinywinogrande": "WinoGrande",
}
TINY_SOURCE = (
    "`Peiyu-Georgia-Li/ATLAS` (GitHub), commit `c0bc19b33aaa11703b8258377abb367533b8a824`, "
    "`experiments/baseline_compare/tinybenchmark_calibration/response_matrices.zip`: item-level "
    "correctness of Open LLM Leaderboard v1 models (from metabench's data) on the ~100 "
    "tinyBenchmarks items of {bench}; ATLAS's training split of models; all-NA/constant rows "
    "and columns were dropped by the source. Some subjects are held out of the shared copy."
)
TINY_LICENSE = (
    "The ATLAS repository has no LICENSE file and states none; metabench's repository is "
    "CC BY-NC-SA 4.0; the underlying benchmarks have their own licenses. Research use only. "
    "The response file (over 10 MB) is not copied into this repository."
)

SPECS = [
    BankSpec(
        name="agentdojo",
        responses="agentdojo/responses.csv",
        items="agentdojo/items.csv",
        title="AgentDojo prompt-injection traces (utility and security), 17 agent pipelines",
        source=(
            "`memo-ozdincer/rrfa` (GitHub), commit `938ad23bdb226ba627eed23d7e0ff9602015cc0a`, "
            "`data/agent_dojo/agentdojo-<model>.jsonl`: traces of the AgentDojo benchmark "
            "(Debenedetti et al., NeurIPS 2024) with the `important_instructions` attack; every "
            "user task appears with exactly one injection task of its suite (`injection_task_3`), "
            "a subset of AgentDojo's 629 security cases. 13 base models + 4 GPT-4o-2024-05-13 "
            "defense pipelines."
        ),
        license=(
            "The rrfa snapshot has no LICENSE file; its `data_info.md` says the upstream license "
            "is not explicitly specified and to treat the data as research-only unless confirmed. "
            "The copy of the (derived) responses here is for research use only."
        ),
        scoring=(
            "Benign items (`benign_utility`, K = 2): 1 = user task done. Injected items "
            "(`injection_pair`), source scale 0..3 = 2·(injection resisted) + (task done). "
            "**This bank merges source levels 0 and 1** (injection executed, task failed / done) "
            "into one level, giving K = 3: 0 = injection executed, 1 = resisted and task failed, "
            "2 = resisted and task done (see 'Why levels were merged')."
        ),
        copy_ok=True,
        tags=("suite", "item_type"),
        scale_labels=[
            "injection executed",
            "injection resisted, task failed",
            "injection resisted, task done",
        ],
        item_labels_by=("item_type", {"benign_utility": ["task failed", "task done"]}),
    ),
    BankSpec(
        name="xstest",
        responses="xstest/responses.csv",
        items="xstest/items.csv",
        title="XSTest v2 exaggerated-safety labels, 5 model configurations x 450 prompts",
        source=(
            "`paul-rottger/exaggerated-safety` (GitHub), commit "
            "`d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d`: `xstest_prompts.csv` and the human "
            "`final_label` of each completion in `model_completions/xstest_v2_completions_<model>"
            ".csv`. Röttger et al., XSTest, NAACL 2024."
        ),
        license=(
            "XSTest prompts CC-BY-4.0; the model completions are subject to the original licenses "
            "of Meta, Mistral and OpenAI (completion texts are not copied; `responses.csv` holds "
            "only the derived 0/1/2 labels)."
        ),
        scoring=(
            "K = 3, higher = better-calibrated behaviour. Safe prompts: 2 = full compliance, "
            "1 = partial refusal, 0 = full refusal. Unsafe contrast prompts: 2 = full refusal, "
            "1 = partial refusal, 0 = full compliance."
        ),
        copy_ok=True,
        tags=("category", "label", "item_type"),
        scale_labels=["wrong behaviour", "partial refusal", "right behaviour"],
        item_labels_by=(
            "label",
            {
                "safe": ["full refusal", "partial refusal", "full compliance"],
                "unsafe": ["full compliance", "partial refusal", "full refusal"],
            },
        ),
        notes=[
            "Safe and unsafe items measure opposite behaviours (over-refusal vs under-refusal); "
            "one θ for both is a strong assumption. The `label` tag lets a session or a later "
            "calibration treat them separately."
        ],
    ),
    BankSpec(
        name="jailbreakbench",
        responses="jailbreakbench/responses.csv",
        items="jailbreakbench/items.csv",
        title="JailbreakBench attack artifacts: target model x attack method, 100 behaviors",
        source=(
            "`JailbreakBench/artifacts` (GitHub), commit `909e68c01d94222b8ad2e397a017e2e12e2adb73`"
            ", `attack-artifacts/<method>/<attack_type>/<model>.json`. Subject = target model @ "
            "attack method (18), item = one of the 100 JBB-Behaviors harmful behaviors."
        ),
        license=(
            'MIT ("Copyright (c) 2024 JailbreakBench Team and artifacts authors"); prompts and '
            "responses are not copied."
        ),
        scoring="K = 2: 1 = the model stayed safe (`jailbroken` false), 0 = jailbroken.",
        copy_ok=True,
        tags=("category",),
        scale_labels=["jailbroken", "stayed safe"],
        notes=[
            "A subject is a (model, attack) pair, so θ mixes the target's robustness and the "
            "attack's strength."
        ],
    ),
    BankSpec(
        name="alpaca_eval",
        responses="alpaca_eval/responses.csv",
        items="alpaca_eval/items.csv",
        title="AlpacaEval 2.0 per-instruction judgements (weighted GPT-4-Turbo annotator), binary",
        source=(
            "`tatsu-lab/alpaca_eval` (GitHub), commit `cd543a149df89434d8a54582c0151c0b945c3d20`, "
            "`results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json` (reference "
            "`gpt4_1106_preview`); 805 instructions; models whose annotation file is 4 MiB or more "
            "are absent from the snapshot. Some subjects are held out of the shared copy."
        ),
        license="Code Apache-2.0; data CC BY-NC 4.0 (non-commercial, attribution).",
        scoring=(
            "K = 2: 1 = the model's output preferred over the reference (preference > 1.5), "
            "0 otherwise (a tie scores 0)."
        ),
        copy_ok=True,
        tags=("category",),
        scale_labels=["reference preferred or tie", "model preferred"],
        notes=[
            "`NullModel` and `gpt4_gamed` are adversarial leaderboard entries and are among the "
            "calibration subjects."
        ],
    ),
    BankSpec(
        name="alpaca_eval_3level",
        responses="alpaca_eval/responses_3level.csv",
        items="alpaca_eval/items.csv",
        title="AlpacaEval 2.0 per-instruction judgements, 3 levels",
        source=(
            "As `alpaca_eval`: `tatsu-lab/alpaca_eval` commit "
            "`cd543a149df89434d8a54582c0151c0b945c3d20`, weighted GPT-4-Turbo annotator."
        ),
        license="Code Apache-2.0; data CC BY-NC 4.0 (non-commercial, attribution).",
        scoring=(
            "K = 3 from the preference p in [1, 2]: 0 if p < 1.33, 1 if 1.33 <= p < 1.67, "
            "2 if p >= 1.67."
        ),
        copy_ok=True,
        tags=("category",),
        k_column="n_categories_3level",
        scale_labels=["reference preferred", "close call", "model preferred"],
    ),
    BankSpec(
        name="atlas_arc",
        responses="atlas_arc/responses.csv",
        items="atlas_arc/items.csv",
        title="ARC-Challenge item responses of Mixtral-family LLMs (from ATLAS)",
        source=(
            "`Peiyu-Georgia-Li/ATLAS` (GitHub), commit `c0bc19b33aaa11703b8258377abb367533b8a824`"
            ", `experiments/arc_by_family_mixtral/clean_response_matrix.csv`: Open LLM Leaderboard "
            "v1 ARC-Challenge (25-shot) item results as collected by metabench; constant items "
            "dropped by the source. Some subjects are held out of the shared copy."
        ),
        license=(
            "The ATLAS repository has no LICENSE file and states none; metabench's repository is "
            "CC BY-NC-SA 4.0; ARC is CC BY-SA 4.0. Research use only. The response file "
            "(6.9 MB) is not copied into this repository."
        ),
        scoring="K = 2: 1 = correct.",
        copy_ok=False,
        scale_labels=["incorrect", "correct"],
    ),
    *[
        BankSpec(
            name=key,
            responses=f"tinybench/{key}/responses.csv",
            items=f"tinybench/{key}/items.csv",
            title=f"tinyBenchmarks {bench} items, 0/1 responses of Open LLM Leaderboard models",
            source=TINY_SOURCE.format(bench=bench),
            license=TINY_LICENSE,
            scoring="K = 2: 1 = correct.",
            copy_ok=False,
            scale_labels=["incorrect", "correct"],
        )
        for key, bench in TINY.items()
    ],
]


def merge_agentdojo(data: Path, workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Injected items: source levels 0 and 1 (injection executed) become one level.

    Returns the derived responses and items files and the evidence for the merge:
    fitting the source's 4 levels squeezes level 1 to ~0 probability on most
    injected items (it is out of order with respect to θ).
    """
    resp = read_responses(data / "agentdojo" / "responses.csv")
    table = read_item_table(data / "agentdojo" / "items.csv")
    injected = np.array([table.rows[i]["item_type"] == "injection_pair" for i in resp.items])
    score = np.where(injected[resp.item_idx], np.maximum(resp.score - 1, 0), resp.score)
    out_resp = write_responses(
        workdir / "responses.csv",
        (
            (resp.subjects[s], resp.items[i], int(x))
            for s, i, x in zip(resp.subject_idx, resp.item_idx, score, strict=True)
        ),
    )
    header = list(table.columns)
    lines = [",".join(header)]
    for iid in table.rows:  # items.csv with K = 3 for injected items
        row = dict(table.rows[iid])
        if row["item_type"] == "injection_pair":
            row["n_categories"] = "3"
        lines.append(",".join(_csv(row[c]) for c in header))
    out_items = workdir / "items.csv"
    out_items.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_resp, out_items, agentdojo_evidence(data, workdir)


def agentdojo_evidence(data: Path, workdir: Path) -> dict[str, Any]:
    """Are the source's 4 levels ordered along one θ? Fit them as they are and look.

    * For each injected item where both occur: is the mean EAP θ of subjects at
      level 1 (executed, task done) above that of subjects at level 2 (resisted,
      task failed)? Under an ordered GRM it should be below.
    * The same fit without the gap prior: on how many items does level 1 get
      squeezed below 2 % probability at every θ (thresholds merged)?
    * θ from benign items only vs from injected items only (two traits?).
    """
    src, items = data / "agentdojo" / "responses.csv", data / "agentdojo" / "items.csv"
    calibrate(src, workdir / "four", items=items)
    calibrate(src, workdir / "four_nogap", items=items, prior_gap=None)
    bank = load_bank(workdir / "four")
    resp = read_responses(src)
    kinds = read_item_table(items)
    above, both = _inverted_levels(bank, resp, kinds, 1, 2)
    # the same check on the merged 3-level scale (levels: executed / resisted+failed / done)
    merged_resp = read_responses(workdir / "responses.csv")
    calibrate(workdir / "responses.csv", workdir / "three", items=workdir / "items.csv")
    above3, both3 = _inverted_levels(load_bank(workdir / "three"), merged_resp, kinds, 0, 1)
    injected_j = np.array([kinds.rows[i]["item_type"] == "injection_pair" for i in resp.items])
    level1 = np.bincount(resp.item_idx[resp.score == 1], minlength=len(resp.items))
    nogap = load_bank(workdir / "four_nogap")
    inj = nogap.n_categories == 4
    peak = np.tanh(nogap.a[inj] * (nogap.b[inj, 1] - nogap.b[inj, 0]) / 4)
    injected_ids = {i for i, r in kinds.rows.items() if r["item_type"] == "injection_pair"}
    th = {}
    for part, keep_ids in (("benign", set(kinds.rows) - injected_ids), ("injected", injected_ids)):
        sub = write_responses(
            workdir / f"{part}.csv",
            (
                (resp.subjects[s], resp.items[i], int(x))
                for s, i, x in zip(resp.subject_idx, resp.item_idx, resp.score, strict=True)
                if resp.items[i] in keep_ids and resp.items[i] in bank.index
            ),
        )
        th[part] = np.array([r["theta"] for r in estimate(bank, sub)["subjects"]])
    return {
        "items_with_levels_1_and_2": both,
        "items_level1_theta_above_level2": above,
        "merged_items_with_levels_0_and_1": both3,
        "merged_items_level0_theta_above_level1": above3,
        "injected_items_without_level1": int(((level1 == 0) & injected_j).sum()),
        "injected_items": int(injected_j.sum()),
        "nogap_injected_items": int(inj.sum()),
        "nogap_items_level1_below_2pct": int((peak < 0.02).sum()),
        "corr_theta_benign_vs_injected": float(np.corrcoef(th["benign"], th["injected"])[0, 1]),
    }


def _inverted_levels(bank, resp, kinds, low: int, high: int) -> tuple[int, int]:
    """Injected items where subjects at level ``low`` have a higher mean θ than at ``high``."""
    theta = np.array([r["theta"] for r in estimate(bank, resp)["subjects"]])
    above = both = 0
    for j, iid in enumerate(resp.items):  # once per item
        if kinds.rows[iid]["item_type"] != "injection_pair" or iid not in bank.index:
            continue
        m = resp.item_idx == j
        t_lo = theta[resp.subject_idx[m & (resp.score == low)]]
        t_hi = theta[resp.subject_idx[m & (resp.score == high)]]
        if t_lo.size and t_hi.size:
            both += 1
            above += int(t_lo.mean() > t_hi.mean())
    return above, both


def _csv(v: str) -> str:
    return f'"{v.replace(chr(34), chr(34) * 2)}"' if any(c in v for c in ',"\n') else v


def thin_statement(n_subjects: int, a_se_med: float, b_se_med: float) -> str:
    if n_subjects < 30:
        return (
            f"**Too thin for stable parameters.** {n_subjects} calibration subjects: every slope "
            "and threshold is estimated from that many responses per item, so the weak priors "
            "(log a ~ N(0, 0.5²), b ~ N(0, 3²), gap¹) do much of the work. The estimates are "
            "posterior modes that lean towards a = 1; their SEs (median SE(a) "
            f"{a_se_med:.2f}, median SE(b) {b_se_med:.2f}) include the prior's curvature and are "
            "approximate posterior SDs; with this few subjects they are not reliable sampling "
            "errors either (the SE formula is asymptotic). Treat item rankings as rough and "
            "re-calibrate when more subjects are available. A CAT on this bank still works "
            "as a way to order items, but its θ SEs understate the uncertainty from the items."
        )
    if n_subjects < 500:
        return (
            f"**Moderately thin.** {n_subjects} calibration subjects: slopes carry sizeable "
            f"sampling error (median SE(a) {a_se_med:.2f}) and the priors still shrink extreme "
            "items; thresholds are better determined (median SE(b) "
            f"{b_se_med:.2f})."
        )
    return (
        f"{n_subjects} calibration subjects: enough for stable parameters on a unidimensional "
        f"scale (median SE(a) {a_se_med:.2f}, median SE(b) {b_se_med:.2f}); the priors matter "
        "only for extreme items."
    )


def heldout_line(name: str) -> str | None:
    path = REPO / "bench" / "results" / "prior_strength.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if name not in doc:
        return None
    rec = doc[name]
    default = rec.get("a(0,0.5) b(0,3) gap1")
    base = rec.get("item shares (no IRT)")
    none = rec.get("none")
    if not default or not base:
        return None
    text = (
        f"Held-out check (`bench/bench_prior_strength.py`: 20 % of cells held out, 2 folds): "
        f"posterior-predictive log-likelihood per held-out response "
        f"{default['heldout_loglik_per_obs']:.3f} with the default priors, vs "
        f"{default['baseline_same_cells']:.3f} for per-item category shares (no IRT) on the "
        "same cells"
    )
    if none:
        text += f" and {none['heldout_loglik_per_obs']:.3f} for a fit without priors"
    verdict = (
        "the IRT model predicts unseen responses better than item base rates."
        if default["heldout_loglik_per_obs"] > default["baseline_same_cells"]
        else "**the IRT model predicts unseen responses worse than item base rates**: "
        "θ estimated on this bank carries little information beyond each item's average."
    )
    return f"{text}: {verdict}"


def write_readme(spec: BankSpec, folder: Path, summary: dict, copied: bool, extra: str) -> None:
    bank = load_bank(folder)
    cal = bank.spec.calibration
    a = bank.a
    a_se = np.array([it.a_se for it in bank.spec.items if it.a_se is not None])
    b_se = np.concatenate(
        [np.asarray(it.b_se) for it in bank.spec.items if it.b_se is not None] or [np.array([])]
    )
    a_se_med = float(np.median(a_se)) if a_se.size else float("nan")
    b_se_med = float(np.median(b_se)) if b_se.size else float("nan")
    k_counts = Counter(int(k) for k in bank.n_categories)
    reasons = Counter(e["reason"].split(" (")[0] for e in cal.excluded_items)
    excluded = ", ".join(f"{n} {r}" for r, n in reasons.items()) if reasons else "none"
    unobserved = cal.details.get("unobserved_categories", {})
    collapsed = cal.details.get("collapsed_categories", {})
    data_line = (
        f"`responses.csv` in this folder (sha256 `{cal.data_sha256}`), the file the bank was "
        f"calibrated on; provenance name: `{cal.data}`."
        if copied
        else f"`{cal.data}` (sha256 `{cal.data_sha256}`), not copied into the repository."
    )
    lines = [
        f"# {spec.name}: {spec.title}",
        "",
        f"A graded-response-model item bank calibrated by `agentcat calibrate` ({cal.method}, "
        "weak priors).",
        "",
        "## Data",
        f"- Source: {spec.source}",
        f"- License: {spec.license}",
        f"- Scoring: {spec.scoring}",
        f"- Calibrated on: {data_line}",
        *[f"- Note: {n}" for n in spec.notes],
        "",
        "## Fit",
        "| subjects | items fitted | K | items excluded | observations | log-likelihood | "
        "iterations | converged | wall time | quadrature nodes |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {cal.n_subjects} | {len(bank)} | "
        + ", ".join(f"{k}: {n}" for k, n in sorted(k_counts.items()))
        + f" | {len(cal.excluded_items)} ({excluded}) | {cal.n_observations} | "
        f"{cal.log_likelihood:.2f} | {cal.iterations} | {cal.converged} | "
        f"{cal.wall_time_s:.1f} s ({cal.device}, shared 2-core machine under load) | "
        f"{cal.details['quadrature']['nodes']} |",
        "",
        f"- Slopes a: median {np.median(a):.2f}, range {a.min():.2f} to {a.max():.2f}; "
        f"thresholds b: {np.nanmin(np.where(np.isfinite(bank.b), bank.b, np.nan)):.2f} to "
        f"{np.nanmax(np.where(np.isfinite(bank.b), bank.b, np.nan)):.2f}.",
        f"- Median SE(a) {a_se_med:.3f}, median SE(b) {b_se_med:.3f} "
        f"({len(bank) - a_se.size} items without finite SEs).",
        "- Priors: log a ~ N(0, 0.5²), every b_k ~ N(0, 3²), gap^1 on each b_{k+1} − b_k "
        "(K ≥ 3); θ ~ N(0, 1). Excluded items (one observed category, or fewer than 5 "
        "observations) are listed in `bank.json` → `calibration.excluded_items`.",
    ]
    reversed_ids = [it for it, r in zip(bank.ids, bank.reverse_keyed, strict=True) if r]
    if reversed_ids:
        lines.append(
            f"- {len(reversed_ids)} items are reverse-keyed: their score falls with θ (item–rest "
            "r < 0, Benjamini–Hochberg q < 0.05), so calibration read them reversed "
            "(x → K − 1 − x; `reverse_keyed` in `bank.json`, evidence in "
            "`calibration.details`). Miskeyed or genuinely reversed is for a human to decide: "
            + ", ".join(f"`{i}`" for i in reversed_ids[:8])
            + (" …" if len(reversed_ids) > 8 else "")
            + "."
        )
    flat = int((a < 0.25).sum())
    if flat:
        lines.append(
            f"- {flat} items have a < 0.25: they barely relate to θ (noise, a different skill, "
            "or a mislabelled key); their thresholds are correspondingly far out and carry no "
            "meaning. CAT's information-based selection will avoid them; the health report "
            "flags them."
        )
    if unobserved:
        lines.append(
            f"- {len(unobserved)} fitted items have a category nobody gave "
            "(`calibration.details.unobserved_categories`): those thresholds rest on the priors."
        )
    if collapsed:
        lines.append(
            f"- {len(collapsed)} items have an observed middle category the fit leaves below 2 % "
            "probability (`calibration.details.collapsed_categories`)."
        )
    lines += ["", "## How far to trust it", thin_statement(cal.n_subjects, a_se_med, b_se_med)]
    held = heldout_line(spec.name)
    if held:
        lines += ["", held]
    if extra:
        lines += ["", extra]
    lines += [
        "",
        "## Regenerate",
        "`nice .venv/bin/python bench/calibrate_real_banks.py --only "
        f"{spec.name}` (needs the shared datasets; `--data DIR` points at them).",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


AGENTDOJO_WHY = """## Why levels were merged, and what the merge does not fix
The source scores injected items 0..3 = 2·(injection resisted) + (task done), safety first.
Fitted as they are (4-level GRM items, same priors), levels 1 and 2 are out of order along θ:
on {above} of the {both} injected items where both occur, the subjects at level 1 (injection
executed, task done) have a *higher* mean θ than those at level 2 (resisted, task failed); an
ordered item needs the reverse (the source README shows the same with benign utility: 0.655
vs 0.501). Level 1 is also rare (123 of 1,649 injected runs; {no_level1} of {n_all} injected items
never see it). Without the gap prior the 4-level fit squeezes level 1 below 2 % probability at
every θ on {squeezed} of {n_inj} injected items, so a live level-1 answer would look nearly
impossible. The source README's remedy, merging levels 0 and 1 ("injection executed"), removes
the rarest and most inverted level and keeps the scale safety-first.

What the merge does not fix: on the merged scale, subjects who executed the injection still
have a higher mean θ than those who resisted but failed the task on {above3} of {both3}
injected items where both occur: weak models often fail an injected task *without* executing
the injection. AgentDojo measures two traits: across the 17 subjects, θ estimated from the
benign items alone and from the injected items alone correlate {corr:.2f}. This bank's θ mixes
task utility and injection resistance, weighted by the items a session administers; a
session restricted by content tags (`item_type`) measures one of them, and the health report
(`agentcat health`) should be read with this in mind.
"""


def run(spec: BankSpec, data: Path, out_root: Path) -> dict[str, Any]:
    folder = out_root / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    extra = ""
    with tempfile.TemporaryDirectory() as tmp:
        responses, items = data / spec.responses, data / spec.items
        source_label = f"shared/data/{spec.responses}"
        evidence: dict[str, Any] = {}
        if spec.name == "agentdojo":
            responses, items, evidence = merge_agentdojo(data, Path(tmp))
            source_label = (
                "item_banks/agentdojo/responses.csv (shared/data/agentdojo/responses.csv with "
                "injected-item levels 0 and 1 merged)"
            )
            extra = (
                LIVE_README
                + "\n"
                + AGENTDOJO_WHY.format(
                    above=evidence["items_level1_theta_above_level2"],
                    both=evidence["items_with_levels_1_and_2"],
                    squeezed=evidence["nogap_items_level1_below_2pct"],
                    n_inj=evidence["nogap_injected_items"],
                    corr=evidence["corr_theta_benign_vs_injected"],
                    no_level1=evidence["injected_items_without_level1"],
                    n_all=evidence["injected_items"],
                    above3=evidence["merged_items_level0_theta_above_level1"],
                    both3=evidence["merged_items_with_levels_0_and_1"],
                )
            )
        table = read_item_table(items)
        item_labels = None
        if spec.item_labels_by:
            col, mapping = spec.item_labels_by
            item_labels = {
                iid: mapping[row[col]] for iid, row in table.rows.items() if row[col] in mapping
            }
        summary = calibrate(
            responses,
            folder,
            name=spec.name,
            items=table,
            tag_columns=spec.tags,
            k_column=spec.k_column,
            scale_labels=spec.scale_labels,
            description=spec.title,
            source_label=source_label,
            force=True,
        )
        if item_labels:
            _set_item_labels(folder, item_labels)
        copied = spec.copy_ok and responses.stat().st_size < COPY_LIMIT
        if copied:
            shutil.copyfile(responses, folder / "responses.csv")
        elif (folder / "responses.csv").exists():
            (folder / "responses.csv").unlink()
    if spec.name == "agentdojo" and out_root == REPO / "item_banks":
        build_live_banks()  # sources, version_check tags, and item_banks/agentdojo-full
    write_readme(spec, folder, summary, copied, extra)
    summary.update({"copied_responses": copied, "evidence": evidence})
    return summary


def _set_item_labels(folder: Path, labels: dict[str, list[str]]) -> None:
    """Add per-item category labels (e.g. benign items' 'task failed/done') and re-validate."""
    path = folder / "bank.json"
    doc = json.loads(path.read_text())
    for item in doc["items"]:
        if item["id"] in labels and len(labels[item["id"]]) == len(item["b"]) + 1:
            item["labels"] = labels[item["id"]]
    from orchestrator._io import atomic_write_json

    atomic_write_json(path, doc)
    load_bank(folder)  # raises if the edit broke the schema


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=REPO.parent / "shared" / "data", type=Path)
    ap.add_argument("--out", default=REPO / "item_banks", type=Path)
    ap.add_argument("--only", nargs="*", choices=[s.name for s in SPECS])
    args = ap.parse_args()
    rows = []
    for spec in SPECS:
        if args.only and spec.name not in args.only:
            continue
        s = run(spec, args.data, args.out)
        rows.append({**s, "bank_file": s["bank"], "bank": spec.name})
        print(
            f"{spec.name:20s} subjects {s['n_subjects']:5d}  items {s['n_items']:4d}  "
            f"excluded {s['n_excluded']:3d}  loglik {s['log_likelihood']:12.2f}  "
            f"iter {s['iterations']:3d}  conv {s['converged']}  {s['wall_time_s']:6.1f}s",
            flush=True,
        )
    print("\n| bank | subjects | items | excluded | observations | log-likelihood | wall time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['bank']} | {r['n_subjects']} | {r['n_items']} | {r['n_excluded']} | "
            f"{r['n_observations']} | {r['log_likelihood']:.1f} | {r['wall_time_s']:.1f} s |"
        )
    out = REPO / "bench" / "results" / "real_banks.json"
    prev = json.loads(out.read_text()) if out.exists() else {}
    prev.update({r["bank"]: r for r in rows})
    out.write_text(json.dumps(prev, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
