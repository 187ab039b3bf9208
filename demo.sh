#!/usr/bin/env bash
# lethe's main job on the bundled example (scikit-learn's handwritten digits):
# install what is missing, build, train the model, and show what lethe measures.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh >/dev/null
L=build/tools/lethe
OUT=build/demo
mkdir -p "$OUT"
ex=examples/digits

echo "== 1. train a softmax regression on $ex/train.npz (the model a user would export from PyTorch)"
$L train --spec $ex/softmax.json --data $ex/train.npz --out $OUT/model.safetensors --quiet
$L inspect $OUT/model.safetensors
echo
echo "== 2. how it does on held-out data"
$L eval --model $OUT/model.safetensors --data $ex/test.npz
