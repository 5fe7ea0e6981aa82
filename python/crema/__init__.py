"""crema from Python: nets, solvers and Caffe's files, and the ``crema`` command.

The pycaffe-compatible API is the ``caffe`` package installed beside this one; ``crema`` holds what is
crema's own: the command line (``crema.main``), array files (``read_array``/``write_array``: .npy or
.binaryproto by extension), the native classes, and the base class of Python layers.
"""

import sys

from . import _native
from ._native import (
    Blob,
    CremaError,
    Net,
    Solver,
    layer_types,
    read_array,
    set_random_seed,
    write_array,
)
from ._python_layer import Layer

__all__ = [
    "Blob",
    "CremaError",
    "Layer",
    "Net",
    "Solver",
    "layer_types",
    "main",
    "read_array",
    "set_random_seed",
    "write_array",
]


def main(argv=None):
    """Runs the ``crema`` command line (``sys.argv`` by default) in this process and returns its exit status.

    The ``crema`` console script and ``python -m crema`` call it; nets run this way may hold
    ``type: "Python"`` layers.
    """
    if argv is None:
        argv = sys.argv[1:]
    return _native.main(["crema", *[str(a) for a in argv]])
