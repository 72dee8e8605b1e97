"""Fast tests of the pure-torch demo package (no ComfyUI needed)."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from precisecache_demo import clips, conditioning, latent_map  # noqa: E402

torch.set_num_threads(1)


# ---------------- clips ----------------

def test_clip_shape_range_and_determinism():
    for name in clips.condition_names():
        a = clips.make_clip(name, 3, frames=9, size=64)
        b = clips.make_clip(name, 3, frames=9, size=64)
        assert a.shape == (3, 9, 64, 64) and a.dtype == torch.float32
        assert torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1


def test_clip_seed_variation_and_motion():
    name = "a red square moving right"
    a, b = clips.make_clip(name, 0, size=64), clips.make_clip(name, 1, size=64)
    assert not torch.equal(a, b)
    # the red object's centre of mass moves right
    red = (a[0] - a[1]).clamp(min=0)  # [F, H, W]
    xs = torch.arange(64, dtype=torch.float32)
    cx = (red.sum(1) * xs).sum(-1) / red.sum((1, 2))
    assert cx[-1] > cx[0] + 10


def test_conditions_differ():
    names = clips.condition_names()
    xs = torch.stack([clips.make_clip(n, 0, size=32) for n in names])
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not torch.allclose(xs[i], xs[j])


def test_unknown_condition():
    with pytest.raises(KeyError):
        clips.make_clip("a purple dragon", 0)


# ---------------- latent map ----------------

def test_latent_shapes_follow_wan():
    x = clips.make_batch(["a blue circle moving left"] * 2, [0, 1], frames=9, size=64)
    z = latent_map.encode(x)
    assert z.shape == (2, 16, 3, 8, 8)
    assert latent_map.latent_frames(9) == 3 and latent_map.video_frames(3) == 9
    assert latent_map.decode(z).shape == x.shape


def test_encode_decode_encode_is_identity():
    x = clips.make_batch(clips.condition_names(), range(12), size=32).double()
    z = latent_map.encode(x)
    assert torch.allclose(latent_map.encode(latent_map.decode(z, clamp=False)), z, atol=1e-10)


def test_decode_is_inverse_on_any_latent_with_consistent_first_frame():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 16, 3, 4, 4, generator=g, dtype=torch.float64)
    # project onto the range of encode (Y_A == Y_B at t = 0) via decode/encode once
    z = latent_map.encode(latent_map.decode(z, clamp=False))
    assert torch.allclose(latent_map.encode(latent_map.decode(z, clamp=False)), z, atol=1e-10)


def test_decode_encode_is_a_projection():
    x = clips.make_batch(["a magenta square rotating", "camera panning right over a checkerboard"], [5, 6], size=64).double()
    p = latent_map.decode(latent_map.encode(x), clamp=False)
    pp = latent_map.decode(latent_map.encode(p), clamp=False)
    assert torch.allclose(p, pp, atol=1e-10)
    assert (p - x).abs().mean() < 0.05  # the projection keeps the clip recognisable


def test_latent_is_roughly_standardised_on_clips():
    x = clips.make_batch(clips.condition_names() * 2, range(24), size=32)
    z = latent_map.encode(x)
    assert abs(float(z.mean())) < 0.2
    assert 0.7 < float(z.std()) < 1.3


def test_mixing_matrix_orthogonal_and_fixed():
    q = latent_map.mixing_matrix()
    assert torch.allclose(q @ q.T, torch.eye(16, dtype=q.dtype), atol=1e-12)
    assert torch.equal(q, latent_map.mixing_matrix())


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        latent_map.encode(torch.zeros(1, 3, 8, 64, 64))
    with pytest.raises(ValueError):
        latent_map.decode(torch.zeros(1, 4, 3, 8, 8))


def test_frames_to_image_layout():
    x = torch.rand(2, 3, 5, 16, 24)
    im = latent_map.frames_to_image(x)
    assert im.shape == (10, 16, 24, 3)
    assert torch.equal(im[6], x[1, :, 1].permute(1, 2, 0))


# ---------------- conditioning ----------------

def test_embedding_shape_and_determinism():
    for name in conditioning.VOCABULARY:
        e = conditioning.embed(name)
        assert e.shape == (1, 16, 4096) and e.dtype == torch.float32
        assert torch.equal(e, conditioning.embed(name))
    assert conditioning.embed("a red square moving right", length=8).shape == (1, 8, 4096)


def test_distinct_names_distinct_embeddings():
    embs = torch.cat([conditioning.embed(n) for n in conditioning.VOCABULARY]).flatten(1)
    d = torch.cdist(embs, embs)
    off = d[~torch.eye(len(embs), dtype=torch.bool)]
    assert off.min() > 1.0
    neg = conditioning.negative().flatten(1)
    assert torch.cdist(neg, embs).min() > 1.0


def test_embedding_returns_copy_and_comfy_format():
    e = conditioning.embed("a white circle growing")
    e.zero_()
    assert conditioning.embed("a white circle growing").abs().sum() > 0
    c = conditioning.comfy_conditioning("a white circle growing")
    assert isinstance(c, list) and len(c) == 1 and c[0][1] == {} and c[0][0].shape == (1, 16, 4096)


def test_vocabulary_matches_clip_conditions():
    assert list(conditioning.VOCABULARY) == clips.condition_names()
    assert 8 <= len(conditioning.VOCABULARY) <= 16


def test_package_imports_no_comfy():
    import importlib
    import precisecache_demo
    importlib.reload(precisecache_demo)
    src = Path(precisecache_demo.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert "import comfy" not in text and "from comfy" not in text, f
