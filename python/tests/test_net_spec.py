"""Tests of ``caffe.net_spec``: pycaffe's NetSpec API (``caffe.NetSpec``, ``caffe.layers``, ``caffe.params``)
writes the prototxt pycaffe writes, and crema builds and runs it."""

from collections import OrderedDict

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.net_spec import Function, Top, to_proto
from caffe.proto import caffe_pb2


def reparsed(proto):
    """The NetParameter read back from ``str(proto)``, as crema and Caffe read a written prototxt."""
    return text_format.Merge(str(proto), caffe_pb2.NetParameter())


def by_name(proto):
    return {layer.name: layer for layer in proto.layer}


# The net of Caffe's examples/01-learning-lenet notebook, as written there.
def lenet(lmdb, batch_size):
    n = caffe.NetSpec()
    n.data, n.label = L.Data(
        batch_size=batch_size, backend=P.Data.LMDB, source=lmdb, transform_param=dict(scale=1.0 / 255), ntop=2
    )
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


# What pycaffe writes for lenet('mnist/mnist_train_lmdb', 64): the notebook's lenet_auto_train.prototxt.
LENET_PROTOTXT = """
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00392156862745 }
  data_param { source: "mnist/mnist_train_lmdb" batch_size: 64 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "score" type: "InnerProduct" bottom: "fc1" top: "score"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
"""


def test_lenet_train_net_field_by_field():
    proto = lenet("mnist/mnist_train_lmdb", 64)
    assert isinstance(proto, caffe_pb2.NetParameter)
    assert [layer.name for layer in proto.layer] == [
        "data", "conv1", "pool1", "conv2", "pool2", "fc1", "relu1", "score", "loss"
    ]
    layers = by_name(proto)

    data = layers["data"]
    assert data.type == "Data"
    assert list(data.bottom) == [] and list(data.top) == ["data", "label"]
    assert data.data_param.source == "mnist/mnist_train_lmdb"
    assert data.data_param.batch_size == 64
    assert data.data_param.backend == caffe_pb2.DataParameter.LMDB
    assert data.transform_param.scale == pytest.approx(1.0 / 255)
    # Keywords of the type's own message go there, not into transform_param, and vice versa.
    assert not data.HasField("convolution_param")

    conv1 = layers["conv1"]
    assert conv1.type == "Convolution"
    assert list(conv1.bottom) == ["data"] and list(conv1.top) == ["conv1"]
    assert conv1.convolution_param.num_output == 20
    assert list(conv1.convolution_param.kernel_size) == [5]
    assert conv1.convolution_param.weight_filler.type == "xavier"
    assert not conv1.convolution_param.HasField("bias_filler")

    pool1 = layers["pool1"]
    assert list(pool1.bottom) == ["conv1"] and list(pool1.top) == ["pool1"]
    assert pool1.pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert (pool1.pooling_param.kernel_size, pool1.pooling_param.stride) == (2, 2)

    assert list(layers["conv2"].bottom) == ["pool1"]
    assert layers["conv2"].convolution_param.num_output == 50
    assert layers["fc1"].type == "InnerProduct"
    assert list(layers["fc1"].bottom) == ["pool2"]
    assert layers["fc1"].inner_product_param.num_output == 500
    assert layers["fc1"].inner_product_param.weight_filler.type == "xavier"

    # In place: the ReLU's top is its bottom, and layers over n.relu1 read that blob.
    relu1 = layers["relu1"]
    assert relu1.type == "ReLU"
    assert list(relu1.bottom) == ["fc1"] and list(relu1.top) == ["fc1"]
    assert list(layers["score"].bottom) == ["fc1"]
    assert layers["score"].inner_product_param.num_output == 10

    loss = layers["loss"]
    assert loss.type == "SoftmaxWithLoss"
    assert list(loss.bottom) == ["score", "label"] and list(loss.top) == ["loss"]


