#!/usr/bin/env python3
"""PreciseCache benchmark: speed and fidelity of every cache against the uncached run, through the
real ComfyUI sampling path, in one process.

What it does
------------
ComfyUI (COMFYUI_DIR, ../ComfyUI or /opt/ComfyUI) is imported in-process with the test harness
(``tests/host/harness.py``), our pack is loaded the way ComfyUI loads a custom node, and the demo
model (``models/precisecache_demo_wan.safetensors``, a tiny Wan 2.1 trained on procedural clips;
a snapshot is copied at start because training may still be rewriting it) is loaded with
``UNETLoader``. Every method samples the same ``(seed, condition)`` pairs with ``nodes.KSampler``
(euler, "simple", 50 steps, CFG 5 by default) from an empty latent; conditions come from the demo
vocabulary (``precisecache_demo.conditioning``), outputs are decoded with the demo's stand-in VAE.

Methods: uncached; LFCache α sweep (Base α 0.5, Turbo α 0.7 among them); BlockCache alone;
Flash (LFCache + BlockCache) α sweep; ComfyUI's EasyCache and LazyCache (their nodes' ``execute``)
with a threshold sweep; and the variants that settle the paper's open points:

  (a) ``reuse='residual'`` vs ``'output'`` on skipped steps           (LFCacheConfig.reuse)
  (b) BlockCache ranking ``'l2'`` vs ``'relative_l2'``                   (BlockCacheConfig.ranking)
  (c) Δ̃_max = max over the first k steps instead of the running max   (StepDecider subclass,
      patched into the pack's ``precisecache_core.run`` for those runs only)
  (d) average pooling instead of the default strided subsampling for the trial (LFCacheConfig.
      trial_operator; measured, as the default was chosen by this benchmark)
  (e) Flash's α                                                          (Flash α sweep)

EasyCache fairness: ComfyUI 0.8.0's EasyCache adds its cached residual *in place* into the tensor
the diffusion model received; on CPU fp32 that is the very tensor ``apply_model`` later uses as
``model_input`` to form the denoised estimate, so skipped steps corrupt the trajectory.
"EasyCache (copy-fixed)" adds, through the public wrapper API, a DIFFUSION_MODEL wrapper
registered *before* EasyCache's (so it runs outside it) that hands EasyCache a clone of
``args[0]``. Every run has an APPLY_MODEL guard that snapshots the input and counts calls whose
input was modified: the copy-fixed runs must show 0, the as-shipped runs (reported for reference
only) show the corruption.

Per method and pair: full / trial forwards and blocks computed / reused (our RunReport, checked
against independent forward hooks ``tests/host/cache_helpers.count_work`` on every run), wall
time (methods interleaved in rotating order, ratio to the uncached run of the same round, median
over rounds), counted ("ideal") speedup = uncached forwards ÷ (full + trial × token ratio −
reused blocks ÷ blocks per forward), realized ÷ ideal, PSNR and SSIM (torchmetrics) of the decoded
frames against the uncached output, and cache memory. Plus the trial + metric overhead as a share
of a full forward, measured inside the sampling path at several latent sizes.

Output (``--out``, default ``bench_out/``; ``--publish`` writes ``docs/benchmark/``):
``results.json``, ``results.md`` (tables), ``speedup_vs_psnr.png`` (Pareto curves per method
family), ``open_points.png``.

Examples
--------
  python3 scripts/benchmark.py                 # full run (~20 min on 2 shared CPU cores)
  python3 scripts/benchmark.py --smoke         # tiny run (< 1 min), what the test suite runs
  python3 scripts/benchmark.py --publish       # full run, results into docs/benchmark/
  python3 scripts/benchmark.py --scenarios main --methods uncached,lf_a0.5,easy_fixed_t0.2
  python3 scripts/benchmark.py --model deep    # the 12-block model, at its training length (17 frames)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST_DIR = REPO / "tests" / "host"
DEFAULT_MODEL = REPO / "models" / "precisecache_demo_wan.safetensors"
# --model shortcuts: the demo model (4 blocks, 9 frames) and the deep benchmark model (12 blocks,
# trained at 17 frames; README "The deep benchmark model")
MODEL_SHORTCUTS = {"demo": DEFAULT_MODEL, "deep": REPO / "models" / "precisecache_deep_wan.safetensors"}
MODEL_COPY_NAME = "precisecache_bench_model.safetensors"
RANDOM_MODEL_NAME = "tiny_wan21_t2v.safetensors"

# demo vocabulary indices used for the pairs, spread over shapes, motions, backgrounds, camera pans
PAIR_CONDITIONS = (0, 2, 4, 6, 7, 8, 9, 11, 1, 3, 5, 10)

FLASH_TARGET_FAMILIES = ("PreciseCache Flash (target, static)", "PreciseCache Flash (target, trial-guided)")
MAIN_FAMILIES = (*FLASH_TARGET_FAMILIES, "PreciseCache target", "PreciseCache LFCache", "PreciseCache Flash",
                 "PreciseCache BlockCache",
                 "EasyCache (copy-fixed)", "LazyCache", "EasyCache (as shipped)")
PRECISECACHE_FAMILIES = (*FLASH_TARGET_FAMILIES, "PreciseCache target", "PreciseCache LFCache", "PreciseCache Flash",
                         "PreciseCache BlockCache")
FIDELITY_LEVELS = (25.0, 27.5, 30.0, 32.5, 35.0, 37.5, 40.0, 42.5)


# =========================================================================== methods
@dataclass
class Method:
    name: str
    label: str
    family: str
    kind: str                       # uncached | precisecache | easycache | lazycache
    groups: tuple = ("main",)
    lf: dict | None = None          # LFCacheConfig fields
    block: dict | None = None       # BlockCacheConfig fields
    variant: str | None = None      # in-process prototype: "dmax_first<k>" | "avg_pool" (a config choice)
    threshold: float | None = None  # EasyCache / LazyCache reuse_threshold
    copy_fix: bool = False          # EasyCache: protect the input with an outer cloning wrapper

    def params(self) -> dict:
        out = {}
        if self.lf is not None:
            out["lf"] = self.lf
        if self.block is not None:
            out["block"] = self.block
        if self.variant:
            out["variant"] = self.variant
        if self.threshold is not None:
            out["reuse_threshold"] = self.threshold
            out["start_percent"], out["end_percent"] = 0.15, 0.95
            out["copy_fix"] = self.copy_fix
        return out


def _fmt(v: float) -> str:
    return f"{v:g}"


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


FLASH_BLOCK = {"pivotal_ratio": 0.4, "refresh_interval": 3}
PRESET_NAMES = {0.5: "paper's Base", 0.7: "paper's Turbo"}


def _target_preset_names() -> dict:
    """speed target → preset name, from the pack's own presets (pure-torch core, imported as a package)."""
    sys.path.insert(0, str(REPO))
    from precisecache_core.config import LFCACHE_PRESETS
    return {config.speed_target: name for name, config in LFCACHE_PRESETS.items()}


TARGET_PRESET_NAMES = _target_preset_names()


def lf_method(alpha, reuse="output", variant=None, groups=("main",), family="PreciseCache LFCache", tag=""):
    preset = PRESET_NAMES.get(alpha)
    label = f"LFCache α={_fmt(alpha)}" + (f" ({preset})" if preset and not tag else "") + tag
    name = f"lf_a{_fmt(alpha)}" + ("" if reuse == "output" else f"_{reuse}") + (f"_{variant}" if variant else "")
    return Method(name, label, family, "precisecache", groups, lf={"alpha": alpha, "reuse": reuse,
                  "trial_operator": "avg_pool" if variant == "avg_pool" else "strided"}, variant=variant)


def target_method(target, metric="accumulated", streams="cond", groups=("main",), family=None):
    preset = TARGET_PRESET_NAMES.get(target) if (metric, streams) == ("accumulated", "cond") else None
    variant = [v for v in (metric if metric != "accumulated" else "", "all-stream trial" if streams == "all" else "") if v]
    name = f"target_{_fmt(target)}" + "".join(f"_{v.split()[0].split('-')[0]}" for v in variant)
    label = f"LFCache target {_fmt(target)}x" + "".join(f", {v}" for v in variant) + (f" ({preset})" if preset else "")
    return Method(name, label, family or "PreciseCache target" + (f" ({', '.join(variant)})" if variant else ""),
                  "precisecache", groups, lf={"speed_target": target, "metric": metric, "trial_streams": streams})


