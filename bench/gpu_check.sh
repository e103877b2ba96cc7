#!/usr/bin/env bash
# The GPU check, ready for the first CUDA machine (a Colab/Kaggle T4, a rented GPU, the
# project's lent H200): about 8 minutes, everything written under bench/results/.
#   1. the smoke chain (01 ... 07) for pg with the t4 profile's training settings, through
#      unsloth: 4-bit QLoRA (bitsandbytes), fp16, ChatML on the model, padding-free batches.
#      The base is the embedded SmolLM2 (no hub needed); t4's Llama-3-8B needs the hub.
#   2. python -m bench.gpu on the Llama-3 1B shape: the project's path, a bare unsloth loop
#      and plain transformers + peft QLoRA (tokens/s, peak memory, MFU).
#     bash bench/gpu_check.sh            # with .venv (make setup) or the python on PATH
# Exit status: 0 when both parts ran; the logs say which part failed otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "bench/gpu_check.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi
OUT="bench/results/gpu-check-$(date +%F)"
mkdir -p "$OUT"
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" > "$OUT/device.txt"
status=0
T4_SETTINGS=(--set model.backend=unsloth --set model.load_in_4bit=true --set model.dtype=float16
             --set model.chat_template=chatml --set evaluate.progress_log=)
SECONDS=0
RUNS_DIR="$OUT/runs" RESULTS_DIR="$OUT/results" OFFLINE=1 timeout 330 \
  $PY -m lib.runner pg all --profile smoke "${T4_SETTINGS[@]}" > "$OUT/chain.log" 2>&1
rc=$?; [ $rc -eq 0 ] || status=1
echo "chain: exit $rc, ${SECONDS} s" | tee -a "$OUT/chain.log"
SECONDS=0
timeout 150 $PY -m bench.gpu --shape 1b --seq 2048 --batch 2 --modes project,unsloth,hf_qlora --steps 6 --warmup 2 \
  --out bench/results --model-dir "$OUT/model-1b" > "$OUT/bench.log" 2>&1
rc=$?; [ $rc -eq 0 ] || status=1
echo "bench: exit $rc, ${SECONDS} s" | tee -a "$OUT/bench.log"
rm -rf "$OUT/model-1b" "$OUT/runs"/*/06_quantize/merged
exit $status
