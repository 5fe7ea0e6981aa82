"""Tests of ``caffe.io``: message conversions, image loading, resizing, oversampling and the Transformer, each
checked against values worked out here with plain numpy (or by hand)."""

import pathlib
import re
import struct
import zlib

import numpy as np
import pytest

from caffe import io as caffe_io
from caffe.proto import caffe_pb2

EXAMPLE_PNG = (
    pathlib.Path(__file__).resolve().parents[2] / "examples/imbalanced-segmentation/images/test_1_truth.png"
)


def write_png(path, pixels):
    """Writes uint8 ``pixels`` (H x W grey, H x W x 2 grey+alpha, H x W x 3 RGB or H x W x 4 RGBA) as an 8-bit
    PNG, built by hand so the test needs no image library."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    # Each scanline starts with its filter type; 0 stores the bytes as they are.
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(png)
    return path


def as_loaded(pixels):
    """What pycaffe's load_image gives for uint8 ``pixels``: divided by 255 in float64, then float32."""
    return (np.asarray(pixels, dtype=np.uint8) / 255.0).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# BlobProto


def test_blobproto_round_trip_uses_shape_dims(rng):
    arr = rng.standard_normal((2, 3, 4)).astype(np.float32)
    blob = caffe_io.array_to_blobproto(arr)
    assert list(blob.shape.dim) == [2, 3, 4]
    assert not blob.HasField("num")
    np.testing.assert_array_equal(np.array(blob.data, dtype=np.float32), arr.ravel())
    back = caffe_io.blobproto_to_array(blob)
    assert back.dtype == np.float32
    assert back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr)


def test_blobproto_round_trip_through_bytes(rng):
    arr = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    parsed = caffe_pb2.BlobProto()
    parsed.ParseFromString(caffe_io.array_to_blobproto(arr).SerializeToString())
    np.testing.assert_array_equal(caffe_io.blobproto_to_array(parsed), arr)


def test_blobproto_of_other_ranks():
    vector = np.arange(5, dtype=np.float64)
    np.testing.assert_array_equal(caffe_io.blobproto_to_array(caffe_io.array_to_blobproto(vector)), vector)
    scalar = np.array(2.5)
    back = caffe_io.blobproto_to_array(caffe_io.array_to_blobproto(scalar))
    assert back.shape == ()
    assert back == np.float32(2.5)


def test_array_to_blobproto_flattens_in_c_order():
    # A transposed (non-contiguous) array is written in its logical order, as pycaffe's arr.flat.
    arr = np.arange(6, dtype=np.float32).reshape(2, 3).T
    blob = caffe_io.array_to_blobproto(arr)
    assert list(blob.shape.dim) == [3, 2]
    assert list(blob.data) == [0, 3, 1, 4, 2, 5]


def test_array_to_blobproto_rounds_to_float32():
    blob = caffe_io.array_to_blobproto(np.array([0.1]))
    assert blob.data[0] == float(np.float32(0.1))


def test_blobproto_legacy_4d_shape():
    blob = caffe_pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 2, 3, 1, 2
    blob.data.extend(range(12))
    back = caffe_io.blobproto_to_array(blob)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, np.arange(12, dtype=np.float32).reshape(2, 3, 1, 2))


def test_blobproto_diff(rng):
    arr = rng.standard_normal((2, 3)).astype(np.float32)
    diff = rng.standard_normal((2, 3)).astype(np.float32)
    blob = caffe_io.array_to_blobproto(arr, diff)
    np.testing.assert_array_equal(caffe_io.blobproto_to_array(blob), arr)
    back = caffe_io.blobproto_to_array(blob, return_diff=True)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, diff)
    # Without a diff, none is written.
    assert len(caffe_io.array_to_blobproto(arr).diff) == 0


def test_blobproto_legacy_diff():
    blob = caffe_pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 2, 2
    blob.data.extend([0, 0, 0, 0])
    blob.diff.extend([1, 2, 3, 4])
    back = caffe_io.blobproto_to_array(blob, return_diff=True)
    np.testing.assert_array_equal(back, np.array([[[[1, 2], [3, 4]]]], dtype=np.float32))


def test_array_to_blobproto_refuses_mismatched_diff():
    with pytest.raises(ValueError, match="diff shape"):
        caffe_io.array_to_blobproto(np.zeros((2, 3)), np.zeros((3, 2)))


