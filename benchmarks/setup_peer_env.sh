#!/usr/bin/env bash
# A separate environment for the peer comparison: our packages plus lucidrains'
# med-seg-diff-pytorch (never a dependency of ours). torchvision and wandb, which it lists
# but its model module does not import, are left out: PyPI's torchvision does not load
# beside the CPU torch wheel here.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-bench
.venv-bench/bin/pip install -q torch==2.13.0
.venv-bench/bin/pip install -q -e ./training  # editable: measures the code as it is now
.venv-bench/bin/pip install -q --no-deps med-seg-diff-pytorch==0.3.3
.venv-bench/bin/pip install -q beartype einops tqdm
echo "ready: .venv-bench/bin/python benchmarks/bench_vs_lucidrains.py"
