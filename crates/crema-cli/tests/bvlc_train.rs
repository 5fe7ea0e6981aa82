//! `crema train` on BVLC Caffe's own nets and solvers (tests/fixtures/bvlc): LeNet and CIFAR-10 quick train a
//! few iterations, their LMDB Data layers replaced by HDF5Data layers reading a small synthetic dataset of the
//! real data's shape, and the solvers' other settings (learning rate policy, momentum, weight decay) Caffe's.
//!
//! The dataset is written by crema itself (an Input → HDF5Output net), so these tests need no HDF5 library.
//!
//! Every other BVLC net that has a solver (CIFAR-10 full with and without BatchNorm, the MNIST autoencoder,
//! the siamese net, CaffeNet, AlexNet, GoogLeNet, flickr-style and PASCAL fine-tuning) trains 3 iterations from its
//! own solver, and the HDF5 classification example's nets from the solvers its notebook writes, their data layers
//! made DummyData of the real data's shape, 2 examples a batch (the large nets in a test build would otherwise
//! take minutes).

mod common;

use common::{crema, fixture, stderr, temp_dir};

use std::path::{Path, PathBuf};

use crema::proto::caffe::{
    DummyDataParameter, FillerParameter, Hdf5DataParameter, Hdf5OutputParameter, InputParameter,
    Phase,
};
use crema::proto::{
    files, text, BlobShape, LayerParameter, NetParameter, NetState, SolverParameter,
};
use crema::{Net, NetOptions};

