#!/usr/bin/env python3
"""Train the tiny PreciseCache demo model: ComfyUI's real Wan 2.1 architecture, small.

The network is ``comfy.ldm.wan.model.WanModel`` itself (imported from COMFYUI_DIR, else
../ComfyUI, else /opt/ComfyUI), trained on procedural clips (``precisecache_demo.clips``) mapped to Wan's
16-channel latent by the linear stand-in VAE (``precisecache_demo.latent_map``), in ComfyUI's
normalised model space, with the rectified-flow objective ComfyUI samples Wan 2.1 with:

    x_t = (1 - sigma) * x0 + sigma * eps,   target v = eps - x0,   timestep = 1000 * sigma

(``comfy.model_sampling.CONST`` + ``ModelSamplingDiscreteFlow``: denoised = x_t - sigma * v).

sigma is drawn from a mixture: with probability ``1 - uniform_frac`` the shift-8 distribution
ComfyUI's Wan schedule uses (sigma = 8u / (1 + 7u), u ~ U(0, 1)), otherwise sigma ~ U(0, 1).
The shift-8 part matches where the sampler spends its steps (half of a 50-step "simple" schedule
has sigma > 0.89); on its own it gives only ~1.4% of samples with sigma < 0.1 and ~5% below 0.3,
yet the sampler's last steps run there and the demo's point is the late, low-noise part of the
trajectory, so the uniform part makes sure low-noise denoising is learnt too.

Condition dropout (``--p-uncond``, default 0.12) replaces the prompt embedding with the empty
prompt's so classifier-free guidance works.  Weights are an EMA of the AdamW iterates; the EMA
weights are saved (atomically) every ``--save-every`` steps and at the end, so a killed run still
leaves a usable model.  The state dict has exactly the keys of ComfyUI's WanModel (t2v), which
UNETLoader / comfy.sd.load_diffusion_model detect as WAN21_T2V (checked at the end).

ComfyUI's rotary embedding goes through comfy_kitchen's ``apply_rope1``, which has no autograd
formula; during training this script swaps in a plain differentiable rotary function (the same
formula as ComfyUI's own fallback).  Inference in ComfyUI uses the original op.

Usage:  python3 scripts/train_demo_model.py --steps 12000 --threads 1   (see --help)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.append(str(REPO / "scripts"))  # comfy_host, also when a test loads this file by path
import comfy_host  # noqa: E402


def import_comfy():
    comfy_host.import_comfy(comfy_host.require_comfyui(), cpu=True)  # --cpu before comfy.model_management
    import comfy.ops
    import comfy.ldm.wan.model as wan_model
    return comfy, wan_model


def rope1_differentiable(x, freqs_cis):
    """Plain-torch rotary embedding (ComfyUI's non-comfy_kitchen fallback formula); has autograd."""
    x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    x_out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
    return x_out.reshape(*x.shape).type_as(x)


def build_model(wan_model, comfy, dim: int, layers: int, ffn: int, seed: int):
    import torch
    torch.manual_seed(seed)
    m = wan_model.WanModel(
        model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=dim, ffn_dim=ffn,
        freq_dim=256, text_dim=4096, out_dim=16, num_heads=dim // 128, num_layers=layers,
        window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6,
        device="cpu", dtype=torch.float32, operations=comfy.ops.disable_weight_init,
    )
    # comfy's ops skip parameter init: initialise like the Wan reference implementation
    for name, mod in m.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv3d)):
            torch.nn.init.xavier_uniform_(mod.weight.view(mod.weight.shape[0], -1))
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
        elif isinstance(mod, (torch.nn.LayerNorm, torch.nn.RMSNorm)) or type(mod).__name__ == "RMSNorm":
            if getattr(mod, "weight", None) is not None:
                torch.nn.init.ones_(mod.weight)
            if getattr(mod, "bias", None) is not None:
                torch.nn.init.zeros_(mod.bias)
    for seq in (m.text_embedding, m.time_embedding):
        for mod in seq:
            if isinstance(mod, torch.nn.Linear):
                torch.nn.init.normal_(mod.weight, std=0.02)
    for name, p in m.named_parameters():
        if name.endswith("modulation"):
            with torch.no_grad():
                p.copy_(torch.randn_like(p) / dim ** 0.5)
    torch.nn.init.zeros_(m.head.head.weight)
    torch.nn.init.zeros_(m.head.head.bias)
    return m


