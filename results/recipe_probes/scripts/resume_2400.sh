#!/bin/bash
# After the r_* trainings end: continue c_sum_1700 / c_gr_1700 (copied to c_*_2400) to 2,400 steps
# (train.max_steps may change on resumption; the schedule does not depend on it), copying them at 2,100.
while [ "$(wc -w < /work/probes/r_hp_varnorm.time)" -lt 3 ] || [ "$(wc -w < /work/probes/r_rw_varnorm.time)" -lt 3 ]; do sleep 5; done
S="--set model.enhancer.kind=mask_tcn --set model.enhancer.lstm_layers=3 --set model.enhancer.lstm_units=896 --set model.frontend.normalize_variance=true --set train.keep_best=3"
for m in sum gr; do (
  cd /work/wt/recipe; export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1; PY=/work/main/.venv/bin/python
  out=/work/probes/c_${m}_2400
  echo "$PY -m gradremedy train --config configs/tiny.yaml --data /work/probes/data_hp --out $out --method $m --max-steps 2400 --seed 1 $S  (resumed from c_${m}_1700)" > $out.cmd
  git rev-parse --short HEAD > $out.commit
  /usr/bin/time -f "%U %S %e" -o $out.time $PY -m gradremedy train --config configs/tiny.yaml --data /work/probes/data_hp --out $out --method $m --max-steps 2400 --seed 1 $S > $out.train.log 2>&1
  cp $out/checkpoints/last.pt $out/checkpoints/average.pt
  cd /work/probes && ./eval_only.sh c_${m}_2400
) & done
for m in sum gr; do (
  src=/work/probes/c_${m}_2400
  while [ ! -f $src/checkpoints/step0002100.pt ]; do sleep 3; done; sleep 8
  d=/work/probes/c_${m}_2100; mkdir -p $d/checkpoints
  cp -r $src/{config.yaml,tokenizer,logs,run.json} $d/; cp $src/checkpoints/last.pt $d/checkpoints/average.pt
  echo "$(cat $src.cmd)  (its last checkpoint at step 2,100)" > $d.cmd; cp $src.commit $d.commit
  cd /work/probes && ./eval_only.sh c_${m}_2100
) & done
wait
