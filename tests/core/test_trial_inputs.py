"""The trial call's inputs, made small by each family's rules, checked against direct computations."""
import math

import pytest
import torch

from precisecache_core.families import FAMILIES, HUNYUAN, HUNYUAN15, LTXV, WAN
from precisecache_core.trial import pool
from precisecache_core.trial_inputs import (MODEL_GEOMETRY_KEY, TrialInputError, cond_index, map_keyframe_coords,
                                            pool_on_grid, pool_pixels, pool_timestep, select_stream, token_grid,
                                            trial_call)

F = (2, 4, 4)


def _ltxv_process_timestep(t, mask):
    """LTXV.process_timestep written out (patch size 1): one timestep per latent cell, (f h w) order."""
    per_cell = (mask * t.view(-1, 1, 1, 1, 1))[:, :1]
    b = per_cell.shape[0]
    return per_cell.permute(0, 2, 3, 4, 1).reshape(b, -1, 1)


def _wan22_process_timestep(t, mask):
    """WAN22.process_timestep written out: the mask's mean per frame times t, [B, T]."""
    return (mask.mean(dim=(1, 3, 4), keepdim=True) * t.view(-1, 1, 1, 1, 1)).reshape(t.shape[0], -1)


@pytest.mark.parametrize("operator", ["strided", "avg_pool"])
def test_per_token_timestep_equals_the_models_own_on_the_pooled_mask(operator):
    x = torch.randn(2, 128, 5, 12, 8)
    mask = torch.ones(2, 1, 5, 12, 8)
    mask[:, :, 0] = 0.0  # image-to-video: first frame given
    mask[1, :, 3, :5] = 0.3
    t = torch.tensor([700.0, 400.0])
    full = _ltxv_process_timestep(t, mask)
    trial = pool_timestep(full, tuple(x.shape), F, LTXV.patch_size, operator)
    assert torch.allclose(trial, _ltxv_process_timestep(t, pool(mask, F, operator)), atol=1e-5)
    assert trial.shape[1] == math.prod(pool(x, F, operator).shape[2:])


def test_per_frame_timestep_equals_the_models_own_on_the_pooled_mask():
    x = torch.randn(1, 48, 5, 8, 8)
    mask = torch.ones(1, 1, 5, 8, 8)
    mask[:, :, 0] = 0.0
    t = torch.tensor([900.0])
    full = _wan22_process_timestep(t, mask)
    trial = pool_timestep(full, tuple(x.shape), F, WAN.patch_size, "strided")
    assert torch.equal(trial, _wan22_process_timestep(t, pool(mask, F, "strided")))
    assert trial.shape == (1, 3)


def test_scalar_timestep_kept_and_unknown_timestep_shape_refused():
    x_shape = (1, 16, 5, 8, 8)
    t = torch.tensor([500.0])
    assert pool_timestep(t, x_shape, F, WAN.patch_size, "strided") is t
    with pytest.raises(TrialInputError, match="timestep"):
        pool_timestep(torch.ones(1, 7), x_shape, F, WAN.patch_size, "strided")


def test_token_grid_pooling_matches_the_trial_latents_token_grid():
    # ⌈⌈a/p⌉/f⌉ = ⌈a/(p·f)⌉: pooled full-size tokens sit exactly on the trial's token grid
    for shape in [(1, 16, 21, 60, 104), (1, 16, 3, 10, 6), (1, 16, 1, 9, 7)]:
        trial_shape = tuple(pool(torch.zeros(shape), F).shape)
        full_tokens = token_grid(shape, (1, 2, 2))
        pooled = pool_on_grid(torch.zeros(1, math.prod(full_tokens), 3), full_tokens, F, "strided")
        assert pooled.shape[1] == math.prod(token_grid(trial_shape, (1, 2, 2)))


def test_token_grid_pooling_keeps_the_right_tokens():
    grid = (4, 6, 8)
    positions = torch.arange(math.prod(grid), dtype=torch.float32).reshape(1, -1, 1)
    pooled = pool_on_grid(positions, grid, F, "strided")
    expected = torch.arange(math.prod(grid)).reshape(grid)[::2, ::4, ::4].reshape(1, -1, 1).float()
    assert torch.equal(pooled, expected)


