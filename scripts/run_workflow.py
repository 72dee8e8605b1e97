#!/usr/bin/env python3
"""Run a PreciseCache workflow headless on a real ComfyUI over its HTTP API, as users drive it.

    python3 scripts/run_workflow.py --install-requirements   # install the pack's needs, run the demo
    python3 scripts/run_workflow.py                          # the demo (trained tiny Wan, no downloads)
    python3 scripts/run_workflow.py my_workflow_api.json --user-folders
    python3 scripts/run_workflow.py my_workflow_api.json --server http://127.0.0.1:8188

Where it runs (one of):
* default: starts ComfyUI with an isolated demo folder (``--base-directory ./comfy_run``) whose
  custom_nodes/ links to this pack; your ComfyUI's own folders are neither read nor written;
* ``--user-folders``: starts your ComfyUI as it is, with its models/, its extra_model_paths.yaml and its
  outputs, and this pack added to its custom nodes (through an extra paths file);
* ``--server URL``: submits to a ComfyUI server that is already running (the pack must be installed
  in it).

ComfyUI is found through ``--comfyui``, COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI; its Python through
``--python``, COMFYUI_PYTHON, ``<ComfyUI>/venv``, ``<ComfyUI>/.venv``, the portable build's
python_embeded, else this Python. The device is the GPU when that Python's torch sees one
(``--device cpu`` forces the CPU). Prints progress per sampler step, the PreciseCache report and
the paths of the outputs. A model file the workflow names but ComfyUI does not have is listed with
the folder it belongs in.

``--compare-uncached`` also measures the realized speed-up: after the normal run (which loads the
models) it runs the same workflow with PreciseCache off (LFCache and BlockCache nodes bypassed, the
Report nodes and what shows them left out, PreciseCache Sampler set to preset 'off'; saved files get
an ``_uncached`` suffix), then the workflow with its caches on and only the Report nodes left out (they
display a cached run, they are not sampling: both timed runs do the same work but for the cache),
and prints both runs' execution time
on the server (from ComfyUI's own start and end timestamps; the model loaders come from ComfyUI's
cache in both, so neither run pays for loading) and their ratio; ``--compare-repeats N`` alternates
N runs of each and prints medians. Everything downstream of the PreciseCache nodes must really run
each time (checked), so the two times compare the same work.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.append(str(REPO / "scripts"))  # comfy_host, also when a test loads this file by path
import comfy_host  # noqa: E402  (standard library only, like this script)
from comfy_host import free_port, http_json  # noqa: E402

DEFAULT_WORKFLOW = REPO / "workflows" / "api" / "precisecache_demo.json"
MODEL_FOLDERS = {
    "unet_name": "diffusion_models", "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "control_net_name": "controlnet", "model_name": "upscale_models",
}
"""Loader inputs that name a model file → the ComfyUI models/ folder it belongs in."""
HOST_MODULES = ("torch", "torchvision", "yaml", "aiohttp", "safetensors")
BYPASSED_NODES = {"PreciseCacheLFCache": "model", "PreciseCacheBlockCache": "model"}
"""PreciseCache's MODEL -> MODEL patch nodes and the input their output stands for when bypassed."""
REPORT_NODES = {"PreciseCacheReport": {3: "samples"}}
"""Nodes that need a cached run: left out of the uncached run; output slot -> the input it passes through."""
SAMPLER_NODES = {"PreciseCacheSampler": ("preset", "off")}
"""Nodes that sample themselves: set to their uncached setting."""


def find_comfyui(explicit: Path | None) -> Path:
    """The ComfyUI folder; exits saying where it looked (and which given path was no ComfyUI) when none."""
    host = comfy_host.find_comfyui(explicit, none_found="No ComfyUI found: pass --comfyui DIR or set COMFYUI_DIR "
                                                        "to a ComfyUI folder (one holding main.py and comfy/), or "
                                                        "place it at ../ComfyUI or /opt/ComfyUI")
    if host.path is None:
        sys.exit(host.reason)
    return Path(host.path)


