"""LTX-Video image-to-video through ComfyUI's own LTXVImgToVideo node, with a real (tiny) VAE.

The VAE is a tiny random LTX-Video VideoVAE (tiny_models.TINY_LTXV_VAE_CONFIG) inside a tiny all-in-one
LTX-Video checkpoint, loaded by ComfyUI's CheckpointLoaderSimple: comfy.sd.VAE detects it as LTX-Video by
its keys and takes its layout from the checkpoint's ``config`` metadata. (VAELoader cannot load a tiny
one: in ComfyUI 0.8.0 it does not pass the file's metadata on, so comfy.sd.VAE always builds the full-size
layout, 419 M parameters at least; see tiny_models.tiny_ltxv_checkpoint_state_dict.)

LTXVImgToVideo encodes a start image into the first latent frame and gives the latent a per-frame noise
mask (0 on that frame at strength 1). KSampler then runs the tiny LTX-Video transformer (the harness's
``ltxv`` kind, through UNETLoader) with LFCache + BlockCache to the end; with caching unable to act the
output is bit-identical to the uncached run; and every trial's per-token timestep is the model's own
process_timestep on the noise mask the node made, pooled as the trial pools the latent.
"""
from __future__ import annotations

import os

import pytest
import torch

from cache_helpers import assert_same, latest_report, spy_trials, with_blockcache, with_lfcache

WIDTH, HEIGHT, LENGTH = 256, 256, 33          # latent 128 x 5 x 8 x 8
LATENT_SHAPE = (1, 128, 5, 8, 8)
STEPS, CFG = 12, 4.0


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    import tiny_models as tm
    directory = os.path.join(comfy.base_dir, "models", "checkpoints")
    name = tm.write_tiny_ltxv_checkpoint(directory, seed=0)
    ckpt_model, _clip, vae = comfy.node("CheckpointLoaderSimple")().load_checkpoint(name)
    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 96, 128, 3, generator=g)  # a small start image (IMAGE: [B, H, W, C] in 0..1)
    pos = comfy.conditioning("ltxv", 1, "positive")
    neg = comfy.conditioning("ltxv", 1, "negative")
    out = comfy.node("LTXVImgToVideo").execute(positive=pos, negative=neg, image=image, vae=vae, width=WIDTH,
                                               height=HEIGHT, length=LENGTH, batch_size=1, strength=1.0)
    pos, neg, latent = out.args
    return {"comfy": comfy, "pack": precisecache_pack, "vae": vae, "ckpt_model": ckpt_model, "image": image,
            "pos": pos, "neg": neg, "latent": latent}


def _sample(ready, model):
    return ready["comfy"].nodes.KSampler().sample(model, 0, STEPS, CFG, "euler", "simple", ready["pos"], ready["neg"],
                                                  ready["latent"])[0]["samples"]


def test_tiny_ltxv_vae_is_detected_and_ltxvimgtovideo_encodes_the_start_image(ready):
    import comfy.ldm.lightricks.vae.causal_video_autoencoder as ltx_vae
    import comfy.utils as comfy_utils
    import tiny_models as tm
    comfy, vae, latent = ready["comfy"], ready["vae"], ready["latent"]
    # detected as LTX-Video, with the tiny layout from the metadata and exactly the written weights
    assert isinstance(vae.first_stage_model, ltx_vae.VideoVAE)
    assert vae.latent_channels == 128 and vae.latent_dim == 3 and vae.downscale_index_formula == (8, 32, 32)
    written, _ = tm.tiny_ltxv_vae_state_dict(seed=0)
    loaded = vae.first_stage_model.state_dict()
    assert sorted(loaded) == sorted(written)
    assert all(torch.equal(loaded[k].float(), written[k]) for k in written)
    # the checkpoint's transformer is the harness's tiny LTX-Video, which the sampling tests load by UNETLoader
    model = comfy.load_model("ltxv")
    assert type(ready["ckpt_model"].model).__name__ == type(model.model).__name__ == "LTXV"
    a, b = ready["ckpt_model"].model.diffusion_model.state_dict(), model.model.diffusion_model.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    # what LTXVImgToVideo made: the encoded image in latent frame 0, zeros after it, mask 0 there, 1 elsewhere
    samples, mask = latent["samples"], latent["noise_mask"]
    assert tuple(samples.shape) == LATENT_SHAPE
    resized = comfy_utils.common_upscale(ready["image"].movedim(-1, 1), WIDTH, HEIGHT, "bilinear",
                                         "center").movedim(1, -1)
    assert torch.equal(samples[:, :, :1], vae.encode(resized[:, :, :, :3]).to(samples))
    assert samples[:, :, :1].abs().max() > 0 and samples[:, :, 1:].abs().max() == 0
    assert tuple(mask.shape) == (1, 1, 5, 1, 1)
    assert mask[:, :, 0].max() == 0 and bool((mask[:, :, 1:] == 1).all())


