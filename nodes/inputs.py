"""Node inputs shared by several PreciseCache nodes (one definition each)."""
from __future__ import annotations

from typing import Callable

from comfy_api.latest import io

CATEGORY = "sampling/PreciseCache"


def model_input() -> io.Model.Input:
    return io.Model.Input("model", tooltip="The diffusion model to accelerate (Wan 2.1/2.2, HunyuanVideo or "
                                           "LTX-Video). It is cloned: the input model is left untouched.")


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
