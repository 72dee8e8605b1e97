"""PreciseCache Calibrate: measure LFCache's quality and speed on the user's own setup, save the best
speed target for a quality floor as a named preset.

One uncached sampling run, then one per speed target (LFCache through the pack's own ``apply_setup``,
nothing else changed); each output is compared with the uncached one (PSNR, SSIM: on the decoded
frames when a VAE is connected, else on the latent). Wall time is the sampling loop's (a
``SAMPLER_SAMPLE`` wrapper: model loading, conditioning and decoding are not in it). The choice and
the table come from :mod:`precisecache_core.calibration`, the file from
:mod:`precisecache_core.preset_store` (via :mod:`.presets`).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import time

import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import nodes as comfy_nodes
from comfy_api.latest import io, ui

from ..precisecache_core import LFCacheConfig
from ..precisecache_core.calibration import (DEFAULT_SPEED_TARGETS, QUALITY_FLOOR_RANGE, CalibrationRow,
                                             choose, format_psnr, format_table, plan_calibration)
from ..precisecache_core.config import FEW_STEP_LIMIT
from ..precisecache_core.preset_origin import RecordedSetup
from ..precisecache_core.preset_store import CALIBRATED_PREFIX, NAME_RULE, CalibratedPreset
from ..precisecache_core.quality import compare
from ..precisecache_core.trial import check_factors_fit
from .calibration_image import calibration_image_tensor
from .hooks import apply_setup, get_setup
from .inputs import CATEGORY, ksampler_inputs, validation_result
from .presets import choice_fingerprint, model_identity, sampler_function_name, store

TIMER_KEY = "precisecache_calibrate_timer"
DEFAULT_FLOOR_DB = 35.0

log = logging.getLogger("PreciseCache")


class CalibrateNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        low, high = QUALITY_FLOOR_RANGE
        return io.Schema(
            node_id="PreciseCacheCalibrate",
            display_name="PreciseCache Calibrate",
            category=CATEGORY,
            description="Runs your sampler once uncached and once per speed target with LFCache, measures each "
                        "result against the uncached one (PSNR, SSIM) and the sampling time, shows the quality-vs-"
                        "speed curve and a table, and saves the speed target that saves the most work while its PSNR "
                        "stays at or above your quality floor as a named preset, which LFCache (PreciseCache) and PreciseCache Sampler "
                        "then offer as 'calibrated: <name>'.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model as loaded, without LFCache or BlockCache (Wan "
                                                "2.1/2.2, HunyuanVideo, HunyuanVideo 1.5 or LTX-Video)."),
                *ksampler_inputs(min_steps=FEW_STEP_LIMIT + 1, seed_tooltip="The random seed; every run of the "
                                                                             "calibration uses it.",
                                 steps_tooltip=f"Denoising steps, {FEW_STEP_LIMIT + 1} or more (schedules of "
                                               f"{FEW_STEP_LIMIT} steps or fewer are never cached).",
                                 latent_tooltip="The latent to denoise, at the size you will generate."),
                io.String.Input("speed_targets", default=DEFAULT_SPEED_TARGETS,
                                tooltip="LFCache speed targets to measure (times less work than uncached), separated "
                                        "by commas; each is one more sampling run."),
                io.Float.Input("quality_floor_db", default=DEFAULT_FLOOR_DB, min=low, max=high, step=0.5,
                               tooltip="The lowest PSNR vs uncached you accept, in dB (about 30: small visible "
                                       "differences; 35: hard to see; 40: none). The chosen target saves the most "
                                       "work at or above it."),
                io.String.Input("preset_name", default="my_setup",
                                tooltip=f"Name to save the chosen setting under ({NAME_RULE}); an existing preset "
                                        f"of that name is replaced. Empty: measure only, save nothing."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Optional: measure PSNR and SSIM on decoded frames (what you see) instead of "
                                     "on the latent. Decoding each run takes extra time."),
            ],
            outputs=[
                io.Latent.Output(display_name="uncached", tooltip="The uncached result (continue your graph "
                                                                  "with it)."),
                io.Image.Output(display_name="curve", tooltip="Quality vs wall-clock speedup, one point per "
                                                              "speed target; the chosen one circled."),
                io.String.Output(display_name="table", tooltip="Every run: speed target, work saved (counted), "
                                                               "wall time, PSNR, SSIM; the choice; where the preset "
                                                               "was saved."),
            ],
        )

    @classmethod
    def validate_inputs(cls, speed_targets=None, preset_name=None) -> bool | str:
        """The two text inputs, whose rules ComfyUI cannot check (a list of numbers, a preset name); its own
        min/max checks stay on for every other input. ``None``: linked from another node (checked at run)."""
        given = {k: v for k, v in (("speed_targets", speed_targets), ("preset_name", preset_name)) if v is not None}
        return validation_result(plan_calibration, **{"speed_targets": DEFAULT_SPEED_TARGETS, **given})

    @classmethod
    def fingerprint_inputs(cls, preset_name=None, **kwargs):
        name = preset_name.strip() if isinstance(preset_name, str) else ""
        return choice_fingerprint(CALIBRATED_PREFIX + name) if name else ""  # re-run when the file was changed

    @classmethod
    def execute(cls, model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                latent_image, speed_targets: str, quality_floor_db: float, preset_name: str, denoise: float = 1.0,
                vae=None) -> io.NodeOutput:
        plan = plan_calibration(speed_targets, quality_floor_db, preset_name, steps)
        latent_shape = _checked_latent_shape(model, latent_image)
        configs = [LFCacheConfig(speed_target=s).validate() for s in plan.speed_targets]
        check_factors_fit(configs[0].trial_downsample, latent_shape)
        cached_models = [apply_setup(model, lf=c) for c in configs]  # unsupported models refused before sampling
        sampling = _Sampling(seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise)
        reference_latent, rows, quality = _measure(sampling, model, configs, cached_models, vae)
        chosen = choose(rows, plan.quality_floor_db)

        model_name, parameters = model_identity(model)
        measured_on = "latent" if vae is None else "decoded frames"
        header = [f"PreciseCache Calibrate: {model_name}, {parameters:,} parameters; latent "
                  f"{'×'.join(map(str, latent_shape))}, {steps} steps {sampler_name}/{scheduler}, cfg {cfg:g}, "
                  f"denoise {denoise:g}, seed {seed}",
                  _measured_line(vae is None, quality),
                  "wall time: the sampling loop of each run (model loading, conditioning and decoding excluded); "
                  "work saved: uncached forwards ÷ this run's (counted, trial forwards included)"]
        if chosen is not None and plan.preset_name:
            setup = RecordedSetup(model=model_name, parameters=parameters, latent_shape=latent_shape,
                                  steps=chosen.steps, sampler=sampler_name,
                                  sampler_function=sampler_function_name(comfy.samplers.sampler_object(sampler_name)),
                                  scheduler=scheduler, cfg=float(cfg), denoise=float(denoise))
            footer = _save_preset(plan, chosen, rows, setup, measured_on, configs[0])
        elif plan.preset_name:
            footer = (f"no preset saved: nothing reached the floor (an earlier preset '{plan.preset_name}', if "
                      f"any, is kept)")
        else:
            footer = "no preset saved: preset_name is empty (measure only)"
        table = format_table(rows, plan.quality_floor_db, chosen, header=header, footer=[footer])
        title = (f"PreciseCache Calibrate: chosen {chosen.speed_target:g}x ({format_psnr(chosen.psnr_db)} ≥ "
                 f"{plan.quality_floor_db:g} dB)" if chosen is not None else
                 f"PreciseCache Calibrate: no speed target reached {plan.quality_floor_db:g} dB")
        image = calibration_image_tensor(rows, plan.quality_floor_db, chosen, title,
                                         subtitle=f"{header[0]}; quality on the {measured_on}")
        return io.NodeOutput(reference_latent, image, table,
                             ui={**ui.PreviewImage(image, cls=cls).as_dict(), **ui.PreviewText(table).as_dict()})


def _checked_latent_shape(model, latent_image: dict) -> tuple[int, ...]:
    """The latent's shape as the model samples it; a cached model or a nested latent refused by name."""
    setup = get_setup(model)
    if setup is not None and (setup.lf is not None or setup.block is not None):
        raise ValueError("PreciseCache Calibrate needs the model without LFCache or BlockCache (it compares "
                         "against an uncached run): connect the loader's model output to it directly.")
    samples = latent_image["samples"]
    if getattr(samples, "is_nested", False):
        raise ValueError("PreciseCache Calibrate cannot measure a nested latent (several streams in one).")
    return tuple(comfy.sample.fix_empty_latent_channels(model, samples).shape)