def find_python(comfy: Path, explicit: Path | None) -> str:
    """ComfyUI's Python; exits naming it when the chosen one cannot run ComfyUI."""
    candidates = [str(explicit) if explicit else None, os.environ.get("COMFYUI_PYTHON"),
                  str(comfy / "venv" / "bin" / "python"), str(comfy / ".venv" / "bin" / "python"),
                  str(comfy.parent / "python_embeded" / "python.exe"), str(comfy.parent / "python_embeded" / "python")]
    python = next((p for p in filter(None, candidates) if Path(p).is_file()), sys.executable)
    probe = "import importlib.util as u, sys; print(','.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    result = subprocess.run([python, "-c", probe, *HOST_MODULES], capture_output=True, text=True)
    missing = result.stdout.strip()
    if result.returncode != 0 or missing:
        sys.exit(f"{python} cannot run ComfyUI (missing: {missing or result.stderr.strip()[-300:]}). Run with "
                 f"ComfyUI's Python: pass --python /path/to/ComfyUI's/python (or set COMFYUI_PYTHON), or install "
                 f"ComfyUI's requirements.txt into this one.")
    return python


def has_gpu(python: str) -> bool:
    probe = "import torch; print(torch.cuda.is_available() or getattr(torch.backends, 'mps', None) is not None " \
            "and torch.backends.mps.is_available())"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return result.stdout.strip() == "True"


def prepare_demo_dir(base: Path) -> None:
    for sub in ("custom_nodes", "models/diffusion_models", "input", "output", "temp", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link_pack(base / "custom_nodes")
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))


def link_pack(custom_nodes: Path) -> None:
    link = custom_nodes / "PreciseCache"  # the demo model comes with the pack (models/)
    if link.is_symlink() and link.resolve() != REPO:
        link.unlink()
    if not link.exists():
        link.symlink_to(REPO)


