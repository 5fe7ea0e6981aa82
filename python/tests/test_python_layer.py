"""type: "Python" layers: the life cycle Caffe gives them, learnable blobs, gradients, errors, and the same nets
run by the `crema` console script and by solvers from Python."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import caffe
import crema
from conftest import EXAMPLES, crema_command

LAYERS = '''
import numpy as np
import caffe

CALLS = []


class Scale(caffe.Layer):
    """top = k * bottom, with k from param_str."""

    def setup(self, bottom, top):
        self.k = float(self.param_str)
        CALLS.append(("setup", self.phase))

    def reshape(self, bottom, top):
        CALLS.append("reshape")
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        CALLS.append("forward")
        top[0].data[...] = self.k * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        CALLS.append(("backward", list(propagate_down)))
        if propagate_down[0]:
            bottom[0].diff[...] = self.k * top[0].diff


class Learned(caffe.Layer):
    """top = w * bottom**2, w a learnable scalar kept in self.blobs."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 0.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data * bottom[0].data ** 2

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data ** 2).sum()
        bottom[0].diff[...] = top[0].diff * 2 * self.blobs[0].data * bottom[0].data


class Counter(caffe.Layer):
    """A data layer: a new batch is made in reshape, as many Caffe data layers do."""

    def setup(self, bottom, top):
        self.n = 0

    def reshape(self, bottom, top):
        self.n += 1
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        top[0].data[...] = self.n


