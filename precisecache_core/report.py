"""What one sampling run did, as numbers a person can check."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class RunReport:
    """Counters of one sampling run. Counts are per model call unless named per step."""

    model: str = ""
    settings: str = ""
    steps: int = 0
    """Sampler steps in the schedule."""
    skipped_steps: list[int] = field(default_factory=list)
    """Indices of sampler steps whose model calls all reused the cache."""
    full_forwards: int = 0
    """Denoiser calls actually run at full size (trial forwards excluded)."""
    reused_forwards: int = 0
    """Denoiser calls answered from the step cache instead."""
    trial_forwards: int = 0
    """Cheap downsampled denoiser calls run to take the decision."""
    trial_token_ratio: float = 0.0
    trial_work: float = 0.0
    """Work of the trial forwards in units of one full model call: Σ token ratio × trial batch ÷ call batch
    (a trial on the cond stream alone of a batched cond+uncond call costs half of one on both)."""
    speed_target: float = 0.0
    """The speed target asked for (uncached ÷ cached work), 0 when the α rule was used."""
    blocks_per_forward: int = 0
    blocks_computed: int = 0
    blocks_reused: int = 0
    block_budget_refusals: int = 0
    cache_bytes_peak: int = 0
    lfd: list[float] = field(default_factory=list)
    """Δ_i per step (NaN where none: first step, or no trial)."""
    threshold: list[float] = field(default_factory=list)
    """The skip threshold at each step's decision: α · Δ_max, or τ_i with a speed target (NaN where none)."""
    accumulated: list[float] = field(default_factory=list)
    """The metric compared with the threshold at each decision: A_i, the accumulated Δ since the last
    full step (or the drift D_i from its trial); NaN where none."""
    reused_blocks_per_step: list[int] = field(default_factory=list)
    block_mode: str = ""
    """BlockCache's rule in this run: 'static', 'trial_guided', 'off' ('' without BlockCache)."""
    block_names: list[str] = field(default_factory=list)
    """The blocks BlockCache acted on, in network order (e.g. 'double_block 3')."""
    reused_per_block: list[int] = field(default_factory=list)
    """Per block (``block_names`` order): calls that reused its cached residual."""
    block_calls_per_block: list[int] = field(default_factory=list)
    """Per block: calls in the steps BlockCache acted on (reused + computed)."""
    block_reuse_map: list[list[int]] = field(default_factory=list)
    """Per step, per block: calls that reused the block's residual (the report plot's per-block panel)."""
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def estimated_speedup(self) -> float:
        """Uncached work ÷ counted work, in units of one full forward.

        Blocks are taken to be all of a forward's cost; a trial costs its token ratio.
        """
        uncached = self.full_forwards + self.reused_forwards
        block_share = (self.blocks_reused / self.blocks_per_forward) if self.blocks_per_forward else 0.0
        cached = self.full_forwards - block_share + self.trial_work
        if uncached == 0 or cached <= 0:
            return 1.0
        return uncached / cached

    def summary_line(self) -> str:
        """One log line, like ComfyUI's own caches print."""
        total_blocks = self.blocks_computed + self.blocks_reused
        blocks = (f", reused {self.blocks_reused}/{total_blocks} block calls" if total_blocks and self.blocks_reused
                  else "")
        target = f" (target {self.speed_target:g}x)" if self.speed_target else ""
        wall = f", sampling took {self.wall_seconds:.2f} s" if self.wall_seconds else ""
        return (f"PreciseCache - skipped {len(self.skipped_steps)}/{self.steps} steps{blocks}, "
                f"{self.full_forwards} full + {self.trial_forwards} trial forwards: "
                f"work saved {self.estimated_speedup:.2f}x{target} (counted in forwards, not timed){wall}; "
                f"cache {self.cache_bytes_peak / 2**20:.1f} MiB")

    def to_text(self) -> str:
        """Multi-line summary for the report node."""
        lines = [self.summary_line()]
        if self.model:
            lines.append(f"model: {self.model}")
        if self.settings:
            lines.append(f"settings: {self.settings}")
        lines.append(f"skipped steps: {self.skipped_steps if self.skipped_steps else 'none'}")
        lines.append(f"denoiser calls: {self.full_forwards} full, {self.reused_forwards} reused, "
                     f"{self.trial_forwards} trial (each ~{self.trial_token_ratio:.3f} of the tokens)")
        if self.blocks_computed or self.blocks_reused:
            lines.append(f"block calls: {self.blocks_computed} computed, {self.blocks_reused} reused"
                         + (f" ({self.block_mode})" if self.block_mode else ""))
        if self.block_names and self.blocks_reused:
            lines.append("reused per block: " + ", ".join(
                f"{name}: {r}/{c}" for name, r, c in
                zip(self.block_names, self.reused_per_block, self.block_calls_per_block)))
        lines.append(f"cache memory (peak): {self.cache_bytes_peak / 2**20:.2f} MiB")
        if self.wall_seconds:
            lines.append(f"sampling wall time: {self.wall_seconds:.2f} s")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["estimated_speedup"] = self.estimated_speedup
        for key in ("lfd", "threshold", "accumulated"):
            data[key] = [None if (isinstance(v, float) and math.isnan(v)) else v for v in data[key]]
        return data
