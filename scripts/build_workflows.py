#!/usr/bin/env python3
"""Build PreciseCache's shareable workflows: one description per workflow, two files out of it.

For each workflow described below (``WORKFLOWS``) this writes

* ``workflows/<name>.json``: the editor's own (UI) format, what drag and drop loads and what
  ComfyUI lists as this pack's templates (``GET /api/workflow_templates`` lists the JSON files
  directly inside a custom node pack's ``workflows/`` folder, not its sub-folders);
* ``workflows/api/<name>.json``: the API format that ``POST /prompt`` takes, for headless runs
  (``python script_examples/basic_api_example.py``-style clients, CI, batch jobs).

Both come from the same description, so they cannot drift apart: the API file holds every widget
value by input name and every link as ``[node id, output slot]``; the UI file holds the same
values as each node's ``widgets_values`` list, in the order the editor creates widgets, and the
same links in LiteGraph's ``links`` table. Note nodes exist only in the UI file (the editor never
sends them to the server).

The widget order comes from the node definitions ComfyUI serves at ``/object_info``. A snapshot of
the parts that matter (input order, which inputs are widgets, seed widgets' "control after
generate", image-upload combos, outputs, display names) for the node types used here is kept in
``scripts/workflow_node_defs.json``, so building needs no ComfyUI. Refresh it from a running
ComfyUI that has this pack loaded when a node changes:

    python3 scripts/build_workflows.py --refresh-node-defs http://127.0.0.1:8188
    python3 scripts/build_workflows.py            # rewrite workflows/*.json and workflows/api/*.json
    python3 scripts/build_workflows.py --check    # exit 1 if any file differs from what it would write

The host tests (tests/host/test_workflows.py) check that the committed files equal a fresh build,
that the snapshot matches the running ComfyUI's /object_info, and (independently of this script)
that every UI file converts to its API file; the browser test checks the same with the real
editor's own conversion (``app.graphToPrompt()``).
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from precisecache_core.config import (DEFAULT_LFCACHE_PRESET, FEW_STEP_LIMIT, LFCACHE_PRESETS,  # noqa: E402  (pure torch)
                                      PRESET_FIDELITY_DB, SPEED_TARGET_RANGE)
if str(REPO / "scripts") not in sys.path:
    sys.path.append(str(REPO / "scripts"))  # comfy_host, also when a test loads this file by path
from comfy_host import http_json  # noqa: E402


def x(preset: str) -> str:
    """'Turbo (1.5x)': a preset with its speed target, from the pack's config (written once there)."""
    return f"{preset} ({LFCACHE_PRESETS[preset].speed_target:g}x)"
WORKFLOWS_DIR = REPO / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
NODE_DEFS_PATH = REPO / "scripts" / "workflow_node_defs.json"

VIRTUAL_NODES = {"Note", "MarkdownNote"}
"""Editor-only node types: never in /object_info, never sent to the server."""

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_CONTROL = "fixed"
"""Value of the editor's "control after generate" widget on seed inputs. 'fixed' keeps the
workflow reproducible (the editor's default 'randomize' changes the seed after every run)."""

PACK_NODE_PREFIX = "PreciseCache"
COMFYUI_VERSION = "0.8.0"
"""The ComfyUI version the workflows were built and tested with (stored as core nodes' ``ver``)."""

OUR_COLOR = {"color": "#232", "bgcolor": "#353"}        # PreciseCache nodes: green
NOTE_COLOR = {"color": "#432", "bgcolor": "#653"}       # notes: yellow


def project_metadata() -> tuple[str, str]:
    """(registry id, version) from pyproject.toml: stored as our nodes' ``cnr_id`` / ``ver``, which is
    how the editor and ComfyUI-Manager find the pack that provides a missing node."""
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["name"], project["version"]


# ----------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelFile:
    name: str
    directory: str      # folder under ComfyUI/models
    url: str

    def as_property(self) -> dict:
        return {"name": self.name, "url": self.url, "directory": self.directory}


_WAN21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
_WAN22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
_HUNYUAN = "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files"