@dataclasses.dataclass(frozen=True)
class _Sampling:
    """The KSampler settings every run of a calibration shares."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    positive: object
    negative: object
    latent_image: dict
    denoise: float

    def run(self, model, label: str, index: int, runs: int) -> tuple[dict, float]:
        """One sampling run: its latent and the seconds of its sampling loop."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        log.info("PreciseCache Calibrate - run %d/%d: %s", index, runs, label)
        seconds: list[float] = []
        started = time.perf_counter()
        (out,) = comfy_nodes.common_ksampler(_timed(model, seconds), self.seed, self.steps, self.cfg,
                                             self.sampler_name, self.scheduler, self.positive, self.negative,
                                             self.latent_image, denoise=self.denoise)
        return out, (sum(seconds) if seconds else time.perf_counter() - started)


def _measure(sampling: _Sampling, model, configs: list[LFCacheConfig], cached_models: list, vae):
    """The uncached run, then one run per speed target, each compared with the uncached one (on the latent,
    or on the decoded frames when a VAE is connected). Returns (uncached latent, rows, the last comparison)."""
    def measured(latent: dict):
        return latent["samples"] if vae is None else comfy_nodes.VAEDecode().decode(vae, latent)[0]

    layout = "latent" if vae is None else "image"
    runs = len(configs) + 1
    reference_latent, uncached_seconds = sampling.run(model, "uncached", 1, runs)
    reference = measured(reference_latent)
    rows = [CalibrationRow(None, uncached_seconds, 1.0, float("inf"), None, 0, sampling.steps)]
    quality = None
    for i, (config, cached) in enumerate(zip(configs, cached_models)):
        out, seconds = sampling.run(cached, f"LFCache speed target {config.speed_target:g}x", i + 2, runs)
        report = get_setup(cached).reports.latest
        try:
            quality = compare(reference, measured(out), layout)
        except ValueError as e:
            raise ValueError(f"PreciseCache Calibrate cannot measure speed target {config.speed_target:g}x on the "
                             f"{'latent' if vae is None else 'decoded frames'}: {e}") from None
        rows.append(CalibrationRow(config.speed_target, seconds, report.estimated_speedup, quality.psnr,
                                   quality.ssim, len(report.skipped_steps), report.steps, tuple(report.notes)))
        del out
    rows[0].ssim = 1.0 if quality.window else None
    return reference_latent, rows, quality