def flash_method(alpha, ranking="relative_l2", groups=("main",), family="PreciseCache Flash"):
    tag = " (Flash preset)" if alpha == 0.5 and ranking == "relative_l2" else ""
    rank = "" if ranking == "relative_l2" else f", ranking={ranking}"
    name = f"flash_a{_fmt(alpha)}" + ("" if ranking == "relative_l2" else f"_{ranking}")
    return Method(name, f"Flash α={_fmt(alpha)}{rank}{tag}", family, "precisecache", groups,
                  lf={"alpha": alpha}, block={**FLASH_BLOCK, "ranking": ranking})


def flash_target_method(target, pivotal=0.4, interval=3, threshold=None, groups=("main",)):
    """LFCache speed target + BlockCache, static (the paper's top-c % / L) or trial-guided (``threshold`` τ)."""
    guided = threshold is not None
    name = f"flash_t{_fmt(target)}" + (f"_tg{_fmt(threshold)}" if guided else "") + f"_c{_fmt(pivotal)}_L{interval}"
    rule = f"trial-guided τ={_fmt(threshold)}" if guided else "static"
    block = {"pivotal_ratio": pivotal, "refresh_interval": interval, "mode": "trial_guided" if guided else "static",
             **({"change_threshold": threshold} if guided else {})}
    return Method(name, f"Flash target {_fmt(target)}x + BlockCache {rule} c={_fmt(pivotal)} L={interval}",
                  FLASH_TARGET_FAMILIES[guided], "precisecache", groups, lf={"speed_target": target}, block=block)


def _flash_specs(text: str) -> tuple:
    """'2:0.4:3,2:0.1:0:20' → ((2.0, 0.4, 3), (2.0, 0.1, 0.0, 20)): target:c:L (static) or target:τ:c:L."""
    specs = []
    for item in (t for t in text.split(",") if t.strip()):
        v = [float(x) for x in item.split(":")]
        specs.append((*v[:-1], int(v[-1])))
    return tuple(specs)


def block_method(ranking="relative_l2", pivotal=0.4, interval=3, groups=("main",), family="PreciseCache BlockCache"):
    name = f"block_c{_fmt(pivotal)}_L{interval}" + ("" if ranking == "relative_l2" else f"_{ranking}")
    rank = "" if ranking == "relative_l2" else f", ranking={ranking}"
    return Method(name, f"BlockCache c={_fmt(pivotal)} L={interval}{rank}", family, "precisecache", groups,
                  block={"pivotal_ratio": pivotal, "refresh_interval": interval, "ranking": ranking})


def easy_method(threshold, copy_fix=True, groups=("main",)):
    if copy_fix:
        return Method(f"easy_fixed_t{_fmt(threshold)}", f"EasyCache t={_fmt(threshold)} (copy-fixed)",
                      "EasyCache (copy-fixed)", "easycache", groups, threshold=threshold, copy_fix=True)
    return Method(f"easy_shipped_t{_fmt(threshold)}", f"EasyCache t={_fmt(threshold)} (as shipped, reference)",
                  "EasyCache (as shipped)", "easycache", groups, threshold=threshold, copy_fix=False)


def lazy_method(threshold, groups=("main",)):
    return Method(f"lazy_t{_fmt(threshold)}", f"LazyCache t={_fmt(threshold)}", "LazyCache", "lazycache", groups,
                  threshold=threshold)


def build_methods(cfg: "ScenarioConfig") -> list[Method]:
    methods = [Method("uncached", "uncached", "uncached", "uncached")]
    methods += [lf_method(a) for a in cfg.alphas]
    methods += [target_method(t) for t in cfg.targets]
    methods += [target_method(t, metric="drift", groups=("drift",)) for t in cfg.drift_targets]
    methods += [target_method(t, streams="all", groups=("streams",)) for t in cfg.all_stream_targets]
    methods += [block_method(pivotal=c, interval=L) for c, L in cfg.blocks]
    methods += [flash_method(a, groups=("main", "open_e")) for a in cfg.flash_alphas]
    methods += [flash_target_method(t, c, L) for t, c, L in cfg.flash_targets]
    methods += [flash_target_method(t, c, L, threshold=tau) for t, tau, c, L in cfg.guided]
    methods += [easy_method(t) for t in cfg.easy_thresholds]
    methods += [lazy_method(t) for t in cfg.lazy_thresholds]
    methods += [easy_method(t, copy_fix=False, groups=("reference",)) for t in cfg.easy_shipped_thresholds]
    if not cfg.open_points:  # only the trial operator (open point d), where asked for
        methods += [lf_method(a, variant="avg_pool", groups=("open_d",), family="LFCache avg-pool trial",
                              tag=", avg-pool trial") for a in cfg.avg_pool_alphas]
    if cfg.open_points:
        oa = cfg.open_alphas
        methods += [lf_method(a, reuse="residual", groups=("open_a",), family="LFCache reuse=residual",
                              tag=", reuse=residual") for a in oa]
        methods += [block_method(ranking="l2", pivotal=c, interval=L, groups=("open_b",),
                                 family="BlockCache ranking=l2") for c, L in cfg.blocks]
        if 0.5 in cfg.flash_alphas:
            methods += [flash_method(0.5, ranking="l2", groups=("open_b",), family="Flash ranking=l2")]
        k = cfg.dmax_first_k
        methods += [lf_method(a, variant=f"dmax_first{k}", groups=("open_c",), family=f"LFCache Δmax=max(first {k})",
                              tag=f", Δmax=max(first {k})") for a in oa]
        methods += [lf_method(a, variant="avg_pool", groups=("open_d",), family="LFCache avg-pool trial",
                              tag=", avg-pool trial") for a in cfg.avg_pool_alphas]
        methods += [Method(f"flash_a{_fmt(a)}_L1", f"Flash α={_fmt(a)}, BlockCache L=1", "Flash c=0.4 L=1",
                           "precisecache", ("open_e",), lf={"alpha": a},
                           block={"pivotal_ratio": 0.4, "refresh_interval": 1, "ranking": "relative_l2"})
                    for a in cfg.flash_l1_alphas]
    seen = set()
    unique = []
    for m in methods:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    if cfg.only:
        keep = set(cfg.only) | {"uncached"}
        unknown = set(cfg.only) - {m.name for m in unique}
        if unknown:
            raise SystemExit(f"unknown method(s) {sorted(unknown)}; known: {[m.name for m in unique]}")
        unique = [m for m in unique if m.name in keep]
    return unique


