"""All state of one sampling run, as a few small objects each with one job, driven per model call.

One :class:`PreciseCacheRun` is created when a sampling run starts and released when it ends
(also on error or interruption); nothing survives into the next run. The ComfyUI glue drives it per
denoiser call, in this order:

    plan = run.begin_call(uuids, sigma, batch)      # step and slot of the call  (schedule.StepClock, CallSlots)
    if plan.needs_trial:  run.decide(plan, trial)   # skip or compute the step   (step_policy.StepPolicy)
    if run.should_skip(plan):
        cached = run.reuse(plan, x)                 # the slot's stored output   (step_cache.StepCache)
    run.plan_blocks(plan)                           # this step's block phase    (block_schedule.BlockSchedule)
    ... full forward; each block through run.run_block(plan, block, args, compute)  (block_cache, block_guidance)
    run.store(plan, x, prediction)                  # into the step cache
    report = run.finish()                           # the report, read from the step records (step_record)

Each call writes into its step's :class:`step_record.StepRecord`; the trial's cost share (counted and
timed, for the speed target and the step-aside check) is kept by :class:`trial_cost.TrialCost`. A part
that is not in use in a run is None: ``policy`` and ``trial_cost`` without LFCache, ``blocks`` and
``block_schedule`` without BlockCache, ``guidance`` unless BlockCache is trial-guided.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from .block_cache import REFRESH, BlockArgs, BlockFn, BlockKey, BlockResidualCache
from .block_guidance import GUIDED, BlockGuidance, phase_for
from .block_schedule import BlockSchedule
from .config import FEW_STEP_LIMIT, BlockCacheConfig, LFCacheConfig, static_fallback
from .report import RunReport
from .schedule import CallSlots, SlotKey, StepClock
from .step_cache import StepCache
from .step_policy import StepDecision, StepPolicy
from .step_record import StepRecord, write_block_lists, write_step_lists
from .trial import effective_factors, token_ratio
from .trial_cost import TrialCost


@dataclass
class CallPlan:
    """What the glue must do for one denoiser call."""

    step: int
    sigma: float
    slot: SlotKey
    needs_trial: bool
    block_phase: str | None
    """'refresh' / 'reuse' when BlockCache acts on this call, else None."""


class PreciseCacheRun:
    """State of one sampling run (see module doc)."""

    def __init__(self, lf: LFCacheConfig | None, block: BlockCacheConfig | None, schedule: Sequence[float],
                 latent_shape: Sequence[int], percent_to_sigma, blocks_per_forward: int = 0,
                 model_name: str = "", settings: str = "", patch_size: tuple[int, int, int] = (1, 1, 1),
                 sync=None):
        self.lf = lf
        self.block = block
        self.sync = sync
        """:class:`rank_sync.RankSync` when several ranks compute this sample (None: one GPU, nothing reduced)."""
        self.clock = StepClock.from_schedule(schedule)
        self.slots = CallSlots()
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.report = RunReport(model=model_name, settings=settings, steps=self.clock.steps,
                                blocks_per_forward=blocks_per_forward)
        self.records: dict[int, StepRecord] = {}
        """Per sampler step: what happened there (the report is read from these)."""
        caching = self._caching_possible(lf is not None or block is not None)
        step_sigmas = self.clock.sigmas[:-1] if len(self.clock.sigmas) > 1 else self.clock.sigmas

        # LFCache: the step policy, the trial's size and cost, the step cache
        self.lf_active = bool(lf) and lf.skips and caching
        self.trial_factors = effective_factors(lf.trial_downsample, self.latent_shape, patch_size) if lf else None
        self.policy: StepPolicy | None = None
        self.trial_cost: TrialCost | None = None
        if lf:
            self.report.trial_token_ratio = token_ratio(lf.trial_downsample, self.latent_shape, patch_size)
            self.report.speed_target = lf.speed_target
            self.trial_cost = TrialCost(self.report.trial_token_ratio, sync.sum_numbers if sync is not None else None)
            window = StepClock.from_schedule(schedule, percent_to_sigma(lf.start_percent),
                                             percent_to_sigma(lf.end_percent))
            allowed = [window.in_window(s) for s in step_sigmas]
            self.lf_active = self.lf_active and self._window_holds_steps("LFCache", allowed, step_sigmas)
            self.policy = StepPolicy(allowed, alpha=lf.alpha, speed_target=lf.speed_target, metric=lf.metric,
                                     lowpass_radius=lf.lowpass_radius,
                                     max_consecutive_skips=lf.max_consecutive_skips,
                                     trial_cost=self.report.trial_token_ratio, sync=sync)
            if self.lf_active:
                self._note_unreachable_target()
        self.step_cache = StepCache(residual=bool(lf) and lf.reuse == "residual")

        # BlockCache: the residual store, the block schedule, trial-guided state
        self.block_active = bool(block) and block.pivotal_ratio < 1.0 and caching
        self.blocks = BlockResidualCache(block) if block else None
        block_window = StepClock.from_schedule(schedule, percent_to_sigma(block.start_percent),
                                               percent_to_sigma(block.end_percent)) if block else None
        if block:
            self.block_active = self.block_active and self._window_holds_steps(
                "BlockCache", [block_window.in_window(s) for s in step_sigmas], step_sigmas)
        if sync is not None:
            if self.blocks is not None:
                self.blocks.pivotal_sync = sync.pivotal_blocks
            self.report.notes.append(f"decisions agreed over {sync.size} ranks"
                                     + (f" ({sync.description})" if sync.description else ""))
        self.guidance = self._block_guidance(lf, block)
        if sync is not None and self.guidance is not None:
            # its per-block decisions come from each rank's own trial shard: not agreed over ranks yet
            self.guidance = None
            self._static_fallback("BlockCache trial_guided is not rank-synced: with several ranks on one sample")
        self.block_schedule = BlockSchedule(block_window, block.refresh_interval,
                                            guided=self.guidance is not None) if block else None
        self._started = time.perf_counter()

    # -- per call: step and slot ----------------------------------------------------------------
    def begin_call(self, uuids: Sequence[Hashable], sigma: float, batch: int = 1) -> CallPlan:
        step = self.clock.step_of(sigma)
        slot = self.slots.slot(step, uuids)
        record = self.records.get(step)
        first = record is None
        if first:
            self._close_previous_step(step)
            record = self.records[step] = StepRecord(sigma=sigma)
        record.calls += 1
        record.batch += int(batch)
        needs_trial = first and self.lf_active and self.policy.wants_trial(step)
        if first and not needs_trial:
            record.decision = self.policy.decide(step, None) if self.lf_active else StepDecision(False, False)
        return CallPlan(step=step, sigma=sigma, slot=slot, needs_trial=needs_trial, block_phase=None)

    # -- decision -------------------------------------------------------------------------------
    def decide(self, plan: CallPlan, trial_prediction: torch.Tensor) -> bool:
        """Take step ``plan.step``'s decision from the trial prediction; True means skip."""
        record = self.records[plan.step]
        trial_batch = trial_prediction.shape[0]
        self.report.trial_forwards += 1
        self.report.trial_work += self.trial_cost.work(trial_batch, record.batch)
        share = self.trial_cost.share_of_mean_step(trial_batch)
        if share is not None:
            self.policy.set_trial_cost(share)
        record.decision = self.policy.decide(plan.step, trial_prediction)
        if record.decision.abandoned:  # another rank's trial failed: every rank turns LFCache off (decision: compute)
            self.stop_lf(plan, "LFCache is off for this run: the trial forward failed on another rank")
        if self.guidance is not None:
            self.guidance.close_trial(plan.step)
        return record.decision.skip

    @property
    def needs_timing(self) -> bool:
        """True while the step-aside check still needs the trial's measured time share."""
        return (self.lf_active and self.lf.step_aside and self.policy.target is not None
                and self.trial_cost.measured_share is None)

    def record_seconds(self, plan: CallPlan, seconds: float, trial: bool) -> None:
        """Measured time of one call (the glue synchronises the device around it). Once the trial's time
        share is known (:meth:`TrialCost.time_call`), LFCache steps aside if that share would make the run
        slower than uncached."""
        share = self.trial_cost.time_call(plan.step, seconds, trial)
        predicted = self.policy.predicted_wall_speedup(share) if share is not None else None
        if predicted is not None and predicted < 1.0:
            self.stop_lf(plan, f"LFCache stepped aside: at this size a trial takes {100 * share:.0f}% "
                               f"of a full step's time, so the speed target would run slower than uncached "
                               f"(predicted {predicted:.2f}x); the remaining steps are computed")
            if self.records[plan.step].decision is not None:
                self.records[plan.step].decision = StepDecision(False, True)

    def stop_lf(self, plan: CallPlan, note: str) -> None:
        """Turn LFCache off for the rest of the run (the trial cannot be made): this step is computed."""
        record = self.records[plan.step]
        if self.sync is not None and self.lf_active and not record.decided:
            self.policy.decide(plan.step, None, failed=True)  # this rank's part in the step's collectives
        self.lf_active = False
        self.report.notes.append(note)
        if self.guidance is not None:
            self.guidance.drop_trial()
        if not record.decided:
            record.decision = StepDecision(False, False)

    def should_skip(self, plan: CallPlan) -> bool:
        return self.records[plan.step].skip

    # -- step cache -----------------------------------------------------------------------------
    def reuse(self, plan: CallPlan, x: torch.Tensor) -> torch.Tensor | None:
        """The cached prediction for this call, or None (nothing cached for the slot: compute)."""
        cached = self.step_cache.lookup(plan.slot, x)
        if cached is not None:
            self.records[plan.step].reused_calls += 1
            self.report.reused_forwards += 1
        return cached

    # -- block plan -----------------------------------------------------------------------------
    def plan_blocks(self, plan: CallPlan) -> CallPlan:
        """Fill ``plan.block_phase`` for a call that will be computed."""
        if not self.block_active:
            return plan
        plan.block_phase = self.block_schedule.phase(plan.step, plan.sigma)
        if plan.block_phase == REFRESH:
            self.blocks.start_refresh(plan.slot)
        return plan

    def run_block(self, plan: CallPlan, block: BlockKey, args: BlockArgs, compute: BlockFn,
                  in_place_tensors: tuple[str, ...] = ()) -> dict:
        """One block of a computed call: computed, or its cached residual reused (the plan's phase)."""
        phase = plan.block_phase
        if phase == GUIDED:
            phase = phase_for(self.guidance, plan.slot, plan.step, block, self.blocks.slot_scores(plan.slot))
        before = self.blocks.blocks_reused
        out = self.blocks.run_block(plan.slot, phase, block, args, compute, in_place_tensors)
        reused = self.blocks.blocks_reused != before
        if plan.block_phase == GUIDED:
            self.guidance.after_block(plan.slot, block, reused)
        self.records[plan.step].count_block(block, reused)
        return out

    @property
    def guides_blocks(self) -> bool:
        """True when the trial forward must record each block's residual (trial-guided BlockCache)."""
        return self.guidance is not None and self.lf_active

    def trial_block(self, block: BlockKey, args: BlockArgs, compute: BlockFn,
                    in_place_tensors: tuple[str, ...] = ()) -> dict:
        """One block of the trial forward: computed, its residual recorded for trial-guided BlockCache."""
        return self.guidance.trial_block(block, args, compute, in_place_tensors)

    # -- after a computed call ------------------------------------------------------------------
    def store(self, plan: CallPlan, x: torch.Tensor, prediction: torch.Tensor) -> None:
        """Remember a fully computed prediction for later skipped steps (:class:`StepCache`)."""
        self.report.full_forwards += 1
        if not self.lf_active:
            return
        self.step_cache.store(plan.slot, x, prediction)
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
        write_step_lists(report, self.records)
        if self.blocks is not None:
            report.blocks_computed = self.blocks.blocks_computed
            report.blocks_reused = self.blocks.blocks_reused
            report.block_budget_refusals = self.blocks.budget_refusals
            report.block_mode = ("off" if not self.block_active else
                                 self.block.mode if self.guidance is not None else "static")
            write_block_lists(report, self.records, self.clock.steps)
            self._note_block_fallbacks()
            if self.blocks.budget_refusals:
                report.notes.append(f"memory budget {self.block.memory_budget_mb:g} MB reached: "
                                    f"{self.blocks.budget_refusals} block residuals not cached, those blocks computed")
        self._update_peak()
        self.release()
        return report

    def release(self) -> None:
        self.step_cache.release()
        for part in (self.policy, self.blocks, self.guidance):
            if part is not None:
                part.release()

    # -- internals ----------------------------------------------------------------------------
    def _caching_possible(self, any_cache: bool) -> bool:
        """False (with a note) on a few-step schedule or one that increases somewhere."""
        few_steps = self.clock.steps <= FEW_STEP_LIMIT
        if few_steps and any_cache:
            self.report.notes.append(f"{self.clock.steps}-step schedule (≤ {FEW_STEP_LIMIT}): caching is off for "
                                     f"this run, every step is computed")
        elif not self.clock.decreasing and any_cache:
            self.report.notes.append("the sigma schedule increases somewhere (e.g. FlipSigmas, unsampling): "
                                     "caching is off for this run, every step is computed")
        return not few_steps and self.clock.decreasing

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

    def _note_unreachable_target(self) -> None:
        target = self.policy.target
        if target is None:
            return
        reachable = target.reachable_speedup()
        if reachable < self.lf.speed_target:
            self.report.notes.append(f"speed target {self.lf.speed_target:g}x cannot be reached on this "
                                     f"{self.clock.steps}-step schedule and window (at most {reachable:.2f}x): "
                                     f"every step that may skip is skipped")

    def _close_previous_step(self, step: int) -> None:
        """When step ``step`` starts, count the batch of step ``step - 1`` if it was computed."""
        previous = self.records.get(step - 1)
        if previous is not None and not previous.skip and previous.batch and self.trial_cost is not None:
            self.trial_cost.step_computed(previous.batch)

    def _update_peak(self) -> None:
        block_bytes = self.blocks.peak_bytes if self.blocks is not None else 0
        block_bytes += self.guidance.peak_bytes if self.guidance is not None else 0
        self.report.cache_bytes_peak = max(self.report.cache_bytes_peak, self.step_cache.nbytes + block_bytes)

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

    def _note_block_fallbacks(self) -> None:
        """Trial-guided mode's computed steps that ran no trial (every block computed there)."""
        if self.guidance is not None and self.guidance.fallback_steps:
            steps = sorted(self.guidance.fallback_steps)
            s = "s" * (len(steps) > 1)
            self.report.notes.append(f"BlockCache trial_guided: {len(steps)} computed step{s} ran no LFCache trial "
                                     f"(step{s} {_ranges(steps)}): every block was computed there")


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
