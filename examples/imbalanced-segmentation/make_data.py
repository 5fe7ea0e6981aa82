#!/usr/bin/env python3
"""Makes the example's data: 32x32 grey scenes of handwritten digits on a textured canvas, every ink pixel
labelled with its digit's class, some digits common and others rare in the training scenes.

The digits are the UCI "Optical Recognition of Handwritten Digits" test set that scikit-learn ships as
sklearn.datasets.load_digits (1797 images of 8x8 pixels, 10 classes, pixels 0..16): E. Alpaydin and C. Kaynak,
UCI Machine Learning Repository, https://doi.org/10.24432/C50P49, licence CC BY 4.0.

    pip install numpy scikit-learn h5py pillow
    python3 make_data.py [OUTDIR]          # OUTDIR defaults to this script's folder

writes
    train.h5, test.h5         datasets "data" (float32 N x 1 x 32 x 32, grey levels in [0, 1): a byte / 256) and
                              "label" (float32 N x 1 x 32 x 32: 0 background, d + 1 an ink pixel of digit d, 255
                              the void outline), as Caffe's HDF5Data layer reads them, deflate-compressed
    train_h5.txt, test_h5.txt the HDF5Data source lists (one file name each, relative to the list's folder)
    images/test_K.png         the first test scenes (K = 0..3) as 8-bit grey PNGs, for crema predict: the bytes
                              of the scenes' data (times 1/256 they are the data exactly)
    images/test_K_truth.png   their label maps in Pascal VOC's colours (crema predict's mask colours; the void
                              outline in VOC's void colour, 224 224 192)

A scene: a canvas of smooth low-frequency noise, fine grain and a few faint straight fibres, on which four
digits are drawn in bright ink, each 8x8 digit enlarged to 12x12 (bilinear) and placed at a random position
with its 12x12 square clear of the others'. A pixel is ink, labelled with its digit, where the enlarged digit's
value is at least half of full ink. The pixels next to ink (its 8 neighbours) that are not ink themselves are
labelled 255, void, as Pascal VOC outlines its objects: the blended rim of the strokes is neither clearly ink
nor clearly canvas, and the nets ignore it (loss_param and accuracy_param ignore_label: 255). Everything else is
background, 0.

Which digits the scenes hold is fixed by SEED: 50 images of every digit are held out for the test scenes, which
hold each digit 50 times (a balanced test set: 125 scenes of 4 digits). The training scenes hold 960, 674, 474,
333, 234, 164, 115, 81, 57 and 40 digits (a geometric decay, 24:1 from the most to the least frequent class; the
most frequent digits reuse their ~130 images up to 8 times, the rarest get 40 different ones), which digit
gets which count a random permutation drawn with the same seed (printed, and listed in README.md): 3132 digits
in a random order, 4 to a scene, in 783 scenes.

Running the script again writes byte-identical files. crema itself does not need Python: the files it writes
are in the repository.
"""
import os
import sys

import h5py
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SEED = 2024
CLASSES = 10  # digits; the label maps have 11 classes, 0 being the background
SIZE = 32  # scenes are SIZE x SIZE
DIGIT = 12  # each 8x8 digit is enlarged to DIGIT x DIGIT
PER_SCENE = 4
TEST_PER_CLASS = 50
MOST, LEAST = 960, 40
VOID = 255  # the label of the outline around the ink, ignored
PNGS = 4  # test scenes also written as PNG files


# Pascal VOC's colour map (as crema predict draws masks): class c's bits spread over R, G and B.
def voc_colour(c):
    r = g = b = 0
    for shift in range(8):
        r |= ((c >> 0) & 1) << (7 - shift)
        g |= ((c >> 1) & 1) << (7 - shift)
        b |= ((c >> 2) & 1) << (7 - shift)
        c >>= 3
    return r, g, b