def test_arraylist_round_trip(rng):
    arrays = [
        rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
        rng.standard_normal((7,)).astype(np.float32),
        rng.standard_normal((3, 1)).astype(np.float32),
    ]
    serialized = caffe_io.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(serialized, bytes)
    vector = caffe_pb2.BlobProtoVector()
    vector.ParseFromString(serialized)
    assert [list(b.shape.dim) for b in vector.blobs] == [[2, 3, 4, 5], [7], [3, 1]]
    back = caffe_io.blobprotovector_str_to_arraylist(serialized)
    assert len(back) == 3
    for got, want in zip(back, arrays):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    # The old misspelt name stays available.
    assert caffe_io.arraylist_to_blobprotovecor_str(arrays) == serialized


def test_empty_arraylist():
    assert caffe_io.blobprotovector_str_to_arraylist(caffe_io.arraylist_to_blobprotovector_str([])) == []


# Datum


def test_datum_uint8_round_trip_with_label(rng):
    arr = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    datum = caffe_io.array_to_datum(arr, label=7)
    assert (datum.channels, datum.height, datum.width) == (3, 4, 5)
    assert datum.data == arr.tobytes()
    assert len(datum.float_data) == 0
    assert datum.label == 7
    back = caffe_io.datum_to_array(datum)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, arr)
    back[0, 0, 0] = 1  # pycaffe's array is writable
    parsed = caffe_pb2.Datum()
    parsed.ParseFromString(datum.SerializeToString())
    np.testing.assert_array_equal(caffe_io.datum_to_array(parsed), arr)


def test_datum_uint8_non_contiguous_keeps_logical_order():
    arr = np.arange(24, dtype=np.uint8).reshape(4, 3, 2).transpose(1, 0, 2)
    datum = caffe_io.array_to_datum(arr)
    assert datum.data == np.ascontiguousarray(arr).tobytes()
    np.testing.assert_array_equal(caffe_io.datum_to_array(datum), arr)


def test_datum_float_round_trip(rng):
    arr = rng.standard_normal((2, 3, 4)).astype(np.float32)
    datum = caffe_io.array_to_datum(arr, label=np.int64(3))
    assert datum.data == b""
    np.testing.assert_array_equal(np.array(datum.float_data, dtype=np.float32), arr.ravel())
    assert datum.label == 3
    back = caffe_io.datum_to_array(datum)
    assert back.shape == (2, 3, 4)
    assert back.dtype == np.float64  # as pycaffe's astype(float)
    np.testing.assert_array_equal(back, arr.astype(np.float64))


def test_datum_without_label_leaves_it_unset():
    datum = caffe_io.array_to_datum(np.zeros((1, 2, 2), dtype=np.uint8))
    assert not datum.HasField("label")
    assert datum.label == 0


def test_datum_integer_non_uint8_goes_to_float_data():
    arr = np.arange(8, dtype=np.int32).reshape(2, 2, 2)
    datum = caffe_io.array_to_datum(arr)
    assert datum.data == b""
    assert list(datum.float_data) == list(range(8))


@pytest.mark.parametrize("shape", [(4,), (4, 5), (1, 3, 4, 5)])
def test_array_to_datum_refuses_non_3d(shape):
    with pytest.raises(ValueError, match=re.escape("Incorrect array shape.")):
        caffe_io.array_to_datum(np.zeros(shape, dtype=np.uint8))


def test_datum_to_array_refuses_encoded_datum():
    datum = caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\x89PNG....", encoded=True)
    with pytest.raises(ValueError, match="encoded"):
        caffe_io.datum_to_array(datum)


def test_datum_to_array_wrong_size_raises():
    datum = caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\x00" * 5)
    with pytest.raises(ValueError):
        caffe_io.datum_to_array(datum)


# load_image


