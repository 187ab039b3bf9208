#!/usr/bin/env bash
# Builds lethe and runs every test (C++ GoogleTest suites and the PyTorch parity checks).
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
