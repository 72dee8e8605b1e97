"""LFCache node: step-wise caching decided by a cheap downsampled trial forward."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..precisecache_core import LFCACHE_PRESETS, LFCacheConfig
from ..precisecache_core.config import (DEFAULT_LFCACHE_PRESET, LF_METRICS, REUSE_MODES, SPEED_TARGET_RANGE,
                                        TRIAL_STREAMS)
from ..precisecache_core.trial import TRIAL_OPERATORS
from .hooks import apply_setup
from .inputs import CATEGORY, model_input, validation_result, window_inputs
from .presets import calibrated_choices, calibrated_config, calibrated_name, choice_fingerprint, load_choice

PRESETS = [*LFCACHE_PRESETS, "custom"]
PRESET_HELP = ("Each preset asks for a share of the work, spent on the steps whose low-frequency change is "
               "largest: " + ", ".join(f"{name} {config.speed_target:g}x less work" for name, config in
                                       LFCACHE_PRESETS.items()) +
               " (Base: closest to uncached; Turbo: visibly lossless on the benchmark models; Flash: fastest). "
               "custom: use speed_target (or alpha when speed_target is 0). "
               "calibrated: <name>: the speed target PreciseCache Calibrate chose on your own setup (the report "
               "says when this run's setup differs).")


def preset_options() -> list[str]:
    """The built-in presets, 'custom', then the saved calibrated presets (read at every call)."""
    return [*PRESETS, *calibrated_choices()]


class LFCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheLFCache",
            display_name="LFCache (PreciseCache)",
            category=CATEGORY,
            description="Skips whole denoising steps whose low-frequency change is small, to reach a speed "
                        "target. Each step first runs the model on a downsampled latent (a cheap trial); the "
                        "steps whose low-frequency change is largest are computed, the others reuse the cached "
                        "prediction, within the work budget the target allows.",
            inputs=[
                model_input(),
                io.Combo.Input("preset", options=preset_options(), default=DEFAULT_LFCACHE_PRESET, tooltip=PRESET_HELP),
                io.Float.Input("speed_target", default=LFCACHE_PRESETS[DEFAULT_LFCACHE_PRESET].speed_target,
                               min=0.0, max=SPEED_TARGET_RANGE[1], step=0.1,
                               tooltip=f"Only with preset 'custom'. Times less work than uncached, "
                                       f"{SPEED_TARGET_RANGE[0]:g} to {SPEED_TARGET_RANGE[1]:g} (trial forwards "
                                       f"included), reached within a few percent on any model, sampler and step "
                                       f"count. 0 = expert mode: use alpha instead."),
                io.Float.Input("alpha", default=LFCacheConfig.alpha, min=0.0, max=2.0, step=0.01,
                               tooltip="Expert mode (preset 'custom' with speed_target 0): skip threshold as a "
                                       "fraction of the largest low-frequency difference seen; larger skips "
                                       "more, 0 never skips. How many steps it skips differs between models."),
                io.Int.Input("trial_downsample_t", default=2, min=1, max=16,
                             tooltip="Temporal pooling of the trial latent (latent frames per trial frame)."),
                io.Int.Input("trial_downsample_h", default=4, min=1, max=16,
                             tooltip="Height pooling of the trial latent. 2x4x4 (t,h,w) = 32x fewer tokens."),
                io.Int.Input("trial_downsample_w", default=4, min=1, max=16,
                             tooltip="Width pooling of the trial latent."),
                io.Float.Input("lowpass_radius", default=0.2, min=0.01, max=0.5, step=0.01,
                               tooltip="Radius of the circular low-pass mask as a fraction of min(height, width) "
                                       "of the trial latent (paper: 1/5 = 0.2). Allowed (0, 0.5]."),
                *window_inputs("skipping"),
                io.Int.Input("max_consecutive_skips", default=0, min=0, max=100, optional=True,
                             tooltip="Never skip more than this many steps in a row (0 = no limit)."),
                io.Combo.Input("reuse", options=list(REUSE_MODES), default="output", optional=True,
                               tooltip="What a skipped step returns: 'output' = the last computed prediction; "
                                       "'residual' = current input + (last prediction - its input)."),
                io.Combo.Input("trial_operator", options=list(TRIAL_OPERATORS), default="strided", optional=True,
                               tooltip="How the trial latent is made smaller: 'strided' keeps every n-th latent "
                                       "cell (keeps the noise level the model expects; measured better), "
                                       "'avg_pool' averages each window."),
                io.Combo.Input("metric", options=list(LF_METRICS), default=LFCacheConfig.metric, optional=True,
                               tooltip="What is compared with the threshold: 'accumulated' = the sum of the "
                                       "step-to-step low-frequency changes since the last computed step (the "
                                       "paper's; measured better), 'drift' = the change of this step's trial from "
                                       "the last computed step's trial."),
                io.Combo.Input("trial_streams", options=list(TRIAL_STREAMS), default=LFCacheConfig.trial_streams,
                               optional=True,
                               tooltip="With CFG, which streams the trial runs on: 'cond' = the conditional "
                                       "prediction alone (half the trial's cost; measured as good), 'all' = "
                                       "cond and uncond, as the model is called."),
                io.Boolean.Input("step_aside", default=LFCacheConfig.step_aside, optional=True,
                                 tooltip="When the trial's measured time would make sampling slower than "
                                         "uncached (tiny videos, where a forward's fixed costs dominate), compute "
                                         "every step and say so in the report."),
            ],
            outputs=[io.Model.Output(tooltip="The model with LFCache; connect it to any sampler.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        return validation_result(config_from_inputs, **kwargs)

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return choice_fingerprint(kwargs.get("preset"))  # a re-calibrated preset re-runs this node

    @classmethod
    def execute(cls, model, **inputs) -> io.NodeOutput:
        return io.NodeOutput(apply_setup(model, lf=config_from_inputs(**inputs)))


def config_from_inputs(preset: str = DEFAULT_LFCACHE_PRESET, speed_target: float | None = None,
                       alpha: float = LFCacheConfig.alpha, trial_downsample_t: int = 2, trial_downsample_h: int = 4,
                       trial_downsample_w: int = 4, **options) -> LFCacheConfig:
    """The validated LFCache config for the node's inputs (ValueError naming the bad input).

    ``options``: the remaining LFCacheConfig fields by name (window, skip limit, reuse, trial operator,
    metric); anything else (ComfyUI's hidden inputs) is ignored."""
    calibrated = calibrated_name(preset)
    if preset not in PRESETS and calibrated is None:
        raise ValueError(f"preset = {preset!r} is not allowed: choose one of {preset_options()}")
    if speed_target is None:
        speed_target = LFCACHE_PRESETS[DEFAULT_LFCACHE_PRESET].speed_target
    # the speed_target and alpha widgets are used only by 'custom', but a bad value is refused whatever
    # the preset (validate_inputs takes **kwargs, so ComfyUI's own min/max checks are skipped)
    LFCacheConfig(speed_target=speed_target, alpha=alpha).validate()
    if calibrated is not None:
        base = calibrated_config(load_choice(preset, "preset"))
    else:
        base = LFCACHE_PRESETS.get(preset, LFCacheConfig(speed_target=speed_target, alpha=alpha))
    fields = {f.name for f in dataclasses.fields(LFCacheConfig)} - {"speed_target", "alpha", "trial_downsample"}
    return dataclasses.replace(
        base, trial_downsample=(trial_downsample_t, trial_downsample_h, trial_downsample_w),
        **{k: v for k, v in options.items() if k in fields}).validate()
