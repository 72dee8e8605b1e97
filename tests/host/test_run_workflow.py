"""scripts/run_workflow.py as a user runs it: the demo end to end, a missing model named with its
folder, a Python that cannot run ComfyUI named, a UI-format file refused with a hint, and
``--compare-uncached`` (the same workflow with PreciseCache off, both execution times and their ratio)."""
from __future__ import annotations

import importlib.util
import json
import re
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


def _script_module():
    spec = importlib.util.spec_from_file_location("precisecache_run_workflow", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_uncached_prints_both_times_and_their_ratio(comfyui_dir, tmp_path):
    result = _run(comfyui_dir, "--compare-uncached", "--compare-repeats", 2, "--demo-dir", tmp_path / "run",
                  timeout=600)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.count("done in ") == 5, out          # the run as given, then uncached and cached twice in turn
    assert "median of 2 runs each" in out, out
    assert "PreciseCache - skipped" in out and "bypassed node 4 (LFCache (PreciseCache))" in out, out
    t_uncached = float(re.search(r"^uncached run: ([0-9.]+) s$", out, re.M).group(1))
    t_cached = float(re.search(r"^cached run: ([0-9.]+) s$", out, re.M).group(1))
    ratio = float(re.search(r"^realized speed-up: ([0-9.]+)x", out, re.M).group(1))
    assert t_uncached > 0 and t_cached > 0
    # the printed ratio is the printed times' ratio (up to their printed precision)
    rounding = 0.005 + (t_uncached / t_cached) * (0.0005 / t_uncached + 0.0005 / t_cached)
    assert abs(ratio - t_uncached / t_cached) <= rounding, (ratio, t_uncached, t_cached)
    outputs = [Path(line.split(": ", 1)[1]) for line in out.splitlines() if "] image: " in line]
    uncached = [p for p in outputs if p.suffix == ".webp" and "_uncached" in p.name]
    assert uncached and all(p.is_file() and p.stat().st_size > 0 for p in uncached), out
    print(out[out.index("uncached run:"):])


def test_uncached_variant_bypasses_the_cache_nodes_and_keeps_the_rest():
    rw = _script_module()
    demo = json.loads((REPO / "workflows" / "api" / "precisecache_demo.json").read_text())
    variant, changes, touched = rw.uncached_variant(demo)
    kinds = {n["class_type"] for n in variant.values()}
    assert not kinds & {"PreciseCacheLFCache", "PreciseCacheBlockCache", "PreciseCacheReport", "PreviewAny"}, kinds
    sampler = next(i for i, n in variant.items() if n["class_type"] == "KSampler")
    loader = next(i for i, n in variant.items() if n["class_type"] == "UNETLoader")
    assert variant[sampler]["inputs"]["model"] == [loader, 0] and touched == {sampler}
    assert {k: v for k, v in variant[sampler]["inputs"].items() if k != "model"} == \
        {k: v for k, v in demo[sampler]["inputs"].items() if k != "model"}
    sampler_demo = json.loads((REPO / "workflows" / "api" / "precisecache_sampler_demo.json").read_text())
    variant, changes, _ = rw.uncached_variant(sampler_demo)
    node = next(n for n in variant.values() if n["class_type"] == "PreciseCacheSampler")
    assert node["inputs"]["preset"] == "off" and len(variant) == len(sampler_demo), changes
    plain, _, _ = rw.uncached_variant(demo)
    with pytest.raises(ValueError, match="no PreciseCache node"):     # nothing left to compare
        rw.uncached_variant(plain)


def test_the_timed_cached_run_differs_from_the_uncached_one_in_the_cache_alone():
    rw = _script_module()
    demo = json.loads((REPO / "workflows" / "api" / "precisecache_demo.json").read_text())
    timed, changes, _ = rw.uncached_variant(demo, keep_caches=True)
    uncached, _, _ = rw.uncached_variant(demo)
    kinds = {n["class_type"] for n in timed.values()}
    assert {"PreciseCacheLFCache", "PreciseCacheBlockCache"} <= kinds and "PreciseCacheReport" not in kinds, changes
    assert {i: n for i, n in timed.items() if i in demo and n == demo[i]} == \
        {i: n for i, n in timed.items()}  # every node it keeps is unchanged (inputs, file prefixes)
    # without the cache nodes, the two are the same graph but for the saved files' names
    bypassed = {i for i, n in timed.items() if n["class_type"] in rw.BYPASSED_NODES}
    assert set(timed) - bypassed == set(uncached)
    for i, node in uncached.items():  # same node, same widget values (links differ around the bypassed nodes)
        widgets = lambda n: {k: v for k, v in n["inputs"].items()  # noqa: E731
                             if not isinstance(v, list) and k != "filename_prefix"}
        assert node["class_type"] == timed[i]["class_type"] and widgets(node) == widgets(timed[i]), i
        if "filename_prefix" in node["inputs"]:
            assert node["inputs"]["filename_prefix"] == timed[i]["inputs"]["filename_prefix"] + "_uncached", i
