#!/usr/bin/env bash
# One short GPU check (about 6 minutes on one H100 with STEPS=120), run once from the repository root:
#
#   DATA=/path/to/read bash benchmarks/gpu_check.sh    # a corpus with train/, valid/ and test/
#   bash benchmarks/gpu_check.sh                       # no DATA: synthesise a small `read` corpus here
#
# Steps, most important first, each under its own time limit so that one slow step cannot eat the rest:
# 1. the CUDA tests (pytest -m gpu): no host syncs inside any method's step, NCCL reduction + surgery,
#    the model on CUDA against the CPU and under bf16;
# 2. the paper-size config (configs/paper_chime4.yaml, 16 kHz like the read preset), batch 16, no
#    accumulation, on the corpus's batches: step time of `sum` vs `gr`, peak memory, utterances/second and
#    zero host syncs in engine.step_gradients(), in bf16 autocast (STEPS measured steps), float32 and fp16
#    with the gradient scaler (STEPS/4 each);
# 3. train.compile=true (bf16, STEPS/4 steps, methods once each: every run compiles its model);
# 4. the command line on CUDA: torchrun (NCCL, one process per GPU) trains `gr` for a few steps and
#    writes its checkpoint, then `gradremedy eval --device cuda` decodes the test set with joint beam search.
# Every figure goes to $OUT/*.json and to the log $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-benchmarks/gpu_check_out}        # figures and the log (a few small files)
SCRATCH=${SCRATCH:-/tmp/gradremedy_gpu_check}  # corpus, experiment, checkpoints
STEPS=${STEPS:-200}
mkdir -p "$OUT" "$SCRATCH"
exec > >(tee "$OUT/gpu_check.log") 2>&1
status=0
step() { echo; echo "=== $* ($(date +%T))"; }
fail() { echo "FAILED: $*"; status=1; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"

step "CUDA tests"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/surgery/test_engine.py \
    tests/train/test_distributed.py tests/models/test_joint.py || fail "CUDA tests"

step "read preset corpus"
if [ -z "${DATA:-}" ]; then
    DATA="$SCRATCH/read"
    timeout 240 "$PY" -m gradremedy data synth --preset read --num-utts "${SYNTH_UTTS:-400}" \
        --out "$DATA" --jobs "$(nproc)" >/dev/null || { fail "synthesis"; DATA=""; }
fi
DATA_ARGS=()
if [ -n "$DATA" ]; then DATA_ARGS=(--data "$DATA"); else echo "no corpus: random 3-6 s batches"; fi
CHECK=("$PY" benchmarks/gpu_check.py --config configs/paper_chime4.yaml "${DATA_ARGS[@]}" --set train.accum_grad=1)

step "paper config, bf16: sum vs gr"
timeout 240 "${CHECK[@]}" --amp bf16 --steps "$STEPS" --json "$OUT/bf16.json" || fail "bf16"
step "paper config, float32: sum vs gr"
timeout 120 "${CHECK[@]}" --amp none --steps $((STEPS / 4)) --json "$OUT/fp32.json" || fail "float32"
step "paper config, fp16 + gradient scaler: sum vs gr"
timeout 120 "${CHECK[@]}" --amp fp16 --steps $((STEPS / 4)) --json "$OUT/fp16.json" || fail "fp16"

step "paper config, bf16, train.compile=true: sum vs gr"
timeout "${COMPILE_LIMIT:-300}" "${CHECK[@]}" --amp bf16 --compile --rounds 1 --steps $((STEPS / 4)) \
    --json "$OUT/compile.json" || fail "compile"

if [ -n "$DATA" ]; then
    step "torchrun (NCCL) on $("$PY" -c 'import torch; print(torch.cuda.device_count())') GPU(s): gr, 30 steps, then eval on CUDA"
    EXP="$SCRATCH/ddp_gr"
    timeout 150 "$PY" -m torch.distributed.run --standalone --nproc_per_node gpu -m gradremedy train \
        --config configs/paper_chime4.yaml --data "$DATA" --out "$EXP" --overwrite --device cuda \
        --method gr --max-steps 30 --set train.amp=bf16 --set train.accum_grad=1 >"$EXP.log" 2>&1 \
        || fail "torchrun train"
    tail -c 600 "$EXP.log" | tr '\r' '\n' | tail -4
    cp "$EXP/run.json" "$OUT/ddp_run.json" 2>/dev/null
    timeout 120 "$PY" -m gradremedy eval --exp "$EXP" --data "$DATA/test" --device cuda --beam 10 \
        --checkpoint last --se-max-utts 8 --out "$OUT/eval_cuda.json" >"$EXP.eval.log" 2>&1 \
        || fail "eval on CUDA"
    tail -c 600 "$EXP.eval.log" | tr '\r' '\n' | tail -4
fi

step "done: status $status"
exit $status