def sample_sigma(n: int, uniform_frac: float, gen):
    import torch
    u = torch.rand(n, generator=gen)
    shifted = 8.0 * u / (1.0 + 7.0 * u)
    uni = torch.rand(n, generator=gen)
    pick = torch.rand(n, generator=gen) < uniform_frac
    return torch.where(pick, uni, shifted).clamp(1e-4, 1.0)


def save_state(model_sd: dict, path: Path, meta: dict):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().float() for k, v in model_sd.items()}, str(tmp),
              metadata={"precisecache_demo": json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)


_STEP_RE = re.compile(r"^step (\d+) loss ([0-9.eE+-]+) avg ([0-9.eE+-]+) gnorm ([0-9.eE+-]+) lr ([0-9.eE+-]+) "
                      r"([0-9.]+) ms/step elapsed ([0-9.]+) min")


def parse_log(text: str) -> dict:
    """The numbers in a training log written by this script.

    Returns ``{"steps": [...], "loss": [...], "avg": [...], "gnorm": [...], "lr": [...], "ms_per_step":
    [...], "elapsed_min": [...], "params_m": float | None, "done": str | None, "done_steps": int | None,
    "done_min": float | None, "done_avg": float | None, "detects": str | None}`` (one list entry per logged
    step line; single-batch ``loss``, its running ``avg``; ``done_*`` from the final "done:" line).
    """
    out = {k: [] for k in ("steps", "loss", "avg", "gnorm", "lr", "ms_per_step", "elapsed_min")}
    out.update(params_m=None, done=None, done_steps=None, done_min=None, done_avg=None, detects=None)
    for line in text.splitlines():
        m = _STEP_RE.match(line.strip())
        if m:
            out["steps"].append(int(m.group(1)))
            for key, g in zip(("loss", "avg", "gnorm", "lr", "ms_per_step", "elapsed_min"), range(2, 8)):
                out[key].append(float(m.group(g)))
        elif line.startswith("bank ") and " params " in line:
            out["params_m"] = float(line.rsplit(" params ", 1)[1].rstrip("M \n"))
        elif line.startswith("done: "):
            out["done"] = line.strip()
            m = re.match(r"done: (\d+) steps, ([0-9.]+) min, loss avg ([0-9.eE+-]+)", line.strip())
            if m:
                out.update(done_steps=int(m.group(1)), done_min=float(m.group(2)), done_avg=float(m.group(3)))
        elif line.startswith("ComfyUI detects:"):
            out["detects"] = line.split(":", 1)[1].strip()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=0, help="FFN width (default 4 * dim)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--max-minutes", type=float, default=32.0, help="stop (and save) after this wall time")
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--p-uncond", type=float, default=0.12)
    ap.add_argument("--uniform-frac", type=float, default=0.3)
    ap.add_argument("--bank-seeds", type=int, default=160, help="clips per condition in the training bank")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "precisecache_demo_wan.safetensors")
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps and exit")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from precisecache_demo import clips, conditioning, latent_map

    comfy, wan_model = import_comfy()
    wan_model.apply_rope1 = rope1_differentiable  # comfy_kitchen's op has no backward

    ffn = args.ffn or 4 * args.dim
    model = build_model(wan_model, comfy, args.dim, args.layers, ffn, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # ---- data bank: latents of clips for every condition, and the prompt embeddings ----
    t0 = time.time()
    names = clips.condition_names()
    bank, labels = [], []
    for ci, name in enumerate(names):
        for chunk in range(0, args.bank_seeds, 40):
            seeds = range(chunk, min(args.bank_seeds, chunk + 40))
            x = clips.make_batch([name] * len(seeds), seeds, args.frames, args.size)
            bank.append(latent_map.encode(x).float())
            labels += [ci] * len(seeds)
    bank = torch.cat(bank)
    labels = torch.tensor(labels)
    ctx = conditioning.embed_batch(names)                 # [C, L, 4096]
    ctx_empty = conditioning.negative()                   # [1, L, 4096]
    print(f"bank {tuple(bank.shape)} mean {bank.mean():.3f} std {bank.std():.3f} "
          f"built in {time.time() - t0:.1f}s; model dim {args.dim} layers {args.layers} ffn {ffn} "
          f"heads {args.dim // 128} params {n_params / 1e6:.2f}M", flush=True)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or n.endswith("modulation") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed + 1)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    meta_base = {"dim": args.dim, "layers": args.layers, "ffn": ffn, "batch": args.batch, "lr": args.lr,
                 "p_uncond": args.p_uncond, "uniform_frac": args.uniform_frac, "frames": args.frames,
                 "size": args.size, "latent_space": "comfy Wan21 normalised (after process_in)",
                 "conditions": names, "ema": args.ema, "weights": "ema"}

    def save(step, loss_avg):
        meta = dict(meta_base, step=step, loss_ema=round(loss_avg, 5), wall_s=round(time.time() - t_start, 1))
        save_state(ema, args.out, meta)
        print(f"saved {args.out} at step {step}", flush=True)

    model.train()
    t_start = time.time()
    loss_avg = None
    steps = args.bench or args.steps
    step = 0
    for step in range(1, steps + 1):
        idx = torch.randint(0, bank.shape[0], (args.batch,), generator=gen)
        x0 = bank[idx]
        c = ctx[labels[idx]].clone()
        drop = torch.rand(args.batch, generator=gen) < args.p_uncond
        c[drop] = ctx_empty[0]
        sigma = sample_sigma(args.batch, args.uniform_frac, gen)
        eps = torch.randn(x0.shape, generator=gen)
        s = sigma.view(-1, 1, 1, 1, 1)
        xt = (1 - s) * x0 + s * eps
        v = model(xt, sigma * 1000.0, c)
        loss = torch.nn.functional.mse_loss(v, eps - x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v_ in model.state_dict().items():
                ema[k].mul_(d).add_(v_.detach(), alpha=1 - d)
        loss_avg = loss.item() if loss_avg is None else 0.99 * loss_avg + 0.01 * loss.item()
        el = time.time() - t_start
        if step % 100 == 0 or step == 1 or (args.bench and step % 10 == 0):
            print(f"step {step} loss {loss.item():.4f} avg {loss_avg:.4f} gnorm {float(gn):.3f} "
                  f"lr {lr_at(step - 1):.2e} {1000 * el / step:.1f} ms/step elapsed {el / 60:.1f} min", flush=True)
        if args.bench:
            continue
        if step % args.save_every == 0:
            save(step, loss_avg)
        if el > args.max_minutes * 60:
            print(f"time budget reached at step {step}", flush=True)
            break
    if args.bench:
        print(f"bench: {1000 * (time.time() - t_start) / steps:.1f} ms/step", flush=True)
        return
    save(step, loss_avg)
    print(f"done: {step} steps, {(time.time() - t_start) / 60:.1f} min, loss avg {loss_avg:.4f}", flush=True)

    # ---- check that ComfyUI's loader detects it as Wan 2.1 T2V ----
    import comfy.sd
    mp = comfy.sd.load_diffusion_model(str(args.out))
    print("ComfyUI detects:", type(mp.model).__name__, type(mp.model.model_config).__name__,
          "dim", mp.model.diffusion_model.dim, "layers", len(mp.model.diffusion_model.blocks), flush=True)


if __name__ == "__main__":
    main()