# File names and addresses as in ComfyUI's official templates (comfyui_workflow_templates).
MODELS = {m.name: m for m in [
    ModelFile("wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_models",
              f"{_WAN21}/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
    ModelFile("wan2.1_i2v_480p_14B_fp16.safetensors", "diffusion_models",
              f"{_WAN21}/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors"),
    ModelFile("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders",
              f"{_WAN21}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    ModelFile("wan_2.1_vae.safetensors", "vae", f"{_WAN21}/vae/wan_2.1_vae.safetensors"),
    ModelFile("clip_vision_h.safetensors", "clip_vision", f"{_WAN21}/clip_vision/clip_vision_h.safetensors"),
    ModelFile("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "diffusion_models",
              f"{_WAN22}/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
    ModelFile("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "diffusion_models",
              f"{_WAN22}/diffusion_models/wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
    ModelFile("hunyuan_video_t2v_720p_bf16.safetensors", "diffusion_models",
              f"{_HUNYUAN}/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors"),
    ModelFile("clip_l.safetensors", "text_encoders",
              "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    ModelFile("llava_llama3_fp8_scaled.safetensors", "text_encoders",
              f"{_HUNYUAN}/text_encoders/llava_llama3_fp8_scaled.safetensors"),
    ModelFile("hunyuan_video_vae_bf16.safetensors", "vae", f"{_HUNYUAN}/vae/hunyuan_video_vae_bf16.safetensors"),
    ModelFile("ltx-video-2b-v0.9.5.safetensors", "checkpoints",
              "https://huggingface.co/Lightricks/LTX-Video/resolve/main/ltx-video-2b-v0.9.5.safetensors"),
    ModelFile("t5xxl_fp16.safetensors", "text_encoders",
              "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors"),
]}

DEMO_MODEL = "precisecache_demo_wan.safetensors"
"""The pack's own tiny trained Wan 2.1 (models/ in this repository, which the pack lists under
diffusion_models when it loads). It has no download address."""

MODEL_INPUTS = {
    # node type -> its model-file combo inputs (checked against the expected file, not the option list)
    "UNETLoader": ("unet_name",), "CLIPLoader": ("clip_name",), "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "VAELoader": ("vae_name",), "CLIPVisionLoader": ("clip_name",), "CheckpointLoaderSimple": ("ckpt_name",),
}
INPUT_FILES = {"LoadImage": ("image",)}
"""File combos that list ComfyUI/input (the tests put a picture of that name there)."""

WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
"""Wan's standard negative prompt (as in ComfyUI's Wan templates)."""


# ----------------------------------------------------------------------------------- description
@dataclass
class Node:
    id: int
    type: str
    pos: tuple[float, float]
    values: dict = field(default_factory=dict)          # widget input name -> value
    links: dict = field(default_factory=dict)           # input name -> (source node id, output slot)
    title: str | None = None
    width: float | None = None
    height: float | None = None
    group: str | None = None

    @property
    def virtual(self) -> bool:
        return self.type in VIRTUAL_NODES


@dataclass
class Workflow:
    name: str
    description: str
    nodes: list[Node]
    groups: dict[str, str] = field(default_factory=dict)   # group title -> colour

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def note(node_id: int, pos, text: str, width: float = 420, height: float = 260, title: str = "Note") -> Node:
    return Node(node_id, "Note", pos, {"text": text}, title=title, width=width, height=height)


def lfcache(node_id, pos, model, preset=DEFAULT_LFCACHE_PRESET, alpha=0.5, group="PreciseCache",
            **window) -> Node:
    speed_target = LFCACHE_PRESETS[preset].speed_target
    return Node(node_id, "PreciseCacheLFCache", pos, {
        "preset": preset, "speed_target": speed_target, "alpha": alpha, "trial_downsample_t": 2,
        "trial_downsample_h": 4, "trial_downsample_w": 4,
        "lowpass_radius": 0.2, "start_percent": window.get("start_percent", 0.0),
        "end_percent": window.get("end_percent", 1.0), "max_consecutive_skips": 0, "reuse": "output",
        "trial_operator": "strided", "metric": "accumulated", "trial_streams": "cond",
        "step_aside": True},
        {"model": model}, group=group)


def blockcache(node_id, pos, model, pivotal_ratio=0.4, refresh_interval=3, group="PreciseCache") -> Node:
    return Node(node_id, "PreciseCacheBlockCache", pos, {
        "pivotal_ratio": pivotal_ratio, "refresh_interval": refresh_interval, "start_percent": 0.0,
        "end_percent": 1.0, "ranking": "relative_l2", "memory_budget_mb": 0.0, "residual_location": "gpu",
        "mode": "static", "change_threshold": 0.1},
        {"model": model}, group=group)


def report(node_id, pos, model, samples, title=None, group="Report") -> Node:
    return Node(node_id, "PreciseCacheReport", pos, {}, {"model": model, "samples": samples}, title=title,
                width=560, height=520, group=group)


def report_text(node_id, pos, report_id, group="Report") -> Node:
    return Node(node_id, "PreviewAny", pos, {}, {"source": (report_id, 0)}, title="Report (text)", width=560,
                height=250, group=group)


PRESET_TABLE = f"""LFCache presets are speed targets (work of the uncached run / work of this run, trials included):
- {x("Base")}: mean PSNR >= {PRESET_FIDELITY_DB["Base"]:g} dB vs uncached on every benchmark model and setting.
- {x("Turbo")}: default, >= {PRESET_FIDELITY_DB["Turbo"]:g} dB (visibly lossless on the benchmark models).
- {x("Flash")}: >= {PRESET_FIDELITY_DB["Flash"]:g} dB; small differences.
- custom: any speed_target from {SPEED_TARGET_RANGE[0]:g} to {SPEED_TARGET_RANGE[1]:g} (or 0 for the paper's alpha rule). PreciseCache Calibrate
  measures what your own setup allows and saves it as a preset.
The cache computes the steps whose low-frequency change is largest and reuses the others.
BlockCache (optional) also reuses the residuals of non-pivotal blocks inside computed steps; bypass it
(select it, Ctrl+B) if detail suffers. Schedules of {FEW_STEP_LIMIT} steps or fewer (4-step LoRAs) are never cached.
The Report node shows the target, the work saved, the skipped steps and the reused blocks."""


# ----------------------------------------------------------------------------------- workflows
COL = [0, 400, 800, 1200, 1600, 2050]


def demo_workflow() -> Workflow:
    prompt = "a white circle growing"
    text = ("PreciseCache demo: runs anywhere, no downloads.\n\n"
            f"Model: {DEMO_MODEL}, a tiny Wan 2.1 (random 16-token text embeddings instead of UMT5, a "
            "linear stand-in VAE) trained on procedural clips: pick a prompt from the list. "
            "It ships in the pack's models/ folder, which the pack lists under diffusion_models: "
            "nothing to copy or download.\n\n"
            f"Settings: LFCache {x('Turbo')} less work, counted in model forwards; frames next to uncached ones: "
            "docs/images/demo_uncached_vs_cached.png), BlockCache "
            "wired but off (pivotal_ratio 1.0): with only 4 blocks, reusing 2 of them costs more quality "
            "than it saves; use 0.4 (the paper's Flash setting) on deep models (30-60 blocks). 50 euler "
            "steps, cfg 5. The Report node plots the low-frequency difference per "
            "step, the skip threshold, the skipped steps (green) and the reused blocks per step. Set LFCache "
            "preset custom, speed_target 0, alpha 0 to compare with an uncached run.\n\n" + PRESET_TABLE)
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": DEMO_MODEL, "weight_dtype": "default"}, group="Model"),
        Node(2, "PreciseCacheDemoConditioning", (COL[0], 150), {"prompt": prompt}, group="Model"),
        Node(3, "EmptyHunyuanLatentVideo", (COL[0], 300), {"width": 128, "height": 128, "length": 9,
                                                         "batch_size": 1}, group="Model"),
        lfcache(4, (COL[1], 0), (1, 0)),
        blockcache(5, (COL[1], 330), (4, 0), pivotal_ratio=1.0),
        Node(6, "KSampler", (COL[2], 0), {"seed": 0, "steps": 50, "cfg": 5.0, "sampler_name": "euler",
                                          "scheduler": "simple", "denoise": 1.0},
             {"model": (5, 0), "positive": (2, 0), "negative": (2, 1), "latent_image": (3, 0)}, group="Sample"),
        Node(7, "PreciseCacheDemoDecode", (COL[2], 330), {}, {"samples": (6, 0)}, group="Sample"),
        Node(8, "SaveAnimatedWEBP", (COL[2], 430), {"filename_prefix": "PreciseCache/demo", "fps": 8.0,
                                                    "lossless": False, "quality": 90, "method": "default"},
             {"images": (7, 0)}, width=340, height=420, group="Sample"),
        report(9, (COL[3], 0), (5, 0), (6, 0)),
        report_text(10, (COL[3], 560), 9),
        note(11, (COL[0], 470), text, width=360, height=560),
    ]
    return Workflow("precisecache_demo", "PreciseCache demo (tiny bundled model, runs on any CPU)", nodes,
                    {"Model": "#3f789e", "PreciseCache": "#3f8e4f", "Sample": "#a1309b", "Report": "#b58b2a"})


def sampler_demo_workflow() -> Workflow:
    """The demo again, with the one-node PreciseCache Sampler instead of LFCache + BlockCache +
    KSampler + Report: the simplest way to use the pack."""
    prompt = "a white circle growing"
    text = ("PreciseCache Sampler demo: the same tiny bundled model as the PreciseCache demo, with the "
            "one-node PreciseCache Sampler: KSampler's inputs plus a preset.\n\n"
            f"Model: {DEMO_MODEL} (ships in the pack's models/ folder, listed under diffusion_models; "
            "nothing to download). Its conditioning and decode nodes stand in for a text encoder and a VAE.\n\n"
            "Presets:\n"
            "- off: plain KSampler (the uncached reference).\n"
            f"- Base: LFCache {LFCACHE_PRESETS['Base'].speed_target:g}x less work. Closest to the uncached video.\n"
            f"- Turbo: LFCache {LFCACHE_PRESETS['Turbo'].speed_target:g}x (default, set here).\n"
            f"- Flash: LFCache {LFCACHE_PRESETS['Flash'].speed_target:g}x. Fastest preset; small differences.\n"
            "- paper Flash: the paper's alpha 0.5 + BlockCache 40 % pivotal, refresh 3 (for deep models with "
            "30-60 blocks; on this 4-block model it costs more quality than it saves).\n\n"
            "The sampler's report output (what the cache did: skipped steps, work saved counted in forwards, "
            "sampling time) is shown by the Preview Any node. For the per-step plot use the separate nodes "
            "(LFCache, BlockCache, KSampler, PreciseCache Report), as in the PreciseCache demo.\n\n"
            "Switch the preset to off and queue again to see the uncached video and time. On a slow or busy "
            "CPU the trial of this tiny model can cost more time than a skipped step saves: LFCache then "
            "steps aside (computes every step) and the report says so.")
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": DEMO_MODEL, "weight_dtype": "default"}, group="Model"),
        Node(2, "PreciseCacheDemoConditioning", (COL[0], 150), {"prompt": prompt}, group="Model"),
        Node(3, "EmptyHunyuanLatentVideo", (COL[0], 300), {"width": 128, "height": 128, "length": 9,
                                                         "batch_size": 1}, group="Model"),
        Node(4, "PreciseCacheSampler", (COL[1], 0), {"preset": DEFAULT_LFCACHE_PRESET, "seed": 0, "steps": 50, "cfg": 5.0,
                                                     "sampler_name": "euler", "scheduler": "simple",
                                                     "denoise": 1.0},
             {"model": (1, 0), "positive": (2, 0), "negative": (2, 1), "latent_image": (3, 0)},
             width=340, group="PreciseCache Sampler"),
        Node(5, "PreciseCacheDemoDecode", (COL[2], 0), {}, {"samples": (4, 0)}, group="Output"),
        Node(6, "SaveAnimatedWEBP", (COL[2], 100), {"filename_prefix": "PreciseCache/sampler_demo", "fps": 8.0,
                                                    "lossless": False, "quality": 90, "method": "default"},
             {"images": (5, 0)}, width=340, height=420, group="Output"),
        Node(7, "PreviewAny", (COL[1], 380), {}, {"source": (4, 1)}, title="Report (text)", width=380,
             height=300, group="PreciseCache Sampler"),
        note(8, (COL[0], 470), text, width=360, height=560),
    ]
    return Workflow("precisecache_sampler_demo", "PreciseCache Sampler demo (one node, tiny bundled model, any CPU)",
                    nodes, {"Model": "#3f789e", "PreciseCache Sampler": "#3f8e4f", "Output": "#a1309b"})


def _wan_text_nodes(clip_id, first_id, x, y, positive, negative=WAN_NEGATIVE):
    return [
        Node(first_id, "CLIPTextEncode", (x, y), {"text": positive}, {"clip": (clip_id, 0)},
             title="CLIP Text Encode (Positive Prompt)", width=380, height=180, group="Prompt"),
        Node(first_id + 1, "CLIPTextEncode", (x, y + 220), {"text": negative}, {"clip": (clip_id, 0)},
             title="CLIP Text Encode (Negative Prompt)", width=380, height=180, group="Prompt"),
    ]


def _video_out(first_id, x, y, images, fps=16.0, prefix="video/PreciseCache", group="Output"):
    return [
        Node(first_id, "CreateVideo", (x, y), {"fps": fps}, {"images": images}, group=group),
        Node(first_id + 1, "SaveVideo", (x, y + 130), {"filename_prefix": prefix, "format": "auto", "codec": "auto"},
             {"video": (first_id, 0)}, width=340, height=420, group=group),
    ]


WAN_GROUPS = {"Load models": "#3f789e", "Prompt": "#3f789e", "PreciseCache": "#3f8e4f", "Sample": "#a1309b",
              "Output": "#a1309b", "Report": "#b58b2a"}


def wan21_t2v_workflow() -> Workflow:
    text = ("Wan 2.1 T2V 1.3B + PreciseCache.\n\n"
            f"Set here: LFCache {x('Turbo')}. {x('Base')} for final renders, {x('Flash')} for drafts. "
            "The 1.3B model is small, so BlockCache saves less per block than on 14B models.\n\n"
            "Why: at 30 uni_pc steps the low-frequency layout settles early; the cache spends its work budget "
            "on the steps whose low-frequency change is largest and reuses the others. Compare with the "
            "uncached video (custom, speed_target 0, alpha 0) before trusting a preset on your prompts.\n\n"
            + PRESET_TABLE)
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                            "weight_dtype": "default"}, group="Load models"),
        Node(2, "CLIPLoader", (COL[0], 130), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                              "type": "wan", "device": "default"}, group="Load models"),
        Node(3, "VAELoader", (COL[0], 290), {"vae_name": "wan_2.1_vae.safetensors"}, group="Load models"),
        *_wan_text_nodes(2, 4, COL[1], 0, "a fox moving quickly in a beautiful winter scenery nature trees "
                                          "mountains daytime tracking camera"),
        Node(6, "ModelSamplingSD3", (COL[0], 420), {"shift": 8.0}, {"model": (1, 0)}, group="Load models"),
        lfcache(7, (COL[2], 0), (6, 0)),
        Node(8, "EmptyHunyuanLatentVideo", (COL[2], 330), {"width": 832, "height": 480, "length": 33,
                                                         "batch_size": 1}, group="Sample"),
        Node(9, "KSampler", (COL[3], 0), {"seed": 0, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc",
                                          "scheduler": "simple", "denoise": 1.0},
             {"model": (7, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (8, 0)}, group="Sample"),
        Node(10, "VAEDecode", (COL[3], 330), {}, {"samples": (9, 0), "vae": (3, 0)}, group="Sample"),
        *_video_out(11, COL[4], 0, (10, 0)),
        report(13, (COL[5], 0), (7, 0), (9, 0)),
        report_text(14, (COL[5], 560), 13),
        note(15, (COL[0], 560), text),
    ]
    return Workflow("wan2_1_t2v_precisecache", "Wan 2.1 text to video (1.3B) with PreciseCache", nodes, WAN_GROUPS)


