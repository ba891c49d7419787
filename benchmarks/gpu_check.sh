#!/usr/bin/env bash
# The GPU check: one script, under 8 minutes on one GPU, whose output goes in docs/benchmarks.md.
#
#   1. the CUDA-marked tests (tests/test_cuda.py: each precision trains, GPU answers match the CPU's);
#   2. the training step and inference of ours, the seed's plain U-Net and MONAI's BasicUNet on
#      the GPU, then the synthetic demo data trained until both shape classes reach IoU 0.90,
#      with its wall time (benchmarks/gpu_timing.py; `--device cpu --quick` smoke-tests it).
#
# It needs a PyTorch build with CUDA in the environment it runs with: PYTHON=path/to/python, or
# .venv built with `make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"`.
# Where no GPU is visible it says so and exits 0: there is nothing to check on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device visible to $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)')); nothing to do"
    exit 0
fi
"$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'
start=$SECONDS
"$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
"$PYTHON" benchmarks/gpu_timing.py --device cuda
echo "gpu_check: done in $((SECONDS - start)) s"
