"""Sampling through the real ComfyUI path: ``Bench`` (ComfyUI imported in-process with the test harness,
the pack loaded as ComfyUI loads a custom node, the model, the measurement hooks) and ``run_scenario``
(every method of a scenario on every pair, interleaved; one ``RunRecord`` a run).

The model (``--model``, default ``models/precisecache_demo_wan.safetensors``, a tiny Wan 2.1 trained on
procedural clips) is copied into the harness's base directory at start, as training may still be
rewriting it, and loaded with ``UNETLoader``; without it a random-weight tiny Wan
(``tests/host/tiny_models.py``) stands in, with a warning. Every run samples with ``nodes.KSampler``
(euler, "simple") from an empty latent; conditions come from the demo vocabulary
(``precisecache_demo.conditioning``), outputs are decoded with the demo's stand-in VAE.

Counts: our RunReport's full / trial forwards and blocks, checked on every run against independent
forward hooks (``tests/host/cache_helpers.count_work``); for EasyCache and LazyCache the hooks alone.

EasyCache fairness: ComfyUI 0.8.0's EasyCache adds its cached residual *in place* into the tensor
the diffusion model received; on CPU fp32 that is the very tensor ``apply_model`` later uses as
``model_input`` to form the denoised estimate, so skipped steps corrupt the trajectory.
"EasyCache (copy-fixed)" adds, through the public wrapper API, a DIFFUSION_MODEL wrapper
registered *before* EasyCache's (so it runs outside it) that hands EasyCache a clone of
``args[0]`` (``copy_input_wrapper``). Every run has an APPLY_MODEL guard that snapshots the input and
counts calls whose input was modified: the copy-fixed runs must show 0, the as-shipped runs
(reported for reference only) show the corruption.

Timing: methods run in rotating order, one round a (pair, repeat); wall and CPU time per run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import HOST_DIR, REPO
from .methods import PEER_WINDOW, Method, build_methods
from .scenarios import ScenarioConfig, pairs_for

MODEL_COPY_NAME = "precisecache_bench_model.safetensors"


# =========================================================================== ComfyUI context
class Bench:
    """ComfyUI imported in-process, our pack, the model, and the measurement hooks."""

    def __init__(self, comfyui_dir: str, model_path: Path | None, threads: int, log=print):
        import torch
        torch.set_num_threads(threads)
        for p in (str(REPO), str(HOST_DIR)):
            if p not in sys.path:
                sys.path.insert(0, p)
        import harness
        self.log = log
        self.base_dir = harness.make_base_dir(tempfile.mkdtemp(prefix="precisecache_bench_"))
        t0 = time.perf_counter()
        self.comfy = harness.import_comfy(comfyui_dir, self.base_dir)
        torch.set_num_threads(threads)
        self.pack = self.comfy.load_pack()
        self.import_seconds = time.perf_counter() - t0
        import cache_helpers
        import comfy.latent_formats
        import comfy.patcher_extension
        self.cache_helpers = cache_helpers
        self.wrappers = comfy.patcher_extension.WrappersMP
        self.latent_format = comfy.latent_formats.Wan21()
        self.hooks = cache_helpers.pack_module(self.pack, "nodes.hooks")
        self.config_mod = cache_helpers.pack_module(self.pack, "precisecache_core.config")
        self.policy_mod = cache_helpers.pack_module(self.pack, "precisecache_core.step_policy")
        self.lowpass_mod = cache_helpers.pack_module(self.pack, "precisecache_core.lowpass")
        self.trial_mod = cache_helpers.pack_module(self.pack, "precisecache_core.trial")
        self.trial_inputs_mod = cache_helpers.pack_module(self.pack, "precisecache_core.trial_inputs")
        self.families_mod = cache_helpers.pack_module(self.pack, "precisecache_core.families")
        models_dir = harness.diffusion_models_dir(self.base_dir)
        self.model_info = self._install_model(model_path, models_dir)
        base = self.comfy.load_model(self.model_info["file_name"])
        self.blocks_per_forward = len(base.model.diffusion_model.blocks)
        # every run goes through this guard (APPLY_MODEL, outermost): it counts calls whose input
        # tensor was modified by the time apply_model returned
        self.guard_calls = 0
        self.guard_mutations = 0
        self.model = base.clone()
        self.model.add_wrapper_with_key(self.wrappers.APPLY_MODEL, "precisecache_bench_guard", self._guard_wrapper)
        self.counter = cache_helpers.count_work(base)
        self.easy_bytes: list[int] = []
        self.last_cpu_seconds = 0.0

    # -- model
    def _install_model(self, model_path: Path | None, models_dir: str) -> dict:
        if model_path is not None and Path(model_path).is_file():
            dest = os.path.join(models_dir, MODEL_COPY_NAME)
            shutil.copyfile(model_path, dest)  # snapshot: training may rewrite the original
            from safetensors import safe_open
            with safe_open(dest, "pt") as f:
                meta = f.metadata() or {}
            training = {}
            if "precisecache_demo" in meta:
                try:
                    training = json.loads(meta["precisecache_demo"])
                    training.pop("conditions", None)
                except ValueError:
                    training = {}
            import hashlib
            sha = hashlib.sha256(Path(dest).read_bytes()).hexdigest()
            try:
                source = str(Path(model_path).resolve().relative_to(REPO))
            except ValueError:
                source = str(model_path)
            return {"file_name": MODEL_COPY_NAME, "source": source, "sha256": sha, "bytes": os.path.getsize(dest),
                    "trained": True, "training": training,
                    "mtime": _dt.datetime.fromtimestamp(os.path.getmtime(model_path)).isoformat(timespec="seconds")}
        import tiny_models
        name = tiny_models.write_tiny_model("wan", models_dir, seed=0)
        self.log("WARNING: demo model not found; using a RANDOM-WEIGHT tiny Wan: fidelity numbers mean nothing")
        return {"file_name": name, "source": "tests/host/tiny_models.py (random weights, seed 0)",
                "bytes": os.path.getsize(os.path.join(models_dir, name)), "trained": False, "training": {}}

    def _guard_wrapper(self, executor, *args, **kwargs):
        x = args[0]
        before = x.detach().clone()
        out = executor(*args, **kwargs)
        self.guard_calls += 1
        if not __import__("torch").equal(before, x):
            self.guard_mutations += 1
        return out

    # -- building a method's model
    def build(self, method: Method):
        m = self.model
        if method.kind == "uncached":
            return m
        if method.kind == "precisecache":
            lf = self.config_mod.LFCacheConfig(**method.lf).validate() if method.lf else None
            block = self.config_mod.BlockCacheConfig(**method.block).validate() if method.block else None
            return self.hooks.apply_setup(m, lf=lf, block=block)
        if method.kind in ("easycache", "lazycache"):
            if method.copy_fix:
                m = m.clone()
                # registered first => outermost of the DIFFUSION_MODEL wrappers, outside EasyCache's
                m.add_wrapper_with_key(self.wrappers.DIFFUSION_MODEL, "precisecache_bench_copy_input",
                                       copy_input_wrapper)
            node = self.comfy.node("EasyCache" if method.kind == "easycache" else "LazyCache")
            start, end = PEER_WINDOW
            out = node.execute(m, reuse_threshold=method.threshold, start_percent=start, end_percent=end,
                               verbose=False).args[0]
            # inner OUTER_SAMPLE wrapper (registered after theirs): measures the cache they hold
            out.add_wrapper_with_key(self.wrappers.OUTER_SAMPLE, "precisecache_bench_memory", self._easy_memory_wrapper)
            return out
        raise ValueError(method.kind)

    def wrapper_order(self, model) -> list[str]:
        """Keys of the DIFFUSION_MODEL wrappers in call order (outermost first): ComfyUI merges the
        patcher's wrappers into transformer_options in this order and runs wrappers[0] first."""
        return list(model.wrappers.get(self.wrappers.DIFFUSION_MODEL, {}).keys())

    def _easy_memory_wrapper(self, executor, *args, **kwargs):
        result = executor(*args, **kwargs)
        holder = executor.class_obj.model_options["transformer_options"].get("easycache")
        self.easy_bytes.append(held_tensor_bytes(holder))
        return result

    @contextlib.contextmanager
    def variant(self, name: str | None):
        """Prototype variants, patched into the pack's modules for one run only."""
        if not name:
            yield
            return
        if name.startswith("dmax_first"):
            k = int(name[len("dmax_first"):])
            original = self.policy_mod.StepDecider
            self.policy_mod.StepDecider = first_k_decider(original, k)
            try:
                yield
            finally:
                self.policy_mod.StepDecider = original
        elif name == "avg_pool":  # a config choice (LFCacheConfig.trial_operator): nothing to patch
            yield
        else:
            raise ValueError(name)

    # -- one sampling run
    def sample(self, model, seed: int, condition: str, cfg: ScenarioConfig):
        import torch
        from precisecache_demo import conditioning
        pos = [[conditioning.embed(condition), {}]]
        neg = [[conditioning.negative(), {}]]
        latent = {"samples": torch.zeros(cfg.latent_shape)}
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = self.comfy.nodes.KSampler().sample(model, seed, cfg.steps, cfg.cfg, "euler", "simple", pos, neg,
                                                 latent, denoise=1.0)[0]["samples"]
        self.last_cpu_seconds = time.process_time() - c0
        return out, time.perf_counter() - t0

    def latest_report(self, model):
        """The run report of ``model``'s latest sampling run (a PreciseCache method's model)."""
        return self.cache_helpers.latest_report(self.pack, model)

    def decode(self, latent):
        from precisecache_demo import latent_map
        return latent_map.decode(self.latent_format.process_in(latent.float()))


