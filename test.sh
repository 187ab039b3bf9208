#!/usr/bin/env bash
# Builds lethe and runs every test (C++ GoogleTest suites and the PyTorch parity checks).
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh
# ctest runs one test per core: one thread each, so they do not fight over cores.
export OMP_NUM_THREADS=1
ctest --test-dir build --output-on-failure -j"$(nproc)"
