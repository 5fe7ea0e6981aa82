"""Tests of ``caffe.coord_map``: coordinate maps of single layers, the crops of the FCN nets (the offsets their
published prototxts carry), the errors, and a cropped net that crema builds and runs."""

import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.coord_map import (
    PASS_THROUGH_LAYERS,
    AxisMismatchException,
    UndefinedMapException,
    compose,
    conv_params,
    coord_map,
    coord_map_from_to,
    crop,
    crop_params,
    inverse,
)

LEARNED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]


# The VGG16 FCNs as shelhamer/fcn.berkeleyvision.org's voc-fcn*/net.py write them.
def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad, param=LEARNED)
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks=2, stride=2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def upsample(bottom, ks, stride):
    return L.Deconvolution(
        bottom,
        convolution_param=dict(num_output=21, kernel_size=ks, stride=stride, bias_term=False),
        param=[dict(lr_mult=0)],
    )


def score(bottom):
    return L.Convolution(bottom, num_output=21, kernel_size=1, pad=0, param=LEARNED)


def vgg16_fcn_base():
    """FCN's VGG16 trunk, data to score_fr: 13 convolutions (the first padded by 100), 5 poolings, fc6/fc7 as
    convolutions."""
    n = caffe.NetSpec()
    n.data, n.label = L.Python(module="voc_layers", layer="SBDDSegDataLayer", ntop=2, param_str="{}")
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 64, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, 64)
    n.pool1 = max_pool(n.relu1_2)
    n.conv2_1, n.relu2_1 = conv_relu(n.pool1, 128)
    n.conv2_2, n.relu2_2 = conv_relu(n.relu2_1, 128)
    n.pool2 = max_pool(n.relu2_2)
    n.conv3_1, n.relu3_1 = conv_relu(n.pool2, 256)
    n.conv3_2, n.relu3_2 = conv_relu(n.relu3_1, 256)
    n.conv3_3, n.relu3_3 = conv_relu(n.relu3_2, 256)
    n.pool3 = max_pool(n.relu3_3)
    n.conv4_1, n.relu4_1 = conv_relu(n.pool3, 512)
    n.conv4_2, n.relu4_2 = conv_relu(n.relu4_1, 512)
    n.conv4_3, n.relu4_3 = conv_relu(n.relu4_2, 512)
    n.pool4 = max_pool(n.relu4_3)
    n.conv5_1, n.relu5_1 = conv_relu(n.pool4, 512)
    n.conv5_2, n.relu5_2 = conv_relu(n.relu5_1, 512)
    n.conv5_3, n.relu5_3 = conv_relu(n.relu5_2, 512)
    n.pool5 = max_pool(n.relu5_3)
    n.fc6, n.relu6 = conv_relu(n.pool5, 4096, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu(n.drop6, 4096, ks=1, pad=0)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = score(n.drop7)
    return n


def fcn32s():
    n = vgg16_fcn_base()
    n.upscore = upsample(n.score_fr, 64, 32)
    n.score = crop(n.upscore, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(normalize=False, ignore_label=255))
    return n


def fcn16s():
    n = vgg16_fcn_base()
    n.upscore2 = upsample(n.score_fr, 4, 2)
    n.score_pool4 = score(n.pool4)
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore16 = upsample(n.fuse_pool4, 32, 16)
    n.score = crop(n.upscore16, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(normalize=False, ignore_label=255))
    return n


def fcn8s():
    n = fcn16s()
    n.upscore_pool4 = upsample(n.fuse_pool4, 4, 2)
    n.score_pool3 = score(n.pool3)
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = upsample(n.fuse_pool3, 16, 8)
    n.score = crop(n.upscore8, n.data)
    return n


def crop_param_of(proto, name):
    layer = next(layer for layer in proto.layer if layer.name == name)
    assert layer.type == "Crop"
    return layer.crop_param.axis, list(layer.crop_param.offset)


# The crop_param of each Crop layer in voc-fcn{32,16,8}s/train.prototxt of fcn.berkeleyvision.org.
@pytest.mark.parametrize(
    "make, crops",
    [
        (fcn32s, {"score": 19}),
        (fcn16s, {"score_pool4c": 5, "score": 27}),
        (fcn8s, {"score_pool4c": 5, "score_pool3c": 9, "score": 31}),
    ],
    ids=["fcn32s", "fcn16s", "fcn8s"],
)
def test_fcn_offsets_match_the_published_prototxts(make, crops):
    proto = make().to_proto()
    for name, offset in crops.items():
        assert crop_param_of(proto, name) == (2, [offset]), name


def test_fcn32s_map_from_upscore_to_data():
    n = vgg16_fcn_base()
    n.upscore = upsample(n.score_fr, 64, 32)
    axis, scale, shift = coord_map_from_to(n.upscore, n.data)
    assert axis == 1
    assert scale.tolist() == [1.0]
    assert shift.tolist() == [-19.0]
    # Backwards: data's pixel 0 is upscore's pixel 19.
    assert coord_map_from_to(n.data, n.upscore)[2].tolist() == [19.0]


def coord_net_spec(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0):
    """data -> conv -> max pool -> deconv (kernel twice its stride), as pycaffe's own coord_map tests build."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool, pad=0)
    dks = [2 * s for s in dstride] if isinstance(dstride, list) else 2 * dstride
    n.deconv = L.Deconvolution(
        n.pool, convolution_param=dict(num_output=10, kernel_size=dks, stride=dstride, pad=dpad)
    )
    return n


def as_lists(coord):
    axis, scale, shift = coord
    return axis, np.array(scale, ndmin=1).tolist(), np.array(shift, ndmin=1).tolist()


def test_single_layer_maps():
    data = L.Input(shape=dict(dim=[1, 1, 9, 9]))
    # Output y reads inputs 2y-1 .. 2y+3, centred on 2y+1: y = (x - 1) / 2.
    conv = L.Convolution(data, num_output=1, kernel_size=5, stride=2, pad=1)
    assert as_lists(coord_map(conv.fn)) == (1, [0.5], [-0.5])
    assert as_lists(coord_map_from_to(conv, data)) == (1, [2.0], [1.0])
    pool = L.Pooling(data, kernel_size=3, stride=2)
    assert as_lists(coord_map(pool.fn)) == (1, [0.5], [-0.5])
    # Dilation 2 spreads a 3-tap kernel over 5 inputs.
    dilated = L.Convolution(data, num_output=1, kernel_size=3, dilation=2)
    assert as_lists(coord_map(dilated.fn)) == (1, [1.0], [-2.0])
    assert [a.tolist() if hasattr(a, "tolist") else a for a in conv_params(dilated.fn)] == [1, [1.0], [5.0], [0.0]]


def test_deconvolution_inverts_the_same_convolution():
    data = L.Input(shape=dict(dim=[1, 1, 9, 9]))
    params = dict(num_output=1, kernel_size=4, stride=2, pad=1)
    conv = L.Convolution(data, **params)
    deconv = L.Deconvolution(data, convolution_param=params)
    assert as_lists(coord_map(deconv.fn)) == as_lists(inverse(coord_map(conv.fn))) == (1, [2.0], [0.5])
    assert as_lists(compose(coord_map(deconv.fn), coord_map(conv.fn))) == (1, [1.0], [0.0])


def test_conv_pool_deconv():
    # 2x down then 2x up lines up exactly; 4x and 4x is one pixel off.
    n = coord_net_spec()
    assert as_lists(coord_map_from_to(n.deconv, n.data)) == (1, [1.0], [0.0])
    n = coord_net_spec(pool=4, dstride=4)
    assert as_lists(coord_map_from_to(n.deconv, n.data)) == (1, [1.0], [-1.0])
    # Padding the convolution moves the output right; padding the deconvolution moves it back.
    n = coord_net_spec(pad=3)
    assert as_lists(coord_map_from_to(n.deconv, n.data)) == (1, [1.0], [-3.0])
    n = coord_net_spec(pad=3, dpad=3)
    assert as_lists(coord_map_from_to(n.deconv, n.data)) == (1, [1.0], [0.0])


def test_in_place_relu_and_1x1_conv_pass_through():
    n = coord_net_spec(pool=4, dstride=4)
    n.relu = L.ReLU(n.deconv, in_place=True)
    n.conv1x1 = L.Convolution(n.relu, num_output=10, kernel_size=1)
    expected = as_lists(coord_map_from_to(n.deconv, n.data))
    assert as_lists(coord_map_from_to(n.relu, n.data)) == expected
    assert as_lists(coord_map_from_to(n.conv1x1, n.data)) == expected
    assert coord_map(n.relu.fn) == (None, 1, 0)
    assert "ReLU" in PASS_THROUGH_LAYERS and "Concat" not in PASS_THROUGH_LAYERS
    # A top maps to itself; crop then takes Caffe's default axis.
    assert coord_map_from_to(n.relu, n.relu) == (None, 1, 0)
    assert crop(n.relu, n.deconv).fn.params["crop_param"] == dict(axis=2, offset=[0])


def test_channel_concat_passes_through():
    n = coord_net_spec(pad=2)
    n.cat = L.Concat(n.deconv, n.deconv)
    assert as_lists(coord_map_from_to(n.cat, n.data)) == (1, [1.0], [-2.0])


def test_anisotropic_and_legacy_2d_parameters():
    n = coord_net_spec(ks=[3, 5], stride=[1, 2], pad=[0, 10], dstride=[2, 4])
    axis, scale, shift = coord_map_from_to(n.deconv, n.data)
    h = coord_net_spec(ks=3, stride=1, pad=0, dstride=2)
    w = coord_net_spec(ks=5, stride=2, pad=10, dstride=4)
    assert axis == 1
    assert scale.tolist() == [coord_map_from_to(h.deconv, h.data)[1][0], coord_map_from_to(w.deconv, w.data)[1][0]]
    assert shift.tolist() == [coord_map_from_to(h.deconv, h.data)[2][0], coord_map_from_to(w.deconv, w.data)[2][0]]
    data = L.Input(shape=dict(dim=[1, 1, 9, 9]))
    legacy = L.Convolution(data, num_output=1, kernel_h=3, kernel_w=5, stride_h=1, stride_w=2, pad_h=0, pad_w=1)
    modern = L.Convolution(data, num_output=1, kernel_size=[3, 5], stride=[1, 2], pad=[0, 1])
    assert as_lists(coord_map(legacy.fn)) == as_lists(coord_map(modern.fn)) == (1, [1.0, 0.5], [-1.0, -0.5])


def test_crop_through_a_crop():
    n = coord_net_spec(pool=4, dstride=4)
    n.cropped = L.Crop(n.deconv, n.data, crop_param=dict(axis=2, offset=3))
    assert crop_params(n.cropped.fn)[1].tolist() == [3]
    # Only the first bottom is walked: the second lends nothing but its shape.
    assert as_lists(coord_map_from_to(n.cropped, n.data)) == (1, [1.0], [2.0])
    layer = crop(n.deconv, n.data)
    assert layer.fn.type_name == "Crop" and layer.fn.inputs == (n.deconv, n.data)
    assert layer.fn.params == dict(crop_param=dict(axis=2, offset=[1]))


def test_layers_without_a_map():
    data = L.Input(shape=dict(dim=[1, 1, 9, 9]))
    with pytest.raises(UndefinedMapException, match="InnerProduct"):
        coord_map(L.InnerProduct(data, num_output=2, name="ip").fn)
    with pytest.raises(UndefinedMapException, match="global pooling"):
        coord_map(L.Pooling(data, global_pooling=True).fn)
    with pytest.raises(UndefinedMapException, match="spatial axis"):
        coord_map(L.Concat(data, data, axis=2).fn)
    with pytest.raises(UndefinedMapException, match="kernel_h and kernel_w"):
        coord_map(L.Convolution(data, num_output=1, kernel_h=3).fn)


def test_unconnected_tops():
    n = coord_net_spec()
    n.ip = L.InnerProduct(n.deconv, num_output=10, name="ip")
    with pytest.raises(RuntimeError, match='share no ancestor.*InnerProduct layer "ip"'):
        coord_map_from_to(n.ip, n.data)
    other = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    with pytest.raises(RuntimeError, match="not connected"):
        crop(n.deconv, other)
    with pytest.raises(TypeError, match="not a top"):
        crop(n.deconv, "data")


def test_impossible_crops():
    n = coord_net_spec(pool=3, dstride=2)
    with pytest.raises(AssertionError, match="different scale"):
        crop(n.deconv, n.data)
    n = coord_net_spec(dpad=10)
    with pytest.raises(AssertionError, match="outside"):
        crop(n.deconv, n.data)
    n = coord_net_spec(ks=2)
    with pytest.raises(AssertionError, match="whole number"):
        crop(n.data, n.conv)


def test_axis_mismatch():
    with pytest.raises(AxisMismatchException, match="axis 1.*axis 2"):
        compose((1, 1, 0), (2, 1, 0))
    n = coord_net_spec()
    n.width_only = L.Crop(n.conv, n.data, crop_param=dict(axis=3, offset=1), name="width_only")
    with pytest.raises(AxisMismatchException, match='Convolution'):
        coord_map_from_to(n.width_only, n.data)


def test_cropped_fcn_runs_in_crema(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    filler = dict(type="gaussian", std=0.1)
    n.conv1 = L.Convolution(n.data, num_output=4, kernel_size=3, pad=10, weight_filler=filler)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=4, kernel_size=3, weight_filler=filler)
    n.score_fr = L.Convolution(n.conv2, num_output=2, kernel_size=1, weight_filler=filler)
    n.upscore = L.Deconvolution(
        n.score_fr, convolution_param=dict(num_output=2, kernel_size=4, stride=2, bias_term=False, weight_filler=filler)
    )
    n.score = crop(n.upscore, n.data)
    # 32 + 2*10 - 2 = 50, pooled to 25, 23 after conv2, (23 - 1) * 2 + 4 = 48 upsampled; data starts at 8.
    assert n.score.fn.params["crop_param"] == dict(axis=2, offset=[8])
    path = tmp_path / "fcn.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["data"].data[...] = np.random.RandomState(0).randn(1, 3, 32, 32)
    out = net.forward()
    assert net.blobs["upscore"].data.shape == (1, 2, 48, 48)
    assert out["score"].shape == (1, 2, 32, 32)
    np.testing.assert_array_equal(out["score"], net.blobs["upscore"].data[:, :, 8:40, 8:40])