def copy_input_wrapper(executor, *args, **kwargs):
    """DIFFUSION_MODEL wrapper: the wrappers inside it get a copy of the input latent, so an in-place
    write by them (EasyCache's ``x += cached diff``) cannot reach apply_model's input."""
    return executor(args[0].clone(), *args[1:], **kwargs)


def held_tensor_bytes(obj) -> int:
    """Bytes of the distinct tensor storages an object's attributes hold (dicts/lists followed)."""
    import torch
    seen = {}

    def visit(v, depth=0):
        if depth > 3:
            return
        if isinstance(v, torch.Tensor):
            s = v.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        elif isinstance(v, dict):
            for x in v.values():
                visit(x, depth + 1)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x, depth + 1)

    if obj is not None:
        for v in vars(obj).values():
            visit(v)
    return int(sum(seen.values()))


def first_k_decider(base, k: int):
    """StepDecider whose Δ_max is the max over the first ``k`` Δ's only (then frozen)."""

    class FirstKStepDecider(base):
        def updated_max(self, delta):
            seen = sum(1 for h in self.history if not math.isnan(h))  # Δ's so far, this one included
            return max(self.running_max, delta) if seen <= k else self.running_max

    FirstKStepDecider.__name__ = f"FirstK{k}StepDecider"
    return FirstKStepDecider


