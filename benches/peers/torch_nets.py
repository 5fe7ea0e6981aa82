#!/usr/bin/env python3
"""The conv timing nets of benches/nets/ in PyTorch on the CPU, timed as `crema time` times them.

    python3 benches/peers/torch_nets.py [--threads 2] [--repeats 30] [--nets lenet,caffenet,fcn]

Prints one line per net, `NET forward+backward MEDIAN MIN step MEDIAN MIN` (ms): forward + backward of the
net (the gradient zeroed in place first, as a Caffe net does), and a whole SGD step (lr 0.01, momentum 0.9).
Medians over --repeats runs after 3 warm-up runs. The nets are those of the prototxts:

- lenet: benches/nets/lenet_infogain.prototxt (batch 64, 1x28x28; conv 20 5x5, max pool 2, conv 50 5x5, max
  pool 2, fc 500, ReLU, fc 10; InfogainLoss with H = benches/nets/H_10.npy, a 10 x 10 H like the prototxt's
  H_10.binaryproto: the values do not change the time);
- caffenet: benches/nets/caffenet_b16.prototxt (BVLC reference CaffeNet, batch 16, 3x227x227: grouped
  convolutions, LRN, dropout; softmax loss);
- fcn: benches/nets/fcn_b4.prototxt (batch 4, 3x128x128: six 3x3 convolutions with ReLU and three max pools, a
  1x1 score layer of 21 classes, a fixed grouped 16x16 stride-8 transposed convolution, crop at offset 4,
  InfogainLoss axis 1 with H = benches/nets/H_21.npy, the same values as the prototxt's H_21.binaryproto).

InfogainLoss is written by hand in its fastest idiomatic form, `-(H[labels] * log_softmax(x, 1)).sum() / count`.
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
NETS = os.path.join(HERE, "..", "nets")


def infogain(scores, labels, H):
    """-(1/count) sum H[label, k] log softmax(scores)_k over axis 1 (any trailing spatial axes)."""
    logp = F.log_softmax(scores, 1)
    rows = H[labels]  # N x ... x C
    if scores.dim() > 2:
        rows = rows.movedim(-1, 1)
    count = labels.numel()
    return -(rows * logp).sum() / count


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2, 2)
        x = F.max_pool2d(self.conv2(x), 2, 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class CaffeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)

    def forward(self, x):
        pool = lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True)
        x = self.norm(pool(F.relu(self.conv1(x))))
        x = self.norm(pool(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = pool(F.relu(self.conv5(x)))
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


class FCN(nn.Module):
    def __init__(self, classes=21):
        super().__init__()
        widths = [3, 32, 32, 64, 64, 128, 128]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:])
        )
        self.score = nn.Conv2d(128, classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, groups=classes, bias=False)
        self.up.weight.requires_grad_(False)  # lr_mult 0 in the prototxt: a fixed bilinear upsampling

    def forward(self, x):
        size = x.shape[-1]
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2, 2)
        x = self.up(self.score(x))
        return x[:, :, 4 : 4 + size, 4 : 4 + size]


def timed(model, run, repeats):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def forward_backward():
        opt.zero_grad(set_to_none=False)
        run().backward()

    def step():
        forward_backward()
        opt.step()

    results = []
    for one in (forward_backward, step):
        for _ in range(3):
            one()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            one()
            times.append((time.perf_counter() - start) * 1e3)
        results.append((statistics.median(times), min(times)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--nets", default="lenet,caffenet,fcn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# PyTorch {torch.__version__}, {args.threads} threads, oneDNN {torch.backends.mkldnn.is_available()}")

    for name in args.nets.split(","):
        if name == "lenet":
            model = LeNet()
            x = torch.rand(64, 1, 28, 28)
            labels = torch.full((64,), 3, dtype=torch.long)
            H = torch.from_numpy(np.load(os.path.join(NETS, "H_10.npy")).astype(np.float32).reshape(10, 10))
            run = lambda: infogain(model(x), labels, H)
        elif name == "caffenet":
            model = CaffeNet()
            x = torch.randn(16, 3, 227, 227)
            labels = torch.full((16,), 3, dtype=torch.long)
            run = lambda: F.cross_entropy(model(x), labels)
        elif name == "fcn":
            model = FCN()
            x = torch.randn(4, 3, 128, 128)
            labels = torch.full((4, 128, 128), 3, dtype=torch.long)
            H = torch.from_numpy(np.load(os.path.join(NETS, "H_21.npy")).astype(np.float32).reshape(21, 21))
            run = lambda: infogain(model(x), labels, H)
        else:
            raise SystemExit(f"unknown net {name!r}: lenet, caffenet or fcn")
        model.train()
        (fb, fb_min), (step, step_min) = timed(model, run, args.repeats)
        print(f"{name} forward+backward {fb:.2f} {fb_min:.2f} step {step:.2f} {step_min:.2f}", flush=True)


if __name__ == "__main__":
    main()
