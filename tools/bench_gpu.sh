#!/usr/bin/env bash
# The GPU benchmark set (README "On a GPU"): bench render, bench animate (per-frame and whole
# process vs warm takes) and bench motion --whole on one CUDA device, official-size synthetic
# weights. Each step's output is tee'd into $OUT (default ./bench-gpu-out); a failing step is
# reported and the next one still runs.   Usage: bash tools/bench_gpu.sh [cuda|cpu] [official|tiny]
set -u
DEVICE=${1:-cuda}
CONFIG=${2:-official}
OUT=${OUT:-$PWD/bench-gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W=${JOYVASA_BENCH_WEIGHTS:-/tmp/jv-bench-weights-$CONFIG}
step() {  # step NAME CMD...: run, tee, time, keep going
  local name=$1; shift
  echo "=== $name: $*" | tee "$OUT/$name.txt"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$OUT/$name.txt"
  echo "=== $name: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$OUT/$name.txt"
}
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -f "$W/models.yaml" ] || step weights $PY tools/make_synthetic_weights.py --config "$CONFIG" --out "$W"
step render $PY -m engine bench render --weights "$W" --device "$DEVICE" --dtype float32,bfloat16 --batch 1,8,0 --frames 32
step animate $PY -m engine bench animate --weights "$W" --device "$DEVICE" --dtype bfloat16,float32 --batch 0 \
  --speed-seconds 4 --skip-memory
step animate_whole $PY -m engine bench animate --weights "$W" --device "$DEVICE" --whole --dtype bfloat16 --batch 0 \
  --speed-seconds 4
step motion_whole $PY -m engine bench motion --weights "$W" --device "$DEVICE" --whole --seconds 20 --repeat 2
step motion_exact $PY -m engine bench motion --weights "$W" --device "$DEVICE" --whole --seconds 20 --repeat 1 \
  --sampler ancestral --steps 50
