#!/usr/bin/env bash
# Builds the parsers, their tests and the fuzz-corpus replays with AddressSanitizer and
# UndefinedBehaviorSanitizer (float-cast-overflow included) in ./build-asan and runs them
# (docs/security.md). With --cli it also builds the lethe CLI that way and runs the
# hostile-input CLI tests against it (much longer: the engine and kernels too).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-asan
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLETHE_SANITIZE=address,undefined \
        -DLETHE_CUDA=OFF -DLETHE_BUILD_BENCH=OFF -DLETHE_NATIVE=OFF \
        ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} \
        >/dev/null
fi
FUZZERS="safetensors npz zip npy csv spec ids ledger"
targets="lethe_io_tests"
for f in $FUZZERS; do targets="$targets fuzz_replay_$f"; done
[ "${1:-}" = "--cli" ] && targets="$targets lethe"
cmake --build "$BUILD" -j"$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" --target $targets
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$BUILD/tests/io/lethe_io_tests" --gtest_brief=1
for f in $FUZZERS; do
  "$BUILD/tests/fuzz/fuzz_replay_$f" "tests/fuzz/corpus/$f"
done
if [ "${1:-}" = "--cli" ]; then
  # The hostile-input CLI tests: the parsers' (test_cli_errors) and every layer key's
  # (test_layer_errors), each one line, exit 1, nothing written, now also no sanitizer report.
  for t in test_cli_errors test_layer_errors; do
    LETHE_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0 /usr/bin/python3 "tests/python/$t.py" \
      --lethe "$BUILD/tools/lethe"
  done
fi
echo "sanitizer run clean"
