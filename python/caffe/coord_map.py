"""pycaffe's coordinate maps, ``caffe.coord_map``: how the spatial coordinates of one top relate to another's.

FCN-style scripts use it to align an upsampled score map with its input::

    from caffe.coord_map import crop
    n.score = crop(n.upscore, n.data)   # L.Crop(n.upscore, n.data, crop_param=dict(axis=2, offset=[19]))

A coordinate map is a triple ``(axis, scale, shift)``: a coordinate ``x`` of a layer's bottom sits at
``scale * x + shift`` in its top, on every axis after ``axis`` (the channel axis, so ``axis=1`` maps the spatial
axes of N x C x H x W blobs). ``axis`` is None for maps that hold on any axis (the pass-through layers); scale and
shift are numpy arrays with one entry, or one per spatial axis for anisotropic layers.

What lives here:

* :func:`coord_map`: one layer's map (Convolution, Pooling, Im2col, Deconvolution, Crop, and the pass-through
  layers of :data:`PASS_THROUGH_LAYERS`), with :func:`conv_params` and :func:`crop_params` reading its parameters.
* :func:`compose` and :func:`inverse`: the algebra of maps.
* :func:`coord_map_from_to`: the map between two tops of a net spec, through their common ancestor.
* :func:`crop`: the ``L.Crop`` that cuts one top down to another's extent.
* :class:`UndefinedMapException`, :class:`AxisMismatchException`: what goes wrong, with the layer that did it.
"""

from collections import deque

import numpy as np
from google.protobuf.message import Message

from .net_spec import layers as L

__all__ = [
    "PASS_THROUGH_LAYERS",
    "AxisMismatchException",
    "UndefinedMapException",
    "compose",
    "conv_params",
    "coord_map",
    "coord_map_from_to",
    "crop",
    "crop_params",
    "inverse",
]

# Layers whose every output element sits where its input element does: the identity map on any axis.
# pycaffe's list, unchanged; Concat is handled in coord_map because it only qualifies off the spatial axes.
PASS_THROUGH_LAYERS = [
    "AbsVal",
    "BatchNorm",
    "Bias",
    "BNLL",
    "Dropout",
    "Eltwise",
    "ELU",
    "Log",
    "LRN",
    "Exp",
    "MVN",
    "Power",
    "ReLU",
    "PReLU",
    "Scale",
    "Sigmoid",
    "Split",
    "TanH",
    "Threshold",
]

# Offsets are computed in floating point; a shift this close to an integer is taken to be that integer, so that
# odd strides (1/3 * 3 ...) do not turn an exact crop into an error.
_INTEGER_TOLERANCE = 1e-6


class UndefinedMapException(Exception):
    """A layer has no coordinate map (InnerProduct, global pooling, a spatial Concat ...), or not one we can read."""


class AxisMismatchException(Exception):
    """Two maps being composed act on different axes, so their composition means nothing."""


def _describe(fn):
    """'Convolution layer "conv1"' when the layer was given a name, else 'Convolution layer'."""
    name = fn.params.get("name")
    return f'{fn.type_name} layer "{name}"' if name else f"{fn.type_name} layer"


def _as_dict(value):
    """A ``*_param`` value as a dict: net_spec accepts both dicts and ready-made protobuf messages."""
    if isinstance(value, Message):
        return {field.name: item for field, item in value.ListFields()}
    return dict(value)


def _own_params(fn, message_name):
    """The layer's parameters with those of its ``<message_name>`` sub-dict laid over the top-level ones.

    net_spec sends ``kernel_size=3`` of a Convolution to its convolution_param, yet keeps it as given, at the top
    level of ``fn.params``; ``convolution_param=dict(kernel_size=3)`` (the only way for Deconvolution) keeps it in
    the sub-dict. Either spelling, or a mix, must read the same.
    """
    merged = {key: value for key, value in fn.params.items() if not key.endswith("_param")}
    if message_name in fn.params:
        merged.update(_as_dict(fn.params[message_name]))
    return merged


def _per_axis(value):
    """A scalar or repeated parameter as a 1-d float array."""
    if not isinstance(value, (int, float, np.number, np.ndarray)):
        value = list(value)
    return np.array(value, dtype=float, ndmin=1)


def _pick(params, name, legacy_stem, default, fn):
    """``name`` (e.g. 'kernel_size'), or its legacy 2-d spelling ``<legacy_stem>_h``/``<legacy_stem>_w``
    (``kernel_h``/``kernel_w``), or ``default``."""
    legacy = [key for key in (f"{legacy_stem}_h", f"{legacy_stem}_w") if key in params]
    if legacy:
        if len(legacy) != 2 or name in params:
            raise UndefinedMapException(
                f"{_describe(fn)}: give {legacy_stem}_h and {legacy_stem}_w together, and without {name}"
            )
        return _per_axis([params[f"{legacy_stem}_h"], params[f"{legacy_stem}_w"]])
    value = params.get(name, default)
    if value is None or (not isinstance(value, (int, float, np.number)) and len(value) == 0):
        return None
    return _per_axis(value)


