#!/usr/bin/env bash
# The test command (README "Run the tests", and .ci/run): installs what the tests need, then runs
# pytest. Host tests use the ComfyUI found through COMFYUI_DIR, ../ComfyUI or /opt/ComfyUI and skip
# loudly when there is none. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --disable-pip-version-check -q -r requirements-test.txt
exec "$PYTHON" -m pytest -p no:cacheprovider -rs "$@"
