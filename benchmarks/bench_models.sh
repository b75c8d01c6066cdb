#!/usr/bin/env bash
# Model benchmarks and the ML-100K evaluation; JSON (and the PNG) land in ${OUT:-bench-results}/.
set -euo pipefail
OUT=${OUT:-bench-results}
DATA=${DATA:-../shared/data/ml-100k}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
$PY -m streams.cli_models eval --dataset ml-100k --data "$DATA" --protocol leave-last-out --config default \
  --json "$OUT/models_ml100k_default.json" --plot "$OUT/models_ml100k_default.png"
$PY -m streams.cli_models bench ann --items 1000000 --json "$OUT/models_ann_1m.json"
$PY -m streams.cli_models bench ranker --json "$OUT/models_ranker.json"
