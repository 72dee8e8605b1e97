"""LTX-Video (T2V, I2V through LTXVImgToVideo / noise masks, LTXVAddGuide keyframes and guides) in
ComfyUI 0.8 (not LTX-2).

``comfy/ldm/lightricks/model.py``: ``forward(x, timestep, context, attention_mask, frame_rate,
transformer_options, keyframe_idxs, denoise_mask=…)``. Its ``BasicTransformerBlock`` updates ``x``
**in place** (``x.addcmul_``, ``x += …``) and returns it. Block patch args: ``img`` [B, N, D],
``txt``, ``attention_mask``, ``vec`` (per-token modulation), ``pe``.

Patch size 1: one token per latent cell. With a noise mask (image-to-video), ``LTXV.process_timestep``
gives one timestep per token, [B, N, 1], which the trial pools on the token grid exactly as the
model itself would compute it from the pooled mask.

Keyframes and guides (``LTXVAddGuide``): the guide's latent frames are appended to the latent after
the video's frames, their noise-mask frames after the video's, and ``keyframe_idxs`` [B, 3, N_g, 2]
holds the pixel coordinates (t, h, w; start, end) of the N_g appended tokens, which the model writes
over the coordinates it computed for the last N_g tokens; tokens whose noise mask is negative are
dropped (``grid_mask``). The trial pools the video's frames with its factors and the appended frames
on H and W only (every guide frame is kept, so no keyframe is lost), the noise mask and the
per-token timestep in the same two parts, and takes the coordinates of the kept guide cells mapped
into the trial's coordinate system: the trial's own video tokens get the coordinates the model
computes on the small grid, so a guide token sits relative to them where it sat relative to the
full video (:func:`..trial_inputs.map_keyframe_coords`; needs the model's ``vae_scale_factors``
and ``causal_temporal_positioning``).

CFG streams: ``x``, ``timestep``, ``context``, ``attention_mask`` (the text mask, [B, L]),
``denoise_mask`` and ``keyframe_idxs`` ([B, 3, N_g, 2], a ``CONDRegular``) are batched per
stream; ``frame_rate`` (a ``CONDConstant``) and ``transformer_options`` are shared.
"""
from .base import KEEP, KEYFRAME_COORDS, LATENT, OPTIONS, TIMESTEP, BlockSpec, FamilyAdapter

LTXV = FamilyAdapter(
    model_classes=("LTXV",),
    name="LTX-Video",
    blocks=(BlockSpec("double_block", "transformer_blocks", ("img",), in_place=True),),
    forward_args=("x", "timestep", "context", "attention_mask", "frame_rate", "transformer_options",
                  "keyframe_idxs"),
    trial_rules={
        "x": LATENT, "timestep": TIMESTEP, "context": KEEP, "attention_mask": KEEP, "frame_rate": KEEP,
        "transformer_options": OPTIONS, "keyframe_idxs": KEYFRAME_COORDS, "denoise_mask": LATENT, "control": KEEP,
    },
    patch_size=(1, 1, 1),
    appended_frames="keyframe_idxs",
    model_geometry=("vae_scale_factors", "causal_temporal_positioning"),
    shared_inputs=frozenset({"transformer_options", "frame_rate"}),
)
