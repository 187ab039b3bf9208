#!/usr/bin/env bash
# lethe's main job on the bundled example (scikit-learn's handwritten digits, 1,437
# training images): train a model, ask which training examples drove a prediction,
# erase a forget set with a Newton patch, and prove it against retraining.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh >/dev/null
L=build/tools/lethe
OUT=build/demo
mkdir -p "$OUT"
ex=examples/digits

echo "== 1. train: softmax regression on $ex/train.npz, to ‖∇L‖ ≤ 1e-9 (what a user would export from PyTorch)"
$L train --spec $ex/softmax.json --data $ex/train.npz --out $OUT/model.safetensors --quiet
$L eval --model $OUT/model.safetensors --data $ex/test.npz
echo
echo "== 2. influence: which training examples made the model say this about test image 100015?"
$L influence --model $OUT/model.safetensors --train $ex/train.npz --test $ex/test.npz \
  --test-ids 100015 --out $OUT/influence.csv --quiet
echo
echo "== 3. self-influence: the training examples the model had to bend most to fit"
$L self-influence --model $OUT/model.safetensors --train $ex/train.npz --out $OUT/self_influence.csv \
  --top-k 5 --quiet
echo
echo "== 4. unlearn the $(grep -vc '^#' $ex/forget.txt) ids in $ex/forget.txt (a deletion request) with a Newton patch,"
echo "      then verify against retraining without them (lethe train --forget --init)"
$L unlearn --model $OUT/model.safetensors --train $ex/train.npz --test $ex/test.npz \
  --forget $ex/forget.txt --out $OUT/patched.safetensors --report $OUT/erasure.json --verify --quiet
echo
echo "The patched model is $OUT/patched.safetensors; the erasure record (hashes of every file,"
echo "solver summaries, the comparison above) is $OUT/erasure.json."
