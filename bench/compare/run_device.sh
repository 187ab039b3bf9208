#!/usr/bin/env bash
# The bench/compare measurements on the GPU machine, in one call, with the binaries that
# bench/gpu/prepare_carry.sh --prebuilt put in .carry/prebuilt (see bench/gpu/run.sh):
#   1. grid.py with --device cuda: every solver for m = 1, 10, 100, unlearning for k = 1, 1%,
#      10%, softmax regression and MLP;
#   2. compare.py on digits784: lethe against PyTorch (influence with CG, m = 10; unlearning
#      against lethe's and PyTorch's retraining), both on the machine's CPU cores;
#   3. grid.py on the CPU cores for the softmax regression (direct left out: forming its
#      7,850 × 7,850 matrix takes minutes on a CPU).
# Each result is written to $OUT as it comes, so a run stopped at its limit keeps what it did.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
prebuilt=$repo/.carry/prebuilt
out=${OUT:-/tmp/lethe-compare}
mkdir -p "$out"
threads=$(nproc)
cuda_lib=$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")/../lib64
# lethe gets its carried libraries; python3 (PyTorch) keeps its own.
lethe=$(mktemp)
cat >"$lethe" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$prebuilt/lib:$cuda_lib:/usr/local/cuda/lib64 exec $prebuilt/lethe "\$@"
EOF
chmod +x "$lethe"
"$lethe" --version || { echo "run_device.sh: the prebuilt lethe does not start here" >&2; exit 1; }
export PYTHONUNBUFFERED=1
status=0
echo "== grid.py, cuda ($(date +%T))"
python3 "$repo/bench/compare/grid.py" --lethe "$lethe" --device cuda --timeout 60 \
  --json "$out/grid_cuda.json" | tee "$out/grid_cuda.md" || status=1
echo "== compare.py, digits784, $threads threads ($(date +%T))"
python3 "$repo/bench/compare/compare.py" --lethe "$lethe" --data digits784 --threads "$threads" |
  tee "$out/compare_digits784.txt" || status=1
echo "== grid.py, cpu, softmax ($(date +%T))"
python3 "$repo/bench/compare/grid.py" --lethe "$lethe" --device cpu --threads "$threads" \
  --models softmax --solvers cg,lissa,lanczos --timeout 40 --json "$out/grid_cpu.json" |
  tee "$out/grid_cpu.md" || status=1
echo "== done ($(date +%T)), status $status"
exit $status