def _save_preset(plan, chosen: CalibrationRow, rows: list[CalibrationRow], setup: RecordedSetup, measured_on: str,
                 config: LFCacheConfig) -> str:
    """Save the chosen speed target as ``plan.preset_name``; returns the table's footer line saying where."""
    preset = CalibratedPreset(
        name=plan.preset_name, speed_target=chosen.speed_target, quality_floor_db=plan.quality_floor_db,
        measured_on=measured_on, setup=setup,
        psnr_db=None if chosen.psnr_db == float("inf") else chosen.psnr_db, ssim=chosen.ssim,
        rows=tuple(r.to_dict(rows[0].wall_seconds) for r in rows),
        lfcache=_config_fields(config),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    path = store().save(preset)
    log.info("PreciseCache Calibrate - saved speed target %gx as preset '%s' (%s): %s",
             chosen.speed_target, plan.preset_name, format_psnr(chosen.psnr_db), path)
    return (f"saved as preset '{plan.preset_name}' in {path}: choose '{CALIBRATED_PREFIX}{plan.preset_name}' as "
            f"the preset of LFCache (PreciseCache) or PreciseCache Sampler (press R in the editor to refresh its "
            f"node lists)")


def _timed(model, seconds: list[float]):
    """A clone of ``model`` that adds the time of each sampling loop to ``seconds`` (the closure is
    shared by the clones ComfyUI makes; a bound method would be deep-copied with its object)."""
    def timer(executor, *args, **kwargs):
        start = time.perf_counter()
        result = executor(*args, **kwargs)
        if isinstance(result, torch.Tensor) and result.is_cuda:
            torch.cuda.synchronize(result.device)
        seconds.append(time.perf_counter() - start)
        return result

    timed = model.clone()
    timed.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, TIMER_KEY, timer)
    return timed


def _measured_line(on_latent: bool, quality) -> str:
    if on_latent:
        peak = f"{quality.peak:.3g}" if quality is not None else "?"
        window = f"{quality.window}×{quality.window}" if quality is not None and quality.window else "none"
        return (f"quality vs the uncached run, on the latent (no VAE connected): PSNR with the uncached latent's range "
                f"{peak} as its peak; SSIM window {window}. Connect a VAE to measure decoded frames instead.")
    return "quality vs the uncached run, on the decoded frames (VAE connected): PSNR over the clip, SSIM mean per frame"


def _config_fields(config: LFCacheConfig) -> dict:
    """The LFCache settings of the runs besides the speed target (recorded in the preset for reference)."""
    fields = {}
    for f in dataclasses.fields(config):
        if f.name not in ("speed_target", "alpha", "calibration"):
            value = getattr(config, f.name)
            fields[f.name] = list(value) if isinstance(value, tuple) else value
    return fields
