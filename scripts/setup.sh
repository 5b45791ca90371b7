#!/usr/bin/env bash
# Set up everything gradremedy needs on a fresh machine: the text-to-speech engines and sound files that
# build the embedded corpus (Debian packages), and a virtual environment at .venv with the package, the
# speech extra (gradremedy[asr]) and the test tools, torch pinned by constraints.txt. Safe to run again:
# it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
              openttd-opensfx fortunes sox libsndfile1 asterisk-core-sounds-en-wav
              asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
else
  for tool in espeak-ng flite festival; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages (Debian names), then run again: ${missing[*]}" >&2
    echo "setup: without them the embedded corpus cannot be built; everything else still installs." >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.gradremedy-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  pip_install() { .venv/bin/python -m pip install -q -c constraints.txt "$@"; }
  .venv/bin/python -m pip install -q --upgrade pip
  # The exact torch of constraints.txt first and alone: with it in place nothing pulls another build.
  pip_install torch
  # pesq is a source distribution whose build needs numpy, Cython and pytest-runner (its setup_requires):
  # install them first and build pesq against them without build isolation (works on Python 3.10-3.13).
  if ! { pip_install numpy cython pytest-runner setuptools wheel && pip_install --no-build-isolation "pesq>=0.0.4"; }; then
    echo "setup: pesq could not be built: 'gradremedy eval' will report PESQ as unavailable" >&2
  fi
  if .venv/bin/python -c "import pesq" 2>/dev/null; then
    pip_install -e ".[asr,test]"
  else  # the speech extra without pesq, read from pyproject.toml
    mapfile -t asr < <(.venv/bin/python - <<'PY'
import re
block = re.search(r"^asr = \[(.*?)\]", open("pyproject.toml").read(), re.S | re.M).group(1)
for requirement in re.findall(r'"([^"]+)"', block):
    if not requirement.startswith("pesq"):
        print(requirement)
PY
)
    pip_install -e ".[test]" "${asr[@]}"
  fi
  echo "$want" > "$stamp"
fi