def test_lenet_train_net_is_what_pycaffe_writes_and_its_text_reads_back():
    proto = lenet("mnist/mnist_train_lmdb", 64)
    expected = text_format.Merge(LENET_PROTOTXT, caffe_pb2.NetParameter())
    assert proto == expected
    assert reparsed(proto) == proto
    assert str(proto).startswith('layer {\n  name: "data"\n  type: "Data"\n')


def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
    """FCN's helper (voc-fcn32s/net.py)."""
    conv = L.Convolution(
        bottom,
        kernel_size=ks,
        stride=stride,
        num_output=nout,
        pad=pad,
        param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
    )
    return conv, L.ReLU(conv, in_place=True)


def fcn_style(split):
    n = caffe.NetSpec()
    pydata_params = dict(split=split, mean=(104.00699, 116.66877, 122.67892), seed=1337)
    n.data, n.label = L.Python(module="m", layer="L", ntop=2, param_str=str(pydata_params))
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 64, pad=100)
    n.pool1 = L.Pooling(n.relu1_1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc6, n.relu6 = conv_relu(n.pool1, 128, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(
        n.drop6,
        num_output=21,
        kernel_size=1,
        pad=0,
        param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
    )
    n.upscore = L.Deconvolution(
        n.score_fr,
        convolution_param=dict(num_output=21, kernel_size=64, stride=32, bias_term=False),
        param=[dict(lr_mult=0)],
    )
    n.score = L.Crop(n.upscore, n.data, crop_param=dict(axis=2, offset=[19, 19]))
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(normalize=False, ignore_label=255))
    n.accuracy = L.Accuracy(n.score, n.label, include=dict(phase=caffe.TEST))
    return n.to_proto()


def test_fcn_style_net():
    proto = fcn_style("val")
    assert [layer.name for layer in proto.layer] == [
        "data", "conv1_1", "relu1_1", "pool1", "fc6", "relu6", "drop6",
        "score_fr", "upscore", "score", "loss", "accuracy",
    ]
    layers = by_name(proto)

    data = layers["data"]
    assert data.type == "Python" and list(data.top) == ["data", "label"]
    assert data.python_param.module == "m" and data.python_param.layer == "L"
    assert eval(data.python_param.param_str) == dict(
        split="val", mean=(104.00699, 116.66877, 122.67892), seed=1337
    )

    conv = layers["conv1_1"]
    assert list(conv.convolution_param.pad) == [100]
    assert list(conv.convolution_param.kernel_size) == [3]
    assert list(conv.convolution_param.stride) == [1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert list(layers["relu1_1"].top) == ["conv1_1"]
    assert list(layers["pool1"].bottom) == ["conv1_1"]

    # Two in-place layers in a row: all three work on the fc6 blob.
    assert list(layers["relu6"].bottom) == ["fc6"] == list(layers["relu6"].top)
    assert list(layers["drop6"].bottom) == ["fc6"] == list(layers["drop6"].top)
    assert layers["drop6"].dropout_param.dropout_ratio == pytest.approx(0.5)
    assert list(layers["score_fr"].bottom) == ["fc6"]

    upscore = layers["upscore"]
    assert upscore.type == "Deconvolution"
    assert upscore.convolution_param.num_output == 21
    assert list(upscore.convolution_param.kernel_size) == [64]
    assert list(upscore.convolution_param.stride) == [32]
    assert upscore.convolution_param.HasField("bias_term") and upscore.convolution_param.bias_term is False
    assert len(upscore.param) == 1 and upscore.param[0].lr_mult == 0

    score = layers["score"]
    assert score.type == "Crop" and list(score.bottom) == ["upscore", "data"]
    assert score.crop_param.axis == 2 and list(score.crop_param.offset) == [19, 19]

    loss = layers["loss"]
    assert list(loss.bottom) == ["score", "label"]
    assert loss.loss_param.ignore_label == 255
    assert loss.loss_param.HasField("normalize") and loss.loss_param.normalize is False

    accuracy = layers["accuracy"]
    assert accuracy.type == "Accuracy" and list(accuracy.bottom) == ["score", "label"]
    assert len(accuracy.include) == 1 and accuracy.include[0].phase == caffe_pb2.TEST == 1
    assert len(accuracy.exclude) == 0

    assert reparsed(proto) == proto


def test_unnamed_tops_get_pycaffe_auto_names():
    data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    left = L.Convolution(data, num_output=4, kernel_size=1)
    relu = L.ReLU(left, in_place=True)
    right = L.Convolution(data, num_output=4, kernel_size=1)
    total = L.Eltwise(relu, right, operation=P.Eltwise.SUM)
    proto = total.to_proto()
    assert [(layer.name, list(layer.bottom), list(layer.top)) for layer in proto.layer] == [
        ("Input1", [], ["Input1"]),
        ("Convolution1", ["Input1"], ["Convolution1"]),
        # An unnamed in-place layer is named by the counter of its type; its top stays its bottom.
        ("ReLU1", ["Convolution1"], ["Convolution1"]),
        ("Convolution2", ["Input1"], ["Convolution2"]),
        ("Eltwise1", ["Convolution1", "Convolution2"], ["Eltwise1"]),
    ]
    assert proto.layer[-1].eltwise_param.operation == caffe_pb2.EltwiseParameter.SUM
    # Module-level to_proto of several tops shares one set of names and layers.
    both = to_proto(total, right)
    assert [layer.name for layer in both.layer] == [layer.name for layer in proto.layer]


def test_netspec_names_assigned_tops_and_counts_the_rest():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    hidden = L.InnerProduct(n.data, num_output=3)  # never assigned: auto-named
    hidden2 = L.InnerProduct(hidden, num_output=3)
    n.out = L.Sigmoid(hidden2)
    proto = n.to_proto()
    assert [(layer.name, list(layer.bottom), list(layer.top)) for layer in proto.layer] == [
        ("data", [], ["data"]),
        ("InnerProduct1", ["data"], ["InnerProduct1"]),
        ("InnerProduct2", ["InnerProduct1"], ["InnerProduct2"]),
        ("out", ["InnerProduct2"], ["out"]),
    ]
    # A layer with several tops, only some of them assigned, is named after its first top.
    n2 = caffe.NetSpec()
    first, n2.second = L.Slice(L.Input(shape=dict(dim=[2, 4])), slice_point=[1], ntop=2)
    n2.use = L.Sigmoid(first)
    assert [(layer.name, list(layer.top)) for layer in n2.to_proto().layer] == [
        ("Input1", ["Input1"]),
        ("Slice1", ["Slice1", "second"]),
        ("use", ["use"]),
    ]


def test_layers_come_in_bottom_order_not_assignment_order():
    data = L.Input(shape=dict(dim=[1, 2]))
    relu = L.ReLU(data)
    n = caffe.NetSpec()
    n.relu = relu
    n.data = data
    n.sig = L.Sigmoid(data)
    assert [layer.name for layer in n.to_proto().layer] == ["data", "relu", "sig"]
    assert list(n.tops) == ["relu", "data", "sig"]


def test_ntop_zero_gives_a_layer_without_tops():
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[2, 3]), dict(dim=[2])], ntop=2)
    n.silence = L.Silence(n.label, ntop=0)
    assert isinstance(n.silence, Function) and n.silence.tops == ()
    layers = by_name(n.to_proto())
    assert list(layers["silence"].bottom) == ["label"] and list(layers["silence"].top) == []
    assert len(layers["data"].input_param.shape) == 2
    # Unassigned, it takes its type's counter, as in pycaffe.
    proto = to_proto(L.Silence(L.Input(shape=dict(dim=[1])), ntop=0))
    assert [(layer.name, list(layer.top)) for layer in proto.layer] == [("Input1", ["Input1"]), ("Silence1", [])]


