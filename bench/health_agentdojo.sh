#!/usr/bin/env bash
# Health report of the agentdojo bank on the responses it was calibrated on.
#   BANK=item_banks/agentdojo (default) — built by bench/calibrate_real_banks.py, which
#   merges the injected items' levels 0/1 and copies the derived responses.csv into the bank.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-item_banks/agentdojo}
RESP=${RESP:-$BANK/responses.csv}
OUT=${OUT:-bench/results/health_agentdojo}
if [ ! -f "$BANK/bank.json" ]; then
  echo "no $BANK/bank.json; build it: python bench/calibrate_real_banks.py --only agentdojo" >&2
  exit 1
fi
agentcat health --bank "$BANK" --responses "$RESP" --out "$OUT/report.html" --figures "$OUT"
