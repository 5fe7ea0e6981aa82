"""What one call of a Python layer costs: crema's ``caffe`` module beside BVLC's pycaffe, with one script.

The script writes (to a temporary folder) a net of an Input blob ``data`` followed by a chain of K pass-through
Python layers (``PassThrough`` in a module it writes beside the prototxt: ``reshape`` shapes the top as the bottom,
``forward`` copies the data, ``backward`` copies the gradient back), with ``force_backward: true``, and the same
chain of native ``Power`` layers (default parameters: the identity) as the baseline. It times ``net.forward()`` and
``net.backward()`` (each measured round is one forward then one backward; the nets' rounds are interleaved in
blocks so that a shared machine's drift hits them alike), after a warm-up, and prints the medians per call and

    cost of one Python layer call = (median with Python layers - median with Power layers) / K

for the forward pass (Caffe, and crema, call ``reshape`` then ``forward`` for each layer) and for the backward
pass, for a 1x1x1x1 blob (what a call costs, all but nothing copied) and for --shape (default 64x1x28x28: the
copies included). A third net, the Input layer alone, gives a second reference that does not depend on how fast
the native layer is: (Python - Input only) / K is all that one Python layer costs, its copy included. Before
timing, the script checks that each net's output equals its input and that the gradient reaching ``data`` equals
the one set on the output.

    PYTHONPATH=/opt/caffe-py/src/python /usr/bin/python3 benches/peers/python_layer_overhead.py   # BVLC pycaffe
    .venv/bin/python benches/peers/python_layer_overhead.py    # crema (after scripts/test-all.sh or pip install .)

Options: --shape NxCxHxW (default 64x1x28x28), --layers K (10), --rounds (2000), --warmup (200).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")  # pycaffe: no net-construction log
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import caffe  # noqa: E402

MODULE = "crema_bench_passthrough"

LAYER_MODULE = '''\
import caffe


class PassThrough(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff
'''


def prototxt(kind, shape, layers):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = [
        f'name: "{kind}_chain"',
        "force_backward: true",
        f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}',
    ]
    bottom = "data"
    for i in range(1, layers + 1):
        top = f"b{i}"
        if kind == "python":
            body = f'type: "Python" python_param {{ module: "{MODULE}" layer: "PassThrough" }}'
        else:
            body = 'type: "Power"'
        text.append(f'layer {{ name: "l{i}" {body} bottom: "{bottom}" top: "{top}" }}')
        bottom = top
    return "\n".join(text) + "\n", bottom


def build(folder, kind, shape, layers):
    text, output = prototxt(kind, shape, layers)
    path = os.path.join(folder, f"{kind}_{'x'.join(map(str, shape))}.prototxt")
    with open(path, "w") as f:
        f.write(text)
    net = caffe.Net(path, caffe.TEST)
    rng = np.random.RandomState(0)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    net.blobs[output].diff[...] = g
    net.backward()
    if not np.array_equal(net.blobs[output].data, x):
        raise SystemExit(f"{kind} net, shape {shape}: the output is not the input")
    if not np.array_equal(net.blobs["data"].diff, g):
        raise SystemExit(f"{kind} net, shape {shape}: the gradient reaching data is not the one given")
    return net


def one_round(net, forwards, backwards):
    t0 = time.perf_counter_ns()
    net.forward()
    t1 = time.perf_counter_ns()
    net.backward()
    t2 = time.perf_counter_ns()
    forwards.append(t1 - t0)
    backwards.append(t2 - t1)


def measure(nets, rounds, warmup, block=100):
    samples = {kind: ([], []) for kind in nets}
    for net in nets.values():
        scratch = ([], [])
        for _ in range(warmup):
            one_round(net, *scratch)
    done = 0
    while done < rounds:
        n = min(block, rounds - done)
        for kind, net in nets.items():
            for _ in range(n):
                one_round(net, *samples[kind])
        done += n
    us = lambda values: statistics.median(values) / 1e3  # noqa: E731
    out = {}
    for kind, (f, b) in samples.items():
        out[kind] = {
            "forward": us(f),
            "backward": us(b),
            "forward+backward": us([a + c for a, c in zip(f, b)]),
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64x1x28x28")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.shape.lower().split("x"))
    k = args.layers

    crema = getattr(caffe, "__crema__", None)
    who = f"crema {crema}" if crema else "BVLC pycaffe"
    print(f"framework: {who} ({os.path.dirname(caffe.__file__)})")
    print(f"python {platform.python_version()} ({sys.executable}), numpy {np.__version__}, {platform.machine()}")
    print(f"K = {k} layers in a chain, {args.rounds} rounds after {args.warmup} of warm-up; medians per call, us")
    if hasattr(caffe, "set_mode_cpu"):
        caffe.set_mode_cpu()

    with tempfile.TemporaryDirectory(prefix="python_layer_overhead_") as folder:
        with open(os.path.join(folder, f"{MODULE}.py"), "w") as f:
            f.write(LAYER_MODULE)
        sys.path.insert(0, folder)
        started = time.perf_counter()
        for label, s in (("tiny", (1, 1, 1, 1)), ("shape", shape)):
            nets = {kind: build(folder, kind, s, 0 if kind == "none" else k) for kind in ("python", "power", "none")}
            m = measure(nets, args.rounds, args.warmup)
            print(f"\n{label} {'x'.join(map(str, s))}:")
            print(
                f"  {'':<30}{'Python x' + str(k):>12}{'Power x' + str(k):>12}{'Input only':>12}"
                f"{'per Python call':>17}{'(vs Input only)':>17}"
            )
            for what in ("forward", "backward", "forward+backward"):
                py, pw, none = m["python"][what], m["power"][what], m["none"][what]
                name = "net." + what.replace("+", "()+net.") + "()"
                print(
                    f"  {name:<30}{py:>12.2f}{pw:>12.2f}{none:>12.2f}{(py - pw) / k:>17.2f}{(py - none) / k:>17.2f}"
                )
            del nets
        print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
