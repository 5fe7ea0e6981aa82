"""pycaffe's net specification, ``caffe.net_spec``: nets written in Python, turned into ``caffe_pb2.NetParameter``.

Nets are written in a functional style::

    from caffe import layers as L, params as P

    n = caffe.NetSpec()
    n.data, n.label = L.Data(source='mnist_train_lmdb', backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.conv1, n.label)
    open('train.prototxt', 'w').write(str(n.to_proto()))

What lives here:

* :data:`layers` (``caffe.layers``, ``L``): ``L.<Type>(*bottoms, **params)`` makes a layer of that type and returns
  its :class:`Top` (a tuple of tops for ``ntop=N``, the :class:`Function` itself for ``ntop=0``).
* :data:`params` (``caffe.params``, ``P``): the enum constants of each ``<X>Parameter`` message, ``P.Pooling.MAX``.
* :class:`NetSpec`: names tops by the attribute (or item) they are assigned to; :meth:`NetSpec.to_proto`.
* :func:`to_proto`: the layers needed to compute some tops, with generated names.
* :class:`Top`, :class:`Function`, :func:`assign_proto`, :func:`param_name_dict`: the machinery, kept under
  pycaffe's names because scripts (and ``caffe.coord_map``) reach into it.

Keyword arguments of a layer go to the layer's own ``<type>_param`` message when it has such a field, else to
``LayerParameter`` itself (``name``, ``param``, ``include``, ``loss_weight``, ``*_param`` ...); dicts set
sub-messages, lists set repeated fields, and enum fields take a value's name or number. Generated names, and the
order of the layers (a depth-first walk of the bottoms), are pycaffe's, so its scripts write the same prototxt.
Unlike pycaffe, a keyword that names no field is reported when the layer is made, not later by ``to_proto``.
"""

from collections import Counter, OrderedDict

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .proto import caffe_pb2

__all__ = [
    "Function",
    "Layers",
    "NetSpec",
    "Parameters",
    "Top",
    "assign_proto",
    "layers",
    "param_name_dict",
    "params",
    "to_proto",
]


def param_name_dict():
    """Maps layer type names to the prefix of their ``<prefix>_param`` field of ``LayerParameter``.

    As pycaffe derives it: every ``LayerParameter`` field ``<prefix>_param`` whose message is ``<Type>Parameter``
    gives ``{'<Type>': '<prefix>'}``, e.g. ``'InnerProduct': 'inner_product'``, ``'HDF5Data': 'hdf5_data'``.
    Types that share another's message (``Deconvolution``, ``SoftmaxWithLoss``) are not in it: their parameters
    are given as ``convolution_param=dict(...)`` and so on, as with pycaffe.
    """
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        message = field.message_type
        if field.name.endswith("_param") and message is not None and message.name.endswith("Parameter"):
            names[message.name[: -len("Parameter")]] = field.name[: -len("_param")]
    return names


def _is_repeated(field):
    # `is_repeated` is new in protobuf 5.x; older releases (we accept >= 3.20) only have `label`.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
    return repeated


def _field(message, name, where):
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        known = ", ".join(sorted(message.DESCRIPTOR.fields_by_name))
        raise AttributeError(f"{where}: {message.DESCRIPTOR.name} has no field {name!r} (its fields: {known})")
    return field


def _enum_number(field, value, where):
    """An enum field's value given by name ('MAX') or number, as the number."""
    enum = field.enum_type
    if isinstance(value, str):
        number = enum.values_by_name.get(value)
        if number is None:
            known = ", ".join(v.name for v in enum.values)
            raise ValueError(f"{where}: {value!r} is not a {enum.name} (one of {known})")
        return number.number
    if isinstance(value, bool) or not isinstance(value, int) or value not in enum.values_by_number:
        known = ", ".join(f"{v.name}={v.number}" for v in enum.values)
        raise ValueError(f"{where}: {value!r} is not a {enum.name} (one of {known})")
    return value


def _fill(message, value, where):
    """Sets a message from a dict of its fields (recursively), or copies another message of its type."""
    if isinstance(value, dict):
        for name, item in value.items():
            _assign(message, name, item, where)
    elif isinstance(value, Message):
        if value.DESCRIPTOR.full_name != message.DESCRIPTOR.full_name:
            raise TypeError(f"{where}: give a {message.DESCRIPTOR.name}, not a {value.DESCRIPTOR.name}")
        message.CopyFrom(value)
    else:
        raise TypeError(f"{where}: give a dict of {message.DESCRIPTOR.name} fields, not {value!r}")


