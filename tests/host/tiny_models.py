"""Tiny random-weight models of the real video architectures, for ComfyUI's own loader.

Each kind is built from ComfyUI's own model class (so key names and shapes are the real ones),
given deterministic weights from a seeded generator, and saved as safetensors. ComfyUI's
`UNETLoader` / `comfy.sd.load_diffusion_model` then detects it from the state dict like a real
checkpoint. ComfyUI must already be importable (the harness's `comfy` fixture does that).
"""
import json
import math
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelKind:
    name: str               # key used everywhere (also the test node's `model_kind`)
    filename: str           # file written into models/diffusion_models/
    config_class: str       # comfy.supported_models class that detection must pick
    model_class: str        # comfy.model_base class of the loaded model
    latent_channels: int
    latent_shape: tuple     # default in-process latent (B, C, T, H, W)
    empty_latent: tuple     # (core node, inputs) making a latent this model samples from, for graphs
    conditioning: str       # what make_conditioning adds besides cross_attn (documentation)
    blocks: dict = field(default_factory=dict)  # transformer blocks by patch-point name


MODEL_KINDS = {
    "wan": ModelKind(
        "wan", "tiny_wan21_t2v.safetensors", "WAN21_T2V", "WAN21", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn [1, L, 4096] only", {"double_block": 2}),
    "wan_i2v": ModelKind(
        "wan_i2v", "tiny_wan21_i2v.safetensors", "WAN21_I2V", "WAN21", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn + clip_vision_output (penultimate_hidden_states [1, 257, 1280]); optional "
        "concat_latent_image [1, 16, T, H, W] + concat_mask (zeros are concatenated when absent)",
        {"double_block": 2}),
    "wan22": ModelKind(
        "wan22", "tiny_wan22_ti2v.safetensors", "WAN22_T2V", "WAN22", 48, (1, 48, 3, 8, 8),
        # a 16-ch all-zero latent is widened to 48 ch by comfy.sample.fix_empty_latent_channels
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn [1, L, 4096] only (48-ch latent, Wan 2.2 5B TI2V layout)", {"double_block": 2}),
    "wan_vace": ModelKind(
        "wan_vace", "tiny_wan21_vace.safetensors", "WAN21_Vace", "WAN21_Vace", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn + vace_frames [[1, 32, T, H, W]] + vace_mask [[1, 64, T, H, W]] + vace_strength [1.0] "
        "(as WanVaceToVideo sets them)", {"double_block": 2}),
    "wan_camera": ModelKind(
        "wan_camera", "tiny_wan21_camera.safetensors", "WAN21_Camera", "WAN21_Camera", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn + camera_conditions [1, 24, T, 8H, 8W] (pixel resolution, as WanCameraEmbedding makes it)",
        {"double_block": 2}),
    "hunyuan": ModelKind(
        "hunyuan", "tiny_hunyuan_video.safetensors", "HunyuanVideo", "HunyuanVideo", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "cross_attn [1, L, 4096] + pooled_output [1, 768] (required) + guidance (float, default 6.0)",
        {"double_block": 2, "single_block": 2}),
    "hunyuan_i2v": ModelKind(
        "hunyuan_i2v", "tiny_hunyuan_video_i2v.safetensors", "HunyuanVideoI2V", "HunyuanVideoI2V", 16,
        (1, 16, 3, 8, 8), ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "as hunyuan + concat_latent_image [1, 16, T, H, W] + concat_mask (HunyuanImageToVideo's "
        "concat mode)", {"double_block": 2, "single_block": 2}),
    "hunyuan_skyreels": ModelKind(
        "hunyuan_skyreels", "tiny_hunyuan_video_skyreels_i2v.safetensors", "HunyuanVideoSkyreelsI2V",
        "HunyuanVideoSkyreelsI2V", 16, (1, 16, 3, 8, 8),
        ("EmptyHunyuanLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
        "as hunyuan + concat_latent_image [1, 16, T, H, W]", {"double_block": 2, "single_block": 2}),
    "ltxv": ModelKind(
        "ltxv", "tiny_ltxv.safetensors", "LTXV", "LTXV", 128, (1, 128, 2, 4, 4),
        ("EmptyLTXVLatentVideo", {"width": 128, "height": 128, "length": 9, "batch_size": 1}),
        "cross_attn [1, L, 4096] + attention_mask [1, L] torch.long (required) + frame_rate",
        {"double_block": 2}),
}


EXTRA_KINDS = {
    "hunyuan15": ModelKind(
        "hunyuan15", "tiny_hunyuan_video15.safetensors", "HunyuanVideo15", "HunyuanVideo15", 32, (1, 32, 3, 8, 8),
        ("EmptyHunyuanVideo15Latent", {"width": 128, "height": 128, "length": 9, "batch_size": 1}),
        "cross_attn [1, L, 4096] + pooled_output None (no vector_in) + conditioning_byt5small [1, L', 1472]",
        {"double_block": 2, "single_block": 2}),
    # the same checkpoint, with HunyuanVideo15ImageToVideo's image-to-video conditioning
    "hunyuan15_i2v": ModelKind(
        "hunyuan15_i2v", "tiny_hunyuan_video15.safetensors", "HunyuanVideo15", "HunyuanVideo15", 32,
        (1, 32, 3, 8, 8), ("EmptyHunyuanVideo15Latent", {"width": 128, "height": 128, "length": 9, "batch_size": 1}),
        "as hunyuan15 + clip_vision_output + concat_latent_image + concat_mask", {"double_block": 2, "single_block": 2}),
    # the step-distilled checkpoints' layout: time_r_in.* (meanflow: the next sigma of the schedule embedded too)
    "hunyuan15_distilled": ModelKind(
        "hunyuan15_distilled", "tiny_hunyuan_video15_distilled.safetensors", "HunyuanVideo15", "HunyuanVideo15", 32,
        (1, 32, 3, 8, 8), ("EmptyHunyuanVideo15Latent", {"width": 128, "height": 128, "length": 9, "batch_size": 1}),
        "as hunyuan15", {"double_block": 2, "single_block": 2}),
}
"""Kinds that are not in MODEL_KINDS (so the shared harness, the baseline tests and the server-side test
conditioning node do not know them): written and conditioned by the tests that use them
(``test_family_correctness.py``)."""


def spec_of(kind) -> ModelKind:
    return MODEL_KINDS[kind] if kind in MODEL_KINDS else EXTRA_KINDS[kind]


def _build_module(kind):
    """Instantiate ComfyUI's own network for `kind` with uninitialised weights and return
    (module, safetensors metadata or None). Sizes are chosen to satisfy detection rules."""
    import torch
    import comfy.ops
    ops = comfy.ops.disable_weight_init
    common = dict(device="cpu", dtype=torch.float32, operations=ops)
    if kind in ("wan", "wan_i2v", "wan22"):
        from comfy.ldm.wan.model import WanModel
        # detection: heads = dim // 128; text_dim not detected (always 4096); img_emb.* -> i2v;
        # out_dim 48 -> WAN22_T2V; I2V needs in_dim 36 (16 noise + 4 mask + 16 image)
        in_dim, out_dim, model_type = {"wan": (16, 16, "t2v"), "wan_i2v": (36, 16, "i2v"),
                                       "wan22": (48, 48, "t2v")}[kind]
        net = WanModel(model_type=model_type, patch_size=(1, 2, 2), in_dim=in_dim, dim=128, ffn_dim=256,
                       freq_dim=256, text_dim=4096, out_dim=out_dim, num_heads=1, num_layers=2, **common)
        return net, None
    if kind == "wan_vace":
        from comfy.ldm.wan.model import VaceWanModel
        # detection: vace_patch_embedding.* -> vace (in_dim 96 = 32 frame + 64 mask channels), vace_blocks.N
        net = VaceWanModel(model_type="vace", patch_size=(1, 2, 2), in_dim=16, dim=128, ffn_dim=256, freq_dim=256,
                           text_dim=4096, out_dim=16, num_heads=1, num_layers=2, vace_layers=1, vace_in_dim=96,
                           **common)
        return net, None
    if kind == "wan_camera":
        from comfy.ldm.wan.model import CameraWanModel
        # detection: control_adapter.conv.* + img_emb.* -> camera (Wan 2.1 Fun camera, in_dim 32)
        net = CameraWanModel(model_type="camera", patch_size=(1, 2, 2), in_dim=32, dim=128, ffn_dim=256,
                             freq_dim=256, text_dim=4096, out_dim=16, num_heads=1, num_layers=2,
                             in_dim_control_adapter=24, **common)
        return net, None
    if kind in ("hunyuan", "hunyuan_i2v", "hunyuan_skyreels"):
        from comfy.ldm.hunyuan_video.model import HunyuanVideo
        # detection: hidden = img_in width, heads = hidden // 128, axes_dim [16, 56, 56] (sum 128);
        # vector_in.* -> vec_in_dim 768; guidance_in.* -> guidance_embed
        # in_channels 33 -> HunyuanVideoI2V (latent + image + mask), 32 -> SkyReels I2V (latent + image)
        in_channels = {"hunyuan": 16, "hunyuan_i2v": 33, "hunyuan_skyreels": 32}[kind]
        net = HunyuanVideo(image_model="hunyuan_video", in_channels=in_channels, out_channels=16, vec_in_dim=768,
                           context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=2,
                           depth_single_blocks=2, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2],
                           qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
                           use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False, **common)
        return net, None
    if kind in ("hunyuan15", "hunyuan15_i2v", "hunyuan15_distilled"):
        from comfy.ldm.hunyuan_video.model import HunyuanVideo
        # detection: vision_in.proj.0 width 1152 -> HunyuanVideo15 (SigLIP vision tokens, meanflow_sum);
        # patch 1x1x1, in 65 = 32 latent + 32 start image + 1 mask, out 32; byt5_in.* -> ByT5 glyph tokens
        # (fixed 1472 -> 2048 -> 2048 widths); cond_type_embedding.*; no vector_in, no guidance_in;
        # time_r_in.* (meanflow) only for the step-distilled layout
        net = HunyuanVideo(image_model="hunyuan_video", in_channels=65, out_channels=32, vec_in_dim=None,
                           context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=2,
                           depth_single_blocks=2, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 1, 1],
                           qkv_bias=True, guidance_embed=False, byt5=True, meanflow=kind == "hunyuan15_distilled",
                           use_cond_type_embedding=True, vision_in_dim=1152, meanflow_sum=True, **common)
        return net, None
    if kind == "ltxv":
        from comfy.ldm.lightricks.model import LTXVModel
        # detection assumes 32 heads and caption width 4096: a JSON `config` in the metadata
        # overrides the heads (2 x 64 = 128 wide)
        cfg = {"num_attention_heads": 2, "attention_head_dim": 64, "caption_channels": 4096}
        net = LTXVModel(in_channels=128, cross_attention_dim=128, num_layers=2, **cfg, **common)
        return net, {"config": json.dumps({"transformer": cfg})}
    raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS) + sorted(EXTRA_KINDS)}")


