#!/usr/bin/env bash
# The README's GPU table in one run (issue 19, item 8): < 8 min on one H100/H200; `--quick` checks it on a CPU.
#   bash benchmarks/gpu_suite.sh [--quick] [--json PATH] [--only dream,ldm3d,raster] [--device cuda:N]
# Prints a Markdown table for the README and writes JSON (default benchmarks/out/gpu_suite.json).
# Python: $PYTHON if set, else .venv/bin/python when the repository has one, else python3. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# a hard stop at 8 minutes, above the suite's own 420 s budget, so a hung kernel cannot hold a lent GPU
exec timeout --signal=INT --kill-after=30 "${GPU_SUITE_TIMEOUT:-480}" "$PYTHON" benchmarks/gpu_suite.py "$@"
