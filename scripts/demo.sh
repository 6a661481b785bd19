#!/usr/bin/env bash
# The main job on the embedded default: a synthetic cohort through the whole Kubeflow pipeline
# (kfp.local), then the promoted model served by two real KServe model servers and one case sent
# through the transformer. Usage: scripts/demo.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-demo}
N=${GLIOMA_DEMO_CASES:-60}
BIN=${VENV:-.venv}/bin
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/2 pipeline: synthetic cohort ($N cases) -> ingest -> preprocess -> CV training -> gate -> ONNX -> registry"
"$BIN/glioma" pipeline run --local --synth "$N" --seed 7 --out "$OUT"

echo "== 2/2 serving: predictor + transformer (KServe model servers), one case through the transformer"
"$BIN/glioma" serve --store "$OUT/registry" --version promoted --demo-case "$OUT/synthetic-$N-seed7" --out "$OUT/prediction"

echo "demo finished in $(( $(date +%s) - start )) s; outputs under $OUT/"
