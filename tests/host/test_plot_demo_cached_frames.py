"""scripts/plot_demo_cached_frames.py (the uncached vs cached frames picture) runs and writes a picture
and numbers that agree with each other: a short run (12 steps, one prompt, Turbo)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from precisecache_core.config import LFCACHE_PRESETS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "plot_demo_cached_frames.py"


def test_frames_picture_and_its_numbers(comfyui_dir, tmp_path):
    if not (REPO / "models" / "precisecache_demo_wan.safetensors").is_file():
        pytest.skip("the demo model is missing")
    out = tmp_path / "frames.png"
    result = subprocess.run([sys.executable, str(SCRIPT), "--comfyui", comfyui_dir, "--steps", "12", "--presets",
                             "Turbo", "--prompts", "a white circle growing", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from PIL import Image
    width, height = Image.open(out).size
    assert width > 600 and height > 300
    numbers = json.loads(out.with_suffix(".json").read_text())
    (run,) = numbers["runs"]
    (turbo,) = run["cached"]
    assert turbo["preset"] == "Turbo" and turbo["speed_target"] == LFCACHE_PRESETS["Turbo"].speed_target and turbo["steps"] == 12
    assert 0 < turbo["skipped"] < 12 and turbo["work_saved"] > 1.0 and math.isfinite(turbo["psnr_db"])
    # the printed line is the same measurement as the JSON
    assert f"{turbo['psnr_db']:.2f} dB, work saved {turbo['work_saved']:.2f}x" in result.stdout