def tiny_state_dict(kind, seed=0):
    """Deterministic state dict (float32) of the tiny `kind` model, plus safetensors metadata.

    Weights depend only on (kind, seed, torch's CPU generator): matrices ~ N(0, 1/fan_in),
    1-D weights/scales (norms) = 1, biases ~ N(0, 0.02^2)."""
    net, metadata = _build_module(kind)
    return random_weights(net.state_dict(), seed), metadata


def random_weights(shapes: dict, seed: int, zeros_suffix: str | None = None) -> dict:
    """Deterministic float32 weights for a state dict's names and shapes (the tensors' values are not
    read: meta tensors work): matrices ~ N(0, 1/fan_in), biases ~ N(0, 0.02²), other 1-D tensors 1
    (names ending in ``zeros_suffix``: 0)."""
    import torch
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    sd = {}
    for name, t in sorted(shapes.items()):
        if t.ndim >= 2:
            v = torch.randn(t.shape, generator=g) / math.sqrt(math.prod(t.shape[1:]))
        elif name.endswith("bias"):
            v = torch.randn(t.shape, generator=g) * 0.02
        elif zeros_suffix and name.endswith(zeros_suffix):
            v = torch.zeros(t.shape)
        else:
            v = torch.ones(t.shape)
        sd[name] = v.to(torch.float32).contiguous()
    return sd


