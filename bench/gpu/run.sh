#!/usr/bin/env bash
# Everything lethe checks and times on a GPU machine, in one call: the CUDA conformance
# tests (every backend op, the engine's derivatives, solvers, influence scores and Newton
# patches against the CPU in f64), the same tests under compute-sanitizer, the CLI end to
# end with --device cuda against --device cpu on the bundled digits example, and the GPU
# benchmark (bench/gpu/bench_gpu.cc).
#
# The GPU machine has CUDA, CMake, ninja and a compiler but none of lethe's Debian
# packages. Two ways to bring lethe there, both in .carry/ (git-ignored, sent with the
# working tree):
#   .carry/prebuilt/  binaries built on the development machine by
#                     bench/gpu/prepare_carry.sh --prebuilt (CUDA on, sm_90 + PTX,
#                     -march=x86-64-v3); used when they load here;
#   .carry/usr/       the build dependencies (prepare_carry.sh), to build here otherwise.
#
#   bench/gpu/run.sh                 check and benchmark
#   bench/gpu/run.sh --build-only    configure and build from .carry/usr only (no GPU needed)
#   BENCH_ARGS="--no-cpu" bench/gpu/run.sh     arguments for lethe_bench_gpu
#   LETHE_GPU_BUILD=/path            build folder (default /tmp/lethe-gpu-build)
#
# Everything printed also goes to $OUT/gpu_bench.txt when $OUT is set. Exit status: 0 when
# every check passed.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${LETHE_GPU_BUILD:-/tmp/lethe-gpu-build}
carry=$repo/.carry/usr
prebuilt=$repo/.carry/prebuilt
arch=x86_64-linux-gnu
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/gpu_bench.txt") 2>&1
fi
say() { echo "== run.sh: $* ($(date +%T))"; }
die() { echo "run.sh: $*" >&2; exit 1; }
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
jobs=$(nproc)

# Builds lethe here from .carry/usr; sets the binary paths.
build_here() {
  [ -d "$carry" ] || die "$repo/.carry/usr is missing: run bench/gpu/prepare_carry.sh on a \
machine with lethe's Debian packages installed, and send .carry along with the working tree"
  command -v nvcc >/dev/null || die "nvcc not found (looked in PATH and /usr/local/cuda/bin)"
  command -v ninja >/dev/null || die "ninja not found"
  set -e
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
    -DLETHE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" \
    -DEigen3_DIR="$carry/share/eigen3/cmake" \
    -Dnlohmann_json_DIR="$carry/share/cmake/nlohmann_json" \
    -DBoost_DIR="$carry/lib/$arch/cmake/Boost-1.74.0" -DBoost_USE_STATIC_LIBS=ON \
    -DZLIB_INCLUDE_DIR="$carry/include" -DZLIB_LIBRARY="$carry/lib/$arch/libz.a" \
    -DOPENSSL_INCLUDE_DIR="$carry/include" -DOPENSSL_CRYPTO_LIBRARY="$carry/lib/$arch/libcrypto.a" \
    -DLBFGSPP_INCLUDE_DIR="$carry/include" \
    -DGTest_DIR="$build/gtest/lib/cmake/GTest"
  say "build ($jobs jobs)"
  local start; start=$(date +%s)
  ninja -C "$build/lethe" -j "$jobs" lethe lethe_kernels_tests lethe_engine_tests lethe_bench_gpu
  say "built in $(( $(date +%s) - start )) s"
  set +e
  LETHE=$build/lethe/tools/lethe
  KERNEL_TESTS=$build/lethe/tests/kernels/lethe_kernels_tests
  BENCH=$build/lethe/bench/gpu/lethe_bench_gpu
}

# Prebuilt binaries, when every shared library they need is found here (their Debian
# libraries travel in .carry/prebuilt/lib; CUDA's are the machine's).
# Only lethe's own processes get that path (python3 and the CUDA tools keep theirs).
lib_path=$prebuilt/lib:$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")/../lib64:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
with_libs() { LD_LIBRARY_PATH=$lib_path "$@"; }
loads() { [ -x "$1" ] && ! with_libs ldd "$1" 2>&1 | grep -q "not found"; }
if [ "$build_only" = 0 ] && loads "$prebuilt/lethe" && loads "$prebuilt/lethe_kernels_tests" &&
   loads "$prebuilt/lethe_bench_gpu"; then
  say "using the prebuilt binaries in .carry/prebuilt ($(cat "$prebuilt/BUILD_INFO" 2>/dev/null))"
  LETHE=$prebuilt/lethe
  KERNEL_TESTS=$prebuilt/lethe_kernels_tests
  BENCH=$prebuilt/lethe_bench_gpu
else
  [ -d "$prebuilt" ] && [ "$build_only" = 0 ] && { say "prebuilt binaries do not load here:"; \
    with_libs ldd "$prebuilt/lethe" "$prebuilt/lethe_kernels_tests" 2>&1 | grep "not found"; }
  build_here
  [ "$build_only" = 1 ] && { say "--build-only: done"; exit 0; }
fi

say "device"
# Fails with lethe's own one-line reason (no driver / no GPU) before anything else runs.
with_libs "$BENCH" --device-only || die "no usable GPU here: tests and timings need a CUDA GPU"
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
failed=()