# =========================================================================== one scenario
@dataclass
class RunRecord:
    method: str
    pair: int
    repeat: int
    round: int
    seconds: float
    cpu_seconds: float = 0.0
    full_forwards: int = 0
    trial_forwards: int = 0
    reused_forwards: int = 0
    blocks_computed: int = 0
    blocks_reused: int = 0
    skipped_steps: int = 0
    token_ratio: float = 0.0
    cache_bytes: int = 0
    hook_full: int = 0
    hook_trial: int = 0
    hook_blocks: int = 0
    count_check: str = "n/a"
    input_mutations: int = 0
    model_calls: int = 0
    report_speedup: float | None = None
    trial_work: float | None = None
    """Trial work in full-call units as the run report counts it (batch share × token ratio)."""
    stepped_aside: bool = False
    """LFCache stepped aside in this run (its trial would have made the run slower than uncached)."""
    skipped_step_indices: list = dataclasses.field(default_factory=list)

    def cost(self, blocks_per_forward: int) -> float:
        """Counted work of this run, in full forwards."""
        trial = self.trial_work or 0.0  # the run report's trial work (None: a peer's run, no trial)
        return self.full_forwards + trial - self.blocks_reused / blocks_per_forward


@dataclass
class ScenarioRuns:
    """Everything one scenario's runs produced, for ``metrics.summarize``."""
    cfg: ScenarioConfig
    methods: list
    pairs: list
    records: list
    outputs: dict
    """(method name, pair index) → the sampled latent (repeat 0)."""
    order_check: dict
    """EasyCache method name → its DIFFUSION_MODEL wrapper keys, outermost first."""
    determinism_failures: list
    sampling_seconds: float


