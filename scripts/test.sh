#!/usr/bin/env bash
# Set up a virtual environment in .venv and run every check: ruff, mypy and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch for the sample's tests: a CPU build, pinned so that nothing pulls a CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev,postgres,ray]'
# batchai's own modules compiled once: the tests start hundreds of Python processes (servers, the CLI, jobs),
# and where PYTHONDONTWRITEBYTECODE is set (as on CI machines) each would compile them again.
.venv/bin/python -m compileall -q src
.venv/bin/ruff check src tests tools bench
.venv/bin/ruff format --check src tests tools bench
.venv/bin/mypy
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
