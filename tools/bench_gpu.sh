#!/usr/bin/env bash
# Every GPU figure of issue 20 in one run, under one time limit, on a lent NVIDIA card:
#   cold start (import torch, CUDA context), doctor's device/NVENC lines, W+G fps + FLOP/s vs the
#   card's matmul peak + peak GPU memory per (dtype, batch) (bench render), a whole 10 s animate
#   cold + warm, sequential vs overlapped writer (bench animate --whole --writer both --pasteback),
#   device paste-back vs the sequential path (max grey-level difference), the default settings
#   under an 8 GB cap (JOYVASA_GPU_MEMORY_MB=8192: batch plan, peak memory, OOM or not), and
#   libx264 vs h264_nvenc (bench codec: speed, PSNR), W+G variants (CUDA graph, torch.compile:
#   measure-only); then, if time is left, bench motion --whole.
# Weights: official-size synthetic (random: timings real, pictures noise) unless BENCH_WEIGHTS=DIR.
# Every step's output is also kept in $OUT/<step>.txt (default ./bench-gpu-out).
#
#   bash tools/bench_gpu.sh [cuda|cpu] [official|tiny]   # on the GPU machine, ~6-9 min
#   BENCH_LIMIT_S=420 bash tools/bench_gpu.sh            # total time limit (default 540 s); later steps are skipped
#   BENCH_SECONDS=0.4 bash tools/bench_gpu.sh cpu tiny   # dry run of the script on CPU (no GPU-only steps)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LIMIT=${BENCH_LIMIT_S:-540}
DEVICE=${1:-${BENCH_DEVICE:-cuda}}
CONFIG=${2:-${BENCH_CONFIG:-official}}
SECONDS_CLIP=${BENCH_SECONDS:-10}
OUT=${OUT:-$PWD/bench-gpu-out}
mkdir -p "$OUT"
T0=$(date +%s)
TMP=$(mktemp -d /tmp/jv-bench-gpu-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
# step NAME MIN_SECONDS COMMAND...: runs with the time that is left, or says it was skipped
step() {
  local name=$1 need=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt "$need" ]; then echo "== $name: SKIPPED (time limit: ${l}s left, needs ~${need}s)"; return 0; fi
  local file; file="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | cut -c1-40).txt"
  echo "== $name  [$(( $(date +%s) - T0 ))s elapsed, ${l}s left]" | tee "$file"
  timeout --signal=INT --kill-after=10 "$l" "$@" 2>&1 | tee -a "$file"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || echo "   ($name ended with rc $rc$([ "$rc" -eq 124 ] && echo ': time limit'))" | tee -a "$file"
  return 0
}

echo "bench_gpu.sh: device $DEVICE, $CONFIG weights, ${SECONDS_CLIP}s clip, limit ${LIMIT}s, $(date -u +%FT%TZ)"
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU visible to torch: nothing to measure (dry run: BENCH_DEVICE=cpu BENCH_CONFIG=tiny)"; exit 2
fi
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader

step "cold start" 20 "$PY" - "$DEVICE" <<'EOF'
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
if sys.argv[1] == "cuda":
    torch.zeros(1, device="cuda"); torch.cuda.synchronize()
t2 = time.perf_counter()
import engine.pipeline.animate, engine.models.stage_one  # noqa: E401,F401 - what animate imports next
t3 = time.perf_counter()
print(f"   import torch {t1 - t0:.2f} s, CUDA context {t2 - t1:.2f} s, engine modules {t3 - t2:.2f} s "
      f"(cold figure of a one-shot process before any weight is read)")
EOF

step "doctor" 30 bash -c "'$PY' -m engine doctor --no-load | grep -E '^(devices|hardware H.264)'"

WEIGHTS=${BENCH_WEIGHTS:-}
if [ -z "$WEIGHTS" ]; then
  WEIGHTS=$TMP/weights
  step "synthetic $CONFIG weights" 30 "$PY" tools/make_synthetic_weights.py --config "$CONFIG" --out "$WEIGHTS"
fi

if [ "$DEVICE" = cuda ]; then
  DTYPES=float32,bfloat16,float16; BATCHES=1,8,0; FRAMES=64
else
  DTYPES=float32; BATCHES=1; FRAMES=1
fi
step "W+G (bench render: fps, GFLOP/s vs matmul peak, peak GPU per setting; batch 0 = auto)" 60 \
  "$PY" -m engine bench render --device "$DEVICE" --weights "$WEIGHTS" --dtype "$DTYPES" --batch "$BATCHES" \
  --frames "$FRAMES"

