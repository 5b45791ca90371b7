#!/usr/bin/env bash
# Build .venv-integrations at the repository root: a virtual environment, separate from the project's own
# .venv, with the training frameworks that gradremedy.integrations adapts (ESPnet, SpeechBrain, PyTorch
# Lightning, torchjd), the test tools, and gradremedy itself as an editable install. The frameworks are
# never dependencies of gradremedy; they live here so their pins cannot disturb the project's.
#
# Safe to run again: a stamp records what was installed, and a second run with the same script and
# pyproject.toml returns at once. Set PYTHON to choose the interpreter (default python3).
#
# Version choices, as measured on Python 3.11 / x86_64:
# - torch and torchaudio must be the same release. PyPI has no torchaudio for torch 2.13, and its Linux
#   torchaudio wheels need torch's CUDA libraries, so both come from PyPI at 2.11.0 (a CUDA build that
#   runs on the CPU; about 4.7 GB in the venv). torchaudio goes in with --no-deps so it cannot move torch.
# - espnet 202511 pins sentencepiece==0.2.0, which has no wheel for Python >= 3.11 and fails to build, so
#   espnet goes in with --no-deps, followed by its runtime requirements with sentencepiece unpinned.
# - speechbrain goes in with --no-deps (its torchaudio requirement is met above) plus its requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-integrations
PY=${PYTHON:-python3}
TORCH_VERSION=2.11.0
ESPNET_VERSION=202511
SPEECHBRAIN_VERSION=1.1.2
LIGHTNING_VERSION=2.6.6
TORCHJD_VERSION=0.18.0

stamp=$VENV/.integrations-installed
want=$(cat scripts/setup-integrations.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
pipi() {
  # pip install, quiet; on failure show what pip said and stop.
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -30 >&2
    echo "setup-integrations: pip install $* failed" >&2
    exit 1
  fi
}

echo "setup-integrations: building $VENV (torch $TORCH_VERSION, espnet $ESPNET_VERSION," \
     "speechbrain $SPEECHBRAIN_VERSION, lightning $LIGHTNING_VERSION, torchjd $TORCHJD_VERSION)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"

pipi "torch==$TORCH_VERSION" numpy
pipi --no-deps "torchaudio==$TORCH_VERSION"
pipi "lightning==$LIGHTNING_VERSION" "torchjd==$TORCHJD_VERSION" "pytest>=8" "hypothesis>=6.100"

pipi --no-deps "speechbrain==$SPEECHBRAIN_VERSION"
pipi "hyperpyyaml>=0.0.1" "joblib>=0.14.1" packaging "requests>=2.20.0" "scipy>=1.4.1" \
     "sentencepiece>=0.1.91" "soundfile>=0.12.1" "tqdm>=4.42.0" "huggingface_hub>=0.8.0"

pipi --no-deps "espnet==$ESPNET_VERSION"
pipi "setuptools<74.0.0,>=38.5.1" "configargparse>=1.2.1" typeguard humanfriendly filelock \
     "librosa>=0.10.2" "jamo==0.4.1" "PyYAML>=5.1.2" "h5py>=2.10.0" "kaldiio>=2.18.0" torch_complex \
     "nltk>=3.4.5" protobuf hydra-core opt-einsum "pyworld>=0.3.4" "pypinyin<=0.44.0" \
     espnet_tts_frontend ci_sdr "fast-bss-eval==0.1.3" "asteroid_filterbanks==0.4.0" editdistance \
     "importlib-metadata<5.0"

# gradremedy itself, without its own dependencies (the core needs only torch and numpy, present above).
pipi --no-deps -e .

# Every framework must import, and torch must still be the release chosen above.
"$VENV/bin/python" - "$TORCH_VERSION" <<'EOF'
import sys
import warnings

warnings.simplefilter("ignore")
import torch
import torchaudio

want = sys.argv[1]
for name, mod in (("torch", torch), ("torchaudio", torchaudio)):
    if mod.__version__.split("+")[0] != want:
        sys.exit(f"setup-integrations: {name} is {mod.__version__}, expected {want}")
import espnet2.tasks.enh_s2t  # noqa: F401
import lightning  # noqa: F401
import speechbrain  # noqa: F401
import torchjd  # noqa: F401

import gradremedy  # noqa: F401
EOF

echo "$want" > "$stamp"
echo "setup-integrations: $VENV ready"