def wan21_i2v_workflow() -> Workflow:
    text = ("Wan 2.1 I2V 480p 14B + PreciseCache.\n\n"
            f"Set here: LFCache {x('Turbo')} + BlockCache 40 % / 3. The start image fixes the layout, so the "
            "low-frequency content changes little after the first steps and the 14B model's 40 blocks leave "
            "much to reuse. Bypass BlockCache, or use LFCache Base, if fine motion suffers.\n\n"
            "At 20 steps there are few steps to skip; with more steps PreciseCache skips more.\n"
            "Put your start image in ComfyUI/input (example.png is ComfyUI's sample).\n\n" + PRESET_TABLE)
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": "wan2.1_i2v_480p_14B_fp16.safetensors",
                                            "weight_dtype": "default"}, group="Load models"),
        Node(2, "CLIPLoader", (COL[0], 130), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                              "type": "wan", "device": "default"}, group="Load models"),
        Node(3, "VAELoader", (COL[0], 290), {"vae_name": "wan_2.1_vae.safetensors"}, group="Load models"),
        Node(4, "CLIPVisionLoader", (COL[0], 400), {"clip_name": "clip_vision_h.safetensors"}, group="Load models"),
        Node(5, "ModelSamplingSD3", (COL[0], 510), {"shift": 8.0}, {"model": (1, 0)}, group="Load models"),
        *_wan_text_nodes(2, 6, COL[1], 0, "a cute anime girl with massive fennec ears and a big fluffy tail "
                                          "wearing a maid outfit turning around"),
        Node(8, "LoadImage", (COL[1], 460), {"image": "example.png"}, width=340, height=360, group="Prompt"),
        Node(9, "CLIPVisionEncode", (COL[2], 640), {"crop": "none"}, {"clip_vision": (4, 0), "image": (8, 0)},
             group="Image conditioning"),
        Node(10, "WanImageToVideo", (COL[2], 770), {"width": 512, "height": 512, "length": 33, "batch_size": 1},
             {"positive": (6, 0), "negative": (7, 0), "vae": (3, 0), "clip_vision_output": (9, 0),
              "start_image": (8, 0)}, group="Image conditioning"),
        lfcache(11, (COL[2], 0), (5, 0)),
        blockcache(12, (COL[2], 320), (11, 0)),
        Node(13, "KSampler", (COL[3], 0), {"seed": 0, "steps": 20, "cfg": 6.0, "sampler_name": "uni_pc",
                                           "scheduler": "simple", "denoise": 1.0},
             {"model": (12, 0), "positive": (10, 0), "negative": (10, 1), "latent_image": (10, 2)}, group="Sample"),
        Node(14, "VAEDecode", (COL[3], 330), {}, {"samples": (13, 0), "vae": (3, 0)}, group="Sample"),
        *_video_out(15, COL[4], 0, (14, 0)),
        report(17, (COL[5], 0), (12, 0), (13, 0)),
        report_text(18, (COL[5], 560), 17),
        note(19, (COL[0], 650), text),
    ]
    return Workflow("wan2_1_i2v_precisecache", "Wan 2.1 image to video (480p 14B) with PreciseCache", nodes,
                    {**WAN_GROUPS, "Image conditioning": "#3f789e"})