def _assign(message, name, value, where):
    field = _field(message, name, where)
    path = f"{where}.{name}" if where else name
    if _is_repeated(field):
        # pycaffe's convenience: a single value for a repeated field is a one-element list.
        items = value if isinstance(value, (list, tuple)) else [value]
        container = getattr(message, name)
        for item in items:
            if field.message_type is not None:
                _fill(container.add(), item, path)
            else:
                if field.enum_type is not None:
                    item = _enum_number(field, item, path)
                try:
                    container.append(item)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"{path}: {error}") from error
    elif field.message_type is not None:
        _fill(getattr(message, name), value, path)
    else:
        if field.enum_type is not None:
            value = _enum_number(field, value, path)
        try:
            setattr(message, name, value)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{path}: {error}") from error


def assign_proto(proto, name, val):
    """Sets field ``name`` of message ``proto`` from a Python value, as pycaffe's ``assign_proto``.

    Dicts fill sub-messages, lists (or tuples) fill repeated fields (a list of dicts adds one message per dict),
    a lone value for a repeated field is a one-element list, and enum fields take names or numbers. A field
    that does not exist raises AttributeError naming it; a value of the wrong kind, TypeError or ValueError.
    """
    _assign(proto, name, val, proto.DESCRIPTOR.name)


class Top:
    """One output blob of a layer: top number ``n`` of the :class:`Function` ``fn``."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter with every layer needed to compute this top, intermediate blobs named automatically."""
        return to_proto(self)

    def _update(self, params):
        self.fn._update(params)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)

    def __repr__(self):
        return f"<Top {self.n} of {self.fn.type_name}>"


def _hint(key):
    """Where a keyword that is not the layer's own would go, e.g. Deconvolution's num_output."""
    holders = [
        field.name
        for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields
        if field.name.endswith("_param")
        and field.message_type is not None
        and key in field.message_type.fields_by_name
    ]
    if not holders:
        return ""
    return f"; it is a field of {', '.join(holders)}: give e.g. {holders[0]}=dict({key}=...)"


class Function:
    """One layer: its type, its bottoms (``inputs``, :class:`Top` objects) and its keyword parameters.

    ``ntop`` (default 1) and ``in_place`` are taken out of ``params``; what is left is kept as given in
    ``params``, where ``caffe.coord_map`` reads kernel sizes and strides.
    """

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        self.inputs = tuple(inputs)
        for number, bottom in enumerate(self.inputs):
            if not isinstance(bottom, Top):
                hint = " (unpack a layer's several tops first)" if isinstance(bottom, tuple) else ""
                raise TypeError(f"L.{type_name}: bottom {number} is {bottom!r}, not a top{hint}")
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        if isinstance(self.ntop, bool) or not isinstance(self.ntop, int) or self.ntop < 0:
            raise ValueError(f"L.{type_name}: ntop={self.ntop!r}; give a count of tops, 0 or more")
        self.in_place = bool(self.params.pop("in_place", False))
        self.tops = tuple(Top(self, n) for n in range(self.ntop))
        # Built once and thrown away so that a misspelt keyword fails here, at the line that made the layer.
        self._set_params(caffe_pb2.LayerParameter(), self.params)

    def _update(self, params):
        merged = dict(self.params)
        merged.update(params)
        self._set_params(caffe_pb2.LayerParameter(), merged)
        self.params.update(params)

    def _set_params(self, layer, params):
        prefix = _param_names.get(self.type_name)
        own = getattr(layer, prefix + "_param") if prefix else None
        own_fields = own.DESCRIPTOR.fields_by_name if own is not None else {}
        layer_fields = layer.DESCRIPTOR.fields_by_name
        where = f"L.{self.type_name}"
        for key, value in params.items():
            # pycaffe sends keys ending in 'param' (param, transform_param, loss_param...) to LayerParameter
            # first and everything else to the type's own message first.
            if key.endswith("param") and key in layer_fields:
                _assign(layer, key, value, where)
            elif key in own_fields:
                _assign(own, key, value, f"{where} {prefix}_param")
            elif key in layer_fields:
                _assign(layer, key, value, where)
            else:
                own_name = f"{own.DESCRIPTOR.name} ({prefix}_param) or " if own is not None else ""
                raise AttributeError(f"{where}: no field {key!r} in {own_name}LayerParameter{_hint(key)}")

    def _get_name(self, names, autonames):
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers, names, autonames):
        """Adds this layer, after every layer it needs that is not in ``layers`` yet, to ``layers``.

        The order is pycaffe's recursive one (each bottom's layers, in bottom order, then this one), walked with
        an explicit stack so that deep nets do not run into Python's recursion limit.
        """
        if self in layers:
            return
        stack = [(self, iter(self.inputs))]
        walking = {self}
        while stack:
            fn, bottoms = stack[-1]
            for bottom in bottoms:
                if bottom.fn not in layers:
                    if bottom.fn in walking:
                        raise ValueError(f"L.{bottom.fn.type_name} depends on its own output")
                    stack.append((bottom.fn, iter(bottom.fn.inputs)))
                    walking.add(bottom.fn)
                    break
            else:
                stack.pop()
                walking.discard(fn)
                layers[fn] = fn._make_layer(layers, names, autonames)

    def _make_layer(self, layers, names, autonames):
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        # A bottom is whatever its layer calls that top, which for an in-place layer is its own bottom's name.
        layer.bottom.extend(layers[bottom.fn].top[bottom.n] for bottom in self.inputs)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(self._get_top_name(top, names, autonames) for top in self.tops)
        layer.name = self._get_name(names, autonames)
        # After the generated name, so that an explicit name=... wins.
        self._set_params(layer, self.params)
        return layer

    def __repr__(self):
        return f"<Function {self.type_name}, {len(self.inputs)} bottoms, {self.ntop} tops>"


