"""Glue between ComfyUI's public extension points and the per-run core state.

Only public extension points are used:
* ``OUTER_SAMPLE`` wrapper (key ``precisecache``): creates a fresh :class:`PreciseCacheRun` per
  sampling run on a clone of the guider's model options, validates the latent against the
  settings before the first step, and always finishes the run (report, log line, buffers freed),
  also when sampling fails or is interrupted.
* ``DIFFUSION_MODEL`` wrapper (same key): per denoiser call, runs the trial forward at the first
  call of each sampler step, answers skipped steps from the cache, stores computed predictions.
* ``SAMPLER_SAMPLE`` wrapper (same key): once the conditioning is processed and before the first
  step, refuses inputs the model family's trial cannot make small, by name.
* ``patches_replace["dit"][(block_type, i)]``: one :class:`BlockPatch` per transformer block, which
  chains to a patch another node installed before it instead of overwriting it.

What a model family's forward inputs and blocks look like comes from its adapter
(``precisecache_core/families``); nothing here guesses shapes.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque

import torch

import comfy.model_patcher
import comfy.patcher_extension

from ..precisecache_core import BlockCacheConfig, LFCacheConfig, PreciseCacheRun, RunReport
from ..precisecache_core.families import BlockSpec, FamilyAdapter
from ..precisecache_core.rank_sync import for_run as rank_sync_for_run, sample_group_of
from ..precisecache_core.trial import check_factors_fit
from ..precisecache_core.trial_inputs import (MODEL_GEOMETRY_KEY, TrialInputError, cond_index, record_model_geometry,
                                              select_stream, trial_call)
from .models import model_support
from .presets import calibration_notes

WRAPPER_KEY = "precisecache"
SETUP_KEY = "precisecache_setup"
RUN_KEY = "precisecache_run"
PLAN_KEY = "precisecache_call"
TRIAL_KEY = "precisecache_trial"
FAMILY_KEY = "precisecache_family"

log = logging.getLogger("PreciseCache")


class ReportLog:
    """Reports of the runs made with one patched model (shared by its clones)."""

    def __init__(self, keep: int = 32):
        self.reports: deque[RunReport] = deque(maxlen=keep)
        self.runs = 0

    def record(self, report: RunReport) -> None:
        self.runs += 1
        self.reports.append(report)

    @property
    def latest(self) -> RunReport | None:
        return self.reports[-1] if self.reports else None

    def __deepcopy__(self, memo) -> "ReportLog":
        return self  # clones of a patched model report into the same log


@dataclasses.dataclass(frozen=True)
class PreciseCacheSetup:
    """What the nodes configured on a model: stored in its ``transformer_options``."""

    lf: LFCacheConfig | None = None
    block: BlockCacheConfig | None = None
    reports: ReportLog = dataclasses.field(default_factory=ReportLog)

    def describe(self) -> str:
        parts = []
        if self.lf:
            lf = self.lf
            rule = f"speed target {lf.speed_target:g}x" if lf.speed_target else f"alpha={lf.alpha:g}"
            if lf.calibration is not None:
                rule = f"calibrated preset '{lf.calibration.name}' = {rule}"
            parts.append(f"LFCache {rule} metric={lf.metric} trial={'x'.join(map(str, lf.trial_downsample))} "
                         f"{lf.trial_operator} on {lf.trial_streams} streams radius={lf.lowpass_radius:g} window={lf.start_percent:g}-{lf.end_percent:g} reuse={lf.reuse}")
        if self.block:
            b = self.block
            mode = f" threshold={b.change_threshold:g}" if b.mode == "trial_guided" else ""
            parts.append(f"BlockCache {b.mode}{mode} pivotal={b.pivotal_ratio:g} refresh={b.refresh_interval} "
                         f"window={b.start_percent:g}-{b.end_percent:g} ranking={b.ranking}")
        return "; ".join(parts) or "off"

    def __deepcopy__(self, memo) -> "PreciseCacheSetup":
        return self  # immutable


def get_setup(model) -> PreciseCacheSetup | None:
    return model.model_options.get("transformer_options", {}).get(SETUP_KEY)


COMPILE_WRAPPER_KEY = "torch.compile"
"""Key of ComfyUI's compile wrapper (``comfy_api.torch_helpers.torch_compile.COMPILE_KEY``)."""


class CompileConflictError(ValueError):
    pass


