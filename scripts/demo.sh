#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run the demo on the synthetic traveling heads.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default: demo-output)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-demo-output}
exec .venv/bin/mrharmony demo "$out"
