"""Procedural short video clips for the PreciseCache demo model.

Every clip is a deterministic function of ``(condition, seed)``: the named
condition fixes *what* happens (shape, colour, motion, background, camera),
the seed jitters *how* (start position, speed, size, colour shade, background
tones, texture period / phase).

Clips are float32 tensors ``[3, F, H, W]`` with values in ``[0, 1]``.
Defaults: ``F = 9`` frames (Wan latent ``T = 1 + (F - 1) // 4 = 3``) at
``128 x 128`` pixels (Wan latent ``16 x 16``).  All geometry is defined on a
128-pixel reference canvas and scaled to ``size``, so other sizes (multiples
of 8) give the same scene at a different resolution.

Shapes are rendered from signed distance functions with a one-reference-pixel
soft edge (anti-aliased).  Pure torch; no ComfyUI import.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

REF = 128.0  # reference canvas size in pixels; all geometry below is in these units

COLOURS = {
    "red": (0.90, 0.15, 0.10),
    "blue": (0.15, 0.30, 0.95),
    "green": (0.10, 0.80, 0.20),
    "yellow": (0.95, 0.85, 0.10),
    "white": (0.95, 0.95, 0.95),
    "magenta": (0.90, 0.15, 0.85),
    "orange": (1.00, 0.55, 0.05),
    "cyan": (0.10, 0.85, 0.90),
}


@dataclass(frozen=True)
class Spec:
    """What a named condition shows.

    shape: "square" | "circle" | "triangle" | None (background only)
    motion: "left" | "right" | "up" | "down" | "diagonal" | "grow" | "shrink" | "rotate" | "still"
    background: "plain" | "vstripes" | "hstripes" | "checker"
    camera: None | "left" | "right" | "up" | "down"  (direction the camera pans; the whole
            scene, object included, then slides the opposite way across the frame)
    """

    shape: str | None
    colour: str | None
    motion: str
    background: str = "plain"
    camera: str | None = None


# The vocabulary: one named condition per kind of clip.  Order is stable (index = class id).
CONDITIONS: dict[str, Spec] = {
    "a red square moving right": Spec("square", "red", "right"),
    "a blue circle moving left": Spec("circle", "blue", "left"),
    "a green triangle moving up": Spec("triangle", "green", "up"),
    "a yellow square moving down": Spec("square", "yellow", "down"),
    "a white circle growing": Spec("circle", "white", "grow"),
    "an orange circle shrinking": Spec("circle", "orange", "shrink"),
    "a magenta square rotating": Spec("square", "magenta", "rotate"),
    "a cyan triangle moving right on stripes": Spec("triangle", "cyan", "right", "vstripes"),
    "a yellow circle moving diagonally on stripes": Spec("circle", "yellow", "diagonal", "hstripes"),
    "a red circle on a checkerboard, camera panning left": Spec("circle", "red", "still", "checker", "left"),
    "a blue square on stripes, camera panning up": Spec("square", "blue", "still", "hstripes", "up"),
    "camera panning right over a checkerboard": Spec(None, None, "still", "checker", "right"),
}


def condition_names() -> list[str]:
    """The vocabulary, in its stable order."""
    return list(CONDITIONS)


def _seed_for(condition: str, seed: int) -> int:
    h = hashlib.sha256(f"precisecache-demo-clip|{condition}|{int(seed)}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class _Rand:
    """Tiny deterministic uniform source (torch.Generator based, CPU)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.g, dtype=torch.float64))

    def sign(self) -> float:
        return 1.0 if self.u(0.0, 1.0) < 0.5 else -1.0


