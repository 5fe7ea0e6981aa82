//! Every net of BVLC Caffe's repository (`examples/` and `models/`, copied into tests/fixtures/bvlc; see its
//! README) builds in crema and runs forward and backward once, in every phase (and stage) it declares.
//!
//! The data layers (Data, ImageData, HDF5Data, WindowData) read datasets these tests do not have: each becomes
//! an Input layer of the shape the real data has per image (MNIST 1×28×28, CIFAR-10 3×32×32, ImageNet crops
//! 3×227×227 or GoogLeNet's 3×224×224, ...), with its name, tops and include/exclude rules kept, and the net
//! rewritten so before it is built. Batches shrink to a few images (two for the ImageNet nets) so the file runs
//! in seconds. The inputs are filled with values in the range the real data has after its transform_param
//! (MNIST scaled to [0, 1), mean-subtracted pixels in [−128, 128)) and labels with class indices of the net.
//!
//! Nets with a loss run `Net::forward` and `Net::backward`; deploy nets (no loss) are built with
//! `force_backward` and run backward from random gradients on their outputs, as pycaffe's `net.backward`
//! would. Checked: the loss and every output finite (losses not negative, accuracies in [0, 1]), the deploy
//! nets' outputs of the shape Caffe gives, every parameter gradient finite and some not zero, and for deploy
//! nets a finite, non-zero gradient reaching the input.
//!
//! Left out: examples/pycaffe/linreg.prototxt (its loss is a Python layer, which crema does not have).

use std::path::PathBuf;
use std::time::Instant;

use crema::proto::caffe::{InputParameter, Phase};
use crema::proto::{files, BlobShape, NetParameter, NetState};
use crema::{Net, NetOptions};
use rand::Rng as _;

/// The data layers a test cannot feed; each becomes an Input layer.
const DATA_LAYERS: [&str; 5] = ["Data", "ImageData", "HDF5Data", "WindowData", "MemoryData"];

/// One net of the fixtures and how to feed it.
struct Case {
    /// Under tests/fixtures/bvlc.
    path: &'static str,
    /// Whether the file is a solver holding the net (`net_param`).
    in_solver: bool,
    /// What the data layers' first top holds per image (after cropping); the second top holds labels.
    sample: &'static [usize],
    /// Labels are drawn from `0..classes` (0 for nets without labels).
    classes: usize,
    /// Images per batch (the first axis of every data layer's and Input layer's tops).
    batch: usize,
    /// Input values are drawn uniformly from this range.
    values: (f32, f32),
    /// The phases, each with its stages, the net is built for.
    states: &'static [(Phase, &'static [&'static str])],
    /// For deploy nets: outputs and the shapes Caffe gives them.
    outputs: &'static [(&'static str, &'static [usize])],
}

const TRAIN_TEST: &[(Phase, &[&str])] = &[(Phase::Train, &[]), (Phase::Test, &[])];
const TRAIN: &[(Phase, &[&str])] = &[(Phase::Train, &[])];
const TEST: &[(Phase, &[&str])] = &[(Phase::Test, &[])];

/// MNIST scaled by 1/256 (or 1/255).
const UNIT: (f32, f32) = (0.0, 1.0);
/// Pixels less a mean image or mean values.
const CENTRED: (f32, f32) = (-128.0, 128.0);

const fn case(path: &'static str, sample: &'static [usize], classes: usize, batch: usize) -> Case {
    Case {
        path,
        in_solver: false,
        sample,
        classes,
        batch,
        values: CENTRED,
        states: TRAIN_TEST,
        outputs: &[],
    }
}

const MNIST: &[usize] = &[1, 28, 28];
const CIFAR: &[usize] = &[3, 32, 32];
const CROP: &[usize] = &[3, 227, 227];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bvlc")
}

