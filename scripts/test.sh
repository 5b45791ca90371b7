#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), then lint and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q "$@"
bash scripts/test-integrations.sh  # framework adapters against the real packages, in .venv-integrations
