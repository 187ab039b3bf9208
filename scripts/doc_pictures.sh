#!/usr/bin/env bash
# Regenerates the pictures under docs/img/ from examples/ with the built lethe and the
# Python module (docs/influence.md, docs/unlearning.md, docs/python.md show them):
#   scripts/doc_pictures.sh [build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
lethe="$build/tools/lethe"
d=examples/digits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p docs/img
"$lethe" influence --model $d/model.safetensors --train $d/train.npz --test $d/test.npz \
  --test-ids 100000,100001,100002 --out "$tmp/scores.npy" --png docs/img/influence.png --quiet
"$lethe" self-influence --model $d/model.safetensors --train $d/train.npz --out "$tmp/self.npy" \
  --png docs/img/self_influence.png --quiet
"$lethe" unlearn --model $d/model.safetensors --train $d/train.npz --forget $d/forget.txt \
  --out "$tmp/patched.safetensors" --verify --test $d/test.npz --report "$tmp/record.json" \
  --png docs/img/unlearn.png --quiet
"$lethe" validate-influence --model $d/model.safetensors --train $d/train.npz --test $d/test.npz \
  --test-ids 100015 --remove 20 --subsets 0 --out "$tmp/validation.json" \
  --plot docs/img/validation.png --quiet >/dev/null
# lethe.plot's matplotlib versions of two of them.
PYTHONPATH="$build/python" /usr/bin/python3 - "$tmp" <<'PY'
import sys, numpy as np, lethe
tmp = sys.argv[1]
z = np.load("examples/digits/train.npz")
train = (z["X"], z["y"], z["ids"])
r = lethe.influence(lethe.Model("examples/digits/model.safetensors"), train,
                    "examples/digits/test.npz", test_ids=[100000, 100001])
lethe.plot.influence(r, train, "examples/digits/test.npz", top=3, path="docs/img/plot_influence.png")
lethe.plot.unlearning(f"{tmp}/record.json", path="docs/img/plot_unlearning.png")
PY
ls -l docs/img
