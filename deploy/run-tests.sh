#!/usr/bin/env bash
# The project's test command (README, .ci/run): install everything the tests need, then
# lint, type-check and run the whole suite (unit, integration with real processes, lab in
# network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-system-deps.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check .
echo "== mypy"
python3 -m mypy actors transport replication cli deploy
echo "== pytest"
python3 -m pytest -p no:cacheprovider "$@"
