#!/usr/bin/env python3
"""Makes the example's data: a long-tailed training set and a balanced test set of 8x8 handwritten digits.

The images are the UCI "Optical Recognition of Handwritten Digits" test set that scikit-learn ships as
sklearn.datasets.load_digits (1797 images, 10 classes, pixels 0..16): E. Alpaydin and C. Kaynak, UCI Machine
Learning Repository, https://doi.org/10.24432/C50P49, licence CC BY 4.0.

    pip install scikit-learn h5py
    python3 make_data.py [OUTDIR]          # OUTDIR defaults to this script's folder

writes
    train.h5, test.h5         datasets "data" (float32 N x 1 x 8 x 8, pixels scaled to [0, 1]) and
                              "label" (float32 N, the digit), as Caffe's HDF5Data layer reads them
    train_h5.txt, test_h5.txt the HDF5Data source lists (one file name each, relative to the list's folder)

The split is fixed by SEED: 50 images of every digit are held out as the balanced test set; of the rest, the
training set keeps 120, 84, 59, 42, 29, 21, 14, 10, 7 and 5 images (a geometric decay, 24:1 from the most to
the least frequent class), and which digit gets which count is a random permutation of the ten digits drawn with
the same seed (printed, and listed in README.md). Everything else (906 images) is left out. Running the script
again writes byte-identical files. crema itself does not need Python: the files it writes are in the repository.
"""
import os
import sys

import h5py
import numpy as np
from sklearn.datasets import load_digits

SEED = 2024
CLASSES = 10
TEST_PER_CLASS = 50
MOST, LEAST = 120, 5


def write_h5(path, images, labels):
    with h5py.File(path, "w", track_order=False) as f:
        # Contiguous, uncompressed datasets with no time stamps: small files that are the same on every run.
        f.create_dataset("data", data=images, track_times=False)
        f.create_dataset("label", data=labels, track_times=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else here
    os.makedirs(out, exist_ok=True)

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # 0..16 -> [0, 1]
    target = digits.target.astype(np.int64)

    rng = np.random.RandomState(SEED)
    ratio = (LEAST / MOST) ** (1.0 / (CLASSES - 1))
    decay = [int(round(MOST * ratio**k)) for k in range(CLASSES)]  # 120, 84, ..., 5
    order = rng.permutation(CLASSES)  # order[k] is the digit that gets the k-th count
    counts = np.zeros(CLASSES, dtype=np.int64)
    counts[order] = decay

    train_idx, test_idx = [], []
    for digit in range(CLASSES):
        idx = rng.permutation(np.flatnonzero(target == digit))
        test_idx.append(idx[:TEST_PER_CLASS])
        train_idx.append(idx[TEST_PER_CLASS:TEST_PER_CLASS + counts[digit]])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))

    for name, idx in [("train", train_idx), ("test", test_idx)]:
        write_h5(os.path.join(out, name + ".h5"),
                 images[idx].reshape(-1, 1, 8, 8), target[idx].astype(np.float32))
        with open(os.path.join(out, name + "_h5.txt"), "w") as f:
            f.write(name + ".h5\n")

    print("training images per digit (0..9):", " ".join(str(c) for c in counts),
          "= %d;" % len(train_idx), "test: %d per digit = %d" % (TEST_PER_CLASS, len(test_idx)))
    print("digits from the most to the least frequent:", " ".join(str(d) for d in order))


if __name__ == "__main__":
    main()
