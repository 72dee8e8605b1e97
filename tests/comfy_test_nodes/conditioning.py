"""Deterministic stand-in conditioning for the tiny test models (no text encoder needed).

Shared by the test node pack (loaded by ComfyUI from custom_nodes/) and by the in-process
harness (tests/host/harness.py loads this file by path). Pure torch; ComfyUI is imported
lazily and only for the Wan I2V clip-vision output object.
"""
import torch

MODEL_KINDS = ("wan", "wan_i2v", "wan22", "wan_vace", "wan_camera", "hunyuan", "hunyuan_i2v", "hunyuan_skyreels",
               "ltxv")
VARIANTS = ("positive", "negative")

# Widths fixed by the real architectures (and used by the tiny models):
TEXT_WIDTH = 4096            # Wan: text_dim is not detected, always 4096; Hunyuan/LTX tiny models use 4096 too
HUNYUAN_POOLED_WIDTH = 768   # `vector_in` (CLIP-L pooled output)
CLIP_VISION_TOKENS, CLIP_VISION_WIDTH = 257, 1280  # Wan I2V `img_emb` input (CLIP-H penultimate states)


def _generator(seed, salt):
    g = torch.Generator(device="cpu")
    g.manual_seed((int(seed) % (1 << 60)) * 8 + salt)
    return g


def make_conditioning(kind, seed=0, length=8, width=TEXT_WIDTH, variant="positive", latent_shape=None):
    """ComfyUI CONDITIONING ``[[cross_attn (1, length, width), extras]]`` for a tiny model kind.

    ``variant`` only changes the text tensor, so positive != negative (CFG > 1 matters) while the
    image side of I2V (clip vision output, start-frame latent) is shared, as WanImageToVideo does.
    ``latent_shape`` (B, C, T, H, W) adds ``concat_latent_image``/``concat_mask`` for ``wan_i2v``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    g_text = _generator(seed, VARIANTS.index(variant))
    g_side = _generator(seed, 4)
    cross_attn = torch.randn((1, int(length), int(width)), generator=g_text)
    extras = {}
    if kind == "wan_i2v":
        import comfy.clip_vision
        out = comfy.clip_vision.Output()
        out.penultimate_hidden_states = torch.randn((1, CLIP_VISION_TOKENS, CLIP_VISION_WIDTH), generator=g_side)
        extras["clip_vision_output"] = out
        if latent_shape is not None:
            _, _, t, h, w = latent_shape
            extras["concat_latent_image"] = torch.randn((1, 16, t, h, w), generator=g_side)
            mask = torch.ones((1, 1, t, h, w))
            mask[:, :, :1] = 0.0  # first frame given, the rest generated
            extras["concat_mask"] = mask
    elif kind == "wan_vace" and latent_shape is not None:
        _, _, t, h, w = latent_shape
        extras["vace_frames"] = [torch.randn((1, 32, t, h, w), generator=g_side)]
        extras["vace_mask"] = [torch.rand((1, 64, t, h, w), generator=g_side)]
        extras["vace_strength"] = [1.0]
    elif kind == "wan_camera" and latent_shape is not None:
        _, _, t, h, w = latent_shape
        extras["camera_conditions"] = torch.randn((1, 24, t, 8 * h, 8 * w), generator=g_side)
    elif kind in ("hunyuan", "hunyuan_i2v", "hunyuan_skyreels"):
        extras["pooled_output"] = torch.randn((1, HUNYUAN_POOLED_WIDTH), generator=g_side)
        extras["guidance"] = 6.0
        if kind != "hunyuan" and latent_shape is not None:
            _, _, t, h, w = latent_shape
            extras["concat_latent_image"] = torch.randn((1, 16, t, h, w), generator=g_side)
            if kind == "hunyuan_i2v":
                mask = torch.ones((1, 1, t, h, w))
                mask[:, :, :1] = 0.0
                extras["concat_mask"] = mask
    elif kind == "ltxv":
        extras["attention_mask"] = torch.ones((1, int(length)), dtype=torch.long)
        extras["frame_rate"] = 25.0
    return [[cross_attn, extras]]