def test_load_image_rgb_order_and_range(tmp_path):
    pixels = np.array(
        [
            [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
            [[10, 20, 30], [0, 0, 0], [255, 255, 255]],
        ],
        dtype=np.uint8,
    )
    path = write_png(tmp_path / "rgb.png", pixels)
    image = caffe_io.load_image(str(path))
    assert image.shape == (2, 3, 3)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, as_loaded(pixels))
    # Red, green, blue pixels land in channels 0, 1, 2: RGB, not Caffe's BGR.
    np.testing.assert_array_equal(image[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(image[0, 1], [0, 1, 0])
    np.testing.assert_array_equal(image[0, 2], [0, 0, 1])
    assert image.min() == 0.0 and image.max() == 1.0


def test_load_image_takes_a_path_object(tmp_path):
    pixels = np.full((2, 2, 3), 51, dtype=np.uint8)
    image = caffe_io.load_image(write_png(tmp_path / "p.png", pixels))
    np.testing.assert_array_equal(image, as_loaded(pixels))


def test_load_grey_image(tmp_path):
    pixels = np.array([[0, 64, 128], [192, 255, 7]], dtype=np.uint8)
    path = write_png(tmp_path / "grey.png", pixels)
    grey = caffe_io.load_image(str(path), color=False)
    assert grey.shape == (2, 3, 1)
    assert grey.dtype == np.float32
    np.testing.assert_array_equal(grey[:, :, 0], as_loaded(pixels))
    # A grey image loaded as colour repeats its one channel three times.
    color = caffe_io.load_image(str(path))
    assert color.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(color[:, :, c], as_loaded(pixels))


def test_load_rgba_image_drops_alpha(tmp_path):
    rgb = np.array([[[200, 100, 50], [1, 2, 3]]], dtype=np.uint8)
    alpha = np.array([[[255], [0]]], dtype=np.uint8)
    path = write_png(tmp_path / "rgba.png", np.concatenate([rgb, alpha], axis=2))
    image = caffe_io.load_image(str(path))
    assert image.shape == (1, 2, 3)
    np.testing.assert_array_equal(image, as_loaded(rgb))


def test_load_color_image_as_grey(tmp_path):
    # Pixels with R = G = B are that grey whatever the colour weights.
    pixels = np.array([[[0, 0, 0], [90, 90, 90], [255, 255, 255]]], dtype=np.uint8)
    path = write_png(tmp_path / "c.png", pixels)
    grey = caffe_io.load_image(str(path), color=False)
    assert grey.shape == (1, 3, 1)
    np.testing.assert_allclose(grey[0, :, 0], [0, 90 / 255, 1], atol=1 / 255)


def test_load_example_png():
    if not EXAMPLE_PNG.exists():
        pytest.skip(f"{EXAMPLE_PNG} is absent")
    image = caffe_io.load_image(str(EXAMPLE_PNG))
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.dtype == np.float32
    assert 0.0 <= image.min() <= image.max() <= 1.0
    grey = caffe_io.load_image(str(EXAMPLE_PNG), color=False)
    assert grey.shape == image.shape[:2] + (1,)


def test_load_missing_image_names_the_file(tmp_path):
    path = tmp_path / "no_such_image.png"
    with pytest.raises(OSError, match=re.escape(str(path))):
        caffe_io.load_image(str(path))


def test_load_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(OSError, match=re.escape(str(path))):
        caffe_io.load_image(str(path))


# resize_image


def test_resize_to_same_dims_is_identity(rng):
    im = rng.random((5, 7, 3))
    for order in (0, 1):
        out = caffe_io.resize_image(im, (5, 7), interp_order=order)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, im.astype(np.float32))


def test_resize_nearest_upsample_repeats_pixels(rng):
    im = rng.random((3, 4, 2)).astype(np.float32)
    out = caffe_io.resize_image(im, (6, 12), interp_order=0)
    expected = np.repeat(np.repeat(im, 2, axis=0), 3, axis=1)
    np.testing.assert_array_equal(out, expected)


def test_resize_nearest_downsample_takes_centre_pixels(rng):
    # Shrinking 6 -> 2 by 3: output pixel centres fall exactly on input rows/columns 1 and 4.
    im = rng.random((6, 9, 3)).astype(np.float32)
    out = caffe_io.resize_image(im, (2, 3), interp_order=0)
    np.testing.assert_array_equal(out, im[[1, 4]][:, [1, 4, 7]])


def test_resize_bilinear_2x2_to_4x4_by_hand():
    im = np.array([[0.0, 1.0], [2.0, 3.0]])[:, :, np.newaxis]
    out = caffe_io.resize_image(im, (4, 4))
    # Output centres sit at input coordinates -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]; the image is
    # 2y + x, so each value is 2y + x at those clamped coordinates.
    expected = np.array(
        [
            [0.0, 0.25, 0.75, 1.0],
            [0.5, 0.75, 1.25, 1.5],
            [1.5, 1.75, 2.25, 2.5],
            [2.0, 2.25, 2.75, 3.0],
        ]
    )
    assert out.shape == (4, 4, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=0, atol=1e-7)


def test_resize_bilinear_halving_averages_pixel_pairs(rng):
    # Halving puts each output centre midway between two input pixels: the mean of each 2 x 2 block.
    im = rng.random((4, 6, 3))
    out = caffe_io.resize_image(im, (2, 3))
    expected = im.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_resize_bilinear_multichannel_linear_ramps():
    # Bilinear interpolation reproduces a linear image exactly at the (clamped) sample points.
    height, width, channels = 5, 7, 5
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    slopes = [(1.0, 0.0), (0.0, 1.0), (0.5, -2.0), (-1.0, 3.0), (2.0, 2.0)]
    im = np.stack([a * y + b * x for a, b in slopes], axis=2)
    out_h, out_w = 3, 11
    out = caffe_io.resize_image(im, (out_h, out_w))
    assert out.shape == (out_h, out_w, channels)
    ys = np.clip((np.arange(out_h) + 0.5) * height / out_h - 0.5, 0, height - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * width / out_w - 0.5, 0, width - 1)
    for c, (a, b) in enumerate(slopes):
        expected = a * ys[:, None] + b * xs[None, :]
        np.testing.assert_allclose(out[:, :, c], expected, rtol=0, atol=1e-5)


def test_resize_channels_are_independent(rng):
    im = rng.random((4, 5, 6))
    out = caffe_io.resize_image(im, (7, 3))
    for c in range(6):
        single = caffe_io.resize_image(im[:, :, c : c + 1], (7, 3))
        np.testing.assert_array_equal(out[:, :, c : c + 1], single)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("order", [0, 1])
def test_resize_constant_image_stays_exactly_constant(channels, order):
    value = np.float32(0.1)
    im = np.full((3, 5, channels), value, dtype=np.float32)
    out = caffe_io.resize_image(im, (8, 2), interp_order=order)
    assert out.shape == (8, 2, channels)
    assert out.dtype == np.float32
    assert np.all(out == value)


def test_resize_flat_region_stays_exactly_flat():
    im = np.full((6, 8, 1), 0.3, dtype=np.float32)
    im[:, 4:] = 0.7
    out = caffe_io.resize_image(im, (9, 16))
    # Output columns whose two neighbours both lie in the left half.
    assert np.all(out[:, :7] == np.float32(0.3))
    assert np.all(out[:, 9:] == np.float32(0.7))


def test_resize_refuses_unsupported_order():
    with pytest.raises(ValueError, match="interp_order"):
        caffe_io.resize_image(np.zeros((2, 2, 1)) + np.eye(2)[:, :, None], (3, 3), interp_order=3)


# oversample


def test_oversample_order_and_mirrors():
    images = [np.arange(6 * 8 * 2, dtype=np.float64).reshape(6, 8, 2) + 1000 * n for n in range(2)]
    crops = caffe_io.oversample(images, (4, 5))
    assert crops.shape == (20, 4, 5, 2)
    assert crops.dtype == np.float32
    for n, im in enumerate(images):
        # Top-left, top-right, bottom-left, bottom-right, centre ((6-4)//2, (8-5)//2) = (1, 1).
        corners = [im[0:4, 0:5], im[0:4, 3:8], im[2:6, 0:5], im[2:6, 3:8], im[1:5, 1:6]]
        for k, crop in enumerate(corners):
            np.testing.assert_array_equal(crops[10 * n + k], crop)
            np.testing.assert_array_equal(crops[10 * n + 5 + k], crop[:, ::-1])


def test_oversample_centre_truncates_like_pycaffe():
    im = np.arange(5 * 5, dtype=np.float32).reshape(5, 5, 1)
    crops = caffe_io.oversample(np.stack([im]), (2, 2))
    # pycaffe: int(5 / 2 - 2 / 2) = int(1.5) = 1.
    np.testing.assert_array_equal(crops[4], im[1:3, 1:3])
    assert crops.shape == (10, 2, 2, 1)


def test_oversample_full_size_crop():
    im = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    crops = caffe_io.oversample([im], (2, 3))
    for k in range(5):
        np.testing.assert_array_equal(crops[k], im)
        np.testing.assert_array_equal(crops[5 + k], im[:, ::-1])


def test_oversample_refuses_crop_larger_than_image():
    with pytest.raises(ValueError, match="does not fit"):
        caffe_io.oversample([np.zeros((4, 4, 3))], (5, 4))


# Transformer


def imagenet_like_transformer(shape=(1, 3, 4, 5)):
    transformer = caffe_io.Transformer({"data": shape})
    transformer.set_transpose("data", (2, 0, 1))
    transformer.set_channel_swap("data", (2, 1, 0))
    transformer.set_raw_scale("data", 255.0)
    transformer.set_mean("data", np.array([104.0, 117.0, 123.0]))
    transformer.set_input_scale("data", 0.5)
    return transformer


def test_preprocess_steps_match_numpy(rng):
    image = rng.random((4, 5, 3))
    out = imagenet_like_transformer().preprocess("data", image)
    expected = image.astype(np.float32).transpose(2, 0, 1)[[2, 1, 0]]
    expected = (expected * 255.0 - np.array([104.0, 117.0, 123.0])[:, None, None]) * 0.5
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_preprocess_each_step_alone(rng):
    image = rng.random((4, 5, 3)).astype(np.float32)
    shape = (1, 3, 4, 5)

    def only(setter, *args):
        transformer = caffe_io.Transformer({"data": shape})
        getattr(transformer, setter)("data", *args)
        return transformer.preprocess("data", image)

    np.testing.assert_array_equal(only("set_transpose", (2, 0, 1)), image.transpose(2, 0, 1))
    # Without a transpose the channel swap indexes the first axis, as pycaffe's.
    square = rng.random((3, 3, 3)).astype(np.float32)
    swapper = caffe_io.Transformer({"data": (1, 3, 3, 3)})
    swapper.set_channel_swap("data", (1, 2, 0))
    np.testing.assert_array_equal(swapper.preprocess("data", square), square[[1, 2, 0]])
    np.testing.assert_array_equal(only("set_raw_scale", 255.0), image * np.float32(255.0))
    np.testing.assert_array_equal(only("set_input_scale", 0.25), image * np.float32(0.25))
    mean = rng.random((3, 4, 5)).astype(np.float32)
    transposed = caffe_io.Transformer({"data": shape})
    transposed.set_transpose("data", (2, 0, 1))
    transposed.set_mean("data", mean)
    np.testing.assert_allclose(transposed.preprocess("data", image), image.transpose(2, 0, 1) - mean, atol=1e-7)


def test_preprocess_without_steps_is_a_float32_copy(rng):
    image = rng.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    out = caffe_io.Transformer({"data": (1, 3, 4, 5)}).preprocess("data", image)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image.astype(np.float32))


