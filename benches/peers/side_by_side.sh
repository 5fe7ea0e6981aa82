#!/usr/bin/env bash
# crema beside PyTorch and Caffe (when a `caffe` binary is on PATH or given as CAFFE) on the conv timing nets,
# in one run on one machine: forward + backward per iteration, ms, and crema's speed-up. The figures of shared machines move
# from run to run; what this compares is measured in the same minute.
#
#   benches/peers/side_by_side.sh                       (from anywhere; builds crema in release)
#   PYTHON=/path/to/venv/bin/python CAFFE=/opt/caffe/build/tools/caffe ROUNDS=3 benches/peers/side_by_side.sh
#
# PYTHON must have torch (pip install torch numpy); without it the PyTorch column says why it is empty. Caffe
# runs on OpenBLAS with 2 threads (a CPU_ONLY build of BVLC master; USE_OPENCV/LEVELDB/LMDB may be 0).
# Each round runs every tool on every net once (`crema time` and `caffe time`: 50 iterations of LeNet, 10 of
# CaffeNet, 20 of the FCN; torch_nets.py: the median of as many), and the table gives the median over rounds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rounds=${ROUNDS:-3}
python=${PYTHON:-python3}
nets=(lenet:lenet_infogain:50 caffenet:caffenet_b16:10 fcn:fcn_b4:20)
if [ -n "${CREMA:-}" ]; then
    crema=$(realpath "$CREMA")
else
    cargo build --release -q -p crema-cli
    crema=$PWD/target/release/crema
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

have_torch=yes
if ! "$python" -c "import torch, numpy" 2>/dev/null; then
    have_torch="no: $python cannot import torch and numpy"
fi
caffe=${CAFFE:-$(command -v caffe || true)}
have_caffe=yes
[ -n "$caffe" ] && [ -x "$caffe" ] || have_caffe="no: no caffe binary on PATH and no CAFFE given"

for round in $(seq "$rounds"); do
    for entry in "${nets[@]}"; do
        IFS=: read -r name proto iterations <<<"$entry"
        # The prototxts read their H from the working directory, as Caffe resolves sources.
        (cd benches/nets && "$crema" time --model "$proto.prototxt" --iterations "$iterations") 2>&1 |
            awk -v n="$name" '/Average Forward-Backward/ {print n, $3}' >>"$out/crema"
        if [ "$have_caffe" = yes ]; then
            (cd benches/nets && OPENBLAS_NUM_THREADS=2 "$caffe" time -model "$proto.prototxt" \
                -iterations "$iterations") 2>&1 |
                awk -v n="$name" '/Average Forward-Backward/ {print n, $(NF-1)}' >>"$out/caffe"
        fi
        if [ "$have_torch" = yes ]; then
            "$python" benches/peers/torch_nets.py --nets "$name" --repeats "$iterations" |
                awk '!/^#/ {print $1, $3}' >>"$out/torch"
        fi
    done
    echo "round $round of $rounds done" >&2
done

median() { # NET FILE
    [ -f "$2" ] || { echo "-"; return; }
    awk -v n="$1" '$1 == n {print $2}' "$2" | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

echo
echo "Forward + backward per iteration, ms (median of $rounds rounds; PyTorch: $have_torch; Caffe: $have_caffe)"
echo
echo "| net | Caffe | PyTorch | crema | crema vs PyTorch | crema vs Caffe |"
echo "|---|---:|---:|---:|---:|---:|"
for entry in "${nets[@]}"; do
    name=${entry%%:*}
    c=$(median "$name" "$out/crema")
    t=$(median "$name" "$out/torch")
    f=$(median "$name" "$out/caffe")
    ratio() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx\n", a / b}'; fi; }
    echo "| $name | $f | $t | $c | $(ratio "$t" "$c") | $(ratio "$f" "$c") |"
done
