"""PreciseCache Sampler: KSampler with a PreciseCache preset applied, returning the run report."""
from __future__ import annotations

import json

import comfy.samplers
import nodes as comfy_nodes
from comfy_api.latest import io

from ..precisecache_core import SAMPLER_PRESETS
from ..precisecache_core.config import DEFAULT_LFCACHE_PRESET
from ..precisecache_core.trial import check_factors_fit
from .hooks import apply_setup, get_setup
from .inputs import CATEGORY

PRESET_HELP = ("LFCache speed targets: " + ", ".join(
    f"{name} {lf.speed_target:g}x less work" for name, (lf, block) in SAMPLER_PRESETS.items() if lf and not block) +
    " (Base: closest to uncached; Turbo: visibly lossless on the benchmark models; Flash: fastest). "
    "paper Flash: the paper's alpha 0.5 + BlockCache 40% pivotal, refresh 3 (for deep models). off: plain KSampler.")


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
                io.Combo.Input("preset", options=list(SAMPLER_PRESETS), default=DEFAULT_LFCACHE_PRESET,
                               tooltip=PRESET_HELP),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.Int.Input("steps", default=30, min=1, max=10000,
                             tooltip="Denoising steps. Schedules of 8 steps or fewer are never cached."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="The sampling algorithm."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                               tooltip="The scheduler: how noise levels are spread over the steps."),
                io.Conditioning.Input("positive", tooltip="What the video should contain."),
                io.Conditioning.Input("negative", tooltip="What the video should not contain."),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (e.g. an empty video latent)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Amount of denoising (1.0 = from pure noise)."),
            ],
            outputs=[
                io.Latent.Output(tooltip="The denoised latent."),
                io.String.Output(display_name="report", tooltip="What the cache did in this run."),
                io.String.Output(display_name="report_json", tooltip="The same report as JSON."),
            ],
        )

    @classmethod
    def execute(cls, model, preset: str, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                positive, negative, latent_image, denoise: float) -> io.NodeOutput:
        if preset not in SAMPLER_PRESETS:
            raise ValueError(f"preset = {preset!r} is not allowed: choose one of {list(SAMPLER_PRESETS)}")
        lf, block = SAMPLER_PRESETS[preset]
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