/// The net of `case`, its data layers made Input layers, every batch `case.batch`; for deploy nets (no
/// data layer) `force_backward`. Returns the net and the names of the label tops.
fn rewritten(case: &Case) -> (NetParameter, Vec<String>) {
    let path = fixtures().join(case.path);
    let mut net = if case.in_solver {
        files::read_solver_text(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
            .net_param
            .unwrap_or_else(|| panic!("{}: no net_param", case.path))
    } else {
        files::read_net_text(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    };
    let shape = |dims: &[usize]| BlobShape {
        dim: dims.iter().map(|&d| d as i64).collect(),
    };
    let mut labels = Vec::new();
    let mut data_layers = 0;
    for layer in &mut net.layer {
        let kind = layer.r#type().to_string();
        if DATA_LAYERS.contains(&kind.as_str()) {
            data_layers += 1;
            let mut image = vec![case.batch];
            image.extend_from_slice(case.sample);
            let mut shapes = vec![shape(&image)];
            if let Some(label) = layer.top.get(1) {
                assert!(
                    case.classes > 0,
                    "{}: a label top but no classes",
                    case.path
                );
                shapes.push(shape(&[case.batch]));
                labels.push(label.clone());
            }
            assert!(
                layer.top.len() <= 2,
                "{}: {} tops",
                case.path,
                layer.top.len()
            );
            layer.r#type = Some("Input".into());
            layer.data_param = None;
            layer.image_data_param = None;
            layer.hdf5_data_param = None;
            layer.window_data_param = None;
            layer.memory_data_param = None;
            layer.transform_param = None;
            layer.input_param = Some(InputParameter { shape: shapes });
        } else if kind == "Input" {
            let input = layer
                .input_param
                .as_mut()
                .expect("Input layers give shapes");
            for s in &mut input.shape {
                s.dim[0] = case.batch as i64;
            }
        }
    }
    if data_layers == 0 {
        net.force_backward = Some(true);
    }
    (net, labels)
}

/// Fills the net's inputs: labels with class indices, everything else from `case.values`.
fn fill_inputs(net: &mut Net, case: &Case, labels: &[String]) {
    let mut rng = crema::math::rng(7, 0);
    let names: Vec<String> = net.input_names().iter().map(|s| s.to_string()).collect();
    for name in names {
        let blob = net.blob_mut(&name).unwrap();
        if labels.contains(&name) {
            for v in blob.data_mut() {
                *v = rng.random_range(0..case.classes) as f32;
            }
        } else {
            let (low, high) = case.values;
            for v in blob.data_mut() {
                *v = rng.random_range(low..high);
            }
        }
    }
}

/// Deploy nets give no fillers (their weights come from a .caffemodel), so every weight starts at 0 and no
/// gradient would pass: weights drawn as a trained net's might be, uniform with variance 1 / fan-in, biases
/// small.
fn trained_weights(net: &mut Net) {
    let mut rng = crema::math::rng(13, 0);
    let params: Vec<(usize, usize)> = net.params().iter().map(|p| (p.layer, p.index)).collect();
    for (layer, index) in params {
        let blob = &mut net.layer_params_mut(layer)[index];
        let bound = if blob.num_axes() > 1 {
            (3.0 / blob.count_from(1) as f32).sqrt()
        } else {
            0.1
        };
        for v in blob.data_mut() {
            *v = rng.random_range(-bound..bound);
        }
    }
}

/// Builds and runs `case` in every state it lists.
fn run(case: &Case) {
    let (param, labels) = rewritten(case);
    let deploy = param.force_backward();
    for &(phase, stages) in case.states {
        let start = Instant::now();
        let what = format!("{} ({phase:?} {stages:?})", case.path);
        let state = NetState {
            phase: Some(phase as i32),
            stage: stages.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let options = NetOptions {
            origin: case.path.into(),
            ..Default::default()
        };
        let mut net = Net::new(&param, &state, &options).unwrap_or_else(|e| panic!("{what}: {e}"));
        fill_inputs(&mut net, case, &labels);
        if deploy {
            trained_weights(&mut net);
        }
        let loss = net
            .forward()
            .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
        assert!(loss.is_finite() && loss >= 0.0, "{what}: loss {loss}");

        let types: Vec<String> = net.layer_types().map(str::to_string).collect();
        let mut has_loss = false;
        for (name, values, weight) in net.output_values() {
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{what}: output {name} is not finite"
            );
            let producer = net.producer_of(&name).map(|i| types[i].as_str());
            if weight != 0.0 {
                has_loss = true;
                assert!(
                    values.iter().all(|&v| v >= 0.0),
                    "{what}: loss {name} = {values:?}"
                );
            }
            if producer == Some("Accuracy") {
                assert!(
                    values.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{what}: accuracy {name} = {values:?}"
                );
            }
        }
        // A loss layer's anonymous top (PASCAL's "(automatic)") is no output but weighs in the loss.
        has_loss |= loss > 0.0;
        assert_eq!(
            has_loss, !deploy,
            "{what}: a loss only where there is data to learn from"
        );
        for &(name, shape) in case.outputs {
            let blob = net
                .blob(name)
                .unwrap_or_else(|| panic!("{what}: no output {name}"));
            assert_eq!(blob.shape(), shape, "{what}: output {name}");
        }

        net.clear_param_diffs();
        if deploy {
            // Random gradients on every output, as pycaffe's net.backward(**{output: G}).
            let mut rng = crema::math::rng(11, 0);
            let gradients: Vec<(String, Vec<f32>)> = net
                .output_names()
                .iter()
                .map(|&name| {
                    let count = net.blob(name).unwrap().count();
                    let g = (0..count).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                    (name.to_string(), g)
                })
                .collect();
            let given: Vec<(&str, &[f32])> = gradients
                .iter()
                .map(|(n, g)| (n.as_str(), g.as_slice()))
                .collect();
            net.backward_from(&given)
                .unwrap_or_else(|e| panic!("{what}: backward: {e}"));
            for name in net.input_names() {
                let diff = net.blob_diff(name).unwrap();
                assert!(
                    diff.iter().all(|v| v.is_finite()),
                    "{what}: gradient of {name}"
                );
                assert!(
                    diff.iter().any(|&v| v != 0.0),
                    "{what}: no gradient reaches {name}"
                );
            }
        } else {
            net.backward()
                .unwrap_or_else(|e| panic!("{what}: backward: {e}"));
        }
        let mut learning = 0;
        for (i, info) in net.params().iter().enumerate() {
            let diff = net.layer_params(info.layer)[info.index].diff();
            assert!(
                diff.iter().all(|v| v.is_finite()),
                "{what}: gradient of param {i} (layer {}) is not finite",
                info.layer
            );
            learning += usize::from(diff.iter().any(|&v| v != 0.0));
        }
        assert!(learning > 0, "{what}: no parameter has a gradient");
        eprintln!(
            "{what}: loss {loss}, {:.2} s",
            start.elapsed().as_secs_f64()
        );
    }
}

// LeNet and its relatives (MNIST, 10 classes).

#[test]
fn lenet_train_test() {
    run(&Case {
        values: UNIT,
        ..case("examples/mnist/lenet_train_test.prototxt", MNIST, 10, 16)
    });
}

#[test]
fn lenet_deploy() {
    run(&Case {
        values: UNIT,
        states: TEST,
        outputs: &[("prob", &[16, 10])],
        ..case("examples/mnist/lenet.prototxt", MNIST, 0, 16)
    });
}

/// LeNet written inside its solver in the V1 format (upgraded), with two test stages.
#[test]
fn lenet_consolidated_solver_net() {
    run(&Case {
        in_solver: true,
        values: UNIT,
        states: &[
            (Phase::Train, &[]),
            (Phase::Test, &["test-on-test-set"]),
            (Phase::Test, &["test-on-train-set"]),
        ],
        ..case(
            "examples/mnist/lenet_consolidated_solver.prototxt",
            MNIST,
            10,
            16,
        )
    });
}

/// Caffe's MNIST autoencoder names two layers "loss" (the SigmoidCrossEntropyLoss it trains on and the
/// EuclideanLoss of weight 0 it reports); neither has weights or state, so the name may repeat, as in Caffe.
#[test]
fn mnist_autoencoder() {
    run(&Case {
        values: UNIT,
        states: &[
            (Phase::Train, &[]),
            (Phase::Test, &["test-on-train"]),
            (Phase::Test, &["test-on-test"]),
        ],
        ..case("examples/mnist/mnist_autoencoder.prototxt", MNIST, 0, 16)
    });
}

/// Pairs of MNIST digits side by side as two channels; the label is whether they are the same digit.
#[test]
fn siamese_train_test() {
    run(&Case {
        values: UNIT,
        ..case(
            "examples/siamese/mnist_siamese_train_test.prototxt",
            &[2, 28, 28],
            2,
            16,
        )
    });
}

#[test]
fn siamese_deploy() {
    run(&Case {
        values: UNIT,
        states: TEST,
        outputs: &[("feat", &[16, 2])],
        ..case("examples/siamese/mnist_siamese.prototxt", MNIST, 0, 16)
    });
}

// CIFAR-10 (3×32×32 less the mean image, 10 classes).

#[test]
fn cifar10_quick_train_test() {
    run(&case(
        "examples/cifar10/cifar10_quick_train_test.prototxt",
        CIFAR,
        10,
        8,
    ));
}

#[test]
fn cifar10_quick_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[8, 10])],
        ..case("examples/cifar10/cifar10_quick.prototxt", CIFAR, 0, 8)
    });
}

