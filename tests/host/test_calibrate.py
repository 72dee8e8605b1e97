"""PreciseCache Calibrate on the tiny Wan 2.1, in process and through the HTTP API (issue 10, part 3).

In process: every row of the calibration equals an independent run of the same setting (the LFCache
node with a custom speed target, PSNR by the textbook formula in numpy), the chosen target really
keeps PSNR ≥ the floor and no target that saves more work does, the recorded setup is the real one,
and decoded-frame quality (VAE connected) is measured on VAEDecode's frames.

Through the server: a calibration writes a preset that ComfyUI's /userdata API lists and serves,
/object_info offers it in both cache nodes without a restart, a prompt using it runs with the
saved speed target; used on another resolution or another model it still runs and its report says
so; damaged presets, path-like names and bad Calibrate inputs are refused with HTTP 400 naming them.

Latents are 32×32 cells (256 px): there a trial costs ~5 % of a step, far from LFCache's step-aside
point, so whether it steps aside cannot depend on timing noise and independent runs are bit-equal.
"""
from __future__ import annotations

import glob
import json
import math
import os
import urllib.parse

import numpy as np
import pytest
import torch

import harness
from cache_helpers import LF_DEFAULTS, count_work, latest_report, pack_module, with_lfcache

CALIBRATE, LF, SAMPLER, REPORT = "PreciseCacheCalibrate", "PreciseCacheLFCache", "PreciseCacheSampler", "PreciseCacheReport"
STEPS = 12
CFG = 5.0
SHAPE = (1, 16, 3, 32, 32)
TARGETS = (1.5, 2.0, 3.0)
VIDEO = {"width": 256, "height": 256, "length": 9, "batch_size": 1}  # -> SHAPE


def _psnr(reference: torch.Tensor, candidate: torch.Tensor, peak: float) -> float:
    a, b = reference.double().numpy(), candidate.double().numpy()
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _calibrate_inputs(**overrides):
    return {"seed": 0, "steps": STEPS, "cfg": CFG, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "speed_targets": ", ".join(f"{t:g}" for t in TARGETS), "quality_floor_db": 30.0,
            "preset_name": "", **overrides}


# ---------------------------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