def _compiled_keys(wrapper) -> list[str] | None:
    """The module paths a ``set_torch_compile_wrapper`` wrapper compiles (from its closure), or None."""
    for cell in getattr(wrapper, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            return sorted(value)
    return None


def check_not_compiled_whole(model) -> None:
    """Refuse a model whose whole diffusion_model is torch.compile'd (TorchCompileModel).

    Our DIFFUSION_MODEL wrapper and block patches run inside ``diffusion_model.forward``: compiled
    as a whole, torch.compile either recompiles at every step (their Python state changes each
    call) or, with TorchCompileModel's guard filter on transformer_options, replays stale branches
    (seen: KeyError). Compiling only the transformer blocks ('diffusion_model.blocks.N', as
    block-wise compile nodes do) keeps our code outside the compiled regions and is allowed.
    """
    found = None
    for where, module in (("object patch", model.object_patches.get("diffusion_model")),
                          ("attribute", getattr(model.model, "diffusion_model", None))):
        if isinstance(module, torch.nn.Module) and getattr(module, "_orig_mod", None) is not None:
            found = f"diffusion_model is a torch.compile'd module ({where})"
    for wrapper in model.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_WRAPPER_KEY):
        keys = _compiled_keys(wrapper)
        if keys is None or any(not k.startswith("diffusion_model.") for k in keys):
            found = f"torch.compile wrapper over {keys if keys is not None else 'unknown modules'}"
    if found:
        raise CompileConflictError(
            f"PreciseCache cannot run inside a torch.compile of the whole diffusion model ({found}; e.g. the "
            f"TorchCompileModel node): its per-step decisions and block patches would be compiled into the model, "
            f"which recompiles at every step or replays stale decisions. Remove TorchCompileModel, or compile only "
            f"the transformer blocks (set_torch_compile_wrapper with keys 'diffusion_model.blocks.N', as block-wise "
            f"compile nodes do), which works with PreciseCache.")


def apply_setup(model, *, lf: LFCacheConfig | None = None, block: BlockCacheConfig | None = None):
    """Clone ``model`` and add LFCache and/or BlockCache to it; the input model is left untouched.

    Raises :class:`models.UnsupportedModelError` for models other than Wan, HunyuanVideo, LTX-Video,
    and :class:`CompileConflictError` for a model compiled as a whole (TorchCompileModel).
    """
    check_not_compiled_whole(model)
    support = model_support(model)
    patched = model.clone()
    old = get_setup(patched)
    setup = PreciseCacheSetup(lf=lf or (old.lf if old else None), block=block or (old.block if old else None),
                              reports=old.reports if old else ReportLog())
    patched.model_options.setdefault("transformer_options", {})[SETUP_KEY] = setup
    wrappers = comfy.patcher_extension.WrappersMP
    if not patched.get_wrappers(wrappers.OUTER_SAMPLE, WRAPPER_KEY):
        patched.add_wrapper_with_key(wrappers.OUTER_SAMPLE, WRAPPER_KEY, outer_sample_wrapper)
        patched.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, WRAPPER_KEY, diffusion_model_wrapper)
        patched.add_wrapper_with_key(wrappers.SAMPLER_SAMPLE, WRAPPER_KEY, sampler_sample_wrapper)
    if block is not None:
        _install_block_patches(patched, support.blocks)
    return patched


def _install_block_patches(model, blocks: dict[tuple[str, int], BlockSpec]) -> None:
    dit = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
    for (block_type, index), spec in blocks.items():
        previous = dit.get((block_type, index))
        if isinstance(previous, BlockPatch):
            continue
        model.set_model_patch_replace(BlockPatch((block_type, index), spec, previous), "dit", block_type, index)


class BlockPatch:
    """Replacement for one transformer block: computes it, or adds its cached residual. In the trial
    forward it only computes, recording the block's trial residual for trial-guided BlockCache."""

    def __init__(self, block_key: tuple[str, int], spec: BlockSpec, previous=None):
        self.block_key = block_key
        self.in_place_tensors = spec.tensors if spec.in_place else ()
        self.previous = previous

    def __call__(self, args: dict, extra: dict) -> dict:
        if self.previous is not None:
            def compute(a: dict) -> dict:
                return self.previous(a, extra)
        else:
            compute = extra["original_block"]
        options = args.get("transformer_options") or {}
        plan = options.get(PLAN_KEY)
        run: PreciseCacheRun | None = options.get(RUN_KEY)
        if plan is None or run is None or plan.block_phase is None:
            if run is not None and options.get(TRIAL_KEY) and run.guides_blocks:
                return run.trial_block(self.block_key, args, compute, self.in_place_tensors)
            return compute(args)
        return run.run_block(plan, self.block_key, args, compute, self.in_place_tensors)

    def __deepcopy__(self, memo) -> "BlockPatch":
        return self  # immutable: clones share it


