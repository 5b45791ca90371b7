#!/bin/bash
# usage: eval_only.sh NAME : evaluate /work/probes/NAME (trained on data_hp) on the hp test set, the original
# demo corpus's test set and the real-voice sets
cd /work/wt/recipe; export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1; PY=/work/main/.venv/bin/python
out=/work/probes/$1
$PY -m gradremedy eval --exp $out --data /work/probes/data_hp/test --se-max-utts 50 --out $out/eval_test.json > $out.eval_test.log 2>&1
$PY -m gradremedy eval --exp $out --data /work/demo-run/data/test --se-max-utts 1 --out $out/eval_oldtest.json > $out.eval_oldtest.log 2>&1
for c in clean noisy; do $PY -m gradremedy eval --exp $out --data /work/demo-run/real_voice/$c --out $out/eval_rv_$c.json > $out.eval_rv_$c.log 2>&1; done
echo done > $out.done
