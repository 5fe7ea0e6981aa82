"""ComputeH: the hand-written Python layer people put before InfogainLoss, in the form that trains.

It makes H = diag(w) from the labels it sees, as crema's native ClassWeights layer does with
`mode: RUNNING method: INVERSE_FREQUENCY normalize: MEAN_ONE` (train_val.prototxt), and gives the same H to the
last bit, so train_val_python.prototxt trains to the same weights as train_val.prototxt.

What it fixes in the usual ComputeH: a class missing from the labels seen so far gets the rarest present
class's weight (the usual layer divides by zero), and the weights keep a mean of 1 per sample (the usual layer
makes them sum to 1, which divides the learning rate by about C^2).

param_str (JSON): {"num_classes": 10, "mode": "RUNNING"}; "mode": "BATCH" counts each batch alone.
"""

import json

import numpy as np

import caffe


class ComputeH(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError("ComputeH takes the labels as its one bottom and gives H as its one top")
        params = json.loads(self.param_str)
        self.num_classes = int(params["num_classes"])
        self.running = params.get("mode", "RUNNING") == "RUNNING"
        self.counts = np.zeros(self.num_classes, dtype=np.int64)

    def reshape(self, bottom, top):
        top[0].reshape(1, 1, self.num_classes, self.num_classes)

    def forward(self, bottom, top):
        labels = bottom[0].data.ravel()
        classes = labels.astype(np.int64)
        outside = (classes != labels) | (classes < 0) | (classes >= self.num_classes)
        if outside.any():
            raise ValueError(f"label {labels[outside][0]} is not a class in [0, {self.num_classes})")
        if not self.running:
            self.counts[:] = 0
        self.counts += np.bincount(classes, minlength=self.num_classes)
        top[0].data[...] = np.diag(self.weights()).astype(np.float32)

    def weights(self):
        counts = self.counts
        total = int(counts.sum())
        if total == 0:
            return np.ones(self.num_classes)
        rarest = counts[counts > 0].min()
        weights = 1.0 / np.where(counts > 0, counts, rarest).astype(np.float64)
        # Mean one per sample: sum_c w_c n_c = N. Summed class by class, as crema's ClassWeights does, so that
        # the two agree to the last bit.
        weighted = 0.0
        for weight, count in zip(weights, counts):
            weighted += float(weight) * float(count)
        return weights * (total / weighted)

    def backward(self, top, propagate_down, bottom):
        # H is computed, not learned; labels take no gradient.
        pass