def enlarge(image, size):
    """Bilinear resize of a square image with pixel centres aligned (OpenCV's INTER_LINEAR), in numpy."""
    n = image.shape[0]
    x = (np.arange(size) + 0.5) * n / size - 0.5
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = x - lo
    rows = image[lo] * (1 - t)[:, None] + image[hi] * t[:, None]
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def canvas(rng):
    """A textured background: smooth noise in [0.1, 0.45], grain, and up to three faint straight fibres."""
    coarse = rng.uniform(0.0, 1.0, size=(5, 5))
    smooth = enlarge(coarse, SIZE)
    image = 0.1 + 0.35 * smooth + rng.uniform(-0.04, 0.04, size=(SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(rng.randint(0, 4)):
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0, SIZE, size=2)
        distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        strength = rng.uniform(0.15, 0.3)
        image += strength * np.clip(1.0 - distance, 0.0, 1.0)
    return image


def place(rng, count):
    """Top-left corners of `count` DIGIT x DIGIT squares inside the scene, no two overlapping."""
    while True:
        corners = []
        for _ in range(200):
            y, x = rng.randint(0, SIZE - DIGIT + 1, size=2)
            if all(abs(y - v) >= DIGIT or abs(x - u) >= DIGIT for v, u in corners):
                corners.append((y, x))
                if len(corners) == count:
                    return corners
        # Rarely the first squares leave no room; start the scene again.


def scene(rng, digits):
    """One scene holding `digits` (a list of (8x8 image in [0, 1], digit)): the grey image and its labels."""
    image = canvas(rng)
    label = np.zeros((SIZE, SIZE), dtype=np.float32)
    for (y, x), (pixels, digit) in zip(place(rng, len(digits)), digits):
        alpha = np.clip(enlarge(pixels, DIGIT), 0.0, 1.0)
        ink = rng.uniform(0.85, 1.0)
        window = image[y:y + DIGIT, x:x + DIGIT]
        image[y:y + DIGIT, x:x + DIGIT] = window * (1 - alpha) + ink * alpha
        label[y:y + DIGIT, x:x + DIGIT][alpha >= 0.5] = digit + 1
    # The void outline: the 8 neighbours of ink that are not ink.
    ink = label > 0
    near = np.zeros_like(ink)
    padded = np.pad(ink, 1)
    for dy in range(3):
        for dx in range(3):
            near |= padded[dy:dy + SIZE, dx:dx + SIZE]
    label[near & ~ink] = VOID
    grey = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return grey, label


def scenes(rng, images, instances):
    """Scenes of PER_SCENE digits each, from the list of (image index, digit) `instances` in order."""
    data, labels = [], []
    for start in range(0, len(instances), PER_SCENE):
        grey, label = scene(rng, [(images[i], d) for i, d in instances[start:start + PER_SCENE]])
        data.append(grey)
        labels.append(label)
    return np.stack(data), np.stack(labels)


def write_h5(path, grey, labels):
    n = len(grey)
    with h5py.File(path, "w", track_order=False) as f:
        # Chunked by 32 scenes, deflate level 9 after byte shuffling; no time stamps: the same bytes every run.
        options = dict(chunks=(min(n, 32), 1, SIZE, SIZE), compression="gzip", compression_opts=9,
                       shuffle=True, track_times=False)
        # Bytes / 256 are exact in float32 (and compress well); crema predict reads the PNGs with --scale 1/256.
        f.create_dataset("data", data=(grey.astype(np.float32) / 256).reshape(n, 1, SIZE, SIZE), **options)
        f.create_dataset("label", data=labels.reshape(n, 1, SIZE, SIZE), **options)


def write_png(path, pixels):
    # No time stamps or other chunks: PIL writes the same bytes for the same pixels.
    Image.fromarray(pixels).save(path, optimize=False, compress_level=9)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else here
    os.makedirs(os.path.join(out, "images"), exist_ok=True)

    digits = load_digits()
    images = digits.images / 16.0  # 0..16 -> [0, 1]
    target = digits.target.astype(np.int64)

    rng = np.random.RandomState(SEED)
    ratio = (LEAST / MOST) ** (1.0 / (CLASSES - 1))
    decay = [int(round(MOST * ratio**k)) for k in range(CLASSES)]  # 240, 169, ..., 10
    order = rng.permutation(CLASSES)  # order[k] is the digit that gets the k-th count
    counts = np.zeros(CLASSES, dtype=np.int64)
    counts[order] = decay

    train, test = [], []
    for digit in range(CLASSES):
        idx = rng.permutation(np.flatnonzero(target == digit))
        test += [(i, digit) for i in idx[:TEST_PER_CLASS]]
        pool = idx[TEST_PER_CLASS:]
        # The pool's images in a shuffled order, again and again until the digit's count is reached.
        picks = np.concatenate([rng.permutation(pool) for _ in range(-(-counts[digit] // len(pool)))])
        train += [(i, digit) for i in picks[:counts[digit]]]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]

    for name, instances in [("train", train), ("test", test)]:
        grey, labels = scenes(rng, images, instances)
        write_h5(os.path.join(out, name + ".h5"), grey, labels)
        with open(os.path.join(out, name + "_h5.txt"), "w") as f:
            f.write(name + ".h5\n")
        pixels = np.bincount(labels.astype(np.int64).ravel(), minlength=VOID + 1)
        print("%s: %d scenes; pixels per class (background, digits 0..9, void): %s" % (
            name, len(grey), " ".join(str(p) for p in pixels[[*range(CLASSES + 1), VOID]])))
        if name == "test":
            palette = np.array([voc_colour(c) for c in range(VOID + 1)], dtype=np.uint8)
            for k in range(PNGS):
                write_png(os.path.join(out, "images", "test_%d.png" % k), grey[k])
                write_png(os.path.join(out, "images", "test_%d_truth.png" % k),
                          palette[labels[k].astype(np.int64)])

    print("training digits per digit (0..9):", " ".join(str(c) for c in counts),
          "= %d;" % len(train), "test: %d per digit = %d" % (TEST_PER_CLASS, len(test)))
    print("digits from the most to the least frequent:", " ".join(str(d) for d in order))


if __name__ == "__main__":
    main()