def test_pixel_space_input_keeps_whole_cells_of_the_kept_latent_cells():
    latent_shape = (1, 16, 5, 8, 12)
    cam = torch.randn(1, 24, 5, 64, 96)
    small = pool_pixels(cam, latent_shape, F, 8, "strided", "camera_conditions")
    assert small.shape == (1, 24, 3, 16, 24)
    # trial cell (i, j) holds the 8×8 pixels of full latent cell (4i, 4j), frame 2k
    assert torch.equal(small[:, :, 1, 8:16, 16:24], cam[:, :, 2, 32:40, 64:72])
    with pytest.raises(TrialInputError, match="camera_conditions"):
        pool_pixels(torch.randn(1, 24, 5, 60, 96), latent_shape, F, 8, "strided", "camera_conditions")


def _options():
    return {"sigmas": torch.tensor([0.5])}


def test_wan_call_with_every_aligned_input():
    x = torch.randn(2, 16, 5, 8, 12)
    vace = torch.randn(2, 3, 96, 5, 8, 12)
    cam = torch.randn(2, 24, 5, 64, 96)
    ref = torch.randn(2, 16, 8, 12)
    context = torch.randn(2, 7, 4096)
    trial_options = {"trial": True}
    args = (x, torch.tensor([1.0, 1.0]), context, None, torch.randn(2, 16, 1, 8, 12), _options())
    kwargs = {"vace_context": vace, "vace_strength": [1.0, 0.5, 0.2], "camera_conditions": cam,
              "reference_latent": ref, "control": None}
    targs, tkwargs = trial_call(WAN, args, kwargs, F, "strided", trial_options)
    assert torch.equal(targs[0], x[:, :, ::2, ::4, ::4])
    assert targs[2] is context and targs[5] is trial_options
    assert torch.equal(targs[4], args[4][:, :, ::2, ::4, ::4])
    assert torch.equal(tkwargs["vace_context"], vace[:, :, :, ::2, ::4, ::4])
    assert tkwargs["camera_conditions"].shape == (2, 24, 3, 16, 24)
    assert torch.equal(tkwargs["reference_latent"], ref[:, :, ::4, ::4])
    assert tkwargs["vace_strength"] == [1.0, 0.5, 0.2]


def test_hunyuan_controlnet_hints_pooled_on_the_token_grid():
    x = torch.randn(1, 16, 5, 8, 8)
    n = math.prod(token_grid(tuple(x.shape), HUNYUAN.patch_size))
    hints = {"input": [torch.randn(1, n, 128), None], "output": [torch.randn(1, n, 128)]}
    args = (x, torch.tensor([1.0]), torch.randn(1, 7, 4096), torch.randn(1, 768), None, None, torch.tensor([6.0]),
            None, None, None, False, hints, _options())
    targs, _ = trial_call(HUNYUAN, args, {}, F, "strided", {"trial": True})
    trial_tokens = math.prod(token_grid(tuple(targs[0].shape), HUNYUAN.patch_size))
    assert targs[11]["input"][0].shape == (1, trial_tokens, 128) and targs[11]["input"][1] is None
    assert targs[12] == {"trial": True}


def test_unknown_tensor_input_refused_by_name():
    x = torch.randn(1, 128, 3, 4, 4)
    args = (x, torch.tensor([1.0]), torch.randn(1, 7, 4096), torch.ones(1, 7), 25.0, _options(), None)
    trial_call(LTXV, args, {}, F, "strided", {})  # keyframe_idxs None: fine
    with pytest.raises(TrialInputError, match="pose_latents"):
        trial_call(LTXV, args, {"pose_latents": torch.zeros(1, 16, 3, 4, 4)}, F, "strided", {})
    assert LTXV.refused_trial_inputs({"keyframe_idxs", "c_crossattn", "c_concat", "denoise_mask",
                                      "attention_mask"}) == []
    assert "'mystery'" in WAN.refused_trial_inputs({"mystery"})[0]


# -- LTX-Video guide frames (LTXVAddGuide) --------------------------------------------------------
def _pixel_coords(frames, h, w, causal, scale=(8, 32, 32), first_frame=0):
    """LTX-Video's latent_to_pixel_coords written out (patch size 1, start/end pairs): [1, 3, N, 2]."""
    t, hh, ww = torch.meshgrid(torch.arange(frames) + first_frame, torch.arange(h), torch.arange(w), indexing="ij")
    start = torch.stack([t, hh, ww]).reshape(1, 3, -1)
    coords = torch.stack([start, start + 1], dim=-1) * torch.tensor(scale).view(1, 3, 1, 1)
    if causal:
        coords[:, 0] = (coords[:, 0] + 1 - scale[0]).clamp(min=0)
    return coords