say "CUDA conformance and engine-agreement tests (they must run, not skip)"
LETHE_REQUIRE_CUDA=1 with_libs "$KERNEL_TESTS" --gtest_brief=1 || failed+=("kernel tests")

if command -v compute-sanitizer >/dev/null; then
  say "the same tests on the GPU under compute-sanitizer memcheck"
  LETHE_REQUIRE_CUDA=1 with_libs timeout 300 compute-sanitizer --tool memcheck --error-exitcode 86 \
    --print-limit 20 "$KERNEL_TESTS" --gtest_brief=1 --gtest_filter='*cuda*' ||
    failed+=("compute-sanitizer")
else
  say "compute-sanitizer not found: skipped"
fi

say "the CLI end to end: --device cuda against --device cpu on examples/digits"
cli=$(mktemp -d)
ex=$repo/examples/digits
cli_check() {  # name, command...
  local name=$1; shift
  if ! with_libs "$@" >"$cli/$name.log" 2>&1; then
    echo "FAILED: $*"; tail -5 "$cli/$name.log"; failed+=("cli $name")
  fi
}
cli_check train "$LETHE" train --spec "$ex/softmax.json" --data "$ex/train.npz" \
  --out "$cli/model.safetensors" --quiet
cli_check train_mlp "$LETHE" train --spec "$ex/mlp.json" --data "$ex/train.npz" \
  --out "$cli/mlp.safetensors" --quiet
for dev in cpu cuda; do
  for dt in f64 f32; do
    common=(--device "$dev" --dtype "$dt" --quiet)
    cli_check "influence_${dev}_$dt" "$LETHE" influence --model "$cli/model.safetensors" \
      --train "$ex/train.npz" --test "$ex/test.npz" --out "$cli/influence_${dev}_$dt.npy" "${common[@]}"
    cli_check "self_${dev}_$dt" "$LETHE" self-influence --model "$cli/model.safetensors" \
      --train "$ex/train.npz" --out "$cli/self_${dev}_$dt.npy" "${common[@]}"
    cli_check "unlearn_${dev}_$dt" "$LETHE" unlearn --model "$cli/model.safetensors" \
      --train "$ex/train.npz" --forget "$ex/forget.txt" --steps 2 \
      --out "$cli/patched_${dev}_$dt.safetensors" "${common[@]}"
    cli_check "unlearn_mlp_${dev}_$dt" "$LETHE" unlearn --model "$cli/mlp.safetensors" \
      --train "$ex/train.npz" --forget "$ex/forget.txt" --solver cg --curvature gauss-newton \
      --damping 1e-3 --out "$cli/patched_mlp_${dev}_$dt.safetensors" "${common[@]}"
  done
done
cli_check unlearn_verify_cuda "$LETHE" unlearn --model "$cli/model.safetensors" \
  --train "$ex/train.npz" --test "$ex/test.npz" --forget "$ex/forget.txt" --verify \
  --device cuda --out "$cli/patched_verify.safetensors" --report "$cli/erasure_cuda.json"
cat "$cli/unlearn_verify_cuda.log"
# Scores and patches: GPU against CPU, each precision (max |difference| / max |cpu|).
python3 - "$cli" <<'PY' || failed+=("cli agreement")
import json, struct, sys, numpy as np
def load_file(path):  # safetensors: u64 header length, JSON header, little-endian data
    raw = open(path, "rb").read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    types = {"F64": "<f8", "F32": "<f4"}
    return {k: np.frombuffer(raw[8 + length + v["data_offsets"][0]:8 + length + v["data_offsets"][1]],
                             dtype=types[v["dtype"]]) for k, v in header.items() if k != "__metadata__"}
d = sys.argv[1]
# Direct solves agree to rounding. The MLP patch is a CG solve stopped at a relative
# residual of 1e-4 (inexact Newton): rounding differences grow along CG's iterates, so
# two equally valid answers may differ far more than rounding (2.6e-7 seen on an H200).
bound = {"f64": 1e-9, "f32": 1e-2}
bound_cg = {"f64": 1e-5, "f32": 1e-2}
bad = 0
def compare(kind, a, b, dt):
    global bad
    err = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
    ok = err <= (bound_cg if "mlp" in kind else bound)[dt]
    bad += not ok
    print(f"  {kind:24s} {dt}: cuda vs cpu max rel. difference {err:.2e} {'ok' if ok else 'TOO LARGE'}")
for dt in ("f64", "f32"):
    for kind in ("influence", "self"):
        compare(kind, np.load(f"{d}/{kind}_cuda_{dt}.npy"), np.load(f"{d}/{kind}_cpu_{dt}.npy"), dt)
    for kind in ("patched", "patched_mlp"):
        a = load_file(f"{d}/{kind}_cuda_{dt}.safetensors"); b = load_file(f"{d}/{kind}_cpu_{dt}.safetensors")
        va = np.concatenate([a[k].astype(np.float64).ravel() for k in sorted(a)])
        vb = np.concatenate([b[k].astype(np.float64).ravel() for k in sorted(b)])
        compare(kind + " (θ)", va, vb, dt)
sys.exit(1 if bad else 0)
PY

say "benchmark"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
with_libs "$BENCH" ${BENCH_ARGS:-} || failed+=("benchmark")

if [ ${#failed[@]} -eq 0 ]; then
  say "all checks passed"
  exit 0
fi
say "FAILED: ${failed[*]}"
exit 1
