"""Caffe's protobuf messages: :mod:`caffe.proto.caffe_pb2`."""
