"""Calibrated presets in ComfyUI: where they are stored, how the cache nodes list and resolve them,
and how a run's setup is compared with the one a preset was recorded on.

Storage is ``<ComfyUI user directory>/default/precisecache/presets/<name>.json``
(:class:`precisecache_core.preset_store.PresetStore`); ComfyUI's ``/userdata`` API lists those files
(``GET /userdata?dir=precisecache/presets``) and can delete them. The cache nodes' preset lists
are built each time ComfyUI asks for the node definitions (``/object_info`` calls ``define_schema``
again, and so does prompt validation), so a newly saved preset is offered without a restart; the
editor keeps the definitions it loaded until it refreshes them (press R, or reload the page).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Iterable, Mapping, TypeVar

import folder_paths

from ..precisecache_core import LFCacheConfig
from ..precisecache_core.preset_store import CALIBRATED_PREFIX, CalibratedPreset, PresetStore
from .models import model_support

T = TypeVar("T")


def store() -> PresetStore:
    return PresetStore(folder_paths.get_user_directory())


def calibrated_choices() -> list[str]:
    """The saved presets as the cache nodes' preset lists show them ('calibrated: <name>')."""
    try:
        return [CALIBRATED_PREFIX + name for name in store().names()]
    except (OSError, ValueError):  # a node list must never fail to build
        return []


def calibrated_name(choice) -> str | None:
    """The preset name of a 'calibrated: <name>' choice, else None."""
    if isinstance(choice, str) and choice.startswith(CALIBRATED_PREFIX):
        return choice[len(CALIBRATED_PREFIX):]
    return None


def load_choice(choice: str, input_name: str = "preset") -> CalibratedPreset:
    """The preset of a 'calibrated: <name>' choice (PresetError / ValueError naming the input)."""
    name = calibrated_name(choice)
    if name is None:
        raise ValueError(f"{input_name} = {choice!r} is not a calibrated preset")
    return store().load(name, input_name)


def calibrated_config(preset: CalibratedPreset, base: LFCacheConfig | None = None) -> LFCacheConfig:
    """``base`` (default: LFCache's defaults) with the preset's speed target and its origin."""
    return dataclasses.replace(base or LFCacheConfig(), speed_target=preset.speed_target,
                               calibration=preset.origin).validate()


def preset_choices(builtins: Iterable[str]) -> list[str]:
    """A preset input's options: the built-in ones, then the saved calibrated presets (read at every call)."""
    return [*builtins, *calibrated_choices()]


def resolve_choice(choice: str, builtins: Mapping[str, T], from_calibrated: Callable[[LFCacheConfig], T]) -> T:
    """What a preset input's ``choice`` stands for: a calibrated preset's LFCache config (through
    ``from_calibrated``) or a built-in; a ValueError naming the input for an unknown choice or a missing
    or damaged calibrated preset."""
    if calibrated_name(choice) is not None:
        return from_calibrated(calibrated_config(load_choice(choice, "preset")))
    if choice in builtins:
        return builtins[choice]
    raise ValueError(f"preset = {choice!r} is not allowed: choose one of {preset_choices(builtins)}")


def choice_fingerprint(choice) -> str:
    """Changes when a calibrated preset's file changes (so ComfyUI re-runs a node that uses it)."""
    name = calibrated_name(choice)
    if name is None:
        return ""
    try:
        with open(store().path(name), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
        return "missing"


def model_identity(model_patcher) -> tuple[str, int]:
    """(model class and family, parameter count of the diffusion model)."""
    support = model_support(model_patcher)
    network = model_patcher.get_model_object("diffusion_model")
    return support.name, sum(p.numel() for p in network.parameters())


def sampler_function_name(sampler) -> str:
    """The sampling function behind a ComfyUI sampler object ('' when it has none, e.g. a custom one)."""
    function = getattr(sampler, "sampler_function", None)
    return getattr(function, "__name__", "") if function is not None else ""


def calibration_notes(lf: LFCacheConfig | None, model_patcher, latent_shape, steps: int, sampler=None,
                      cfg=None) -> list[str]:
    """The report note for a run whose setup differs from the one its calibrated preset was recorded on."""
    origin = lf.calibration if lf is not None else None
    if origin is None:
        return []
    model, parameters = model_identity(model_patcher)
    cfg = cfg if isinstance(cfg, (int, float)) and not isinstance(cfg, bool) else None
    note = origin.mismatch_note(origin.setup.differences(
        model=model, parameters=parameters, latent_shape=latent_shape, steps=steps,
        sampler_function=sampler_function_name(sampler) if sampler is not None else None, cfg=cfg))
    return [note] if note else []

