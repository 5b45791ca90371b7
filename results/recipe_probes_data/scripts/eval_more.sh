#!/bin/bash
# usage: eval_more.sh NAME OWN_TEST: evaluate /work/probes2/NAME on its own corpus's test set and the diagnostic sets
name=$1; own=$2
cd /work/main; export PYTHONPATH=/work/main/src OMP_NUM_THREADS=1; PY=/work/main/.venv/bin/python
out=/work/probes2/$name
$PY -m gradremedy eval --exp $out --data $own --se-max-utts 20 --out $out/eval_owntest.json > $out.eval_owntest.log 2>&1
for s in rvstyle_slt/clean rvstyle_kal16/clean cont_slt cont_kal16; do
  $PY -m gradremedy eval --exp $out --data /work/probes2/$s --se-max-utts 1 --out $out/eval_diag_${s//\//_}.json > /dev/null 2>&1
done
echo done > $out.more.done