@pytest.mark.parametrize("causal", [False, True])
def test_guide_coordinates_land_on_the_trials_own_video_coordinates(causal):
    # guides placed exactly on video frames 0, 2, 4 (kept by f_t = 2) and 3 (not kept), full 8×12 grid
    full = _pixel_coords(5, 8, 12, causal).reshape(1, 3, 5, 8, 12, 2)
    guides = full[:, :, [0, 2, 3, 4]].reshape(1, 3, -1, 2)
    mapped = map_keyframe_coords(guides, (1, 128, 4, 8, 12), F, LTXV.patch_size,
                                 {"vae_scale_factors": (8, 32, 32), "causal_temporal_positioning": causal})
    trial_video = _pixel_coords(3, 2, 3, causal).reshape(1, 3, 3, 2, 3, 2)  # what the model gives the trial grid
    m = mapped.reshape(1, 3, 4, 2, 3, 2)
    assert mapped.dtype == guides.dtype and mapped.shape == (1, 3, 4 * 6, 2)
    assert torch.equal(m[:, :, 0], trial_video[:, :, 0])
    assert torch.equal(m[:, :, 1], trial_video[:, :, 1]) and torch.equal(m[:, :, 3], trial_video[:, :, 2])
    between = m[:, 0, 2, ..., 0]  # video frame 3 lies between the trial's frames 1 and 2
    assert (between > trial_video[:, 0, 1, ..., 0]).all() and (between < trial_video[:, 0, 2, ..., 0]).all()


def test_trial_call_with_guide_frames_pools_video_and_guides_apart():
    g = torch.Generator().manual_seed(1)
    b, f_v, f_g, h, w = 2, 5, 2, 8, 8
    x = torch.randn(b, 128, f_v + f_g, h, w, generator=g)
    mask = torch.ones(b, 1, f_v + f_g, h, w)
    mask[:, :, f_v:] = 0.0
    mask[:, :, f_v + 1, :, :4] = -1.0  # a guide mask: these tokens are dropped by the model
    t = torch.tensor([700.0, 700.0])
    kf = torch.cat([_pixel_coords(1, h, w, False), _pixel_coords(1, h, w, False, first_frame=2)], dim=2).repeat(b, 1, 1, 1)
    geometry = {"vae_scale_factors": (8, 32, 32), "causal_temporal_positioning": False}
    options = {**_options(), MODEL_GEOMETRY_KEY: geometry}
    args = (x, _ltxv_process_timestep(t, mask), torch.randn(b, 4, 4096), torch.ones(b, 4), 25.0, options, kf)
    targs, tkw = trial_call(LTXV, args, {"denoise_mask": mask}, F, "strided", {"trial": True})
    split = lambda v: torch.cat([v[:, :, :f_v:2, ::4, ::4], v[:, :, f_v:, ::4, ::4]], dim=2)  # noqa: E731
    assert torch.equal(targs[0], split(x)) and torch.equal(tkw["denoise_mask"], split(mask))
    assert torch.equal(targs[1], _ltxv_process_timestep(t, split(mask)))  # the model's own, on the pooled mask
    assert targs[6].shape == (b, 3, f_g * 2 * 2, 2) and targs[6].dtype == kf.dtype
    assert torch.equal(targs[6].reshape(b, 3, f_g, 2, 2, 2)[:, 1:, 1, ..., 0],
                       _pixel_coords(1, 2, 2, False)[:, 1:, :, 0].reshape(1, 2, 2, 2).expand(b, -1, -1, -1))
    assert torch.equal(targs[6][:, 0, 4:, 0], torch.full((b, 4), 8))  # guide at video frame 2 → trial frame 1