def write_tiny_model(kind, directory, seed=0):
    """Write the tiny `kind` model as safetensors into `directory`; return its file name."""
    from safetensors.torch import save_file
    spec = spec_of(kind)
    sd, metadata = tiny_state_dict(kind, seed)
    os.makedirs(directory, exist_ok=True)
    save_file(sd, os.path.join(directory, spec.filename), metadata=metadata)
    return spec.filename


def expected_model_class(kind):
    """Name of the comfy.supported_models config class detection must choose for `kind`."""
    return spec_of(kind).config_class


# --------------------------------------------------------------------------- LTX-Video VAE

TINY_LTXV_CHECKPOINT = "tiny_ltxv_with_vae.safetensors"
"""File name of the tiny all-in-one LTX-Video checkpoint (transformer + VAE), for models/checkpoints/."""

TINY_LTXV_VAE_CONFIG = {
    "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    # 4x4 pixel patches, then three 2x2x2 compressions: 8x in time, 32x in space, as ComfyUI's VAE wrapper
    # assumes for LTX-Video (downscale_index_formula (8, 32, 32)); one residual layer each side. The last
    # decoder block is a res_x: the decoder runs the list reversed, so its up_blocks.0 is a res_x block and
    # carries "decoder.up_blocks.0.res_blocks.0.conv1.conv.weight", the key comfy.sd.VAE detects LTX-Video by.
    "encoder_blocks": [["compress_all", {}], ["compress_all", {}], ["compress_all", {}], ["res_x", {"num_layers": 1}]],
    "decoder_blocks": [["compress_all", {}], ["compress_all", {}], ["compress_all", {}], ["res_x", {"num_layers": 1}]],
    "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform", "causal_decoder": False,
    "timestep_conditioning": False,
}
"""Config of the tiny LTX-Video VAE (ComfyUI's VideoVAE). 128 channels throughout: the encoder's and the
decoder's base width (128) is not configurable and the latent has 128 channels (its per-channel statistics
are fixed at 128), so "tiny" means few layers: 14.9 M parameters, 60 MB in float32, against 419 M for the
smallest full-size layout."""


