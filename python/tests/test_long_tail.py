"""The long-tail layers from Python, against numpy: LogitAdjust, FocalLoss, and ClassWeights' deferred
re-weighting across a snapshot and resume."""

import numpy as np
import pytest

import caffe


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_logit_adjust_and_the_loss_it_makes(write, tmp_path):
    counts = np.array([50, 20, 5, 1], np.float64)
    labels_file = tmp_path / "train_labels.npy"
    np.save(labels_file, np.repeat(np.arange(4), counts.astype(int)).astype(np.float32))
    model = write(
        "n.prototxt",
        f"""
        force_backward: true
        layer {{ name: "s" type: "Input" top: "s" input_param {{ shape {{ dim: 16 dim: 4 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 16 }} }} }}
        layer {{ name: "adjust" type: "LogitAdjust" bottom: "s" top: "s" include {{ phase: TRAIN }}
          logit_adjust_param {{ tau: 1.5 source: "{labels_file}" }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" }}
        """,
    )
    rng = np.random.default_rng(4)
    scores = rng.normal(scale=3, size=(16, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 16).astype(np.float32)
    prior = counts / counts.sum()
    adjusted = scores + 1.5 * np.log(prior)
    expected = -log_softmax(adjusted.astype(np.float64))[np.arange(16), labels.astype(int)].mean()
    train = caffe.Net(model, caffe.TRAIN)
    out = train.forward(s=scores, y=labels)
    # A net input rewritten in place shows what was fed (so that writing it feeds the net).
    np.testing.assert_array_equal(train.blobs["s"].data, scores)
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    # The gradient reaching the raw scores is softmax(adjusted) - onehot, over the batch.
    grads = train.backward(diffs=["s"])
    p = np.exp(log_softmax(adjusted.astype(np.float64)))
    p[np.arange(16), labels.astype(int)] -= 1
    np.testing.assert_allclose(grads["s"], p / 16, rtol=1e-4, atol=1e-6)
    # The TEST net sees the raw scores.
    test = caffe.Net(model, caffe.TEST)
    test.forward(s=scores, y=labels)
    np.testing.assert_array_equal(test.blobs["s"].data, scores)


def test_focal_loss_against_numpy(write):
    model = write(
        "f.prototxt",
        """
        layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 8 dim: 5 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 8 } } }
        layer { name: "loss" type: "FocalLoss" bottom: "s" bottom: "y" top: "loss"
          focal_loss_param { gamma: 2 } loss_param { normalization: FULL } }
        """,
    )
    rng = np.random.default_rng(5)
    scores = rng.normal(scale=2, size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    log_p = log_softmax(scores.astype(np.float64))[np.arange(8), labels]
    expected = -(((1 - np.exp(log_p)) ** 2) * log_p).mean()
    net = caffe.Net(model, caffe.TRAIN)
    assert net.forward(s=scores, y=labels.astype(np.float32))["loss"] == pytest.approx(expected, rel=1e-5)


def test_deferred_reweighting_across_a_snapshot_and_resume(write, tmp_path):
    model = write(
        "drw.prototxt",
        """
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 8 dim: 3 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 8 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s"
          inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "H" type: "ClassWeights" bottom: "y" top: "H"
          class_weights_param { num_classes: 3 mode: RUNNING start_iter: 3 } }
        layer { name: "loss" type: "InfogainLoss" bottom: "s" bottom: "y" bottom: "H" top: "loss" }
        """,
    )
    solver_path = write(
        "s.prototxt",
        f'net: "{model}"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 100\ndisplay: 0\n'
        f'snapshot_prefix: "{tmp_path / "drw"}"\nrandom_seed: 3\n',
    )
    rng = np.random.default_rng(6)
    batches = [
        (rng.normal(size=(8, 3)).astype(np.float32), rng.choice(3, 8, p=[0.7, 0.2, 0.1]).astype(np.float32))
        for _ in range(6)
    ]

    def step(solver, i):
        solver.net.blobs["x"].data[...] = batches[i][0]
        solver.net.blobs["y"].data[...] = batches[i][1]
        solver.step(1)
        return solver.net.blobs["H"].data[0, 0].copy()

    whole = caffe.get_solver(solver_path)
    hs = [step(whole, i) for i in range(6)]
    for h in hs[:3]:
        np.testing.assert_array_equal(h, np.eye(3))
    for h in hs[3:]:
        assert not np.array_equal(h, np.eye(3))
    # From the running counts of every batch seen (identity phase included): inverse frequency, mean one.
    counts = np.bincount(np.concatenate([b[1] for b in batches[:4]]).astype(int), minlength=3)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 1.0 / counts[counts > 0].min())
    w *= counts.sum() / (w * counts).sum()
    np.testing.assert_allclose(np.diag(hs[3]), w, rtol=1e-6)

    first = caffe.get_solver(solver_path)
    for i in range(2):
        step(first, i)
    first.snapshot()
    resumed = caffe.get_solver(solver_path)
    resumed.restore(str(tmp_path / "drw_iter_2.solverstate"))
    again = [step(resumed, i) for i in range(2, 6)]
    for a, b in zip(again, hs[2:]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.net.params["ip"][0].data, whole.net.params["ip"][0].data)


def test_a_resumed_solver_draws_the_same_balanced_batches(write, tmp_path):
    from conftest import EXAMPLES

    train_list = EXAMPLES / "imbalanced-digits" / "train_h5.txt"
    model = write(
        "sampled.prototxt",
        f"""
        layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
          hdf5_data_param {{ source: "{train_list}" batch_size: 16 }}
          sampling_param {{ mode: CLASS_BALANCED }} }}
        layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "s"
          inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }}
        """,
    )
    solver_path = write(
        "s.prototxt",
        f'net: "{model}"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 100\ndisplay: 0\n'
        f'snapshot_prefix: "{tmp_path / "cb"}"\nrandom_seed: 11\n',
    )

    def labels_of(solver, steps):
        seen = []
        for _ in range(steps):
            solver.step(1)
            seen.append(solver.net.blobs["label"].data.copy())
        return seen

    whole = caffe.get_solver(solver_path)
    all_labels = labels_of(whole, 40)
    counts = np.bincount(np.concatenate(all_labels).astype(int), minlength=10)
    # Every digit about equally often (640 draws: 64 each), though the training set is long-tailed.
    assert counts.min() > 30 and counts.max() < 110, counts

    first = caffe.get_solver(solver_path)
    labels_of(first, 15)
    first.snapshot()
    resumed = caffe.get_solver(solver_path)
    resumed.restore(str(tmp_path / "cb_iter_15.solverstate"))
    for a, b in zip(labels_of(resumed, 25), all_labels[15:]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.net.params["ip"][0].data, whole.net.params["ip"][0].data)