def test_guide_frames_refused_by_name_when_they_do_not_fit():
    x = torch.randn(1, 128, 4, 8, 8)
    options = {**_options(), MODEL_GEOMETRY_KEY: {"vae_scale_factors": (8, 32, 32),
                                                  "causal_temporal_positioning": False}}
    args = (x, torch.tensor([1.0]), torch.randn(1, 4, 4096), torch.ones(1, 4), 25.0, options,
            _pixel_coords(1, 8, 8, False)[:, :, :-3])
    with pytest.raises(TrialInputError, match="keyframe_idxs"):  # not whole frames
        trial_call(LTXV, args, {"denoise_mask": torch.ones(1, 1, 4, 8, 8)}, F, "strided", {})
    whole = args[:6] + (_pixel_coords(1, 8, 8, False),)
    with pytest.raises(TrialInputError, match="keyframe_idxs.*vae_scale_factors"):  # geometry not recorded
        trial_call(LTXV, whole[:5] + (_options(),) + whole[6:], {"denoise_mask": torch.ones(1, 1, 4, 8, 8)},
                   F, "strided", {})
    with pytest.raises(TrialInputError, match="denoise_mask"):  # a mask whose frames cannot be told apart
        trial_call(LTXV, whole, {"denoise_mask": torch.ones(1, 1, 3, 8, 8)}, F, "strided", {})
    trial_call(LTXV, whole, {"denoise_mask": torch.ones(1, 1, 4, 8, 8)}, F, "strided", {})


def test_every_family_declares_its_blocks():
    for family in FAMILIES.values():
        assert family.blocks and all(b.tensors and b.tensors[0] == "img" for b in family.blocks)
        assert family.forward_args[0] == "x" and "transformer_options" in family.forward_args
    assert not WAN.blocks[0].in_place and all(b.in_place for b in HUNYUAN.blocks + HUNYUAN15.blocks + LTXV.blocks)
    assert HUNYUAN15.patch_size == (1, 1, 1) and HUNYUAN15.forward_args == HUNYUAN.forward_args


# -- one CFG stream of a batched call -------------------------------------------------------------
def test_cond_index_finds_the_cond_chunk():
    assert cond_index([1, 0]) == 1
    assert cond_index([0, 1]) == 0
    assert cond_index([0, 0, 1]) == 0
    assert cond_index([1]) is None
    assert cond_index([]) is None and cond_index(None) is None


def _streams(*per_stream):
    """The batched tensor ComfyUI's calc_cond_batch makes: per-stream tensors concatenated on dim 0."""
    return torch.cat(per_stream)


def test_select_stream_wan_takes_each_batched_input_chunk_and_keeps_shared_ones():
    g = torch.Generator().manual_seed(0)
    b = 2  # two samples per stream: the chunk is [b·i, b·(i+1)), never interleaved

    def per(*shape):
        return [torch.randn(b, *shape, generator=g) for _ in range(2)]

    x, ctx, vace, cam, tdc = per(16, 3, 8, 8), per(7, 4096), per(3, 96, 3, 8, 8), per(24, 3, 64, 64), per(16, 1, 8, 8)
    t = [torch.tensor([500.0, 500.0]), torch.tensor([500.0, 500.0])]
    t_frames = per(3)  # Wan 2.2's per-frame timestep [B, T]
    options = {"sigmas": torch.tensor([0.5]), "cond_or_uncond": [1, 0], "uuids": ["u", "c"], "other": 3}
    strength = [1.0, 0.5]
    args = (_streams(*x), _streams(*t_frames), _streams(*ctx), None, _streams(*tdc), options)
    kwargs = {"vace_context": _streams(*vace), "vace_strength": strength, "camera_conditions": _streams(*cam),
              "control": None, "reference_latent": _streams(*per(16, 8, 8))}
    for i in range(2):
        sargs, skw = select_stream(WAN, args, kwargs, 2, i)
        assert torch.equal(sargs[0], x[i]) and torch.equal(sargs[1], t_frames[i]) and torch.equal(sargs[2], ctx[i])
        assert sargs[3] is None and torch.equal(sargs[4], tdc[i])
        assert torch.equal(skw["vace_context"], vace[i]) and torch.equal(skw["camera_conditions"], cam[i])
        assert torch.equal(skw["reference_latent"], kwargs["reference_latent"][b * i:b * (i + 1)])
        assert skw["vace_strength"] is strength and skw["control"] is None
        assert sargs[5]["cond_or_uncond"] == [[1, 0][i]] and sargs[5]["uuids"] == [["u", "c"][i]]
        assert sargs[5]["sigmas"] is options["sigmas"] and sargs[5]["other"] == 3
    assert options["cond_or_uncond"] == [1, 0] and options["uuids"] == ["u", "c"], "the caller's options changed"
    assert select_stream(WAN, args[:1] + (_streams(*t),) + args[2:], {}, 2, 1)[0][1].shape == (b,)


