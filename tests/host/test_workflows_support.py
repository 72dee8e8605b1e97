"""Helpers shared by test_workflows.py and test_browser_workflows.py (no tests in here).

What the shipped workflows must hold is written here by hand, independently of
scripts/build_workflows.py (which produces them): the model files each workflow loads, the
editor-only node types, and a UI -> API converter that follows the editor's widget rules using
the running ComfyUI's /object_info. A test that used the build script's own tables would only
check the script against itself.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
DEMO = "precisecache_demo"
SAMPLER_DEMO = "precisecache_sampler_demo"
DEMOS = (DEMO, SAMPLER_DEMO)
"""The workflows that run anywhere on the pack's own tiny model (the tests run them to the end)."""
DEMO_MODEL = REPO / "models" / "precisecache_demo_wan.safetensors"
PACK_FOLDER = "PreciseCache"          # harness.PACK_LINK_NAME: the pack's folder name in custom_nodes/

EDITOR_ONLY_NODES = {"Note", "MarkdownNote"}
"""Node types the editor keeps to itself: no /object_info entry, never sent to the server."""

EDITOR_ONLY_INPUTS = {"PreviewAny": {"preview", "previewMode"}}
"""Widgets the editor adds to a node on its own (its preview box): not server inputs."""

SEED_CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}

