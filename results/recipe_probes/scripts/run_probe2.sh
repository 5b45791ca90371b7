#!/bin/bash
# usage: DATA=dir run_probe2.sh NAME METHOD STEPS [--set k=v ...]  (train into /work/probes/NAME, then evaluate
# on DATA/test, on the original demo corpus's test set and on the real-voice clean/noisy sets)
name=$1; method=$2; steps=$3; shift 3
cd /work/wt/recipe
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
out=/work/probes/$name
mkdir -p $out
echo "$PY -m gradremedy train --config configs/tiny.yaml --data $DATA --out $out --method $method --max-steps $steps --seed 1 $*" > $out.cmd
git rev-parse --short HEAD > $out.commit
/usr/bin/time -f "%U %S %e" -o $out.time $PY -m gradremedy train --config configs/tiny.yaml --data $DATA --out $out --method $method --max-steps $steps --seed 1 "$@" > $out.train.log 2>&1
$PY -m gradremedy eval --exp $out --data $DATA/test --se-max-utts 50 --out $out/eval_test.json > $out.eval_test.log 2>&1
if [ "$DATA" != /work/demo-run/data ]; then $PY -m gradremedy eval --exp $out --data /work/demo-run/data/test --se-max-utts 1 --out $out/eval_oldtest.json > $out.eval_oldtest.log 2>&1; fi
for c in clean noisy; do $PY -m gradremedy eval --exp $out --data /work/demo-run/real_voice/$c --out $out/eval_rv_$c.json > $out.eval_rv_$c.log 2>&1; done
echo done > $out.done
