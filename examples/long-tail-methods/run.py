#!/usr/bin/env python3
"""The long-tail methods side by side: the digits long-tail net trained with each method over several seeds,
scored on the balanced test set, one table of balanced accuracy, macro F1 and the rarest digit's recall.

    examples/long-tail-methods/run.py                 # from anywhere; builds crema (release) on first use
    CREMA=target/release/crema examples/long-tail-methods/run.py --seeds 10

Python's standard library only. Each method is a net in this folder that differs from net_softmax.prototxt in
a few lines; "post-hoc" is the softmax net scored with `crema test --logit-adjust 1`.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
TRAIN_LIST = "../imbalanced-digits/train_h5.txt"
RAREST = 8  # 5 training images (../imbalanced-digits/README.md)

# (name in the table, net, extra `crema test` arguments)
METHODS = [
    ("softmax", "softmax", []),
    ("infogain, inverse frequency", "infogain_inverse", []),
    ("infogain, effective number", "infogain_effective", []),
    ("focal (gamma 2)", "focal", []),
    ("alpha-focal (gamma 2, inverse)", "focal_alpha", []),
    ("logit-adjusted loss (tau 1)", "logit_adjust", []),
    ("deferred re-weighting", "drw", []),
    ("class-balanced sampling", "sampling_class_balanced", []),
    ("square-root sampling", "sampling_sqrt", []),
    ("post-hoc correction (tau 1)", "softmax", ["--logit-adjust", "1", "--prior-source", TRAIN_LIST]),
]


def crema_command():
    given = os.environ.get("CREMA")
    if given:
        return shlex.split(given)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "crema-cli"], cwd=REPO, check=True)
    return [os.path.join(REPO, "target", "release", "crema")]


def run(crema, *args):
    done = subprocess.run([*crema, *args], cwd=HERE, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"crema {' '.join(args)} failed:\n{done.stderr}")
    return done


def train(crema, net, seed):
    with open(os.path.join(HERE, "solver.prototxt")) as f:
        solver = f.read()
    prefix = f"out/{net}_seed{seed}"
    solver = (
        solver.replace('net: "net_softmax.prototxt"', f'net: "net_{net}.prototxt"')
        .replace("random_seed: 1", f"random_seed: {seed}")
        .replace('snapshot_prefix: "out/softmax"', f'snapshot_prefix: "{prefix}"')
    )
    path = os.path.join(HERE, "out", f"solver_{net}_seed{seed}.prototxt")
    with open(path, "w") as f:
        f.write(solver)
    run(crema, "train", "--solver", path, "--no-plot")
    return f"{prefix}_iter_1000.caffemodel"


def score(crema, net, weights, extra):
    report = os.path.join(HERE, "out", "report.json")
    run(crema, "test", "--model", f"net_{net}.prototxt", "--weights", weights, "--iterations", "5",
        "--json", report, *extra)
    with open(report) as f:
        (layer,) = json.load(f)["accuracy_layers"]
    rarest = next(c["recall"] for c in layer["per_class"] if c["class"] == RAREST)
    return layer["balanced_accuracy"], layer["macro_f1"], rarest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    args = parser.parse_args()
    crema = crema_command()
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    for method, beta in [("inverse", None), ("effective-number", "0.99")]:
        name = "inverse" if beta is None else "effective"
        extra = [] if beta is None else ["--beta", beta]
        run(crema, "infogain", "--source", TRAIN_LIST, "--method", method, *extra, "--normalize", "mean-one",
            "-o", f"out/H_{name}.binaryproto")
    results = {}
    trained = {}
    for seed in range(1, args.seeds + 1):
        for name, net, extra in METHODS:
            key = (net, seed)
            if key not in trained:
                trained[key] = train(crema, net, seed)
            results.setdefault(name, []).append(score(crema, net, trained[key], extra))
        print(f"seed {seed} of {args.seeds} done", file=sys.stderr, flush=True)

    columns = ["balanced accuracy", "macro F1", f"recall of digit {RAREST}"]
    best = [max(statistics.mean(r[i] for r in rows) for rows in results.values()) for i in range(3)]
    width = max(len(name) for name in results)
    print(f"{'method':<{width}}  " + "  ".join(f"{c:>19}" for c in columns))
    for name, rows in results.items():
        cells = []
        for i in range(3):
            values = [r[i] for r in rows]
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            mark = " *" if mean == best[i] else "  "
            cells.append(f"{mean:.3f} ± {spread:.3f}{mark}")
        print(f"{name:<{width}}  " + "  ".join(f"{c:>19}" for c in cells))
    print(f"\nmean ± standard deviation over {args.seeds} seeds; * the best mean of each column")


if __name__ == "__main__":
    main()