# -- wrappers ---------------------------------------------------------------------------------
def outer_sample_wrapper(executor, *args, **kwargs):
    """Create the run's state, validate the latent, always finish and free it."""
    guider = executor.class_obj
    original_options = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(original_options)
    options = guider.model_options["transformer_options"]
    setup: PreciseCacheSetup = options[SETUP_KEY]
    noise, sigmas = args[0], args[3]
    run = None
    completed = False
    try:
        check_not_compiled_whole(guider.model_patcher)  # TorchCompileModel may come after our nodes
        support = model_support(guider.model_patcher)
        latent_shape = tuple(noise.shape)
        if setup.lf is not None and setup.lf.skips:
            check_factors_fit(setup.lf.trial_downsample, latent_shape)
        model_sampling = guider.model_patcher.get_model_object("model_sampling")
        run = PreciseCacheRun(setup.lf, setup.block, sigmas.detach().float().cpu().tolist(), latent_shape,
                              model_sampling.percent_to_sigma, blocks_per_forward=len(support.block_keys),
                              model_name=support.name, settings=setup.describe(),
                              patch_size=support.family.patch_size,
                              sync=rank_sync_for_run(sample_group_of(options), support.block_keys))
        options[RUN_KEY] = run
        options[FAMILY_KEY] = support.family
        run.report.notes.extend(calibration_notes(setup.lf, guider.model_patcher, latent_shape, run.clock.steps,
                                                  args[2] if len(args) > 2 else None, getattr(guider, "cfg", None)))
        for note in run.report.notes:
            log.info("PreciseCache - %s", note)
        result = executor(*args, **kwargs)
        completed = True
        return result
    finally:
        if run is not None:  # also when the run failed or was interrupted: free everything, keep a report
            _finish_run(run, setup, interrupted=not completed)
        options.pop(RUN_KEY, None)
        options.pop(FAMILY_KEY, None)
        guider.model_options = original_options


def _finish_run(run: PreciseCacheRun, setup: PreciseCacheSetup, interrupted: bool) -> None:
    """Close the run (buffers freed), record its report and log it, like ComfyUI's own caches."""
    start_notes = len(run.report.notes)
    report = run.finish(interrupted=interrupted)
    setup.reports.record(report)
    log.info("%s%s", report.summary_line(), " [run did not complete]" if interrupted else "")
    for note in report.notes[start_notes:]:  # e.g. the memory budget was reached: said once per run
        log.warning("PreciseCache - %s", note)


def _transformer_options(args: tuple, kwargs: dict) -> dict | None:
    """Find the per-call ``transformer_options`` dict (a keyword, or the last positional dict holding it)."""
    if isinstance(kwargs.get("transformer_options"), dict):
        return kwargs["transformer_options"]
    for value in reversed(args[1:]):
        if isinstance(value, dict) and ("sigmas" in value or RUN_KEY in value):
            return value
    return None


def sampler_sample_wrapper(executor, *args, **kwargs):
    """Before the first step, with the conditioning processed: refuse what the trial cannot make small."""
    guider = args[0] if args else None
    extra_args = args[2] if len(args) > 2 else kwargs.get("extra_args", {})
    options = (extra_args or {}).get("model_options", {}).get("transformer_options", {})
    run: PreciseCacheRun | None = options.get(RUN_KEY)
    family: FamilyAdapter | None = options.get(FAMILY_KEY)
    if run is not None and family is not None and run.lf_active:
        names = set()
        for conds in (getattr(guider, "conds", None) or {}).values():
            for cond in conds or ():
                names.update((cond.get("model_conds") or {}).keys())
        refused = family.refused_trial_inputs(names)
        if refused:
            raise TrialInputError(
                f"LFCache cannot run its trial forward on this {family.name} conditioning: input "
                f"{', '.join(refused)}. Remove LFCache (PreciseCache) from this graph, or set its preset to custom "
                f"with speed_target 0 and alpha 0; BlockCache alone works with these inputs.")
        if family.model_geometry:  # e.g. LTX-Video's coordinate scales, for the guide frames' coordinates
            patcher = getattr(guider, "model_patcher", None)
            if patcher is not None:
                options[MODEL_GEOMETRY_KEY] = record_model_geometry(
                    family, patcher.get_model_object("diffusion_model"))
    return executor(*args, **kwargs)


