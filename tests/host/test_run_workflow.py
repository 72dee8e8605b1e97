"""scripts/run_workflow.py as a user runs it: the demo end to end, a missing model named with its
folder, a Python that cannot run ComfyUI named, a UI-format file refused with a hint."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "run_workflow.py"


def _run(comfyui_dir, *args, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), "--comfyui", comfyui_dir, "--python", sys.executable,
                           "--device", "cpu", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_demo_runs_headless_and_prints_report_progress_and_output(comfyui_dir, tmp_path):
    result = _run(comfyui_dir, "--demo-dir", tmp_path / "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PreciseCache - skipped" in result.stdout and "work saved" in result.stdout
    assert "step 50/50" in result.stdout
    outputs = [Path(line.split(": ", 1)[1]) for line in result.stdout.splitlines() if "] image: " in line]
    videos = [p for p in outputs if p.suffix == ".webp"]
    assert videos and all(p.is_file() and p.stat().st_size > 0 for p in videos), result.stdout


def test_missing_model_file_is_listed_with_its_folder(comfyui_dir, tmp_path):
    graph = json.loads((REPO / "workflows" / "api" / "precisecache_demo.json").read_text())
    loader = next(n for n in graph.values() if n["class_type"] == "UNETLoader")
    loader["inputs"]["unet_name"] = "wan2.1_t2v_14B_fp16.safetensors"
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(graph))
    result = _run(comfyui_dir, path, "--demo-dir", tmp_path / "run")
    assert result.returncode == 2
    assert "missing model file 'wan2.1_t2v_14B_fp16.safetensors'" in result.stderr
    assert "models/diffusion_models/" in result.stderr


def test_a_python_that_cannot_run_comfyui_is_named(comfyui_dir, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = subprocess.run([sys.executable, str(SCRIPT), "--comfyui", comfyui_dir, "--python",
                             str(bare / "bin" / "python")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot run ComfyUI (missing: torch" in result.stderr and "Run with ComfyUI's Python" in result.stderr


def test_ui_format_workflow_refused_with_a_hint(comfyui_dir):
    ui = REPO / "workflows" / "precisecache_demo.json"
    if not ui.is_file():
        pytest.fail(f"{ui} is missing")
    result = _run(comfyui_dir, ui)
    assert result.returncode != 0 and "UI-format workflow" in result.stderr