def test_preprocess_resizes_to_input_dims(rng):
    image = rng.random((8, 10, 3)).astype(np.float32)
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    transformer.set_transpose("data", (2, 0, 1))
    out = transformer.preprocess("data", image)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, caffe_io.resize_image(image, (4, 5)).transpose(2, 0, 1))
    # Halving: each output pixel is the mean of a 2 x 2 block.
    np.testing.assert_allclose(out, image.reshape(4, 2, 5, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1), rtol=1e-6)


def test_preprocess_leaves_the_image_unchanged(rng):
    image = rng.random((4, 5, 3)).astype(np.float32)
    before = image.copy()
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    # No step copies: pycaffe would scale and shift `image` itself here.
    transformer.set_raw_scale("data", 255.0)
    transformer.set_input_scale("data", 2.0)
    transformer.preprocess("data", image)
    np.testing.assert_array_equal(image, before)


def test_input_shape_given_as_list(rng):
    image = rng.random((4, 5, 3)).astype(np.float32)
    transformer = caffe_io.Transformer({"data": [1, 3, 4, 5]})
    transformer.set_transpose("data", [2, 0, 1])
    transformer.set_mean("data", np.zeros((3, 4, 5)))
    # Equal dimensions, though list against tuple: no resize, values unchanged.
    np.testing.assert_array_equal(transformer.preprocess("data", image), image.transpose(2, 0, 1))


