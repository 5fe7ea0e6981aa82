"""pycaffe's ``caffe.io``: conversions between numpy arrays and Caffe's messages, image loading and resizing,
10-crop oversampling, and the :class:`Transformer` that turns images into net inputs and back.

- ``BlobProto`` / ``BlobProtoVector`` / ``Datum`` <-> ndarray: :func:`blobproto_to_array`,
  :func:`array_to_blobproto`, :func:`arraylist_to_blobprotovector_str`,
  :func:`blobprotovector_str_to_arraylist`, :func:`array_to_datum`, :func:`datum_to_array`.
- Images: :func:`load_image` (decoded by crema's native reader), :func:`resize_image`, :func:`oversample`.
- :class:`Transformer`: pycaffe's preprocessing (resize, transpose, channel swap, scales, mean) and its inverse.

pycaffe needs scikit-image and SciPy for the image functions; this module needs only numpy. Resizing
implements nearest (order 0) and bilinear (order 1) interpolation itself, for any number of channels.
"""

import numpy as np

from crema import _native

from .proto import caffe_pb2

# Conversions between arrays and Caffe's messages.


def blobproto_to_array(blob, return_diff=False):
    """The data (or, with ``return_diff``, the diff) of a ``BlobProto`` as a float32 array.

    The shape is ``blob.shape.dim`` when the blob has one; blobs written by old Caffe versions (mean files
    made by ``compute_image_mean`` among them) carry the legacy ``num``/``channels``/``height``/``width``
    instead, and are returned 4-D.
    """
    values = blob.diff if return_diff else blob.data
    array = np.array(values, dtype=np.float32)
    legacy_fields = ("num", "channels", "height", "width")
    has_legacy_shape = any(blob.HasField(name) for name in legacy_fields)
    if len(blob.shape.dim) > 0 or (blob.HasField("shape") and not has_legacy_shape):
        # An explicit empty shape is a scalar blob, as Caffe writes it.
        shape = tuple(blob.shape.dim)
    else:
        shape = tuple(getattr(blob, name) for name in legacy_fields)
    return array.reshape(shape)


