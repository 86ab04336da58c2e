#!/usr/bin/env bash
# Health report of the agentdojo bank on its own calibration data.
# Uses item_banks/agentdojo when it exists, else calibrates one into a temp folder
# with the project calibrator (same settings the bank ships with).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/agentdojo}
OUT=bench/results/health_agentdojo
BANK=item_banks/agentdojo
if [ ! -f "$BANK/bank.json" ]; then
  BANK=$(mktemp -d)/agentdojo
  agentcat calibrate "$DATA/responses.csv" --out "$BANK" --name agentdojo \
    --items "$DATA/items.csv" --tags suite,item_type --quiet
fi
agentcat health --bank "$BANK" --responses "$DATA/responses.csv" \
  --out "$OUT/report.html" --figures "$OUT"
