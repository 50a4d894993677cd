#!/usr/bin/env bash
# One short command for a GPU machine: the CUDA tests, then the training-step benchmark on CUDA.
#   bash benchmarks/gpu.sh            (from the repository root, with the package installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
"$PY" -m pytest -q tests/test_cuda.py tests/test_metrics.py tests/test_training_loop.py -k cuda
"$PY" -m ntm bench --device cuda --batch-sizes 1,32,128,1024 --threads 1 --paths fused,plain \
    --json "${OUT:-.}/gpu_bench.json"
