"""Which ComfyUI models PreciseCache supports: the family adapter and block patch points of a model."""
from __future__ import annotations

from dataclasses import dataclass

from ..precisecache_core.families import HUNYUAN, HUNYUAN15, LTXV, WAN, BlockSpec, FamilyAdapter

SUPPORTED_MODELS_TEXT = ("Wan 2.1 / 2.2 (T2V, I2V, TI2V 5B, VACE, Wan 2.1 camera control), HunyuanVideo (T2V, I2V, SkyReels I2V), "
                         "HunyuanVideo 1.5 (T2V, I2V, step-distilled; not its super-resolution model), "
                         "LTX-Video (T2V, I2V through noise masks, LTXVAddGuide keyframes and guides; not LTX-2)")

NETWORK_ADAPTERS: dict[str, tuple[FamilyAdapter, ...]] = {
    "wan": (WAN,), "hunyuan": (HUNYUAN, HUNYUAN15), "ltxv": (LTXV,)}
"""Network family → the adapters of its ComfyUI model classes (HunyuanVideo 1.5 runs HunyuanVideo's
network with another patch size, so it has its own adapter)."""


@dataclass(frozen=True)
class ModelSupport:
    """A supported diffusion model: display name, family adapter, and one BlockSpec per "dit" patch key."""

    name: str
    family: FamilyAdapter
    blocks: dict[tuple[str, int], BlockSpec]

    @property
    def block_keys(self) -> tuple[tuple[str, int], ...]:
        return tuple(self.blocks)


class UnsupportedModelError(ValueError):
    pass


REFUSED_VARIANTS = {
    "WanModel_S2V": "Wan 2.2 S2V is audio-driven",
    "HumoWanModel": "HuMo is audio-driven",
    "AnimateWanModel": "Wan Animate (pose/face inputs) is not covered by tests",
    "LTXAVModel": "LTX-2 generates audio and video together",
}
"""Subclasses of supported networks whose extra inputs or outputs the cache was not built for:
a decision taken from the video stream alone could blur the other stream."""


def _family(diffusion_model) -> str | None:
    # Imported lazily: only meaningful inside ComfyUI.
    if type(diffusion_model).__name__ in REFUSED_VARIANTS:
        return None
    from comfy.ldm.wan.model import WanModel
    from comfy.ldm.hunyuan_video.model import HunyuanVideo
    from comfy.ldm.lightricks.model import LTXVModel
    if isinstance(diffusion_model, WanModel):
        return "wan"
    if isinstance(diffusion_model, HunyuanVideo):
        return "hunyuan"
    if isinstance(diffusion_model, LTXVModel):
        return "ltxv"
    return None


def model_support(model_patcher) -> ModelSupport:
    """Describe the model behind a ComfyUI ``ModelPatcher``, or refuse it by name."""
    base = model_patcher.model
    diffusion_model = getattr(base, "diffusion_model", None)
    family_key = _family(diffusion_model) if diffusion_model is not None else None
    model_name = type(base).__name__
    if family_key is not None:
        adapters = NETWORK_ADAPTERS[family_key]
        family = next((a for a in adapters if model_name in a.model_classes), None)
        if family is None:
            raise UnsupportedModelError(
                f"PreciseCache does not support the model {model_name} ({adapters[0].name} network): this "
                f"variant is not covered by its tests. Supported: {SUPPORTED_MODELS_TEXT}.")
        patch = getattr(diffusion_model, "patch_size", None)
        if isinstance(patch, (list, tuple)) and len(patch) == 3 and tuple(patch) != tuple(family.patch_size):
            raise UnsupportedModelError(
                f"PreciseCache does not support the model {model_name} with a {family.name} network of patch size "
                f"{tuple(patch)} (its adapter expects {tuple(family.patch_size)}): this variant is not covered by "
                f"its tests. Supported: {SUPPORTED_MODELS_TEXT}.")
        blocks = {(spec.patch_type, i): spec
                  for spec in family.blocks for i in range(len(getattr(diffusion_model, spec.module_list)))}
        return ModelSupport(f"{model_name} ({family.name})", family, blocks)
    inner = type(diffusion_model).__name__ if diffusion_model is not None else "none"
    why = f" ({REFUSED_VARIANTS[inner]})" if inner in REFUSED_VARIANTS else ""
    raise UnsupportedModelError(
        f"PreciseCache does not support the model {model_name} (diffusion model {inner}{why}). "
        f"Supported: {SUPPORTED_MODELS_TEXT}.")