#[test]
fn cifar10_full_train_test() {
    run(&case(
        "examples/cifar10/cifar10_full_train_test.prototxt",
        CIFAR,
        10,
        8,
    ));
}

#[test]
fn cifar10_full_sigmoid_train_test() {
    run(&case(
        "examples/cifar10/cifar10_full_sigmoid_train_test.prototxt",
        CIFAR,
        10,
        8,
    ));
}

#[test]
fn cifar10_full_sigmoid_train_test_bn() {
    run(&case(
        "examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt",
        CIFAR,
        10,
        8,
    ));
}

#[test]
fn cifar10_full_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[8, 10])],
        ..case("examples/cifar10/cifar10_full.prototxt", CIFAR, 0, 8)
    });
}

// Logistic regression and a small MLP on 4 features, 2 classes (hdf5_classification).

#[test]
fn hdf5_classification_train_val() {
    run(&Case {
        values: (-3.0, 3.0),
        ..case(
            "examples/hdf5_classification/train_val.prototxt",
            &[4],
            2,
            10,
        )
    });
}

#[test]
fn hdf5_classification_nonlinear_train_val() {
    run(&Case {
        values: (-3.0, 3.0),
        ..case(
            "examples/hdf5_classification/nonlinear_train_val.prototxt",
            &[4],
            2,
            10,
        )
    });
}

