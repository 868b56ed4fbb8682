#!/usr/bin/env bash
# Build a venv with the pinned Datasette stack (torch first) and run the end-to-end check.
# Usage: [REQUIREMENTS=e2e/requirements-datasette-llm030.txt] e2e/run_datasette_check.sh [VENV_DIR] [pytest args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${TMPDIR:-/tmp}/ds-e2e-venv}
shift || true
python=${PYTHON:-python3.11}  # the local CPU torch wheel is for CPython 3.11
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0  # must come first: any other spec pulls CUDA builds
"$venv/bin/pip" install -q -r "${REQUIREMENTS:-$root/e2e/requirements-datasette.txt}"
"$venv/bin/pip" install -q -e "$root"
cd "$root"
exec "$venv/bin/pytest" tests/e2e -p no:cacheprovider "$@"
