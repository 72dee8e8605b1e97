"""Every model family, checked on results: stored residuals against an independent forward hook,
BlockCache's error against the same schedule with the non-pivotal blocks dropped, the trial's inputs
against the model's own timestep computation, and runs with noise masks, bf16 weights and a LoRA;
LTX-Video guide frames (LTXVAddGuide) against the model's own token positions; HunyuanVideo 1.5
(a tiny model not in the shared harness's kinds: written and conditioned here); one CFG stream taken
out of a batched call against the batched forward's output.

These tests fail on a BlockCache that takes ``out − args["img"]`` after an in-place block ran (0 on
HunyuanVideo and LTX-Video), and on a trial that leaves per-token or per-frame timesteps full size.
"""
from __future__ import annotations

import os

import pytest
import torch

from cache_helpers import (assert_same, drop_reused_blocks, latest_report, pack_module, relative_error, spy_trials,
                           with_blockcache, with_lfcache)

KINDS = ["wan", "wan_i2v", "wan22", "wan_vace", "wan_camera", "hunyuan", "hunyuan_i2v", "hunyuan_skyreels",
         "hunyuan15", "hunyuan15_i2v", "hunyuan15_distilled", "ltxv"]


def _hunyuan15_conditioning(kind, seed=1, variant="positive", length=8, width=4096, latent_shape=None):
    """What HunyuanVideo 1.5's text encoders and HunyuanVideo15ImageToVideo give the model, with random
    tensors: cross_attn, pooled_output None (the network has no vector_in), ByT5 glyph tokens; for
    image-to-video also SigLIP tokens of the start image and the start image's latent with its mask.
    Only the text differs between positive and negative (so CFG matters)."""
    import comfy.clip_vision
    g_text = torch.Generator().manual_seed(seed * 8 + ("positive", "negative").index(variant))
    g_side = torch.Generator().manual_seed(seed * 8 + 4)
    extras = {"pooled_output": None, "conditioning_byt5small": torch.randn(1, 5, 1472, generator=g_text)}
    if kind == "hunyuan15_i2v":
        out = comfy.clip_vision.Output()
        out.last_hidden_state = torch.randn(1, 16, 1152, generator=g_side)
        extras["clip_vision_output"] = out
        _, _, t, h, w = latent_shape
        image = torch.zeros(1, 32, t, h, w)
        image[:, :, :1] = torch.randn(1, 32, 1, h, w, generator=g_side)
        mask = torch.ones(1, 1, t, h, w)
        mask[:, :, :1] = 0.0
        extras.update(concat_latent_image=image, concat_mask=mask)
    return [[torch.randn(1, length, width, generator=g_text), extras]]


class _Comfy:
    """The harness's in-process ComfyUI, knowing also tiny_models.EXTRA_KINDS (HunyuanVideo 1.5), which
    the shared harness and the server-side test conditioning do not."""

    def __init__(self, comfy):
        self._comfy = comfy

    def __getattr__(self, name):
        return getattr(self._comfy, name)

    def load_model(self, kind):
        from tiny_models import EXTRA_KINDS
        return self._comfy.load_model(EXTRA_KINDS[kind].filename if kind in EXTRA_KINDS else kind)

    def conditioning(self, kind, seed=1, variant="positive", length=8, width=4096, latent_shape=None):
        from tiny_models import EXTRA_KINDS
        if kind in EXTRA_KINDS:
            return _hunyuan15_conditioning(kind, seed, variant, length, width, latent_shape or
                                           EXTRA_KINDS[kind].latent_shape)
        return self._comfy.conditioning(kind, seed, variant, length, width, latent_shape)

    def sample(self, model, kind, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="simple", latent=None,
               positive=None, negative=None, cond_seed=1, denoise=1.0):
        from tiny_models import EXTRA_KINDS
        if kind in EXTRA_KINDS:
            latent = torch.zeros(EXTRA_KINDS[kind].latent_shape) if latent is None else latent
            shape = tuple(latent.shape)
            positive = positive or self.conditioning(kind, cond_seed, "positive", latent_shape=shape)
            negative = negative or self.conditioning(kind, cond_seed, "negative", latent_shape=shape)
        return self._comfy.sample(model, kind, seed, steps, cfg, sampler, scheduler, latent, positive, negative,
                                  cond_seed, denoise)


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    import harness
    import tiny_models as tm
    directory = harness.diffusion_models_dir(comfy.base_dir)
    for kind in tm.EXTRA_KINDS:
        tm.write_tiny_model(kind, directory, seed=0)
    return _Comfy(comfy), precisecache_pack


