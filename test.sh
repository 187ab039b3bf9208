#!/usr/bin/env bash
# Builds lethe and runs every test (C++ GoogleTest suites and the PyTorch parity checks).
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh
# Tests run in parallel: keep OpenMP threads from spin-waiting on cores another test needs.
export OMP_WAIT_POLICY=PASSIVE
ctest --test-dir build --output-on-failure -j"$(nproc)"
