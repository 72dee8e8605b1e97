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
from .block_guidance import GUIDED, BlockGuidance, phase_for
from .config import FEW_STEP_LIMIT, BlockCacheConfig, LFCacheConfig, static_fallback
from .report import RunReport
from .schedule import StepClock
from .step_policy import StepDecision, StepPolicy
from .trial import effective_factors, token_ratio

SlotKey = tuple[tuple[Hashable, ...], int]

TIMED_TRIALS = 3
"""Trials timed before the speed-target rule checks that the trial pays for itself."""
TIMED_FULL_STEPS = 2
"""Computed steps timed for the same check (a speed-target run always computes its first two)."""


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
    """What happened at one sampler step; the report's per-step lists are read from these."""

    sigma: float
    decision: StepDecision | None = None
    block_phase: str | None = None
    calls: int = 0
    batch: int = 0
    """Total batch over this step's model calls."""
    reused_calls: int = 0
    blocks_reused_at_start: int = 0

    @property
    def skip(self) -> bool:
        return self.decision is not None and self.decision.skip

    @property
    def decided(self) -> bool:
        return self.decision is not None


class PreciseCacheRun:
    """State of one sampling run (see module doc)."""

    def __init__(self, lf: LFCacheConfig | None, block: BlockCacheConfig | None, schedule: Sequence[float],
                 latent_shape: Sequence[int], percent_to_sigma, blocks_per_forward: int = 0,
                 model_name: str = "", settings: str = "", patch_size: tuple[int, int, int] = (1, 1, 1),
                 sync=None):
        self.lf = lf
        self.sync = sync
        """:class:`rank_sync.RankSync` when several ranks compute this sample (None: one GPU, nothing reduced)."""
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
        self.lf_active = bool(lf) and lf.skips and caching
        self.block_active = bool(block) and block.pivotal_ratio < 1.0 and caching
        step_sigmas = self.clock.sigmas[:-1] if len(self.clock.sigmas) > 1 else self.clock.sigmas
        self.trial_factors = effective_factors(lf.trial_downsample, self.latent_shape, patch_size) if lf else None
        self.policy: StepPolicy | None = None
        if lf:
            self.report.trial_token_ratio = token_ratio(lf.trial_downsample, self.latent_shape, patch_size)
            self.report.speed_target = lf.speed_target
            lf_window = StepClock.from_schedule(schedule, percent_to_sigma(lf.start_percent),
                                                percent_to_sigma(lf.end_percent))
            allowed = [lf_window.in_window(s) for s in step_sigmas]
            self.lf_active = self.lf_active and self._window_holds_steps("LFCache", allowed, step_sigmas)
            self.policy = StepPolicy(allowed, alpha=lf.alpha, speed_target=lf.speed_target, metric=lf.metric,
                                     lowpass_radius=lf.lowpass_radius,
                                     max_consecutive_skips=lf.max_consecutive_skips,
                                     trial_cost=self.report.trial_token_ratio, sync=sync)
            if self.lf_active and self.policy.target is not None:
                reachable = self.policy.target.reachable_speedup()
                if reachable < lf.speed_target:
                    self.report.notes.append(f"speed target {lf.speed_target:g}x cannot be reached on this "
                                             f"{self.clock.steps}-step schedule and window (at most {reachable:.2f}x): "
                                             f"every step that may skip is skipped")
        self._block_window = StepClock.from_schedule(schedule, percent_to_sigma(block.start_percent),
                                                     percent_to_sigma(block.end_percent)) if block else None
        if self.block_active:
            self.block_active = self._window_holds_steps(
                "BlockCache", [self._block_window.in_window(s) for s in step_sigmas], step_sigmas)
        self.blocks = BlockResidualCache(block) if block else None
        if sync is not None:
            if self.blocks is not None:
                self.blocks.pivotal_sync = sync.pivotal_blocks
            self.report.notes.append(f"decisions agreed over {sync.size} ranks"
                                     + (f" ({sync.description})" if sync.description else ""))
        self.guidance = self._block_guidance(lf, block)
        self._block_order: dict[BlockKey, int] = {}
        self._block_counts: dict[int, dict[BlockKey, int]] = {}
        """Per step: block → calls that reused its residual (for the report's per-block reuse)."""
        self._block_calls: dict[BlockKey, int] = {}
        self._steps: dict[int, _StepRecord] = {}
        self._ordinals: dict[tuple[Hashable, ...], int] = {}
        self._ordinal_step = -1
        self._computed_since_refresh: int | None = None
        self._computed_batch: tuple[int, int] = (0, 0)
        """(summed batch over the model calls of the computed steps so far, their count): the trial's cost share."""
        self._outputs: dict[SlotKey, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._output_bytes = 0
        self._first_step_seconds: dict[int, float] = {}
        """Measured time of the full calls of the first computed step (for the step-aside check)."""
        self._trial_share: float | None = None
        self._trial_seconds: list[float] = []
        if sync is not None and self.guidance is not None:
            # its per-block decisions come from each rank's own trial shard: not agreed over ranks yet
            self.guidance = None
            self._static_fallback("BlockCache trial_guided is not rank-synced: with several ranks on one sample")
        self._started = time.perf_counter()

    # -- per call -----------------------------------------------------------------------------
    def begin_call(self, uuids: Sequence[Hashable], sigma: float, batch: int = 1) -> CallPlan:
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
        record.batch += int(batch)
        if first:
            self._close_previous_step(step)
        needs_trial = first and self.lf_active and self.policy.wants_trial(step)
        if first and not needs_trial:
            self._record_decision(record, self.policy.decide(step, None) if self.lf_active else StepDecision(False, False))
        return CallPlan(step=step, sigma=sigma, slot=(key, ordinal), needs_trial=needs_trial, block_phase=None)

    def decide(self, plan: CallPlan, trial_prediction: torch.Tensor) -> bool:
        """Take step ``plan.step``'s decision from the trial prediction; True means skip."""
        record = self._steps[plan.step]
        self.report.trial_forwards += 1
        self.report.trial_work += self.report.trial_token_ratio * trial_prediction.shape[0] / max(1, record.batch)
        total, steps = self._computed_batch
        if steps:
            mean_step_batch = total / steps
            self.policy.set_trial_cost(self.report.trial_token_ratio * trial_prediction.shape[0] / mean_step_batch)
        decision = self.policy.decide(plan.step, trial_prediction)
        self._record_decision(record, decision)
        if decision.abandoned:  # another rank's trial failed: every rank turns LFCache off (decision: compute)
            self.stop_lf(plan, "LFCache is off for this run: the trial forward failed on another rank")
        if self.guidance is not None:
            self.guidance.close_trial(plan.step)
        return decision.skip

    @property
    def needs_timing(self) -> bool:
        """True while the speed-target rule still needs the trial's measured time share."""
        return self.lf_active and self.lf.step_aside and self.policy.target is not None and self._trial_share is None

    def record_seconds(self, plan: CallPlan, seconds: float, trial: bool) -> None:
        """Measured time of one call (the glue synchronises the device around it).

        A full step's time is the fastest of the first ``TIMED_FULL_STEPS`` computed steps (their calls
        summed), the trial's the fastest of the first ``TIMED_TRIALS`` trials: minima on both sides, so
        a busy machine, which only ever slows a call down, does not tip the comparison. Once both are
        known, LFCache steps aside if the trial's share would make the run slower than uncached."""
        if trial:
            self._trial_seconds.append(seconds)
        elif len(self._first_step_seconds) < TIMED_FULL_STEPS or plan.step in self._first_step_seconds:
            self._first_step_seconds[plan.step] = self._first_step_seconds.get(plan.step, 0.0) + seconds
        measured = len(self._trial_seconds) >= TIMED_TRIALS and len(self._first_step_seconds) >= TIMED_FULL_STEPS
        if not measured or (not trial and plan.step == max(self._first_step_seconds)):
            return  # not all measured yet, or this step's full calls may not all have run
        full, fastest_trial = min(self._first_step_seconds.values()), min(self._trial_seconds)
        if self.sync is not None:  # the ranks' summed times: all of them step aside, or none
            full, fastest_trial = self.sync.sum_numbers([full, fastest_trial])
        if full <= 0:
            return
        self._trial_share = fastest_trial / full
        predicted = self.policy.predicted_wall_speedup(self._trial_share)
        if predicted is not None and predicted < 1.0:
            self.stop_lf(plan, f"LFCache stepped aside: at this size a trial takes {100 * self._trial_share:.0f}% "
                               f"of a full step's time, so the speed target would run slower than uncached "
                               f"(predicted {predicted:.2f}x); the remaining steps are computed")
            if self._steps[plan.step].decision is not None:
                self._steps[plan.step].decision = StepDecision(False, True)

    def stop_lf(self, plan: CallPlan, note: str) -> None:
        """Turn LFCache off for the rest of the run (the trial cannot be made): this step is computed."""
        if self.sync is not None and self.lf_active and not self._steps[plan.step].decided:
            self.policy.decide(plan.step, None, failed=True)  # this rank's part in the step's collectives
        self.lf_active = False
        self.report.notes.append(note)
        if self.guidance is not None:
            self.guidance.drop_trial()
        record = self._steps[plan.step]
        if not record.decided:
            self._record_decision(record, StepDecision(False, False))

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
        if self.guidance is not None:
            record.block_phase = plan.block_phase = GUIDED
            return plan
        if record.block_phase is None:
            record.block_phase = block_phase(self._computed_since_refresh, self.block.refresh_interval)
            self._computed_since_refresh = 0 if record.block_phase == "refresh" else self._computed_since_refresh + 1
        plan.block_phase = record.block_phase
        if plan.block_phase == "refresh":
            self.blocks.start_refresh(plan.slot)
        return plan

    def run_block(self, plan: CallPlan, block: BlockKey, args: BlockArgs, compute: BlockFn,
                  in_place_tensors: tuple[str, ...] = ()) -> dict:
        phase = plan.block_phase
        if phase == GUIDED:
            phase = phase_for(self.guidance, plan.slot, plan.step, block, self.blocks.slot_scores(plan.slot))
        before = self.blocks.blocks_reused
        out = self.blocks.run_block(plan.slot, phase, block, args, compute, in_place_tensors)
        reused = self.blocks.blocks_reused != before
        if plan.block_phase == GUIDED:
            self.guidance.after_block(plan.slot, block, reused)
        self._block_order.setdefault(block, len(self._block_order))
        self._block_calls[block] = self._block_calls.get(block, 0) + 1
        if reused:
            counts = self._block_counts.setdefault(plan.step, {})
            counts[block] = counts.get(block, 0) + 1
        return out

    @property
    def guides_blocks(self) -> bool:
        """True when the trial forward must record each block's residual (trial-guided BlockCache)."""
        return self.guidance is not None and self.lf_active

    def trial_block(self, block: BlockKey, args: BlockArgs, compute: BlockFn,
                    in_place_tensors: tuple[str, ...] = ()) -> dict:
        """One block of the trial forward: computed, its residual recorded for trial-guided BlockCache."""
        return self.guidance.trial_block(block, args, compute, in_place_tensors)

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
        if self.sync is not None and self.sync.overruled:
            report.notes.append(f"{self.sync.overruled} steps this rank would have skipped were computed: "
                                f"another rank of the sample computed them")
        report.interrupted = interrupted
        report.wall_seconds = time.perf_counter() - self._started
        report.skipped_steps = sorted(i for i, r in self._steps.items() if r.skip and r.reused_calls == r.calls)
        ordered = [self._steps[i] for i in sorted(self._steps)]
        decisions = [r.decision for r in ordered if r.decision is not None]
        report.lfd = [d.delta for d in decisions]
        report.accumulated = [d.metric for d in decisions]
        report.threshold = [d.threshold for d in decisions]
        report.reused_blocks_per_step = []
        for i, r in enumerate(ordered):
            end = ordered[i + 1].blocks_reused_at_start if i + 1 < len(ordered) else self._blocks_reused()
            report.reused_blocks_per_step.append(end - r.blocks_reused_at_start)
        if self.blocks is not None:
            report.blocks_computed = self.blocks.blocks_computed
            report.blocks_reused = self.blocks.blocks_reused
            report.block_budget_refusals = self.blocks.budget_refusals
            self._report_blocks(report, self.clock.steps)
            if self.blocks.budget_refusals:
                report.notes.append(f"memory budget {self.block.memory_budget_mb:g} MB reached: "
                                    f"{self.blocks.budget_refusals} block residuals not cached, those blocks computed")
        self._update_peak()
        self.release()
        return report

    def release(self) -> None:
        self._outputs.clear()
        self._output_bytes = 0
        if self.policy is not None:
            self.policy.release()
        if self.blocks is not None:
            self.blocks.release()
        if self.guidance is not None:
            self.guidance.release()

    # -- internals ----------------------------------------------------------------------------
    def _window_holds_steps(self, name: str, allowed: Sequence[bool], step_sigmas: Sequence[float]) -> bool:
        """A cache whose start/end window (percent of the whole denoising schedule) contains none of
        this run's steps cannot act: it is off for the run, so it costs nothing (no trial forwards,
        no residuals). Happens to a sampler that runs only part of the schedule (KSamplerAdvanced,
        Wan 2.2's high-noise expert with a late window)."""
        if any(allowed):
            return True
        self.report.notes.append(f"no step of this run (sigma {step_sigmas[0]:.4g} to {step_sigmas[-1]:.4g}) lies in "
                                 f"{name}'s start/end window, which is on the whole denoising schedule: "
                                 f"{name} is off for this run")
        return False

    def _close_previous_step(self, step: int) -> None:
        """When step ``step`` starts, remember the batch of the latest computed step before it."""
        previous = self._steps.get(step - 1)
        if previous is not None and not previous.skip and previous.batch:
            total, steps = self._computed_batch
            self._computed_batch = (total + previous.batch, steps + 1)

    def _blocks_reused(self) -> int:
        return self.blocks.blocks_reused if self.blocks is not None else 0

    def _update_peak(self) -> None:
        block_bytes = self.blocks.peak_bytes if self.blocks is not None else 0
        block_bytes += self.guidance.peak_bytes if self.guidance is not None else 0
        self.report.cache_bytes_peak = max(self.report.cache_bytes_peak, self._output_bytes + block_bytes)

    def _block_guidance(self, lf: LFCacheConfig | None, block: BlockCacheConfig | None) -> BlockGuidance | None:
        """Trial-guided BlockCache's state, or None: static mode, or no trial to guide it (a note says so)."""
        if not self.block_active or block.mode != "trial_guided":
            return None
        if not self.lf_active:
            why = ("LFCache is not on this model" if lf is None else
                   "LFCache runs no trial in this run (it cannot skip a step here)")
            self._static_fallback(f"BlockCache trial_guided needs LFCache's trial forward, but {why}")
            return None
        return BlockGuidance(block.change_threshold, block.refresh_interval, block.pivotal_ratio)

    def _static_fallback(self, why: str) -> None:
        """No trial guides BlockCache in this run: the static rule (config.static_fallback), with a note."""
        static = static_fallback(self.block)
        self.blocks.config = static
        default = " (the paper's share: pivotal_ratio 0 would reuse every block)" if not self.block.pivotal_ratio else ""
        self.report.notes.append(f"{why}: BlockCache used the static rule (top {static.pivotal_ratio:g} of blocks "
                                 f"always computed{default}, the others refreshed every "
                                 f"{static.refresh_interval + 1} computed steps)")

    def _report_blocks(self, report: RunReport, steps: int) -> None:
        """Per-block reuse (network order), per step and in total; trial-guided mode's fallback steps."""
        order = sorted(self._block_order, key=self._block_order.get)
        report.block_mode = "off" if not self.block_active else self.block.mode if self.guidance is not None else "static"
        report.block_names = [" ".join(str(p) for p in b) if isinstance(b, tuple) else str(b) for b in order]
        report.reused_per_block = [sum(c.get(b, 0) for c in self._block_counts.values()) for b in order]
        report.block_calls_per_block = [self._block_calls.get(b, 0) for b in order]
        report.block_reuse_map = [[self._block_counts.get(i, {}).get(b, 0) for b in order] for i in range(steps)]
        if self.guidance is not None and self.guidance.fallback_steps:
            steps_ = sorted(self.guidance.fallback_steps)
            report.notes.append(f"BlockCache trial_guided: {len(steps_)} computed step{'s' * (len(steps_) > 1)} ran "
                                f"no LFCache trial (step{'s' * (len(steps_) > 1)} {_ranges(steps_)}): every block "
                                f"was computed there")

    def _record_decision(self, record: _StepRecord, decision: StepDecision) -> None:
        record.decision = decision


def _ranges(steps: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → '0-2, 5, 7-8'."""
    parts, start = [], None
    for i, s in enumerate(steps):
        if start is None:
            start = s
        if i + 1 == len(steps) or steps[i + 1] != s + 1:
            parts.append(f"{start}" if start == s else f"{start}-{s}")
            start = None
    return ", ".join(parts)
