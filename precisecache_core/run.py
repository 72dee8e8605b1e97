"""All state of one sampling run: step decisions, the step cache, the block cache and the report.

One :class:`PreciseCacheRun` is created when a sampling run starts and released when it ends
(also on error or interruption); nothing survives into the next run. The ComfyUI glue drives it
per denoiser call:

    plan = run.begin_call(uuids, sigma)             # which step, which slot, what to do
    if plan.needs_trial:  run.decide(plan, trial_prediction)
    if run.should_skip(plan):
        cached = run.reuse(plan, x)                 # None if this slot has nothing cached
    ... full forward, block calls through run.run_block(plan, block, args, compute) ...
    run.store(plan, x, prediction)

A *slot* is (the tuple of stream uuids in the call, the how-many-th call of that tuple in this
step): cond and uncond batched together form one slot, called separately two, and an extra call at
the same sigma (Heun's corrector, skip-layer guidance) gets its own cache entry.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from .block_cache import BlockArgs, BlockFn, BlockKey, BlockResidualCache, block_phase
from .config import FEW_STEP_LIMIT, BlockCacheConfig, LFCacheConfig
from .lowpass import low_frequency_distance
from .report import RunReport
from .schedule import StepClock
from .step_decision import StepDecider
from .trial import effective_factors, token_ratio

SlotKey = tuple[tuple[Hashable, ...], int]


@dataclass
class CallPlan:
    """What the glue must do for one denoiser call."""

    step: int
    sigma: float
    slot: SlotKey
    needs_trial: bool
    block_phase: str | None
    """'refresh' / 'reuse' when BlockCache acts on this call, else None."""


@dataclass
class _StepRecord:
    sigma: float
    skip: bool = False
    decided: bool = False
    block_phase: str | None = None
    calls: int = 0
    reused_calls: int = 0
    blocks_reused_at_start: int = 0


class PreciseCacheRun:
    """State of one sampling run (see module doc)."""

    def __init__(self, lf: LFCacheConfig | None, block: BlockCacheConfig | None, schedule: Sequence[float],
                 latent_shape: Sequence[int], percent_to_sigma, blocks_per_forward: int = 0,
                 model_name: str = "", settings: str = ""):
        self.lf = lf
        self.block = block
        self.clock = StepClock.from_schedule(schedule)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.report = RunReport(model=model_name, settings=settings, steps=self.clock.steps,
                                blocks_per_forward=blocks_per_forward)
        few_steps = self.clock.steps <= FEW_STEP_LIMIT
        if few_steps and (lf or block):
            self.report.notes.append(f"{self.clock.steps}-step schedule (≤ {FEW_STEP_LIMIT}): caching is off for "
                                     f"this run, every step is computed")
        elif not self.clock.decreasing and (lf or block):
            self.report.notes.append("the sigma schedule increases somewhere (e.g. FlipSigmas, unsampling): "
                                     "caching is off for this run, every step is computed")
        caching = not few_steps and self.clock.decreasing
        self.lf_active = bool(lf) and lf.alpha > 0 and caching
        self.block_active = bool(block) and block.pivotal_ratio < 1.0 and caching
        if lf:
            self._lf_window = StepClock.from_schedule(schedule, percent_to_sigma(lf.start_percent),
                                                      percent_to_sigma(lf.end_percent))
            self.trial_factors = effective_factors(lf.trial_downsample, self.latent_shape)
            self.report.trial_token_ratio = token_ratio(lf.trial_downsample, self.latent_shape)
            self.decider = StepDecider(lf.alpha, lf.max_consecutive_skips)
        if block:
            self._block_window = StepClock.from_schedule(schedule, percent_to_sigma(block.start_percent),
                                                         percent_to_sigma(block.end_percent))
        self._drop_if_window_misses_run(schedule)
        self.blocks = BlockResidualCache(block) if block else None
        self._steps: dict[int, _StepRecord] = {}
        self._ordinals: dict[tuple[Hashable, ...], int] = {}
        self._ordinal_step = -1
        self._computed_since_refresh: int | None = None
        self._prev_trial: torch.Tensor | None = None
        self._outputs: dict[SlotKey, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._output_bytes = 0
        self._started = time.perf_counter()

    # -- per call -----------------------------------------------------------------------------
    def begin_call(self, uuids: Sequence[Hashable], sigma: float) -> CallPlan:
        step = self.clock.step_of(sigma)
        if step != self._ordinal_step:
            self._ordinals = {}
            self._ordinal_step = step
        key = tuple(uuids)
        ordinal = self._ordinals.get(key, 0)
        self._ordinals[key] = ordinal + 1
        record = self._steps.get(step)
        first = record is None
        if first:
            record = self._steps[step] = _StepRecord(sigma=sigma, blocks_reused_at_start=self._blocks_reused())
        record.calls += 1
        needs_trial = first and self.lf_active
        if first and not needs_trial:
            self._record_decision(record, skip=False, delta=None, threshold=None, accumulated=None)
        return CallPlan(step=step, sigma=sigma, slot=(key, ordinal), needs_trial=needs_trial, block_phase=None)

    def decide(self, plan: CallPlan, trial_prediction: torch.Tensor) -> bool:
        """Take step ``plan.step``'s decision from the trial prediction; True means skip."""
        record = self._steps[plan.step]
        self.report.trial_forwards += 1
        delta = None
        prev = self._prev_trial
        if prev is not None and prev.shape == trial_prediction.shape:
            delta = float(low_frequency_distance(trial_prediction, prev, self.lf.lowpass_radius))  # the one sync
        self._prev_trial = trial_prediction.detach()  # a fresh tensor that only this run holds
        allowed = self._lf_window.in_window(plan.sigma)
        skip = self.decider.decide(delta, allowed)
        threshold = self.lf.alpha * self.decider.running_max if delta is not None else None
        self._record_decision(record, skip, delta, threshold, self.decider.last_accumulated if delta is not None else None)
        return skip

    def stop_lf(self, plan: CallPlan, note: str) -> None:
        """Turn LFCache off for the rest of the run (the trial cannot be made): this step is computed."""
        self.lf_active = False
        self.report.notes.append(note)
        record = self._steps[plan.step]
        if not record.decided:
            self._record_decision(record, skip=False, delta=None, threshold=None, accumulated=None)

    def should_skip(self, plan: CallPlan) -> bool:
        return self._steps[plan.step].skip

    def reuse(self, plan: CallPlan, x: torch.Tensor) -> torch.Tensor | None:
        """The cached prediction for this call, or None (nothing cached for the slot: compute)."""
        cached = self._outputs.get(plan.slot)
        if cached is None:
            return None
        out, x_prev = cached
        if x.shape[0] != out.shape[0] or x.shape[2:] != out.shape[2:]:
            return None
        record = self._steps[plan.step]
        record.reused_calls += 1
        self.report.reused_forwards += 1
        if x_prev is None:
            return out  # ComfyUI only reads a model output (calculate_denoised makes a new tensor)
        channels = out.shape[1]
        return x[:, :channels].to(out.dtype) + (out - x_prev)

    def plan_blocks(self, plan: CallPlan) -> CallPlan:
        """Fill ``plan.block_phase`` for a call that will be computed."""
        if not self.block_active or not self._block_window.in_window(plan.sigma):
            return plan
        record = self._steps[plan.step]
        if record.block_phase is None:
            record.block_phase = block_phase(self._computed_since_refresh, self.block.refresh_interval)
            self._computed_since_refresh = 0 if record.block_phase == "refresh" else self._computed_since_refresh + 1
        plan.block_phase = record.block_phase
        if plan.block_phase == "refresh":
            self.blocks.start_refresh(plan.slot)
        return plan

    def run_block(self, plan: CallPlan, block: BlockKey, args: BlockArgs, compute: BlockFn,
                  in_place_tensors: tuple[str, ...] = ()) -> dict:
        return self.blocks.run_block(plan.slot, plan.block_phase, block, args, compute, in_place_tensors)

    def store(self, plan: CallPlan, x: torch.Tensor, prediction: torch.Tensor) -> None:
        """Remember a fully computed prediction for later skipped steps.

        The prediction is kept by reference (the model made a fresh tensor that ComfyUI only reads);
        in ``residual`` mode the input part is copied, since the sampler updates ``x`` later."""
        self.report.full_forwards += 1
        if not self.lf_active:
            return
        old = self._outputs.get(plan.slot)
        residual_mode = self.lf.reuse == "residual" and x.shape[2:] == prediction.shape[2:] \
            and x.shape[1] >= prediction.shape[1]
        x_part = x[:, :prediction.shape[1]] if residual_mode else None
        if x_part is not None and old is not None and old[1] is not None and old[1].shape == x_part.shape:
            old[1].copy_(x_part)
            x_kept = old[1]
        else:
            x_kept = x_part.detach().to(prediction.dtype).clone() if x_part is not None else None
        self._outputs[plan.slot] = (prediction.detach(), x_kept)
        if old is None or old[0].shape != prediction.shape:
            self._output_bytes = sum(o.numel() * o.element_size() + (p.numel() * p.element_size() if p is not None else 0)
                                     for o, p in self._outputs.values())
        self._update_peak()

    # -- end of run ---------------------------------------------------------------------------
    def finish(self, interrupted: bool = False) -> RunReport:
        """Close the report (per-step lists, counters) and free every buffer."""
        report = self.report
        report.interrupted = interrupted
        report.wall_seconds = time.perf_counter() - self._started
        report.skipped_steps = sorted(i for i, r in self._steps.items() if r.skip and r.reused_calls == r.calls)
        ordered = [self._steps[i] for i in sorted(self._steps)]
        report.reused_blocks_per_step = []
        for i, r in enumerate(ordered):
            end = ordered[i + 1].blocks_reused_at_start if i + 1 < len(ordered) else self._blocks_reused()
            report.reused_blocks_per_step.append(end - r.blocks_reused_at_start)
        if self.blocks is not None:
            report.blocks_computed = self.blocks.blocks_computed
            report.blocks_reused = self.blocks.blocks_reused
            report.block_budget_refusals = self.blocks.budget_refusals
            if self.blocks.budget_refusals:
                report.notes.append(f"memory budget {self.block.memory_budget_mb:g} MB reached: "
                                    f"{self.blocks.budget_refusals} block residuals not cached, those blocks computed")
        self._update_peak()
        self.release()
        return report

    def release(self) -> None:
        self._outputs.clear()
        self._output_bytes = 0
        self._prev_trial = None
        if self.blocks is not None:
            self.blocks.release()

    # -- internals ----------------------------------------------------------------------------
    def _drop_if_window_misses_run(self, schedule: Sequence[float]) -> None:
        """A cache whose start/end window (percent of the whole denoising schedule) contains none of
        this run's steps cannot act: turn it off, so it costs nothing (no trial forwards, no
        residuals). Happens to a sampler that runs only part of the schedule (KSamplerAdvanced,
        Wan 2.2's high-noise expert with a late window)."""
        steps = self.clock.sigmas[:-1] if len(self.clock.sigmas) > 1 else self.clock.sigmas
        for name, active, window in (("LFCache", "lf_active", getattr(self, "_lf_window", None)),
                                     ("BlockCache", "block_active", getattr(self, "_block_window", None))):
            if getattr(self, active) and not any(window.in_window(s) for s in steps):
                setattr(self, active, False)
                self.report.notes.append(f"no step of this run (sigma {steps[0]:.4g} to {steps[-1]:.4g}) lies in "
                                         f"{name}'s start/end window, which is on the whole denoising schedule: "
                                         f"{name} is off for this run")

    def _blocks_reused(self) -> int:
        return self.blocks.blocks_reused if self.blocks is not None else 0

    def _update_peak(self) -> None:
        block_bytes = self.blocks.peak_bytes if self.blocks is not None else 0
        self.report.cache_bytes_peak = max(self.report.cache_bytes_peak, self._output_bytes + block_bytes)

    def _record_decision(self, record: _StepRecord, skip: bool, delta, threshold, accumulated) -> None:
        nan = float("nan")
        record.skip = skip
        record.decided = True
        self.report.lfd.append(nan if delta is None else float(delta))
        self.report.threshold.append(nan if threshold is None else float(threshold))
        self.report.accumulated.append(nan if accumulated is None else float(accumulated))
