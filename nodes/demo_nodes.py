"""ComfyUI V3 nodes for the PreciseCache demo model (a tiny Wan 2.1 trained on procedural clips).

* ``PreciseCacheDemoConditioning``: a prompt from the demo vocabulary -> positive and negative
  CONDITIONING (``[[tensor(1, 16, 4096), {}]]``), replacing Wan's 5.7 B UMT5 text encoder.
* ``PreciseCacheDemoDecode``: LATENT -> IMAGE through the demo's linear stand-in VAE, replacing
  Wan's VAE.  The LATENT holds ``Wan21().process_out(z)`` (what KSampler returns); the node applies
  ``process_in`` and decodes ``z`` (see ``precisecache_demo/latent_map.py``).

Typical graph: UNETLoader(precisecache_demo_wan.safetensors) -> KSampler (euler, simple, ~50 steps,
cfg ~5) with EmptyHunyuanLatentVideo(128 x 128, length 9) and PreciseCacheDemoConditioning ->
PreciseCacheDemoDecode -> SaveAnimatedWEBP / PreviewImage.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..precisecache_demo import conditioning as demo_conditioning
from ..precisecache_demo import latent_map

CATEGORY = "sampling/PreciseCache/demo"


class PreciseCacheDemoConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheDemoConditioning",
            display_name="PreciseCache Demo Conditioning",
            description="Fixed prompt embeddings for the PreciseCache demo model (no text encoder needed).",
            category=CATEGORY,
            inputs=[
                io.Combo.Input(
                    "prompt",
                    options=list(demo_conditioning.VOCABULARY),
                    default=demo_conditioning.VOCABULARY[0],
                    tooltip="What the demo clip should show; the demo model was trained on exactly these prompts.",
                ),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="Embedding of the chosen prompt."),
                io.Conditioning.Output(display_name="negative", tooltip="Embedding of the empty prompt (the model's unconditional branch, for CFG)."),
            ],
        )

    @classmethod
    def execute(cls, prompt: str) -> io.NodeOutput:
        if prompt not in demo_conditioning.VOCABULARY:
            raise ValueError(f"unknown demo prompt {prompt!r}")
        return io.NodeOutput(demo_conditioning.comfy_conditioning(prompt),
                             demo_conditioning.comfy_conditioning(demo_conditioning.EMPTY))


class PreciseCacheDemoDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheDemoDecode",
            display_name="PreciseCache Demo Decode",
            description="Decode a demo-model LATENT into frames with the demo's linear stand-in VAE.",
            category=CATEGORY,
            inputs=[
                io.Latent.Input(
                    "samples",
                    tooltip="Video latent from KSampler with the demo model ([B, 16, T, H/8, W/8], Wan 2.1 format).",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="Frames as IMAGE [B * (1 + 4 (T - 1)), H, W, 3] in [0, 1]."),
            ],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        import comfy.latent_formats

        latent = samples["samples"]
        if latent.ndim != 5 or latent.shape[1] != latent_map.LATENT_CHANNELS:
            raise ValueError(f"expected a Wan video latent [B, 16, T, h, w], got {tuple(latent.shape)}")
        z = comfy.latent_formats.Wan21().process_in(latent.float().cpu())
        frames = latent_map.decode(z)  # [B, 3, F, H, W] in [0, 1]
        return io.NodeOutput(latent_map.frames_to_image(frames).to(torch.float32))


DEMO_NODES = [PreciseCacheDemoConditioning, PreciseCacheDemoDecode]