def wan22_t2v_workflow() -> Workflow:
    text = ("Wan 2.2 T2V 14B (two experts) + PreciseCache.\n\n"
            "Each expert is patched on its own and each KSamplerAdvanced is its own sampling run, with its own "
            "decisions and its own report. start/end_percent refer to the whole schedule (sigmas), not to "
            "one sampler's steps.\n\n"
            f"Set here: high-noise expert LFCache {x('Base')}, no BlockCache: it lays out the scene and the "
            "motion, which users lose first when early steps are skipped. Low-noise expert LFCache "
            f"{x('Turbo')} + BlockCache 40 % / 3: its steps refine high-frequency detail while the low-frequency "
            "content barely moves, which is exactly what LFCache measures. Each sampler run meets its own "
            "target.\n\n"
            "With the 4-step Lightning LoRAs (2 + 2 steps) nothing is cached: schedules of 8 steps or fewer "
            "are left alone.\n\n" + PRESET_TABLE)
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                                            "weight_dtype": "default"}, title="Load Diffusion Model (high noise)",
             group="Load models"),
        Node(2, "UNETLoader", (COL[0], 130), {"unet_name": "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
                                              "weight_dtype": "default"}, title="Load Diffusion Model (low noise)",
             group="Load models"),
        Node(3, "CLIPLoader", (COL[0], 260), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                              "type": "wan", "device": "default"}, group="Load models"),
        Node(4, "VAELoader", (COL[0], 420), {"vae_name": "wan_2.1_vae.safetensors"}, group="Load models"),
        Node(5, "ModelSamplingSD3", (COL[0], 530), {"shift": 8.0}, {"model": (1, 0)},
             title="ModelSamplingSD3 (high noise)", group="Load models"),
        Node(6, "ModelSamplingSD3", (COL[0], 640), {"shift": 8.0}, {"model": (2, 0)},
             title="ModelSamplingSD3 (low noise)", group="Load models"),
        *_wan_text_nodes(3, 7, COL[1], 0, "Beautiful young European woman with honey blonde hair gracefully "
                                          "turning her head back over shoulder, gentle smile, bright eyes looking "
                                          "at camera. Hair flowing in slow motion as she turns. Soft natural "
                                          "lighting, clean background, cinematic slow-motion portrait."),
        Node(9, "EmptyHunyuanLatentVideo", (COL[1], 460), {"width": 640, "height": 640, "length": 81,
                                                         "batch_size": 1}, group="Prompt"),
        lfcache(10, (COL[2], 0), (5, 0), preset="Base"),
        lfcache(11, (COL[2], 330), (6, 0)),
        blockcache(12, (COL[2], 660), (11, 0)),
        Node(13, "KSamplerAdvanced", (COL[3], 0), {
            "add_noise": "enable", "noise_seed": 0, "steps": 20, "cfg": 3.5, "sampler_name": "euler",
            "scheduler": "simple", "start_at_step": 0, "end_at_step": 10, "return_with_leftover_noise": "enable"},
            {"model": (10, 0), "positive": (7, 0), "negative": (8, 0), "latent_image": (9, 0)},
            title="KSampler (Advanced) high noise", group="Sample"),
        Node(14, "KSamplerAdvanced", (COL[3], 420), {
            "add_noise": "disable", "noise_seed": 0, "steps": 20, "cfg": 3.5, "sampler_name": "euler",
            "scheduler": "simple", "start_at_step": 10, "end_at_step": 10000, "return_with_leftover_noise": "disable"},
            {"model": (12, 0), "positive": (7, 0), "negative": (8, 0), "latent_image": (13, 0)},
            title="KSampler (Advanced) low noise", group="Sample"),
        Node(15, "VAEDecode", (COL[3], 840), {}, {"samples": (14, 0), "vae": (4, 0)}, group="Sample"),
        *_video_out(16, COL[4], 0, (15, 0)),
        report(18, (COL[5], 0), (10, 0), (13, 0), title="PreciseCache Report (high noise)"),
        report(19, (COL[5], 560), (12, 0), (14, 0), title="PreciseCache Report (low noise)"),
        note(20, (COL[0], 760), text, height=330),
    ]
    return Workflow("wan2_2_t2v_precisecache", "Wan 2.2 text to video (14B, two experts) with PreciseCache", nodes,
                    WAN_GROUPS)


