"""Node inputs shared by several PreciseCache nodes (one definition each)."""
from __future__ import annotations

from typing import Callable

from comfy_api.latest import io

from ..precisecache_core.calibration import MAX_STEPS

CATEGORY = "sampling/PreciseCache"


def model_input() -> io.Model.Input:
    return io.Model.Input("model", tooltip="The diffusion model to accelerate (Wan 2.1/2.2, HunyuanVideo or "
                                           "LTX-Video). It is cloned: the input model is left untouched.")


def ksampler_inputs(*, min_steps: int = 1, steps_tooltip: str, seed_tooltip: str, latent_tooltip: str) -> list:
    """KSampler's own inputs, seed to denoise, for the nodes that sample (Sampler, Calibrate)."""
    import comfy.samplers
    return [
        io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                     tooltip=seed_tooltip),
        io.Int.Input("steps", default=30, min=min_steps, max=MAX_STEPS, tooltip=steps_tooltip),
        io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="The sampling algorithm."),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                       tooltip="The scheduler: how noise levels are spread over the steps."),
        io.Conditioning.Input("positive", tooltip="What the video should contain."),
        io.Conditioning.Input("negative", tooltip="What the video should not contain."),
        io.Latent.Input("latent_image", tooltip=latent_tooltip),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Amount of denoising (1.0 = from pure noise)."),
    ]


def window_inputs(what: str) -> list:
    """start_percent / end_percent: where in the whole denoising schedule ``what`` may act."""
    return [
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip=f"Denoising progress (0 = first step, 1 = end, over the whole schedule, "
                               f"not per sampler) from which {what} may act. Must be below end_percent."),
        io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip=f"Denoising progress after which {what} stops acting and every step is "
                               f"computed. Must be above start_percent."),
    ]



def validation_result(build_config: Callable, **inputs) -> bool | str:
    """validate_inputs body: True, or the ValueError message naming the bad input and its range."""
    try:
        build_config(**inputs)
    except ValueError as error:
        return str(error)
    return True
