"""Caffe's "Learning LeNet" notebook (examples/01-learning-lenet.ipynb) as a script, run unchanged by crema's
`caffe` module (and by BVLC pycaffe).

What the notebook does, step by step: write the train and test nets with NetSpec, write a solver with
caffe_pb2.SolverParameter, load it with caffe.get_solver, look at the blobs and params, step the solver from
Python while reading the loss from solver.net.blobs and scoring the test net from solver.test_nets[0].blobs.

The notebook reads MNIST (28x28) from LMDB; this script reads the 8x8 digits that ship with crema
(../imbalanced-digits, HDF5), so the kernels are smaller. Run from this folder:

    python lenet.py            # prints the test accuracy every 25 iterations
"""

import os
import sys

import numpy as np

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "imbalanced-digits")
OUT = os.path.join(HERE, "out")


def lenet(source, batch_size):
    # The notebook's L.Data(backend=P.Data.LMDB, transform_param=dict(scale=1./255)) becomes HDF5Data: the
    # digits are stored already scaled.
    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(batch_size=batch_size, source=source, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=3, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=2, num_output=50, weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


def main():
    os.makedirs(OUT, exist_ok=True)
    train_net_path = os.path.join(OUT, "lenet_auto_train.prototxt")
    test_net_path = os.path.join(OUT, "lenet_auto_test.prototxt")
    with open(train_net_path, "w") as f:
        f.write(str(lenet(os.path.join(DIGITS, "train_h5.txt"), 64)))
    with open(test_net_path, "w") as f:
        f.write(str(lenet(os.path.join(DIGITS, "test_h5.txt"), 100)))

    s = caffe_pb2.SolverParameter()
    s.random_seed = 0xCAFFE
    s.train_net = train_net_path
    s.test_net.append(test_net_path)
    s.test_interval = 500  # the script tests by hand below
    s.test_iter.append(5)
    s.max_iter = 10000
    s.type = "SGD"
    s.base_lr = 0.01
    s.momentum = 0.9
    s.weight_decay = 5e-4
    s.lr_policy = "inv"
    s.gamma = 0.0001
    s.power = 0.75
    s.display = 0
    s.snapshot = 5000
    s.snapshot_prefix = os.path.join(OUT, "lenet")
    s.solver_mode = caffe_pb2.SolverParameter.GPU
    solver_path = os.path.join(OUT, "lenet_auto_solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(str(s))

    caffe.set_device(0)  # crema warns once that it runs on the CPU, and goes on
    caffe.set_mode_gpu()
    solver = caffe.get_solver(solver_path)

    print([(k, v.data.shape) for k, v in solver.net.blobs.items()])
    print([(k, v[0].data.shape) for k, v in solver.net.params.items()])

    solver.net.forward()  # train net
    solver.test_nets[0].forward()  # test net (there can be more than one)
    print("train labels", solver.net.blobs["label"].data[:8])
    print("test labels", solver.test_nets[0].blobs["label"].data[:8])
    solver.step(1)
    print("conv1 gradient", solver.net.params["conv1"][0].diff[:, 0].shape)

    niter = 200
    test_interval = 25
    train_loss = np.zeros(niter)
    test_acc = np.zeros(int(np.ceil(niter / test_interval)))
    output = np.zeros((niter, 8, 10))
    for it in range(niter):
        solver.step(1)  # SGD by Caffe
        train_loss[it] = solver.net.blobs["loss"].data
        # The first test batch, without reading the data layer again.
        solver.test_nets[0].forward(start="conv1")
        output[it] = solver.test_nets[0].blobs["score"].data[:8]
        if it % test_interval == 0:
            correct = 0
            for _ in range(5):
                solver.test_nets[0].forward()
                correct += sum(
                    solver.test_nets[0].blobs["score"].data.argmax(1) == solver.test_nets[0].blobs["label"].data
                )
            test_acc[it // test_interval] = correct / 500
            print(f"Iteration {it} testing... accuracy {test_acc[it // test_interval]:.3f}")
    print(f"train loss {train_loss[0]:.3f} -> {train_loss[-10:].mean():.3f}")
    print(f"final test accuracy {test_acc[-1]:.3f}")
    return test_acc[-1]


if __name__ == "__main__":
    sys.exit(0 if main() > 0 else 1)
