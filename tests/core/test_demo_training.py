"""Helpers of scripts/train_demo_model.py that need no ComfyUI."""
import importlib.util
import math
from pathlib import Path

import torch

_SPEC = importlib.util.spec_from_file_location(
    "train_demo_model", Path(__file__).resolve().parents[2] / "scripts" / "train_demo_model.py")
train = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(train)


def test_sigma_mixture():
    g = torch.Generator().manual_seed(0)
    s = train.sample_sigma(200_000, 0.3, g)
    assert s.min() > 0 and s.max() <= 1
    # shift-8 part: P(sigma < 0.3) = P(u < 0.3 / (8 - 7 * 0.3)) ~ 0.051; uniform part: 0.3
    expected = 0.7 * (0.3 / (8 - 7 * 0.3)) + 0.3 * 0.3
    assert abs(float((s < 0.3).float().mean()) - expected) < 0.01
    pure = train.sample_sigma(200_000, 0.0, g)
    assert abs(float(pure.median()) - 8 * 0.5 / (1 + 7 * 0.5)) < 0.01


def test_rope1_differentiable_is_a_rotation_with_grad():
    x = torch.randn(2, 5, 1, 8, requires_grad=True)
    ang = torch.randn(1, 5, 1, 4)
    c, s = torch.cos(ang), torch.sin(ang)
    freqs = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [..., 4, 2, 2]
    y = train.rope1_differentiable(x, freqs)
    xc = torch.view_as_complex(x.detach().reshape(2, 5, 1, 4, 2).contiguous())
    ref = torch.view_as_real(xc * torch.polar(torch.ones_like(ang), ang)).reshape(2, 5, 1, 8)
    assert torch.allclose(y.detach(), ref, atol=1e-5)
    y.pow(2).sum().backward()
    assert x.grad is not None and math.isfinite(float(x.grad.abs().sum()))


def test_parse_log_reads_step_lines_and_summary():
    log = (
        "bank (1920, 16, 5, 16, 16) mean 0.005 std 1.002 built in 30.4s; model dim 128 layers 12 ffn 512 heads 1 "
        "params 3.89M\n"
        "step 1 loss 2.0406 avg 2.0406 gnorm 0.506 lr 2.00e-06 1382.4 ms/step elapsed 0.0 min\n"
        "saved models/x.safetensors at step 500\n"
        "step 100 loss 0.9000 avg 1.5000 gnorm 0.250 lr 2.00e-04 1100.0 ms/step elapsed 1.8 min\n"
        "done: 100 steps, 1.8 min, loss avg 1.5000\n"
        "ComfyUI detects: WAN21 WAN21_T2V dim 128 layers 12\n"
    )
    p = train.parse_log(log)
    assert p["steps"] == [1, 100] and p["loss"] == [2.0406, 0.9] and p["avg"] == [2.0406, 1.5]
    assert p["lr"] == [2e-06, 2e-04] and p["ms_per_step"] == [1382.4, 1100.0] and p["elapsed_min"] == [0.0, 1.8]
    assert p["params_m"] == 3.89 and p["done"].startswith("done: 100 steps")
    assert (p["done_steps"], p["done_min"], p["done_avg"]) == (100, 1.8, 1.5)
    assert p["detects"] == "WAN21 WAN21_T2V dim 128 layers 12"
