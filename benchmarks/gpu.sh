#!/usr/bin/env bash
# One short command for a GPU machine: the CUDA tests, then the training-step benchmark on CUDA.
#   bash benchmarks/gpu.sh            (from the repository root; the package need not be installed)
# Results go to $OUT (or the current directory): gpu_bench.json and gpu_tests.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-.}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
# The benchmark runs even if a test fails (a device is lent briefly); the exit code tells.
tests=0
# test_cuda_memories.py: the DNC and SAM on the device against the CPU (all of it is CUDA).
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_cuda_graphs.py \
    tests/test_cuda_memories.py tests/test_metrics.py tests/test_training_loop.py \
    tests/test_dnc.py tests/test_sam.py tests/test_lengths.py tests/test_functional_dnc.py \
    -k "cuda or graph or device" 2>&1 | tee "$OUT/gpu_tests.log" || tests=$?
"$PY" -m ntm bench --device cuda --batch-sizes 1,32,128,1024 --threads 1 --paths graph,auto,autograd \
    --json "$OUT/gpu_bench.json"
exit "$tests"
