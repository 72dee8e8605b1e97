#!/usr/bin/env bash
# The published benchmark: both benchmark models, two frame sizes, two step counts, one command.
# Each run writes docs/benchmark/runs/<model>-<steps>steps/ (results.json, results.md, plots);
# scripts/benchmark_summary.py then writes docs/benchmark/summary.md side by side.
# About 1 hour on 2 CPU cores. PYTHON= the Python that runs ComfyUI (default .venv-test/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv-test/bin/python}"
COMMON=(--no-open-points --overhead-sizes "" --alphas 0.3,0.5,0.7,1.0,1.5,2.0 --flash-alphas 0.5
        --easy-thresholds 0.02,0.05,0.1,0.2,0.3,0.5 --lazy-thresholds 0.02,0.05,0.1,0.2,0.3,0.5
        --easy-shipped-thresholds "")
run() {  # name, then benchmark.py arguments
  local name="$1"; shift
  "$PY" scripts/benchmark.py "${COMMON[@]}" --out "docs/benchmark/runs/$name" "$@"
}
case "${1:-all}" in
  demo|all)
    run demo-50steps --model demo --scenarios main,large --steps 50 --pairs 8 --repeats 1 --large-pairs 4 --large-repeats 1
    run demo-30steps --model demo --scenarios main,large --steps 30 --pairs 8 --repeats 1 --large-pairs 4 --large-repeats 1
    ;;&
  deep|all)
    run deep-50steps --model deep --scenarios main,large --steps 50 --pairs 4 --repeats 1 --large-pairs 2 --large-repeats 1
    run deep-30steps --model deep --scenarios main --steps 30 --pairs 4 --repeats 1
    ;;
esac
"$PY" scripts/benchmark_summary.py
