#!/usr/bin/env bash
# Builds lethe and runs every test (C++ GoogleTest suites and the PyTorch parity checks).
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh
# ctest runs one test per core: one thread each, so they do not fight over cores. The core
# count is taken before OMP_NUM_THREADS is set: GNU nproc honours OMP_NUM_THREADS, so after
# the export it would say 1 and the tests would run one at a time.
jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
export OMP_NUM_THREADS=1
ctest --test-dir build --output-on-failure -j"$jobs"