def run_scenario(bench: Bench, cfg: ScenarioConfig, log=print) -> ScenarioRuns:
    """Every method of ``cfg`` on every pair, ``cfg.repeats`` times, in rotating order (after a warm-up);
    a repeat's output must equal the first one's (else a determinism failure)."""
    import torch
    methods = build_methods(cfg)
    models = {m.name: bench.build(m) for m in methods}
    order_check = {}
    for m in methods:
        if m.kind == "easycache":
            order_check[m.name] = bench.wrapper_order(models[m.name])
    pairs = pairs_for(cfg.pairs)
    log(f"[{cfg.name}] latent {cfg.latent_shape}, {cfg.steps} steps, cfg {cfg.cfg}, {len(pairs)} pairs x "
        f"{cfg.repeats} repeats, {len(methods)} methods = {len(pairs) * cfg.repeats * len(methods)} runs")
    # warm-up (not recorded): first calls of a fresh process are slower
    for name in ("uncached", next((m.name for m in methods if m.kind == "precisecache"), "uncached")):
        with bench.variant(None):
            bench.sample(models[name], pairs[0][0], pairs[0][1], cfg)

    outputs: dict[tuple[str, int], Any] = {}
    records: list[RunRecord] = []
    determinism_failures = []
    rnd = 0
    t_start = time.perf_counter()
    for rep in range(cfg.repeats):
        for pi, (seed, cond) in enumerate(pairs):
            shift = rnd % len(methods)
            order = methods[shift:] + methods[:shift]
            for m in order:
                model = models[m.name]
                bench.counter.entry_sizes.clear()
                bench.counter.block_sizes.clear()
                bench.guard_calls = bench.guard_mutations = 0
                bench.easy_bytes.clear()
                with bench.variant(m.variant):
                    out, secs = bench.sample(model, seed, cond, cfg)
                rec = RunRecord(m.name, pi, rep, rnd, secs, bench.last_cpu_seconds, input_mutations=bench.guard_mutations,
                                model_calls=bench.guard_calls)
                c = bench.counter
                rec.hook_full, rec.hook_trial, rec.hook_blocks = c.full_forwards(), c.trial_forwards(), c.full_block_calls()
                if m.kind == "precisecache":
                    rep_ = bench.latest_report(model)
                    rec.full_forwards, rec.trial_forwards = rep_.full_forwards, rep_.trial_forwards
                    rec.reused_forwards = rep_.reused_forwards
                    rec.blocks_reused = rep_.blocks_reused
                    rec.blocks_computed = rep_.blocks_computed if m.block else rep_.full_forwards * bench.blocks_per_forward
                    rec.skipped_steps = len(rep_.skipped_steps)
                    rec.token_ratio = rep_.trial_token_ratio
                    rec.cache_bytes = rep_.cache_bytes_peak
                    rec.report_speedup = rep_.estimated_speedup
                    rec.trial_work = rep_.trial_work
                    rec.stepped_aside = any("stepped aside" in note for note in rep_.notes)
                    rec.skipped_step_indices = list(rep_.skipped_steps)
                    ok = (rec.hook_full == rec.full_forwards and rec.hook_trial == rec.trial_forwards
                          and rec.hook_blocks == rec.blocks_computed)
                    rec.count_check = "ok" if ok else (f"MISMATCH report full/trial/blocks {rec.full_forwards}/"
                                                       f"{rec.trial_forwards}/{rec.blocks_computed} vs hooks "
                                                       f"{rec.hook_full}/{rec.hook_trial}/{rec.hook_blocks}")
                else:
                    rec.full_forwards, rec.trial_forwards = rec.hook_full, rec.hook_trial
                    rec.blocks_computed = rec.hook_blocks
                    rec.count_check = "hooks only"
                    if m.kind != "uncached":
                        rec.cache_bytes = max(bench.easy_bytes, default=0)
                        rec.skipped_steps = cfg.steps - rec.full_forwards
                records.append(rec)
                key = (m.name, pi)
                if key in outputs:
                    if not torch.equal(outputs[key], out):
                        determinism_failures.append(f"{m.name} pair {pi}")
                else:
                    outputs[key] = out
            rnd += 1
            done = rnd / (cfg.repeats * len(pairs))
            el = time.perf_counter() - t_start
            log(f"[{cfg.name}] round {rnd}/{cfg.repeats * len(pairs)} done, {el:.0f} s elapsed, "
                f"~{el / done - el:.0f} s left")
    return ScenarioRuns(cfg, methods, pairs, records, outputs, order_check, determinism_failures,
                        time.perf_counter() - t_start)


