"""PreciseCache core: pure torch, no ComfyUI import.

- :mod:`lowpass`        low-frequency difference (LFD) metric
- :mod:`trial`          the downsampled trial latent
- :mod:`trial_inputs`   every other input of the trial call, by its family's rules
- :mod:`families`       per-family adapters: block patch points, in-place blocks, trial rules
- :mod:`step_decision`  LFCache's accumulate-and-threshold decision
- :mod:`block_cache`    BlockCache's residual buffers and pivotal-block selection
- :mod:`schedule`       model call → sampler step mapping
- :mod:`config`         configs, presets, input validation
- :mod:`run`            the per-run state object tying them together
- :mod:`report`         the run report
"""
from .block_cache import BlockResidualCache, select_pivotal
from .config import (FLASH_BLOCKCACHE, LFCACHE_PRESETS, SAMPLER_PRESETS, BlockCacheConfig, LFCacheConfig)
from .lowpass import low_frequency_distance, low_pass, lowpass_mask
from .report import RunReport
from .run import CallPlan, PreciseCacheRun
from .schedule import StepClock
from .step_decision import StepDecider
from .trial import check_factors_fit, pool

__all__ = [
    "BlockCacheConfig", "BlockResidualCache", "CallPlan", "FLASH_BLOCKCACHE", "LFCACHE_PRESETS", "LFCacheConfig",
    "PreciseCacheRun", "RunReport", "SAMPLER_PRESETS", "StepClock", "StepDecider", "check_factors_fit",
    "low_frequency_distance", "low_pass", "lowpass_mask", "pool", "select_pivotal",
]
