"""The trial call's inputs, made small by each family's rules, checked against direct computations."""
import math

import pytest
import torch

from precisecache_core.families import FAMILIES, HUNYUAN, LTXV, WAN
from precisecache_core.trial import pool
from precisecache_core.trial_inputs import (TrialInputError, pool_on_grid, pool_pixels, pool_timestep, token_grid,
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