/// Written by pycaffe's net_spec as two files, one per phase.
#[test]
fn hdf5_classification_nonlinear_auto_train_and_test() {
    for (path, states) in [
        (
            "examples/hdf5_classification/nonlinear_auto_train.prototxt",
            TRAIN,
        ),
        (
            "examples/hdf5_classification/nonlinear_auto_test.prototxt",
            TEST,
        ),
    ] {
        run(&Case {
            values: (-3.0, 3.0),
            states,
            ..case(path, &[4], 2, 10)
        });
    }
}

// ImageNet models (227×227 crops, 1000 classes; two images per batch).

#[test]
fn caffenet_train_val() {
    run(&case(
        "models/bvlc_reference_caffenet/train_val.prototxt",
        CROP,
        1000,
        2,
    ));
}

#[test]
fn caffenet_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[2, 1000])],
        ..case("models/bvlc_reference_caffenet/deploy.prototxt", CROP, 0, 2)
    });
}

#[test]
fn alexnet_train_val() {
    run(&case(
        "models/bvlc_alexnet/train_val.prototxt",
        CROP,
        1000,
        2,
    ));
}

#[test]
fn alexnet_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[2, 1000])],
        ..case("models/bvlc_alexnet/deploy.prototxt", CROP, 0, 2)
    });
}

/// GoogLeNet: 224×224 crops, three losses (two auxiliary classifiers) and top-1/top-5 accuracies in TEST.
#[test]
fn googlenet_train_val() {
    run(&case(
        "models/bvlc_googlenet/train_val.prototxt",
        &[3, 224, 224],
        1000,
        2,
    ));
}

#[test]
fn googlenet_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[2, 1000])],
        ..case(
            "models/bvlc_googlenet/deploy.prototxt",
            &[3, 224, 224],
            0,
            2,
        )
    });
}

/// R-CNN's detector: CaffeNet's features scored by 200 one-against-all classifiers (no softmax).
#[test]
fn rcnn_ilsvrc13_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("fc-rcnn", &[2, 200])],
        ..case(
            "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt",
            CROP,
            0,
            2,
        )
    });
}

/// CaffeNet fine-tuned on 20 Flickr styles, reading an image list (ImageData).
#[test]
fn flickr_style_train_val() {
    run(&case(
        "models/finetune_flickr_style/train_val.prototxt",
        CROP,
        20,
        2,
    ));
}

#[test]
fn flickr_style_deploy() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[2, 20])],
        ..case("models/finetune_flickr_style/deploy.prototxt", CROP, 0, 2)
    });
}

/// CaffeNet reading ImageNet's validation images from a list, for extract_features (no phase rules: run as
/// the TEST net it is used as).
#[test]
fn feature_extraction_imagenet_val() {
    run(&Case {
        states: TEST,
        ..case(
            "examples/feature_extraction/imagenet_val.prototxt",
            CROP,
            1000,
            2,
        )
    });
}

/// CaffeNet fine-tuned on PASCAL VOC windows (21 classes). Its data layer is WindowData, which crema does not
/// have; replaced by an Input like the others, the rest of the net runs. Its SoftmaxWithLoss layer names no
/// top: it gets an anonymous one, as Caffe gives it, which weighs in the loss but is not an output.
#[test]
fn pascal_finetune_trainval_test() {
    run(&case(
        "examples/finetune_pascal_detection/pascal_finetune_trainval_test.prototxt",
        CROP,
        21,
        2,
    ));
}

/// CaffeNet with its fully connected layers made convolutions: a 451×451 input gives an 8×8 map of
/// class probabilities.
#[test]
fn net_surgery_caffenet_full_conv() {
    run(&Case {
        states: TEST,
        outputs: &[("prob", &[1, 1000, 8, 8])],
        ..case(
            "examples/net_surgery/bvlc_caffenet_full_conv.prototxt",
            &[3, 451, 451],
            0,
            1,
        )
    });
}

#[test]
fn net_surgery_conv() {
    run(&Case {
        states: TEST,
        outputs: &[("conv", &[1, 3, 96, 96])],
        ..case("examples/net_surgery/conv.prototxt", &[1, 100, 100], 0, 1)
    });
}
