"""Wan 2.1 / 2.2 (T2V, I2V, FLF, TI2V 5B, VACE, camera control, Fun inputs) in ComfyUI 0.8.

``comfy/ldm/wan/model.py``: ``forward(x, timestep, context, clip_fea, time_dim_concat,
transformer_options, **kwargs)``; every ``WanAttentionBlock`` computes ``x = x + …`` and returns
a new tensor (not in place). Block patch args: ``img`` [B, N, D], ``txt``, ``vec``, ``pe``.

Inputs aligned with the latent: ``x`` (I2V's image and mask are already concatenated on the
channels), ``time_dim_concat`` (frames appended on T), ``reference_latent`` ([B, C, H, W] or
[B, C, T, H, W]), ``denoise_mask`` (Wan 2.2 TI2V), ``vace_context`` ([B, n, 96, T, H, W]),
``camera_conditions`` ([B, 24, T, 8H, 8W], pixel resolution) and the per-frame ``timestep``
[B, T] that Wan 2.2 builds from a noise mask. Wan's network never reads ``control``.

CFG streams: every input is batched per stream (``CONDRegular`` conds) except ``vace_strength``
(a ``CONDConstant`` list, one strength per VACE input) and ``transformer_options``.
"""
from .base import KEEP, LATENT, OPTIONS, PIXELS, STACKED_LATENT, TIMESTEP, BlockSpec, FamilyAdapter

WAN = FamilyAdapter(
    model_classes=("WAN21", "WAN22", "WAN21_Vace", "WAN21_Camera"),
    name="Wan",
    blocks=(BlockSpec("double_block", "blocks", ("img",), in_place=False),),
    forward_args=("x", "timestep", "context", "clip_fea", "time_dim_concat", "transformer_options"),
    trial_rules={
        "x": LATENT, "timestep": TIMESTEP, "context": KEEP, "clip_fea": KEEP, "time_dim_concat": LATENT,
        "transformer_options": OPTIONS, "control": KEEP, "reference_latent": LATENT, "denoise_mask": LATENT,
        "vace_context": STACKED_LATENT, "vace_strength": KEEP, "camera_conditions": PIXELS,
    },
    patch_size=(1, 2, 2),
    pixel_scale=8,
    shared_inputs=frozenset({"transformer_options", "vace_strength"}),
)
