"""The PreciseCache benchmark, as a package; its command is ``scripts/benchmark.py``.

It measures the speed and fidelity of every cache against the uncached run, through the real ComfyUI
sampling path, in one process: ComfyUI is imported in-process with the test harness
(``tests/host/harness.py``), the pack is loaded the way ComfyUI loads a custom node, and every method
samples the same ``(seed, condition)`` pairs of the demo vocabulary with ``nodes.KSampler``.

The modules, in the order the data flows through them (each imports only those before it):

* ``common``: paths, the ``--model`` shortcuts, number formatting and the mean / median of the
  reports (standard library only, so ``benchmark.py --help`` runs without torch).
* ``scenarios``: what is sampled: ``ScenarioConfig`` (latent size, steps, CFG, pairs, the sweeps),
  ``scenario_configs`` (from the command line), ``pairs_for``.
* ``methods``: what is compared: ``Method``, one builder per cache, ``build_methods``.
* ``runner``: ``Bench`` (ComfyUI, the pack, the model, the measurement hooks, the EasyCache
  copy fix), ``RunRecord`` and ``run_scenario`` (every method on every pair, interleaved).
* ``probes``: the trial-vs-full agreement and the trial overhead, measured inside the sampling path.
* ``metrics``: PSNR / SSIM of the decoded frames, the per-method summary, Pareto fronts and the
  analysis (best speedup per fidelity level, the open points).
* ``report``: ``results.json``, ``results.md``, the plots and the console summary.
"""
