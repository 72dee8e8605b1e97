"""Repository-wide pytest setup: host discovery, the `host` marker, and the skip banner.

Host tests (everything under tests/host, or anything marked `host`) need a real ComfyUI; without
one they are skipped with an explicit reason. Core tests (tests/core) never need ComfyUI.
Helpers for host tests live in tests/host/harness.py (see its docstring for the API).
"""
import os
import sys

import pytest

_HOST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host")
if _HOST_DIR not in sys.path:
    sys.path.insert(0, _HOST_DIR)  # `import harness`, `import tiny_models` (importlib mode has no packages here)

import harness  # noqa: E402

HOST = harness.find_comfyui()


def pytest_report_header(config):
    if HOST.path:
        return f"ComfyUI host: {HOST.path} (version {HOST.version or '?'}, {HOST.reason})"
    return ["!" * 78, HOST.reason, "!" * 78]


def pytest_collection_modifyitems(config, items):
    host_root = os.path.realpath(_HOST_DIR) + os.sep
    skip = pytest.mark.skip(reason=HOST.reason)
    for item in items:
        if os.path.realpath(str(item.path)).startswith(host_root):
            item.add_marker(pytest.mark.host)
        if HOST.path is None and item.get_closest_marker("host") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if HOST.path is None:
        skipped = [r for r in terminalreporter.stats.get("skipped", []) if "host" in getattr(r, "keywords", {})]
        terminalreporter.write_sep("!", f"{HOST.reason} ({len(skipped)} host tests skipped)", red=True, bold=True)