def test_ntop_gives_a_tuple_of_tops():
    tops = L.Slice(L.Input(shape=dict(dim=[3, 4])), slice_point=[1, 2], ntop=3)
    assert isinstance(tops, tuple) and len(tops) == 3
    assert all(isinstance(top, Top) and top.fn is tops[0].fn for top in tops)
    assert [top.n for top in tops] == [0, 1, 2]


def test_layer_parameter_fields_and_repeated_values():
    data = L.Input(shape=dict(dim=[1, 2]))
    top = L.InnerProduct(
        data,
        name="explicit",
        num_output=2,
        loss_weight=0.5,  # one value for a repeated field: a one-element list
        param=dict(lr_mult=3, name="shared"),  # one dict for a repeated message: one message
        propagate_down=[False],
        exclude=[dict(phase=caffe.TRAIN), dict(stage=["a", "b"])],
        phase=caffe.TEST,
    )
    (layer,) = [layer for layer in to_proto(top).layer if layer.type == "InnerProduct"]
    assert layer.name == "explicit"  # an explicit name beats the generated one
    assert list(layer.top) == ["InnerProduct1"]
    assert list(layer.loss_weight) == [0.5]
    assert [(p.lr_mult, p.name) for p in layer.param] == [(3, "shared")]
    assert list(layer.propagate_down) == [False]
    assert layer.exclude[0].phase == caffe_pb2.TRAIN and list(layer.exclude[1].stage) == ["a", "b"]
    assert layer.phase == caffe_pb2.TEST