def _function_of(value, what):
    if isinstance(value, Top):
        return value.fn
    if isinstance(value, Function):
        return value
    hint = "; unpack a layer's several tops, e.g. n.a, n.b = L.X(..., ntop=2)" if isinstance(value, tuple) else ""
    raise TypeError(f"{what} is {value!r}, not a top{hint}")


def to_proto(*tops):
    """A NetParameter with every layer needed to compute ``tops``; blobs and layers are named automatically
    (``Convolution1``, ``ReLU2`` ...)."""
    layers = OrderedDict()
    names = {}
    autonames = Counter()
    for number, top in enumerate(tops):
        _function_of(top, f"to_proto argument {number}")._to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class _NoSuchTop(AttributeError, KeyError):
    """pycaffe raises KeyError for ``n.missing``; Python (hasattr, copy, pickle) expects AttributeError."""


class NetSpec:
    """Names tops by the attributes they are assigned to, and makes the NetParameter that computes them all.

    ``n.conv1 = L.Convolution(n.data, ...)`` and ``n['conv1'] = ...`` name the top ``conv1`` (and its layer,
    if it is the layer's first top); ``n.tops`` is the OrderedDict of them, in assignment order.
    """

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        # Only reached when normal lookup fails; dunder probes must not look like missing tops.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self.tops[name]
        except KeyError:
            raise _NoSuchTop(f"NetSpec has no top {name!r}") from None

    def __delattr__(self, name):
        del self.tops[name]

    def __setitem__(self, name, value):
        self.tops[name] = value

    def __getitem__(self, name):
        return self.tops[name]

    def __delitem__(self, name):
        del self.tops[name]

    def __contains__(self, name):
        return name in self.tops

    def keys(self):
        """The top names, in assignment order."""
        return list(self.tops.keys())

    def vals(self):
        """The tops, in assignment order."""
        return list(self.tops.values())

    def update(self, name, params):
        """Merges ``params`` into the parameters of the layer that makes top ``name``."""
        self.tops[name]._update(params)

    def to_proto(self):
        """A NetParameter with the layers that compute every assigned top, named after their attributes;
        unassigned intermediate tops get generated names."""
        names = {}
        for name, top in self.tops.items():
            _function_of(top, f"NetSpec top {name!r}")
            names[top] = name
        layers = OrderedDict()
        autonames = Counter()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """The ``caffe.layers`` pseudo-module: ``layers.<Type>(*bottoms, **params)`` specifies a layer of that type.

    It returns the layer's :class:`Top`, a tuple of tops when ``ntop`` > 1, or the :class:`Function` when
    ``ntop=0``. Any type name is accepted (Python and custom layers too); the net's reader checks it.
    """

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def make_layer(*bottoms, **params):
            fn = Function(type_name, bottoms, params)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        make_layer.__name__ = make_layer.__qualname__ = type_name
        make_layer.__doc__ = f"A {type_name} layer over the given bottoms; keywords set its parameters."
        return make_layer


class _ParameterConstants:
    """``params.<X>``: the constants of message ``caffe_pb2.<X>Parameter``, looked up when used, as pycaffe does."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, constant):
        if constant.startswith("__"):
            raise AttributeError(constant)
        message = getattr(caffe_pb2, self._name + "Parameter", None)
        if message is None:
            raise AttributeError(f"params.{self._name}: caffe_pb2 has no message {self._name}Parameter")
        try:
            return getattr(message, constant)
        except AttributeError:
            known = ", ".join(
                value.name for enum in message.DESCRIPTOR.enum_types for value in enum.values
            )
            raise AttributeError(
                f"params.{self._name}.{constant}: {self._name}Parameter has no such constant (it has: {known})"
            ) from None

    def __repr__(self):
        return f"<params.{self._name}: constants of caffe_pb2.{self._name}Parameter>"


class Parameters:
    """The ``caffe.params`` pseudo-module: ``params.<X>.<NAME>`` is the enum constant ``<NAME>`` of
    ``caffe_pb2.<X>Parameter``, e.g. ``params.Pooling.MAX``, ``params.Data.LMDB``, ``params.Loss.VALID``."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _ParameterConstants(name)


_param_names = param_name_dict()
layers = Layers()
params = Parameters()
