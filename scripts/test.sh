#!/usr/bin/env bash
# Set up the environments (scripts/setup.sh), check the code (ruff lint and format, mypy), build the
# API reference (mkdocs), and run the test suite; extra arguments go to pytest (with arguments the
# checks are left out: a run of chosen tests). The suite runs in two processes (pytest-xdist, a test
# file per process at a time; each process one thread, tests/conftest.py). The ComBat tests (marker
# "combat") run in the ComBat extra's own environment, .venv-combat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
  .venv/bin/ruff check src tests benchmarks
  .venv/bin/ruff format --check -q src tests benchmarks
  .venv/bin/mypy
  .venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
fi
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
bash scripts/setup.sh --combat
rc=0
.venv-combat/bin/python -m pytest -q -m combat -p no:cacheprovider "$@" || rc=$?
[ "$rc" -eq 5 ] && rc=0  # pytest's "no tests collected": the arguments named no ComBat test
exit "$rc"
