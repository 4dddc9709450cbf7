#!/usr/bin/env bash
# mora launcher.
#   bash run.sh                         set up, then train + evaluate the embedded tiny default on CPU
#   bash run.sh test [pytest args]      set up (with dev extras), then run the test suite
#   CONFIG=train/configs/<name>.yaml NGPU=8 [NNODES=2 HOSTFILE=hosts] bash run.sh [key=value ...]
#                                       real training through the DeepSpeed launcher
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

setup() {
    # Re-install when pyproject.toml changes; torch first so no CUDA build is pulled.
    local stamp="$VENV/.mora-setup-$(sha1sum pyproject.toml | cut -c1-12)"
    if [ -f "$stamp" ]; then return 0; fi
    if [ ! -x "$PY" ]; then python3 -m venv "$VENV"; fi
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q "torch==2.13.0"
    "$PY" -m pip install -q -e ".[train,dev,demo]"
    # gradio caps pillow below the pinned 13; its other dependencies come from the demo extra
    "$PY" -m pip install -q --no-deps "gradio==6.31.0"
    # Meta's sam2 package (reference for the SAM2 conversion tests) builds a CUDA torch unless told not to
    # (about 20 s with its dependencies from the dev extras).
    SAM2_BUILD_CUDA=0 "$PY" -m pip install -q --no-deps --no-build-isolation "sam2==1.1.0"
    rm -f "$VENV"/.mora-setup-*
    touch "$stamp"
}

export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$ROOT/.torch_extensions}

cmd=${1:-}
if [ "$cmd" = "test" ]; then
    shift
    setup
    exec "$PY" -m pytest "$@"
fi

setup
exec "$PY" -m train.launch "$@"
