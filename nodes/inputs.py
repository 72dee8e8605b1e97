"""Node inputs shared by several PreciseCache nodes (one definition each), and the mapping between a
config's fields and the node inputs that show them (:func:`config_inputs`, :func:`config_values`)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from comfy_api.latest import io

from ..precisecache_core.calibration import MAX_STEPS
from ..precisecache_core.settings import Setting, settings_of

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


def config_inputs(defaults: Any, *names: str, tooltips: Mapping[str, str] | None = None) -> list[io.Input]:
    """The node inputs of the config fields ``names``, in that order, each from its field's setting
    (precisecache_core.settings): kind, range, step, choices, tooltip (``tooltips`` may replace one) and
    optional flag; defaults from the config ``defaults`` (the node's default setup). A tuple field is
    one input per item (trial_downsample: trial_downsample_t/h/w)."""
    specs = settings_of(type(defaults))
    inputs = []
    for name in names:
        spec, default = specs[name], getattr(defaults, name)
        if spec.items:
            inputs += [_input(item, value, spec, tooltip) for (item, tooltip), value in zip(spec.items, default)]
        else:
            inputs.append(_input(name, default, spec, (tooltips or {}).get(name, spec.tooltip)))
    return inputs


def _input(name: str, default: Any, spec: Setting, tooltip: str) -> io.Input:
    shown = dict(default=default, tooltip=tooltip, optional=spec.optional)
    if spec.choices:
        return io.Combo.Input(name, options=list(spec.choices), **shown)
    if isinstance(default, bool):
        return io.Boolean.Input(name, **shown)
    if spec.integer:
        return io.Int.Input(name, min=spec.widget_min, max=spec.high, step=spec.step, **shown)
    return io.Float.Input(name, min=spec.widget_min, max=spec.high, step=spec.step, **shown)


def config_values(defaults: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields that have settings, from the node inputs of :func:`config_inputs` (a tuple
    field from its item inputs); a field whose inputs are not given keeps its value in ``defaults``.
    Other inputs (the model, ComfyUI's hidden inputs) are ignored."""
    values = {}
    for name, spec in settings_of(type(defaults)).items():
        default = getattr(defaults, name)
        if spec.items:
            values[name] = tuple(inputs.get(n, d) for (n, _), d in zip(spec.items, default))
        else:
            values[name] = inputs.get(name, default)
    return values


def validation_result(check: Callable, *args, **kwargs) -> bool | str:
    """validate_inputs body: True, or the ValueError message of ``check(*args, **kwargs)`` (it names
    the bad input and what is allowed)."""
    try:
        check(*args, **kwargs)
    except ValueError as error:
        return str(error)
    return True