/// Writes `rows` synthetic examples of `sample` (per-row shape) to `path` as HDF5 datasets `data` (uniform in
/// `values`) and `label` (`0..classes`, in turn).
fn write_dataset(path: &Path, rows: usize, sample: &[usize], values: (f32, f32), classes: usize) {
    let shape = |dims: Vec<usize>| BlobShape {
        dim: dims.into_iter().map(|d| d as i64).collect(),
    };
    let mut data_shape = vec![rows];
    data_shape.extend_from_slice(sample);
    let net = NetParameter {
        layer: vec![
            LayerParameter {
                name: Some("input".into()),
                r#type: Some("Input".into()),
                top: vec!["data".into(), "label".into()],
                input_param: Some(InputParameter {
                    shape: vec![shape(data_shape), shape(vec![rows])],
                }),
                ..Default::default()
            },
            LayerParameter {
                name: Some("output".into()),
                r#type: Some("HDF5Output".into()),
                bottom: vec!["data".into(), "label".into()],
                hdf5_output_param: Some(Hdf5OutputParameter {
                    file_name: Some(path.display().to_string()),
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let state = NetState {
        phase: Some(Phase::Test as i32),
        ..Default::default()
    };
    let mut net = Net::new(&net, &state, &NetOptions::default()).unwrap();
    // A fixed pseudo-random sequence (no generator crate needed here).
    let mut seed = 0x2545_f491_u32;
    let (low, high) = values;
    for v in net.blob_mut("data").unwrap().data_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *v = low + (high - low) * (seed as f32 / u32::MAX as f32);
    }
    for (i, v) in net
        .blob_mut("label")
        .unwrap()
        .data_mut()
        .iter_mut()
        .enumerate()
    {
        *v = (i % classes) as f32;
    }
    net.forward().unwrap();
}

/// Copies Caffe's solver `solver` and the net it names into `dir`, the net's Data layers made HDF5Data layers
/// reading `list` (their batch sizes kept), and the solver set to run `max_iter` iterations, testing every 2
/// (one batch), logging every iteration and snapshotting nothing. Returns the solver's path.
fn rewrite(solver: &str, dir: &Path, list: &Path, max_iter: i32) -> PathBuf {
    let (param, _) = files::read_solver_text(&fixture(&format!("bvlc/{solver}"))).unwrap();
    let net_path = fixture(&format!("bvlc/{}", param.net.as_deref().unwrap()));
    let (mut net, _) = files::read_net_text(&net_path).unwrap();
    let mut replaced = 0;
    for layer in &mut net.layer {
        if layer.r#type() != "Data" {
            continue;
        }
        let batch_size = layer.data_param.as_ref().unwrap().batch_size();
        layer.r#type = Some("HDF5Data".into());
        layer.data_param = None;
        layer.transform_param = None;
        layer.hdf5_data_param = Some(Hdf5DataParameter {
            source: Some(list.display().to_string()),
            batch_size: Some(batch_size),
            ..Default::default()
        });
        replaced += 1;
    }
    assert_eq!(replaced, 2, "{solver}: a TRAIN and a TEST Data layer");
    let net_file = dir.join(net_path.file_name().unwrap());
    files::write_text(&net_file, &net).unwrap();
    let mut param = param;
    param.net = Some(net_file.display().to_string());
    shorten(param, dir, max_iter)
}

/// Writes `param` (a solver whose nets are already in `dir`) to `dir/solver.prototxt`, made to run
/// `max_iter` iterations, testing one batch at the start and every 2 and snapshotting nothing.
fn shorten(mut param: SolverParameter, dir: &Path, max_iter: i32) -> PathBuf {
    param.max_iter = Some(max_iter);
    param.test_iter = vec![1; param.test_state.len().max(param.test_net.len()).max(1)];
    // GoogLeNet's solver skips the test before training; every run here tests at iteration 0.
    param.test_initialization = Some(true);
    param.test_interval = Some(2);
    param.display = Some(1);
    param.snapshot = Some(0);
    param.snapshot_after_train = Some(false);
    param.snapshot_prefix = Some(dir.join("snapshot").display().to_string());
    let solver_file = dir.join("solver.prototxt");
    files::write_text(&solver_file, &param).unwrap();
    solver_file
}

/// Every number after `loss = ` or an output's ` = ` in the log.
fn logged_values(log: &str) -> Vec<(String, f32)> {
    log.lines()
        .filter(|line| line.contains("loss = ") || line.contains("net output #"))
        .map(|line| {
            let value = line
                .split(" = ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f32 = value
                .parse()
                .unwrap_or_else(|_| panic!("{value:?} in {line:?}"));
            (line.to_string(), value)
        })
        .collect()
}

/// Trains Caffe's `solver` for 3 iterations on `rows` synthetic examples and checks the log.
fn train(name: &str, solver: &str, sample: &[usize], values: (f32, f32), classes: usize) {
    let dir = temp_dir(&format!("bvlc-{name}"));
    let h5 = dir.join("train.h5");
    write_dataset(&h5, 200, sample, values, classes);
    let list = dir.join("train.txt");
    std::fs::write(&list, format!("{}\n", h5.display())).unwrap();
    let solver_file = rewrite(solver, &dir, &list, 3);
    train_and_check(name, &solver_file, &dir);
}

/// Trains Caffe's `solver` (in tests/fixtures/bvlc) for 3 iterations on DummyData (see [`dummy_net`]).
fn train_on_dummy_data(name: &str, solver: &str, sample: &[usize]) {
    let (param, _) = files::read_solver_text(&fixture(&format!("bvlc/{solver}"))).unwrap();
    train_solver_on_dummy_data(name, param, sample);
}

/// Trains `param` for 3 iterations, every net it names (`net`, or `train_net` and `test_net`, paths under
/// tests/fixtures/bvlc) rewritten by [`dummy_net`] into a scratch folder; checks the log.
fn train_solver_on_dummy_data(name: &str, mut param: SolverParameter, sample: &[usize]) {
    let dir = temp_dir(&format!("bvlc-{name}"));
    let mut replaced = 0;
    let mut place = |path: &mut String| {
        let source = fixture(&format!("bvlc/{path}"));
        let (net, count) = dummy_net(&source, sample);
        replaced += count;
        let file = dir.join(source.file_name().unwrap());
        files::write_text(&file, &net).unwrap();
        *path = file.display().to_string();
    };
    param.net.iter_mut().for_each(&mut place);
    param.train_net.iter_mut().for_each(&mut place);
    param.test_net.iter_mut().for_each(&mut place);
    assert!(replaced >= 2, "{name}: no TRAIN and TEST data layers");
    let solver_file = shorten(param, &dir, 3);
    train_and_check(name, &solver_file, &dir);
}

/// The net at `path` with its Data, ImageData, WindowData (not in crema) and HDF5Data layers made DummyData:
/// `sample` per example (uniform in [0, 1]), 2 examples a batch, labels 1; and how many layers were replaced.
fn dummy_net(path: &Path, sample: &[usize]) -> (NetParameter, usize) {
    let (mut net, _) = files::read_net_text(path).unwrap();
    let mut replaced = 0;
    for layer in &mut net.layer {
        if !matches!(
            layer.r#type(),
            "Data" | "ImageData" | "WindowData" | "HDF5Data"
        ) {
            continue;
        }
        let mut data_shape = vec![2i64];
        data_shape.extend(sample.iter().map(|&d| d as i64));
        let shapes = [data_shape, vec![2]];
        let fillers = [
            FillerParameter {
                r#type: Some("uniform".into()),
                min: Some(0.0),
                max: Some(1.0),
                ..Default::default()
            },
            FillerParameter {
                r#type: Some("constant".into()),
                value: Some(1.0),
                ..Default::default()
            },
        ];
        let tops = layer.top.len();
        layer.r#type = Some("DummyData".into());
        layer.data_param = None;
        layer.image_data_param = None;
        layer.window_data_param = None;
        layer.hdf5_data_param = None;
        layer.transform_param = None;
        layer.dummy_data_param = Some(DummyDataParameter {
            shape: shapes[..tops]
                .iter()
                .map(|dims| BlobShape { dim: dims.clone() })
                .collect(),
            data_filler: fillers[..tops].to_vec(),
            ..Default::default()
        });
        replaced += 1;
    }
    (net, replaced)
}

/// Runs `crema train --solver solver_file` in `dir` and checks its log: tests at iterations 0 and 2, a loss at
/// iterations 1 and 2, every logged value finite, accuracies in [0, 1].
fn train_and_check(name: &str, solver_file: &Path, dir: &Path) {
    let out = crema(
        &[
            "train",
            "--solver",
            solver_file.to_str().unwrap(),
            "--no-plot",
        ],
        dir,
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{name}: crema train failed:\n{log}");
    for line in [
        "Iteration 0, Testing net (#0)",
        "Iteration 2, Testing net (#0)",
        "Iteration 1, loss = ",
        "Iteration 2, loss = ",
        "Optimization Done.",
    ] {
        assert!(log.contains(line), "{name}: missing {line:?} in:\n{log}");
    }
    let values = logged_values(&log);
    let losses = values
        .iter()
        .filter(|(line, _)| line.contains("loss"))
        .count();
    // "Iteration k, loss = " for k = 0, 1, 2, and (when the loss top is an output; PASCAL's anonymous one is
    // not, as in Caffe) "Train net output #0: loss = " after each.
    assert!(losses >= 3, "{name}: {losses} losses in:\n{log}");
    let iteration_losses = log.matches("Train net output").count();
    assert!(
        iteration_losses >= 3 || name == "pascal-finetune",
        "{name}: {iteration_losses} train net outputs in:\n{log}"
    );
    for (line, value) in &values {
        assert!(value.is_finite(), "{name}: {line}");
        if line.contains("accuracy") {
            assert!((0.0..=1.0).contains(value), "{name}: {line}");
        }
    }
}

#[test]
fn lenet_trains_from_caffes_solver() {
    train(
        "lenet",
        "examples/mnist/lenet_solver.prototxt",
        &[1, 28, 28],
        (0.0, 1.0),
        10,
    );
}

#[test]
fn cifar10_quick_trains_from_caffes_solver() {
    // Pixels less the mean image, as the Data layer's transform gives them.
    train(
        "cifar10-quick",
        "examples/cifar10/cifar10_quick_solver.prototxt",
        &[3, 32, 32],
        (-128.0, 128.0),
        10,
    );
}

#[test]
fn cifar10_full_nets_train_from_caffes_solvers() {
    for (name, solver) in [
        (
            "cifar10-full",
            "examples/cifar10/cifar10_full_solver.prototxt",
        ),
        (
            "cifar10-sigmoid",
            "examples/cifar10/cifar10_full_sigmoid_solver.prototxt",
        ),
        (
            "cifar10-sigmoid-bn",
            "examples/cifar10/cifar10_full_sigmoid_solver_bn.prototxt",
        ),
    ] {
        train_on_dummy_data(name, solver, &[3, 32, 32]);
    }
}

/// The autoencoder (one data top, two test nets chosen by stage) and the siamese net (pairs of digits as two
/// channels, a similarity label, ContrastiveLoss).
#[test]
fn mnist_autoencoder_and_siamese_train_from_caffes_solvers() {
    train_on_dummy_data(
        "mnist-autoencoder",
        "examples/mnist/mnist_autoencoder_solver.prototxt",
        &[1, 28, 28],
    );
    train_on_dummy_data(
        "mnist-siamese",
        "examples/siamese/mnist_siamese_solver.prototxt",
        &[2, 28, 28],
    );
}

#[test]
fn imagenet_nets_train_from_caffes_solvers() {
    for (name, solver, side) in [
        (
            "caffenet",
            "models/bvlc_reference_caffenet/solver.prototxt",
            227,
        ),
        ("alexnet", "models/bvlc_alexnet/solver.prototxt", 227),
        ("googlenet", "models/bvlc_googlenet/solver.prototxt", 224),
        (
            "flickr-style",
            "models/finetune_flickr_style/solver.prototxt",
            227,
        ),
        (
            "pascal-finetune",
            "examples/finetune_pascal_detection/pascal_finetune_solver.prototxt",
            227,
        ),
    ] {
        train_on_dummy_data(name, solver, &[3, side, side]);
    }
}

/// The logistic regression nets of the HDF5 classification example, whose solvers its notebook writes: one
/// train_val net, and a train net with a separate test net.
#[test]
fn hdf5_classification_nets_train() {
    let solver = |nets: &str| -> SolverParameter {
        let definition = format!(
            "{nets} base_lr: 0.01 lr_policy: \"fixed\" momentum: 0.9 weight_decay: 0.0005 random_seed: 1"
        );
        text::parse(&definition, "hdf5_classification solver").unwrap()
    };
    for (name, nets) in [
        (
            "hdf5-logistic",
            "net: \"examples/hdf5_classification/train_val.prototxt\"",
        ),
        (
            "hdf5-nonlinear",
            "net: \"examples/hdf5_classification/nonlinear_train_val.prototxt\"",
        ),
        (
            "hdf5-nonlinear-auto",
            "train_net: \"examples/hdf5_classification/nonlinear_auto_train.prototxt\" \
             test_net: \"examples/hdf5_classification/nonlinear_auto_test.prototxt\"",
        ),
    ] {
        train_solver_on_dummy_data(name, solver(nets), &[4]);
    }
}
