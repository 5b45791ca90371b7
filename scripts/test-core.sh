#!/usr/bin/env bash
# The library alone, as an outside user installs it: a fresh virtual environment with only `pip install .`
# (no extras), the surgery tests and examples/two_task_regression.py run in it, and a check that none of
# the speech system's packages came along. torch comes first, pinned by constraints.txt (the CPU build
# this machine has), so that `pip install .` finds its torch>=2.1 satisfied and pulls no other build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${CORE_VENV:-.venv-core}
SPEECH="sentencepiece jiwer pesq pystoi soundfile matplotlib tensorboard scipy PyYAML tqdm"

rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints.txt torch
# Built from a clean copy of what the package consists of, so that no build/ folder is left or reused here.
package=$(mktemp -d)
trap 'rm -rf "$package"' EXIT
cp -rL pyproject.toml README.md src "$package/"  # -L: the shipped configs are a link
"$VENV/bin/python" -m pip install -q -c constraints.txt "$package"

no_speech_packages() {
  "$VENV/bin/python" - "$@" <<'PY'
import importlib.metadata
import sys

found = []
for name in sys.argv[1:]:
    try:
        found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        pass
if found:
    sys.exit(f"test-core: the core install pulled speech packages: {', '.join(found)}")
print("test-core: no speech package installed")
PY
}
no_speech_packages $SPEECH
"$VENV/bin/python" -c "from gradremedy.surgery import GradientEngine, build_method, gradient_remedy; print('test-core: import ok')"

# The test tools only (they bring none of the speech packages; checked again below).
"$VENV/bin/python" -m pip install -q -c constraints.txt "pytest>=8" "hypothesis>=6.100"
no_speech_packages $SPEECH
# The installed package is tested, not src/ (pytest does not put src/ on the path).
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/surgery
"$VENV/bin/python" examples/two_task_regression.py
