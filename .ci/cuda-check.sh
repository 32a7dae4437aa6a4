#!/usr/bin/env bash
# Checks that the CUDA build compiles, without a GPU: nvcc and the CUDA headers
# come from PyPI (NVIDIA's own wheels), candle's kernels are compiled to PTX,
# and every crate is type-checked with `--features cudnn` (which implies
# `cuda`). Linking needs libcuda and cuBLAS, which only a GPU machine has, so
# this is `cargo check`, not `cargo build`.
#   .ci/cuda-check.sh            # 5.5-7 minutes on 2 cores from scratch
set -euo pipefail
cd "$(dirname "$0")/.."
tk="$PWD/target/cuda-toolkit"
if [ ! -x "$tk/nvidia/cu13/bin/nvcc" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tk" \
    nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-crt==13.5.37 \
    nvidia-nvvm==13.5.37 nvidia-cuda-cccl==13.3.5.0.6
fi
export CUDA_ROOT="$tk/nvidia/cu13"
export CUDA_PATH="$CUDA_ROOT" CUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
# cudarc 0.19 knows CUDA up to 13.4; the 13.5 compiler emits PTX it can load.
export CUDARC_CUDA_VERSION=13040
# Hopper (H100/H200); set your own GPU's compute capability when building for it.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# This build is only checked, never run: candle's kernels are compiled with
# device optimisation turned down (NVVM -O1, ptxas -O0), which makes nvcc
# 2-3 times faster on them (its largest kernel file: 100 s -> 42 s; the whole
# check: 15 -> 5.5-7 minutes on 2 cores, in two fresh-clone CI runs).
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -Xcicc -O1 -Xptxas -O0"
nvcc --version | tail -1
cargo check --locked -p bigbatch-bench --features cudnn --lib --bins
