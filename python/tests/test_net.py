"""caffe.Net against numpy: construction, blobs and params as views, forward and backward over ranges, and the
files it reads and writes."""

import numpy as np
import pytest

import caffe
import crema
from conftest import crema_command

NET = """
name: "mlp"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" exclude { stage: "logits" } }
"""


@pytest.fixture
def model(write):
    return write("mlp.prototxt", NET)


def numpy_forward(net, x):
    w1, b1 = (p.data for p in net.params["ip1"])
    w2, b2 = (p.data for p in net.params["ip2"])
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return h, z, e / e.sum(axis=1, keepdims=True)


def test_structure_is_pycaffes(model):
    net = caffe.Net(model, caffe.TEST)
    assert net._layer_names == ["data", "ip1", "relu", "ip2", "prob"]
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct", "ReLU", "InnerProduct", "Softmax"]
    assert list(net.blobs) == ["data", "ip1", "ip2", "prob"]
    assert list(net.params) == ["ip1", "ip2"]
    assert [p.data.shape for p in net.params["ip1"]] == [(5, 3), (5,)]
    assert len(net.layers[1].blobs) == 2 and net.layers[2].blobs == []
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net.top_names["relu"] == ["ip1"] and net.bottom_names["ip2"] == ["ip1"]
    assert net.layer_dict["ip2"].type == "InnerProduct"
    assert net.phase == caffe.TEST == 1 and caffe.TRAIN == 0
    blob = net.blobs["data"]
    assert blob.shape == (4, 3) and blob.count == 12
    assert (blob.num, blob.channels, blob.height, blob.width) == (4, 3, 1, 1)
    assert caffe.__crema__ == crema._native.__version__


def test_construction_forms_and_stages(model, tmp_path):
    trained = caffe.Net(model, caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    trained.save(weights)
    for net in (
        caffe.Net(model, weights, caffe.TEST),
        caffe.Net(model, caffe.TEST, weights=weights),
        caffe.Net(model, phase=caffe.TEST, weights=weights),
    ):
        np.testing.assert_array_equal(net.params["ip1"][0].data, trained.params["ip1"][0].data)
    logits = caffe.Net(model, caffe.TEST, stages=["logits"])
    assert "prob" not in logits.blobs and logits.outputs == ["ip2"]
    assert caffe.Net(model, caffe.TEST, level=3).outputs == ["prob"]
    with pytest.raises(ValueError, match="caffe.TRAIN or caffe.TEST"):
        caffe.Net(model, 7)


def test_writes_through_data_feed_the_net_and_views_copy_nothing(model):
    net = caffe.Net(model, caffe.TEST)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    view = net.blobs["data"].data
    view[...] = x  # in place, through a view taken before
    assert net.blobs["data"].data.__array_interface__["data"][0] == view.__array_interface__["data"][0]
    out = net.forward()
    h, z, p = numpy_forward(net, x)
    np.testing.assert_allclose(out["prob"], p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["ip1"].data, h, rtol=1e-5, atol=1e-6)  # after the in-place ReLU
    assert np.shares_memory(out["prob"], net.blobs["prob"].data)
    # The weights are views too: changing them changes the next forward.
    net.params["ip2"][1].data[...] = 0
    net.params["ip2"][0].data[...] *= 0
    np.testing.assert_allclose(net.forward()["prob"], 0.5)


def test_forward_kwargs_blobs_and_ranges(model):
    net = caffe.Net(model, caffe.TEST)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    out = net.forward(data=x, blobs=["ip2"])
    assert set(out) == {"prob", "ip2"}
    h, z, p = numpy_forward(net, x)
    np.testing.assert_allclose(out["ip2"], z, rtol=1e-5, atol=1e-6)
    # Only the last layer, on logits written by hand.
    net.blobs["ip2"].data[...] = [[0, 0], [1, 0], [0, 2], [3, 3]]
    out = net.forward(start="prob")
    e = np.exp(net.blobs["ip2"].data)
    np.testing.assert_allclose(out["prob"], e / e.sum(1, keepdims=True), rtol=1e-6)
    out = net.forward(end="ip1")
    assert set(out) == {"ip1"}
    with pytest.raises(KeyError, match="no such layer"):
        net.forward(start="nope")
    with pytest.raises(ValueError, match="not inputs of the net"):
        net.forward(prob=x)
    with pytest.raises(ValueError, match=r"holds shape \(4, 3\).*\(2, 2\)"):
        net.forward(data=np.zeros((2, 2)))


def test_backward_matches_numpy(model):
    net = caffe.Net(model, caffe.TEST, stages=["logits"])
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    g = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)
    net.forward(data=x)
    grads = net.backward(ip2=g)
    w1, b1 = (p.data for p in net.params["ip1"])
    w2 = net.params["ip2"][0].data
    pre = x @ w1.T + b1
    h = np.maximum(pre, 0)
    dh = (g @ w2) * (pre > 0)
    np.testing.assert_allclose(grads["data"], dh @ w1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["ip2"][0].diff, g.T @ h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["ip2"][1].diff, g.sum(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["ip1"][0].diff, dh.T @ x, rtol=1e-4, atol=1e-5)
    # The gradient of a blob rewritten in place is that of its input, as in Caffe.
    np.testing.assert_allclose(net.blobs["ip1"].diff, dh, rtol=1e-4, atol=1e-5)
    # Parameter gradients accumulate until cleared, as in Caffe.
    net.backward(ip2=g)
    np.testing.assert_allclose(net.params["ip2"][1].diff, 2 * g.sum(0), rtol=1e-4, atol=1e-5)
    net.clear_param_diffs()
    assert not net.params["ip2"][1].diff.any()
    # Ranges and extra diffs.
    grads = net.backward(end="ip2", diffs=["ip2"], ip2=g)
    assert set(grads) == {"ip1", "ip2"}
    with pytest.raises(ValueError, match="not an output"):
        net.backward(ip1=g)


def test_backward_matches_crema_forward_backward(write, tmp_path):
    model = write(
        "loss.prototxt",
        """
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 6 dim: 4 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 6 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s"
          inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" }
        """,
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=6).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    net = caffe.Net(model, caffe.TRAIN)
    weights = tmp_path / "w.caffemodel"
    net.save(str(weights))
    out = net.forward(x=x, y=y)
    grads = net.backward()
    done = crema_command(
        "forward", "--model", model, "--weights", weights, "--input", f"x={tmp_path / 'x.npy'}",
        "--input", f"y={tmp_path / 'y.npy'}", "--backward", "--out", tmp_path / "out",
    )
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    loss = np.load(tmp_path / "out" / "loss.npy")
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-6)
    diff_file = next(tmp_path / "out" / f for f in files if f.startswith("x") and "diff" in f)
    np.testing.assert_allclose(grads["x"], np.load(diff_file), rtol=1e-6, atol=1e-7)


