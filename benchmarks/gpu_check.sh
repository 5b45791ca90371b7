#!/usr/bin/env bash
# One short GPU check (about 8 minutes on one H100), run once from the repository root:
#
#   bash benchmarks/gpu_check.sh                  # figures under $OUT (default benchmarks/gpu_check_out)
#   DATA=/path/to/read bash benchmarks/gpu_check.sh    # use an existing corpus (train/ and valid/)
#
# 1. the CUDA tests (pytest -m gpu): NCCL all-reduce + surgery without host syncs, bf16/fp16 model tests;
# 2. the `read` preset corpus: $DATA if given, else a small one synthesised here (needs the TTS packages
#    of scripts/setup.sh; without them the step check falls back to random 3-6 s batches);
# 3. the paper-size config (configs/paper_chime4.yaml, 16 kHz like the read preset), batch 16, no
#    accumulation: step time of `sum` vs `gr`, peak memory, utterances/second and zero host syncs in
#    engine.step_gradients(), in bf16 autocast (STEPS measured steps) and in float32 (STEPS/4);
# 4. with COMPILE=1, the same with train.compile=true; with 2 or more GPUs, torchrun on 2 GPUs
#    (a few steps of `gr`, to check that it runs and how fast).
# Every figure goes to $OUT/*.json and to the log $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-benchmarks/gpu_check_out}
STEPS=${STEPS:-200}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
status=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"

step "CUDA tests"
timeout 300 "$PY" -m pytest -q -m gpu tests/train/test_distributed.py tests/models || status=1

step "read preset corpus"
DATA_ARGS=()
if [ -n "${DATA:-}" ]; then
    DATA_ARGS=(--data "$DATA")
elif command -v espeak-ng >/dev/null; then
    if timeout 240 "$PY" -m gradremedy data synth --preset read --num-utts "${SYNTH_UTTS:-1500}" \
        --out "$OUT/read" --jobs "$(nproc)"; then
        DATA_ARGS=(--data "$OUT/read")
    else
        echo "synthesis failed or took too long: random batches instead"
    fi
else
    echo "no espeak-ng here: random batches instead of the read preset"
fi

step "paper config, bf16: sum vs gr"
timeout 400 "$PY" benchmarks/gpu_check.py --config configs/paper_chime4.yaml "${DATA_ARGS[@]}" \
    --set train.accum_grad=1 --amp bf16 --steps "$STEPS" --json "$OUT/bf16.json" || status=1

step "paper config, float32: sum vs gr"
timeout 300 "$PY" benchmarks/gpu_check.py --config configs/paper_chime4.yaml "${DATA_ARGS[@]}" \
    --set train.accum_grad=1 --amp none --steps $((STEPS / 4)) --json "$OUT/fp32.json" || status=1

if [ "${COMPILE:-0}" = 1 ]; then
    step "paper config, bf16, train.compile=true"
    timeout 600 "$PY" benchmarks/gpu_check.py --config configs/paper_chime4.yaml "${DATA_ARGS[@]}" \
        --set train.accum_grad=1 --amp bf16 --compile --steps $((STEPS / 2)) --json "$OUT/compile.json" \
        || status=1
fi

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ] && [ ${#DATA_ARGS[@]} -gt 0 ]; then
    step "torchrun on 2 GPUs: gr, 20 steps"
    timeout 400 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m gradremedy train \
        --config configs/paper_chime4.yaml "${DATA_ARGS[@]}" --out "$OUT/ddp_gr" --overwrite \
        --device cuda --method gr --max-steps 20 --set train.amp=bf16 --set train.accum_grad=1 || status=1
    cat "$OUT/ddp_gr/run.json" 2>/dev/null
fi

step "done: status $status"
exit $status
