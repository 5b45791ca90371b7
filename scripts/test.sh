#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), then lint and run the test suite; then the library alone in
# a fresh core-only environment (scripts/test-core.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/python -m pytest -q "$@"
bash scripts/test-core.sh
bash scripts/test-integrations.sh  # framework adapters against the real packages, in .venv-integrations