def tiny_ltxv_vae_state_dict(seed=0):
    """Deterministic state dict (float32) of the tiny LTX-Video VAE, keys as comfy.sd.VAE takes them
    (``encoder.*``, ``decoder.*``, ``per_channel_statistics.*``), plus the metadata that gives its config.

    Weights as tiny_state_dict's; the latent statistics are the identity (means 0, stds 1)."""
    import torch
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
    with torch.device("meta"):
        net = VideoVAE(config=TINY_LTXV_VAE_CONFIG)
    sd = random_weights(net.state_dict(), int(seed) + 1000, zeros_suffix="mean-of-means")
    return sd, {"config": json.dumps({"vae": TINY_LTXV_VAE_CONFIG})}


def tiny_ltxv_checkpoint_state_dict(seed=0):
    """The tiny LTX-Video transformer (the ``ltxv`` kind, same weights) and the tiny VAE in one checkpoint,
    the layout of LTX-Video's released all-in-one checkpoints: ``model.diffusion_model.*`` + ``vae.*``, the
    JSON ``config`` metadata holding both the ``transformer`` and the ``vae`` config.

    Why a checkpoint and not a file for VAELoader: in ComfyUI 0.8.0 ``VAELoader`` calls
    ``comfy.sd.VAE(sd=sd)`` without the file's metadata, so an LTX-Video VAE loaded there always gets the
    full-size layout guessed from its weights (VideoVAE.guess_config: 419 M parameters at least); only
    ``load_state_dict_guess_config`` (CheckpointLoaderSimple) passes the metadata config to comfy.sd.VAE."""
    model_sd, model_meta = tiny_state_dict("ltxv", seed)
    vae_sd, vae_meta = tiny_ltxv_vae_state_dict(seed)
    sd = {f"model.diffusion_model.{k}": v for k, v in model_sd.items()}
    sd.update({f"vae.{k}": v for k, v in vae_sd.items()})
    config = {**json.loads(model_meta["config"]), **json.loads(vae_meta["config"])}
    return sd, {"config": json.dumps(config)}


def write_tiny_ltxv_checkpoint(directory, seed=0):
    """Write the tiny LTX-Video checkpoint (transformer + VAE) into `directory` (models/checkpoints/);
    return its file name, for CheckpointLoaderSimple."""
    from safetensors.torch import save_file
    sd, metadata = tiny_ltxv_checkpoint_state_dict(seed)
    os.makedirs(directory, exist_ok=True)
    save_file(sd, os.path.join(directory, TINY_LTXV_CHECKPOINT), metadata=metadata)
    return TINY_LTXV_CHECKPOINT
