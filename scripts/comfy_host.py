"""Reaching a ComfyUI install from outside it: the one way the scripts and the test harness
(``tests/host/harness.py``) find ComfyUI, import it in-process, pick a port for it and talk JSON to it.

* ``find_comfyui(explicit=None) -> HostInfo(path, reason, version)``: ``explicit`` (a script's
  ``--comfyui``), then ``$COMFYUI_DIR``, then ``<repo>/../ComfyUI``, then ``/opt/ComfyUI``; the first
  folder that holds ``main.py`` and ``comfy/`` (``scripts/test.sh`` looks in the same order).
  ``require_comfyui(explicit=None)``: its path, or exit saying where it looked.
* ``import_comfy(comfyui_dir, **cli_args) -> the comfy package``: ComfyUI first on ``sys.path``, none
  of its top-level names (``nodes``, ``utils``, ...) shadowed by a same-named module from elsewhere
  (the pack's own ``nodes/`` when the repository is on ``sys.path``), ``comfy.cli_args.args`` set
  (e.g. ``cpu=True``) before ``comfy.model_management`` reads them.
* ``free_port()``, ``http_json(url, payload=None)``: for starting a ComfyUI server and calling its API.
  ``http_json`` uses the standard library on purpose: ``scripts/run_workflow.py`` runs on whatever
  ``python3`` the user has (it looks for ComfyUI's Python itself) and ``requests`` is not among
  ComfyUI's requirements; the test harness, where ``requests`` is a dependency, uses ``requests``.

Standard library only. Scripts import it as ``comfy_host`` (``scripts/`` on ``sys.path``); the harness
puts ``scripts/`` on ``sys.path`` to import it. The pack itself (``nodes/``, ``precisecache_core/``)
never does.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOT_FOUND = ("no ComfyUI found: set COMFYUI_DIR to a ComfyUI folder (one holding main.py and comfy/), "
             "or place it at ../ComfyUI or /opt/ComfyUI")

# ComfyUI's top-level module names; a same-named module from elsewhere (e.g. the pack's nodes/)
# must not shadow them.
COMFY_TOP_LEVEL = ("nodes", "utils", "comfy", "comfy_extras", "comfy_api", "comfy_execution", "comfy_config",
                   "app", "server", "execution", "folder_paths", "node_helpers", "latent_preview",
                   "protocol", "middleware", "api_server", "comfyui_version", "hook_breaker_ac10a0")


# --------------------------------------------------------------------------- finding it

def is_comfyui(path) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "main.py")) and os.path.isdir(os.path.join(path, "comfy"))


@dataclass
class HostInfo:
    path: str | None
    reason: str          # where it came from, or why there is none
    version: str | None = None


def comfyui_version(comfyui_dir) -> str | None:
    """``__version__`` of ``<comfyui_dir>/comfyui_version.py``; None when it cannot be read."""
    try:
        text = Path(comfyui_dir, "comfyui_version.py").read_text()
        return text.split("__version__ =", 1)[1].strip().strip("\"'")
    except (OSError, IndexError):
        return None


def find_comfyui(explicit=None, none_found: str = NOT_FOUND) -> HostInfo:
    """``explicit``, then $COMFYUI_DIR, then <repo>/../ComfyUI, then /opt/ComfyUI.

    A given ``explicit`` or COMFYUI_DIR that is no ComfyUI is passed over and named in ``reason``;
    ``none_found`` heads the reason when nothing is found."""
    notes = []
    candidates = []
    if explicit:
        candidates.append(("--comfyui", str(explicit)))
    env = os.environ.get("COMFYUI_DIR")
    if env:
        candidates.append(("COMFYUI_DIR", env))
    candidates += [("../ComfyUI", str(REPO_ROOT.parent / "ComfyUI")), ("/opt/ComfyUI", "/opt/ComfyUI")]
    for source, path in candidates:
        if is_comfyui(path):
            path = str(Path(path).resolve())
            why = f"found via {source}" + (f" ({'; '.join(notes)})" if notes else "")
            return HostInfo(path, why, comfyui_version(path))
        if source in ("--comfyui", "COMFYUI_DIR"):
            notes.append(f"{source}={path!r} holds no main.py + comfy/")
    return HostInfo(None, none_found + ("; " + "; ".join(notes) if notes else ""))


def require_comfyui(explicit=None) -> str:
    """find_comfyui's folder; exits with its reason when there is none."""
    host = find_comfyui(explicit)
    if host.path is None:
        sys.exit(host.reason)
    return host.path


# --------------------------------------------------------------------------- importing it

def _evict_shadowing_modules(comfyui_dir: str) -> None:
    root = os.path.realpath(comfyui_dir) + os.sep
    for top in COMFY_TOP_LEVEL:
        mod = sys.modules.get(top)
        if mod is None:
            continue
        origin = getattr(mod, "__file__", None) or ""
        if not os.path.realpath(origin).startswith(root):
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]


def import_comfy(comfyui_dir, **cli_args):
    """Make the ComfyUI at ``comfyui_dir`` importable in this process; returns its ``comfy`` package.

    ``cli_args`` are set on ``comfy.cli_args.args`` (ComfyUI parses no command line unless main.py
    runs, so the rest keep their defaults); they take effect only where ComfyUI reads them after
    this, e.g. ``cpu`` when ``comfy.model_management`` is first imported. ``utils.install_util`` is
    imported here too: it must come before ``nodes``, which puts ``comfy/`` first on sys.path."""
    comfyui_dir = str(Path(comfyui_dir).resolve())
    _evict_shadowing_modules(comfyui_dir)
    if sys.path[:1] != [comfyui_dir]:
        sys.path.insert(0, comfyui_dir)
    import comfy.cli_args
    for name, value in cli_args.items():
        if not hasattr(comfy.cli_args.args, name):
            raise TypeError(f"ComfyUI has no command-line setting {name!r}")
        setattr(comfy.cli_args.args, name, value)
    import utils.install_util  # noqa: F401
    return comfy


# --------------------------------------------------------------------------- talking to it

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, payload: dict | None = None, timeout: float = 30.0):
    """GET ``url`` (POST when there is a ``payload``, sent as JSON) and return the parsed JSON answer.

    An error status raises urllib.error.HTTPError (its ``read()`` holds the server's answer); no
    answer raises URLError or another OSError."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())
