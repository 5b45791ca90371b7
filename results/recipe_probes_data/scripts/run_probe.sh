#!/bin/bash
# usage: [DATA=corpus] [TEST=test set] run_probe.sh NAME METHOD STEPS [--set k=v ...]: train on DATA (default:
# the 4,800-utterance demo corpus) into /work/probes2/NAME, then evaluate on TEST (default: that corpus's
# test set; the s_* probes ran with TEST=$DATA/test) and on the real-voice clean/noisy sets
name=$1; method=$2; steps=$3; shift 3
cd /work/main
export PYTHONPATH=/work/main/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
DATA=${DATA:-/work/demo-final/data}
TEST=${TEST:-/work/demo-final/data/test}
out=/work/probes2/$name
echo "gradremedy train --config configs/tiny.yaml --data $DATA --out $out --method $method --max-steps $steps --seed 1 $*" > $out.cmd
git rev-parse --short HEAD > $out.commit
/usr/bin/time -f "%U %S %e" -o $out.time $PY -m gradremedy train --config configs/tiny.yaml --data $DATA --out $out --method $method --max-steps $steps --seed 1 "$@" > $out.train.log 2>&1
$PY -m gradremedy eval --exp $out --data $TEST --se-max-utts 20 --out $out/eval_test.json > $out.eval_test.log 2>&1
for c in clean noisy; do $PY -m gradremedy eval --exp $out --data /work/demo-final/real_voice/$c --se-max-utts 1 --out $out/eval_rv_$c.json > $out.eval_rv_$c.log 2>&1; done
echo done > $out.done
