"""Python layers: the base class users derive from (``caffe.Layer``) and how crema makes their objects.

crema calls :func:`create` once per ``type: "Python"`` layer while building a net, then the object's ``setup``,
``reshape`` (before every ``forward``, as Caffe does), ``forward`` and ``backward``.
"""

import importlib
import os
import sys
import traceback


class Layer:
    """Base class of Python layers, as pycaffe's ``caffe.Layer``.

    crema sets ``self.param_str`` (``python_param.param_str``), ``self.phase`` (``caffe.TRAIN`` or ``caffe.TEST``)
    and ``self.blobs`` (the layer's own learnable blobs; ``self.blobs.add_blob(*shape)``) before ``setup``.
    """

    def __init__(self, param=None):
        self.layer_param = param

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


def _import(module_name, search_dirs):
    for folder in search_dirs:
        if folder and os.path.isdir(folder) and folder not in sys.path:
            sys.path.append(folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name and not module_name.startswith(f"{error.name}."):
            raise  # the module was found; something it imports was not
        folders = ", ".join(f for f in search_dirs if f)
        raise ModuleNotFoundError(
            f'python_param.module: no module named "{module_name}" on sys.path (PYTHONPATH) nor in {folders}',
            name=module_name,
        ) from None


def create(module_name, class_name, param_str, phase, param_bytes, search_dirs, blobs):
    """Imports ``module_name``, makes its ``class_name`` with the layer's LayerParameter and hands it its
    parameters and blob list."""
    module = _import(module_name, search_dirs)
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        where = getattr(module, "__file__", module_name)
        raise AttributeError(
            f'python_param.layer: module "{module_name}" ({where}) has no class "{class_name}"'
        ) from None
    from caffe.proto import caffe_pb2

    param = caffe_pb2.LayerParameter.FromString(param_bytes)
    layer = cls(param)
    layer.param_str = param_str
    layer.phase = phase
    layer.blobs = blobs
    return layer


def describe(error, tb=None):
    """``Type: message`` and the traceback of the user's code; frames of this module are left out, so that a
    module or class that cannot be found reads as one line."""
    frames = [
        frame
        for frame in traceback.extract_tb(tb or error.__traceback__)
        if os.path.abspath(frame.filename) != os.path.abspath(__file__)
    ]
    text = "".join(traceback.format_exception_only(type(error), error)).rstrip()
    if frames:
        text += "\nTraceback (most recent call last):\n" + "".join(traceback.format_list(frames)).rstrip()
    return text
