"""Every message and enum of crema's ``caffe.proto`` (wire- and text-compatible with BVLC Caffe's), made at
import from the schema compiled into crema, as protoc's ``caffe_pb2.py`` would be.

``text_format.Merge(open(path).read(), caffe_pb2.NetParameter())`` and ``SerializeToString()`` work as with
pycaffe.
"""

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.internal import builder as _builder

from crema import _native


def _schema():
    files = descriptor_pb2.FileDescriptorSet.FromString(_native.descriptor_set())
    (caffe_proto,) = [f for f in files.file if f.package == "caffe"]
    return caffe_proto.SerializeToString()


DESCRIPTOR = descriptor_pool.Default().AddSerializedFile(_schema())
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, globals())
_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, "caffe.proto.caffe_pb2", globals())