def hunyuan_t2v_workflow() -> Workflow:
    text = ("HunyuanVideo T2V 720p + PreciseCache.\n\n"
            f"Set here: LFCache {x('Turbo')} + BlockCache 40 % / 3. HunyuanVideo has 20 double and 40 single "
            "blocks; BlockCache reuses the residuals of the non-pivotal ones inside computed steps. Bypass "
            "BlockCache if detail suffers.\n\n"
            "Select an fp8 weight_dtype if you run out of memory; lower VAEDecodeTiled's tile_size and "
            "overlap if decoding does.\n\n" + PRESET_TABLE)
    nodes = [
        Node(1, "UNETLoader", (COL[0], 0), {"unet_name": "hunyuan_video_t2v_720p_bf16.safetensors",
                                            "weight_dtype": "default"}, group="Load models"),
        Node(2, "DualCLIPLoader", (COL[0], 130), {"clip_name1": "clip_l.safetensors",
                                                  "clip_name2": "llava_llama3_fp8_scaled.safetensors",
                                                  "type": "hunyuan_video", "device": "default"}, group="Load models"),
        Node(3, "VAELoader", (COL[0], 310), {"vae_name": "hunyuan_video_vae_bf16.safetensors"}, group="Load models"),
        Node(4, "ModelSamplingSD3", (COL[0], 420), {"shift": 7.0}, {"model": (1, 0)}, group="Load models"),
        Node(5, "CLIPTextEncode", (COL[1], 0), {"text": "anime style anime girl with massive fennec ears and one big "
                                                        "fluffy tail, she has blonde hair long hair blue eyes wearing "
                                                        "a pink sweater and a long blue skirt walking in a beautiful "
                                                        "outdoor scenery with snow mountains in the background"},
             {"clip": (2, 0)}, title="CLIP Text Encode (Positive Prompt)", width=380, height=180, group="Prompt"),
        Node(6, "FluxGuidance", (COL[1], 220), {"guidance": 6.0}, {"conditioning": (5, 0)}, group="Prompt"),
        Node(7, "EmptyHunyuanLatentVideo", (COL[1], 340), {"width": 848, "height": 480, "length": 73,
                                                         "batch_size": 1}, group="Prompt"),
        lfcache(8, (COL[2], 0), (4, 0)),
        blockcache(9, (COL[2], 330), (8, 0)),
        Node(10, "BasicGuider", (COL[3], 0), {}, {"model": (9, 0), "conditioning": (6, 0)}, group="Sample"),
        Node(11, "KSamplerSelect", (COL[3], 100), {"sampler_name": "euler"}, group="Sample"),
        Node(12, "BasicScheduler", (COL[3], 200), {"scheduler": "simple", "steps": 20, "denoise": 1.0},
             {"model": (9, 0)}, group="Sample"),
        Node(13, "RandomNoise", (COL[3], 350), {"noise_seed": 0}, group="Sample"),
        Node(14, "SamplerCustomAdvanced", (COL[3], 470), {}, {"noise": (13, 0), "guider": (10, 0),
                                                            "sampler": (11, 0), "sigmas": (12, 0),
                                                            "latent_image": (7, 0)}, group="Sample"),
        Node(15, "VAEDecodeTiled", (COL[3], 650), {"tile_size": 256, "overlap": 64, "temporal_size": 64,
                                                   "temporal_overlap": 8}, {"samples": (14, 0), "vae": (3, 0)},
             group="Sample"),
        *_video_out(16, COL[4], 0, (15, 0), fps=24.0),
        report(18, (COL[5], 0), (9, 0), (14, 0)),
        report_text(19, (COL[5], 560), 18),
        note(20, (COL[0], 530), text),
    ]
    return Workflow("hunyuan_video_t2v_precisecache", "HunyuanVideo text to video (720p) with PreciseCache", nodes,
                    WAN_GROUPS)