def _trial_streams(streams: str, family: FamilyAdapter, args: tuple, kwargs: dict,
                   options: dict) -> tuple[tuple, dict, dict]:
    """The call's inputs for the trial: the cond stream alone of a batched cond+uncond call when
    ``streams`` is 'cond' (half the trial's cost; the decision follows the conditional prediction),
    else all streams. Returns (args, kwargs, transformer_options of those inputs)."""
    cond_or_uncond = options.get("cond_or_uncond") or ()
    index = cond_index(cond_or_uncond)
    if streams != "cond" or len(cond_or_uncond) < 2 or index is None:
        return args, kwargs, options
    stream_args, stream_kwargs = select_stream(family, args, kwargs, len(cond_or_uncond), index)
    return stream_args, stream_kwargs, _transformer_options(stream_args, stream_kwargs) or options


def _trial_options(options: dict) -> dict:
    trial_options = {k: v for k, v in options.items() if k != PLAN_KEY}
    trial_options[TRIAL_KEY] = True
    return trial_options


def diffusion_model_wrapper(executor, *args, **kwargs):
    """One denoiser call: step and slot → trial and decision (a step's first call) → reuse, or block plan,
    full forward and store."""
    options = _transformer_options(args, kwargs)
    run: PreciseCacheRun | None = options.get(RUN_KEY) if options is not None else None
    if run is None or options.get(TRIAL_KEY) or "sigmas" not in options:
        return executor(*args, **kwargs)
    x = args[0]
    sigma = float(options["sigmas"].reshape(-1)[0])
    plan = run.begin_call(options.get("uuids") or ("stream",), sigma, batch=int(x.shape[0]))
    if plan.needs_trial:
        _trial_and_decision(executor, run, plan, args, kwargs, options)
    if run.should_skip(plan):
        cached = run.reuse(plan, x)
        if cached is not None:
            return cached
    run.plan_blocks(plan)
    options[PLAN_KEY] = plan
    timing = run.needs_timing
    started = _synchronized_time(x) if timing else 0.0
    try:
        prediction = executor(*args, **kwargs)
    finally:
        options.pop(PLAN_KEY, None)
    if timing:
        run.record_seconds(plan, _synchronized_time(x) - started, trial=False)
    run.store(plan, x, prediction)
    return prediction


def _trial_and_decision(executor, run: PreciseCacheRun, plan, args: tuple, kwargs: dict, options: dict) -> None:
    """Run the trial forward on the call's inputs made small and take the step's decision from it. A trial
    that cannot be made or run turns LFCache off for the run with a note (this step is computed): never a crash."""
    x = args[0]
    family: FamilyAdapter = options[FAMILY_KEY]
    try:
        stream_args, stream_kwargs, stream_options = _trial_streams(run.lf.trial_streams, family, args, kwargs,
                                                                    options)
        trial_args, trial_kwargs = trial_call(family, stream_args, stream_kwargs, run.trial_factors,
                                              run.lf.trial_operator, _trial_options(stream_options))
    except TrialInputError as e:  # not foreseeable from the conditioning
        run.stop_lf(plan, f"LFCache is off for this run: its trial cannot take input {e}")
        log.warning("PreciseCache - LFCache is off for this run: its trial cannot take input %s", e)
        return
    timing = run.needs_timing
    started = _synchronized_time(x) if timing else 0.0
    try:
        with torch.no_grad():
            trial_prediction = executor(*trial_args, **trial_kwargs)
    except RuntimeError as e:  # a size this network cannot run small
        note = f"LFCache is off for this run: its trial forward failed on a {tuple(trial_args[0].shape)} latent ({e})"
        run.stop_lf(plan, note)
        log.warning("PreciseCache - %s", note)
        return
    run.decide(plan, trial_prediction)
    if timing:
        run.record_seconds(plan, _synchronized_time(x) - started, trial=True)


def _synchronized_time(x: torch.Tensor) -> float:
    """perf_counter after the device of ``x`` finished its queued work (only while a run measures
    the trial's time share: the first computed step and the first trial after it)."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter()