def test_select_stream_hunyuan_guidance_and_nested_controlnet_hints():
    n = 16
    hints = {"input": [torch.arange(3 * n * 4.0).reshape(3, n, 4), None], "output": [torch.ones(3, n, 4)]}
    guidance = torch.tensor([6.0, 3.5, 1.0])
    args = (torch.randn(3, 16, 1, 8, 8), torch.tensor([1.0, 1.0, 1.0]), torch.randn(3, 7, 4096),
            torch.randn(3, 768), None, None, guidance, None, torch.tensor([0.0, 1.0, 2.0]), None, True, hints,
            {"cond_or_uncond": [0, 1, 1]})
    sargs, _ = select_stream(HUNYUAN, args, {}, 3, 1)
    assert torch.equal(sargs[6], guidance[1:2]) and torch.equal(sargs[8], torch.tensor([1.0]))
    assert torch.equal(sargs[11]["input"][0], hints["input"][0][1:2]) and sargs[11]["input"][1] is None
    assert sargs[11]["output"][0].shape == (1, n, 4)
    assert sargs[10] is True and sargs[12] == {"cond_or_uncond": [1]}
    assert all(torch.equal(a, b) for a, b in zip(sargs[:4], (args[0][1:2], args[1][1:2], args[2][1:2], args[3][1:2])))


def test_select_stream_ltxv_per_token_timestep_masks_and_keyframes_batched_frame_rate_shared():
    b, n = 1, 5 * 4 * 4
    x = torch.randn(2 * b, 128, 5, 4, 4)
    t = torch.rand(2 * b, n, 1)
    mask = torch.rand(2 * b, 1, 5, 4, 4)
    text_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    kf = torch.randint(0, 64, (2 * b, 3, 16, 2))
    args = (x, t, torch.randn(2 * b, 4, 4096), text_mask, 25.0, {"cond_or_uncond": [0, 1]}, kf)
    sargs, skw = select_stream(LTXV, args, {"denoise_mask": mask}, 2, 1)
    assert torch.equal(sargs[1], t[1:]) and torch.equal(sargs[3], text_mask[1:]) and torch.equal(sargs[6], kf[1:])
    assert sargs[4] == 25.0 and torch.equal(skw["denoise_mask"], mask[1:])


def test_select_stream_refuses_by_name_what_does_not_divide_or_is_unknown():
    x = torch.randn(2, 16, 1, 8, 8)
    args = (x, torch.tensor([1.0, 1.0]), torch.randn(3, 7, 4096), None, None, {})
    with pytest.raises(TrialInputError, match="'context' has batch size 3"):
        select_stream(WAN, args, {}, 2, 0)
    ok = args[:2] + (torch.randn(2, 7, 4096),) + args[3:]
    with pytest.raises(TrialInputError, match="pose_latents"):
        select_stream(WAN, ok, {"pose_latents": [torch.zeros(2, 16, 1, 8, 8)]}, 2, 0)
    assert select_stream(WAN, ok, {"something": 0.5}, 2, 0)[1]["something"] == 0.5
    with pytest.raises(ValueError):
        select_stream(WAN, ok, {}, 2, 2)
    one = select_stream(WAN, ok, {}, 1, 0)  # one stream: everything whole
    assert all(a is b or torch.equal(a, b) for a, b in zip(one[0][:3], ok[:3]))


def test_every_family_declares_its_shared_inputs():
    assert WAN.batched_per_stream("vace_strength") is False and WAN.batched_per_stream("vace_context") is True
    assert LTXV.batched_per_stream("frame_rate") is False and LTXV.batched_per_stream("keyframe_idxs") is True
    assert HUNYUAN.batched_per_stream("disable_time_r") is False and HUNYUAN.batched_per_stream("guidance") is True
    for family in FAMILIES.values():
        assert family.batched_per_stream("transformer_options") is False and family.batched_per_stream("x") is True
        assert family.batched_per_stream("no_such_input") is None