def _family_blocks(pack, model):
    """(patch key → block module) from the pack's own family adapter."""
    support = pack_module(pack, "nodes.models").model_support(model)
    dm = model.model.diffusion_model
    return {key: getattr(dm, spec.module_list)[key[1]] for key, spec in support.blocks.items()}


def _block_io_hooks(modules: dict):
    """Forward hooks that clone each block's input *before* it runs and its output after it ran."""
    seen: dict = {}
    handles = []

    def tensors_in(args, kwargs):
        if "img" in kwargs:
            return {"img": kwargs["img"], **({"txt": kwargs["txt"]} if "txt" in kwargs else {})}
        return {"img": args[0]}

    for key, module in modules.items():
        def pre(mod, args, kwargs, key=key):
            seen[key] = {"in": {k: v.detach().clone() for k, v in tensors_in(args, kwargs).items()}}

        def post(mod, args, kwargs, output, key=key):
            outs = output if isinstance(output, tuple) else (output,)
            names = ["img", "txt"][:len(outs)]
            seen[key]["out"] = {n: o.detach().clone() for n, o in zip(names, outs)}

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    return seen, handles


@pytest.mark.parametrize("kind", KINDS)
def test_stored_residuals_equal_block_output_minus_input_from_an_independent_hook(ready, kind, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    block_cache_mod = pack_module(pack, "precisecache_core.block_cache")
    seen, handles = _block_io_hooks(_family_blocks(pack, model))
    checked = []
    original_record = block_cache_mod.BlockResidualCache._record

    def checking_record(self, state, block, args, out, snapshot):
        original_record(self, state, block, args, out, snapshot)
        for name in out:
            stored = state.residuals[(block, name)]
            expected = seen[block]["out"][name] - seen[block]["in"][name]
            assert expected.abs().max() > 0, "the block changed nothing: the check would prove nothing"
            assert torch.allclose(stored.float(), expected.float(), atol=1e-5, rtol=1e-4), \
                f"{kind} {block} {name}: stored residual differs from out - in by " \
                f"{(stored.float() - expected.float()).abs().max().item():.3g}"
            checked.append((block, name))

    monkeypatch.setattr(block_cache_mod.BlockResidualCache, "_record", checking_record)
    try:
        patched = with_blockcache(comfy, model, pivotal_ratio=0.5, refresh_interval=1)
        comfy.sample(patched, kind, steps=10, cfg=5.0)
    finally:
        for h in handles:
            h.remove()
    n_blocks = len(_family_blocks(pack, model))
    assert len({b for b, _ in checked}) == n_blocks, checked
    assert latest_report(pack, patched).blocks_reused > 0


@pytest.mark.parametrize("kind", KINDS)
def test_blockcache_error_well_below_dropping_the_non_pivotal_blocks(ready, kind, monkeypatch):
    """Same schedule (refresh every other computed step, half the blocks pivotal), 20 steps:
    reusing the stored residuals must be far closer to uncached than skipping those blocks.

    HunyuanVideo 1.5 with 80 steps: its tiny random network's residuals change about twice as fast
    per step as the others' (its modulation vector has no pooled-text or guidance term, only the
    timestep), so at 20 steps reuse is no better than dropping; measured here, the reuse error falls
    with the step size (20 / 40 / 80 steps: 0.085 / 0.044 / 0.029) while dropping's does not
    (0.079 / 0.066 / 0.068), which is what a correct residual cache does."""
    comfy, pack = ready
    model = comfy.load_model(kind)
    steps = 80 if kind.startswith("hunyuan15") else 20
    reference = comfy.sample(model, kind, steps=steps, cfg=5.0)
    patched = with_blockcache(comfy, model, pivotal_ratio=0.5, refresh_interval=1)
    cached = comfy.sample(patched, kind, steps=steps, cfg=5.0)
    assert latest_report(pack, patched).blocks_reused > 0
    drop_reused_blocks(pack, monkeypatch)
    dropped = comfy.sample(patched, kind, steps=steps, cfg=5.0)
    err_cache, err_drop = relative_error(cached, reference), relative_error(dropped, reference)
    assert torch.isfinite(cached).all()
    assert err_drop > 1e-3, f"dropping blocks changed nothing ({err_drop:.3g}): the test would show nothing"
    assert err_cache < 0.6 * err_drop, f"{kind}: BlockCache error {err_cache:.4f} vs dropped {err_drop:.4f}"


def _masked_latent(channels, shape, first_frame_strength=1.0):
    """A latent whose first frame is given (noise mask 1 − strength there), like LTXVImgToVideo /
    Wan22ImageToVideoLatent do, with a random stand-in for the encoded image."""
    b, _, t, h, w = shape
    g = torch.Generator().manual_seed(3)
    samples = torch.zeros(b, channels, t, h, w)
    samples[:, :, :1] = torch.randn(b, channels, 1, h, w, generator=g)
    mask = torch.ones(b, 1, t, h, w)
    mask[:, :, :1] = 1.0 - first_frame_strength
    return {"samples": samples, "noise_mask": mask}


@pytest.mark.parametrize("kind, channels, shape", [
    ("ltxv", 128, (1, 128, 5, 8, 8)),   # per-token timestep [B, N, 1]
    ("wan22", 48, (1, 48, 5, 8, 8)),    # per-frame timestep [B, T]
])
def test_trial_timestep_follows_the_models_own_computation_under_a_noise_mask(ready, kind, channels, shape,
                                                                               monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    latent = _masked_latent(channels, shape)
    pos = comfy.conditioning(kind, 1, "positive", latent_shape=shape)
    neg = comfy.conditioning(kind, 1, "negative", latent_shape=shape)
    calls = spy_trials(pack, monkeypatch)
    patched = with_lfcache(comfy, model, alpha=1.0)
    out = comfy.nodes.KSampler().sample(patched, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]
    assert torch.isfinite(out).all()
    report = latest_report(pack, patched)
    assert len(calls) == 12 and report.trial_forwards == 12
    assert sum(1 for v in report.lfd if v == v) == 11, report.lfd  # a Δ for every step after the first
    base = model.model
    for call in calls:
        x_trial = call["targs"][0]
        mask_full = call["kwargs"]["denoise_mask"]
        mask_trial = call["tkwargs"]["denoise_mask"]
        assert torch.equal(mask_trial, mask_full[:, :, ::2, ::4, ::4])
        # independent: the model's own process_timestep on the pooled mask, at this call's timestep
        t_full = call["args"][1]
        t_scalar = t_full.reshape(t_full.shape[0], -1).amax(dim=1)
        expected = base.process_timestep(t_scalar, x=x_trial, denoise_mask=mask_trial)
        assert call["targs"][1].shape == expected.shape
        assert torch.allclose(call["targs"][1], expected, atol=1e-4)
    # and the full call's own timestep really was per token / per frame (the case under test)
    assert calls[0]["args"][1].dim() >= 2 and calls[0]["args"][1].shape[1] > 1


def test_ltxv_image_to_video_runs_to_the_end_and_is_exact_when_off(ready):
    comfy, pack = ready
    model = comfy.load_model("ltxv")
    shape = (1, 128, 5, 8, 8)
    latent = _masked_latent(128, shape, first_frame_strength=0.9)
    pos = comfy.conditioning("ltxv", 1, "positive")
    neg = comfy.conditioning("ltxv", 1, "negative")

    def sample(m):
        return comfy.nodes.KSampler().sample(m, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]

    reference = sample(model)
    off = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(sample(off), reference)
    on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
    out = sample(on)
    report = latest_report(pack, on)
    assert torch.isfinite(out).all() and not report.interrupted
    assert report.trial_forwards == 12 and report.blocks_reused > 0


def _ltxv_with_guides(comfy, causal: bool, batch: int = 1):
    """Conditioning and latent as LTXVAddGuide makes them (its own append_keyframe, with random guide
    latents instead of VAE-encoded images): a 5-frame 8×8 video; guide A, one frame at pixel frame 0;
    guide B, two frames at the pixel frame of video frame 2 (16, or 9 with causal positioning), with a
    guide mask that drops its left half (negative noise mask: the model removes those tokens)."""
    add_guide = comfy.node("LTXVAddGuide")
    g = torch.Generator().manual_seed(11)
    scale = (8, 32, 32)
    latent = torch.zeros(batch, 128, 5, 8, 8)
    mask = torch.ones(batch, 1, 5, 1, 1)  # what get_noise_mask makes for a latent without one
    pos = comfy.conditioning("ltxv", 1, "positive")
    neg = comfy.conditioning("ltxv", 1, "negative")
    pos, neg, latent, mask = add_guide.append_keyframe(pos, neg, 0, latent, mask,
                                                       torch.randn(batch, 128, 1, 8, 8, generator=g), 1.0, scale)
    guide_mask = torch.ones(batch, 1, 2, 8, 8)
    guide_mask[..., :4] = 0.0
    pos, neg, latent, mask = add_guide.append_keyframe(pos, neg, 9 if causal else 16, latent, mask,
                                                       torch.randn(batch, 128, 2, 8, 8, generator=g), 1.0, scale,
                                                       guide_mask=guide_mask)
    return pos, neg, {"samples": latent, "noise_mask": mask}


def _capture_positions(dm, monkeypatch):
    """The model's own token positions: (input x shape, pixel coordinates after its grid mask) per forward."""
    seen = []
    original = dm._process_input

    def process_input(x, keyframe_idxs, denoise_mask, **kwargs):
        out, pixel_coords, extra = original(x, keyframe_idxs, denoise_mask, **kwargs)
        seen.append({"shape": tuple(extra["orig_shape"]), "coords": pixel_coords.clone()})
        return out, pixel_coords, extra

    monkeypatch.setattr(dm, "_process_input", process_input)
    return seen


@pytest.mark.parametrize("causal", [False, True])
def test_ltxv_guides_run_to_the_end_with_trial_inputs_placed_as_the_model_places_them(ready, causal, monkeypatch):
    """LTXVAddGuide conditioning (two guides, one partly masked out) sampled to the end with LFCache and
    BlockCache on. Independent of our mapping: in every trial forward, the model's own position of
    each guide token equals the model's own position of the trial's video token of the same cell
    (guide A: video frame 0; guide B's first frame: video frame 2), its second frame lies between
    the trial's frames 1 and 2, and exactly the unmasked guide cells are kept; the trial's timestep
    is the model's own process_timestep of the pooled mask. The same relation is checked on the full
    forward, so the setup is aligned. With causal temporal positioning (real LTX-Video 0.9.x) too."""
    comfy, pack = ready
    model = comfy.load_model("ltxv")
    dm = model.model.diffusion_model
    monkeypatch.setattr(dm, "causal_temporal_positioning", causal)
    pos, neg, latent = _ltxv_with_guides(comfy, causal)
    assert tuple(latent["samples"].shape) == (1, 128, 8, 8, 8) and pos[0][1]["keyframe_idxs"].shape == (1, 3, 192, 2)

    def sample(m):
        return comfy.nodes.KSampler().sample(m, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]

    reference = sample(model)
    off = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(sample(off), reference)

    calls = spy_trials(pack, monkeypatch)
    seen = _capture_positions(dm, monkeypatch)
    on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
    out = sample(on)
    report = latest_report(pack, on)
    assert torch.isfinite(out).all() and not report.interrupted
    assert not any("LFCache is off" in n for n in report.notes), report.notes
    assert len(calls) == 12 and report.trial_forwards == 12, (report.notes, report.trial_forwards)
    assert sum(1 for v in report.lfd if v == v) == 11, report.lfd

    for call in calls:
        x_full, x_trial = call["args"][0], call["targs"][0]
        assert call["factors"] == (2, 4, 4)
        # video frames 0..4 pooled with the factors, the 3 guide frames on H and W only
        assert torch.equal(x_trial, torch.cat([x_full[:, :, :5:2, ::4, ::4], x_full[:, :, 5:, ::4, ::4]], dim=2))
        mask_full, mask_trial = call["kwargs"]["denoise_mask"], call["tkwargs"]["denoise_mask"]
        assert torch.equal(mask_trial, torch.cat([mask_full[:, :, :5:2, ::4, ::4], mask_full[:, :, 5:, ::4, ::4]], 2))
        t_full = call["args"][1]
        t_scalar = t_full.reshape(t_full.shape[0], -1).amax(dim=1)
        expected = model.model.process_timestep(t_scalar, x=x_trial, denoise_mask=mask_trial)
        assert torch.allclose(call["targs"][1], expected, atol=1e-4), "trial timestep != model's own"

    def check_positions(coords, grid, video_frames, kept_w):
        """coords: the model's [B, 3, N_kept, 2]; grid: (h, w) tokens per frame of the call."""
        h, w = grid
        per = h * w
        video = coords[:, :, :video_frames * per].reshape(coords.shape[0], 3, video_frames, h, w, 2)
        guide_a = coords[:, :, video_frames * per:(video_frames + 1) * per].reshape(coords.shape[0], 3, h, w, 2)
        guide_b = coords[:, :, (video_frames + 1) * per:].reshape(coords.shape[0], 3, 2, h, kept_w, 2)
        assert coords.shape[2] == (video_frames + 1) * per + 2 * h * kept_w, "the guide mask's cells were not dropped"
        frame2 = 2 if video_frames == 5 else 1  # video frame 2 is the trial's frame 1
        assert torch.equal(guide_a[..., 0], video[:, :, 0, ..., 0]), "guide A not at video frame 0"
        assert torch.equal(guide_b[:, :, 0, ..., 0], video[:, :, frame2, :, w - kept_w:, 0]), "guide B not at frame 2"
        assert torch.equal(guide_b[:, 1:, 1, ..., 0], video[:, 1:, frame2, :, w - kept_w:, 0])
        t_b1 = guide_b[:, 0, 1, ..., 0]
        if video_frames == 5:  # full call: guide B's second frame sits on video frame 3
            assert torch.equal(t_b1, video[:, 0, 3, :, w - kept_w:, 0])
        else:  # trial: video frame 3 is not kept; it lies between the trial's frames 1 and 2
            assert (t_b1 > video[:, 0, frame2, :, w - kept_w:, 0]).all() and \
                (t_b1 < video[:, 0, frame2 + 1, :, w - kept_w:, 0]).all(), "guide B's second frame out of place"
        assert torch.equal(guide_a[:, 1:, ..., 1], video[:, 1:, 0, ..., 1]), "h/w extents differ"

    full = [s for s in seen if s["shape"][2:] == (8, 8, 8)]
    trial = [s for s in seen if s["shape"][2:] == (6, 2, 2)]
    assert full and len(trial) == 12, [s["shape"] for s in seen]
    check_positions(full[0]["coords"], (8, 8), 5, 4)
    for s in trial:
        check_positions(s["coords"], (2, 2), 3, 1)


def test_ltxv_guide_coordinates_that_do_not_fit_the_latent_stop_lfcache_with_a_note(ready):
    """keyframe_idxs whose token count is not whole frames of the latent: the trial refuses it by name
    and LFCache steps aside for the run (BlockCache continues); no crash."""
    comfy, pack = ready
    model = comfy.load_model("ltxv")
    pos, neg, latent = _ltxv_with_guides(comfy, causal=False)
    for cond in (pos, neg):
        cond[0][1]["keyframe_idxs"] = cond[0][1]["keyframe_idxs"][:, :, :-5]
    on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
    out = comfy.nodes.KSampler().sample(on, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]
    report = latest_report(pack, on)
    assert torch.isfinite(out).all()
    assert any("keyframe_idxs" in n for n in report.notes), report.notes
    # LFCache stepped aside before its first decision, BlockCache went on: the same result as BlockCache alone
    block_only = with_blockcache(comfy, model, pivotal_ratio=0.5)
    alone = comfy.nodes.KSampler().sample(block_only, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]
    assert report.skipped_steps == [] and latest_report(pack, block_only).blocks_reused > 0
    assert_same(out, alone)


@pytest.mark.parametrize("kind", ["wan", "hunyuan", "ltxv"])
def test_bf16_weights_finite_and_exact_when_off(ready, kind):
    comfy_, pack = ready
    import comfy.sd
    from tiny_models import MODEL_KINDS
    path = comfy_.folder_paths.get_full_path_or_raise("diffusion_models", MODEL_KINDS[kind].filename)
    model = comfy.sd.load_diffusion_model(path, model_options={"dtype": torch.bfloat16})
    assert model.model.diffusion_model.dtype == torch.bfloat16 or model.model_dtype() == torch.bfloat16
    reference = comfy_.sample(model, kind, steps=12, cfg=5.0)
    off = with_blockcache(comfy_, with_lfcache(comfy_, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(comfy_.sample(off, kind, steps=12, cfg=5.0), reference)
    on = with_blockcache(comfy_, with_lfcache(comfy_, model, alpha=1.0), pivotal_ratio=0.5)
    out = comfy_.sample(on, kind, steps=12, cfg=5.0)
    assert torch.isfinite(out).all() and latest_report(pack, on).blocks_reused > 0
    assert relative_error(out, reference) < 1.0


def _write_wan_lora(directory):
    """A LoRA for the tiny Wan in the diffusers-style key format ComfyUI's loader maps."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(5)
    sd = {}
    for block in range(2):
        for layer in ("self_attn.q", "self_attn.k", "ffn.0"):
            out_dim = 256 if layer == "ffn.0" else 128
            key = f"diffusion_model.blocks.{block}.{layer}"
            sd[f"{key}.lora_down.weight"] = torch.randn(4, 128, generator=g) * 0.5
            sd[f"{key}.lora_up.weight"] = torch.randn(out_dim, 4, generator=g) * 0.5
    os.makedirs(directory, exist_ok=True)
    save_file(sd, os.path.join(directory, "tiny_wan_lora.safetensors"))
    return "tiny_wan_lora.safetensors"


def test_lora_loaded_with_loraloadermodelonly_finite_and_exact_when_off(ready):
    comfy, pack = ready
    name = _write_wan_lora(os.path.join(comfy.base_dir, "models", "loras"))
    base = comfy.load_model("wan")
    model = comfy.node("LoraLoaderModelOnly")().load_lora_model_only(base, name, 1.0)[0]
    plain = comfy.sample(base, "wan", steps=12, cfg=5.0)
    reference = comfy.sample(model, "wan", steps=12, cfg=5.0)
    assert relative_error(reference, plain) > 1e-3, "the LoRA changed nothing: the test would show nothing"
    off = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(comfy.sample(off, "wan", steps=12, cfg=5.0), reference)
    on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
    assert torch.isfinite(comfy.sample(on, "wan", steps=12, cfg=5.0)).all()


@pytest.mark.parametrize("kind, name", [("wan_vace", "vace_context"), ("wan_camera", "camera_conditions")])
def test_wan_control_inputs_are_downsampled_with_the_latent_and_exact_when_off(ready, kind, name, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    reference = comfy.sample(model, kind, steps=12, cfg=5.0)
    off = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(comfy.sample(off, kind, steps=12, cfg=5.0), reference)
    calls = spy_trials(pack, monkeypatch)
    on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
    out = comfy.sample(on, kind, steps=12, cfg=5.0)
    assert torch.isfinite(out).all() and latest_report(pack, on).blocks_reused > 0
    assert len(calls) == 12
    for call in calls:
        full, small = call["kwargs"][name], call["tkwargs"][name]
        x_full, x_trial = call["args"][0], call["targs"][0]
        if name == "vace_context":  # [B, n, C, T, H, W]: the same cells as the latent
            assert torch.equal(small, full[..., ::2, ::4, ::4])
        else:  # pixel resolution: the 8×8 pixels of every kept latent cell
            b, c, t = full.shape[:3]
            cells = full.reshape(b, c, t, x_full.shape[3], 8, x_full.shape[4], 8)[:, :, ::2, ::4, :, ::4, :]
            assert torch.equal(small, cells.reshape(b, c, cells.shape[2], -1, cells.shape[5] * 8))
        assert small.shape[-2:] == (x_trial.shape[-2:] if name == "vace_context"
                                    else tuple(8 * d for d in x_trial.shape[-2:]))


@pytest.mark.parametrize("kind", ["wan", "wan_vace", "hunyuan", "hunyuan15_i2v", "ltxv", "ltxv_guides"])
def test_one_cfg_stream_selected_from_a_batched_call_gives_that_streams_chunk_of_the_output(ready, kind):
    """select_stream on a real batched cond + uncond call (two samples per stream; the streams differ in
    text, and for HunyuanVideo in guidance, for LTX-Video in the text mask, with per-token timesteps from
    a noise mask): the model's own forward on one stream's inputs equals that stream's chunk of the
    batched output, and cond_index points at the chunk carrying the positive text."""
    comfy, pack = ready
    guides = kind == "ltxv_guides"  # LTXVAddGuide's keyframe_idxs, guide frames and mask too
    kind = "ltxv" if guides else kind
    model = comfy.load_model(kind)
    family = pack_module(pack, "nodes.models").model_support(model).family
    ti = pack_module(pack, "precisecache_core.trial_inputs")
    from tiny_models import spec_of
    channels = spec_of(kind).latent_channels
    shape = (2, channels, 5, 8, 8) if kind == "ltxv" else (2, channels, 3, 8, 8)
    latent = _masked_latent(channels, shape) if kind == "ltxv" else {"samples": torch.zeros(shape)}
    pos = comfy.conditioning(kind, 1, "positive", latent_shape=shape)
    neg = comfy.conditioning(kind, 1, "negative", latent_shape=shape)
    if guides:
        pos, neg, latent = _ltxv_with_guides(comfy, causal=False, batch=2)
    if kind == "hunyuan":
        neg[0][1]["guidance"] = 3.5
    if kind == "ltxv":
        neg[0][1]["attention_mask"] = neg[0][1]["attention_mask"].clone()
        neg[0][1]["attention_mask"][:, -3:] = 0
    dm = model.model.diffusion_model
    options_at = family.forward_args.index("transformer_options")
    checked = []

    def spy(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        order = list(args[options_at]["cond_or_uncond"])
        if len(order) == 2 and len(checked) < 3:
            chunks = out.chunk(2)
            assert (chunks[0] - chunks[1]).abs().max() > 1e-3, "cond and uncond agree: the check would show nothing"
            for i in range(2):
                sargs, skwargs = ti.select_stream(family, args, kwargs, 2, i)
                assert sargs[0].shape[0] == 2 and sargs[options_at]["cond_or_uncond"] == [order[i]]
                alone = dm._forward(*sargs, **skwargs)
                assert torch.allclose(alone, chunks[i], atol=1e-5, rtol=1e-4), \
                    f"{kind} stream {i}: differs from its chunk by {(alone - chunks[i]).abs().max().item():.3g}"
                assert not torch.allclose(alone, chunks[1 - i], atol=1e-3), "matches the other stream's chunk too"
            c = ti.cond_index(order)
            text = ti.select_stream(family, args, kwargs, 2, c)[0][2]
            assert torch.equal(text[0, :pos[0][0].shape[1]].float(), pos[0][0][0].float()), "cond_index: not the cond"
            if kind == "ltxv":
                assert args[1].dim() == 3 and args[1].shape[1] > 1, "no per-token timestep: the case is not covered"
                assert (args[6] is not None) == guides
            checked.append(order)
        return out

    import comfy.patcher_extension as pe
    spied = model.clone()
    spied.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_select_stream", spy)
    comfy.nodes.KSampler().sample(spied, 0, 3, 4.0, "euler", "simple", pos, neg, latent)
    assert len(checked) == 3, checked


def test_hunyuan15_detected_by_comfyui_and_given_its_own_adapter(ready, monkeypatch):
    comfy, pack = ready
    import tiny_models as tm
    model = comfy.load_model("hunyuan15")
    assert type(model.model.model_config).__name__ == "HunyuanVideo15" and type(model.model).__name__ == "HunyuanVideo15"
    written, _ = tm.tiny_state_dict("hunyuan15", seed=0)
    loaded = model.model.diffusion_model.state_dict()
    assert sorted(loaded) == sorted(written) and all(torch.equal(loaded[k], written[k]) for k in written)
    models = pack_module(pack, "nodes.models")
    support = models.model_support(model)
    dm = model.model.diffusion_model
    assert support.family.name == "HunyuanVideo 1.5" and support.family.patch_size == tuple(dm.patch_size) == (1, 1, 1)
    assert sorted(support.blocks) == [("double_block", 0), ("double_block", 1), ("single_block", 0), ("single_block", 1)]
    assert all(spec.in_place for spec in support.blocks.values())
    monkeypatch.setattr(dm, "patch_size", [1, 2, 2])  # the class of 1.5 around another patch size: refused
    with pytest.raises(models.UnsupportedModelError, match=r"HunyuanVideo15 .*patch size \(1, 2, 2\)"):
        models.model_support(model)


@pytest.mark.parametrize("kind", ["hunyuan15", "hunyuan15_i2v", "hunyuan15_distilled"])
def test_hunyuan15_exact_when_off_and_trial_inputs_made_small_with_the_latent(ready, kind, monkeypatch):
    """Off: bit-identical. On (LFCache + BlockCache, 12 steps to the end): in every trial forward the
    model's input x (latent + the model's own concat of start image and mask, 65 channels) is the full
    one's kept cells; the concatenated image and mask equal the model's own concat_cond pooled; the
    network makes one token per trial latent cell and returns the trial latent's shape; text-like
    inputs (ByT5 glyph tokens, SigLIP tokens) pass unchanged; a decision at every step after the first.
    Step-distilled layout: the trial embeds the same next sigma (time_r_in's input) as its step's full
    forward."""
    comfy, pack = ready
    model = comfy.load_model(kind)
    shape = (1, 32, 5, 8, 8)
    latent = torch.zeros(shape)
    pos = comfy.conditioning(kind, 1, "positive", latent_shape=shape)
    neg = comfy.conditioning(kind, 1, "negative", latent_shape=shape)

    def sample(m):
        return comfy.sample(m, kind, steps=12, cfg=5.0, latent=latent, positive=pos, negative=neg)

    reference = sample(model)
    off = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)
    assert_same(sample(off), reference)

    dm = model.model.diffusion_model
    tokens, time_r = [], []
    handles = [dm.img_in.register_forward_hook(lambda mod, a, out: tokens.append(tuple(out.shape)))]
    if kind == "hunyuan15_distilled":
        assert dm.time_r_in is not None
        handles.append(dm.time_r_in.register_forward_hook(
            lambda mod, a, out: time_r.append((len(tokens), a[0].detach().clone()))))
    calls = spy_trials(pack, monkeypatch)
    try:
        on = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.0), pivotal_ratio=0.5)
        out = sample(on)
    finally:
        for h in handles:
            h.remove()
    report = latest_report(pack, on)
    assert torch.isfinite(out).all() and not report.interrupted and report.blocks_reused > 0
    assert len(calls) == 12 and report.trial_forwards == 12, report.notes
    assert sum(1 for v in report.lfd if v == v) == 11, report.lfd
    trial_tokens = [t for t in tokens if t[1] == 3 * 2 * 2]
    assert len(trial_tokens) == 12, tokens  # one token per trial latent cell (patch 1x1x1)
    for call in calls:
        x_full, x_trial = call["args"][0], call["targs"][0]
        assert x_full.shape[1] == 65 and torch.equal(x_trial, x_full[:, :, ::2, ::4, ::4])
        assert call["targs"][1] is call["args"][1]  # one timestep per sample: unchanged
        assert call["targs"][4] is call["args"][4] and call["targs"][4].shape[-1] == 1472  # ByT5 tokens
        assert call["targs"][5] is call["args"][5]  # SigLIP tokens (None for text-to-video)
        concat = model.model.concat_cond(noise=torch.zeros(x_full.shape[0], 32, *x_full.shape[2:]),
                                         device="cpu", **({k: pos[0][1][k] for k in ("concat_latent_image",
                                                                                    "concat_mask")}
                                                          if kind == "hunyuan15_i2v" else {}))
        assert torch.equal(x_trial[:, 32:], concat[:, :, ::2, ::4, ::4].to(x_trial.dtype))
    if kind == "hunyuan15_i2v":
        assert calls[0]["args"][5] is not None and calls[0]["args"][0][:, 32:].abs().max() > 0
    if kind == "hunyuan15_distilled":  # each forward's time_r_in input, paired with the forward it ran in
        by_forward = {n: emb for n, emb in time_r}
        trials = [n for n, shape in enumerate(tokens, 1) if shape[1] == 3 * 2 * 2]
        assert len(trials) == 12 and all(n in by_forward for n in trials), "time_r_in did not run in the trial"
        pairs = [n for n in trials if n + 1 in by_forward and tokens[n][1] != 3 * 2 * 2]  # trial, then full
        assert pairs and all(torch.equal(by_forward[n], by_forward[n + 1]) for n in pairs)