# =========================================================================== configuration
@dataclass
class ScenarioConfig:
    name: str
    size: int = 128
    frames: int = 9
    steps: int = 50
    cfg: float = 5.0
    pairs: int = 8
    repeats: int = 2
    alphas: tuple = (0.2, 0.3, 0.5, 0.7, 1.0, 1.25, 1.5, 2.0)
    targets: tuple = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
    drift_targets: tuple = (2.0, 3.0)
    all_stream_targets: tuple = (2.0, 3.0)
    flash_alphas: tuple = (0.3, 0.5, 0.7, 1.0)
    flash_targets: tuple = ((2.0, 0.4, 3),)
    """Static Flash on a speed target: (target, c, L)."""
    guided: tuple = ((2.0, 0.02, 0.0, 3),)
    """Trial-guided Flash: (target, τ, c, L)."""
    blocks: tuple = ((0.4, 3), (0.6, 3), (0.4, 1))
    easy_thresholds: tuple = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    lazy_thresholds: tuple = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    easy_shipped_thresholds: tuple = (0.1, 0.2)
    open_points: bool = True
    open_alphas: tuple = (0.5, 0.7, 1.0)
    dmax_first_k: int = 5
    avg_pool_alphas: tuple = (0.5, 0.7, 1.0, 1.5, 2.0)
    flash_l1_alphas: tuple = (0.5, 0.7)
    trial_agreement: bool = True
    only: tuple = ()

    @property
    def latent_shape(self) -> tuple:
        return (1, 16, 1 + (self.frames - 1) // 4, self.size // 8, self.size // 8)


def scenario_configs(args) -> list[ScenarioConfig]:
    only = tuple(s for s in (args.methods or "").split(",") if s)
    if args.smoke:
        return [ScenarioConfig("main", size=64, frames=args.frames or 9, steps=12, cfg=args.cfg, pairs=2, repeats=1,
                               alphas=(0.5, 1.5), targets=(2.0,), drift_targets=(), all_stream_targets=(), flash_alphas=(0.5,), blocks=((0.4, 3),), easy_thresholds=(0.2,),
                               flash_targets=(), guided=(),
                               lazy_thresholds=(0.2,),
                               easy_shipped_thresholds=(0.2,), open_points=False, avg_pool_alphas=(), only=only)]
    out = []
    names = [s for s in args.scenarios.split(",") if s]
    for name in names:
        if name == "main":
            out.append(ScenarioConfig("main", size=args.size, frames=args.frames, steps=args.steps, cfg=args.cfg,
                                      pairs=args.pairs, repeats=args.repeats, alphas=tuple(_floats(args.alphas)),
                                      flash_alphas=tuple(_floats(args.flash_alphas)),
                                      flash_targets=_flash_specs(args.flash_targets), guided=_flash_specs(args.guided),
                                      easy_thresholds=tuple(_floats(args.easy_thresholds)),
                                      lazy_thresholds=tuple(_floats(args.lazy_thresholds)),
                                      easy_shipped_thresholds=tuple(_floats(args.easy_shipped_thresholds)),
                                      open_points=not args.no_open_points, dmax_first_k=args.dmax_first_k, only=only))
        elif name == "large":
            out.append(ScenarioConfig("large", size=args.large_size, frames=args.frames, steps=args.steps,
                                      cfg=args.cfg, pairs=args.large_pairs, repeats=args.large_repeats,
                                      alphas=(0.5, 0.7, 1.0, 1.5), targets=(1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0), drift_targets=(),
                                      all_stream_targets=(), flash_alphas=(0.5,), blocks=((0.4, 3),),
                                      flash_targets=_flash_specs(args.flash_targets), guided=_flash_specs(args.guided),
                                      easy_thresholds=(0.05, 0.1, 0.2, 0.3, 0.5),
                                      lazy_thresholds=(0.05, 0.1, 0.2, 0.3, 0.5),
                                      easy_shipped_thresholds=(), open_points=False, avg_pool_alphas=(),
                                      trial_agreement=False, only=only))
        elif name == "xl":
            out.append(ScenarioConfig("xl", size=args.xl_size, frames=args.xl_frames, steps=args.steps,
                                      cfg=args.cfg, pairs=args.xl_pairs, repeats=1,
                                      alphas=(0.5, 0.7, 1.0), flash_alphas=(), blocks=(), flash_targets=(), guided=(),
                                      easy_thresholds=(0.2, 0.3), lazy_thresholds=(0.2, 0.3),
                                      easy_shipped_thresholds=(), open_points=False, avg_pool_alphas=(0.5, 0.7, 1.0),
                                      trial_agreement=False, only=only))
        else:
            raise SystemExit(f"unknown scenario {name!r} (main, large, xl)")
    return out


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
            out = node.execute(m, reuse_threshold=method.threshold, start_percent=0.15, end_percent=0.95,
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
    def sample(self, model, seed: int, condition: str, cfg: "ScenarioConfig"):
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
    skipped_step_indices: list = dataclasses.field(default_factory=list)
    """LFCache stepped aside in this run (its trial would have made the run slower than uncached)."""

    def cost(self, blocks_per_forward: int) -> float:
        """Counted work of this run, in full forwards."""
        trial = self.trial_work if self.trial_work is not None else self.trial_forwards * self.token_ratio
        return self.full_forwards + trial - self.blocks_reused / blocks_per_forward


def pairs_for(n: int) -> list[tuple[int, str]]:
    from precisecache_demo import conditioning
    vocab = conditioning.VOCABULARY
    return [(100 + i, vocab[PAIR_CONDITIONS[i % len(PAIR_CONDITIONS)]]) for i in range(n)]


def run_scenario(bench: Bench, cfg: ScenarioConfig, log=print) -> dict:
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
                    rep_ = bench.hooks.get_setup(model).reports.latest
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
    sampling_seconds = time.perf_counter() - t_start
    t0 = time.perf_counter()
    summary = summarize(bench, cfg, methods, pairs, records, outputs, order_check, determinism_failures,
                        sampling_seconds)
    summary["metrics_seconds"] = time.perf_counter() - t0
    if cfg.trial_agreement:
        t0 = time.perf_counter()
        summary["trial_agreement"] = measure_trial_agreement(bench, cfg, pairs, log=log)
        summary["trial_agreement"]["seconds"] = time.perf_counter() - t0
    log(f"[{cfg.name}] sampling {sampling_seconds:.0f} s, decoding + metrics {summary['metrics_seconds']:.0f} s")
    return summary


# =========================================================================== metrics
def video_metrics(decoded, reference) -> tuple[float, float]:
    """PSNR (whole clip) and SSIM (mean over frames) of decoded frames [1, 3, F, H, W] in [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    a = decoded[0].permute(1, 0, 2, 3).contiguous().float()   # [F, 3, H, W]
    b = reference[0].permute(1, 0, 2, 3).contiguous().float()
    psnr = float(peak_signal_noise_ratio(a.double(), b.double(), data_range=1.0))
    ssim = float(structural_similarity_index_measure(a, b, data_range=1.0))  # float32: float64 is ~10x slower
    return psnr, ssim


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(bench, cfg, methods, pairs, records, outputs, order_check, determinism_failures, sampling_seconds):
    by_method: dict[str, list[RunRecord]] = {}
    for r in records:
        by_method.setdefault(r.method, []).append(r)
    unc = {r.round: r.seconds for r in by_method["uncached"]}
    unc_cpu = {r.round: r.cpu_seconds for r in by_method["uncached"]}
    unc_full = {r.pair: r.full_forwards for r in by_method["uncached"]}
    refs = {pi: bench.decode(outputs[("uncached", pi)]) for pi in range(len(pairs))}
    rows = []
    for m in methods:
        recs = by_method[m.name]
        first = [r for r in recs if r.repeat == 0]
        ratios = [r.seconds / unc[r.round] for r in recs]
        ratio = _median(ratios)
        cpu_ratios = [r.cpu_seconds / unc_cpu[r.round] for r in recs if unc_cpu[r.round] > 0]
        cpu_ratio = _median(cpu_ratios)
        psnrs, ssims = [], []
        for pi in range(len(pairs)):
            if m.name == "uncached":
                psnrs.append(math.inf)
                ssims.append(1.0)
                continue
            p, s = video_metrics(bench.decode(outputs[(m.name, pi)]), refs[pi])
            psnrs.append(p)
            ssims.append(s)
        # counted work, summed over pairs (repeat 0; later repeats are identical runs)
        tot_unc = sum(unc_full[r.pair] for r in first)
        cost = sum(r.cost(bench.blocks_per_forward) for r in first)
        ideal = tot_unc / cost if cost > 0 else None
        speedup = 1.0 / ratio if ratio else None
        n = len(first)
        finite = [p for p in psnrs if math.isfinite(p)]
        rows.append({
            "name": m.name, "label": m.label, "family": m.family, "kind": m.kind, "groups": list(m.groups),
            "params": m.params(),
            "full_forwards": sum(r.full_forwards for r in first) / n,
            "trial_forwards": sum(r.trial_forwards for r in first) / n,
            "reused_forwards": sum(r.reused_forwards for r in first) / n,
            "skipped_steps": sum(r.skipped_steps for r in first) / n,
            "blocks_computed": sum(r.blocks_computed for r in first) / n,
            "blocks_reused": sum(r.blocks_reused for r in first) / n,
            "uncached_forwards": tot_unc / n,
            "trial_token_ratio": max((r.token_ratio for r in first), default=0.0),
            "cache_bytes": max((r.cache_bytes for r in recs), default=0),
            "count_check": sorted({r.count_check for r in recs}),
            "input_mutations": sum(r.input_mutations for r in recs),
            "model_calls_per_run": sum(r.model_calls for r in first) / n,
            "seconds_median": _median([r.seconds for r in recs]),
            "wall_ratio_median": ratio,
            "wall_ratio_per_round": ratios,
            "speedup_wall": speedup,
            "speedup_ideal": ideal,
            "realized_over_ideal": (speedup / ideal) if (speedup and ideal) else None,
            "cpu_seconds_median": _median([r.cpu_seconds for r in recs]),
            "cpu_ratio_median": cpu_ratio,
            "speedup_cpu": (1.0 / cpu_ratio) if cpu_ratio else None,
            "realized_over_ideal_cpu": (1.0 / cpu_ratio / ideal) if (cpu_ratio and ideal) else None,
            "report_estimated_speedup_mean": _mean([r.report_speedup for r in first]),
            "work_speedup_per_pair": [unc_full[r.pair] / r.cost(bench.blocks_per_forward) for r in first],
            "skipped_step_indices_per_pair": [r.skipped_step_indices for r in first],
            "stepped_aside_pairs": [r.pair for r in first if r.stepped_aside],
            "psnr_identical": m.name == "uncached" or (len(finite) == 0),
            "psnr_identical_pairs": len(psnrs) - len(finite),
            "psnr_mean": (sum(finite) / len(finite)) if finite else None,
            "psnr_worst": min(psnrs) if finite else None,
            "psnr_per_pair": [p if math.isfinite(p) else None for p in psnrs],
            "ssim_mean": sum(ssims) / len(ssims),
            "ssim_worst": min(ssims),
            "ssim_per_pair": ssims,
        })
    return {
        "config": dataclasses.asdict(cfg) | {"latent_shape": list(cfg.latent_shape)},
        "pairs": [{"seed": s, "condition": c} for s, c in pairs],
        "methods": rows,
        "easycache_wrapper_order": order_check,
        "determinism_failures": determinism_failures,
        "sampling_seconds": sampling_seconds,
    }


# =========================================================================== overhead
def measure_trial_agreement(bench: Bench, cfg: "ScenarioConfig", pairs, alphas=(0.5, 0.7, 1.0), log=print) -> dict:
    """How well the trial's Δ̃ tracks the full-resolution Δ, for each downsampling operator (open point d).

    On the uncached trajectory of each pair, every denoiser call also runs the trial forward on the
    average-pooled and on the strided-subsampled input (through the pack's own trial-argument
    builder). Per step: Δ_full = LFD of consecutive full predictions, Δ̃ = LFD of consecutive trial
    predictions. Reported: Spearman correlation of Δ̃ with Δ_full, and the share of steps where the
    decision rule (running max, α) fed with Δ̃ takes the same decision as fed with Δ_full
    (open loop: both on the same uncached trajectory).
    """
    import torch
    from scipy.stats import spearmanr
    lfd = bench.lowpass_mod.low_frequency_distance
    factors = bench.trial_mod.effective_factors((2, 4, 4), cfg.latent_shape)
    operators = ("strided", "avg_pool")
    calls: list[tuple] = []
    input_std: dict[str, list[float]] = {name: [] for name in operators}

    def wrapper(executor, *args, **kwargs):
        options = bench.hooks._transformer_options(args, kwargs)
        full = executor(*args, **kwargs)
        trials = {}
        for name in operators:
            targs, tkwargs = bench.trial_inputs_mod.trial_call(bench.families_mod.WAN, args, kwargs, factors, name,
                                                               bench.hooks._trial_options(options))
            if not calls or len(calls) % cfg.steps == 0:
                input_std[name].append(float(targs[0].float().std()))
            with torch.no_grad():
                trials[name] = executor(*targs, **tkwargs).detach().clone()
        calls.append((full.detach().clone(), trials, float(args[0].float().std())))
        return full

    model = bench.model.clone()
    model.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_trial_agreement", wrapper)
    decider_cls = bench.policy_mod.StepDecider

    def decisions(series, alpha):
        d = decider_cls(alpha)
        return [d.decide(v, True) for v in series]

    per_pair = []
    first_step_input_std = []
    for seed, cond in pairs:
        calls.clear()
        bench.sample(model, seed, cond, cfg)
        first_step_input_std.append(calls[0][2])
        fulls = [c[0] for c in calls]
        full_series = [None] + [float(lfd(fulls[i], fulls[i - 1])) for i in range(1, len(fulls))]
        row = {}
        for name in operators:
            tr = [c[1][name] for c in calls]
            series = [None] + [float(lfd(tr[i], tr[i - 1])) for i in range(1, len(tr))]
            rho = spearmanr(series[1:], full_series[1:]).statistic
            agree = {}
            for a in alphas:
                x, y = decisions(series, a), decisions(full_series, a)
                agree[_fmt(a)] = sum(1 for u, v in zip(x, y) if u == v) / len(x)
            row[name] = {"spearman": float(rho), "decision_agreement": agree}
        per_pair.append(row)
    out = {"pairs": len(pairs), "alphas": list(alphas), "factors": list(factors),
           "full_input_std_first_step": _mean(first_step_input_std),
           "operators": {}}
    for name in operators:
        out["operators"][name] = {
            "spearman_mean": _mean([r[name]["spearman"] for r in per_pair]),
            "spearman_min": min(r[name]["spearman"] for r in per_pair),
            "decision_agreement_mean": {_fmt(a): _mean([r[name]["decision_agreement"][_fmt(a)] for r in per_pair])
                                        for a in alphas},
            "trial_input_std_first_step": _mean(input_std[name]),
        }
        o = out["operators"][name]
        log(f"[trial agreement] {name}: Spearman(Δ̃, Δ_full) mean {o['spearman_mean']:.3f} (min {o['spearman_min']:.3f}), "
            f"decision agreement " + ", ".join(f"α={a}: {100 * v:.0f}%" for a, v in o["decision_agreement_mean"].items())
            + f"; trial input std at step 0 {o['trial_input_std_first_step']:.3f} (full {out['full_input_std_first_step']:.3f})")
    out["per_pair"] = per_pair
    return out


def measure_overhead(bench: Bench, sizes: list[int], frames: int, cfg_scale: float, steps_for, log=print) -> list[dict]:
    """Trial + decision overhead inside the real sampling path, per latent size.

    Timing wrappers around the diffusion model: one outside ours (whole call) and one inside ours
    (each executor call: the trial or the full forward). An LFCache run with α = 0.01 computes every
    step and runs every trial; an uncached run gives the plain full forward and full step.
    """
    import torch
    from precisecache_demo import conditioning
    out = []
    for size in sizes:
        steps = steps_for(size)
        scen = ScenarioConfig("overhead", size=8 * size, frames=frames, steps=steps, cfg=cfg_scale)
        inner: list[tuple[bool, float]] = []
        outer: list[tuple[float, int]] = []
        trial_key = bench.hooks.TRIAL_KEY

        def inner_wrapper(executor, *args, **kwargs):
            options = bench.hooks._transformer_options(args, kwargs)
            t0 = time.perf_counter()
            r = executor(*args, **kwargs)
            inner.append((bool(options and options.get(trial_key)), time.perf_counter() - t0))
            return r

        def outer_wrapper(executor, *args, **kwargs):
            n0 = len(inner)
            t0 = time.perf_counter()
            r = executor(*args, **kwargs)
            outer.append((time.perf_counter() - t0, len(inner) - n0))
            return r

        plain = bench.model.clone()
        plain.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_inner", inner_wrapper)
        timed = bench.model.clone()
        timed.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_outer", outer_wrapper)
        lf = bench.config_mod.LFCacheConfig(alpha=0.01).validate()
        timed = bench.hooks.apply_setup(timed, lf=lf)
        timed.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_inner", inner_wrapper)
        assert bench.wrapper_order(timed) == ["precisecache_bench_outer", "precisecache", "precisecache_bench_inner"]
        cond = conditioning.VOCABULARY[0]
        unc_steps, lf_steps, full_unc = [], [], []
        trial_t, full_t, extra_t = [], [], []
        for rep in range(2):  # interleaved: uncached, LFCache, uncached, LFCache
            inner.clear()
            _, secs = bench.sample(plain, 7, cond, scen)
            unc_steps.append(secs / steps)
            full_unc += [t for is_trial, t in inner[1:]]
            inner.clear()
            outer.clear()
            _, secs = bench.sample(timed, 7, cond, scen)
            lf_steps.append(secs / steps)
            pos = 0
            for total, n_inner in outer:
                calls = inner[pos:pos + n_inner]
                pos += n_inner
                tr = [t for is_trial, t in calls if is_trial]
                fu = [t for is_trial, t in calls if not is_trial]
                trial_t += tr
                full_t += fu
                if tr and fu:
                    extra_t.append(total - sum(tr) - sum(fu))
        report = bench.hooks.get_setup(timed).reports.latest
        # the metric alone, on the trial prediction's shape
        shape = (2, 16) + tuple(-(-d // f) for d, f in zip(scen.latent_shape[2:], (2, 4, 4)))
        a, b = torch.randn(shape), torch.randn(shape)
        for _ in range(5):
            bench.lowpass_mod.low_frequency_distance(a, b)
        lfd = []
        for _ in range(200):
            t0 = time.perf_counter()
            float(bench.lowpass_mod.low_frequency_distance(a, b))
            lfd.append(time.perf_counter() - t0)
        full_fwd = _median(full_unc)
        row = {
            "size": size, "latent_shape": list(scen.latent_shape), "steps": steps,
            "tokens_full": scen.latent_shape[2] * (scen.latent_shape[3] // 2) * (scen.latent_shape[4] // 2),
            "trial_token_ratio": report.trial_token_ratio,
            "full_forward_ms": 1e3 * full_fwd,
            "full_forward_in_lf_run_ms": 1e3 * _median(full_t),
            "trial_forward_ms": 1e3 * _median(trial_t),
            "wrapper_extra_ms": 1e3 * _median(extra_t),
            "lfd_ms": 1e3 * _median(lfd),
            "uncached_step_ms": 1e3 * _median(unc_steps),
            "lf_every_step_step_ms": 1e3 * _median(lf_steps),
            "samples": {"trial": len(trial_t), "full": len(full_unc)},
            "lf_run_skipped_steps": len(report.skipped_steps),
        }
        row["trial_pct_of_full_forward"] = 100 * row["trial_forward_ms"] / row["full_forward_ms"]
        row["overhead_pct_of_full_forward"] = 100 * (row["trial_forward_ms"] + row["wrapper_extra_ms"]) / row["full_forward_ms"]
        row["overhead_pct_of_full_step"] = 100 * (row["trial_forward_ms"] + row["wrapper_extra_ms"]) / row["uncached_step_ms"]
        row["measured_step_increase_pct"] = 100 * (row["lf_every_step_step_ms"] / row["uncached_step_ms"] - 1)
        log(f"[overhead] latent {scen.latent_shape}: full forward {row['full_forward_ms']:.1f} ms, trial "
            f"{row['trial_forward_ms']:.1f} ms, pooling+LFD+bookkeeping {row['wrapper_extra_ms']:.2f} ms "
            f"(LFD alone {row['lfd_ms']:.3f} ms) -> overhead {row['overhead_pct_of_full_forward']:.1f}% of a full "
            f"forward, {row['overhead_pct_of_full_step']:.1f}% of a full step")
        out.append(row)
        gc.collect()
    return out


# =========================================================================== analysis
def pareto(points):
    """Points (speedup, psnr, name) not dominated (higher speedup and higher PSNR), by speedup."""
    pts = sorted(points, key=lambda p: (-p[0], -p[1]))
    front, best = [], -math.inf
    for p in pts:
        if p[1] > best:
            front.append(p)
            best = p[1]
    return sorted(front)


def _psnr_for_plot(row):
    return 60.0 if row["psnr_identical"] else row["psnr_mean"]


def best_at_levels(rows, families, key, levels=FIDELITY_LEVELS, metric="psnr_mean"):
    out = {}
    for lvl in levels:
        cand = [r for r in rows if r["family"] in families and r[key] is not None and r[metric] is not None
                and r[metric] >= lvl]
        best = max(cand, key=lambda r: r[key], default=None)
        out[str(lvl)] = {"speedup": best[key] if best else None, "method": best["name"] if best else None}
    return out


def analyze(main: dict, overhead: list[dict]) -> dict:
    rows = main["methods"]
    get = {r["name"]: r for r in rows}
    analysis = {}
    for key in ("speedup_wall", "speedup_cpu", "speedup_ideal"):
        for metric in ("psnr_mean", "psnr_worst"):
            levels = {fam: best_at_levels(rows, fams, key, metric=metric)
                      for fam, fams in (("PreciseCache", PRECISECACHE_FAMILIES),
                                        ("EasyCache (copy-fixed)", ("EasyCache (copy-fixed)",)),
                                        ("LazyCache", ("LazyCache",)))}
            verdict = {}
            for lvl in map(str, FIDELITY_LEVELS):
                ours = levels["PreciseCache"][lvl]["speedup"]
                theirs = [levels[f][lvl]["speedup"] for f in ("EasyCache (copy-fixed)", "LazyCache")]
                theirs = [t for t in theirs if t is not None]
                if ours is None:
                    verdict[lvl] = "no PreciseCache point" if theirs else "no point of any method"
                elif not theirs:
                    verdict[lvl] = "above (no peer point)"
                else:
                    best = max(theirs)
                    verdict[lvl] = ("tie" if abs(ours - best) < 0.005 else "above" if ours > best
                                    else f"below by {best - ours:.2f}x ({100 * (1 - ours / best):.0f}%)")
            analysis[f"frontier_{key}_{metric}"] = {"levels": levels, "verdict": verdict}
    target_30 = {key: best_at_levels(rows, PRECISECACHE_FAMILIES, key, levels=(30.0,))["30.0"]
                 for key in ("speedup_wall", "speedup_cpu", "speedup_ideal")}
    analysis["target_2p6x_at_30dB"] = target_30
    presets = {n: get[n] for n in ("lf_a0.5", "lf_a0.7", "flash_a0.5") if n in get}
    analysis["realized_over_ideal_presets"] = {n: r["realized_over_ideal"] for n, r in presets.items()}
    analysis["realized_over_ideal_cpu_presets"] = {n: r["realized_over_ideal_cpu"] for n, r in presets.items()}
    ours = [r for r in rows if r["kind"] == "precisecache" and r["realized_over_ideal"] is not None]
    analysis["realized_over_ideal_precisecache_range"] = (
        [min(r["realized_over_ideal"] for r in ours), max(r["realized_over_ideal"] for r in ours)] if ours else None)
    if overhead:
        analysis["overhead"] = [{k: o[k] for k in ("size", "latent_shape", "overhead_pct_of_full_forward",
                                                   "overhead_pct_of_full_step", "trial_pct_of_full_forward")}
                                for o in overhead]

    def pair(a, b):
        return [_brief(get[a]), _brief(get[b])] if a in get and b in get else None

    def by_variant(pred):
        return [pair(f"lf_a{_fmt(r['params']['lf']['alpha'])}", r["name"]) for r in rows if pred(r)]

    opens = {
        "a_reuse": {"baseline": "PreciseCache LFCache", "variant": "LFCache reuse=residual",
                    "pairs": by_variant(lambda r: r["name"].endswith("_residual"))},
        "b_ranking": {"baseline": "PreciseCache BlockCache", "variant": "BlockCache ranking=l2",
                      "pairs": [pair(r["name"][:-3], r["name"]) for r in rows if r["name"].endswith("_l2")]},
        "c_dmax": {"baseline": "PreciseCache LFCache",
                   "variant": next((r["family"] for r in rows if r["params"].get("variant", "").startswith("dmax")), None),
                   "pairs": by_variant(lambda r: r["params"].get("variant", "").startswith("dmax"))},
        "d_downsample": {"baseline": "PreciseCache LFCache", "variant": "LFCache avg-pool trial",
                         "pairs": by_variant(lambda r: r["params"].get("variant") == "avg_pool")},
        "e_flash_alpha": {"baseline": "PreciseCache Flash",
                          "variant": "Flash c=0.4 L=1" if any(r["family"] == "Flash c=0.4 L=1" for r in rows) else None,
                          "pairs": [[_brief(r)] for r in rows if r["family"] in ("PreciseCache Flash", "Flash c=0.4 L=1")]},
    }
    for key, op in opens.items():
        op["pairs"] = [p for p in op["pairs"] if p]
        if op["variant"] and op["pairs"]:
            op["frontier"] = {k: {fam: best_at_levels(rows, (fam,), k) for fam in (op["baseline"], op["variant"])}
                              for k in ("speedup_wall", "speedup_cpu", "speedup_ideal")}
    analysis["open_points"] = {k: v for k, v in opens.items() if v["pairs"]}
    easy_fixed_mut = sum(r["input_mutations"] for r in rows if r["family"] == "EasyCache (copy-fixed)")
    easy_shipped_mut = sum(r["input_mutations"] for r in rows if r["family"] == "EasyCache (as shipped)")
    ours_mut = sum(r["input_mutations"] for r in rows if r["kind"] == "precisecache")
    analysis["input_mutations"] = {"easycache_copy_fixed": easy_fixed_mut, "easycache_as_shipped": easy_shipped_mut,
                                   "precisecache": ours_mut, "lazycache": sum(
                                       r["input_mutations"] for r in rows if r["kind"] == "lazycache")}
    return analysis


def _brief(r):
    return {"name": r["name"], "label": r["label"], "speedup_wall": r["speedup_wall"], "speedup_cpu": r["speedup_cpu"],
            "speedup_ideal": r["speedup_ideal"],
            "psnr_mean": r["psnr_mean"], "psnr_worst": r["psnr_worst"], "ssim_mean": r["ssim_mean"],
            "full_forwards": r["full_forwards"], "blocks_reused": r["blocks_reused"]}


# =========================================================================== output
def _n(v, fmt="{:.2f}", none="–"):
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


def method_table(rows, blocks_per_forward) -> list[str]:
    lines = ["| method | full fwd | trial fwd | blocks computed / reused | cache KiB | wall ratio | speedup wall | "
             "speedup CPU time | speedup counted | realized ÷ ideal (wall) | PSNR mean | PSNR worst | SSIM mean | "
             "SSIM worst | counts |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        psnr_mean = "∞ (identical)" if r["psnr_identical"] else _n(r["psnr_mean"])
        psnr_worst = "∞" if r["psnr_identical"] else _n(r["psnr_worst"])
        checks = ", ".join(r["count_check"])
        if r["input_mutations"]:
            checks += f"; input modified in {r['input_mutations']} calls"
        lines.append(
            f"| {r['label']} | {_n(r['full_forwards'], '{:.1f}')} | {_n(r['trial_forwards'], '{:.1f}')} | "
            f"{_n(r['blocks_computed'], '{:.0f}')} / {_n(r['blocks_reused'], '{:.0f}')} | "
            f"{_n(r['cache_bytes'] / 1024, '{:.0f}')} | {_n(r['wall_ratio_median'], '{:.3f}')} | "
            f"{_n(r['speedup_wall'])}x | {_n(r['speedup_cpu'])}x | {_n(r['speedup_ideal'])}x | "
            f"{_n(r['realized_over_ideal'])} | "
            f"{psnr_mean} | {psnr_worst} | {_n(r['ssim_mean'], '{:.4f}')} | {_n(r['ssim_worst'], '{:.4f}')} | {checks} |")
    return lines


def analysis_lines(an: dict) -> list[str]:
    lines = []
    if an:
        lines += ["### Best speedup per fidelity level (mean PSNR ≥ level)", ""]
        for key in ("speedup_wall", "speedup_cpu", "speedup_ideal"):
            fr = an[f"frontier_{key}_psnr_mean"]
            title = {"speedup_wall": "Wall-clock", "speedup_cpu": "CPU-time", "speedup_ideal": "Counted-work"}[key]
            lines += [f"{title} speedup:", "",
                      "| PSNR ≥ | PreciseCache | EasyCache (copy-fixed) | LazyCache | PreciseCache vs peers |",
                      "|---:|---|---|---|---|"]
            for lvl in map(str, FIDELITY_LEVELS):
                cells = []
                for fam in ("PreciseCache", "EasyCache (copy-fixed)", "LazyCache"):
                    b = fr["levels"][fam][lvl]
                    cells.append(f"{_n(b['speedup'])}x ({b['method']})" if b["speedup"] else "–")
                lines.append(f"| {lvl} dB | " + " | ".join(cells) + f" | {fr['verdict'][lvl]} |")
            lines.append("")
        t = an["target_2p6x_at_30dB"]
        lines += [f"Best PreciseCache speedup at mean PSNR ≥ 30 dB: wall {_n(t['speedup_wall']['speedup'])}x "
                  f"({t['speedup_wall']['method']}), CPU time {_n(t['speedup_cpu']['speedup'])}x "
                  f"({t['speedup_cpu']['method']}), counted {_n(t['speedup_ideal']['speedup'])}x "
                  f"({t['speedup_ideal']['method']}).", ""]
        ops = an.get("open_points") or {}
        if ops:
            lines += ["### Open points (pairs: same settings but the one choice)", "",
                      "| point | setting | speedup wall | speedup CPU | speedup counted | PSNR mean | PSNR worst | SSIM mean | "
                      "full fwd | blocks reused |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for key, op in ops.items():
                for group in op["pairs"]:
                    for b in group:
                        lines.append(f"| {key} | {b['label']} | {_n(b['speedup_wall'])}x | {_n(b['speedup_cpu'])}x | "
                                     f"{_n(b['speedup_ideal'])}x | "
                                     f"{_n(b['psnr_mean'])} | {_n(b['psnr_worst'])} | {_n(b['ssim_mean'], '{:.4f}')} | "
                                     f"{_n(b['full_forwards'], '{:.1f}')} | {_n(b['blocks_reused'], '{:.1f}')} |")
            lines += ["", "Best speedup at mean PSNR ≥ level, baseline family vs variant family:", "",
                      "| point | speed | family | " + " | ".join(f"≥{lvl:g}" for lvl in FIDELITY_LEVELS) + " |",
                      "|---|---|---|" + "---:|" * len(FIDELITY_LEVELS)]
            for key, op in ops.items():
                for k, fams in (op.get("frontier") or {}).items():
                    for fam, levels in fams.items():
                        cells = [_n(levels[str(lvl)]["speedup"]) for lvl in FIDELITY_LEVELS]
                        lines.append(f"| {key} | {k.replace('speedup_', '').replace('ideal', 'counted')} | {fam} | "
                                     + " | ".join(cells) + " |")
            lines.append("")
        mut = an["input_mutations"]
        lines += [f"Calls whose apply_model input was modified in place: EasyCache copy-fixed {mut['easycache_copy_fixed']}, "
                  f"EasyCache as shipped {mut['easycache_as_shipped']}, LazyCache {mut['lazycache']}, "
                  f"PreciseCache {mut['precisecache']}.", ""]
    return lines


def write_markdown(results: dict, path: Path) -> None:
    meta = results["meta"]
    lines = ["# PreciseCache benchmark results", "",
             f"Generated by `{meta['command']}` on {meta['date']} (commit {meta['git_commit']}), "
             f"{meta['runtime_seconds'] / 60:.1f} min. Model: {meta['model']['source']} "
             f"({'trained demo model' if meta['model']['trained'] else 'RANDOM weights'}"
             + (f", training step {meta['model']['training'].get('step')}" if meta['model']['training'] else "")
             + f"). CPU, {meta['threads']} thread(s), torch {meta['torch']}, ComfyUI {meta['comfyui_version']}.", ""]
    for name, scen in results["scenarios"].items():
        c = scen["config"]
        lines += [f"## Scenario `{name}`: latent {tuple(c['latent_shape'])} ({c['size']}x{c['size']} px, "
                  f"{c['frames']} frames), euler/simple, {c['steps']} steps, CFG {c['cfg']}, "
                  f"{len(scen['pairs'])} seed x condition pairs, {c['repeats']} timing repeat(s)", ""]
        lines += ["Counts are means per run over the pairs; wall ratio = median over rounds of (method time ÷ "
                  "uncached time in the same round); speedup CPU time = the same with the process's CPU time "
                  "(less sensitive to other jobs on the machine); speedup counted = uncached forwards ÷ (full + trial × token "
                  "ratio − reused blocks ÷ blocks per forward); PSNR/SSIM of decoded frames vs the uncached output "
                  "(worst = lowest over pairs).", ""]
        lines += method_table(scen["methods"], meta.get("blocks_per_forward"))
        if scen.get("determinism_failures"):
            lines += ["", f"**Non-deterministic repeats:** {scen['determinism_failures']}"]
        if scen.get("easycache_wrapper_order"):
            orders = {tuple(v) for v in scen["easycache_wrapper_order"].values()}
            lines += ["", "DIFFUSION_MODEL wrapper order (outermost first) of the EasyCache runs: " +
                      "; ".join(" → ".join(o) for o in sorted(orders))]
        lines.append("")
        ta = scen.get("trial_agreement")
        if ta:
            lines += [f"### Trial vs full-resolution LFD (uncached trajectories, {ta['pairs']} pairs, trial factors "
                      f"{'x'.join(map(str, ta['factors']))})", "",
                      "| trial operator | Spearman(Δ̃, Δ_full) mean | min | " +
                      " | ".join(f"decision agreement α={a:g}" for a in ta["alphas"]) + " | trial input std at step 0 |",
                      "|---|---:|---:|" + "---:|" * len(ta["alphas"]) + "---:|"]
            for name, o in ta["operators"].items():
                lines.append(f"| {name} | {o['spearman_mean']:.3f} | {o['spearman_min']:.3f} | " +
                             " | ".join(f"{100 * v:.1f}%" for v in o["decision_agreement_mean"].values()) +
                             f" | {o['trial_input_std_first_step']:.3f} (full: {ta['full_input_std_first_step']:.3f}) |")
            lines.append("")
        lines += analysis_lines(scen.get("analysis") or {})
    if results.get("overhead"):
        lines += ["## Trial + decision overhead (LFCache, measured inside the sampling path)", "",
                  "| latent | tokens | full forward ms | trial forward ms | pooling + LFD + bookkeeping ms | "
                  "LFD alone ms | overhead % of full forward | % of full step (uncached step wall) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for o in results["overhead"]:
            lines.append(f"| {tuple(o['latent_shape'])} | {o['tokens_full']} | {o['full_forward_ms']:.1f} | "
                         f"{o['trial_forward_ms']:.1f} | {o['wrapper_extra_ms']:.2f} | {o['lfd_ms']:.3f} | "
                         f"{o['overhead_pct_of_full_forward']:.1f} | {o['overhead_pct_of_full_step']:.1f} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for scen_name, scen in results["scenarios"].items():
        written += _plot_scenario(plt, results, scen_name, scen, out_dir)
    return written


def _plot_scenario(plt, results, scen_name, main, out_dir) -> list[str]:
    written = []
    suffix = "" if scen_name == "main" else f"_{scen_name}"
    rows = main["methods"]
    styles = {
        "PreciseCache LFCache": ("tab:blue", "o", "-"), "PreciseCache Flash": ("tab:purple", "D", "-"),
        "PreciseCache BlockCache": ("tab:cyan", "s", "-"), "EasyCache (copy-fixed)": ("tab:orange", "^", "-"),
        "LazyCache": ("tab:green", "v", "-"), "EasyCache (as shipped)": ("tab:red", "x", ":"),
        "LFCache reuse=residual": ("tab:brown", "o", "--"), "BlockCache ranking=l2": ("tab:gray", "s", "--"),
        "Flash ranking=l2": ("tab:pink", "D", "--"), "LFCache avg-pool trial": ("olive", "o", "--"),
        "Flash c=0.4 L=1": ("tab:red", "D", "--"),
        FLASH_TARGET_FAMILIES[0]: ("indigo", "P", "-"), FLASH_TARGET_FAMILIES[1]: ("crimson", "*", "-"),
    }

    def draw(ax, families, key, title):
        unc = [r for r in rows if r["name"] == "uncached"]
        for fam in families:
            pts = [(r[key], _psnr_for_plot(r), r["name"]) for r in rows if r["family"] == fam
                   and r[key] is not None and _psnr_for_plot(r) is not None]
            if not pts:
                continue
            colour, marker, ls = styles.get(fam, ("black", "o", "--"))
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            ax.scatter(xs, ys, color=colour, marker=marker, s=28, alpha=0.55)
            worst = [r for r in rows if r["family"] == fam and r[key] is not None and r["psnr_worst"] is not None]
            for r in worst:
                ax.plot([r[key], r[key]], [r["psnr_worst"], r["psnr_mean"]], color=colour, lw=0.6, alpha=0.35)
            front = pareto(pts)
            ax.plot([p[0] for p in front], [p[1] for p in front], color=colour, ls=ls, lw=1.8, label=fam,
                    marker=marker, ms=5)
        if unc:
            ax.scatter([1.0], [60.0], color="black", marker="*", s=90, label="uncached (identical)", zorder=5)
        ax.axhline(30, color="gray", lw=0.8, ls=":")
        ax.axvline(2.6, color="gray", lw=0.8, ls=":")
        ax.set_xlabel(title)
        ax.set_ylabel("PSNR vs uncached, dB (mean over pairs; thin line down to worst)")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=max(0.0, min([_psnr_for_plot(r) or 60 for r in rows if r["family"] in families]
                                        + [r["psnr_worst"] or 60 for r in rows if r["family"] in families]) - 2),
                    top=62)
        ax.legend(fontsize=7, loc="upper right")

    c = main["config"]
    meta = results["meta"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    draw(axes[0], MAIN_FAMILIES, "speedup_wall", "speedup, wall clock (median ratio to interleaved uncached runs)")
    draw(axes[1], MAIN_FAMILIES, "speedup_ideal", "speedup, counted work (forwards, trials × token ratio, blocks)")
    fig.suptitle(f"Speedup vs fidelity, Pareto front per family: tiny trained Wan 2.1 "
                 f"({'demo model' if meta['model']['trained'] else 'RANDOM weights'}), CPU, latent "
                 f"{tuple(c['latent_shape'])}, {c['steps']} euler steps, CFG {c['cfg']}, {len(main['pairs'])} pairs "
                 f"(PSNR = 60 plotted for identical)", fontsize=9)
    fig.tight_layout()
    p = out_dir / f"speedup_vs_psnr{suffix}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p.name)

    open_fams = [f for f in dict.fromkeys(r["family"] for r in rows)
                 if f not in MAIN_FAMILIES and f != "uncached"]
    if open_fams:
        fig, axes = plt.subplots(1, 2, figsize=(14, 6))
        fams = ["PreciseCache LFCache", "PreciseCache Flash", "PreciseCache BlockCache"] + open_fams
        draw(axes[0], fams, "speedup_wall", "speedup, wall clock")
        draw(axes[1], fams, "speedup_ideal", "speedup, counted work")
        fig.suptitle("Open points: reuse mode (a), ranking norm (b), Δmax definition (c), trial downsampling (d), "
                     "Flash α (e)", fontsize=9)
        fig.tight_layout()
        p = out_dir / f"open_points{suffix}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p.name)
    return written


def _json_clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def print_summary(results: dict, log=print) -> None:
    for name, scen in results["scenarios"].items():
        log(f"\n== scenario {name}: latent {tuple(scen['config']['latent_shape'])} ==")
        log(f"{'method':52s} {'full':>6s} {'trial':>6s} {'blk re':>7s} {'wall x':>7s} {'cpu x':>7s} {'ideal x':>7s} "
            f"{'r/i':>5s} {'PSNR':>7s} {'worst':>7s} {'SSIM':>7s}")
        for r in scen["methods"]:
            psnr = "inf" if r["psnr_identical"] else _n(r["psnr_mean"])
            worst = "inf" if r["psnr_identical"] else _n(r["psnr_worst"])
            log(f"{r['label'][:52]:52s} {r['full_forwards']:6.1f} {r['trial_forwards']:6.1f} {r['blocks_reused']:7.1f} "
                f"{_n(r['speedup_wall']):>7s} {_n(r['speedup_cpu']):>7s} {_n(r['speedup_ideal']):>7s} "
                f"{_n(r['realized_over_ideal']):>5s} "
                f"{psnr:>7s} {worst:>7s} {r['ssim_mean']:7.4f}")


# =========================================================================== main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/benchmark.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny fast run: 64x64 px at the model's frames (9 for the demo), 12 steps, 2 pairs, 6 methods, one overhead size (< 1 min)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out", help="output directory (default bench_out/)")
    ap.add_argument("--publish", action="store_true",
                    help="write the results into docs/benchmark/ (committed, used by docs/benchmark.md)")
    ap.add_argument("--model", default=None,
                    help="diffusion model: a .safetensors path (relative to the current directory or the "
                         "repository), or 'demo' (models/precisecache_demo_wan.safetensors, the default) or 'deep' "
                         "(models/precisecache_deep_wan.safetensors, 12 blocks). A missing default falls back to a "
                         "random-weight tiny Wan with a warning; a missing named model is an error")
    ap.add_argument("--comfyui", default=None, help="ComfyUI directory (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--scenarios", default="main,large",
                    help="comma list: main (the model's training size, all methods), large (--large-size, fewer "
                         "methods and pairs), xl (--xl-size, a handful of methods; slow: ~10 min, not in the default)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=128, help="main scenario frame size in pixels (latent = size / 8)")
    ap.add_argument("--frames", type=int, default=None,
                    help="video frames (latent frames = 1 + (frames - 1) / 4); default: the frames the model was "
                         "trained at (its file's training metadata), else 9; --smoke uses it too")
    ap.add_argument("--pairs", type=int, default=8, help="seed x condition pairs of the main scenario")
    ap.add_argument("--repeats", type=int, default=2, help="timing repeats of the main scenario (rounds = pairs x repeats)")
    ap.add_argument("--large-size", type=int, default=256, help="frame size of the 'large' scenario (latent 32x32)")
    ap.add_argument("--large-pairs", type=int, default=4)
    ap.add_argument("--large-repeats", type=int, default=2)
    ap.add_argument("--xl-size", type=int, default=512, help="frame size of the opt-in 'xl' scenario (latent 64x64)")
    ap.add_argument("--xl-frames", type=int, default=9)
    ap.add_argument("--xl-pairs", type=int, default=2)
    ap.add_argument("--alphas", default="0.2,0.3,0.5,0.7,1.0,1.25,1.5,2.0", help="LFCache α sweep")
    ap.add_argument("--flash-alphas", default="0.3,0.5,0.7,1.0", help="Flash α sweep (open point e)")
    ap.add_argument("--flash-targets", default="2:0.4:3",
                    help="static Flash on a speed target, comma list of target:c:L (BlockCache top-c %% / L)")
    ap.add_argument("--guided", default="2:0.02:0:3",
                    help="trial-guided Flash, comma list of target:τ:c:L (change threshold, pivotal ratio, max reuses)")
    ap.add_argument("--easy-thresholds", default="0.05,0.1,0.2,0.3,0.5,0.75,1.0", help="EasyCache (copy-fixed) sweep")
    ap.add_argument("--lazy-thresholds", default="0.05,0.1,0.2,0.3,0.5,0.75,1.0", help="LazyCache sweep")
    ap.add_argument("--easy-shipped-thresholds", default="0.1,0.2", help="EasyCache as shipped (reference only)")
    ap.add_argument("--dmax-first-k", type=int, default=5, help="open point c: Δmax = max over the first k Δ's")
    ap.add_argument("--no-open-points", action="store_true", help="skip the open-point variants (a-d)")
    ap.add_argument("--methods", default="", help="only these method names (comma list; uncached always runs)")
    ap.add_argument("--overhead-sizes", default="16,32,64",
                    help="latent sizes (H = W, in latent pixels) for the overhead measurement; '' to skip")
    args = ap.parse_args(argv)
    args.model = resolve_model(args.model)
    return args


def resolve_model(value: str | None) -> Path:
    """--model value -> path: None is the default demo model (its absence is handled by Bench), a
    shortcut name its file, else a path relative to the current directory or the repository, which
    must exist."""
    if value is None:
        return DEFAULT_MODEL
    if value in MODEL_SHORTCUTS:
        path = MODEL_SHORTCUTS[value]
    else:
        path = Path(value)
        if not path.is_absolute() and not path.exists() and (REPO / path).exists():
            path = REPO / path
    if not path.is_file():
        raise SystemExit(f"--model {value}: no such file {path}")
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out_dir = (REPO / "docs" / "benchmark") if args.publish else args.out
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HOST_DIR))
    import harness
    comfyui_dir = args.comfyui or harness.find_comfyui().path
    if not comfyui_dir:
        print(harness.SKIP_BANNER, file=sys.stderr)
        return 2
    import logging
    logging.getLogger().setLevel(logging.WARNING)

    def log(msg):
        print(msg, flush=True)

    bench = Bench(comfyui_dir, args.model, args.threads, log=log)
    if args.frames is None:
        args.frames = int(bench.model_info["training"].get("frames", 9))
    log(f"ComfyUI {comfyui_dir} imported in {bench.import_seconds:.1f} s; model {bench.model_info['source']} "
        f"(training step {bench.model_info['training'].get('step', '?')}); {bench.blocks_per_forward} blocks; "
        f"{args.frames} frames")
    scenarios = {}
    for cfg in scenario_configs(args):
        scenarios[cfg.name] = run_scenario(bench, cfg, log=log)
    overhead = []
    if args.overhead_sizes:
        sizes = [int(s) for s in args.overhead_sizes.split(",") if s]
        if args.smoke:
            sizes = [8]
        steps_for = (lambda s: 12) if args.smoke else (lambda s: 50 if s <= 16 else (24 if s <= 32 else 12))
        overhead = measure_overhead(bench, sizes, args.frames, args.cfg, steps_for, log=log)
    import torch
    comfy_version = None
    try:
        comfy_version = harness.find_comfyui().version
    except Exception:  # noqa: BLE001
        pass
    cmd = "python3 scripts/benchmark.py" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])))
    results = {
        "meta": {
            "command": cmd.strip(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "git_commit": _git_commit(), "model": bench.model_info, "blocks_per_forward": bench.blocks_per_forward,
            "threads": args.threads, "torch": torch.__version__, "comfyui_dir": comfyui_dir,
            "comfyui_version": comfy_version, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "sampler": "euler", "scheduler": "simple", "smoke": args.smoke,
            "metrics": "torchmetrics.functional.image peak_signal_noise_ratio (whole clip, data_range 1) and "
                       "structural_similarity_index_measure (per frame, mean), decoded frames in [0, 1]",
        },
        "scenarios": scenarios,
        "overhead": overhead,
    }
    for name, scen in scenarios.items():
        scen["analysis"] = analyze(scen, overhead if name == "main" else [])
    results["meta"]["runtime_seconds"] = time.perf_counter() - t_start
    (out_dir / "results.json").write_text(json.dumps(_json_clean(results), indent=1, allow_nan=False) + "\n")
    write_markdown(results, out_dir / "results.md")
    pngs = write_plots(results, out_dir)
    print_summary(results, log=log)
    log(f"\nwrote {out_dir / 'results.json'}, {out_dir / 'results.md'}, " + ", ".join(str(out_dir / p) for p in pngs))
    log(f"total {results['meta']['runtime_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