def test_enum_fields_take_names_or_numbers():
    data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    by_constant = L.Pooling(data, pool=P.Pooling.AVE, kernel_size=2)
    by_name_ = L.Pooling(data, pool="AVE", kernel_size=2)
    by_number = L.Pooling(data, pool=1, kernel_size=2)
    layers = to_proto(by_constant, by_name_, by_number).layer
    assert [layer.pooling_param.pool for layer in layers[1:]] == [caffe_pb2.PoolingParameter.AVE] * 3
    with pytest.raises(ValueError, match="pool.*'AVERAGE'"):
        L.Pooling(data, pool="AVERAGE")
    with pytest.raises(ValueError, match="pool"):
        L.Pooling(data, pool=7)


def test_params_gives_the_enums_of_each_parameter_message():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert P.Pooling.STOCHASTIC == caffe_pb2.PoolingParameter.STOCHASTIC
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM
    assert P.Eltwise.PROD == caffe_pb2.EltwiseParameter.PROD
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB
    assert P.Loss.VALID == caffe_pb2.LossParameter.VALID
    assert P.Convolution.CAFFE == caffe_pb2.ConvolutionParameter.CAFFE
    with pytest.raises(AttributeError, match="MAXIMUM"):
        P.Pooling.MAXIMUM
    with pytest.raises(AttributeError, match="NoSuchParameter"):
        P.NoSuch.VALUE


def test_a_keyword_that_names_no_field_is_reported_with_its_name():
    data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    with pytest.raises(AttributeError, match="'kernal_size'"):
        L.Convolution(data, kernal_size=3)
    with pytest.raises(AttributeError, match="'tpye'"):
        L.Convolution(data, kernel_size=3, weight_filler=dict(tpye="xavier"))
    with pytest.raises(AttributeError, match="'lr_mul'"):
        L.Convolution(data, kernel_size=3, param=[dict(lr_mult=1), dict(lr_mul=2)])
    with pytest.raises(AttributeError, match="'no_such_param'"):
        L.ReLU(data, no_such_param=dict(a=1))
    # Deconvolution has no message of its own: the error says where num_output goes.
    with pytest.raises(AttributeError, match=r"'num_output'.*convolution_param=dict"):
        L.Deconvolution(data, num_output=3)
    with pytest.raises(TypeError, match="weight_filler"):
        L.Convolution(data, weight_filler="xavier")
    with pytest.raises(TypeError, match="num_output"):
        L.Convolution(data, num_output="ten")


def test_bottoms_must_be_tops():
    pair = L.Input(shape=[dict(dim=[1]), dict(dim=[1])], ntop=2)
    with pytest.raises(TypeError, match="unpack"):
        L.Sigmoid(pair)
    with pytest.raises(ValueError, match="ntop"):
        L.Input(ntop=-1)
    n = caffe.NetSpec()
    n.pair = pair
    with pytest.raises(TypeError, match="'pair'"):
        n.to_proto()


