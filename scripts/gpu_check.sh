#!/usr/bin/env bash
# The GPU check: fits in 8 minutes on one GPU with 80 GB or more (H100, H200, A100-80GB).
#   bash scripts/gpu_check.sh                              # random FLUX.1-size weights
#   FLUX_DIR=/models/FLUX.1-dev bash scripts/gpu_check.sh   # a local FLUX.1 pipeline folder instead
#   bash scripts/gpu_check.sh --tiny                       # the bench's code at tiny size, on any machine
# Set up with `bash scripts/setup.sh --dev` (pytest). On a machine without a GPU it says so and exits 2.
# 1. the GPU tests (pytest -m gpu: tests/test_gpu.py), among them `omfa train` under the shipped FSDP
#    configs through `accelerate launch` (one process: what no CPU can run);
# 2. `omfa bench gpu` (benchmarks/gpu_check.py): 200 bf16 LoRA training steps of FluxOMFA at full FLUX.1
#    size on 512x384 try-on latents (at most 120 s of them), then a 20-step try-on at 512x384 and
#    1024x768, uncached and cached.
# It prints s/step, images/s, peak memory and the time of one try-on, and ends with one JSON line of
# every figure (also written to $GPU_CHECK_OUT, default gpu_check.json). Exit status: 0 when both
# parts passed, 1 when one failed, 2 when there is no GPU (nothing was checked).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
export PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl} OMFA_COMPILE=${OMFA_COMPILE:-off}

if [[ "${1:-}" == "--tiny" ]]; then
  exec "$PY" -m omfa bench gpu --tiny --train-steps 5 --sample-steps 2 --json
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA GPU here (torch $("$PY" -c 'import torch; print(torch.__version__)') sees none); nothing checked." >&2
  echo "gpu_check: run it on a machine with one GPU; 'bash scripts/gpu_check.sh --tiny' runs the bench's code at tiny size here." >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$SECONDS
status=0

echo "== gpu_check 1/2: GPU tests (pytest -m gpu)"
timeout 180 "$PY" -m pytest -q -m gpu tests -p no:cacheprovider || { echo "gpu_check: GPU tests FAILED"; status=1; }
echo "== gpu_check 1/2 done in $((SECONDS - start)) s"

echo "== gpu_check 2/2: FLUX.1-size bench (${FLUX_DIR:-random weights})"
out=${GPU_CHECK_OUT:-gpu_check.json}
# 120 s of training (not the bench's default 180) keeps both parts within 8 minutes with the FSDP tests
timeout 300 "$PY" -m omfa bench gpu --json --max-train-seconds 120 | tee "$out.log"
bench_status=${PIPESTATUS[0]}
tail -n 1 "$out.log" > "$out"  # the figures, also when a phase failed (its error is among them)
[[ $bench_status == 0 ]] || { echo "gpu_check: bench FAILED (status $bench_status)"; status=1; }
echo "== gpu_check done in $((SECONDS - start)) s, status $status; figures in $out"
exit $status
