"""PreciseCache Sampler: KSampler with a PreciseCache preset applied, returning the run report."""
from __future__ import annotations

import json

import nodes as comfy_nodes
from comfy_api.latest import io

from ..precisecache_core import SAMPLER_PRESETS
from ..precisecache_core.config import DEFAULT_LFCACHE_PRESET
from ..precisecache_core.trial import check_factors_fit
from .hooks import apply_setup, get_setup
from .inputs import CATEGORY, ksampler_inputs, validation_result
from .presets import choice_fingerprint, preset_choices, resolve_choice

PRESET_HELP = ("LFCache speed targets: " + ", ".join(
    f"{name} {lf.speed_target:g}x less work" for name, (lf, block) in SAMPLER_PRESETS.items() if lf and not block) +
    " (Base: closest to uncached; Turbo: visibly lossless on the benchmark models; Flash: fastest). "
    "paper Flash: the paper's alpha 0.5 + BlockCache 40% pivotal, refresh 3 (for deep models). off: plain KSampler. "
    "calibrated: <name>: the speed target PreciseCache Calibrate chose on your own setup (LFCache alone).")


def preset_options() -> list[str]:
    """The built-in presets, then the saved calibrated presets (read at every call)."""
    return preset_choices(SAMPLER_PRESETS)


def preset_configs(preset: str):
    """(LFCache config or None, BlockCache config or None) of a preset (ValueError naming the input)."""
    return resolve_choice(preset, SAMPLER_PRESETS, lambda lf: (lf, None))


class PreciseCacheSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheSampler",
            display_name="PreciseCache Sampler",
            category=CATEGORY,
            description="KSampler with PreciseCache applied in one node. " + PRESET_HELP,
            inputs=[
                io.Model.Input("model", tooltip="Wan 2.1/2.2, HunyuanVideo or LTX-Video model."),
                io.Combo.Input("preset", options=preset_options(), default=DEFAULT_LFCACHE_PRESET,
                               tooltip=PRESET_HELP),
                *ksampler_inputs(seed_tooltip="The random seed used for creating the noise.",
                                 steps_tooltip="Denoising steps. Schedules of 8 steps or fewer are never cached.",
                                 latent_tooltip="The latent to denoise (e.g. an empty video latent)."),
            ],
            outputs=[
                io.Latent.Output(tooltip="The denoised latent."),
                io.String.Output(display_name="report", tooltip="What the cache did in this run."),
                io.String.Output(display_name="report_json", tooltip="The same report as JSON."),
            ],
        )

    @classmethod
    def validate_inputs(cls, preset=None) -> bool | str:
        """A missing or damaged calibrated preset is refused before the prompt runs, naming its file."""
        return True if preset is None else validation_result(preset_configs, preset=preset)

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return choice_fingerprint(kwargs.get("preset"))  # a re-calibrated preset re-runs this node

    @classmethod
    def execute(cls, model, preset: str, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                positive, negative, latent_image, denoise: float) -> io.NodeOutput:
        lf, block = preset_configs(preset)
        if lf is not None:
            check_factors_fit(lf.trial_downsample, tuple(latent_image["samples"].shape))
        patched = apply_setup(model, lf=lf, block=block) if (lf or block) else model
        (latent,) = comfy_nodes.common_ksampler(patched, seed, steps, cfg, sampler_name, scheduler, positive,
                                                negative, latent_image, denoise=denoise)
        setup = get_setup(patched)
        report = setup.reports.latest if setup and (lf or block) else None
        text = report.to_text() if report else "PreciseCache off: plain sampling."
        data = json.dumps(report.to_dict() if report else {"preset": "off"})
        return io.NodeOutput(latent, text, data, ui={"text": [text]})
