"""HunyuanVideo 1.5 (``HunyuanVideo15``: T2V, I2V through HunyuanVideo15ImageToVideo's concatenated
start image and mask, and the step-distilled checkpoints with ``time_r_in``) in ComfyUI 0.8; not its
super-resolution model (``HunyuanVideo15_SR_Distilled``).

Same network class as HunyuanVideo (``comfy/ldm/hunyuan_video/model.py``), detected by its
``vision_in`` (SigLIP, 1152 wide): ``forward(x, timestep, context, y, txt_byt5, clip_fea, guidance,
attention_mask, guiding_frame_index, ref_latent, disable_time_r, control, transformer_options)``,
double and single blocks from ``comfy/ldm/flux/layers.py`` updating ``img`` / ``txt`` **in place**.
What differs for the cache:

* patch size 1×1×1 (one token per latent cell of the 32-channel latent), so the trial's token
  grid is its latent grid;
* ``x`` carries 65 channels: the latent, the concatenated start image (32) and mask (1), zeros for
  text-to-video (``HunyuanVideo15.concat_cond``): pooled like the latent;
* ``txt_byt5`` (ByT5 glyph tokens) and ``clip_fea`` (SigLIP tokens of the start image) are text-like
  tokens, not on the latent grid: kept; ``guidance`` is a [B] tensor the network ignores unless it
  has a guidance embedder; the step-distilled checkpoints' ``time_r_in`` reads the step's sigmas from
  ``transformer_options``, which the trial's options carry unchanged.

CFG streams: every input is batched per stream except ``disable_time_r`` and ``transformer_options``.
"""
from dataclasses import replace

from .hunyuan import HUNYUAN

HUNYUAN15 = replace(HUNYUAN, model_classes=("HunyuanVideo15",), name="HunyuanVideo 1.5", patch_size=(1, 1, 1))
"""Same blocks, forward inputs, trial rules and shared inputs as HunyuanVideo; its own patch size."""
