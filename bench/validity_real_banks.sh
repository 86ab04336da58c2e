#!/usr/bin/env bash
# Cross-benchmark validity on the real banks (needs ../shared/data for the tinybench responses).
#   1. the five tinybench banks: correlations and collateral-prior CAT replays
#   2. the safety banks (responses shipped in item_banks/) with every bank that shares models
#      with them (alpaca_eval with tinygsm8k / tinywinogrande / tinytruthfulqa / tinyarc)
# Each writes report.html (not committed) and report.json; the first also its figures.
set -euo pipefail
cd "$(dirname "$0")/.."
TINY="item_banks/tinyarc item_banks/tinygsm8k item_banks/tinyhellaswag item_banks/tinytruthfulqa item_banks/tinywinogrande"
# shellcheck disable=SC2086
agentcat validity $TINY --responses-dir ../shared/data/tinybench \
  --out bench/results/validity_tinybench/report.html --figures bench/results/validity_tinybench
# shellcheck disable=SC2086
agentcat validity item_banks/agentdojo item_banks/jailbreakbench item_banks/xstest item_banks/alpaca_eval \
  $TINY --responses-dir ../shared/data/tinybench --no-collateral \
  --out bench/results/validity_safety/report.html