def conv_params(fn):
    """The parameters that set a Convolution, Deconvolution, Im2col or Pooling layer's coordinate map.

    Returns ``(axis, stride, kernel_extent, pad)``, the last three as float arrays (one entry, or one per
    spatial axis). The kernel extent counts dilation: a 3x3 kernel dilated by 2 covers 5 inputs. Parameters are
    read from ``convolution_param`` (``pooling_param`` for Pooling) or from the layer's own keywords; the legacy
    ``kernel_h``/``kernel_w`` (and ``stride_``, ``pad_``) pairs are read as a 2-d kernel.
    Raises :class:`UndefinedMapException` when there is no kernel size (global pooling, a missing parameter).
    """
    message = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    params = _own_params(fn, message)
    if params.get("global_pooling"):
        raise UndefinedMapException(f"{_describe(fn)}: global pooling has no coordinate map")
    kernel = _pick(params, "kernel_size", "kernel", None, fn)
    if kernel is None:
        raise UndefinedMapException(f"{_describe(fn)}: no kernel_size in {message} to map coordinates with")
    stride = _pick(params, "stride", "stride", 1, fn)
    pad = _pick(params, "pad", "pad", 0, fn)
    # Pooling has neither an axis nor dilation; its channel axis is always 1.
    axis = params.get("axis", 1) if message == "convolution_param" else 1
    dilation = _per_axis(params.get("dilation", 1)) if message == "convolution_param" else 1
    if isinstance(dilation, np.ndarray) and dilation.size == 0:
        dilation = 1
    return axis, stride, (kernel - 1) * dilation + 1, pad


def crop_params(fn):
    """A Crop layer's ``(axis, offset)``, with Caffe's defaults: axis 2 (the first spatial axis of N x C x H x W)
    and offset 0; ``offset`` is an int array, one entry for every cropped axis or one for them all."""
    params = _own_params(fn, "crop_param")
    axis = params.get("axis", 2)
    offset = params.get("offset", 0)
    if not isinstance(offset, (int, np.integer)):
        offset = list(offset) or [0]
    return axis, np.array(offset, dtype=int, ndmin=1)


def _concat_is_pass_through(fn):
    params = _own_params(fn, "concat_param")
    axis = params.get("axis", params.get("concat_dim", 1))
    # Stacking along the batch or channel axis leaves every pixel where it was; along a spatial axis it does not.
    return axis in (0, 1)


def coord_map(fn):
    """The coordinate map ``(axis, scale, shift)`` from a layer's bottom to its top.

    A bottom coordinate ``x`` sits at ``scale * x + shift`` in the top:

    * Convolution, Pooling, Im2col: scale ``1 / stride``, shift ``(pad - (kernel - 1) / 2) / stride``: each output
      sits at the centre of the window it reads.
    * Deconvolution: the inverse of the convolution with the same parameters.
    * Crop: scale 1, shift ``-offset``, on the axis before the first cropped one.
    * :data:`PASS_THROUGH_LAYERS`, and Concat along axis 0 or 1: the identity ``(None, 1, 0)`` on any axis.

    Raises :class:`UndefinedMapException`, naming the layer, for any other layer.
    """
    kind = fn.type_name
    if kind in ("Convolution", "Pooling", "Im2col"):
        axis, stride, kernel, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (kernel - 1) / 2) / stride
    if kind == "Deconvolution":
        axis, stride, kernel, pad = conv_params(fn)
        return axis, stride, (kernel - 1) / 2 - pad
    if kind in PASS_THROUGH_LAYERS or (kind == "Concat" and _concat_is_pass_through(fn)):
        return None, 1, 0
    if kind == "Crop":
        axis, offset = crop_params(fn)
        # A map's axis is the last one it leaves alone; the crop starts one later.
        return axis - 1, 1, -offset
    if kind == "Concat":
        raise UndefinedMapException(f"{_describe(fn)}: concatenating along a spatial axis has no coordinate map")
    raise UndefinedMapException(f"{_describe(fn)}: {kind} layers have no coordinate map")


def compose(base_map, next_map):
    """The map that applies ``next_map`` and then ``base_map``: scales multiply, and ``next_map``'s shift is
    scaled by ``base_map``'s before the shifts add.

    The axis is whichever of the two is not None; two different axes raise :class:`AxisMismatchException`.
    """
    axis1, scale1, shift1 = base_map
    axis2, scale2, shift2 = next_map
    if axis1 is None:
        axis = axis2
    elif axis2 is None or axis1 == axis2:
        axis = axis1
    else:
        raise AxisMismatchException(f"cannot compose a map on axis {axis1} with one on axis {axis2}")
    return axis, scale1 * scale2, scale1 * shift2 + shift1