def _sdf(shape: str, x: torch.Tensor, y: torch.Tensor, cx: float, cy: float, size: float, angle: float) -> torch.Tensor:
    """Signed distance (reference pixels, negative inside) of a shape of width ``size``."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    half = size / 2.0
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - half
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) - half
    if shape == "triangle":  # pointing up, centroid at (cx, cy), circumradius ~ half * 1.15
        r = half * 1.15
        # three half-planes of an equilateral triangle with inradius r/2
        d = None
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3 + math.pi  # outward normals: down, up-left, up-right
            nx, ny = math.cos(a), math.sin(a)
            dk = dx * nx + dy * ny - r / 2
            d = dk if d is None else torch.maximum(d, dk)
        return d
    raise ValueError(f"unknown shape {shape!r}")


def _background(kind: str, x: torch.Tensor, y: torch.Tensor, tones: tuple, period: float, phase: float) -> torch.Tensor:
    """[3, F, H, W] background; x, y already include the camera offset."""
    lo = torch.tensor(tones[0]).view(3, 1, 1, 1)
    hi = torch.tensor(tones[1]).view(3, 1, 1, 1)
    if kind == "plain":
        w = torch.zeros_like(x)
    elif kind in ("vstripes", "hstripes"):
        coord = x if kind == "vstripes" else y
        # soft square wave: 1 on half the period, 0 on the other, 1-px transitions
        ph = torch.remainder(coord + phase, period) / period
        w = torch.clamp(torch.minimum(ph, 1 - ph) * period - period / 4 + 0.5, 0, 1)
    elif kind == "checker":
        fx = torch.floor((x + phase) / period)
        fy = torch.floor((y + phase) / period)
        w = torch.remainder(fx + fy, 2)
    else:
        raise ValueError(f"unknown background {kind!r}")
    return lo + (hi - lo) * w.unsqueeze(0)


def make_clip(condition: str, seed: int, frames: int = 9, size: int = 128) -> torch.Tensor:
    """Render the clip for ``(condition, seed)``: float32 ``[3, frames, size, size]`` in [0, 1]."""
    if condition not in CONDITIONS:
        raise KeyError(f"unknown condition {condition!r}; known: {list(CONDITIONS)}")
    if frames < 1 or size < 8:
        raise ValueError("need frames >= 1 and size >= 8")
    spec = CONDITIONS[condition]
    r = _Rand(_seed_for(condition, seed))

    # --- per-seed jitter (reference pixel units) ---
    obj_size = r.u(30.0, 44.0)
    travel = r.u(44.0, 64.0)            # total displacement over the clip
    pan = r.u(28.0, 44.0)               # total camera displacement
    grow_lo, grow_hi = r.u(14.0, 20.0), r.u(50.0, 60.0)
    rot = r.u(0.55, 0.95) * r.sign()    # radians over the clip
    base_rgb = COLOURS.get(spec.colour, (0.0, 0.0, 0.0))
    rgb = tuple(min(1.0, max(0.0, c + r.u(-0.05, 0.05))) for c in base_rgb)
    dark = r.u(0.08, 0.22)
    tones = ((dark,) * 3, (dark + r.u(0.20, 0.30),) * 3)
    if spec.background == "plain":
        tones = (tones[0], tones[0])
    period = r.u(20.0, 28.0) if "stripes" in spec.background else r.u(16.0, 22.0)
    phase = r.u(0.0, 32.0)
    margin = obj_size / 2 + 6
    cx0, cy0 = r.u(margin, REF - margin), r.u(margin, REF - margin)
    m = spec.motion
    if m in ("left", "right", "up", "down", "diagonal"):
        d = travel if m != "diagonal" else travel * 0.75
        lo, hi = margin, REF - margin - d
        start = r.u(lo, max(lo, hi))
        if m == "right":
            cx0, vx, vy = start, d, 0.0
        elif m == "left":
            cx0, vx, vy = REF - start, -d, 0.0
        elif m == "down":
            cy0, vx, vy = start, 0.0, d
        elif m == "up":
            cy0, vx, vy = REF - start, 0.0, -d
        else:  # diagonal: down-right
            cx0, cy0 = start, r.u(lo, max(lo, hi))
            vx, vy = d, d
    else:
        vx = vy = 0.0
    cam = {"left": (1.0, 0.0), "right": (-1.0, 0.0), "up": (0.0, 1.0), "down": (0.0, -1.0)}.get(spec.camera, (0.0, 0.0))
    if spec.camera is not None:  # start the object where the pan keeps it in view
        cx0 -= cam[0] * pan / 2
        cy0 -= cam[1] * pan / 2

    # --- render ---
    scale = REF / size
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * scale  # pixel centres, reference units
    tau = torch.linspace(0.0, 1.0, frames) if frames > 1 else torch.zeros(1)
    y = coords.view(1, size, 1).expand(frames, size, size)
    x = coords.view(1, 1, size).expand(frames, size, size)
    # camera: the scene slides by cam * pan * tau across the frame
    sx = (cam[0] * pan * tau).view(frames, 1, 1)
    sy = (cam[1] * pan * tau).view(frames, 1, 1)
    clip = _background(spec.background, x - sx, y - sy, tones, period, phase)

    if spec.shape is not None:
        masks = []
        for i, t in enumerate(tau.tolist()):
            s = obj_size
            if m == "grow":
                s = grow_lo + (grow_hi - grow_lo) * t
            elif m == "shrink":
                s = grow_hi + (grow_lo - grow_hi) * t
            ang = rot * t if m == "rotate" else 0.0
            cx = cx0 + vx * t + cam[0] * pan * t
            cy = cy0 + vy * t + cam[1] * pan * t
            d = _sdf(spec.shape, x[i], y[i], cx, cy, s, ang)
            masks.append(torch.clamp(0.5 - d / scale, 0.0, 1.0))  # ~1 output pixel soft edge
        mask = torch.stack(masks).unsqueeze(0)  # [1, F, H, W]
        colour = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1, 1)
        clip = clip * (1 - mask) + colour * mask
    return clip.clamp(0.0, 1.0).contiguous()


def make_batch(conditions: Sequence[str], seeds: Iterable[int], frames: int = 9, size: int = 128) -> torch.Tensor:
    """Stack clips for paired ``conditions`` and ``seeds``: ``[B, 3, frames, size, size]``."""
    seeds = list(seeds)
    if len(seeds) != len(conditions):
        raise ValueError("conditions and seeds must have the same length")
    return torch.stack([make_clip(c, s, frames, size) for c, s in zip(conditions, seeds)])