def ltxv_t2v_workflow() -> Workflow:
    text = ("LTX-Video 2B v0.9.5 T2V + PreciseCache.\n\n"
            f"Set here: LFCache {x('Base')}. LTX-Video is already fast and its latent is "
            "small (32x spatial compression), so a trial forward costs relatively more and BlockCache saves "
            f"little; {x('Turbo')} for drafts.\n\n"
            "This model needs long descriptive prompts; short prompts hurt quality more than any cache.\n\n"
            + PRESET_TABLE)
    nodes = [
        Node(1, "CheckpointLoaderSimple", (COL[0], 0), {"ckpt_name": "ltx-video-2b-v0.9.5.safetensors"},
             group="Load models"),
        Node(2, "CLIPLoader", (COL[0], 160), {"clip_name": "t5xxl_fp16.safetensors", "type": "ltxv",
                                              "device": "default"}, group="Load models"),
        Node(3, "CLIPTextEncode", (COL[1], 0), {"text": (
            "A red fox moving gracefully, its russet coat vibrant against the white landscape, leaving perfect "
            "star-shaped prints behind as steam rises from its breath in the crisp winter air. The scene is "
            "wrapped in snow-muffled silence, broken only by the gentle murmur of water still flowing beneath "
            "the ice.")}, {"clip": (2, 0)}, title="CLIP Text Encode (Positive Prompt)", width=380, height=180,
            group="Prompt"),
        Node(4, "CLIPTextEncode", (COL[1], 220), {"text": (
            "low quality, worst quality, deformed, distorted, disfigured, motion smear, motion artifacts, fused "
            "fingers, bad anatomy, weird hand, ugly")}, {"clip": (2, 0)}, title="CLIP Text Encode (Negative Prompt)",
            width=380, height=180, group="Prompt"),
        Node(5, "LTXVConditioning", (COL[1], 440), {"frame_rate": 25.0}, {"positive": (3, 0), "negative": (4, 0)},
             group="Prompt"),
        Node(6, "EmptyLTXVLatentVideo", (COL[1], 560), {"width": 768, "height": 512, "length": 97,
                                                      "batch_size": 1}, group="Prompt"),
        lfcache(7, (COL[2], 0), (1, 0), preset="Base"),
        Node(8, "KSamplerSelect", (COL[3], 0), {"sampler_name": "euler"}, group="Sample"),
        Node(9, "LTXVScheduler", (COL[3], 100), {"steps": 30, "max_shift": 2.05, "base_shift": 0.95,
                                                 "stretch": True, "terminal": 0.1}, {"latent": (6, 0)},
             group="Sample"),
        Node(10, "SamplerCustom", (COL[3], 310), {"add_noise": True, "noise_seed": 0, "cfg": 3.0},
             {"model": (7, 0), "positive": (5, 0), "negative": (5, 1), "sampler": (8, 0), "sigmas": (9, 0),
              "latent_image": (6, 0)}, group="Sample"),
        Node(11, "VAEDecode", (COL[3], 560), {}, {"samples": (10, 0), "vae": (1, 2)}, group="Sample"),
        *_video_out(12, COL[4], 0, (11, 0), fps=24.0),
        report(14, (COL[5], 0), (7, 0), (10, 0)),
        report_text(15, (COL[5], 560), 14),
        note(16, (COL[0], 300), text),
    ]
    return Workflow("ltx_video_t2v_precisecache", "LTX-Video text to video (2B v0.9.5) with PreciseCache", nodes,
                    WAN_GROUPS)


WORKFLOWS = [demo_workflow, sampler_demo_workflow, wan21_t2v_workflow, wan21_i2v_workflow, wan22_t2v_workflow,
             hunyuan_t2v_workflow, ltxv_t2v_workflow]


def all_workflows() -> list[Workflow]:
    return [make() for make in WORKFLOWS]


# ----------------------------------------------------------------------------------- node definitions
def load_node_defs(path: Path = NODE_DEFS_PATH) -> dict:
    return json.loads(path.read_text())["nodes"]


