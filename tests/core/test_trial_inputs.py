"""The trial call's inputs, made small by each family's rules, checked against direct computations."""
import math

import pytest
import torch

from precisecache_core.families import FAMILIES, HUNYUAN, LTXV, WAN
from precisecache_core.trial import pool
from precisecache_core.trial_inputs import (TrialInputError, cond_index, pool_on_grid, pool_pixels, pool_timestep,
                                            select_stream, token_grid, trial_call)

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


def test_unknown_tensor_input_and_keyframes_refused_by_name():
    x = torch.randn(1, 128, 3, 4, 4)
    args = (x, torch.tensor([1.0]), torch.randn(1, 7, 4096), torch.ones(1, 7), 25.0, _options(), None)
    trial_call(LTXV, args, {}, F, "strided", {})  # keyframe_idxs None: fine
    with pytest.raises(TrialInputError, match="keyframe_idxs"):
        trial_call(LTXV, args[:6] + (torch.zeros(1, 3, 16, 2),), {}, F, "strided", {})
    with pytest.raises(TrialInputError, match="pose_latents"):
        trial_call(LTXV, args, {"pose_latents": torch.zeros(1, 16, 3, 4, 4)}, F, "strided", {})
    assert "keyframe_idxs" in " ".join(LTXV.refused_trial_inputs({"keyframe_idxs", "c_crossattn", "denoise_mask"}))
    assert LTXV.refused_trial_inputs({"c_crossattn", "c_concat", "denoise_mask", "attention_mask"}) == []
    assert "'mystery'" in WAN.refused_trial_inputs({"mystery"})[0]


def test_every_family_declares_its_blocks():
    for family in FAMILIES.values():
        assert family.blocks and all(b.tensors and b.tensors[0] == "img" for b in family.blocks)
        assert family.forward_args[0] == "x" and "transformer_options" in family.forward_args
    assert not WAN.blocks[0].in_place and all(b.in_place for b in HUNYUAN.blocks + LTXV.blocks)


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