class Raises(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        raise ZeroDivisionError("a batch without class 3")


class WrongShape(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(5, 7)

    def forward(self, bottom, top):
        pass


class WritesBottom(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        bottom[0].data[...] = 0


class KeepsBlobs(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        self.kept = bottom[0]
'''


def python_net(layer, param_str="", extra="", bottom_shape="dim: 2 dim: 3"):
    return f"""
    force_backward: true
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {bottom_shape} }} }} }}
    layer {{ name: "py" type: "Python" bottom: "x" top: "y"
      python_param {{ module: "pylayers" layer: "{layer}" param_str: "{param_str}" }} }}
    {extra}
    """


# The Learned layer between an input and a Euclidean loss against a target "t".
LEARNED_NET = python_net(
    "Learned",
    extra='layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 2 dim: 3 } } }\n'
    'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }',
)


@pytest.fixture
def layers_module(write):
    write("pylayers.py", LAYERS)
    yield
    sys.modules.pop("pylayers", None)


def test_life_cycle_as_caffes(write, layers_module):
    net = caffe.Net(write("n.prototxt", python_net("Scale", "3")), caffe.TEST)
    calls = sys.modules["pylayers"].CALLS
    assert calls == [("setup", caffe.TEST), "reshape"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(net.forward(x=x)["y"], 3 * x)
    net.forward(x=x)
    # Caffe reshapes before every forward.
    assert calls[2:] == ["forward", "reshape", "forward"]
    grads = net.backward(y=np.ones((2, 3)))
    np.testing.assert_array_equal(grads["x"], np.full((2, 3), 3.0))
    assert calls[-1] == ("backward", [True])
    assert net.layers[1].type == "Python"


def test_gradient_through_a_python_layer_matches_finite_differences(write, layers_module):
    model = write("n.prototxt", LEARNED_NET)
    net = caffe.Net(model, caffe.TRAIN)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    t = rng.normal(size=(2, 3))

    def loss():
        return float(net.forward(x=x, t=t)["loss"])

    loss()
    net.clear_param_diffs()
    grad_x = net.backward()["x"].copy()
    grad_w = net.params["py"][0].diff.copy()
    step = 1e-2
    for i in np.ndindex(2, 3):
        x[i] += step
        up = loss()
        x[i] -= 2 * step
        down = loss()
        x[i] += step
        assert grad_x[i] == pytest.approx((up - down) / (2 * step), rel=2e-2, abs=1e-3)
    w = net.params["py"][0].data
    w += step
    up = loss()
    w -= 2 * step
    down = loss()
    w += step
    assert grad_w[0] == pytest.approx((up - down) / (2 * step), rel=2e-2)


def test_own_blobs_learn_and_are_saved(write, tmp_path, layers_module):
    model = write("n.prototxt", LEARNED_NET)
    solver_path = write(
        "s.prototxt",
        f'net: "{model}"\nbase_lr: 0.05\nlr_policy: "fixed"\nmax_iter: 100\ndisplay: 0\n'
        f'snapshot_prefix: "{tmp_path / "s"}"\n',
    )
    solver = caffe.get_solver(solver_path)
    x = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    for _ in range(150):
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["t"].data[...] = 2.0 * x**2
        solver.step(1)
    assert solver.net.params["py"][0].data[0] == pytest.approx(2.0, rel=1e-3)
    saved = tmp_path / "w.caffemodel"
    solver.net.save(str(saved))
    fresh = caffe.Net(model, caffe.TEST, weights=str(saved))
    assert fresh.params["py"][0].data[0] == pytest.approx(2.0, rel=1e-3)
    assert len(fresh.layers[1].blobs) == 1


def test_a_data_layer_makes_its_batch_in_reshape(write, layers_module):
    model = write(
        "n.prototxt",
        'layer { name: "d" type: "Python" top: "d" python_param { module: "pylayers" layer: "Counter" } }',
    )
    net = caffe.Net(model, caffe.TRAIN)
    assert [int(net.forward()["d"][0, 0]) for _ in range(3)] == [1, 2, 3]


def test_exceptions_name_the_layer_and_keep_the_python_error(write, layers_module):
    net = caffe.Net(write("n.prototxt", python_net("Raises")), caffe.TRAIN)
    with pytest.raises(crema.CremaError) as raised:
        net.forward()
    message = str(raised.value)
    assert 'n.prototxt: layer "py" (Python): pylayers.Raises.forward raised ZeroDivisionError' in message
    assert "a batch without class 3" in message and "pylayers.py" in message
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


def test_modules_and_classes_that_cannot_be_found(write, layers_module):
    text = python_net("Scale", "1").replace('"pylayers"', '"no_such_module"')
    with pytest.raises(crema.CremaError, match='no module named "no_such_module"'):
        caffe.Net(write("a.prototxt", text), caffe.TRAIN)
    with pytest.raises(crema.CremaError, match='has no class "Nope"'):
        caffe.Net(write("b.prototxt", python_net("Nope")), caffe.TRAIN)
    write("broken.py", "import caffe\nclass L(caffe.Layer):\n    def setup(self, bottom, top):\n        1 / 0\n")
    broken = python_net("L").replace('"pylayers"', '"broken"')
    with pytest.raises(crema.CremaError, match=r"broken.L.setup raised ZeroDivisionError"):
        caffe.Net(write("c.prototxt", broken), caffe.TRAIN)
    sys.modules.pop("broken", None)
    missing = python_net("Scale").replace('python_param { module: "pylayers" layer: "Scale" param_str: "" }', "")
    with pytest.raises(crema.CremaError, match="python_param.module: missing"):
        caffe.Net(write("d.prototxt", missing), caffe.TRAIN)


def test_a_wrong_shape_set_in_reshape_is_named(write, layers_module):
    text = python_net(
        "WrongShape",
        extra='layer { name: "after" type: "Eltwise" bottom: "y" bottom: "x" top: "z" }',
    )
    with pytest.raises(crema.CremaError, match=r'layer "after" \(Eltwise\)'):
        caffe.Net(write("n.prototxt", text), caffe.TRAIN)
    with pytest.raises(ValueError, match="0 or more"):
        caffe.Net(write("m.prototxt", python_net("Scale", "1")), caffe.TRAIN).blobs["x"].reshape(-2)


def test_blobs_lent_for_one_call(write, layers_module):
    net = caffe.Net(write("n.prototxt", python_net("WritesBottom")), caffe.TRAIN)
    with pytest.raises(crema.CremaError, match="read-only"):
        net.forward()
    keeper = caffe.Net(write("k.prototxt", python_net("KeepsBlobs")), caffe.TRAIN)
    keeper.forward()
    layer_object = keeper.layers[1]
    assert layer_object.type == "Python"
    # The layer kept a bottom past its call: using it is an error, not a read of memory it no longer owns.
    kept = [o for o in _python_objects(sys.modules["pylayers"].KeepsBlobs) if hasattr(o, "kept")][0].kept
    with pytest.raises(RuntimeError, match="lent to a Python layer for one call only"):
        kept.data


def _python_objects(cls):
    import gc

    return [o for o in gc.get_objects() if isinstance(o, cls)]


def test_the_module_is_found_beside_the_prototxt_and_on_pythonpath(tmp_path, write):
    beside = tmp_path / "nets"
    beside.mkdir()
    (beside / "beside_module.py").write_text("import caffe\nclass L(caffe.Layer):\n    pass\n")
    text = python_net("L").replace('"pylayers"', '"beside_module"')
    (beside / "n.prototxt").write_text(text)
    caffe.Net(str(beside / "n.prototxt"), caffe.TRAIN)
    sys.modules.pop("beside_module", None)
    # On PYTHONPATH, from another folder, with the console script.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "path_module.py").write_text(
        "import caffe\nclass L(caffe.Layer):\n"
        "    def reshape(self, bottom, top):\n        top[0].reshape(*bottom[0].data.shape)\n"
        "    def forward(self, bottom, top):\n        top[0].data[...] = 7\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "n.prototxt").write_text(python_net("L").replace('"pylayers"', '"path_module"'))
    without = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = crema_command(
        "forward", "--model", elsewhere / "n.prototxt", "--out", tmp_path / "out", cwd=tmp_path, env=without
    )
    assert done.returncode == 1 and 'no module named "path_module"' in done.stderr, done.stderr
    env = dict(os.environ, PYTHONPATH=str(lib))
    done = crema_command(
        "forward", "--model", elsewhere / "n.prototxt", "--out", tmp_path / "out", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert (np.load(tmp_path / "out" / "y.npy") == 7).all()


@pytest.fixture
def seed_example(tmp_path):
    """examples/seed-class-weights and the data it reads, copied where training may write."""
    shutil.copytree(EXAMPLES / "seed-class-weights", tmp_path / "seed-class-weights")
    shutil.copytree(EXAMPLES / "imbalanced-digits", tmp_path / "imbalanced-digits",
                    ignore=shutil.ignore_patterns("out"))
    yield tmp_path / "seed-class-weights"
    sys.modules.pop("compute_h", None)


def test_compute_h_trains_as_class_weights_from_python(seed_example, monkeypatch):
    monkeypatch.chdir(seed_example)
    native = caffe.get_solver("solver.prototxt")
    python = caffe.get_solver("solver_python.prototxt")
    native.step(200)
    python.step(200)
    np.testing.assert_array_equal(
        python.net.blobs["H"].data, native.net.blobs["H"].data
    )
    for name in ("ip1", "score"):
        for a, b in zip(native.net.params[name], python.net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_compute_h_trains_from_the_console_script_and_python_m(seed_example):
    for command in (
        lambda *a: crema_command(*a, cwd=seed_example),
        lambda *a: subprocess.run(
            [sys.executable, "-m", "crema", *map(str, a)], cwd=seed_example, capture_output=True, text=True
        ),
    ):
        done = command("train", "--solver", "solver_python.prototxt", "--no-plot")
        assert done.returncode == 0, done.stderr
        assert "Optimization Done." in done.stderr
    done = crema_command("train", "--solver", "solver.prototxt", "--no-plot", cwd=seed_example)
    assert done.returncode == 0, done.stderr
    out = seed_example / "out"
    native = caffe.Net("train_val.prototxt" and str(seed_example / "train_val.prototxt"), caffe.TEST,
                       weights=str(out / "seed_iter_1000.caffemodel"))
    python = caffe.Net(str(seed_example / "train_val_python.prototxt"), caffe.TEST,
                       weights=str(out / "seed_python_iter_1000.caffemodel"))
    for name in ("ip1", "score"):
        for a, b in zip(native.params[name], python.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    tested = [
        crema_command("test", "--model", model, "--weights", out / weights, "--iterations", 5, cwd=seed_example)
        for model, weights in [
            ("train_val.prototxt", "seed_iter_1000.caffemodel"),
            ("train_val_python.prototxt", "seed_python_iter_1000.caffemodel"),
        ]
    ]
    for done in tested:
        assert done.returncode == 0, done.stderr
    timed = crema_command("time", "--model", "train_val_python.prototxt", "--iterations", 3, cwd=seed_example)
    assert timed.returncode == 0, timed.stderr
    assert "H" in timed.stdout + timed.stderr
    accuracy = [next(line for line in (d.stdout + d.stderr).splitlines() if "balanced accuracy" in line.lower())
                for d in tested]
    assert accuracy[0] == accuracy[1], accuracy