def node_defs_from_object_info(object_info: dict, types) -> dict:
    """The parts of /object_info that decide a node's UI serialisation, for ``types``."""
    defs = {}
    for node_type in sorted(types):
        info = object_info.get(node_type)
        if info is None:
            raise KeyError(f"{node_type} is not in /object_info: is this ComfyUI new enough, with the pack loaded?")
        order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
        inputs = []
        for section in ("required", "optional"):
            for name in order.get(section, []):
                spec = info["input"][section][name]
                raw_type, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
                kind = "COMBO" if isinstance(raw_type, list) else raw_type
                entry = {"name": name, "type": kind, "widget": kind in WIDGET_TYPES and not options.get("forceInput")}
                if options.get("control_after_generate"):
                    entry["control_after_generate"] = True
                if options.get("image_upload"):
                    entry["image_upload"] = True
                if section == "optional":
                    entry["optional"] = True
                inputs.append(entry)
        defs[node_type] = {
            "display_name": info.get("display_name") or node_type,
            "python_module": info.get("python_module", ""),
            "inputs": inputs,
            "outputs": [{"name": n, "type": t} for n, t in zip(info.get("output_name") or info["output"],
                                                                 info["output"])],
        }
    return defs


def used_node_types(workflows) -> set[str]:
    return {n.type for wf in workflows for n in wf.nodes if not n.virtual}


def refresh_node_defs(url: str) -> None:
    object_info = http_json(url.rstrip("/") + "/object_info", timeout=60)
    defs = node_defs_from_object_info(object_info, used_node_types(all_workflows()))
    NODE_DEFS_PATH.write_text(json.dumps({"comment": "Written by scripts/build_workflows.py --refresh-node-defs "
                                          "from a running ComfyUI's /object_info; only what the UI format needs.",
                                          "nodes": defs}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {NODE_DEFS_PATH.relative_to(REPO)} ({len(defs)} node types)")


# ----------------------------------------------------------------------------------- serialisation
def _widget_inputs(node_def: dict) -> list[dict]:
    return [i for i in node_def["inputs"] if i["widget"]]


def _check_node(node: Node, node_def: dict) -> None:
    names = {i["name"] for i in node_def["inputs"]}
    widgets = {i["name"] for i in _widget_inputs(node_def)}
    for name in node.values:
        if name not in widgets:
            raise ValueError(f"node {node.id} ({node.type}): {name!r} is not a widget input (widgets: {sorted(widgets)})")
    for name in node.links:
        if name not in names:
            raise ValueError(f"node {node.id} ({node.type}): no input named {name!r}")
    for i in node_def["inputs"]:
        if i["widget"] and i["name"] not in node.values and i["name"] not in node.links:
            raise ValueError(f"node {node.id} ({node.type}): widget {i['name']!r} has no value (give every "
                             f"widget a value so the two formats agree without relying on defaults)")
        if not i["widget"] and not i.get("optional") and i["name"] not in node.links:
            raise ValueError(f"node {node.id} ({node.type}): required input {i['name']!r} is not connected")


def to_api(wf: Workflow, defs: dict) -> dict:
    api = {}
    for node in sorted(wf.nodes, key=lambda n: n.id):
        if node.virtual:
            continue
        node_def = defs[node.type]
        _check_node(node, node_def)
        inputs = {}
        for i in node_def["inputs"]:
            name = i["name"]
            if name in node.links:
                source, slot = node.links[name]
                inputs[name] = [str(source), slot]
            elif name in node.values:
                inputs[name] = node.values[name]
        api[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                             "_meta": {"title": node.title or node_def["display_name"]}}
    return api


def _estimated_height(node_def: dict, node: Node) -> float:
    sockets = sum(1 for i in node_def["inputs"] if not i["widget"])
    widgets = len(_widget_inputs(node_def)) + sum(1 for i in node_def["inputs"] if i.get("control_after_generate"))
    rows = max(sockets, len(node_def["outputs"]), 1)
    return 16 + rows * 22 + widgets * 24


def _node_properties(node: Node, node_def: dict | None, pack: tuple[str, str]) -> dict:
    props = {"Node name for S&R": node.type}
    if node_def is not None:
        if node.type.startswith(PACK_NODE_PREFIX):
            props["cnr_id"], props["ver"] = pack
        elif node_def["python_module"] in ("nodes",) or node_def["python_module"].startswith("comfy_extras"):
            props["cnr_id"], props["ver"] = "comfy-core", COMFYUI_VERSION
    files = [MODELS[node.values[k]].as_property() for k in MODEL_INPUTS.get(node.type, ())
             if node.values.get(k) in MODELS]
    if files:
        props["models"] = files
    return props


def to_ui(wf: Workflow, defs: dict, pack: tuple[str, str]) -> dict:
    links = []              # [id, origin, origin_slot, target, target_slot, type]
    out_links: dict[tuple[int, int], list[int]] = {}
    in_link: dict[tuple[int, str], int] = {}
    for node in sorted(wf.nodes, key=lambda n: n.id):
        if node.virtual:
            continue
        node_def = defs[node.type]
        for name, (source, slot) in node.links.items():
            src_def = defs[wf.node(source).type]
            link_id = len(links) + 1
            out_type = src_def["outputs"][slot]["type"]
            links.append([link_id, source, slot, node.id, None, out_type])
            out_links.setdefault((source, slot), []).append(link_id)
            in_link[(node.id, name)] = link_id

    ui_nodes = []
    for order, node in enumerate(sorted(wf.nodes, key=lambda n: n.id)):
        entry = {"id": node.id, "type": node.type, "pos": [float(node.pos[0]), float(node.pos[1])]}
        if node.virtual:
            entry.update(size=[node.width or 400, node.height or 200], flags={}, order=order, mode=0, inputs=[],
                         outputs=[], title=node.title, properties={}, widgets_values=[node.values["text"]],
                         **NOTE_COLOR)
            ui_nodes.append(entry)
            continue
        node_def = defs[node.type]
        inputs = []
        for i in node_def["inputs"]:
            if not i["widget"]:
                link = in_link.get((node.id, i["name"]))
                inputs.append({"name": i["name"], "type": i["type"], "link": link})
                if link is not None:
                    links[link - 1][4] = len(inputs) - 1
        outputs = []
        for slot, o in enumerate(node_def["outputs"]):
            outputs.append({"name": o["name"], "type": o["type"], "slot_index": slot,
                            "links": out_links.get((node.id, slot), [])})
        widgets_values = []
        for i in _widget_inputs(node_def):
            widgets_values.append(node.values.get(i["name"]))
            if i.get("control_after_generate"):
                widgets_values.append(SEED_CONTROL)
            if i.get("image_upload"):
                widgets_values.append("image")
        entry.update(size=[node.width or 320, node.height or _estimated_height(node_def, node)], flags={},
                     order=order, mode=0, inputs=inputs, outputs=outputs)
        if node.title:
            entry["title"] = node.title
        entry["properties"] = _node_properties(node, node_def, pack)
        entry["widgets_values"] = widgets_values
        if node.type.startswith(PACK_NODE_PREFIX):
            entry.update(OUR_COLOR)
        ui_nodes.append(entry)
    for link in links:
        assert link[4] is not None, f"link {link} has no target slot"

    groups = []
    by_group: dict[str, list[dict]] = {}
    for node, entry in zip(sorted(wf.nodes, key=lambda n: n.id), ui_nodes):
        if node.group:
            by_group.setdefault(node.group, []).append(entry)
    for gid, (title, members) in enumerate(sorted(by_group.items(), key=lambda kv: list(wf.groups).index(kv[0])
                                                  if kv[0] in wf.groups else 99), start=1):
        x0 = min(e["pos"][0] for e in members) - 15
        y0 = min(e["pos"][1] for e in members) - 75
        x1 = max(e["pos"][0] + e["size"][0] for e in members) + 15
        y1 = max(e["pos"][1] + e["size"][1] for e in members) + 15
        groups.append({"id": gid, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                       "color": wf.groups.get(title, "#3f789e"), "font_size": 24, "flags": {}})

    # initial view: the whole graph in a 1600 x 900 window, clear of the editor's side bar and tab bar
    boxes = [(e["pos"][0], e["pos"][1], e["size"][0], e["size"][1]) for e in ui_nodes] + \
        [tuple(g["bounding"]) for g in groups]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    left, top, right, bottom = 70.0, 100.0, 20.0, 10.0
    scale = round(min((1600.0 - left - right) / (x1 - x0), (900.0 - top - bottom) / (y1 - y0), 1.0), 4)
    offset = [round(left / scale - x0, 2), round(top / scale - y0, 2)]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"precisecache/workflows/{wf.name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in wf.nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": scale, "offset": offset}, "precisecache": {"title": wf.description}},
        "version": 0.4,
    }


