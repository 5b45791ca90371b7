#!/usr/bin/env bash
# gradremedy against ESPnet 202511 on the same model sizes (benchmarks/vs_espnet.py), in ESPnet's own
# virtual environment: scripts/setup-integrations.sh builds .venv-integrations (ESPnet installed --no-deps
# because of its sentencepiece==0.2.0 pin, torch and torchaudio 2.11.0) and returns at once when it is
# already built. gradremedy runs from src/, so both sides use that environment's torch.
#
#   bash scripts/bench-vs-espnet.sh                          # every case: 4 minutes on a busy 2-core VM
#   bash scripts/bench-vs-espnet.sh --sizes paper --skip-train --with-uncached
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-integrations.sh
OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src" .venv-integrations/bin/python benchmarks/vs_espnet.py "$@"