def test_reshape_flows_through_the_net(model):
    net = caffe.Net(model, caffe.TEST)
    net.blobs["data"].reshape(7, 3)
    net.reshape()
    assert net.blobs["prob"].data.shape == (7, 2)
    x = np.ones((7, 3), np.float32)
    assert net.forward(data=x)["prob"].shape == (7, 2)
    with pytest.raises(ValueError, match="0 or more"):
        net.blobs["data"].reshape(-1, 3)


def test_data_assignment_checks_the_shape(model):
    net = caffe.Net(model, caffe.TEST)
    net.blobs["data"].data = np.full((4, 3), 2.0)
    assert (net.blobs["data"].data == 2).all()
    with pytest.raises(ValueError, match=r"shape \(4, 3\) to an array of shape \(3, 4\)"):
        net.blobs["data"].data = np.zeros((3, 4))
    with pytest.raises(ValueError, match="could not broadcast"):
        net.blobs["data"].data[...] = np.zeros((3, 4))


def test_save_copy_from_and_share_with(model, tmp_path):
    a = caffe.Net(model, caffe.TEST)
    caffe.set_random_seed(99)
    b = caffe.Net(model, caffe.TEST)
    assert not np.array_equal(a.params["ip1"][0].data, b.params["ip1"][0].data)
    path = tmp_path / "a.caffemodel"
    a.save(str(path))
    b.copy_from(str(path))
    np.testing.assert_array_equal(a.params["ip1"][0].data, b.params["ip1"][0].data)
    c = caffe.Net(model, caffe.TEST)
    c.params["ip2"][0].data[...] = 5
    a.share_with(c)
    assert (a.params["ip2"][0].data == 5).all()


def test_seeds_repeat(model):
    caffe.set_random_seed(7)
    a = caffe.Net(model, caffe.TEST)
    caffe.set_random_seed(7)
    b = caffe.Net(model, caffe.TEST)
    np.testing.assert_array_equal(a.params["ip1"][0].data, b.params["ip1"][0].data)


def test_bad_files_are_clear_errors(write, tmp_path):
    with pytest.raises(crema.CremaError, match="nothing.prototxt"):
        caffe.Net(str(tmp_path / "nothing.prototxt"), caffe.TEST)
    bad = write("bad.prototxt", 'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 } }\n')
    with pytest.raises(crema.CremaError, match="bad.prototxt"):
        caffe.Net(bad, caffe.TEST)
    odd = write("odd.prototxt", 'layer { name: "x" type: "NoSuchLayer" top: "x" }')
    with pytest.raises(crema.CremaError, match='layer "x" \\(NoSuchLayer\\)'):
        caffe.Net(odd, caffe.TEST)


def test_gpu_calls_warn_once_and_go_on():
    caffe._told_about_gpu = False
    with pytest.warns(RuntimeWarning, match="CPU"):
        caffe.set_mode_gpu()
    caffe.set_device(0)  # told once already
    caffe.set_mode_cpu()
    assert "Python" in caffe.layer_type_list() and "InfogainLoss" in caffe.layer_type_list()


def test_ranges_return_what_the_range_left_in_blobs_rewritten_in_place(model):
    net = caffe.Net(model, caffe.TEST, stages=["logits"])
    x = np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32)
    net.forward(data=x)  # a whole pass first: the ReLU's version holds rectified values
    w1, b1 = (p.data for p in net.params["ip1"])
    pre = x @ w1.T + b1
    assert (pre < 0).any()
    # Stopped at ip1: its values before the in-place ReLU, as Caffe's shared blob would hold them.
    out = net.forward(data=x, end="ip1")
    np.testing.assert_allclose(out["ip1"], pre, rtol=1e-5, atol=1e-6)
    # Stopped at ip2: the gradient ip2 hands back to what it reads (the ReLU's output), before the ReLU's mask.
    g = np.ones((4, 2), np.float32)
    net.forward(data=x)
    grads = net.backward(end="ip2", ip2=g)
    w2 = net.params["ip2"][0].data
    np.testing.assert_allclose(grads["ip1"], g @ w2, rtol=1e-5, atol=1e-6)
