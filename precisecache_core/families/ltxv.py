"""LTX-Video (T2V, I2V through LTXVImgToVideo / noise masks) in ComfyUI 0.8 (not LTX-2).

``comfy/ldm/lightricks/model.py``: ``forward(x, timestep, context, attention_mask, frame_rate,
transformer_options, keyframe_idxs, denoise_mask=…)``. Its ``BasicTransformerBlock`` updates ``x``
**in place** (``x.addcmul_``, ``x += …``) and returns it. Block patch args: ``img`` [B, N, D],
``txt``, ``attention_mask``, ``vec`` (per-token modulation), ``pe``.

Patch size 1: one token per latent cell. With a noise mask (image-to-video), ``LTXV.process_timestep``
gives one timestep per token, [B, N, 1], which the trial pools on the token grid exactly as the
model itself would compute it from the pooled mask. ``keyframe_idxs`` (LTXVAddGuide's guide
frames, appended after the video's frames with their own pixel coordinates) refuse the trial.

CFG streams: ``x``, ``timestep``, ``context``, ``attention_mask`` (the text mask, [B, L]),
``denoise_mask`` and ``keyframe_idxs`` ([B, 3, N_guide, 2], a ``CONDRegular``) are batched per
stream; ``frame_rate`` (a ``CONDConstant``) and ``transformer_options`` are shared.
"""
from .base import KEEP, LATENT, OPTIONS, TIMESTEP, BlockSpec, FamilyAdapter

LTXV = FamilyAdapter(
    model_classes=("LTXV",),
    name="LTX-Video",
    blocks=(BlockSpec("double_block", "transformer_blocks", ("img",), in_place=True),),
    forward_args=("x", "timestep", "context", "attention_mask", "frame_rate", "transformer_options",
                  "keyframe_idxs"),
    trial_rules={
        "x": LATENT, "timestep": TIMESTEP, "context": KEEP, "attention_mask": KEEP, "frame_rate": KEEP,
        "transformer_options": OPTIONS, "keyframe_idxs": KEEP, "denoise_mask": LATENT, "control": KEEP,
    },
    patch_size=(1, 1, 1),
    shared_inputs=frozenset({"transformer_options", "frame_rate"}),
    not_for_trial={"keyframe_idxs": "LTXVAddGuide's guide frames carry their own pixel coordinates, "
                                    "which a downsampled trial cannot reproduce"},
)
