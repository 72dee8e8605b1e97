"""HunyuanVideo T2V, I2V and SkyReels I2V in ComfyUI 0.8 (1.5 shares the network with another patch
size: its own adapter, ``hunyuan15.py``).

``comfy/ldm/hunyuan_video/model.py``: ``forward(x, timestep, context, y, txt_byt5, clip_fea,
guidance, attention_mask, guiding_frame_index, ref_latent, disable_time_r, control,
transformer_options)``. Its blocks come from ``comfy/ldm/flux/layers.py`` and update their
inputs **in place** (``img += …``, ``txt += …``, single blocks ``x += …``) and return the same
tensors. Double block args: ``img`` [B, N, D] and ``txt`` [B, L, D], both returned; single blocks:
``img`` = text and image tokens concatenated.

Inputs aligned with the latent: ``x`` (I2V's image and mask are concatenated on its channels), ``ref_latent`` (I2V's reference frames, [B, C, T', H, W]),
ControlNet hints in ``control`` (added to the image tokens, token grid).

CFG streams: every input is batched per stream, ``guidance`` and ``guiding_frame_index`` too (each a
``CONDRegular`` of a one-element tensor, repeated to the batch: [B]), except ``disable_time_r`` (a
``CONDConstant`` bool) and ``transformer_options``.
"""
from .base import KEEP, LATENT, OPTIONS, TIMESTEP, TOKEN_HINTS, BlockSpec, FamilyAdapter

HUNYUAN = FamilyAdapter(
    model_classes=("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V"),
    name="HunyuanVideo",
    blocks=(BlockSpec("double_block", "double_blocks", ("img", "txt"), in_place=True),
            BlockSpec("single_block", "single_blocks", ("img",), in_place=True)),
    forward_args=("x", "timestep", "context", "y", "txt_byt5", "clip_fea", "guidance", "attention_mask",
                  "guiding_frame_index", "ref_latent", "disable_time_r", "control", "transformer_options"),
    trial_rules={
        "x": LATENT, "timestep": TIMESTEP, "context": KEEP, "y": KEEP, "txt_byt5": KEEP, "clip_fea": KEEP,
        "guidance": KEEP, "attention_mask": KEEP, "guiding_frame_index": KEEP, "ref_latent": LATENT,
        "disable_time_r": KEEP, "control": TOKEN_HINTS, "transformer_options": OPTIONS,
    },
    patch_size=(1, 2, 2),
    shared_inputs=frozenset({"transformer_options", "disable_time_r"}),
)
