#!/usr/bin/env bash
# The main job on the embedded default: a synthetic cohort through the whole Kubeflow pipeline
# (kfp.local), then the promoted model served by two real KServe model servers (predictor +
# transformer) and one case sent through the transformer. Usage: scripts/demo.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-demo}
N=${GLIOMA_DEMO_CASES:-80}
DIFFICULTY=${GLIOMA_DEMO_DIFFICULTY:-0.0}
SEED=7
BIN=${VENV:-.venv}/bin
MODEL=glioma-grade
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/2 pipeline: synthetic cohort ($N cases) -> ingest -> preprocess -> CV training -> evaluate -> gate -> ONNX -> registry"
"$BIN/glioma" pipeline run --local --synth "$N" --seed "$SEED" --difficulty "$DIFFICULTY" --out "$OUT"
pipeline_s=$(( $(date +%s) - start ))

echo "== 2/2 serving: predictor + transformer (two kserve.ModelServer processes), one case through the transformer"
read -r HTTP GRPC PHTTP PGRPC < <("$BIN/python" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
"$BIN/glioma" serve --store "$OUT/registry" --model "$MODEL" --version promoted \
  --http-port "$HTTP" --grpc-port "$GRPC" --predictor-http-port "$PHTTP" --predictor-grpc-port "$PGRPC" \
  --log-dir "$OUT/serve-logs" &
SERVE_PID=$!
stop_servers() { kill -TERM "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }
trap stop_servers EXIT

"$BIN/python" - "$HTTP" "$MODEL" "$SERVE_PID" <<'PY'
import os, sys, time, urllib.request
port, model, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"http://127.0.0.1:{port}/v2/models/{model}/ready"
deadline = time.time() + 300
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("glioma serve exited before it was ready (see the serve logs)")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(f"transformer not ready after 300 s at {url}")
PY

CASE=$(find "$OUT"/synthetic-"$N"-seed"$SEED"-d* -mindepth 2 -maxdepth 2 -type d -name 'BraTS20_Training_*' | sort | head -n 1)
"$BIN/glioma" predict --url "http://127.0.0.1:$HTTP" --model "$MODEL" "$CASE" --out "$OUT/prediction"
stop_servers
trap - EXIT
echo "servers stopped cleanly"
echo "demo finished in $(( $(date +%s) - start )) s (pipeline ${pipeline_s} s); outputs under $OUT/"