def array_to_blobproto(arr, diff=None):
    """A ``BlobProto`` holding ``arr`` (of any number of dimensions): ``shape.dim`` from its shape, ``data``
    from its values in C order, and ``diff`` likewise from ``diff`` when given (it must have ``arr``'s shape).
    """
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float64).ravel().tolist())
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            # pycaffe writes a mismatched diff as is; such a blob cannot be read back, so refuse it here.
            raise ValueError(f"diff shape {diff.shape} differs from the array's shape {arr.shape}.")
        blob.diff.extend(diff.astype(np.float64).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    """A list of arrays as a serialized ``BlobProtoVector`` (bytes), one blob per array."""
    vector = caffe_pb2.BlobProtoVector()
    vector.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vector.SerializeToString()


# Old pycaffe releases spelt it so; scripts written against them still call this name.
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(str):  # noqa: A002 -- pycaffe's parameter name
    """The arrays of a serialized ``BlobProtoVector`` (bytes), as :func:`blobproto_to_array` reads them."""
    vector = caffe_pb2.BlobProtoVector()
    vector.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr, label=None):
    """A ``Datum`` holding the 3-D (channels, height, width) array ``arr``.

    A uint8 array goes into ``data`` as bytes, any other into ``float_data``; ``label`` is set when given.
    Raises ``ValueError`` for an array that is not 3-D.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError("Incorrect array shape.")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()  # C order, whatever the array's memory layout
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """The values of a ``Datum`` as a (channels, height, width) array: uint8 from ``data`` bytes, else float64
    from ``float_data`` (as pycaffe). The label is not returned; read ``datum.label``.

    Raises ``ValueError`` for an encoded Datum, whose ``data`` holds a compressed image rather than pixels.
    """
    shape = (datum.channels, datum.height, datum.width)
    if datum.encoded:
        raise ValueError("datum_to_array: the Datum is encoded (its data is a JPEG or PNG file, not pixels).")
    if len(datum.data):
        # frombuffer shares the immutable bytes; copy so the caller gets a writable array, as pycaffe's.
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)


# Pre-processing.


class Transformer:
    """Prepares images for a net's inputs, and turns net inputs back into images.

    ``inputs`` maps each input blob name to its shape (N, C, H, W), e.g.
    ``Transformer({'data': net.blobs['data'].data.shape})``. Each ``set_*`` step is per input and optional;
    :meth:`preprocess` applies them in pycaffe's order and :meth:`deprocess` undoes them in reverse.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def __check_input(self, in_):
        if in_ not in self.inputs:
            # pycaffe raises a bare Exception; a ValueError is still caught by `except Exception`.
            raise ValueError(f"{in_} is not one of the net inputs: {self.inputs}")

    def _input_shape(self, in_):
        # Net shapes may come as lists; compare them as tuples of ints so equal shapes test equal.
        return tuple(int(d) for d in self.inputs[in_])

    def preprocess(self, in_, data):
        """An (H' x W' x K) image as a (K x H x W) float32 net input for ``in_``.

        In order: convert to float32; resize to the input's H x W when different (bilinear,
        :func:`resize_image`); transpose; reorder channels; multiply by the raw scale; subtract the mean;
        multiply by the input scale. ``data`` itself is left unchanged.
        """
        self.__check_input(in_)
        # Copy: pycaffe works in place on a float32 `data` when no step copies it, changing the caller's image.
        caffe_in = np.array(data, dtype=np.float32)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        in_dims = self._input_shape(in_)[2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[list(channel_swap), :, :]
        if raw_scale is not None:
            caffe_in *= raw_scale
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_, data):
        """Undoes :meth:`preprocess` for ``in_``: a (K x H x W) net input, or a batch of one (1 x K x H x W),
        back to an image (H x W x K when a transpose was set). Singleton dimensions are squeezed away, as
        pycaffe does, so a one-channel image comes back H x W.
        """
        self.__check_input(in_)
        decaf_in = np.array(data, copy=True)
        if not np.issubdtype(decaf_in.dtype, np.inexact):
            # The inverse scales divide in place, which an integer array cannot hold.
            decaf_in = decaf_in.astype(np.float64)
        # Drop only the batch axis before undoing the steps: pycaffe squeezes first, which also drops a single
        # channel and then fails to undo the transpose or channel swap of a grey input.
        if decaf_in.ndim == 4 and decaf_in.shape[0] == 1:
            decaf_in = decaf_in[0]
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in.squeeze()

    def set_transpose(self, in_, order):
        """Sets the order in which :meth:`preprocess` takes the image's dimensions, e.g. (2, 0, 1) to go from
        H x W x K to K x H x W.
        """
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("Transpose order needs to have the same number of dimensions as the input.")
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """Sets the order in which :meth:`preprocess` takes the channels, after the transpose (channels
        first): (2, 1, 0) turns RGB into BGR, as the reference ImageNet models want.
        """
        self.__check_input(in_)
        if len(order) != self._input_shape(in_)[1]:
            raise ValueError(
                "Channel swap needs to have the same number of dimensions as the input channels."
            )
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Sets the factor applied before the mean is subtracted: 255 for models trained on [0, 255] pixels
        (CaffeNet, AlexNet), as :func:`load_image` gives [0, 1].
        """
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Sets the mean subtracted after the raw scale: per channel, shape (C,), or per element, shape
        (C, H, W) (or (H, W) for a one-channel input) matching the input.
        """
        self.__check_input(in_)
        mean = np.asarray(mean)
        input_shape = self._input_shape(in_)
        if mean.ndim == 1:
            if mean.shape[0] != input_shape[1]:
                raise ValueError("Mean channels incompatible with input.")
            # Broadcast each channel's value over the image.
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            mean_shape = mean.shape
            if len(mean_shape) == 2:
                mean_shape = (1,) + mean_shape
            if len(mean_shape) != 3:
                raise ValueError("Mean shape invalid")
            if mean_shape != input_shape[1:]:
                raise ValueError("Mean shape incompatible with input shape.")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Sets the factor applied last, after the mean is subtracted (``raw_scale`` is applied before)."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


# Image IO.


def load_image(filename, color=True):
    """Loads a JPEG or PNG image as float32 in [0, 1]: H x W x 3 RGB when ``color`` (a grey image is repeated
    over the three channels, an alpha channel dropped), else H x W x 1 grey.

    Raises ``OSError`` naming the file when it cannot be read or decoded.
    """
    pixels = _native.read_image(filename, bool(color))
    # Divide in float64 and round once to float32, as pycaffe's img_as_float(...).astype(np.float32).
    image = (pixels / 255.0).astype(np.float32)
    # The native reader already gives 3 or 1 channels; these keep pycaffe's contract whatever it gives.
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if color and image.shape[2] == 1:
        image = np.tile(image, (1, 1, 3))
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return image


