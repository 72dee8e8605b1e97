"""Host-side test harness: a real ComfyUI (in-process and as a headless server) with tiny models.

How to use (pytest from the repo root; pytest.ini sets --import-mode=importlib and pythonpath=.):
``tests/conftest.py`` puts ``tests/host`` on ``sys.path``, so test modules can ``import harness``
and ``import tiny_models``. Every test under ``tests/host`` gets the ``host`` marker and is SKIPPED
(with a banner in the header and the summary) when no ComfyUI is found. Host discovery order:
``$COMFYUI_DIR``, ``<repo>/../ComfyUI``, ``/opt/ComfyUI`` (a directory holding main.py and comfy/).
Finding ComfyUI and importing it in-process are ``scripts/comfy_host.py``'s, shared with the scripts;
this module puts ``scripts/`` on ``sys.path`` for it.

Fixtures (tests/host/conftest.py; all session-scoped):
  comfyui_dir      str   the ComfyUI install (skips the test when there is none)
  comfy_base_dir   str   temp --base-directory shared by in-process ComfyUI and the server:
                         models/diffusion_models, input, output, user, temp, and custom_nodes/ with
                         symlinks PreciseCache -> repo root, precisecache_test_nodes -> tests/comfy_test_nodes
  comfy            ComfyInProcess  ComfyUI imported once in this process (CPU, folder_paths on
                         comfy_base_dir, comfy_extras nodes + the test node pack loaded, progress bars off)
  tiny_models      dict  kind -> file name in <base>/models/diffusion_models (all MODEL_KINDS, seed 0)
  precisecache_pack LoadedPack  our pack loaded in-process the way ComfyUI loads a custom node
                         (nodes.load_custom_node on the symlink); fails the test with ComfyUI's
                         traceback if the pack does not import. Baseline tests do not use it.
  comfy_server     ComfyServer  `main.py --cpu` on a free port with --base-directory comfy_base_dir
                         (and an in-memory database), started after tiny_models are written; it
                         loads our pack and the test node pack from custom_nodes/. Log file:
                         <pytest tmp>/comfy_server0/comfyui_server.log. Terminated at session end
                         (also via atexit, and PR_SET_PDEATHSIG if pytest is killed).

ComfyInProcess (the `comfy` fixture):
  .dir, .base_dir, .nodes (ComfyUI's nodes module), .folder_paths, .execution
  .node(class_type) -> node class from nodes.NODE_CLASS_MAPPINGS
  .load_model(kind_or_filename) -> ModelPatcher via nodes.UNETLoader (real detection)
  .conditioning(kind, seed=1, variant="positive", length=8, width=4096, latent_shape=None) -> CONDITIONING
  .sample(model, kind, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="simple", latent=None,
          positive=None, negative=None, cond_seed=1, denoise=1.0) -> latent tensor (KSampler output)
  .new_executor(cache="classic"|"none"|"lru") -> execution.PromptExecutor with a stub server
  .run_graph(graph, executor=None) -> RunResult(outputs, messages, executed, cached); raises
          PromptRejected (validation) / PromptFailed (execution_error)
  .load_pack() -> LoadedPack(module, node_names, path); raises PackLoadError
  .load_saved_latent(outputs, node_id) -> tensor written by a SaveLatent node

ComfyServer (the `comfy_server` fixture):
  .url, .port, .base_dir, .log_path, .proc
  .post_prompt(graph, client_id=None, extra_data=None) -> prompt_id   (PromptRejected with node_errors)
  .wait_history(prompt_id, timeout=60) -> history entry                (PromptFailed on execution_error)
  .run_prompt(graph, timeout=60) -> history entry
  .object_info(node_class=None) -> dict
  .get_json(path) / .post_json(path, payload)   requests.HTTPError on an error status
  .get(path, params=None) -> requests.Response  (raises requests.HTTPError on an error status)
  .request(method, path, payload=None, params=None) -> requests.Response, whatever its status
      HTTP goes through requests (requirements-test.txt), imported on first use: scripts that
      import this module only for in-process ComfyUI (scripts/benchmark.py) do not need it.
  .free(unload_models=True, free_memory=True)   also resets the server's node-output cache
  .load_saved_latent(entry, node_id) -> tensor written by a SaveLatent node
  .log_tail(lines=80) -> str

Graph helper: sample_graph(kind, seed=0, steps=4, cfg=1.0, ..., model_chain=()) -> API-format graph
  UNETLoader -> [model_chain nodes] -> KSampler(pos/neg from PreciseCacheTestConditioning,
  the kind's empty-latent node) -> SaveLatent. Node ids: GRAPH_IDS; chain nodes get "10", "11", ...
  each chain entry is (class_type, inputs) and receives `model` from the previous model output.

tiny_models module: MODEL_KINDS[kind] -> ModelKind(name, filename, config_class, model_class,
  latent_channels, latent_shape, empty_latent, conditioning, blocks);
  write_tiny_model(kind, directory, seed=0) -> filename; tiny_state_dict(kind, seed=0) -> (sd, metadata);
  expected_model_class(kind) -> detection class name.
Conditioning: harness.conditioning_module().make_conditioning(kind, seed=0, length=8, width=4096,
  variant="positive", latent_shape=None) -> [[cross_attn, extras]]; the server-side node
  PreciseCacheTestConditioning(model_kind, seed, length, width, variant, optional latent) is the same.

Model kinds (float32, width 128, 2 blocks (Hunyuan: 2 double + 2 single), text width 4096, 4-15 MB;
sampling shift: Wan 8, Hunyuan 7, LTXV 2.37):
  wan      WAN21_T2V    16-ch latent (1,16,3,8,8)  cross_attn [1,L,4096]
  wan_i2v  WAN21_I2V    16-ch latent               + clip_vision_output (penultimate [1,257,1280]),
                                                     optional concat_latent_image/concat_mask
  wan22    WAN22_T2V    48-ch latent (1,48,3,8,8)  cross_attn (5B TI2V layout: in/out dim 48)
  wan_vace WAN21_Vace   16-ch latent               + vace_frames / vace_mask / vace_strength (as WanVaceToVideo)
  wan_camera WAN21_Camera 16-ch latent             + camera_conditions [1, 24, T, 8H, 8W] (pixel resolution)
  hunyuan_i2v / hunyuan_skyreels  HunyuanVideoI2V (in 33) / HunyuanVideoSkyreelsI2V (in 32) + concat_latent_image
  hunyuan  HunyuanVideo 16-ch latent               + pooled_output [1,768] (required) + guidance
  ltxv     LTXV         128-ch latent (1,128,2,4,4) + attention_mask [1,L] torch.long (required)

Caveat: the repo root has a `nodes/` package and is on sys.path; ComfyUI's own `nodes` module must
win, so importing ComfyUI evicts a foreign `nodes` (and other ComfyUI top-level names) from
sys.modules. Core tests should import `precisecache_core`, never the pack's `nodes` as top level.
"""
from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT / "scripts") not in sys.path:
    sys.path.append(str(REPO_ROOT / "scripts"))  # comfy_host; appended, so scripts/ shadows nothing
