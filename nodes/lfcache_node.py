"""LFCache node: step-wise caching decided by a cheap downsampled trial forward."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..precisecache_core import LFCACHE_PRESETS, LFCacheConfig
from ..precisecache_core.config import REUSE_MODES
from ..precisecache_core.trial import TRIAL_OPERATORS
from .hooks import apply_setup
from .inputs import CATEGORY, model_input, validation_result, window_inputs

PRESETS = ["Base", "Turbo", "custom"]


class LFCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheLFCache",
            display_name="LFCache (PreciseCache)",
            category=CATEGORY,
            description="Skips whole denoising steps whose low-frequency change is small. Each step first runs the "
                        "model on a downsampled latent (a cheap trial); while the accumulated low-frequency "
                        "difference stays below alpha x its largest value, the cached prediction is reused.",
            inputs=[
                model_input(),
                io.Combo.Input("preset", options=PRESETS, default="Base",
                               tooltip="Base: alpha 0.5 (best quality). Turbo: alpha 0.7 (more skips). "
                                       "custom: use the alpha input below."),
                io.Float.Input("alpha", default=0.5, min=0.0, max=2.0, step=0.01,
                               tooltip="Only with preset 'custom'. Skip threshold as a fraction of the largest "
                                       "low-frequency difference seen: larger skips more; 0 never skips."),
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
            ],
            outputs=[io.Model.Output(tooltip="The model with LFCache; connect it to any sampler.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        return validation_result(config_from_inputs, **kwargs)

    @classmethod
    def execute(cls, model, preset: str, alpha: float, trial_downsample_t: int, trial_downsample_h: int,
                trial_downsample_w: int, lowpass_radius: float, start_percent: float, end_percent: float,
                max_consecutive_skips: int = 0, reuse: str = "output",
                trial_operator: str = "strided") -> io.NodeOutput:
        config = config_from_inputs(preset=preset, alpha=alpha, trial_downsample_t=trial_downsample_t,
                                    trial_downsample_h=trial_downsample_h, trial_downsample_w=trial_downsample_w,
                                    lowpass_radius=lowpass_radius, start_percent=start_percent,
                                    end_percent=end_percent, max_consecutive_skips=max_consecutive_skips,
                                    reuse=reuse, trial_operator=trial_operator)
        return io.NodeOutput(apply_setup(model, lf=config))


def config_from_inputs(preset: str = "Base", alpha: float = 0.5, trial_downsample_t: int = 2,
                       trial_downsample_h: int = 4, trial_downsample_w: int = 4, lowpass_radius: float = 0.2,
                       start_percent: float = 0.0, end_percent: float = 1.0, max_consecutive_skips: int = 0,
                       reuse: str = "output", trial_operator: str = "strided", **_ignored) -> LFCacheConfig:
    """The validated LFCache config for the node's inputs (ValueError naming the bad input)."""
    if preset not in PRESETS:
        raise ValueError(f"preset = {preset!r} is not allowed: choose one of {PRESETS}")
    # the alpha widget is used only by 'custom', but a bad value is refused whatever the preset
    # (validate_inputs takes **kwargs, so ComfyUI's own min/max checks are skipped for every input)
    LFCacheConfig(alpha=alpha).validate()
    base = LFCACHE_PRESETS.get(preset, LFCacheConfig(alpha=alpha))
    return dataclasses.replace(
        base, trial_downsample=(trial_downsample_t, trial_downsample_h, trial_downsample_w),
        lowpass_radius=lowpass_radius, start_percent=start_percent, end_percent=end_percent,
        max_consecutive_skips=max_consecutive_skips, reuse=reuse, trial_operator=trial_operator).validate()
