"""Test-only ComfyUI custom node pack for PreciseCache's host tests.

Never shipped: the harness symlinks this folder into a temporary custom_nodes/ directory.
"""
from .conditioning import MODEL_KINDS, TEXT_WIDTH, VARIANTS, make_conditioning


class PreciseCacheTestConditioning:
    """CONDITIONING made of seeded random tensors shaped for a tiny model kind (no text encoder)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_kind": (list(MODEL_KINDS), {"default": "wan"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
                "length": ("INT", {"default": 8, "min": 1, "max": 4096, "tooltip": "text tokens"}),
                "width": ("INT", {"default": TEXT_WIDTH, "min": 1, "max": 16384, "tooltip": "text feature width"}),
                "variant": (list(VARIANTS), {"default": "positive"}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "wan_i2v: shapes concat_latent_image / concat_mask"}),
            },
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"
    CATEGORY = "_for_testing/precisecache"

    def build(self, model_kind, seed, length, width, variant, latent=None):
        shape = tuple(latent["samples"].shape) if latent is not None else None
        return (make_conditioning(model_kind, seed=seed, length=length, width=width,
                                  variant=variant, latent_shape=shape),)


NODE_CLASS_MAPPINGS = {"PreciseCacheTestConditioning": PreciseCacheTestConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"PreciseCacheTestConditioning": "PreciseCache Test Conditioning"}
