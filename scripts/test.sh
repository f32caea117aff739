#!/usr/bin/env bash
# Set up the environments (scripts/setup.sh) and run the test suite; extra arguments go to pytest.
# The ComBat tests (marker "combat") run in the ComBat extra's own environment, .venv-combat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
bash scripts/setup.sh --combat
rc=0
.venv-combat/bin/python -m pytest -q -m combat -p no:cacheprovider "$@" || rc=$?
[ "$rc" -eq 5 ] && rc=0  # pytest's "no tests collected": the arguments named no ComBat test
exit "$rc"