def test_netspec_items_and_tops():
    n = caffe.NetSpec()
    n["data"] = L.Input(shape=dict(dim=[1, 2]))
    n.out = L.Sigmoid(n["data"])
    assert n["data"] is n.data and n["out"] is n.out
    assert isinstance(n.tops, OrderedDict) and list(n.tops) == ["data", "out"]
    assert n.keys() == ["data", "out"] and n.vals() == [n.data, n.out]
    assert "data" in n and "nothing" not in n
    assert not hasattr(n, "nothing")
    with pytest.raises(KeyError):
        n["nothing"]
    with pytest.raises(KeyError):  # pycaffe's error for a missing attribute
        n.nothing
    assert [layer.name for layer in n.to_proto().layer] == ["data", "out"]
    del n["out"]
    assert list(n.tops) == ["data"]


def test_update_merges_parameters():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.ip = L.InnerProduct(n.data, num_output=2)
    n.update("ip", dict(num_output=5, bias_term=False))
    layer = by_name(n.to_proto())["ip"]
    assert layer.inner_product_param.num_output == 5 and layer.inner_product_param.bias_term is False
    with pytest.raises(AttributeError, match="'bogus'"):
        n.update("ip", dict(bogus=1))
    assert n.ip.fn.params == dict(num_output=5, bias_term=False)


def test_a_deep_chain_needs_no_deep_recursion():
    top = L.Input(shape=dict(dim=[1, 1]))
    for _ in range(3000):
        top = L.ReLU(top)
    proto = top.to_proto()
    assert len(proto.layer) == 3001
    assert proto.layer[-1].name == "ReLU3000" and list(proto.layer[-1].bottom) == ["ReLU2999"]


def test_caffe_exports_the_net_spec_api():
    from caffe import net_spec

    assert caffe.NetSpec is net_spec.NetSpec
    assert caffe.layers is net_spec.layers and caffe.params is net_spec.params
    assert caffe.to_proto is net_spec.to_proto
    assert net_spec.param_name_dict()["InnerProduct"] == "inner_product"
    assert net_spec.param_name_dict()["HDF5Data"] == "hdf5_data"
    assert net_spec.param_name_dict()["Python"] == "python"


def test_crema_builds_and_runs_a_generated_prototxt(tmp_path):
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[2, 1, 8, 8]), dict(dim=[2])], ntop=2)
    n.conv = L.Convolution(
        n.data,
        num_output=3,
        kernel_size=3,
        weight_filler=dict(type="xavier"),
        bias_filler=dict(type="constant", value=0.1),
        param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
    )
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.relu = L.ReLU(n.pool, in_place=True)
    n.score = L.InnerProduct(n.relu, num_output=4, weight_filler=dict(type="gaussian", std=0.1))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    n.prob = L.Softmax(n.score, include=dict(phase=caffe.TEST))
    n.acc = L.Accuracy(n.score, n.label, include=dict(phase=caffe.TEST))
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))

    net = caffe.Net(str(path), caffe.TEST)
    for name in ["data", "label", "conv", "pool", "score", "loss", "prob", "acc"]:
        assert name in net.blobs
    assert "relu" not in net.blobs  # in place: it wrote into pool
    assert net.blobs["conv"].data.shape == (2, 3, 6, 6)
    assert net.blobs["pool"].data.shape == (2, 3, 3, 3)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.random((2, 1, 8, 8))
    net.blobs["label"].data[...] = [1, 3]
    out = net.forward()
    assert out["prob"].shape == (2, 4)
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(out["loss"]) and out["loss"] > 0
    assert out["acc"] == pytest.approx(np.mean(out["prob"].argmax(axis=1) == [1, 3]))

    # include=dict(phase=TEST) keeps those layers out of the TRAIN net.
    train = caffe.Net(str(path), caffe.TRAIN)
    assert "prob" not in train.blobs and "acc" not in train.blobs and "loss" in train.blobs
