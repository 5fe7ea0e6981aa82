"""Caffe's files from Python: the bytes pycaffe writes, caffe_pb2 on real prototxts, and crema reading what
Python wrote (and the other way round)."""

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from conftest import REPO

FORMATS = REPO / "tests" / "fixtures" / "caffe-reference" / "formats"
BVLC = REPO / "tests" / "fixtures" / "bvlc"


def test_array_to_blobproto_writes_the_bytes_pycaffe_wrote():
    h = np.load(FORMATS / "H_4x4.npy")
    written = caffe.io.array_to_blobproto(h.reshape((1, 1, 4, 4))).SerializeToString()
    assert written == (FORMATS / "H_shape_1x1x4x4.binaryproto").read_bytes()
    assert caffe.io.array_to_blobproto(h).SerializeToString() == (FORMATS / "H_shape_4x4.binaryproto").read_bytes()
    legacy = caffe_pb2.BlobProto.FromString((FORMATS / "H_legacy_nchw_1x1x4x4.binaryproto").read_bytes())
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(legacy), h.reshape(1, 1, 4, 4))


def test_an_h_written_from_python_is_the_h_infogain_loss_reads(write, tmp_path):
    h = np.array([[2.0, 0.5], [0.0, 1.0]], np.float32)
    path = tmp_path / "H.binaryproto"
    path.write_bytes(caffe.io.array_to_blobproto(h.reshape((1, 1, 2, 2))).SerializeToString())
    model = write(
        "n.prototxt",
        f"""
        layer {{ name: "s" type: "Input" top: "s" input_param {{ shape {{ dim: 1 dim: 2 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 1 }} }} }}
        layer {{ name: "loss" type: "InfogainLoss" bottom: "s" bottom: "y" top: "loss"
          infogain_loss_param {{ source: "{path}" }} }}
        """,
    )
    net = caffe.Net(model, caffe.TEST)
    scores = np.array([[1.0, 3.0]], np.float32)
    loss = net.forward(s=scores, y=np.zeros(1, np.float32))["loss"]
    log_p = scores - np.log(np.exp(scores).sum())
    assert loss == np.float32(-(h[0] * log_p[0]).sum())


def test_caffe_pb2_reads_and_writes_real_prototxts():
    paths = sorted(BVLC.rglob("*.prototxt"))
    assert len(paths) > 20
    for path in paths:
        message = caffe_pb2.SolverParameter() if "solver" in path.name else caffe_pb2.NetParameter()
        text_format.Merge(path.read_text(), message)
        again = type(message).FromString(message.SerializeToString())
        assert again == message, path
        assert text_format.Parse(str(message), type(message)()) == message, path


def test_a_caffemodel_written_by_crema_reads_in_caffe_pb2_and_back(tmp_path):
    net = caffe.Net(str(FORMATS / "tiny_ip.prototxt"), caffe.TEST)
    path = tmp_path / "w.caffemodel"
    net.save(str(path))
    model = caffe_pb2.NetParameter.FromString(path.read_bytes())
    (ip,) = [layer for layer in model.layer if layer.name == "ip"]
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(ip.blobs[0]), net.params["ip"][0].data)
    # Edited in Python, loaded back by crema.
    ip.blobs[1].CopyFrom(caffe.io.array_to_blobproto(np.full(4, 7.0, np.float32)))
    path.write_bytes(model.SerializeToString())
    net.copy_from(str(path))
    assert (net.params["ip"][1].data == 7).all()


def test_the_pycaffe_made_caffemodel_loads():
    net = caffe.Net(str(FORMATS / "tiny_ip.prototxt"), str(FORMATS / "tiny_ip.caffemodel"), caffe.TEST)
    np.testing.assert_array_equal(net.params["ip"][0].data, np.load(FORMATS / "tiny_ip_W.npy"))
    out = net.forward(data=np.load(FORMATS / "tiny_ip_x.npy"))["ip"]
    np.testing.assert_allclose(out, np.load(FORMATS / "tiny_ip_y.npy"), rtol=1e-6, atol=1e-6)


def test_crema_reads_and_writes_array_files(tmp_path):
    import crema

    h = np.load(FORMATS / "H_4x4.npy")
    np.testing.assert_array_equal(crema.read_array(FORMATS / "H_shape_1x1x4x4.binaryproto"), h.reshape(1, 1, 4, 4))
    legacy = crema.read_array(str(FORMATS / "H_legacy_nchw_1x1x4x4.binaryproto"))
    assert legacy.shape == (1, 1, 4, 4) and legacy.dtype == np.float32
    crema.write_array(tmp_path / "H.binaryproto", h.reshape(1, 1, 4, 4))
    assert (tmp_path / "H.binaryproto").read_bytes() == (FORMATS / "H_shape_1x1x4x4.binaryproto").read_bytes()
    crema.write_array(tmp_path / "h.npy", h)
    assert (tmp_path / "h.npy").read_bytes() == (FORMATS / "H_4x4.npy").read_bytes()
    doubles = np.arange(6, dtype=np.float64).reshape(2, 3) / 3
    crema.write_array(tmp_path / "d.npy", doubles)
    back = crema.read_array(tmp_path / "d.npy")
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, doubles)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), doubles)
    with pytest.raises(crema.CremaError, match="use .npy or .binaryproto"):
        crema.write_array(tmp_path / "h.txt", h)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(crema.CremaError, match="bad.npy"):
        crema.read_array(tmp_path / "bad.npy")
