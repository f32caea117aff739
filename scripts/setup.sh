#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install mrharmony into it.
#
#   bash scripts/setup.sh            .venv: mrharmony with its test tools
#   bash scripts/setup.sh --combat   .venv-combat: the same plus the ComBat extra (neuroHarmonize
#                                    pins numpy<2 and pandas<3, so it gets an environment of its own)
#
# PyTorch: where the machine offers a local CPU wheel of torch 2.13.0 (pip's find-links), it is
# installed first so that no CUDA packages are pulled; elsewhere pip picks the platform's default
# build. Set MRHARMONY_PYTHON to choose the interpreter (Python 3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS=dev
if [ "${1:-}" = "--combat" ]; then
  VENV=.venv-combat
  EXTRAS=dev,combat
fi

PY=${MRHARMONY_PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mrharmony needs Python 3.11 or newer")'

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp=$VENV/.mrharmony-installed
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c 'import mrharmony' 2>/dev/null; then
  exit 0
fi

if ! "$VPY" -c 'import torch' 2>/dev/null; then
  # The pinned version matches the CPU wheel shipped on this project's machines; if it cannot
  # be had, fall back to whatever build pip chooses for this platform.
  "$VPY" -m pip install -q "torch==2.13.0" || "$VPY" -m pip install -q torch
fi
"$VPY" -m pip install -q -e ".[$EXTRAS]"
echo "$want" > "$stamp"
