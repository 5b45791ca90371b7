#!/usr/bin/env bash
# Probe: what do vocal-tract (VTLP) and speed perturbation do for the real voice? The tiny corpus has both
# by default; this trains `sum` and `gr` on the same corpus without them and scores each on the demo's
# test set (which has them) and on the real-voice set.
#
# usage: results/recipe_probes_vtlp_speed/run.sh DEMO_DIR OUT
#   DEMO_DIR  a finished demo (its data/test and real_voice/ are the test sets; its results.json the baseline)
#   OUT       the corpus without VTLP and speed, the experiments and the scores
# environment: STEPS (2200), PY (python with gradremedy; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEMO=${1:?usage: run.sh DEMO_DIR OUT}
OUT=${2:?usage: run.sh DEMO_DIR OUT}
STEPS=${STEPS:-2200}
PY=${PY:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
{
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src configs || echo +dirty)"
  echo "machine: $(uname -n), $(nproc --all) cores; torch $($PY -c 'import torch; print(torch.__version__)')"
  echo "started: $(date -u +%FT%TZ); steps: $STEPS; seed 1; corpus seed 1"
} > "$OUT/provenance.txt"

$PY -m gradremedy data synth --preset tiny --out "$OUT/data" --seed 1 --no-augment vtlp --no-augment speed \
  > "$OUT/synth.log" 2>&1
export OMP_NUM_THREADS=1
for method in sum gr; do
  cmd=($PY -m gradremedy train --config configs/tiny.yaml --data "$OUT/data" --out "$OUT/$method"
       --method "$method" --max-steps "$STEPS" --seed 1)
  echo "${cmd[*]}" > "$OUT/$method.cmd"
  "${cmd[@]}" > "$OUT/$method.train.log" 2>&1 &
done
wait
printf "method\tdemo_test\treal_voice_clean\treal_voice_noisy\n" > "$OUT/summary.tsv"
for method in sum gr; do
  $PY -m gradremedy eval --exp "$OUT/$method" --data "$DEMO/data/test" --out "$OUT/$method/eval_test.json" \
    > "$OUT/$method.eval_test.log" 2>&1
  for c in clean noisy; do
    $PY -m gradremedy eval --exp "$OUT/$method" --data "$DEMO/real_voice/$c" --se-max-utts 1 \
      --out "$OUT/$method/eval_rv_$c.json" > "$OUT/$method.eval_rv_$c.log" 2>&1
  done
  $PY - "$OUT/$method" "$method" >> "$OUT/summary.tsv" <<'PY'
import json, sys
exp, method = sys.argv[1], sys.argv[2]
wers = [json.load(open(f"{exp}/{name}.json"))["wer"] for name in ("eval_test", "eval_rv_clean", "eval_rv_noisy")]
print("\t".join([method, *(f"{w:.1f}" for w in wers)]))
PY
done
echo "finished: $(date -u +%FT%TZ)" >> "$OUT/provenance.txt"
cat "$OUT/summary.tsv"