def tail(path: Path | None, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path else "(no log)"
    except OSError:
        return "(no log)"


def explain_rejection(body: str) -> str:
    """ComfyUI's HTTP 400 answer, with missing model files listed by name and folder."""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return body
    lines = [f"ComfyUI refused the workflow: {answer.get('error', {}).get('message', '')}"]
    for node_id, node in (answer.get("node_errors") or {}).items():
        for error in node.get("errors", []):
            info = error.get("extra_info", {})
            name = info.get("input_name")
            if error.get("type") == "value_not_in_list" and name in MODEL_FOLDERS:
                value = info.get("received_value")
                lines.append(f"  missing model file '{value}' (node {node_id}, {node.get('class_type')}.{name}): "
                             f"put it in ComfyUI's models/{MODEL_FOLDERS[name]}/ (or a folder your "
                             f"extra_model_paths.yaml lists for {MODEL_FOLDERS[name]}), or run with --user-folders "
                             f"if it is already there")
            else:
                lines.append(f"  node {node_id} ({node.get('class_type')}): {error.get('message')}: "
                             f"{error.get('details', '')}")
    return "\n".join(lines)


class Progress:
    """Per-step progress read from the server log (ComfyUI's sampler progress bar: '  7/50 [')."""

    pattern = re.compile(r"(\d+)/(\d+) \[")

    def __init__(self, log: Path | None):
        self.log, self.last = log, None
        try:  # only what this run writes: an earlier run's progress is in the log already
            self.start = log.stat().st_size if log else 0
        except OSError:
            self.start = 0

    def poll(self) -> None:
        if self.log is None:
            return
        try:
            with open(self.log, "rb") as f:
                f.seek(max(self.start, f.seek(0, os.SEEK_END) - 4096))
                text = f.read().decode(errors="replace")
        except OSError:
            return
        found = self.pattern.findall(text.replace("\r", "\n"))
        if found and found[-1] != self.last:
            self.last = found[-1]
            print(f"  step {found[-1][0]}/{found[-1][1]}", flush=True)


def submit_and_wait(url: str, graph: dict, timeout: float, server: subprocess.Popen | None,
                    log: Path | None) -> tuple[int, dict | None]:
    try:
        prompt_id = http_json(url + "/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})["prompt_id"]
    except urllib.error.HTTPError as error:
        print(explain_rejection(error.read().decode(errors="replace")), file=sys.stderr)
        return 2, None
    started, progress = time.monotonic(), Progress(log)
    while True:
        entry = http_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
            break
        if time.monotonic() - started > timeout:
            print(f"timed out after {timeout:.0f} s; log tail:\n{tail(log)}", file=sys.stderr)
            return 3, None
        if server is not None and server.poll() is not None:
            print(f"ComfyUI died; log tail:\n{tail(log)}", file=sys.stderr)
            return 3, None
        progress.poll()
        time.sleep(0.5)
    time.sleep(0.2)  # the server may still be flushing the sampler's last progress line to its log
    progress.poll()  # the steps after the last poll (a fast run can finish between two polls)
    status = entry.get("status", {})
    if status.get("status_str") != "success":
        errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
        for e in errors:
            print(f"the workflow failed in node {e.get('node_id')} ({e.get('node_type')}): "
                  f"{e.get('exception_type')}: {e.get('exception_message')}", file=sys.stderr)
        return 4, None
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0, entry


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)


def uncached_variant(graph: dict, keep_caches: bool = False) -> tuple[dict, list[str], set[str]]:
    """The workflow with PreciseCache off, what was changed, and the ids of the nodes whose inputs
    changed (they and everything after them must run again).

    LFCache / BlockCache nodes are bypassed (links to their MODEL output go to their model input);
    Report nodes are left out (they need a cached run; a link to their samples pass-through goes to
    their samples input), with every node that needs one of their other outputs; a PreciseCache
    Sampler gets preset 'off'; ``filename_prefix`` inputs get ``_uncached`` appended.
    ``keep_caches``: only the Report nodes (and what shows them) are left out: the cached run timed
    against the uncached one, so that the two differ in the cache alone."""
    g = json.loads(json.dumps(graph))
    titles = {i: n.get("_meta", {}).get("title") or n.get("class_type") for i, n in g.items()}
    passthrough: dict[tuple[str, int], object] = {}     # (node, slot) -> link it stands for, None = gone
    changes, dropped, touched = [], set(), set()
    for node_id, node in g.items():
        kind = node.get("class_type")
        if keep_caches and kind not in REPORT_NODES:
            continue
        if kind in BYPASSED_NODES:
            passthrough[(node_id, 0)] = node["inputs"][BYPASSED_NODES[kind]]
            dropped.add(node_id)
            changes.append(f"bypassed node {node_id} ({titles[node_id]})")
        elif kind in REPORT_NODES:
            for slot, name in REPORT_NODES[kind].items():
                passthrough[(node_id, slot)] = node["inputs"].get(name)
            dropped.add(node_id)
            changes.append(f"left out node {node_id} ({titles[node_id]}): it reports cached runs")
        elif kind in SAMPLER_NODES:
            name, value = SAMPLER_NODES[kind]
            node["inputs"][name] = value
            touched.add(node_id)
            changes.append(f"node {node_id} ({titles[node_id]}): {name} = {value!r}")
    if not changes and not keep_caches:
        raise ValueError("the workflow has no PreciseCache node (LFCache, BlockCache, PreciseCache Sampler): "
                         "there is nothing to compare")

    def resolve(link):
        while _is_link(link):
            source = (str(link[0]), link[1])
            if source[0] in dropped:
                link = passthrough.get(source)     # None: an output that does not exist without the cache
            else:
                return link
        return link

    changed = True
    while changed:
        changed = False
        for node_id, node in g.items():
            if node_id in dropped:
                continue
            for name, value in node["inputs"].items():
                if not _is_link(value) or str(value[0]) not in dropped:
                    continue
                target = resolve(value)
                if target is None:
                    dropped.add(node_id)
                    changes.append(f"left out node {node_id} ({titles[node_id]}): it shows a left-out node's output")
                    changed = True
                    break
                node["inputs"][name] = target
                touched.add(node_id)
    for node_id in dropped:
        del g[node_id]
    for node_id, node in g.items() if not keep_caches else ():
        prefix = node["inputs"].get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = prefix + "_uncached"
    return g, changes, touched - dropped


def downstream(graph: dict, roots: set[str]) -> set[str]:
    """``roots`` and every node that takes an output of one of them, transitively."""
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for node_id, node in graph.items():
            if node_id not in found and any(_is_link(v) and str(v[0]) in found for v in node["inputs"].values()):
                found.add(node_id)
                changed = True
    return found


def execution_seconds(entry: dict) -> float:
    """The prompt's execution time on the server: its execution_start to execution_success timestamps."""
    stamps = {m[0]: m[1].get("timestamp") for m in entry.get("status", {}).get("messages", [])}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def served_from_cache(entry: dict) -> set[str]:
    return {str(n) for m in entry.get("status", {}).get("messages", []) if m[0] == "execution_cached"
            for n in m[1].get("nodes", [])}


def compare_uncached(url: str, graph: dict, timeout: float, server, log, output_root, repeats: int = 1) -> int:
    """Run the workflow uncached, then cached again (the models are loaded by now), ``repeats`` times
    in turn; print both execution times (medians over the repeats) and their ratio."""
    variant, changes, touched = uncached_variant(graph)
    timed_cached, left_out, _ = uncached_variant(graph, keep_caches=True)
    print("\ncomparing with the same workflow uncached (PreciseCache off):")
    for change in changes:
        print(f"  {change}")
    if left_out:
        print("  the timed cached runs leave the Report nodes out too (they display a run; both timed runs do "
              "the same work but for the cache)")
    ours = {i for i, n in timed_cached.items() if n.get("class_type") in {*BYPASSED_NODES, *SAMPLER_NODES}}
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    for round_ in range(1, repeats + 1):
        for name, g, roots in (("uncached", variant, touched), ("cached", timed_cached, ours)):
            print(f"{name} run{f' {round_}/{repeats}' if repeats > 1 else ''}:")
            code, entry = submit_and_wait(url, g, timeout, server, log)
            if entry is None:
                return code
            stale = downstream(g, roots) & served_from_cache(entry)
            if stale:
                print(f"ComfyUI served node(s) {', '.join(sorted(stale))} of the {name} run from its cache: the runs "
                      f"did not do the same work, no comparison (restart ComfyUI, or use its default cache)",
                      file=sys.stderr)
                return 5
            if name == "uncached" and round_ == 1:
                print_outputs(entry, output_root, texts=False)
            times[name].append(execution_seconds(entry))
    uncached, cached = statistics.median(times["uncached"]), statistics.median(times["cached"])
    what = "median of " + str(repeats) + " runs each" if repeats > 1 else "one run each"
    print(f"\nuncached run: {uncached:.3f} s")
    print(f"cached run: {cached:.3f} s")
    print(f"realized speed-up: {uncached / cached:.2f}x (uncached / cached execution time on the server, models "
          f"already loaded; {what}: on a machine busy with other work, use --compare-repeats 3 or more)")
    return 0


def print_outputs(entry: dict, output_root: Path | None, texts: bool = True) -> None:
    for node_id, output in entry.get("outputs", {}).items():
        for text in output.get("text", []) if texts else []:
            print(f"\n[node {node_id}]\n{text}")
        for key in ("images", "gifs", "videos", "latents", "animated"):
            for item in output.get(key, []) if isinstance(output.get(key), list) else []:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                where = (output_root / item.get("type", "output")) if output_root else Path(item.get("type", "output"))
                print(f"[node {node_id}] {key[:-1] if key.endswith('s') else key}: "
                      f"{where / item.get('subfolder', '') / item['filename']}")


def start_server(comfy: Path, python: str, args, base: Path | None, extra_paths: Path | None, log: Path):
    port = free_port()
    command = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    use_gpu = args.device == "gpu" or (args.device == "auto" and has_gpu(python))
    if not use_gpu:
        command.append("--cpu")
    if base is not None:
        command += ["--base-directory", str(base), "--disable-api-nodes"]
    if extra_paths is not None:
        command += ["--extra-model-paths-config", str(extra_paths)]
    print(f"ComfyUI: {comfy} (Python {python}, {'GPU' if use_gpu else 'CPU'})")
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, cwd=comfy, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"ComfyUI exited during start-up (code {server.returncode}); log {log}:\n{tail(log)}")
        try:
            http_json(url + "/system_stats", timeout=5)
            return server, url
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.5)
    server.terminate()
    sys.exit(f"ComfyUI did not answer within 180 s; log {log}:\n{tail(log)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("workflow", nargs="?", type=Path, default=DEFAULT_WORKFLOW,
                        help="API-format workflow JSON (default: the shipped demo)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user-folders", action="store_true",
                       help="use your ComfyUI's own models, extra_model_paths.yaml and output folders")
    where.add_argument("--server", metavar="URL", help="submit to a running ComfyUI server instead of starting one")
    where.add_argument("--demo-dir", type=Path, default=REPO / "comfy_run",
                       help="isolated base directory for the default mode (default: ./comfy_run)")
    parser.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    parser.add_argument("--python", type=Path, help="ComfyUI's Python (default: found next to ComfyUI)")
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                        help="auto: the GPU when ComfyUI's torch sees one (default)")
    parser.add_argument("--install-requirements", action="store_true",
                        help="first install this pack's requirements.txt into ComfyUI's Python")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the workflow")
    parser.add_argument("--compare-uncached", action="store_true",
                        help="also run the workflow with PreciseCache off, then cached again, and print both "
                             "execution times and the realized speed-up")
    parser.add_argument("--compare-repeats", type=int, default=1, metavar="N",
                        help="with --compare-uncached: N uncached and N cached runs in turn, medians (default 1)")
    args = parser.parse_args()
    if not args.workflow.is_file():
        sys.exit(f"workflow not found: {args.workflow}")
    graph = json.loads(args.workflow.read_text())
    if "nodes" in graph and "links" in graph:
        sys.exit(f"{args.workflow} is a UI-format workflow; export it with 'Export (API)' in ComfyUI, or use the "
                 f"twin under workflows/api/")
    print(f"workflow: {args.workflow}")
    if args.compare_repeats < 1:
        sys.exit("--compare-repeats must be 1 or more")
    if args.compare_uncached:
        try:
            uncached_variant(graph)
        except ValueError as error:
            sys.exit(f"--compare-uncached: {error}")
    if args.server:
        url = args.server.rstrip("/")
        code, entry = submit_and_wait(url, graph, args.timeout, None, None)
        if entry:
            print_outputs(entry, None)
            if args.compare_uncached:
                code = compare_uncached(url, graph, args.timeout, None, None, None, args.compare_repeats)
        return code
    comfy = find_comfyui(args.comfyui)
    python = find_python(comfy, args.python)
    if args.install_requirements:
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(REPO / "requirements.txt")], check=True)
    with tempfile.TemporaryDirectory(prefix="precisecache_run_") as scratch:
        if args.user_folders:
            nodes_dir = Path(scratch) / "custom_nodes"
            nodes_dir.mkdir()
            link_pack(nodes_dir)
            extra = Path(scratch) / "precisecache_paths.yaml"
            extra.write_text(f"precisecache:\n    base_path: {REPO}\n    custom_nodes: {nodes_dir}\n")
            base, output_root, log = None, comfy, Path(scratch) / "comfyui.log"
        else:
            base = args.demo_dir.resolve()
            prepare_demo_dir(base)
            extra, output_root, log = None, base, base / "comfyui.log"
        server, url = start_server(comfy, python, args, base, extra, log)
        try:
            code, entry = submit_and_wait(url, graph, args.timeout, server, log)
            if entry:
                print_outputs(entry, output_root)
                if args.compare_uncached:
                    code = compare_uncached(url, graph, args.timeout, server, log, output_root,
                                            args.compare_repeats)
            return code
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