@pytest.fixture(scope="module")
def independent(ready):
    """The uncached run and one LFCache node run per target, made without the Calibrate node."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    latent = torch.zeros(SHAPE)
    counter = count_work(model)
    reference = comfy.sample(model, "wan", steps=STEPS, cfg=CFG, latent=latent)
    counter.close()
    uncached_work = counter.work()
    peak = float(reference.max() - reference.min())
    runs = {}
    for target in TARGETS:
        patched = with_lfcache(comfy, model, speed_target=target)
        counter = count_work(patched)
        out = comfy.sample(patched, "wan", steps=STEPS, cfg=CFG, latent=latent)
        counter.close()
        report = latest_report(pack, patched)
        runs[target] = {"psnr": _psnr(reference, out, peak), "work": report.estimated_speedup,
                        "hooked_work": uncached_work / counter.work(),
                        "skipped": len(report.skipped_steps), "notes": list(report.notes)}
    return model, reference, runs


def _calibrate(comfy, model, **overrides):
    positive = comfy.conditioning("wan", 1, "positive", latent_shape=SHAPE)
    negative = comfy.conditioning("wan", 1, "negative", latent_shape=SHAPE)
    return comfy.node(CALIBRATE).execute(model, positive=positive, negative=negative,
                                         latent_image={"samples": torch.zeros(SHAPE)}, **_calibrate_inputs(**overrides))


def test_rows_match_independent_runs_and_the_choice_keeps_the_floor(ready, independent):
    comfy, pack = ready
    model, reference, runs = independent
    psnrs = sorted({round(r["psnr"], 6) for r in runs.values()})
    assert len(psnrs) == len(TARGETS) and all(map(math.isfinite, psnrs)), f"targets do not differ in quality: {runs}"
    floor = (psnrs[0] + psnrs[1]) / 2  # all targets but the worst keep it: the choice is among several
    fits = [t for t in TARGETS if runs[t]["psnr"] >= floor]
    assert 2 <= len(fits) < len(TARGETS)
    expected = max(fits, key=lambda t: (round(runs[t]["work"], 6), runs[t]["psnr"], -t))
    name = "test_calibrate_in_process"

    out = _calibrate(comfy, model, quality_floor_db=floor, preset_name=name)
    latent, image, table = out.args
    assert torch.equal(latent["samples"], reference)  # the graph continues with the uncached result
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and 0 <= image.min() <= image.max() <= 1
    path = os.path.join(comfy.folder_paths.get_user_directory(), "default", "precisecache", "presets", f"{name}.json")
    data = json.loads(open(path, encoding="utf-8").read())

    rows = {r["speed_target"]: r for r in data["table"]}
    assert rows[None]["identical"] and rows[None]["work_saved"] == 1.0
    for target in TARGETS:
        row, run = rows[target], runs[target]
        assert row["psnr_db"] == pytest.approx(run["psnr"], abs=1e-6), (target, row, run)
        assert row["work_saved"] == pytest.approx(run["work"], abs=1e-4)
        assert row["work_saved"] == pytest.approx(run["hooked_work"], rel=1e-3)  # as forward hooks count it
        assert row["skipped_steps"] == run["skipped"] and row["steps"] == STEPS
        assert row["notes"] == run["notes"]
        assert f"| LFCache | {target:g}x | {run['work']:.2f}x |" in table and f"| {run['psnr']:.2f} dB |" in table
    # the choice: fits the floor by the independent measurement, and nothing saving more work does
    assert data["speed_target"] == expected
    assert runs[expected]["psnr"] >= floor
    assert all(runs[t]["psnr"] < floor for t in TARGETS if runs[t]["work"] > runs[expected]["work"] + 1e-6)
    assert data["psnr_db"] == pytest.approx(runs[expected]["psnr"], abs=1e-6)
    assert f"chosen: speed target {expected:g}x" in table and f"saved as preset '{name}' in {path}" in table
    # the setup it was recorded on, counted independently
    network = model.model.diffusion_model
    assert data["setup"] == {
        "model": data["setup"]["model"], "parameters": sum(p.numel() for p in network.parameters()),
        "latent_shape": list(SHAPE), "steps": STEPS, "sampler": "euler", "sampler_function": "sample_euler",
        "scheduler": "simple", "cfg": CFG, "denoise": 1.0}
    assert data["setup"]["model"].startswith(type(model.model).__name__)
    assert data["measured_on"] == "latent" and data["quality_floor_db"] == floor
    assert "on the latent (no VAE connected)" in table


def test_no_target_above_the_floor_saves_nothing_and_says_so(ready, independent):
    comfy, pack = ready
    model, _, runs = independent
    floor = min(80.0, max(r["psnr"] for r in runs.values()) + 1.0)
    name = "test_calibrate_unreachable"
    table = _calibrate(comfy, model, speed_targets="2, 3", quality_floor_db=floor, preset_name=name).args[2]
    assert f"chosen: none — no speed target kept PSNR ≥ {floor:g} dB" in table
    assert "no preset saved: nothing reached the floor" in table
    assert name not in pack_module(pack, "nodes.presets").store().names()


def test_decoded_frames_with_a_vae(ready):
    """With a VAE, PSNR is taken on VAEDecode's frames (peak 1), not on the latent. A random tiny
    Wan 2.1 VAE (dim 8) through ComfyUI's own VAE class; 5 frames of 128 px to keep decoding short."""
    comfy, _ = ready
    import importlib
    wan_vae, sd = importlib.import_module("comfy.ldm.wan.vae"), importlib.import_module("comfy.sd")
    network = wan_vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                             temperal_downsample=[False, True, True])
    g = torch.Generator().manual_seed(0)  # its own generator: the global RNG of later tests is left alone
    state = {k: (torch.randn(v.shape, generator=g) * 0.2 if v.is_floating_point() else v)
             for k, v in network.state_dict().items()}
    vae = sd.VAE(sd=state)  # ComfyUI's layers are not initialised: the weights are set here
    shape = (1, 16, 2, 16, 16)  # 5 frames
    model = comfy.load_model("wan")
    positive = comfy.conditioning("wan", 1, "positive", latent_shape=shape)
    negative = comfy.conditioning("wan", 1, "negative", latent_shape=shape)
    table = comfy.node(CALIBRATE).execute(model, positive=positive, negative=negative,
                                          latent_image={"samples": torch.zeros(shape)}, vae=vae,
                                          **_calibrate_inputs(speed_targets="3", quality_floor_db=10.0)).args[2]
    assert "on the decoded frames (VAE connected)" in table
    decode = comfy.nodes.VAEDecode().decode
    with torch.no_grad():
        reference = decode(vae, {"samples": comfy.sample(model, "wan", steps=STEPS, cfg=CFG,
                                                         latent=torch.zeros(shape))})[0]
        patched = with_lfcache(comfy, model, speed_target=3.0)
        frames = decode(vae, {"samples": comfy.sample(patched, "wan", steps=STEPS, cfg=CFG,
                                                      latent=torch.zeros(shape))})[0]
    assert frames.shape == (5, 128, 128, 3)
    expected = _psnr(reference, frames, 1.0)
    assert math.isfinite(expected), "the stand-in VAE decodes both runs alike: the test would show nothing"
    assert f"| LFCache | 3x |" in table and f"| {expected:.2f} dB |" in table, table


