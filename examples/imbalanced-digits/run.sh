#!/usr/bin/env bash
# The imbalanced-digits example: the same small net trained twice on a long-tailed set of 8x8 digits, with
# plain SoftmaxWithLoss and with InfogainLoss weighted by inverse class frequency, then both scored on a
# balanced test set, per-class recall and balanced accuracy side by side.
#
#   examples/imbalanced-digits/run.sh                                (from the repository root or anywhere)
#   CREMA=target/release/crema examples/imbalanced-digits/run.sh     (with a crema already built)
#
# Without CREMA, crema is built (release) by cargo on the first run. Python is not needed: the data are in
# the repository (make_data.py made them).
set -euo pipefail

# The solvers' paths (snapshot_prefix) are relative to the repository root, as in Caffe's examples.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
read -r -a crema <<<"${CREMA:-cargo run --release -q -p crema-cli --}"
ex=examples/imbalanced-digits
out=$ex/out
iters=1000 # max_iter of both solvers
mkdir -p "$out"

echo "== H for InfogainLoss from the training labels: inverse class frequency, scaled so that the mean weight"
echo "   over the training images is 1"
"${crema[@]}" infogain --source "$ex/train_h5.txt" --method inverse --normalize mean-one -o "$ex/H.binaryproto"

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
echo "== Both snapshots on the balanced test set, 50 images of each digit (loss: net_softmax's cross-entropy)"
"${crema[@]}" test --model "$ex/net_softmax.prototxt" --iterations 5 \
    --weights "$out/softmax_iter_$iters.caffemodel" --label softmax \
    --weights "$out/infogain_iter_$iters.caffemodel" --label infogain \
    --json "$out/compare.json"

echo
echo "Training plots (loss and test outputs against the iteration): $out/softmax_training.svg and" \
    "$out/infogain_training.svg; training logs: $out/softmax_train.log and $out/infogain_train.log"
