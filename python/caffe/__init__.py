"""pycaffe's ``caffe`` module, run by crema: existing pycaffe scripts work unchanged.

``caffe.__crema__`` (crema's version) tells this module from BVLC's pycaffe. What differs from pycaffe is listed
in the README ("The Python package").
"""

import warnings as _warnings

from crema import _native
from crema._python_layer import Layer

from . import io
from .net_spec import NetSpec, layers, params, to_proto
from .proto.caffe_pb2 import TEST, TRAIN
from .pycaffe import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    Net,
    RMSPropSolver,
    SGDSolver,
    get_solver,
)

__crema__ = _native.__version__
__version__ = "1.0.0"

_told_about_gpu = False


def _tell_about_gpu(call):
    global _told_about_gpu
    if not _told_about_gpu:
        _told_about_gpu = True
        _warnings.warn(
            f"caffe.{call}: crema runs on the CPU; going on there", RuntimeWarning, stacklevel=3
        )


def set_mode_cpu():
    """Runs on the CPU (crema always does)."""


def set_mode_gpu():
    """crema has no GPU mode: warns once and goes on on the CPU."""
    _tell_about_gpu("set_mode_gpu()")


def set_device(device_id):
    """crema has no GPU: warns once and goes on on the CPU."""
    _tell_about_gpu(f"set_device({device_id})")


def set_random_seed(seed):
    """Seeds every net made from now on, and solvers whose file gives no ``random_seed``."""
    _native.set_random_seed(int(seed))


def layer_type_list():
    """The layer types crema has."""
    return list(_native.layer_types())


def init_log(*args, **kwargs):
    """pycaffe sets up glog here; crema logs to stderr already."""


def solver_count():
    return 1


def solver_rank():
    return 0


__all__ = [
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "Layer",
    "NesterovSolver",
    "Net",
    "NetSpec",
    "RMSPropSolver",
    "SGDSolver",
    "TEST",
    "TRAIN",
    "get_solver",
    "io",
    "layer_type_list",
    "layers",
    "params",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_random_seed",
    "to_proto",
]
