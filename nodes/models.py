"""Which ComfyUI models PreciseCache supports, and their block patch points."""
from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_MODELS_TEXT = ("Wan 2.1 / 2.2 (T2V, I2V and their variants), HunyuanVideo, LTX-Video")


@dataclass(frozen=True)
class ModelSupport:
    """A supported diffusion model: its display name and its "dit" block patch keys."""

    name: str
    block_keys: tuple[tuple[str, int], ...]


class UnsupportedModelError(ValueError):
    pass


def _family(diffusion_model) -> str | None:
    # Imported lazily: only meaningful inside ComfyUI.
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
    family = _family(diffusion_model) if diffusion_model is not None else None
    model_name = type(base).__name__
    if family == "wan":
        keys = tuple(("double_block", i) for i in range(len(diffusion_model.blocks)))
        return ModelSupport(f"{model_name} (Wan)", keys)
    if family == "hunyuan":
        keys = tuple(("double_block", i) for i in range(len(diffusion_model.double_blocks)))
        keys += tuple(("single_block", i) for i in range(len(diffusion_model.single_blocks)))
        return ModelSupport(f"{model_name} (HunyuanVideo)", keys)
    if family == "ltxv":
        keys = tuple(("double_block", i) for i in range(len(diffusion_model.transformer_blocks)))
        return ModelSupport(f"{model_name} (LTX-Video)", keys)
    inner = type(diffusion_model).__name__ if diffusion_model is not None else "none"
    raise UnsupportedModelError(
        f"PreciseCache does not support the model {model_name} (diffusion model {inner}). "
        f"Supported: {SUPPORTED_MODELS_TEXT}.")