def _sample_positions(in_size, out_size):
    """Where each of ``out_size`` output pixels samples an axis of ``in_size`` input pixels, pixel centres
    aligned (a pixel spans [i, i + 1) and is sampled at its centre), in input pixel coordinates.
    """
    scale = in_size / out_size
    return (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5


def _resize_axis(values, out_size, axis, interp_order):
    """``values`` (float64) resized along ``axis`` to ``out_size``."""
    in_size = values.shape[axis]
    if in_size == out_size:
        return values
    moved = np.moveaxis(values, axis, 0)
    positions = _sample_positions(in_size, out_size)
    if interp_order == 0:
        nearest = np.clip(np.floor(positions + 0.5), 0, in_size - 1).astype(np.intp)
        resized = moved[nearest]
    else:
        # Positions past the first or last centre take the edge pixel's value.
        positions = np.clip(positions, 0, in_size - 1)
        lower = np.floor(positions).astype(np.intp)
        upper = np.minimum(lower + 1, in_size - 1)
        weight = (positions - lower).reshape((-1,) + (1,) * (moved.ndim - 1))
        below, above = moved[lower], moved[upper]
        # below + w * (above - below) rather than (1 - w) * below + w * above: equal neighbours give back
        # exactly their value, so flat regions stay exactly flat.
        resized = below + weight * (above - below)
    return np.moveaxis(resized, 0, axis)


def resize_image(im, new_dims, interp_order=1):
    """An (H x W x K) image resized to ``new_dims`` (height, width) as float32, keeping its K channels.

    ``interp_order`` 0 is nearest neighbour, 1 (the default) bilinear; both align pixel centres and take the
    edge pixels' values past the borders (scikit-image's ``resize`` without anti-aliasing, OpenCV's
    ``INTER_LINEAR``). A constant image stays exactly constant. Higher orders, which pycaffe passes to
    scikit-image or SciPy, are not available and raise ``ValueError``.
    """
    im = np.asarray(im)
    if im.ndim < 2:
        raise ValueError(f"resize_image: an H x W x K image is needed, not shape {im.shape}.")
    if interp_order not in (0, 1):
        raise ValueError(
            f"resize_image: interp_order {interp_order} is not supported; use 0 (nearest) or 1 (bilinear)."
        )
    out_height, out_width = (int(d) for d in new_dims)
    if out_height < 0 or out_width < 0:
        raise ValueError(f"resize_image: negative new_dims {tuple(new_dims)}.")
    out_shape = (out_height, out_width) + im.shape[2:]
    if im.size == 0:
        if out_height * out_width == 0:
            return np.empty(out_shape, dtype=np.float32)
        raise ValueError(f"resize_image: cannot resize an empty image of shape {im.shape}.")
    low, high = im.min(), im.max()
    if low == high:
        return np.full(out_shape, low, dtype=np.float32)
    # Interpolate in float64 so the only rounding to float32 is the final one.
    resized = im.astype(np.float64)
    resized = _resize_axis(resized, out_height, 0, interp_order)
    resized = _resize_axis(resized, out_width, 1, interp_order)
    return resized.astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops of each (H x W x K) image: the four corners and the centre, then the same five mirrored
    left to right.

    ``images`` is a sequence of N images of one shape (or an N x H x W x K array), ``crop_dims`` the crops'
    (height, width). Returns a (10*N x height x width x K) float32 array, image by image in the order
    top-left, top-right, bottom-left, bottom-right, centre, then their mirrors.
    """
    images = [np.asarray(im) for im in images]
    crop_height, crop_width = (int(d) for d in crop_dims)
    if not images:
        return np.empty((0, crop_height, crop_width, 0), dtype=np.float32)
    image_shape = images[0].shape
    if len(image_shape) != 3:
        raise ValueError(f"oversample: H x W x K images are needed, not shape {image_shape}.")
    height, width, channels = image_shape
    if not (0 < crop_height <= height and 0 < crop_width <= width):
        raise ValueError(f"oversample: crop {crop_height} x {crop_width} does not fit in {height} x {width}.")
    bottom, right = height - crop_height, width - crop_width
    # pycaffe truncates (H - h) / 2 for the centre crop: the extra row or column goes below and right.
    starts = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]

    crops = np.empty((10 * len(images), crop_height, crop_width, channels), dtype=np.float32)
    for n, im in enumerate(images):
        if im.shape != image_shape:
            raise ValueError(f"oversample: image {n} has shape {im.shape}, image 0 {image_shape}.")
        first = 10 * n
        for k, (top, left) in enumerate(starts):
            crops[first + k] = im[top : top + crop_height, left : left + crop_width, :]
        crops[first + 5 : first + 10] = crops[first : first + 5, :, ::-1, :]
    return crops
