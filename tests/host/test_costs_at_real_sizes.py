"""scripts/costs_at_real_sizes.py counts what a hand count of ComfyUI's WanModel gives.

A tiny WanModel is built on the meta device and counted with the script's own functions (build,
count_forward with the attention override and the block patches, trial inputs made by the pack's
trial_call), in a subprocess so that this test leaves the session's ComfyUI import untouched. The
hand count lists every matmul of the network: patch embedding (Conv3d), text and time embeddings,
per block self-attention q/k/v/o, the two attention matmuls (QKᵀ, AV), cross-attention q/o on the
video tokens and k/v on the text tokens and its two matmuls, the FFN, and the head.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "costs_at_real_sizes.py"

CONFIG = dict(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=64, ffn_dim=96, freq_dim=256,
              text_dim=32, out_dim=16, num_heads=2, num_layers=2, window_size=(-1, -1), qk_norm=True,
              cross_attn_norm=True, eps=1e-6)
LATENT = (1, 16, 3, 8, 12)
TEXT = 5

CHILD = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("costs", sys.argv[1])
costs = importlib.util.module_from_spec(spec); sys.modules["costs"] = costs; spec.loader.exec_module(costs)
mods = costs.import_comfy(sys.argv[2])
import torch
cfg = json.loads(sys.argv[3]); cfg["patch_size"] = tuple(cfg["patch_size"]); cfg["window_size"] = tuple(cfg["window_size"])
net = costs.build(mods, "WanModel", cfg)
s = costs.Spec("tiny", "tiny", "wan", "WanModel", cfg, (0, 0, 0), (16, 4, 8), int(sys.argv[5]), "", "")
args, kwargs = costs.inputs(s, tuple(json.loads(sys.argv[4])))
args = (args[0], args[1], torch.empty(1, int(sys.argv[5]), cfg["text_dim"], device="meta", dtype=torch.bfloat16))
full = costs.count_forward(net, args, kwargs, mods, family="wan")
t_args, t_kwargs = costs.trial_inputs(s, args, kwargs)
trial = costs.count_forward(net, t_args, t_kwargs, mods)
print(json.dumps({"full": {k: v for k, v in full.items() if k != "block_residuals"},
                  "blocks": len(full["block_residuals"]),
                  "residual_bytes": [sum(t["bytes"] for t in r["tensors"].values()) for r in full["block_residuals"]],
                  "trial": {k: v for k, v in trial.items() if k != "block_residuals"},
                  "trial_shape": list(t_args[0].shape)}))
"""


def hand_count(tokens, text, c=CONFIG):
    """FLOPs (2 per multiply-add) of WanModel's forward, every matmul listed; returns (total, blocks)."""
    d, f, p = c["dim"], c["ffn_dim"], math.prod(c["patch_size"])
    n, L = tokens, text
    patch_embedding = 2 * n * (c["in_dim"] * p) * d
    text_embedding = 2 * L * (c["text_dim"] * d + d * d)
    time = 2 * (c["freq_dim"] * d + d * d) + 2 * d * 6 * d
    block = (2 * n * d * d * 4            # self-attention q, k, v, o
             + 2 * 2 * n * n * d          # QKᵀ and AV over all heads
             + 2 * n * d * d * 2          # cross-attention q, o (video tokens)
             + 2 * L * d * d * 2          # cross-attention k, v (text tokens)
             + 2 * 2 * n * L * d          # cross-attention QKᵀ and AV
             + 2 * n * d * f * 2)         # FFN
    head = 2 * n * d * c["out_dim"] * p
    blocks = c["num_layers"] * block
    return patch_embedding + text_embedding + time + blocks + head, blocks


def test_counts_match_a_hand_count_of_a_tiny_wan(comfyui_dir):
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(SCRIPT), comfyui_dir, json.dumps(CONFIG), json.dumps(LATENT),
                           str(TEXT)], capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["full"]["error"] is None and got["trial"]["error"] is None

    tokens_full = LATENT[2] * (LATENT[3] // 2) * (LATENT[4] // 2)  # 3 × 4 × 6 = 72
    total, blocks = hand_count(tokens_full, TEXT)
    assert got["full"]["flops"] == total
    assert got["full"]["blocks_flops"] == blocks
    assert got["full"]["attention_calls"] == 2 * CONFIG["num_layers"]

    # trial: latent [3, 8, 12] strided by 2×4×4 -> [2, 2, 3]; Wan pads W 3 -> 4: 2 × 1 × 2 = 4 tokens
    assert got["trial_shape"] == [1, 16, 2, 2, 3]
    trial_total, _ = hand_count(4, TEXT)
    assert got["trial"]["flops"] == trial_total

    # BlockCache residuals: one [1, tokens, dim] bf16 buffer per block
    assert got["blocks"] == CONFIG["num_layers"]
    assert got["residual_bytes"] == [tokens_full * CONFIG["dim"] * 2] * CONFIG["num_layers"]


def test_work_ratio_formula():
    import importlib.util
    spec = importlib.util.spec_from_file_location("costs_at_real_sizes", SCRIPT)
    costs = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, costs)  # dataclasses look their module up while the class is made
    spec.loader.exec_module(costs)
    row = {"steps": 50, "n_full": 25, "n_trial": 50, "reused_block_share": 0.0}
    assert costs.work_ratio(row, 100, 2, 90) == 50 * 100 / (25 * 100 + 50 * 2)
    row = dict(row, reused_block_share=0.5)
    assert costs.work_ratio(row, 100, 2, 90) == 50 * 100 / (25 * (100 - 45) + 50 * 2)