# (models sub-folder, file name) each workflow must load: the names ComfyUI's own templates and
# model pages use, so a user who has them needs to change nothing.
EXPECTED_MODEL_FILES = {
    DEMO: {("diffusion_models", "precisecache_demo_wan.safetensors")},
    SAMPLER_DEMO: {("diffusion_models", "precisecache_demo_wan.safetensors")},
    "wan2_1_t2v_precisecache": {
        ("diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "wan_2.1_vae.safetensors")},
    "wan2_1_i2v_precisecache": {
        ("diffusion_models", "wan2.1_i2v_480p_14B_fp16.safetensors"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "wan_2.1_vae.safetensors"),
        ("clip_vision", "clip_vision_h.safetensors")},
    "wan2_2_t2v_precisecache": {
        ("diffusion_models", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
        ("diffusion_models", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "wan_2.1_vae.safetensors")},
    "hunyuan_video_t2v_precisecache": {
        ("diffusion_models", "hunyuan_video_t2v_720p_bf16.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("text_encoders", "llava_llama3_fp8_scaled.safetensors"),
        ("vae", "hunyuan_video_vae_bf16.safetensors")},
    "ltx_video_t2v_precisecache": {
        ("checkpoints", "ltx-video-2b-v0.9.5.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors")},
}
UI_WORKFLOWS = sorted(EXPECTED_MODEL_FILES)

MODEL_FILE_INPUTS = {
    # node type -> {input: models sub-folder}
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
}
INPUT_IMAGES = {"LoadImage": "image"}
INPUT_IMAGE_NAME = "example.png"      # ComfyUI's own sample input picture


def shows_report(ui: dict) -> bool:
    """Does the workflow show PreciseCache's run report? A Report node, or a PreciseCache Sampler whose
    report output (slot 1) feeds a Preview Any node."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    if any(n["type"] == "PreciseCacheReport" for n in nodes.values()):
        return True
    return any(nodes[origin]["type"] == "PreciseCacheSampler" and slot == 1 and nodes[target]["type"] == "PreviewAny"
               for _id, origin, slot, target, _slot, _type in ui["links"])


def ui_path(name: str) -> Path:
    return WORKFLOWS_DIR / f"{name}.json"


def api_path(name: str) -> Path:
    return API_DIR / f"{name}.json"


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_build_script():
    """scripts/build_workflows.py as a module."""
    spec = importlib.util.spec_from_file_location("precisecache_build_workflows", REPO / "scripts" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- base directory
def prepare_base_dir(base_dir: str) -> None:
    """Make every workflow's files resolvable in the test ComfyUI: empty stand-ins named like the
    real model files (validation checks names, not contents; loading one fails at once, so nothing
    heavy can ever run) and the input picture. Not the demo model: the pack lists its own models/
    folder to ComfyUI, which is what users rely on, so the tests rely on it too."""
    base = Path(base_dir)
    for name, files in EXPECTED_MODEL_FILES.items():
        if name in DEMOS:
            continue
        for folder, filename in files:
            path = base / "models" / folder / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(b"")
    picture = base / "input" / INPUT_IMAGE_NAME
    if not picture.exists():
        from PIL import Image
        picture.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (200, 120, 40)).save(picture)


# --------------------------------------------------------------------------- node definitions
def _spec(info: dict, name: str):
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            spec = info["input"][section][name]
            return spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    raise KeyError(name)


def ordered_inputs(info: dict) -> list[tuple[str, object, dict]]:
    """(name, type or combo option list, options) in the order the editor builds the node."""
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    return [(name, *_spec(info, name)) for section in ("required", "optional") for name in order.get(section, [])]


def combo_options(raw_type, options: dict):
    if isinstance(raw_type, list):
        return raw_type
    if raw_type == "COMBO":
        return options.get("options", [])
    return None


def is_widget(raw_type, options: dict) -> bool:
    if options.get("forceInput"):
        return False
    return isinstance(raw_type, list) or raw_type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def widget_values_by_name(node: dict, info: dict) -> tuple[dict, list[str]]:
    """Map a UI node's widgets_values onto input names the editor's way: one value per widget input,
    a seed input's "control after generate" value right after it, an upload button's after an
    image-upload combo. Returns (values, problems)."""
    values = list(node.get("widgets_values") or [])
    out, problems = {}, []
    i = 0
    for name, raw_type, options in ordered_inputs(info):
        if not is_widget(raw_type, options):
            continue
        if i >= len(values):
            problems.append(f"no widget value for {name!r}")
            break
        out[name] = values[i]
        i += 1
        if options.get("control_after_generate"):
            if i >= len(values) or values[i] not in SEED_CONTROL_VALUES:
                problems.append(f"{name!r}: expected a control-after-generate value after it, got "
                                f"{values[i] if i < len(values) else 'nothing'!r}")
            i += 1
        if options.get("image_upload"):
            i += 1
    if i != len(values):
        problems.append(f"{len(values) - i} widget values left over: {values[i:]!r}")
    return out, problems


def widget_value_problems(name: str, value, raw_type, options: dict, node_type: str, expected_files) -> list[str]:
    """Is ``value`` one the editor and the server accept for this input?"""
    folder = MODEL_FILE_INPUTS.get(node_type, {}).get(name)
    if folder is not None:
        return [] if (folder, value) in expected_files else [
            f"{name} = {value!r}: not one of the expected model files {sorted(f for d, f in expected_files if d == folder)}"]
    if INPUT_IMAGES.get(node_type) == name:
        return [] if value == INPUT_IMAGE_NAME else [f"{name} = {value!r}: expected {INPUT_IMAGE_NAME!r}"]
    combo = combo_options(raw_type, options)
    if combo is not None:
        return [] if value in combo else [f"{name} = {value!r} is not among the options {combo[:12]!r}"]
    problems = []
    if raw_type == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{name} = {value!r} is not an integer"]
    elif raw_type == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return [f"{name} = {value!r} is not a number"]
    elif raw_type == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{name} = {value!r} is not a boolean"]
    elif raw_type == "STRING":
        return [] if isinstance(value, str) else [f"{name} = {value!r} is not a string"]
    if "min" in options and value < options["min"]:
        problems.append(f"{name} = {value} is below its minimum {options['min']}")
    if "max" in options and value > options["max"]:
        problems.append(f"{name} = {value} is above its maximum {options['max']}")
    step = options.get("step")
    if raw_type == "INT" and step and step > 1 and (value - options.get("min", 0)) % step:
        problems.append(f"{name} = {value} is off its step grid (min {options.get('min', 0)}, step {step})")
    return problems


# --------------------------------------------------------------------------- UI -> API
def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API graph a UI workflow stands for (what the editor queues), built with /object_info."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in EDITOR_ONLY_NODES or node.get("mode", 0) in (2, 4):
            continue
        info = object_info[node["type"]]
        values, problems = widget_values_by_name(node, info)
        assert not problems, f"node {node['id']} ({node['type']}): {problems}"
        linked = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                link = links[slot["link"]]
                linked[slot["name"]] = [str(link[1]), link[2]]
        inputs = {}
        for name, _raw, _options in ordered_inputs(info):
            if name in linked:
                inputs[name] = linked[name]
            elif name in values:
                inputs[name] = values[name]
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]}}
    return api


def server_view(api: dict, object_info: dict) -> dict:
    """An API graph without inputs the server does not define (the editor adds a few of its own)."""
    out = {}
    for node_id, node in api.items():
        known = {name for name, _r, _o in ordered_inputs(object_info[node["class_type"]])} \
            if node["class_type"] in object_info else set(node["inputs"])
        out[node_id] = {"class_type": node["class_type"],
                        "inputs": {k: v for k, v in node["inputs"].items()
                                   if k in known and k not in EDITOR_ONLY_INPUTS.get(node["class_type"], ())},
                        "title": (node.get("_meta") or {}).get("title")}
    return out


def graph_differences(a: dict, b: dict) -> list[str]:
    diffs = []
    for node_id in sorted(set(a) | set(b), key=lambda k: int(k) if k.isdigit() else k):
        if node_id not in a or node_id not in b:
            diffs.append(f"node {node_id} only in {'first' if node_id in a else 'second'}")
        elif a[node_id] != b[node_id]:
            diffs.append(f"node {node_id}: {a[node_id]!r} != {b[node_id]!r}")
    return diffs


# --------------------------------------------------------------------------- server helpers
def prompt_accepted(server, graph: dict, timeout: float = 60.0) -> dict:
    """POST /prompt and return the response (which lists node_errors), then make sure the prompt
    leaves the queue without running anything: delete it if still pending, interrupt it if it
    started (with stand-in model files it could only fail at its first loader anyway)."""
    response = server.post_json("/prompt", {"prompt": graph, "client_id": server.client_id})
    prompt_id = response["prompt_id"]
    server.post_json("/queue", {"delete": [prompt_id]})
    deadline = time.monotonic() + timeout
    while True:
        queue = server.get_json("/queue")
        ids = {item[1] for item in queue.get("queue_running", []) + queue.get("queue_pending", [])}
        if prompt_id not in ids:
            return response
        server.post_json("/interrupt", {"prompt_id": prompt_id})
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} still queued after {timeout} s: {queue}")
        time.sleep(0.1)


def post_prompt_error(server, graph: dict) -> dict | None:
    """The parsed HTTP 400 body if /prompt rejects ``graph``, else None (and the prompt is removed)."""
    try:
        prompt_accepted(server, graph)
    except requests.HTTPError as e:
        return json.loads(e.response.content.decode("utf-8", "replace") or "{}")
    return None


def screenshot_dir(tmp_dir: Path) -> tuple[Path, bool]:
    """Where screenshots go: the repository (docs/images, workflows/*.jpg) when
    PRECISECACHE_UPDATE_SCREENSHOTS=1, else a temporary folder (so test runs leave the tree clean)."""
    if os.environ.get("PRECISECACHE_UPDATE_SCREENSHOTS") == "1":
        return REPO, True
    return Path(tmp_dir), False
