"""Solvers stepped from Python: types, steps against a hand-computed SGD update, test nets that see the
current weights, snapshots and exact resumes."""

import numpy as np
import pytest

import caffe
import crema

NET = """
name: "fed"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 8 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 8 dim: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
  inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""

SOLVER = """
net: "{net}"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 20
display: 0
snapshot_prefix: "{prefix}"
random_seed: 5
type: "{kind}"
"""


@pytest.fixture
def solver_file(write, tmp_path):
    net = write("fed.prototxt", NET)

    def make(kind="SGD", extra=""):
        return write(f"solver_{kind}.prototxt", SOLVER.format(net=net, prefix=tmp_path / "snap", kind=kind) + extra)

    return make


def feed(net, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    return x


def test_types(solver_file):
    adam = solver_file("Adam")
    assert caffe.get_solver(adam).type == "Adam"
    assert caffe.SGDSolver(adam).type == "SGD"
    for cls, kind in [
        (caffe.NesterovSolver, "Nesterov"),
        (caffe.AdaGradSolver, "AdaGrad"),
        (caffe.RMSPropSolver, "RMSProp"),
        (caffe.AdaDeltaSolver, "AdaDelta"),
        (caffe.AdamSolver, "Adam"),
    ]:
        assert cls(solver_file()).type == kind
    assert caffe.get_solver(adam).param.base_lr == pytest.approx(0.1)


def test_a_step_is_sgd_on_what_python_fed(solver_file):
    solver = caffe.SGDSolver(solver_file())
    net = solver.net
    x = feed(net, 0)
    w = net.params["ip"][0].data.copy()
    b = net.params["ip"][1].data.copy()
    y = net.blobs["y"].data.copy()
    solver.step(1)
    assert solver.iter == 1
    # EuclideanLoss = sum((p - y)^2) / (2 N): dL/dp = (p - y) / N.
    dp = (x @ w.T + b - y) / 8
    np.testing.assert_allclose(net.params["ip"][0].data, w - 0.1 * dp.T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["ip"][1].data, b - 0.1 * dp.sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["loss"].data, ((x @ w.T + b - y) ** 2).sum() / 16, rtol=1e-5)
    for i in range(200):
        feed(net, i)
        solver.step(1)
    np.testing.assert_allclose(net.params["ip"][0].data, [[1.0, -2.0, 0.5]], atol=1e-3)


def test_test_nets_see_the_current_weights(write, tmp_path):
    net = write("fed.prototxt", NET)
    solver_path = write(
        "s.prototxt",
        SOLVER.format(net=net, prefix=tmp_path / "snap", kind="SGD") + "test_iter: 1\ntest_interval: 1000\n",
    )
    solver = caffe.get_solver(solver_path)
    assert len(solver.test_nets) == 1
    test = solver.test_nets[0]
    for i in range(3):
        feed(solver.net, i)
        solver.step(1)
    x = feed(test, 9)
    test.forward()
    w, b = (p.data for p in solver.net.params["ip"])
    np.testing.assert_allclose(test.blobs["p"].data, x @ w.T + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(test.params["ip"][0].data, w)


def test_snapshot_restore_and_solve(solver_file, tmp_path):
    path = solver_file()
    first = caffe.SGDSolver(path)
    for i in range(5):
        feed(first.net, i)
        first.step(1)
    first.snapshot()
    state = tmp_path / "snap_iter_5.solverstate"
    assert state.exists() and (tmp_path / "snap_iter_5.caffemodel").exists()
    for i in range(5, 8):
        feed(first.net, i)
        first.step(1)
    resumed = caffe.SGDSolver(path)
    resumed.restore(str(state))
    assert resumed.iter == 5
    for i in range(5, 8):
        feed(resumed.net, i)
        resumed.step(1)
    np.testing.assert_array_equal(resumed.net.params["ip"][0].data, first.net.params["ip"][0].data)
    # solve() runs to max_iter (20) from where it stands and snapshots at the end.
    resumed.solve()
    assert resumed.iter == 20 and (tmp_path / "snap_iter_20.caffemodel").exists()
    again = caffe.SGDSolver(path)
    again.solve(str(state))
    assert again.iter == 20


def test_solver_errors_name_the_file(write, tmp_path):
    missing = write("s.prototxt", 'net: "nowhere.prototxt"\nbase_lr: 0.1\n')
    with pytest.raises(crema.CremaError, match="nowhere.prototxt"):
        caffe.get_solver(missing)
    with pytest.raises(crema.CremaError, match="no_solver.prototxt"):
        caffe.get_solver(str(tmp_path / "no_solver.prototxt"))


def test_ctrl_c_stops_a_long_step_after_an_iteration(solver_file):
    import _thread
    import threading

    solver = caffe.SGDSolver(solver_file())
    feed(solver.net, 0)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        solver.step(10**8)
    timer.join()
    assert 0 < solver.iter < 10**8
    before = solver.iter
    solver.step(2)  # the solver goes on from where it stood
    assert solver.iter == before + 2