def test_deprocess_inverts_preprocess(rng):
    image = rng.random((4, 5, 3)).astype(np.float32)
    transformer = imagenet_like_transformer()
    caffe_in = transformer.preprocess("data", image)
    back = transformer.deprocess("data", caffe_in)
    assert back.shape == (4, 5, 3)
    np.testing.assert_allclose(back, image, atol=1e-5)
    # A batch of one, as net.blobs['data'].data holds it.
    np.testing.assert_allclose(transformer.deprocess("data", caffe_in[np.newaxis]), image, atol=1e-5)
    # deprocess works on a copy.
    np.testing.assert_array_equal(caffe_in, transformer.preprocess("data", image))


def test_deprocess_steps_match_numpy(rng):
    blob = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    out = imagenet_like_transformer().deprocess("data", blob)
    expected = (blob[0] / 0.5 + np.array([104.0, 117.0, 123.0])[:, None, None]) / 255.0
    expected = expected[[2, 1, 0]].transpose(1, 2, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_deprocess_undoes_non_involutive_orders(rng):
    # (1, 2, 0) is not its own inverse, so this checks deprocess inverts rather than reapplies.
    # A cube, so the transposed image matches the input shape without a resize.
    image = rng.random((3, 3, 3)).astype(np.float32)
    transformer = caffe_io.Transformer({"data": (1, 3, 3, 3)})
    transformer.set_transpose("data", (1, 2, 0))
    transformer.set_channel_swap("data", (1, 2, 0))
    caffe_in = transformer.preprocess("data", image)
    np.testing.assert_array_equal(caffe_in, image.transpose(1, 2, 0)[[1, 2, 0]])
    np.testing.assert_array_equal(transformer.deprocess("data", caffe_in), image)


def test_deprocess_grey_input(rng):
    image = rng.random((4, 5, 1)).astype(np.float32)
    transformer = caffe_io.Transformer({"data": (1, 1, 4, 5)})
    transformer.set_transpose("data", (2, 0, 1))
    transformer.set_raw_scale("data", 255.0)
    caffe_in = transformer.preprocess("data", image)
    assert caffe_in.shape == (1, 4, 5)
    back = transformer.deprocess("data", caffe_in[np.newaxis])
    # Singleton dimensions are squeezed, as pycaffe does.
    assert back.shape == (4, 5)
    np.testing.assert_allclose(back, image[:, :, 0], rtol=1e-6)


def test_set_mean_elementwise_and_two_d(rng):
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5), "grey": (1, 1, 4, 5)})
    mean = rng.random((3, 4, 5))
    transformer.set_mean("data", mean)
    np.testing.assert_array_equal(transformer.mean["data"], mean)
    transformer.set_mean("data", np.array([1.0, 2.0, 3.0]))
    assert transformer.mean["data"].shape == (3, 1, 1)
    # An H x W mean suits a one-channel input.
    transformer.set_mean("grey", rng.random((4, 5)))


