#!/usr/bin/env bash
# The imbalanced-segmentation example: the same small FCN trained twice on 32x32 scenes of handwritten digits
# in which some digits are common and others rare, every ink pixel labelled with its digit: with plain
# SoftmaxWithLoss and with InfogainLoss (axis 1) weighted by median frequency over the pixels, then both scored
# on test scenes holding every digit equally often, per-class IoU and mean IoU side by side, and the masks of a
# few test scenes drawn by crema predict.
#
#   examples/imbalanced-segmentation/run.sh                                (from the repository root or anywhere)
#   CREMA=target/release/crema examples/imbalanced-segmentation/run.sh     (with a crema already built)
#
# Without CREMA, crema is built (release) by cargo on the first run. Python is not needed: the data are in
# the repository (make_data.py made them).
set -euo pipefail

# The solvers' paths (snapshot_prefix) are relative to the repository root, as in Caffe's examples.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
read -r -a crema <<<"${CREMA:-cargo run --release -q -p crema-cli --}"
ex=examples/imbalanced-segmentation
out=$ex/out
iters=3000 # max_iter of both solvers
mkdir -p "$out"

echo "== H for InfogainLoss from the training label maps, every labelled pixel counted (the void outline, 255, left"
echo "   out): median frequency, scaled so that the mean weight over the training pixels is 1"
"${crema[@]}" infogain --source "$ex/train_h5.txt" --method median --normalize mean-one --ignore-label 255 -o "$ex/H.binaryproto"

for loss in softmax infogain; do
    log=$out/${loss}_train.log
    echo
    echo "== Training with $loss: $ex/solver_$loss.prototxt (log: $log)"
    if ! "${crema[@]}" train --solver "$ex/solver_$loss.prototxt" 2>"$log"; then
        cat "$log" >&2
        exit 1
    fi
    grep -E '^Iteration [0-9]+, loss = |^    Test net output #0: ' "$log" | tail -n 2
done

echo
echo "== Both snapshots on the 125 test scenes, 50 of each digit (loss: net_softmax's cross-entropy)"
"${crema[@]}" test --model "$ex/net_softmax.prototxt" --iterations 5 \
    --weights "$out/softmax_iter_$iters.caffemodel" --label softmax \
    --weights "$out/infogain_iter_$iters.caffemodel" --label infogain \
    --json "$out/compare.json"

for loss in softmax infogain; do
    echo
    echo "== Masks of the first test scenes by the $loss net (Pascal VOC's colours: $out/masks_$loss/legend.txt)"
    # The PNGs hold bytes 0..255; the nets were trained on them divided by 256.
    "${crema[@]}" predict --model "$ex/deploy.prototxt" --weights "$out/${loss}_iter_$iters.caffemodel" \
        --scale 0.00390625 --labels "$ex/labels.txt" --out "$out/masks_$loss" \
        "$ex"/images/test_{0,1,2,3}.png
done

echo
echo "Training plots (loss and test outputs against the iteration): $out/softmax_training.svg and" \
    "$out/infogain_training.svg; training logs: $out/softmax_train.log and $out/infogain_train.log;" \
    "the true label maps: $ex/images/test_*_truth.png"
