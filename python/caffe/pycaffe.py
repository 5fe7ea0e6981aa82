"""``caffe.Net`` and the solvers with pycaffe's interface, over crema's native nets.

Blob names map to :class:`crema.Blob` objects whose ``.data`` and ``.diff`` are numpy arrays over the net's own
memory, so ``net.blobs['data'].data[...] = x`` feeds the net and reading ``net.blobs['prob'].data`` copies
nothing.
"""

from collections import OrderedDict

import numpy as np

from crema import _native

from .proto import caffe_pb2


class _LayerView:
    """One layer of a net, as pycaffe's ``net.layers[i]``: its ``type``, ``name`` and learnable ``blobs``."""

    def __init__(self, name, type_, blobs):
        self.name = name
        self.type = type_
        self.blobs = blobs

    def __repr__(self):
        return f"<Layer {self.name!r} ({self.type})>"


def _phase_number(phase):
    if phase in (0, 1) and not isinstance(phase, bool):
        return int(phase)
    raise ValueError(f"phase {phase!r}: give caffe.TRAIN or caffe.TEST")


class Net:
    """A net built from a prototxt, as pycaffe's ``caffe.Net``.

    ``Net(model, phase)``, ``Net(model, weights, phase)`` and
    ``Net(model, phase, weights=..., stages=[...], level=0)``.
    """

    def __init__(self, model, *args, phase=None, weights=None, stages=None, level=0, _native_net=None):
        if _native_net is None:
            if len(args) == 1:
                (phase,) = args
            elif len(args) == 2:
                weights, phase = args
            elif len(args) > 2:
                raise TypeError("Net(model, phase) or Net(model, weights, phase)")
            if phase is None:
                raise TypeError("Net(model, phase): give the phase, caffe.TRAIN or caffe.TEST")
            _native_net = _native.Net(
                str(model),
                _phase_number(phase),
                None if weights is None else str(weights),
                [str(s) for s in (stages or [])],
                int(level),
            )
        self._net = _native_net
        self._layer_names = list(_native_net.layer_names())
        layer_types = _native_net.layer_types()
        self.layers = [
            _LayerView(
                name,
                type_,
                [_native_net.param(i, k) for k in range(_native_net.param_count(i))],
            )
            for i, (name, type_) in enumerate(zip(self._layer_names, layer_types))
        ]
        self._blob_names = list(_native_net.blob_names())
        self.blobs = OrderedDict((name, _native_net.blob(name)) for name in self._blob_names)
        self.layer_dict = OrderedDict(zip(self._layer_names, self.layers))
        self.params = OrderedDict(
            (layer.name, layer.blobs) for layer in self.layers if layer.blobs
        )
        self.inputs = list(_native_net.input_names())
        self.outputs = list(_native_net.output_names())
        self.top_names = OrderedDict(
            (name, list(_native_net.top_names(i))) for i, name in enumerate(self._layer_names)
        )
        self.bottom_names = OrderedDict(
            (name, list(_native_net.bottom_names(i))) for i, name in enumerate(self._layer_names)
        )

    @property
    def name(self):
        return self._net.name

    @property
    def phase(self):
        return self._net.phase

    def _layer_index(self, name, argument):
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise KeyError(f'{argument}="{name}": the net has no such layer') from None

    def _feed(self, arrays, part):
        for name, value in arrays.items():
            if name not in self.blobs:
                raise KeyError(f'the net has no blob "{name}"')
            value = np.asarray(value, dtype=np.float32)
            target = getattr(self.blobs[name], part)
            if value.shape != target.shape:
                if value.ndim == 0 or value.shape[0] != target.shape[0]:
                    raise ValueError(
                        f'blob "{name}" holds shape {target.shape}; the array given has shape {value.shape}: '
                        f"reshape the blob first (net.blobs[{name!r}].reshape(...); net.reshape())"
                    )
            target[...] = value

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Runs the net (or layers ``start`` to ``end``) forward after copying ``kwargs`` into the input blobs;
        returns ``{blob: values}`` for the outputs (or ``end``'s tops) and every blob named in ``blobs``."""
        blobs = list(blobs or [])
        start_index = 0 if start is None else self._layer_index(start, "start")
        if end is None:
            end_index = len(self.layers) - 1
            wanted = self.outputs + blobs
        else:
            end_index = self._layer_index(end, "end")
            wanted = self.top_names[end] + blobs
        if kwargs:
            unknown = set(kwargs) - set(self.inputs)
            if unknown:
                raise ValueError(
                    f"forward(): {sorted(unknown)} are not inputs of the net; its inputs are {self.inputs}"
                )
            self._feed(kwargs, "data")
        if self.layers:
            self._net.forward(start_index, end_index)
        if end is None:
            return {name: self.blobs[name].data for name in dict.fromkeys(wanted)}
        # A blob that a later layer rewrites in place: the values as layer `end` left them.
        return {name: self._net.blob_at(name, end_index, False).data for name in dict.fromkeys(wanted)}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Runs the net (or layers ``start`` down to ``end``) backward, with the gradients of outputs given in
        ``kwargs``; returns ``{blob: gradients}`` for the inputs (or ``end``'s bottoms) and every blob named in
        ``diffs``."""
        diffs = list(diffs or [])
        start_index = len(self.layers) - 1 if start is None else self._layer_index(start, "start")
        if end is None:
            end_index = 0
            wanted = self.inputs + diffs
        else:
            end_index = self._layer_index(end, "end")
            wanted = self.bottom_names[end] + diffs
        given = []
        for name, value in kwargs.items():
            if name not in self.outputs:
                raise ValueError(
                    f"backward(): {name!r} is not an output of the net; its outputs are {self.outputs}"
                )
            value = np.asarray(value, dtype=np.float32)
            shape = self.blobs[name].shape
            if value.shape != shape:
                value = np.broadcast_to(value, shape)
            given.append((name, np.ascontiguousarray(value)))
        if self.layers:
            self._net.backward(start_index, end_index, given)
        if end is None:
            return {name: self.blobs[name].diff for name in dict.fromkeys(wanted)}
        # The gradients layer `end` computed: those of the versions it reads.
        return {name: self._net.blob_at(name, end_index, True).diff for name in dict.fromkeys(wanted)}

    def forward_all(self, blobs=None, **kwargs):
        """Runs the net over inputs of any number of items, a batch at a time; returns the outputs (and
        ``blobs``) for all of them."""
        wanted = list(dict.fromkeys(self.outputs + list(blobs or [])))
        collected = {name: [] for name in wanted}
        batch = self.blobs[self.inputs[0]].shape[0] if self.inputs else 1
        total = len(next(iter(kwargs.values()))) if kwargs else batch
        for begin in range(0, total, batch):
            chunk = {}
            for name, value in kwargs.items():
                part = np.asarray(value[begin : begin + batch], dtype=np.float32)
                if len(part) < batch:
                    padded = np.zeros((batch,) + part.shape[1:], dtype=np.float32)
                    padded[: len(part)] = part
                    part = padded
                chunk[name] = part
            out = self.forward(blobs=blobs, **chunk)
            for name in wanted:
                collected[name].extend(out[name].copy())
        return {name: np.asarray(values[:total]) for name, values in collected.items()}

    def reshape(self):
        """Shapes every layer's tops again after input blobs were reshaped."""
        self._net.reshape()

    def save(self, filename):
        """Writes the weights as a .caffemodel."""
        self._net.save(str(filename))

    def copy_from(self, filename):
        """Loads weights from a .caffemodel by layer name."""
        self._net.copy_from(str(filename))

    def share_with(self, other):
        """Takes ``other``'s weights for the layers of the same name (copied now; pycaffe shares memory)."""
        self._net.copy_params_from(other._net)

    def clear_param_diffs(self):
        self._net.clear_param_diffs()

    def __repr__(self):
        return f"<caffe.Net {self.name!r}: {len(self.layers)} layers>"


class _Solver:
    """A solver, as pycaffe's: ``net``, ``test_nets``, ``iter``, ``step``, ``solve``, ``snapshot``, ``restore``."""

    _type = None

    def __init__(self, filename):
        self._solver = _native.Solver(str(filename), self._type)
        self._net = None
        self._test_nets = None

    @property
    def net(self):
        if self._net is None:
            self._net = Net(None, _native_net=self._solver.net)
        return self._net

    @property
    def test_nets(self):
        if self._test_nets is None:
            self._test_nets = [Net(None, _native_net=n) for n in self._solver.test_nets]
        return self._test_nets

    @property
    def iter(self):
        return self._solver.iter

    @property
    def type(self):
        return self._solver.type

    @property
    def param(self):
        return caffe_pb2.SolverParameter.FromString(self._solver.param_bytes())

    def step(self, iters):
        self._solver.step(int(iters))

    def solve(self, resume_file=None):
        self._solver.solve(None if resume_file is None else str(resume_file))

    def snapshot(self):
        self._solver.snapshot()

    def restore(self, state_file):
        self._solver.restore(str(state_file))

    def test_all(self):
        self._solver.test_all()


class SGDSolver(_Solver):
    _type = "SGD"


class NesterovSolver(_Solver):
    _type = "Nesterov"


class AdaGradSolver(_Solver):
    _type = "AdaGrad"


class RMSPropSolver(_Solver):
    _type = "RMSProp"


class AdaDeltaSolver(_Solver):
    _type = "AdaDelta"


class AdamSolver(_Solver):
    _type = "Adam"


def get_solver(filename):
    """The solver ``filename`` defines, of the type its ``type`` field names."""
    return _Solver(filename)
