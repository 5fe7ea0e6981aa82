#!/usr/bin/env python3
"""Draws figures/masks.png, the picture README.md shows: for each of the first four test scenes, the scene, its
true label map and the masks crema predict wrote for the softmax and the infogain net (run.sh writes them to
out/masks_softmax and out/masks_infogain), each enlarged 6 times; under them the colours of the classes.

    pip install numpy pillow
    examples/imbalanced-segmentation/run.sh
    python3 examples/imbalanced-segmentation/make_figure.py

crema does not need it: it only lays out pictures that make_data.py and crema predict made.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

SCENES = 4
ZOOM = 6
GAP = 8
HEADER = 18
COLUMNS = [("scene", "images/test_%d.png"), ("truth", "images/test_%d_truth.png"),
           ("softmax", "out/masks_softmax/test_%d_mask.png"), ("infogain", "out/masks_infogain/test_%d_mask.png")]
NAMES = ["background"] + ["digit %d" % d for d in range(10)]
VOID = 255  # the outline around the ink, ignored by the losses and the scores


def voc_colour(c):
    r = g = b = 0
    for shift in range(8):
        r |= ((c >> 0) & 1) << (7 - shift)
        g |= ((c >> 1) & 1) << (7 - shift)
        b |= ((c >> 2) & 1) << (7 - shift)
        c >>= 3
    return r, g, b


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tiles = [[Image.open(os.path.join(here, path % k)).convert("RGB") for _, path in COLUMNS]
             for k in range(SCENES)]
    size = tiles[0][0].width * ZOOM
    width = len(COLUMNS) * size + (len(COLUMNS) - 1) * GAP
    legend_rows = 2
    height = HEADER + SCENES * size + (SCENES - 1) * GAP + GAP + legend_rows * 16
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    for column, (title, _) in enumerate(COLUMNS):
        draw.text((column * (size + GAP) + 2, 3), title, fill="black")
    for row, images in enumerate(tiles):
        for column, image in enumerate(images):
            figure.paste(image.resize((size, size), Image.NEAREST),
                         (column * (size + GAP), HEADER + row * (size + GAP)))
    top = HEADER + SCENES * size + (SCENES - 1) * GAP + GAP
    entries = list(enumerate(NAMES)) + [(VOID, "void (ignored)")]
    per_row = -(-len(entries) // legend_rows)
    for k, (c, name) in enumerate(entries):
        x = (k % per_row) * (width // per_row)
        y = top + (k // per_row) * 16
        draw.rectangle([x, y + 2, x + 11, y + 13], fill=voc_colour(c), outline="black")
        draw.text((x + 15, y + 2), name, fill="black")
    os.makedirs(os.path.join(here, "figures"), exist_ok=True)
    figure.save(os.path.join(here, "figures", "masks.png"), optimize=True)
    print("wrote", os.path.join(here, "figures", "masks.png"))


if __name__ == "__main__":
    main()
