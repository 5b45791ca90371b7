#!/usr/bin/env bash
# Probe: does real recorded speech for the SE task help the tiny recipe on a real voice?
#
# usage: results/recipe_probes_real_speech/run.sh SE_DIR [CORPUS] [OUT]
#   SE_DIR  where the real-speech SE set is built (gradremedy data real-speech; resumable)
#   CORPUS  an existing demo corpus with train/ valid/ test/ (default /work/demo-v5/data)
#   OUT     experiments and scores (default results/recipe_probes_real_speech/runs)
# environment: STEPS (2200), NUM_UTTS (2400), SEED (1), REAL_VOICE (/work/demo-v5/real_voice, the
#   real-voice test set, testing only), PY (python with gradremedy; default .venv/bin/python or python3)
#
# (a) builds the SE set: real voices of Debian's asterisk-core-sounds-{fr,it,ru}-wav, 8 kHz, seed 1;
# (b) trains sum and gr side by side (one thread each) with configs/tiny.yaml on CORPUS/train plus the SE
#     set (data.extra_train, data.untranscribed=se_only), STEPS steps;
# (c) scores each with gradremedy eval on CORPUS/test and on REAL_VOICE/clean and REAL_VOICE/noisy, and
#     writes OUT/summary.tsv (WER %). Compare with the demo's own sum and gr (same config and steps,
#     without the SE set), e.g. /work/demo-v5/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
SE_DIR=${1:?usage: run.sh SE_DIR [CORPUS] [OUT]}
CORPUS=${2:-/work/demo-v5/data}
OUT=${3:-results/recipe_probes_real_speech/runs}
STEPS=${STEPS:-2200}
NUM_UTTS=${NUM_UTTS:-2400}
SEED=${SEED:-1}
REAL_VOICE=${REAL_VOICE:-/work/demo-v5/real_voice}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
mkdir -p "$OUT"
SE_DIR=$(realpath -m "$SE_DIR")

{
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(uname -n), $(nproc --all) cores, $(uname -m)"
  echo "started: $(date -u +%FT%TZ)"
  echo "corpus: $CORPUS; SE set: $SE_DIR ($NUM_UTTS utterances, seed 1); steps: $STEPS; seed: $SEED"
} > "$OUT/provenance.txt"

# (a) the SE set
$PY -m gradremedy data real-speech --out "$SE_DIR" --num-utts "$NUM_UTTS" --seed 1 --sample-rate 8000 \
  2>&1 | tee "$OUT/real_speech.log"

# (b) sum and gr side by side, one thread each
for method in sum gr; do
  cmd=($PY -m gradremedy train --config configs/tiny.yaml --data "$CORPUS" --out "$OUT/$method"
       --method "$method" --max-steps "$STEPS" --seed "$SEED"
       --set "data.extra_train=[$SE_DIR]" --set data.untranscribed=se_only --set train.num_threads=1)
  echo "${cmd[*]}" > "$OUT/$method.cmd"
  /usr/bin/time -f "%U %S %e" -o "$OUT/$method.time" "${cmd[@]}" > "$OUT/$method.train.log" 2>&1 &
done
wait

# (c) scores: the corpus's test set, the real voice clean and noisy
printf "method\ttest\treal_voice_clean\treal_voice_noisy\n" > "$OUT/summary.tsv"
for method in sum gr; do
  $PY -m gradremedy eval --exp "$OUT/$method" --data "$CORPUS/test" --out "$OUT/$method/eval_test.json" \
    > "$OUT/$method.eval_test.log" 2>&1
  for c in clean noisy; do
    $PY -m gradremedy eval --exp "$OUT/$method" --data "$REAL_VOICE/$c" --se-max-utts 1 \
      --out "$OUT/$method/eval_rv_$c.json" > "$OUT/$method.eval_rv_$c.log" 2>&1
  done
  $PY - "$OUT/$method" "$method" >> "$OUT/summary.tsv" <<'PY'
import json, sys
exp, method = sys.argv[1], sys.argv[2]
wers = [json.load(open(f"{exp}/{name}.json"))["wer"] for name in ("eval_test", "eval_rv_clean", "eval_rv_noisy")]
print("\t".join([method, *(f"{w:.1f}" for w in wers)]))  # gradremedy eval reports WER in %
PY
done
echo "finished: $(date -u +%FT%TZ)" >> "$OUT/provenance.txt"
cat "$OUT/summary.tsv"