def test_set_mean_shape_errors():
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(ValueError, match=re.escape("Mean channels incompatible with input.")):
        transformer.set_mean("data", np.zeros(4))
    with pytest.raises(ValueError, match=re.escape("Mean shape incompatible with input shape.")):
        transformer.set_mean("data", np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match=re.escape("Mean shape incompatible with input shape.")):
        transformer.set_mean("data", np.zeros((4, 5)))  # (1, 4, 5) against 3 channels
    with pytest.raises(ValueError, match="Mean shape invalid"):
        transformer.set_mean("data", np.zeros((1, 3, 4, 5)))
    assert "data" not in transformer.mean


def test_transpose_and_channel_swap_length_checks():
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(Exception, match="Transpose order"):
        transformer.set_transpose("data", (1, 0))
    with pytest.raises(Exception, match="Channel swap"):
        transformer.set_channel_swap("data", (1, 0))


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.preprocess("label", np.zeros((4, 5, 3))),
        lambda t: t.deprocess("label", np.zeros((3, 4, 5))),
        lambda t: t.set_transpose("label", (2, 0, 1)),
        lambda t: t.set_channel_swap("label", (2, 1, 0)),
        lambda t: t.set_raw_scale("label", 255.0),
        lambda t: t.set_mean("label", np.zeros(3)),
        lambda t: t.set_input_scale("label", 1.0),
    ],
)
def test_unknown_input_is_refused(call):
    transformer = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(Exception, match="label is not one of the net inputs"):
        call(transformer)
