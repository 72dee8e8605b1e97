#!/usr/bin/env python3
"""Sample the PreciseCache demo model through ComfyUI and plot the evidence.

Loads ``models/precisecache_demo_wan.safetensors`` with ``comfy.sd.load_diffusion_model`` (ComfyUI
imported in-process from COMFYUI_DIR, else ../ComfyUI, else /opt/ComfyUI), samples every demo prompt
with ``nodes.KSampler`` (euler, "simple", 50 steps, cfg 5 by default) from an empty latent of
``--size`` x ``--size`` pixels and ``--frames`` frames (default 128x128x9), decodes with the demo's
linear stand-in VAE (``decode(Wan21().process_in(latent))``) and writes, named ``<prefix>_...``
(``--prefix``, default ``demo``) into ``--out-dir`` (default docs/images):

* ``<prefix>_frames.png``: per prompt, a training clip (5 evenly spaced frames: 0 2 4 6 8 of 9,
  0 4 8 12 16 of 17), the same clip through the latent map (the best the model can represent) and
  the model's uncached sample;
* ``<prefix>_trajectory.png``: per step, the change of the model's prediction (the raw
  velocity output of the diffusion model, conditional branch) between consecutive steps, split by
  frequency: the low-frequency difference (LFD) uses a 2-D FFT over (H, W) per frame and channel,
  centred, with a circular low-pass mask of radius min(H, W) / 5, and the L2 norm of the masked
  difference; the high-frequency remainder and the sigma schedule are shown too;
  the middle panel shows the same for the x0-prediction ``x - sigma * v`` (CFG-guided) and the
  relative LFD ``||LP(v_i - v_{i-1})|| / ||LP(v_{i-1})||``;
* ``<prefix>_trajectory.json``: the numbers behind the plot;
* with ``--train-log LOG`` (a log of ``scripts/train_demo_model.py``): ``<prefix>_loss.png``, the
  training loss curve (single-batch loss every logged step, its running average, the learning
  rate); ``--no-samples`` writes only that plot (no ComfyUI needed).

Usage:  python3 scripts/plot_demo_trajectory.py [--steps 50 --cfg 5 --seed 0 --threads 2]
        python3 scripts/plot_demo_trajectory.py --model models/precisecache_deep_wan.safetensors \
            --frames 17 --prefix deep_model --label "Deep Wan (12 blocks)" --train-log docs/images/deep_model_train_log.txt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
if str(REPO / "scripts") not in sys.path:
    sys.path.append(str(REPO / "scripts"))  # comfy_host, also when this file is loaded by path
import comfy_host  # noqa: E402


def import_comfy():
    comfy_host.import_comfy(comfy_host.require_comfyui(), cpu=True)
    import comfy.latent_formats
    import comfy.patcher_extension
    import comfy.sd
    import comfy.utils
    import nodes
    comfy.utils.PROGRESS_BAR_ENABLED = False
    return comfy, nodes


def freq_split_diff(a, b, mask):
    """(low, high, total) L2 norms of a - b, split with the FFT mask over the last 2 dims."""
    import torch
    d = (a - b).float()
    spec = torch.fft.fft2(d, norm="ortho")
    low = torch.linalg.vector_norm(spec * mask)
    high = torch.linalg.vector_norm(spec * (1 - mask))
    return float(low), float(high), float(torch.linalg.vector_norm(d))


def plot_loss(log_path: Path, out_png: Path, label: str):
    """Loss curve of a ``scripts/train_demo_model.py`` log (parsed by its ``parse_log``)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_demo_model", REPO / "scripts" / "train_demo_model.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    log = train.parse_log(Path(log_path).read_text())
    if not log["steps"]:
        raise SystemExit(f"no 'step ...' lines in {log_path}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.plot(log["steps"], log["loss"], ".", color="tab:blue", alpha=0.45, ms=4,
            label="loss of the logged step (one batch)")
    ax.plot(log["steps"], log["avg"], color="tab:blue", lw=2, label="running average (0.99 EMA of the batch losses)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("rectified-flow MSE (v = eps - x0)")
    n = log["done_steps"] or log["steps"][-1]
    minutes = log["done_min"] if log["done_min"] is not None else log["elapsed_min"][-1]
    final = log["done_avg"] if log["done_avg"] is not None else log["avg"][-1]
    if log["done_steps"] and log["done_steps"] != log["steps"][-1]:
        ax.plot([n], [final], "o", color="tab:blue", ms=5, label=f"final running average {final:.4f} (step {n})")
    title = f"{label}: training loss, {n} steps"
    if log["params_m"]:
        title += f", {log['params_m']:.2f} M params"
    title += f", {minutes:.0f} min"
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    axr = ax.twinx()
    axr.plot(log["steps"], log["lr"], color="tab:gray", lw=1, ls="--", label="learning rate (right axis)")
    axr.set_ylabel("learning rate")
    axr.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = axr.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    print(f"wrote {out_png}: steps {log['steps'][0]}..{n}, loss avg {log['avg'][0]:.4f} -> {final:.4f}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "precisecache_demo_wan.safetensors")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", default="euler")
    ap.add_argument("--scheduler", default="simple")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=0, help="only the first N prompts (0 = all)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--frames", type=int, default=9, help="video frames (latent frames = 1 + (frames - 1) / 4)")
    ap.add_argument("--size", type=int, default=128, help="frame size in pixels (latent = size / 8)")
    ap.add_argument("--prefix", default="demo", help="output file names: <prefix>_frames.png, ...")
    ap.add_argument("--label", default="Demo tiny Wan", help="model name in the plot titles")
    ap.add_argument("--train-log", type=Path, default=None,
                    help="training log of scripts/train_demo_model.py: also plot <prefix>_loss.png")
    ap.add_argument("--no-samples", action="store_true", help="only the loss plot (needs --train-log)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.train_log is not None:
        plot_loss(args.train_log, args.out_dir / f"{args.prefix}_loss.png", args.label)
    if args.no_samples:
        return
    import torch
    torch.set_num_threads(args.threads)
    names, samples, train_clips, traj, times = sample_prompts(args)
    per_prompt, means = changes_per_step(traj, names, args.size // 8)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    draw_frames(args, names, train_clips, samples)
    plot_trajectory(args, names, per_prompt, means)
    sig, mean_low, mean_rel, mean_low_x0 = (per_prompt[names[0]]["sigmas"], means["low"], means["rel"],
                                           means["low_x0"])
    summary = {
        "model": args.model.name, "frames": args.frames, "size": args.size, "steps": args.steps, "cfg": args.cfg, "seed": args.seed,
        "sampler": args.sampler, "scheduler": args.scheduler, "prompts": names,
        "lowpass": "2-D FFT over (H, W) per frame and channel, centred, circular mask radius min(H,W)/5",
        "prediction": "raw diffusion-model output (velocity), conditional branch",
        "sigmas": sig, "mean_lfd_cond": mean_low, "mean_hfd_cond": means["high"], "mean_lfd_guided": means["low_guided"],
        "mean_rel_lfd_cond": mean_rel, "mean_lfd_x0_guided": mean_low_x0, "mean_hfd_x0_guided": means["high_x0"],
        "per_prompt_lfd_cond": {n: per_prompt[n]["cond"]["low"] for n in names},
        "seconds_per_sample": times,
    }
    (args.out_dir / f"{args.prefix}_trajectory.json").write_text(json.dumps(summary, indent=1))
    nstep = len(sig) - 1
    q = max(1, nstep // 5)
    for i in range(0, nstep, q):
        seg = mean_low[i:i + q]
        print(f"steps {i + 1:2d}-{min(nstep, i + q):2d} (sigma {sig[i]:.3f}->{sig[min(nstep, i + q)]:.3f}): "
              f"mean LFD(v) {sum(seg) / len(seg):.4f}  max {max(seg):.4f}  "
              f"rel {sum(mean_rel[i:i + q]) / len(seg):.4f}  LFD(x0) {sum(mean_low_x0[i:i + q]) / len(seg):.4f}")
    print("wrote", args.out_dir / f"{args.prefix}_frames.png", args.out_dir / f"{args.prefix}_trajectory.png")


def sample_prompts(args):
    """Sample every prompt through ComfyUI's KSampler, recording the diffusion model's raw output (velocity)
    of every call with its sigma. Returns (prompt names, decoded samples, training clips, per prompt the
    'cond', CFG-'guided' and 'x0' prediction sequences [(sigma, tensor)], seconds per sample)."""
    import torch
    from precisecache_demo import clips, conditioning, latent_map

    comfy, nodes = import_comfy()
    model = comfy.sd.load_diffusion_model(str(args.model))
    fmt = comfy.latent_formats.Wan21()
    names = clips.condition_names()[: args.prompts or None]
    records = []

    def record_wrapper(executor, x, timestep, context, *a, **kw):
        out = executor(x, timestep, context, *a, **kw)
        topts = a[2] if len(a) > 2 else kw.get("transformer_options", {})
        cou = list(topts.get("cond_or_uncond", [0] * out.shape[0]))
        n = out.shape[0] // max(1, len(cou))
        for i, kind in enumerate(cou):
            records[-1].append((float(timestep.flatten()[i * n]) / 1000.0, kind, out[i * n:(i + 1) * n].detach().clone(),
                                x[i * n:(i + 1) * n].detach().clone()))
        return out

    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "precisecache_demo_record", record_wrapper)

    samples, train_clips, traj, times = {}, {}, {}, {}
    for name in names:
        pos = [[conditioning.embed(name), {}]]
        neg = [[conditioning.negative(), {}]]
        latent = {"samples": torch.zeros(1, 16, 1 + (args.frames - 1) // 4, args.size // 8, args.size // 8)}
        records.append([])
        t0 = time.time()
        (out,) = nodes.KSampler().sample(m, args.seed, args.steps, args.cfg, args.sampler, args.scheduler, pos, neg, latent)
        times[name] = time.time() - t0
        samples[name] = latent_map.decode(fmt.process_in(out["samples"]))[0]
        train_clips[name] = clips.make_clip(name, 0, args.frames, args.size)
        recs = records[-1]
        cond = [(s, o) for s, k, o, _ in recs if k == 0]
        unc = [(s, o) for s, k, o, _ in recs if k == 1]
        guided = [(s, u + args.cfg * (c - u)) for (s, c), (_, u) in zip(cond, unc)] if unc else cond
        # x0-prediction of the guided step (what the sampler moves towards): x - sigma * v
        xs = [x_ for s, k, _, x_ in recs if k == 0]
        x0 = [(s, x_ - s * v) for (s, v), x_ in zip(guided, xs)]
        traj[name] = {"cond": cond, "guided": guided, "x0": x0}
        print(f"{name}: {len(cond)} model steps, {times[name]:.2f}s", flush=True)
    return names, samples, train_clips, traj, times


def changes_per_step(traj: dict, names: list[str], latent_size: int):
    """Per prompt and branch: the low / high / total frequency change between consecutive predictions and
    the relative LFD; and their means over the prompts (keys low, high, low_guided, rel, low_x0, high_x0)."""
    import torch
    from precisecache_core.lowpass import lowpass_mask  # the pack's own mask (uncentred FFT layout)
    mask = lowpass_mask(latent_size, latent_size, 0.2)
    per_prompt = {}
    for name in names:
        entry = {}
        for branch in ("cond", "guided", "x0"):
            seq = traj[name][branch]
            low, high, tot, rel = [], [], [], []
            for i in range(1, len(seq)):
                l_, h_, t_ = freq_split_diff(seq[i][1], seq[i - 1][1], mask)
                ref, _, _ = freq_split_diff(seq[i - 1][1], torch.zeros_like(seq[i - 1][1]), mask)
                low.append(l_); high.append(h_); tot.append(t_); rel.append(l_ / max(ref, 1e-12))
            entry[branch] = {"low": low, "high": high, "total": tot, "rel": rel}
        entry["sigmas"] = [s for s, _ in traj[name]["cond"]]
        per_prompt[name] = entry
    nstep = len(per_prompt[names[0]]["sigmas"]) - 1

    def mean(branch: str, key: str) -> list[float]:
        return [sum(per_prompt[n][branch][key][i] for n in names) / len(names) for i in range(nstep)]

    means = {"low": mean("cond", "low"), "high": mean("cond", "high"), "low_guided": mean("guided", "low"),
             "rel": mean("cond", "rel"), "low_x0": mean("x0", "low"), "high_x0": mean("x0", "high")}
    return per_prompt, means


def draw_frames(args, names: list[str], train_clips: dict, samples: dict) -> None:
    """<prefix>_frames.png: per prompt, the training clip, the clip through the latent map, the model's sample."""
    from PIL import Image, ImageDraw
    from precisecache_demo import latent_map
    fstep = max(1, (args.frames - 1) // 4)
    fidx = [i * fstep for i in range(5) if i * fstep < args.frames]
    tile, gap, label_h = 80, 10, 14
    groups = [
        ("training clip (seed 0), frames " + " ".join(map(str, fidx)), train_clips),
        ("same clip through the latent map: decode(encode(x))", {n: latent_map.decode(latent_map.encode(train_clips[n][None]))[0] for n in names}),
        (f"model sample: ComfyUI KSampler {args.sampler}/{args.scheduler}, {args.steps} steps, cfg {args.cfg}, seed {args.seed}", samples),
    ]
    gw = len(fidx) * tile
    W = len(groups) * gw + (len(groups) - 1) * gap + 8
    H = len(names) * (tile + label_h) + 20
    img = Image.new("RGB", (W, H), (255, 255, 255))
    dr = ImageDraw.Draw(img)
    for g, (title, _) in enumerate(groups):
        dr.text((4 + g * (gw + gap), 4), title, fill=(0, 0, 0))

    def to_pil(frame):
        arr = (frame.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
        return Image.fromarray(arr).resize((tile, tile), Image.NEAREST)

    for r, name in enumerate(names):
        y = 20 + r * (tile + label_h)
        dr.text((4, y + 1), name, fill=(0, 0, 0))
        for g, (_, data) in enumerate(groups):
            for j, f in enumerate(fidx):
                img.paste(to_pil(data[name][:, f]), (4 + g * (gw + gap) + j * tile, y + label_h))
    img.save(args.out_dir / f"{args.prefix}_frames.png")


def plot_trajectory(args, names: list[str], per_prompt: dict, means: dict) -> None:
    """<prefix>_trajectory.png: the velocity's per-step change by frequency, the x0-prediction's and the
    relative LFD, and the sigma schedule."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sig = per_prompt[names[0]]["sigmas"]
    steps_x = list(range(1, len(sig)))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    ax = axes[0]
    for name in names:
        ax.plot(steps_x, per_prompt[name]["cond"]["low"], color="tab:blue", alpha=0.18, lw=0.8)
    ax.plot(steps_x, means["low"], color="tab:blue", lw=2.2, label="low-freq change (LFD), mean over prompts")
    ax.plot(steps_x, means["high"], color="tab:orange", lw=1.6, ls="--", label="high-freq change, mean")
    ax.plot(steps_x, means["low_guided"], color="tab:green", lw=1.2, ls=":", label=f"LFD of CFG-guided prediction (cfg {args.cfg})")
    ax.set_yscale("log")
    ax.set_xlabel("sampling step i (change between prediction i-1 and i)")
    ax.set_ylabel("L2 norm of change")
    ax.set_title(f"{args.label}: per-step change of the velocity prediction")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax1 = axes[1]
    for name in names:
        ax1.plot(steps_x, per_prompt[name]["x0"]["low"], color="tab:red", alpha=0.18, lw=0.8)
    ax1.plot(steps_x, means["low_x0"], color="tab:red", lw=2.2, label="low-freq change of x0-prediction (x - sigma v)")
    ax1.plot(steps_x, means["high_x0"], color="tab:purple", lw=1.4, ls="--", label="high-freq change of x0-prediction")
    ax1r = ax1.twinx()
    ax1r.plot(steps_x, means["rel"], color="tab:blue", lw=1.0, ls=":", label="relative LFD of v (right axis)")
    ax1r.set_ylabel("||LP(v_i - v_i-1)|| / ||LP(v_i-1)||")
    ax1.set_yscale("log")
    ax1.set_xlabel("sampling step i")
    ax1.set_title("same run: x0-prediction and relative LFD")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1r.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    ax2 = axes[2]
    ax2.plot(list(range(len(sig))), sig, color="k", marker=".", ms=3)
    ax2.set_xlabel("sampling step")
    ax2.set_ylabel("sigma at the model call")
    ax2.set_title(f"schedule: shift 8, {args.scheduler}, {args.steps} steps")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out_dir / f"{args.prefix}_trajectory.png", dpi=110)


if __name__ == "__main__":
    main()
