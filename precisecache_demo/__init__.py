"""PreciseCache demo: procedural clips, a linear stand-in VAE and a stand-in text encoder for a
tiny Wan 2.1 model trained on them (``models/precisecache_demo_wan.safetensors``).

Pure torch: nothing here imports ComfyUI (the nodes in ``nodes/demo_nodes.py`` and the scripts do).
"""
from .clips import CONDITIONS, condition_names, make_batch, make_clip
from .conditioning import VOCABULARY, comfy_conditioning, embed, embed_batch, negative
from .latent_map import decode, encode, frames_to_image, latent_frames, video_frames

MODEL_FILENAME = "precisecache_demo_wan.safetensors"
DEMO_FRAMES = 9
DEMO_SIZE = 128

__all__ = [
    "CONDITIONS", "condition_names", "make_batch", "make_clip",
    "VOCABULARY", "comfy_conditioning", "embed", "embed_batch", "negative",
    "decode", "encode", "frames_to_image", "latent_frames", "video_frames",
    "MODEL_FILENAME", "DEMO_FRAMES", "DEMO_SIZE",
]
