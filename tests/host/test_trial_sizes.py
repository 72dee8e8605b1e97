"""Trial forwards at latent sizes whose downsampled grid would not tile a family's patches.

HunyuanVideo reshapes its output on the token grid: a 2×4×4 trial of a latent 12 cells high has
3 rows, which its 2×2 patches cannot tile (seen at 720p: 90 → 23). The trial then uses the nearest
factor that leaves whole patches; sampling runs to the end and the trial's latent tiles the patches.
"""
from __future__ import annotations

import pytest
import torch

from cache_helpers import latest_report, spy_trials, with_lfcache


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


@pytest.mark.parametrize("kind, shape", [("hunyuan", (1, 16, 3, 12, 8)), ("wan", (1, 16, 3, 12, 8)),
                                         ("hunyuan", (1, 16, 5, 20, 12))])
def test_trial_runs_to_the_end_with_whole_patches(ready, kind, shape, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    pos = comfy.conditioning(kind, 1, "positive")
    neg = comfy.conditioning(kind, 1, "negative")
    calls = spy_trials(pack, monkeypatch)
    cached = with_lfcache(comfy, model, preset="custom", speed_target=2.0)
    latent = {"samples": torch.zeros(shape)}
    out = comfy.nodes.KSampler().sample(cached, 0, 12, 4.0, "euler", "simple", pos, neg, latent)[0]["samples"]
    report = latest_report(pack, cached)
    assert torch.isfinite(out).all() and not report.interrupted and report.trial_forwards > 0
    seen = [tuple(c["targs"][0].shape) for c in calls]
    assert seen and all(s[3] % 2 == 0 and s[4] % 2 == 0 for s in seen), seen  # whole 2×2 patches
    for c in calls:  # the trial latent is the call's own latent at the factors used (a stream of it)
        ft, fh, fw = c["factors"]
        x, x_trial = c["args"][0], c["targs"][0]
        subsampled = x[:, :, ::ft, ::fh, ::fw]
        assert any(torch.equal(x_trial[0], subsampled[i]) for i in range(x.shape[0])), c["factors"]
    assert not any("off for this run" in n for n in report.notes), report.notes
