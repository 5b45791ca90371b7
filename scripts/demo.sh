#!/usr/bin/env bash
# Install what the demo needs (scripts/setup.sh), then run the main job: build the tiny corpus, train the
# plain multi-task baseline, Gradient Remedy and an ASR-only model, evaluate them and write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/gradremedy demo --out "${1:-demo}"