def test_ltxv_img2vid_exact_when_caching_cannot_act(ready):
    comfy, model = ready["comfy"], ready["comfy"].load_model("ltxv")
    reference = _sample(ready, model)
    assert torch.isfinite(reference).all()
    off = with_blockcache(comfy, with_lfcache(comfy, model, speed_target=0.0, alpha=0.0), pivotal_ratio=1.0)
    assert_same(_sample(ready, off), reference)
    report = latest_report(ready["pack"], off)
    assert not report.skipped_steps and report.blocks_reused == 0


def test_ltxv_img2vid_with_lfcache_and_blockcache_runs_to_the_end(ready, monkeypatch):
    comfy, pack, model = ready["comfy"], ready["pack"], ready["comfy"].load_model("ltxv")
    node_mask = ready["latent"]["noise_mask"]
    calls = spy_trials(pack, monkeypatch)
    on = with_blockcache(comfy, with_lfcache(comfy, model, speed_target=2.0, step_aside=False))
    out = _sample(ready, on)
    report = latest_report(pack, on)
    assert torch.isfinite(out).all() and tuple(out.shape) == LATENT_SHAPE and not report.interrupted
    assert report.steps == STEPS and report.skipped_steps, report.notes
    assert report.trial_forwards > 0 and len(calls) == report.trial_forwards, (len(calls), report.trial_forwards)
    assert not any("off for this run" in n for n in report.notes), report.notes
    assert report.blocks_reused > 0

    base = model.model
    for call in calls:
        x_full, x_trial = call["args"][0], call["targs"][0]
        mask_full, mask_trial = call["kwargs"]["denoise_mask"], call["tkwargs"]["denoise_mask"]
        # the model's mask is LTXVImgToVideo's, broadcast to the latent: 0 on the image frame, 1 elsewhere
        assert mask_full.shape[2:] == x_full.shape[2:], (mask_full.shape, x_full.shape)
        assert torch.equal(mask_full, node_mask.to(mask_full).expand_as(mask_full)), mask_full.shape
        assert torch.equal(mask_trial, mask_full[:, :, ::2, ::4, ::4])
        # independent: the model's own process_timestep on the pooled mask, at this call's timestep
        t_full = call["args"][1]
        assert t_full.dim() == 3 and t_full.shape[1] == x_full[0, 0].numel()  # per token: the case under test
        t_scalar = t_full.reshape(t_full.shape[0], -1).amax(dim=1)
        expected = base.process_timestep(t_scalar, x=x_trial, denoise_mask=mask_trial)
        assert call["targs"][1].shape == expected.shape
        assert torch.allclose(call["targs"][1], expected, atol=1e-4)
        frame0 = x_trial.shape[3] * x_trial.shape[4]  # the trial's first frame holds the image: timestep 0
        assert call["targs"][1][:, :frame0].abs().max() == 0 and call["targs"][1][:, frame0:].min() > 0

    # and the result decodes through the same VAE (VAEDecode): a video of LENGTH frames
    frames = comfy.nodes.VAEDecode().decode(ready["vae"], {"samples": out})[0]
    assert torch.isfinite(frames).all() and tuple(frames.shape[-4:]) == (LENGTH, HEIGHT, WIDTH, 3)


def test_vaeloader_does_not_pass_the_metadata_config_so_the_vae_comes_through_a_checkpoint(ready, monkeypatch):
    """Why this file loads the VAE through CheckpointLoaderSimple: the same tiny VAE, saved alone with its
    config in the metadata, reaches VideoVAE through VAELoader without that config (ComfyUI would then build
    the full-size layout, 419 M parameters; stopped here before it does). Fails, as a sign to load it
    through VAELoader instead, once ComfyUI passes the metadata on."""
    import comfy.ldm.lightricks.vae.causal_video_autoencoder as ltx_vae
    import tiny_models as tm
    from safetensors.torch import save_file
    comfy = ready["comfy"]
    sd, metadata = tm.tiny_ltxv_vae_state_dict(seed=0)
    name = "tiny_ltxv_vae_alone.safetensors"
    save_file(sd, os.path.join(comfy.base_dir, "models", "vae", name), metadata=metadata)
    seen = []

    def init(self, version=0, config=None):
        seen.append((version, config))
        raise RuntimeError("stop before building the full-size VAE")

    monkeypatch.setattr(ltx_vae.VideoVAE, "__init__", init)
    with pytest.raises(RuntimeError, match="stop before building"):
        comfy.node("VAELoader")().load_vae(name)
    assert seen == [(0, None)]  # detected as LTX-Video, but with no config: the guessed full-size layout