@pytest.mark.parametrize("inputs, message", [
    ({"speed_targets": "1.5, fast"}, "speed_targets: 'fast' is not a number"),
    ({"speed_targets": "0.5"}, r"speed_targets: 0.5 is out of range: allowed \[1.1, 6\]"),
    ({"quality_floor_db": 95.0}, r"quality_floor_db = 95.0 is out of range: allowed \[10, 80\] dB"),
    ({"preset_name": "../outside"}, r"preset_name = '../outside' is not allowed: a preset name is 1 to 64"),
    ({"preset_name": "a/b"}, r"preset_name = 'a/b' is not allowed"),
    ({"steps": 8}, r"steps = 8 is out of range: allowed integers 9\.\.10000"),
])
def test_bad_inputs_are_named_before_sampling(ready, inputs, message):
    import re
    comfy, pack = ready
    node = comfy.node(CALIBRATE)
    values = _calibrate_inputs(**inputs)
    # the node's own check (run before any sampling) names every bad input
    with pytest.raises(ValueError) as info:
        pack_module(pack, "precisecache_core.calibration").plan_calibration(
            **{k: v for k, v in values.items() if k in ("speed_targets", "quality_floor_db", "preset_name", "steps")})
    assert re.search(message, str(info.value)), str(info.value)
    name = next(iter(inputs))
    if name in ("speed_targets", "preset_name"):  # text: ComfyUI cannot check it, our validate_inputs does
        result = node.validate_inputs(speed_targets=values["speed_targets"], preset_name=values["preset_name"])
        assert isinstance(result, str) and re.search(message, result), result
    else:  # a number: ComfyUI's own check against the schema's range refuses it before the prompt runs
        options = node.INPUT_TYPES()["required"][name][1]
        assert not options["min"] <= inputs[name] <= options["max"], options


def test_a_cached_model_is_refused(ready):
    comfy, _ = ready
    model = with_lfcache(comfy, comfy.load_model("wan"), speed_target=2.0)
    with pytest.raises(ValueError, match="needs the model without LFCache or BlockCache"):
        _calibrate(comfy, model)


# ---------------------------------------------------------------------------------------------- HTTP API
@pytest.fixture(scope="module")
def server(comfy_server):
    return comfy_server


def _conditioning(g, kind="wan"):
    for nid, role in (("3", "positive"), ("4", "negative")):
        g[nid] = {"class_type": "PreciseCacheTestConditioning",
                  "inputs": {"model_kind": kind, "seed": 1, "length": 8, "width": 4096, "variant": role}}