AUTO_DTYPE=$([ "$DEVICE" = cuda ] && echo bfloat16 || echo float32)
step "whole animate, ${SECONDS_CLIP}s clip, sequential vs overlapped (bench animate --whole)" 90 \
  "$PY" -m engine bench animate --whole --device "$DEVICE" --weights "$WEIGHTS" --dtype "$AUTO_DTYPE" --batch 0 \
  --speed-seconds "$SECONDS_CLIP" --pasteback --writer both --codec auto

PORTRAIT=examples/portrait.jpg
"$PY" - "$TMP/clip.wav" "$SECONDS_CLIP" <<'EOF'
import sys, numpy as np, soundfile as sf
wave, sr = sf.read("examples/speech.wav", dtype="float32")
n = int(float(sys.argv[2]) * sr)
sf.write(sys.argv[1], np.tile(wave, int(np.ceil(n / len(wave))))[:n], sr)
EOF
run_animate() { # OUTDIR EXTRA...: animate the clip with paste-back into PNG frames + mp4
  local out=$1; shift
  "$PY" -m engine animate --image "$PORTRAIT" --audio "$TMP/clip.wav" --weights "$WEIGHTS" --device "$DEVICE" \
    --out "$out/v.mp4" --frames-dir "$out/frames" "$@" 2> "$out.log"
}
compare() {
  mkdir -p "$TMP/seq" "$TMP/dev"
  run_animate "$TMP/seq" --sequential --codec libx264 > /dev/null || { echo "   sequential run failed:"; tail -3 "$TMP/seq.log"; return 1; }
  run_animate "$TMP/dev" --codec libx264 > /dev/null || { echo "   default run failed:"; tail -3 "$TMP/dev.log"; return 1; }
  grep -h -E "^rendering|writer:" "$TMP/seq.log" "$TMP/dev.log" | sed 's/^/   /'
  "$PY" - "$TMP/seq/frames" "$TMP/dev/frames" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from engine.framing.frame import load_picture as load_image_rgb
a, b = (sorted(Path(d).glob("frame_*.png")) for d in sys.argv[1:3])
assert len(a) == len(b) and a, (len(a), len(b))
worst = max(int(np.abs(load_image_rgb(x).astype(int) - load_image_rgb(y).astype(int)).max()) for x, y in zip(a, b))
print(f"   default path (device paste-back, overlapped writer) vs --sequential: max |diff| {worst} grey level(s) "
      f"over {len(a)} frames (target <= 1)")
EOF
}
export PY TMP WEIGHTS DEVICE PORTRAIT
export -f run_animate compare
step "device paste-back vs sequential path, same device" 60 bash -c compare

cap_run() {
  mkdir -p "$TMP/cap"
  JOYVASA_GPU_MEMORY_MB=8192 run_animate "$TMP/cap" --codec auto > /dev/null
  local rc=$?
  grep -h -E "^rendering|peak device memory|writer:|s per second of video|oom" "$TMP/cap.log" | sed 's/^/   /'
  echo "   default settings under an 8 GB cap (JOYVASA_GPU_MEMORY_MB=8192): rc $rc (target: no OOM, peak <= 6 GB)"
}
export -f cap_run
if [ "$DEVICE" = cuda ]; then step "8 GB card (memory cap)" 60 bash -c cap_run; fi

step "H.264 encoders (bench codec: libx264 vs h264_nvenc)" 30 \
  "$PY" -m engine bench codec --frames "$TMP/dev/frames"

# measure-only W+G variants (engine/bench/variants.py): CUDA graph of the auto batch, torch.compile of W and G
VARIANT_DTYPE=$([ "$DEVICE" = cuda ] && echo bfloat16 || echo float32)
step "W+G variants: eager vs CUDA graph vs torch.compile ($VARIANT_DTYPE, auto batch)" 150 \
  "$PY" -m engine bench render --device "$DEVICE" --weights "$WEIGHTS" --dtype "$VARIANT_DTYPE" --batch 0 \
  --frames "$FRAMES" --variants eager,graph,compile

# the motion stage (not issue 20's, kept from the earlier GPU set): only with time to spare
step "motion whole (default sampler)" 90 \
  "$PY" -m engine bench motion --weights "$WEIGHTS" --device "$DEVICE" --whole --seconds 20 --repeat 2

echo "bench_gpu.sh done in $(( $(date +%s) - T0 )) s"