import comfy_host  # noqa: E402
from comfy_host import HostInfo  # noqa: E402  (find_comfyui's result)

TESTS_DIR = REPO_ROOT / "tests"
TEST_NODES_DIR = TESTS_DIR / "comfy_test_nodes"
PACK_LINK_NAME = "PreciseCache"
TEST_NODES_LINK_NAME = "precisecache_test_nodes"
SKIP_BANNER = "HOST TESTS SKIPPED: no ComfyUI found (set COMFYUI_DIR)"

GRAPH_IDS = {"loader": "1", "latent": "2", "positive": "3", "negative": "4", "sampler": "5", "save": "6"}


class PromptRejected(AssertionError):
    """ComfyUI refused the prompt at validation (HTTP 400 / validate_prompt)."""


class PromptFailed(AssertionError):
    """The prompt was accepted but raised during execution (execution_error)."""


class PackLoadError(AssertionError):
    """Our node pack could not be imported the way ComfyUI imports a custom node."""


# --------------------------------------------------------------------------- discovery

def find_comfyui() -> HostInfo:
    """$COMFYUI_DIR, then <repo>/../ComfyUI, then /opt/ComfyUI (comfy_host.find_comfyui)."""
    return comfy_host.find_comfyui(none_found=SKIP_BANNER)


