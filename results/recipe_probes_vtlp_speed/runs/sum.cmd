.venv/bin/python -m gradremedy train --config configs/tiny.yaml --data /work/probe-vtlp/data --out /work/probe-vtlp/sum --method sum --max-steps 2200 --seed 1
