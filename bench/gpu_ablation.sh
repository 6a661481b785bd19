#!/usr/bin/env bash
# Sequence ablation at a cohort size a CPU cannot afford: synthesise a cohort, preprocess it, then run
# each (profile, sequence set) as its own `glioma experiment ablation` process, all at once on one GPU
# (the quick profile's small net leaves an H100/H200 mostly idle, so runs share it well).
#
#   bash bench/gpu_ablation.sh WORKDIR N "name:profile:set[:options]" ...
#   bash bench/gpu_ablation.sh /tmp/gx 360 dense_all:quick:all dense_t1ce:quick:t1ce "plain_all:quick:all:--lesion-gate off"
#
# Environment: SEED (21), DIFFICULTY (0), HGG_FRACTION (0.5), WORKERS (all CPUs), DEVICE (cuda),
# DEADLINE (seconds from the start after which runs are stopped; default none), GLIOMA (the CLI),
# EXTRA (more `experiment ablation` options, e.g. "--folds 2 --epochs 3" for a smoke run).
# Each run's pooled AUC line is printed; results stay under WORKDIR/abl_<name>/. Pair two runs'
# out-of-fold predictions with gliomagrade.ablation.summarise (same seed = same splits).
set -u
work=${1:?WORKDIR}; n=${2:?N}; shift 2
read -r -a glioma <<<"${GLIOMA:-python3 -m gliomagrade.cli}"
read -r -a extra <<<"${EXTRA:-}"
workers=${WORKERS:-0}
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
mkdir -p "$work"

"${glioma[@]}" cohort synth --out "$work/raw" --n "$n" --seed "${SEED:-21}" --hgg-fraction "${HGG_FRACTION:-0.5}" \
  --difficulty "${DIFFICULTY:-0}" --resolution 2 --workers "$workers" >"$work/synth.log" 2>&1 \
  || { tail -20 "$work/synth.log"; exit 1; }
echo "synthesised $n cases in $(elapsed) s"
"${glioma[@]}" preprocess "$work/raw/MICCAI_BraTS2020_TrainingData" --out "$work/cohort" --profile quick \
  --workers "$workers" >"$work/prep.log" 2>&1
echo "preprocessed (rc $?) at $(elapsed) s: $(tail -1 "$work/prep.log")"

run() {  # name profile set [options]
  local limit=() opts=()
  read -r -a opts <<<"${4:-}"
  local left
  if [ -n "${DEADLINE:-}" ]; then
    left=$((DEADLINE - $(elapsed)))
    limit=(timeout $((left > 1 ? left : 1)))
  fi
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-3} "${limit[@]}" "${glioma[@]}" experiment ablation --cohort "$work/cohort" \
    --profile "$2" --sets "$3" --device "${DEVICE:-cuda}" "${extra[@]}" "${opts[@]}" --quiet --out "$work/abl_$1" >"$work/$1.log" 2>&1
  echo "$1 (rc $?) at $(elapsed) s: $(grep -F "│ $3 " "$work/$1.log" | tail -1)"
}
for spec in "$@"; do
  IFS=: read -r name profile set opts <<<"$spec"
  run "$name" "$profile" "$set" "${opts:-}" &
  sleep 1
done
wait
echo "all runs done at $(elapsed) s"
