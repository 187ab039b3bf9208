#!/usr/bin/env bash
# Builds lethe with the CUDA backend on a GPU machine that has CUDA, CMake, ninja and a C++
# compiler but none of lethe's other dependencies, runs the kernel conformance and engine
# tests there, then times the GPU (bench/gpu/bench_gpu.cc).
#
# Dependencies come from .carry/ (git-ignored), filled on a development machine by
# bench/gpu/prepare_carry.sh, and travel with the working tree. GoogleTest is built here
# from the carried sources.
#
#   bench/gpu/run.sh                 build, test, benchmark
#   bench/gpu/run.sh --build-only    configure and build only (works without a GPU)
#   BENCH_ARGS="--no-cpu" bench/gpu/run.sh     arguments for lethe_bench_gpu
#   LETHE_GPU_BUILD=/path            build folder (default /tmp/lethe-gpu-build)
#
# Everything printed also goes to $OUT/gpu_bench.txt when $OUT is set.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${LETHE_GPU_BUILD:-/tmp/lethe-gpu-build}
carry=$repo/.carry/usr
arch=x86_64-linux-gnu
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/gpu_bench.txt") 2>&1
fi
say() { echo "== run.sh: $* ($(date +%T))"; }
die() { echo "run.sh: $*" >&2; exit 1; }

[ -d "$carry" ] || die "$repo/.carry is missing: run bench/gpu/prepare_carry.sh on a machine \
with lethe's Debian packages installed, and send .carry along with the working tree"
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || die "nvcc not found (looked in PATH and /usr/local/cuda/bin)"
command -v ninja >/dev/null || die "ninja not found"
jobs=$(nproc)

say "GoogleTest from the carried sources"
cmake -S "$carry/src/googletest" -B "$build/googletest" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON -DCMAKE_INSTALL_PREFIX="$build/gtest" \
  -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_POSITION_INDEPENDENT_CODE=ON >/dev/null
cmake --build "$build/googletest" -j "$jobs" >/dev/null
cmake --install "$build/googletest" >/dev/null

say "configure lethe (CUDA on, sm_90 + compute_90 PTX)"
# Each dependency by its own config or path, so nothing depends on the machine's
# multiarch layout or on which -dev packages happen to be installed there.
cmake -S "$repo" -B "$build/lethe" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLETHE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DEigen3_DIR="$carry/share/eigen3/cmake" \
  -Dnlohmann_json_DIR="$carry/share/cmake/nlohmann_json" \
  -DBoost_DIR="$carry/lib/$arch/cmake/Boost-1.74.0" -DBoost_USE_STATIC_LIBS=ON \
  -DZLIB_INCLUDE_DIR="$carry/include" -DZLIB_LIBRARY="$carry/lib/$arch/libz.a" \
  -DOPENSSL_INCLUDE_DIR="$carry/include" -DOPENSSL_CRYPTO_LIBRARY="$carry/lib/$arch/libcrypto.a" \
  -DLBFGSPP_INCLUDE_DIR="$carry/include" \
  -DGTest_DIR="$build/gtest/lib/cmake/GTest"

say "build ($jobs jobs)"
start=$(date +%s)
ninja -C "$build/lethe" -j "$jobs" lethe lethe_kernels_tests lethe_engine_tests lethe_bench_gpu
say "built in $(( $(date +%s) - start )) s"
[ "$build_only" = 1 ] && { say "--build-only: done"; exit 0; }

say "device"
# Fails with lethe's own one-line reason (no driver / no GPU) before anything else runs.
"$build/lethe/bench/gpu/lethe_bench_gpu" --device-only ||
  die "no usable GPU here: the build is fine; tests and timings need a CUDA GPU"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
fi

say "kernel conformance tests (CUDA instances must run, not skip)"
status=0
LETHE_REQUIRE_CUDA=1 "$build/lethe/tests/kernels/lethe_kernels_tests" --gtest_brief=1 || status=1
say "engine tests"
"$build/lethe/tests/engine/lethe_engine_tests" --gtest_brief=1 || status=1

say "benchmark"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
"$build/lethe/bench/gpu/lethe_bench_gpu" ${BENCH_ARGS:-} || status=1
say "done (status $status)"
exit $status