def _calibrate_graph(**inputs):
    g = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan21_t2v.safetensors",
                                                      "weight_dtype": "default"}},
         "2": {"class_type": "EmptyHunyuanLatentVideo", "inputs": dict(VIDEO)}}
    _conditioning(g)
    g["5"] = {"class_type": CALIBRATE, "inputs": {**_calibrate_inputs(**inputs), "model": ["1", 0],
                                                  "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["2", 0]}}
    return g


def _lfcache_graph(preset, kind="wan", video=None, prefix="calibrate_api", **lf):
    chain = [(LF, {**LF_DEFAULTS, "preset": preset, **lf})]
    g = harness.sample_graph(kind, steps=STEPS, cfg=CFG, model_chain=chain, filename_prefix=f"latents/{prefix}",
                             latent=("EmptyHunyuanLatentVideo", dict(video or VIDEO)))
    g["7"] = {"class_type": REPORT, "inputs": {"model": ["10", 0], "samples": ["5", 0]}}
    return g


def _sampler_graph(preset, prefix="calibrate_api_sampler"):
    g = harness.sample_graph("wan", steps=STEPS, cfg=CFG, filename_prefix=f"latents/{prefix}",
                             latent=("EmptyHunyuanLatentVideo", dict(VIDEO)))
    g["5"] = {"class_type": SAMPLER, "inputs": {**g["5"]["inputs"], "preset": preset}}
    return g


def _options(server, node) -> list:
    spec = server.object_info(node)[node]["input"]["required"]["preset"]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _text(entry, node_id) -> str:
    return "\n".join(entry["outputs"][node_id]["text"])


@pytest.fixture(scope="module")
def api_preset(server):
    """A preset written by a calibration prompt (floor 10 dB: the target saving the most work)."""
    name = "test_calibrate_api"
    assert f"calibrated: {name}" not in _options(server, LF)
    entry = server.run_prompt(_calibrate_graph(preset_name=name, quality_floor_db=10.0), timeout=180)
    table = _text(entry, "5")
    assert f"saved as preset '{name}'" in table, table
    assert entry["outputs"]["5"]["images"], "the curve is shown on the node"
    return name, table


def test_calibration_writes_lists_and_reloads_a_preset_through_the_http_api(server, api_preset):
    name, table = api_preset
    # ComfyUI's user data API lists the file and serves it back
    assert f"{name}.json" in server.get_json("/userdata?dir=" + urllib.parse.quote("precisecache/presets", safe=""))
    data = server.get_json("/userdata/" + urllib.parse.quote(f"precisecache/presets/{name}.json", safe=""))
    target = data["speed_target"]
    assert target in TARGETS and f"chosen: speed target {target:g}x" in table
    assert data["setup"]["latent_shape"] == list(SHAPE) and data["setup"]["steps"] == STEPS
    # both cache nodes offer it, read again at this request: no restart
    for node in (LF, SAMPLER):
        assert f"calibrated: {name}" in _options(server, node), node
    # a prompt using it runs with the saved speed target: the same latent as that target set by hand
    via_preset = server.run_prompt(_lfcache_graph(f"calibrated: {name}", prefix="via_preset"))
    by_hand = server.run_prompt(_lfcache_graph("custom", speed_target=target, prefix="by_hand"))
    latent = server.load_saved_latent(via_preset)
    assert torch.equal(latent, server.load_saved_latent(by_hand))
    report = _text(via_preset, "7")
    assert f"LFCache calibrated preset '{name}' = speed target {target:g}x" in report
    assert "recorded on a different setup" not in report  # the setup it was calibrated on
    # the PreciseCache Sampler resolves it the same way
    sampler = server.run_prompt(_sampler_graph(f"calibrated: {name}"))
    assert torch.equal(server.load_saved_latent(sampler), latent)
    assert f"calibrated preset '{name}' = speed target {target:g}x" in _text(sampler, "5")


@pytest.mark.parametrize("kind, video, expected", [
    ("wan", {"width": 192, "height": 192, "length": 9, "batch_size": 1}, ["latent 1×16×3×32×32 → 1×16×3×24×24"]),
    ("wan22", VIDEO, ["model WAN21", "→ WAN22", "latent 1×16×3×32×32 → 1×48×3×32×32"]),
])
def test_a_preset_used_on_another_setup_runs_and_the_report_says_so(server, api_preset, kind, video, expected):
    name, _ = api_preset
    entry = server.run_prompt(_lfcache_graph(f"calibrated: {name}", kind=kind, video=video, prefix=f"other_{kind}"))
    assert torch.isfinite(server.load_saved_latent(entry)).all()
    report = _text(entry, "7")
    flag = next((line for line in report.splitlines() if "was recorded on a different setup" in line), None)
    assert flag is not None and flag.startswith(f"note: calibrated preset '{name}' was recorded on a different setup"), report
    for part in expected:
        assert part in flag, (part, flag)
    assert "steps" not in flag.split("(")[1].split(")")[0]  # same steps: not named
    assert "skipped" in report and "speed target" in report


def test_damaged_and_path_like_presets_are_refused_by_name_over_http(server, comfy_base_dir):
    directory = os.path.join(comfy_base_dir, "user", "default", "precisecache", "presets")
    os.makedirs(directory, exist_ok=True)
    broken = os.path.join(directory, "test_broken.json")
    with open(broken, "w") as f:
        f.write('{"format": "PreciseCache calibrated preset", "version": 1, "speed_target": ')
    assert "calibrated: test_broken" in _options(server, LF)
    cases = [
        (_lfcache_graph("calibrated: test_broken"), "10", [broken, "is damaged", "not valid JSON"]),
        (_sampler_graph("calibrated: test_broken"), "5", [broken, "is damaged"]),
        (_lfcache_graph("calibrated: ../../../outside"), "10", ["preset = '../../../outside' is not allowed"]),
        (_calibrate_graph(preset_name="../outside"), "5", ["preset_name = '../outside' is not allowed"]),
        (_calibrate_graph(speed_targets="2, 9"), "5", ["speed_targets: 9 is out of range: allowed [1.1, 6]"]),
        # numbers: ComfyUI's own check against the schema's range, naming the input
        (_calibrate_graph(quality_floor_db=5.0), "5", ["Value 5.0 smaller than min of 10", '"input_name": "quality_floor_db"']),
        (_calibrate_graph(steps=6), "5", ["Value 6 smaller than min of 9", '"input_name": "steps"']),
    ]
    for graph, node_id, parts in cases:
        with pytest.raises(harness.PromptRejected) as info:
            server.post_prompt(graph)
        message = str(info.value)
        assert "HTTP 400" in message and f'"{node_id}"' in message, message
        for part in parts:
            assert part in message, (part, message)
    # neither name escaped the presets folder (../outside would land in user/default/precisecache/,
    # ../../../outside in user/): no such file anywhere under the base directory
    assert not glob.glob(os.path.join(comfy_base_dir, "**", "outside*.json"), recursive=True)
    # the server keeps serving
    entry = server.run_prompt(_lfcache_graph("Base", prefix="after_refusals"))
    assert torch.isfinite(server.load_saved_latent(entry)).all()