def dumps(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def build(defs: dict | None = None) -> dict[Path, str]:
    """Every file this script writes, path -> text."""
    defs = defs if defs is not None else load_node_defs()
    pack = project_metadata()
    files = {}
    for wf in all_workflows():
        missing = used_node_types([wf]) - set(defs)
        if missing:
            raise KeyError(f"{wf.name}: no node definition for {sorted(missing)}; run --refresh-node-defs")
        files[API_DIR / f"{wf.name}.json"] = dumps(to_api(wf, defs))
        files[WORKFLOWS_DIR / f"{wf.name}.json"] = dumps(to_ui(wf, defs, pack))
    return files


def check(files: dict[Path, str]) -> list[str]:
    problems = []
    for path, text in files.items():
        if not path.exists():
            problems.append(f"{path.relative_to(REPO)} is missing")
        elif path.read_text() != text:
            problems.append(f"{path.relative_to(REPO)} differs from a fresh build")
    expected = set(files)
    for folder in (WORKFLOWS_DIR, API_DIR):
        for path in sorted(folder.glob("*.json")):
            if path not in expected:
                problems.append(f"{path.relative_to(REPO)} is not built by this script (stale?)")
    return problems


ICON_PATH = REPO / "docs" / "images" / "report_icon.png"


def write_icon(path: Path = ICON_PATH) -> None:
    """The pack's registry icon (pyproject [tool.comfy] Icon): a stylised report plot, 256 x 256.
    A drawing, not data: a decaying difference curve, its threshold, and skipped steps in green."""
    import math
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = list(range(20))
    curve = [2.6 * math.exp(-i / 6.0) + 0.35 + 0.25 * math.sin(i * 1.7) ** 2 for i in steps]
    fig = plt.figure(figsize=(2.56, 2.56), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    fig.patch.set_facecolor("#1f2a24")
    ax.set_facecolor("#1f2a24")
    for s in (7, 9, 10, 12, 13, 15, 16, 17, 19):
        ax.axvspan(s - 0.45, s + 0.45, color="#3fb25a", alpha=0.45, lw=0)
    ax.plot(steps, curve, "o-", color="#8fd3ff", lw=3, ms=5)
    ax.axhline(1.3, color="#ff7a5c", lw=2.5, ls="--")
    ax.set_xlim(-1, 20)
    ax.set_ylim(0, 3.3)
    ax.axis("off")
    fig.savefig(path, dpi=100, facecolor=fig.get_facecolor())
    plt.close(fig)
    print(f"wrote {path.relative_to(REPO)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument("--refresh-node-defs", metavar="URL",
                        help="first refresh scripts/workflow_node_defs.json from URL/object_info")
    parser.add_argument("--icon", action="store_true", help=f"also draw {ICON_PATH.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if args.icon:
        write_icon()
    if args.refresh_node_defs:
        refresh_node_defs(args.refresh_node_defs)
    files = build()
    if args.check:
        problems = check(files)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: python3 scripts/build_workflows.py", file=sys.stderr)
        return 1 if problems else 0
    API_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
