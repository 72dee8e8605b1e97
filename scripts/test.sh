#!/usr/bin/env bash
# The test command (README "Run the tests", and .ci/run).
#
# By default it installs what the tests need into an environment of its own, .venv-test/ in the
# repository (never into ComfyUI's Python), and runs pytest there. When a ComfyUI host is found
# (COMFYUI_DIR, else ../ComfyUI, else /opt/ComfyUI), the test environment is made from the host's
# Python and reads the host's installed packages (torch, ComfyUI's requirements) through a .pth
# file, without changing them. Host tests skip loudly when there is no host.
#   PYTHON=/path/to/python bash scripts/test.sh   installs into and runs with that Python instead
#   COMFYUI_PYTHON=/path/to/python                the host's Python, when it is not found by itself
# Chromium for the browser tests comes from Debian's package where the machine allows (root + apt).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
installed=()

find_host() {
  for d in "${COMFYUI_DIR:-}" ../ComfyUI /opt/ComfyUI; do
    if [ -n "$d" ] && [ -f "$d/main.py" ] && [ -d "$d/comfy" ]; then (cd "$d" && pwd); return; fi
  done
}
host_python() {  # the Python that runs ComfyUI at $1
  for p in "${COMFYUI_PYTHON:-}" "$1/venv/bin/python" "$1/.venv/bin/python" "$1/../python_embeded/python"; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return; fi
  done
  if python3 -c "import torch, torchvision, aiohttp" >/dev/null 2>&1; then command -v python3; fi
}

HOST="$(find_host || true)"
if [ -n "${PYTHON:-}" ]; then
  RUN_PY="$PYTHON"
else
  HOST_PY=""
  [ -n "$HOST" ] && HOST_PY="$(host_python "$HOST" || true)"
  BASE_PY="${HOST_PY:-python3}"
  ENV_DIR=".venv-test"
  if [ ! -x "$ENV_DIR/bin/python" ]; then
    "$BASE_PY" -m venv "$ENV_DIR"
    installed+=("test environment $ENV_DIR")
  fi
  RUN_PY="$ENV_DIR/bin/python"
  site="$("$RUN_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  if [ -n "$HOST_PY" ]; then
    "$HOST_PY" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' \
      > "$site/_comfyui_host_packages.pth"
  else
    rm -f "$site/_comfyui_host_packages.pth"
  fi
fi

before="$("$RUN_PY" -m pip freeze 2>/dev/null | sort || true)"
"$RUN_PY" -m pip install --disable-pip-version-check -q -r requirements-test.txt
after="$("$RUN_PY" -m pip freeze 2>/dev/null | sort || true)"
new="$(comm -13 <(echo "$before") <(echo "$after") | sed 's/==.*//' | tr '\n' ' ')"
[ -n "${new// /}" ] && installed+=("packages: $new")

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 &&
      apt-get install -y -q chromium >/dev/null 2>&1; }); then
    installed+=("Debian chromium")
  else
    echo "test.sh: could not install Debian's chromium: the browser tests will be skipped"
  fi
fi

echo "test.sh: python $RUN_PY; host ${HOST:-none}; installed: ${installed[*]:-nothing new}"
exec "$RUN_PY" -m pytest -p no:cacheprovider -rs "$@"
