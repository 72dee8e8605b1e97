#!/usr/bin/env python3
"""Experiment (not a test): does restoring the trial latent's noise level help LFCache?

Average pooling by k = f_t·f_h·f_w cells divides the noise std of the latent by √k (at σ = 1 the
trial input has std ≈ 0.2 instead of 1), a distribution shift for the model. Variant "restore"
adds σ·√(1 − 1/k)·ε' (ε' fixed per run) to the pooled latent so its noise std is σ again.
Prints mean / worst PSNR of decoded frames vs uncached and the counted speedup over 8
(seed, condition) pairs of the demo model (50 euler steps, cfg 5), for α in 0.5 … 1.5.

    python3 scripts/experiment_trial_noise.py
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import math
import shutil
import tempfile

import torch

sys.path[:0] = [os.path.join(REPO, "tests", "host"), REPO]
import harness
base = harness.make_base_dir(tempfile.mkdtemp())
comfy = harness.import_comfy(harness.find_comfyui().path, base)
pack = comfy.load_pack()
from cache_helpers import latest_report, pack_module, with_lfcache  # noqa: E402
import comfy.latent_formats as lf_
from precisecache_demo import conditioning as dc, latent_map as lm
from torchmetrics.functional.image import peak_signal_noise_ratio as psnr
shutil.copy(os.path.join(REPO, "models", "precisecache_demo_wan.safetensors"), os.path.join(base, "models/diffusion_models/demo.safetensors"))
model = comfy.load_model("demo.safetensors")
hooks = pack_module(pack, "nodes.hooks")
orig = hooks._trial_call_args
MODE = {"m": "avg"}
_noise = {}
def patched(args, kwargs, where, options, factors):
    a, k = orig(args, kwargs, where, options, factors)
    if MODE["m"] == "restore":
        x = a[0]
        kk = factors[0] * factors[1] * factors[2]
        sigma = float(options["sigmas"].reshape(-1)[0])
        key = tuple(x.shape)
        if key not in _noise:
            _noise[key] = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        x = x + sigma * math.sqrt(1 - 1 / kk) * _noise[key].to(x)
        a = (x,) + tuple(a[1:])
    return a, k
hooks._trial_call_args = patched
fmt = lf_.Wan21()
def frames(lat):
    return lm.decode(fmt.process_in(lat)).clamp(0, 1)
names = dc.condition_names()
pairs = [(s, names[(s * 5) % len(names)]) for s in range(8)]
lat0 = torch.zeros(1, 16, 3, 16, 16)
def sample(m, seed, name):
    pos = dc.comfy_conditioning(name); neg = dc.comfy_conditioning(dc.EMPTY)
    return comfy.sample(m, None, seed=seed, steps=50, cfg=5.0, latent=lat0, positive=pos, negative=neg)
refs = {p: frames(sample(model, *p)) for p in pairs}
for mode in ["avg", "restore"]:
    MODE["m"] = mode
    for alpha in [0.5, 0.7, 1.0, 1.5]:
        m = with_lfcache(comfy, model, alpha=alpha)
        ps, sp = [], []
        for p in pairs:
            out = frames(sample(m, *p))
            ps.append(psnr(out, refs[p], data_range=1.0).item())
            sp.append(latest_report(pack, m).estimated_speedup)
        print(f"{mode:8s} a={alpha}: PSNR mean {sum(ps)/len(ps):.2f} worst {min(ps):.2f} counted {sum(sp)/len(sp):.2f}x", flush=True)
