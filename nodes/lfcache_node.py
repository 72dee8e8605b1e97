"""LFCache node: step-wise caching decided by a cheap downsampled trial forward."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..precisecache_core import LFCACHE_PRESETS, LFCacheConfig
from ..precisecache_core.config import DEFAULT_LFCACHE_PRESET, check_inputs
from .hooks import apply_setup
from .inputs import CATEGORY, config_inputs, config_values, model_input, validation_result
from .presets import choice_fingerprint, preset_choices, resolve_choice

PRESETS = [*LFCACHE_PRESETS, "custom"]
PRESET_HELP = ("Each preset asks for a share of the work, spent on the steps whose low-frequency change is "
               "largest: " + ", ".join(f"{name} {config.speed_target:g}x less work" for name, config in
                                       LFCACHE_PRESETS.items()) +
               " (Base: closest to uncached; Turbo: visibly lossless on the benchmark models; Flash: fastest). "
               "custom: use speed_target (or alpha when speed_target is 0). "
               "calibrated: <name>: the speed target PreciseCache Calibrate chose on your own setup (the report "
               "says when this run's setup differs).")
DEFAULT = LFCACHE_PRESETS[DEFAULT_LFCACHE_PRESET]
"""The node's defaults: the default preset's config."""
INPUT_FIELDS = ("speed_target", "alpha", "trial_downsample", "lowpass_radius", "start_percent", "end_percent",
                "max_consecutive_skips", "reuse", "trial_operator", "metric", "trial_streams", "step_aside")
"""The config fields the node shows, in the node's input order (after model and preset)."""


def preset_options() -> list[str]:
    """The built-in presets, 'custom', then the saved calibrated presets (read at every call)."""
    return preset_choices(PRESETS)


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
                *config_inputs(DEFAULT, *INPUT_FIELDS),
            ],
            outputs=[io.Model.Output(tooltip="The model with LFCache; connect it to any sampler.")],
        )

    @classmethod
    def validate_inputs(cls, preset=None, speed_target=None, start_percent=None, end_percent=None) -> bool | str:
        """What ComfyUI's own checks against the schema cannot judge (it leaves the inputs named here to us
        and checks every other one): the preset (a calibrated one must load), speed_target (0 or in its
        range), start_percent < end_percent. None: an input linked from another node, checked when the node
        runs."""
        def check() -> None:
            check_inputs(LFCacheConfig, dict(speed_target=speed_target, start_percent=start_percent,
                                             end_percent=end_percent))
            if preset is not None:
                preset_config(preset, DEFAULT)
        return validation_result(check)

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return choice_fingerprint(kwargs.get("preset"))  # a re-calibrated preset re-runs this node

    @classmethod
    def execute(cls, model, **inputs) -> io.NodeOutput:
        return io.NodeOutput(apply_setup(model, lf=config_from_inputs(**inputs)))


def preset_config(preset: str, custom: LFCacheConfig) -> LFCacheConfig:
    """The config ``preset`` stands for (``custom`` for 'custom'); a ValueError naming the input for an
    unknown preset or a missing or damaged calibrated one."""
    return resolve_choice(preset, {**LFCACHE_PRESETS, "custom": custom}, lambda lf: lf)


def config_from_inputs(preset: str = DEFAULT_LFCACHE_PRESET, **inputs) -> LFCacheConfig:
    """The validated LFCache config for the node's inputs (ValueError naming the bad input).

    ``inputs``: the node's inputs by name (:data:`INPUT_FIELDS`, trial_downsample as its three); one not
    given takes the node's default; anything else (ComfyUI's hidden inputs) is ignored. The preset sets
    speed_target and alpha unless it is 'custom'; their inputs are checked whatever the preset."""
    values = config_values(DEFAULT, inputs)
    custom = LFCacheConfig(speed_target=values.pop("speed_target"), alpha=values.pop("alpha")).validate()
    return dataclasses.replace(preset_config(preset, custom), **values).validate()