# --------------------------------------------------------------------------- base directory

def make_base_dir(base_dir) -> str:
    """Lay out a --base-directory: model folders, I/O folders and custom_nodes symlinks."""
    base = Path(base_dir).resolve()
    for sub in ("models/diffusion_models", "models/vae", "models/text_encoders", "input", "output",
                "temp", "user/default", "custom_nodes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name, target in ((PACK_LINK_NAME, REPO_ROOT), (TEST_NODES_LINK_NAME, TEST_NODES_DIR)):
        link = base / "custom_nodes" / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return str(base)


def diffusion_models_dir(base_dir) -> str:
    return os.path.join(base_dir, "models", "diffusion_models")


def _load_module_from_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_conditioning_module = None


def conditioning_module():
    """tests/comfy_test_nodes/conditioning.py (make_conditioning, MODEL_KINDS, ...)."""
    global _conditioning_module
    if _conditioning_module is None:
        _conditioning_module = _load_module_from_file("precisecache_test_conditioning",
                                                      TEST_NODES_DIR / "conditioning.py")
    return _conditioning_module


def _read_latent_file(path):
    from safetensors.torch import load_file
    return load_file(path)["latent_tensor"]


def _saved_latent_path(output_dir, outputs_of_node):
    files = outputs_of_node.get("latents") or []
    assert files, f"node output has no saved latents: {outputs_of_node!r}"
    f = files[-1]
    return os.path.join(output_dir, f.get("subfolder", ""), f["filename"])


# --------------------------------------------------------------------------- graphs

def sample_graph(kind, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="simple", cond_seed=1,
                 text_length=8, denoise=1.0, model_chain=(), unet_name=None, latent=None,
                 filename_prefix="latents/precisecache_test"):
    """API-format graph: UNETLoader -> model_chain -> KSampler -> SaveLatent for a tiny model kind.

    model_chain: sequence of (class_type, inputs) whose `model` input is wired to the previous
    model output (ids "10", "11", ...). latent: (class_type, inputs) to replace the kind's default.
    """
    from tiny_models import MODEL_KINDS
    spec = MODEL_KINDS[kind]
    ids = GRAPH_IDS
    g = {ids["loader"]: {"class_type": "UNETLoader",
                         "inputs": {"unet_name": unet_name or spec.filename, "weight_dtype": "default"}}}
    model_ref = [ids["loader"], 0]
    for i, (class_type, inputs) in enumerate(model_chain):
        nid = str(10 + i)
        g[nid] = {"class_type": class_type, "inputs": {**inputs, "model": model_ref}}
        model_ref = [nid, 0]
    latent_class, latent_inputs = latent or spec.empty_latent
    g[ids["latent"]] = {"class_type": latent_class, "inputs": dict(latent_inputs)}
    for role in ("positive", "negative"):
        inputs = {"model_kind": kind, "seed": cond_seed, "length": text_length, "width": 4096, "variant": role}
        if kind in ("wan_i2v", "wan_vace", "wan_camera", "hunyuan_i2v", "hunyuan_skyreels"):
            inputs["latent"] = [ids["latent"], 0]
        g[ids[role]] = {"class_type": "PreciseCacheTestConditioning", "inputs": inputs}
    g[ids["sampler"]] = {"class_type": "KSampler", "inputs": {
        "model": model_ref, "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
        "scheduler": scheduler, "positive": [ids["positive"], 0], "negative": [ids["negative"], 0],
        "latent_image": [ids["latent"], 0], "denoise": denoise}}
    g[ids["save"]] = {"class_type": "SaveLatent",
                      "inputs": {"samples": [ids["sampler"], 0], "filename_prefix": filename_prefix}}
    return g


# --------------------------------------------------------------------------- in-process ComfyUI

class _StubServer:
    """What PromptExecutor needs from PromptServer."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


@dataclass
class RunResult:
    outputs: dict                      # node_id -> ui output (as in /history "outputs")
    messages: list                     # (event, data) messages sent to the (stub) client this run
    executed: set                      # node ids whose function ran this run
    cached: list                       # node ids served from ComfyUI's output cache


@dataclass
class LoadedPack:
    module: object
    node_names: list
    path: str


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


class ComfyInProcess:
    def __init__(self, comfyui_dir, base_dir):
        import torch
        self.dir = str(Path(comfyui_dir).resolve())
        self.base_dir = str(Path(base_dir).resolve())
        # defaults, not pytest's argv; --cpu before comfy.model_management is imported
        comfy_host.import_comfy(self.dir, cpu=True, base_directory=self.base_dir, disable_api_nodes=True)
        import folder_paths
        if os.path.realpath(folder_paths.base_path) != self.base_dir:
            raise RuntimeError(f"folder_paths was imported before the harness set --base-directory "
                               f"({folder_paths.base_path}); import ComfyUI only through the `comfy` fixture")
        import comfy.model_management as mm
        if mm.cpu_state != mm.CPUState.CPU:
            raise RuntimeError("ComfyUI's model_management was imported before --cpu was set")
        import comfy.utils
        import nodes
        import execution
        comfy.utils.set_progress_bar_enabled(False)
        torch.set_num_threads(1)
        self.nodes, self.execution, self.folder_paths = nodes, execution, folder_paths
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self._builtin_names = set(nodes.NODE_CLASS_MAPPINGS)
        test_nodes = os.path.join(self.base_dir, "custom_nodes", TEST_NODES_LINK_NAME)
        ok, log = self._load_custom_node(test_nodes)
        if not ok or "PreciseCacheTestConditioning" not in nodes.NODE_CLASS_MAPPINGS:
            raise RuntimeError(f"test node pack {test_nodes} failed to load:\n{log}")
        self._pack = None
        self._pack_error = None
        self._executor = None

    # -- nodes and packs
    def node(self, class_type):
        return self.nodes.NODE_CLASS_MAPPINGS[class_type]

    def _load_custom_node(self, path):
        capture = _LogCapture()
        root = logging.getLogger()
        root.addHandler(capture)
        try:
            ok = asyncio.run(self.nodes.load_custom_node(path, ignore=set(self._builtin_names),
                                                         module_parent="custom_nodes"))
        finally:
            root.removeHandler(capture)
        return ok, "\n".join(capture.records)

    def load_pack(self) -> LoadedPack:
        """Import the repo root as ComfyUI custom node `PreciseCache` (once); PackLoadError if it fails."""
        if self._pack is not None:
            return self._pack
        if self._pack_error is not None:
            raise PackLoadError(self._pack_error)
        path = os.path.join(self.base_dir, "custom_nodes", PACK_LINK_NAME)
        if not (REPO_ROOT / "__init__.py").is_file():
            self._pack_error = f"the pack has no {REPO_ROOT / '__init__.py'} yet"
            raise PackLoadError(self._pack_error)
        before = set(self.nodes.NODE_CLASS_MAPPINGS)
        ok, log = self._load_custom_node(path)
        if not ok:
            self._pack_error = f"ComfyUI could not load the PreciseCache pack from {path}:\n{log}"
            raise PackLoadError(self._pack_error)
        module = sys.modules.get(path.replace(".", "_x_"))
        self._pack = LoadedPack(module, sorted(set(self.nodes.NODE_CLASS_MAPPINGS) - before), path)
        return self._pack

    # -- models and sampling
    def load_model(self, kind_or_filename):
        from tiny_models import MODEL_KINDS
        spec = MODEL_KINDS.get(kind_or_filename)
        name = spec.filename if spec else kind_or_filename
        return self.nodes.UNETLoader().load_unet(name, "default")[0]

    def conditioning(self, kind, seed=1, variant="positive", length=8, width=4096, latent_shape=None):
        return conditioning_module().make_conditioning(kind, seed=seed, length=length, width=width,
                                                       variant=variant, latent_shape=latent_shape)

    def sample(self, model, kind, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="simple", latent=None,
               positive=None, negative=None, cond_seed=1, denoise=1.0):
        import torch
        from tiny_models import MODEL_KINDS
        if latent is None:
            latent = torch.zeros(MODEL_KINDS[kind].latent_shape)
        shape = tuple(latent.shape)
        if positive is None:
            positive = self.conditioning(kind, cond_seed, "positive", latent_shape=shape)
        if negative is None:
            negative = self.conditioning(kind, cond_seed, "negative", latent_shape=shape)
        out = self.nodes.KSampler().sample(model, seed, steps, cfg, sampler, scheduler, positive, negative,
                                           {"samples": latent}, denoise=denoise)
        return out[0]["samples"]

    # -- the full execution engine, without a server
    def new_executor(self, cache="classic"):
        ct = self.execution.CacheType
        cache_type = {"classic": ct.CLASSIC, "none": ct.NONE, "lru": ct.LRU}[cache]
        return self.execution.PromptExecutor(_StubServer(), cache_type=cache_type,
                                             cache_args={"lru": 8 if cache == "lru" else 0, "ram": 0})

    def run_graph(self, graph, executor=None) -> RunResult:
        if executor is None:
            if self._executor is None:
                self._executor = self.new_executor()
            executor = self._executor
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, graph, None))
        if not valid:
            raise PromptRejected(f"prompt rejected: {json.dumps(error, default=str)}\n"
                                 f"node_errors: {json.dumps(node_errors, default=str, indent=1)}")
        executor.server.messages.clear()
        # a client id makes ComfyUI report each node it actually executes ("executing" events)
        executor.execute(graph, prompt_id, {"client_id": "precisecache-harness"}, outputs)
        msgs = list(executor.server.messages)
        if not executor.success:
            raise PromptFailed(_format_execution_error(msgs))
        executed = {d["node"] for e, d in msgs if e == "executing" and d.get("node") is not None}
        cached = next((list(d.get("nodes", [])) for e, d in msgs if e == "execution_cached"), [])
        return RunResult(executor.history_result["outputs"], msgs, executed, cached)

    def load_saved_latent(self, outputs, node_id=GRAPH_IDS["save"]):
        return _read_latent_file(_saved_latent_path(self.folder_paths.get_output_directory(), outputs[node_id]))


_IN_PROCESS: ComfyInProcess | None = None


def import_comfy(comfyui_dir, base_dir) -> ComfyInProcess:
    """Import ComfyUI into this process once; later calls return the same handle."""
    global _IN_PROCESS
    if _IN_PROCESS is None:
        _IN_PROCESS = ComfyInProcess(comfyui_dir, base_dir)
    elif _IN_PROCESS.base_dir != str(Path(base_dir).resolve()):
        raise RuntimeError("ComfyUI is already imported with another base directory")
    return _IN_PROCESS


def _format_execution_error(messages):
    for event, data in messages:
        if event == "execution_error":
            tb = "".join(data.get("traceback") or [])
            return (f"execution_error in node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}\n{tb[-4000:]}")
        if event == "execution_interrupted":
            return f"execution interrupted: {data}"
    return f"prompt failed without an execution_error message: {messages!r}"


# --------------------------------------------------------------------------- headless server

def _die_with_parent():
    """In the server's child process: get SIGTERM when pytest dies, even if it is killed outright."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ComfyServer:
    def __init__(self, comfyui_dir, base_dir, log_path, extra_args=(), python=None):
        self.dir = str(comfyui_dir)
        self.base_dir = str(base_dir)
        self.log_path = str(log_path)
        self.port = comfy_host.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [python or sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                    "--disable-auto-launch", "--base-directory", self.base_dir, "--disable-api-nodes",
                    "--dont-print-server", "--database-url", "sqlite:///:memory:", *extra_args]
        self.proc = None
        self.client_id = str(uuid.uuid4())

    # -- lifecycle
    def start(self, timeout=90.0):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI server exited with code {self.proc.returncode} during start-up.\n"
                                   f"--- {self.log_path} (tail) ---\n{self.log_tail()}")
            try:
                self.get_json("/object_info", timeout=10)
                return self
            except (OSError, ValueError) as e:  # requests' errors are OSErrors
                last_error = e
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI server not ready after {timeout:.0f} s ({last_error!r}).\n"
                           f"--- {self.log_path} (tail) ---\n{self.log_tail()}")

    def stop(self, timeout=10.0):
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=80) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def log_size(self) -> int:
        """The log's length in bytes now: a mark for ``wait_for_log``."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, mark: int) -> str:
        """The log's text from byte ``mark`` (a ``log_size()``) on."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern, since=0, timeout=60.0, until=None) -> str:
        """Wait until the log, from byte ``since`` on, matches the regex ``pattern``; the match.
        ``until()`` returning True first (e.g. the prompt already ended) fails the wait."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            found = regex.search(self.log_since(since))
            if found:
                return found.group(0)
            if until is not None and until():
                raise AssertionError(f"the server log never showed {pattern!r} before it was too late\n"
                                     f"--- server log tail ---\n{self.log_tail(30)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server log did not show {pattern!r} within {timeout:.0f} s\n"
                                   f"--- server log tail ---\n{self.log_tail(30)}")
            time.sleep(0.02)

    def _check_alive(self):
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"ComfyUI server is not running (exit code {code}).\n"
                               f"--- {self.log_path} (tail) ---\n{self.log_tail()}")

    # -- HTTP
    def request(self, method, path, payload=None, params=None, timeout=30.0):
        """The server's response, whatever its status; ``payload`` goes out as json.dumps writes it
        (NaN as JSON's NaN literal)."""
        import requests  # a test dependency; see the module docstring
        data = None if payload is None else json.dumps(payload).encode()
        return requests.request(method, self.url + path, data=data, params=params, timeout=timeout,
                                headers={"Content-Type": "application/json"} if data else {})

    def get(self, path, params=None, timeout=30.0):
        response = self.request("GET", path, params=params, timeout=timeout)
        response.raise_for_status()
        return response

    def _json(self, method, path, payload=None, timeout=30.0):
        response = self.request(method, path, payload, timeout=timeout)
        response.raise_for_status()
        return json.loads(response.content) if response.content.strip() else None

    def get_json(self, path, timeout=30.0):
        return self._json("GET", path, timeout=timeout)

    def post_json(self, path, payload, timeout=30.0):
        return self._json("POST", path, payload, timeout=timeout)

    def object_info(self, node_class=None):
        return self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))

    def post_prompt(self, graph, client_id=None, extra_data=None) -> str:
        self._check_alive()
        payload = {"prompt": graph, "client_id": client_id or self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        response = self.request("POST", "/prompt", payload)
        if not response.ok:
            body = response.content.decode("utf-8", "replace")
            try:
                parsed = json.loads(body)
                body = (f"error: {json.dumps(parsed.get('error'), indent=1)}\n"
                        f"node_errors: {json.dumps(parsed.get('node_errors'), indent=1)}")
            except ValueError:
                pass
            raise PromptRejected(f"POST /prompt -> HTTP {response.status_code}\n{body}")
        return json.loads(response.content)["prompt_id"]

    def wait_history(self, prompt_id, timeout=60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error" or status.get("completed") is False:
                    raise PromptFailed(_format_execution_error(status.get("messages") or []) +
                                       f"\n--- server log tail ---\n{self.log_tail(30)}")
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s; queue: "
                                   f"{self.get_json('/queue')}\n--- server log tail ---\n{self.log_tail(30)}")
            time.sleep(0.1)

    def run_prompt(self, graph, timeout=60.0) -> dict:
        return self.wait_history(self.post_prompt(graph), timeout=timeout)

    def free(self, unload_models=True, free_memory=True):
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def load_saved_latent(self, entry, node_id=GRAPH_IDS["save"]):
        return _read_latent_file(_saved_latent_path(os.path.join(self.base_dir, "output"),
                                                    entry["outputs"][node_id]))