def inverse(coord_map):
    """The map back from top to bottom: scale ``1 / scale``, shift ``-shift / scale``."""
    axis, scale, shift = coord_map
    return axis, 1 / scale, -shift / scale


def _mapped_bottoms(top):
    # A Crop's second bottom only lends its shape: no coordinate of it reaches the top.
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == "Crop" else bottoms


def _walk_back(start, blocked):
    """Maps from every ancestor of ``start`` (``start`` included) into ``start``'s coordinates, nearest first.

    Breadth first, so an ancestor reached by several paths keeps the map of the shortest. Layers without a map
    end that path; their reasons go into ``blocked`` for the error message should no common ancestor turn up.
    """
    maps = {start: (None, 1, 0)}
    queue = deque([start])
    while queue:
        top = queue.popleft()
        yield top, maps[top]
        bottoms = [bottom for bottom in _mapped_bottoms(top) if bottom not in maps]
        if not bottoms:
            continue
        try:
            step = coord_map(top.fn)
        except UndefinedMapException as error:
            blocked.setdefault(top.fn, str(error))
            continue
        try:
            mapped = compose(maps[top], step)
        except AxisMismatchException as error:
            raise AxisMismatchException(f"{_describe(top.fn)}: {error}") from None
        for bottom in bottoms:
            maps[bottom] = mapped
            queue.append(bottom)


def _top_of(value, what):
    fn = getattr(value, "fn", None)
    if fn is None or not hasattr(value, "n"):
        hint = "; unpack a layer's several tops first" if isinstance(value, tuple) else ""
        raise TypeError(f"{what} is {value!r}, not a top of a net spec{hint}")
    return value


def coord_map_from_to(top_from, top_to):
    """The map ``(axis, scale, shift)`` from ``top_from``'s coordinates to ``top_to``'s.

    Walks back from both tops, composing layer maps, to the nearest top they both descend from (a top counts as
    its own ancestor), then composes ``top_to``'s side with the inverse of ``top_from``'s. Only a Crop's first
    bottom is walked through. Raises RuntimeError, listing the layers without a map that stopped the walk, when
    the tops share no ancestor through mappable layers, and :class:`AxisMismatchException` naming the layer whose
    map disagrees on the axis.
    """
    top_from = _top_of(top_from, "top_from")
    top_to = _top_of(top_to, "top_to")
    blocked = {}
    from_maps = dict(_walk_back(top_from, blocked))
    for top, to_map in _walk_back(top_to, blocked):
        if top in from_maps:
            try:
                return compose(to_map, inverse(from_maps[top]))
            except AxisMismatchException as error:
                raise AxisMismatchException(
                    f"the paths from {top!r} to {top_from!r} and to {top_to!r} map different axes: {error}"
                ) from None
    why = (
        "; the walk back stopped at: " + "; ".join(blocked.values())
        if blocked
        else "; they are not connected"
    )
    raise RuntimeError(
        f"could not compute the coordinate map from {top_from!r} to {top_to!r}: they share no ancestor "
        f"through layers with coordinate maps{why}"
    )


def crop(top_from, top_to):
    """An ``L.Crop(top_from, top_to, crop_param=dict(axis=..., offset=[...]))`` that cuts ``top_from`` down to
    ``top_to``'s spatial extent, its offset found by :func:`coord_map_from_to`.

    Raises AssertionError (pycaffe's exception here, raised even under ``python -O``) when the tops differ in
    scale, when ``top_to`` would reach outside ``top_from`` (a negative offset), or when the offset is not a
    whole number of pixels.
    """
    axis, scale, shift = coord_map_from_to(top_from, top_to)
    scale = np.array(scale, dtype=float, ndmin=1)
    shift = np.array(shift, dtype=float, ndmin=1)
    if not np.allclose(scale, 1, rtol=0, atol=_INTEGER_TOLERANCE):
        raise AssertionError(
            f"crop: {top_from!r} is on a different scale from {top_to!r} (scale {scale.tolist()}, not 1); "
            "check the strides of the layers between them"
        )
    offset = np.round(-shift)
    if not np.allclose(offset, -shift, rtol=0, atol=_INTEGER_TOLERANCE):
        raise AssertionError(
            f"crop: the offset of {top_to!r} in {top_from!r} is {(-shift).tolist()}, not a whole number of pixels"
        )
    if (offset < 0).any():
        raise AssertionError(
            f"crop: {top_to!r} starts before {top_from!r} (offset {offset.astype(int).tolist()}); "
            "a crop cannot reach outside its input"
        )
    # Every layer between the tops passes coordinates through unchanged: crop from Caffe's default, the first
    # spatial axis.
    crop_axis = 2 if axis is None else axis + 1
    return L.Crop(top_from, top_to, crop_param=dict(axis=crop_axis, offset=[int(o) for o in offset]))
