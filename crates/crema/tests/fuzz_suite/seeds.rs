//! The seeds: every file of tests/fixtures (and the examples' prototxt), files made here (images, HDF5 files,
//! Datums, caffemodels, solverstates), and the folder of side files (H matrices, source lists, an LMDB) that
//! mutated nets and solvers refer to by name.

use std::path::{Path, PathBuf};

use crema::data::datum;
use crema::data::pixels::{Encoding, Image};
use crema::io::Array;
use crema::proto::{binary, text, BlobProto, BlobProtoVector, NetParameter, SolverParameter};
use hdf5_writer::{ByteOrder, DatasetBuilder, FilterDescription, Hdf5Builder, WriteOptions};

use super::mutate::TextDictionary;

/// One seed file.
#[derive(Clone, Debug)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Seed {
    fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Seed {
            name: name.into(),
            bytes: bytes.into(),
        }
    }
}

/// All seeds, by family.
#[derive(Default)]
pub struct Corpus {
    /// Every net prototxt (fixtures, examples, ours).
    pub text_nets: Vec<Seed>,
    /// Nets that build against the side folder (ours and the reference cases): the net builder's seeds.
    pub buildable_nets: Vec<Seed>,
    /// Every solver prototxt.
    pub text_solvers: Vec<Seed>,
    /// Solvers that build against the side folder.
    pub runnable_solvers: Vec<Seed>,
    /// Binary protobuf: binaryproto, caffemodel, solverstate, Datum, BlobProtoVector.
    pub binary: Vec<Seed>,
    pub npy: Vec<Seed>,
    pub h5: Vec<Seed>,
    pub images: Vec<Seed>,
    /// Label sources for `read_labels`, named with the extension they are read under.
    pub labels: Vec<Seed>,
    /// Solverstates of the solvers in [`SOLVERSTATE_SOLVERS`] (same order), and their caffemodels.
    pub solverstates: Vec<Seed>,
    pub solverstate_models: Vec<Seed>,
    /// Pieces of the net prototxt seeds.
    pub dict: TextDictionary,
    /// Pieces of the solver prototxt seeds (and of nets, below their top level).
    pub solver_dict: TextDictionary,
    /// Strings found in binary seeds and names of side files, for protobuf string fields.
    pub proto_strings: Vec<String>,
}

/// The repository's root: the first folder above this crate's (crates/crema, or fuzz/ when the cargo-fuzz
/// targets include this file) that holds tests/fixtures.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("tests/fixtures/caffe-reference").is_dir())
        .unwrap_or(manifest)
        .to_path_buf()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // The examples' generated outputs are not seeds.
            if path.file_name().is_some_and(|n| n == "out") {
                continue;
            }
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The layer types of the registry, as strings a mutation can splice in.
pub const LAYER_TYPES: &[&str] = &[
    "AbsVal",
    "Accuracy",
    "ArgMax",
    "BNLL",
    "Bias",
    "ClassWeights",
    "Concat",
    "Constant",
    "Data",
    "Dropout",
    "DummyData",
    "ELU",
    "Eltwise",
    "EuclideanLoss",
    "Exp",
    "Flatten",
    "FocalLoss",
    "HDF5Data",
    "HingeLoss",
    "ImageData",
    "InfogainLoss",
    "InnerProduct",
    "Input",
    "Log",
    "LogitAdjust",
    "MultinomialLogisticLoss",
    "PReLU",
    "Parameter",
    "Power",
    "ReLU",
    "Reshape",
    "Scale",
    "Sigmoid",
    "SigmoidCrossEntropyLoss",
    "Silence",
    "Slice",
    "Softmax",
    "SoftmaxWithLoss",
    "Split",
    "TanH",
];

/// Names of the side files, spliced into string fields.
pub const SIDE_FILES: &[&str] = &[
    "H.binaryproto",
    "H5.binaryproto",
    "H4.npy",
    "H4.binaryproto",
    "H_balance.binaryproto",
    "counts.txt",
    "counts.npy",
    "h5_list.txt",
    "h5_one.txt",
    "d1.h5",
    "d2.h5",
    "img_list.txt",
    "img0.png",
    "img1.jpg",
    "mean.binaryproto",
    "db",
    "train_h5.txt",
    "test_h5.txt",
    "tiny_ip.caffemodel",
    "fz_mlp.prototxt",
    "fz_cw.prototxt",
    "missing.h5",
    "",
    ".",
    "..",
    "/",
];

// ---------------------------------------------------------------------------------------------------------
// Our nets: small, building against the side folder, together using every layer of the registry.
// ---------------------------------------------------------------------------------------------------------

pub const NET_NEURONS: &str = r#"name: "fz_neurons"
force_backward: true
layer { name: "in" type: "DummyData" top: "x" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 2 dim: 2 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "abs" type: "AbsVal" bottom: "x" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "abs" top: "bnll" }
layer { name: "elu" type: "ELU" bottom: "bnll" top: "elu" elu_param { alpha: 0.5 } }
layer { name: "exp" type: "Exp" bottom: "elu" top: "exp" exp_param { base: -1 scale: 0.5 shift: 0 } }
layer { name: "log" type: "Log" bottom: "exp" top: "log" log_param { base: -1 scale: 1 shift: 1 } }
layer { name: "pow" type: "Power" bottom: "log" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "relu" type: "ReLU" bottom: "pow" top: "pow" relu_param { negative_slope: 0.1 } }
layer { name: "sig" type: "Sigmoid" bottom: "pow" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "sig" top: "tanh" }
layer { name: "prelu" type: "PReLU" bottom: "tanh" top: "prelu"
  prelu_param { channel_shared: false filler { type: "constant" value: 0.25 } } }
layer { name: "drop" type: "Dropout" bottom: "prelu" top: "drop" dropout_param { dropout_ratio: 0.3 } }
layer { name: "flat" type: "Flatten" bottom: "drop" top: "flat" flatten_param { axis: 1 } }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  loss_param { ignore_label: 3 normalization: VALID } }
"#;

pub const NET_SHAPES: &str = r#"name: "fz_shapes"
force_backward: true
layer { name: "in" type: "DummyData" top: "a" top: "label"
  dummy_data_param { shape { dim: 2 dim: 6 dim: 3 } shape { dim: 2 dim: 3 }
    data_filler { type: "uniform" min: -1 max: 1 } data_filler { type: "constant" value: 2 } } }
layer { name: "sl" type: "Slice" bottom: "a" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 2 } }
layer { name: "cat" type: "Concat" bottom: "s2" bottom: "s1" top: "c" concat_param { axis: 1 } }
layer { name: "elt" type: "Eltwise" bottom: "c" bottom: "a" top: "e"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
layer { name: "prm" type: "Parameter" top: "p" parameter_param { shape { dim: 6 } } }
layer { name: "bias" type: "Bias" bottom: "e" bottom: "p" top: "b" bias_param { axis: 1 } }
layer { name: "scale" type: "Scale" bottom: "b" top: "sc"
  scale_param { axis: 1 num_axes: 1 bias_term: true filler { type: "constant" value: 2 } } }
layer { name: "mul" type: "Eltwise" bottom: "sc" bottom: "b" top: "m" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "m" bottom: "sc" top: "mx" eltwise_param { operation: MAX } }
layer { name: "rs" type: "Reshape" bottom: "mx" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "sm" type: "Softmax" bottom: "r" top: "prob" softmax_param { axis: 1 } }
layer { name: "am" type: "ArgMax" bottom: "prob" top: "am" argmax_param { top_k: 2 out_max_val: true axis: 1 } }
layer { name: "sil" type: "Silence" bottom: "am" }
layer { name: "split" type: "Split" bottom: "label" top: "l1" top: "l2" }
layer { name: "acc" type: "Accuracy" bottom: "r" bottom: "l1" top: "acc" accuracy_param { top_k: 2 axis: 1 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "r" bottom: "l2" top: "loss" softmax_param { axis: 1 } }
"#;

pub const NET_LOSSES: &str = r#"name: "fz_losses"
layer { name: "in" type: "DummyData" top: "x" top: "y" top: "label"
  dummy_data_param { shape { dim: 4 dim: 5 } shape { dim: 4 dim: 5 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: 0 max: 1 }
    data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s"
  inner_product_param { num_output: 5 weight_filler { type: "msra" } } }
layer { name: "eu" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "eu" loss_weight: 0.5 }
layer { name: "hinge" type: "HingeLoss" bottom: "s" bottom: "label" top: "hinge" hinge_loss_param { norm: L2 } }
layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "s" bottom: "y" top: "sce" }
layer { name: "prob" type: "Softmax" bottom: "s" top: "p" }
layer { name: "mll" type: "MultinomialLogisticLoss" bottom: "p" bottom: "label" top: "mll" }
layer { name: "ig" type: "InfogainLoss" bottom: "s" bottom: "label" top: "ig"
  infogain_loss_param { source: "H5.binaryproto" axis: 1 } loss_param { normalization: BATCH_SIZE } }
layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "acc" top: "pc" include { phase: TEST } }
"#;

pub const NET_CLASS_WEIGHTS: &str = r#"name: "fz_cw"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "h5_list.txt" batch_size: 3 shuffle: true } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "s"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "H" type: "ClassWeights" bottom: "label" top: "H"
  class_weights_param { num_classes: 4 mode: RUNNING method: EFFECTIVE_NUMBER beta: 0.9 normalize: SUM_ONE } }
layer { name: "loss" type: "InfogainLoss" bottom: "s" bottom: "label" bottom: "H" top: "loss" }
layer { name: "K" type: "Constant" top: "K" constant_param { source: "H4.npy" } }
layer { name: "loss2" type: "InfogainLoss" bottom: "s" bottom: "label" bottom: "K" top: "loss2" loss_weight: 0.5 }
layer { name: "H2" type: "ClassWeights" bottom: "label" top: "H2"
  class_weights_param { mode: FIXED counts: 3 counts: 0 counts: 5 counts: 1 method: MEDIAN_FREQUENCY } }
layer { name: "H3" type: "ClassWeights" bottom: "label" top: "H3"
  class_weights_param { mode: FIXED counts_file: "counts.txt" normalize: NONE } }
layer { name: "H4" type: "ClassWeights" bottom: "label" top: "H4"
  class_weights_param { num_classes: 4 mode: BATCH ignore_label: 2 start_iter: 2 } }
layer { name: "sil" type: "Silence" bottom: "H2" bottom: "H3" bottom: "H4" }
layer { name: "adjust" type: "LogitAdjust" bottom: "s" top: "s" include { phase: TRAIN }
  logit_adjust_param { tau: 1 counts: 3 counts: 1 counts: 5 counts: 2 } }
layer { name: "focal" type: "FocalLoss" bottom: "s" bottom: "label" bottom: "H" top: "focal"
  focal_loss_param { gamma: 2 } loss_param { normalization: VALID } }
layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "acc" top: "per_class" }
"#;

pub const NET_IMAGES: &str = r#"name: "fz_img"
layer { name: "img" type: "ImageData" top: "data" top: "label"
  transform_param { mirror: true crop_size: 4 mean_value: 100 mean_value: 110 mean_value: 120 scale: 0.01 }
  image_data_param { source: "img_list.txt" batch_size: 2 new_height: 6 new_width: 5 shuffle: true rand_skip: 2 }
  sampling_param { mode: SQRT } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "s" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }
"#;

pub const NET_LMDB: &str = r#"name: "fz_lmdb"
layer { name: "d" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.0039 mean_file: "mean.binaryproto" mirror: true }
  data_param { source: "db" batch_size: 3 backend: LMDB prefetch: 2 }
  sampling_param { mode: CLASS_BALANCED } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "s" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }
"#;

pub const NET_MLP: &str = r#"name: "fz_mlp"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "h5_list.txt" batch_size: 4 shuffle: true } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "h5_one.txt" batch_size: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 8 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.5 } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" } } }
layer { name: "H" type: "ClassWeights" bottom: "label" top: "H"
  class_weights_param { num_classes: 4 mode: RUNNING } }
layer { name: "loss" type: "InfogainLoss" bottom: "ip2" bottom: "label" bottom: "H" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include { phase: TEST } }
"#;

pub const NET_SHARED: &str = r#"name: "fz_shared"
force_backward: true
input: "unused_old_style"
input_shape { dim: 1 }
layer { name: "in" type: "DummyData" top: "a" top: "b"
  dummy_data_param { shape { dim: 3 dim: 4 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "ipa" type: "InnerProduct" bottom: "a" top: "fa"
  param { name: "w" lr_mult: 1 } param { name: "bias" lr_mult: 2 }
  inner_product_param { num_output: 2 weight_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "ipb" type: "InnerProduct" bottom: "b" top: "fb"
  param { name: "w" lr_mult: 1 } param { name: "bias" lr_mult: 2 }
  inner_product_param { num_output: 2 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fa" bottom: "fb" top: "loss" propagate_down: true propagate_down: false }
layer { name: "pos" type: "InnerProduct" bottom: "a" top: "pos"
  inner_product_param { num_output: 3 axis: -1 transpose: true weight_filler { type: "positive_unitball" } } }
layer { name: "bil" type: "InnerProduct" bottom: "a" top: "bil"
  inner_product_param { num_output: 3 bias_term: false weight_filler { type: "gaussian" std: 0.1 sparse: 2 } } }
layer { name: "sil" type: "Silence" bottom: "pos" bottom: "bil" }
"#;

pub const NET_TINY_DEPLOY: &str = r#"name: "fz_deploy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"#;

/// Our nets, by file name (also written into the side folder so that solvers can name them).
pub const OUR_NETS: &[(&str, &str)] = &[
    ("fz_neurons.prototxt", NET_NEURONS),
    ("fz_shapes.prototxt", NET_SHAPES),
    ("fz_losses.prototxt", NET_LOSSES),
    ("fz_cw.prototxt", NET_CLASS_WEIGHTS),
    ("fz_img.prototxt", NET_IMAGES),
    ("fz_lmdb.prototxt", NET_LMDB),
    ("fz_mlp.prototxt", NET_MLP),
    ("fz_shared.prototxt", NET_SHARED),
    ("fz_deploy.prototxt", NET_TINY_DEPLOY),
];

/// Solvers that build against the side folder: every update rule and learning-rate policy.
pub const OUR_SOLVERS: &[(&str, &str)] = &[
    (
        "fz_solver_sgd.prototxt",
        r#"net: "fz_mlp.prototxt"
test_iter: 2
test_interval: 2
test_initialization: true
base_lr: 0.01
lr_policy: "step"
gamma: 0.5
stepsize: 1
momentum: 0.9
weight_decay: 0.0005
max_iter: 4
display: 1
average_loss: 2
snapshot: 2
random_seed: 7
iter_size: 2
clip_gradients: 10
type: "SGD"
"#,
    ),
    (
        "fz_solver_adam.prototxt",
        r#"train_net: "fz_cw.prototxt"
base_lr: 0.001
lr_policy: "poly"
power: 0.5
max_iter: 10
momentum: 0.9
momentum2: 0.999
delta: 1e-8
type: "Adam"
regularization_type: "L1"
weight_decay: 0.001
random_seed: 3
"#,
    ),
    (
        "fz_solver_inline.prototxt",
        r#"net_param {
  name: "inline"
  layer { name: "in" type: "DummyData" top: "x" top: "label"
    dummy_data_param { shape { dim: 3 dim: 4 } shape { dim: 3 }
      data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
  layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s" inner_product_param { num_output: 3 } }
  layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }
  layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "acc" include { phase: TEST } }
}
test_iter: 1
test_iter: 2
test_state { stage: "a" }
test_state { stage: "b" }
test_interval: 1
base_lr: 0.1
lr_policy: "multistep"
gamma: 0.1
stepvalue: 1
stepvalue: 3
type: "Nesterov"
momentum: 0.5
random_seed: 11
"#,
    ),
    (
        "fz_solver_train_test.prototxt",
        r#"train_net_param {
  layer { name: "in" type: "DummyData" top: "x" top: "y"
    dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "uniform" } } }
  layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s" inner_product_param { num_output: 3 } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }
}
test_net_param {
  layer { name: "in" type: "DummyData" top: "x" top: "y"
    dummy_data_param { shape { dim: 2 dim: 3 } } }
  layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s" inner_product_param { num_output: 3 } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }
}
test_iter: 1
test_interval: 1
base_lr: 0.5
lr_policy: "sigmoid"
gamma: 0.5
stepsize: 2
type: "AdaDelta"
momentum: 0.95
delta: 1e-6
random_seed: 2
"#,
    ),
    (
        "fz_solver_rmsprop.prototxt",
        r#"net: "fz_losses.prototxt"
base_lr: 0.01
lr_policy: "inv"
gamma: 0.0001
power: 0.75
type: "RMSProp"
rms_decay: 0.98
weight_decay: 0.0001
random_seed: 5
"#,
    ),
    (
        "fz_solver_adagrad.prototxt",
        r#"net: "fz_img.prototxt"
base_lr: 0.01
lr_policy: "exp"
gamma: 0.99
type: "AdaGrad"
delta: 1e-7
random_seed: 9
weights: "fz_img.caffemodel"
"#,
    ),
];

/// The name every fuzzed solverstate gives its caffemodel (a bare name: found beside the solverstate).
pub const SOLVERSTATE_MODEL: &str = "fz_model.caffemodel";

/// The solvers whose snapshots are the solverstate seeds (index into [`OUR_SOLVERS`]).
pub const SOLVERSTATE_SOLVERS: &[usize] = &[0, 1, 2, 3, 4, 5];

// ---------------------------------------------------------------------------------------------------------
// Files made here
// ---------------------------------------------------------------------------------------------------------

fn image(channels: usize, height: usize, width: usize, salt: u8) -> Image {
    let values = (0..channels * height * width)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(salt))
        .collect();
    Image::new(channels, height, width, values).expect("sizes match")
}

/// PNG and JPEG files of every colour type the decoders meet.
fn make_images() -> Vec<Seed> {
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};
    let mut out = Vec::new();
    let pixels = |n: usize, salt: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(53).wrapping_add(salt))
            .collect()
    };
    let png = |w: u32, h: u32, color: ExtendedColorType, bytes: &[u8]| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        PngEncoder::new(&mut buf)
            .write_image(bytes, w, h, color)
            .ok()?;
        Some(buf)
    };
    let jpeg = |w: u32, h: u32, color: ExtendedColorType, bytes: &[u8]| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        JpegEncoder::new_with_quality(&mut buf, 80)
            .write_image(bytes, w, h, color)
            .ok()?;
        Some(buf)
    };
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "gray8.png",
            png(7, 5, ExtendedColorType::L8, &pixels(35, 1)),
        ),
        (
            "graya8.png",
            png(4, 3, ExtendedColorType::La8, &pixels(24, 2)),
        ),
        (
            "rgb8.png",
            png(6, 4, ExtendedColorType::Rgb8, &pixels(72, 3)),
        ),
        (
            "rgba8.png",
            png(5, 5, ExtendedColorType::Rgba8, &pixels(100, 4)),
        ),
        (
            "gray16.png",
            png(3, 3, ExtendedColorType::L16, &pixels(18, 5)),
        ),
        (
            "rgb16.png",
            png(2, 3, ExtendedColorType::Rgb16, &pixels(36, 6)),
        ),
        (
            "rgb8.jpg",
            jpeg(9, 7, ExtendedColorType::Rgb8, &pixels(189, 7)),
        ),
        (
            "gray8.jpg",
            jpeg(8, 8, ExtendedColorType::L8, &pixels(64, 8)),
        ),
        (
            "rgb8_17x3.jpg",
            jpeg(17, 3, ExtendedColorType::Rgb8, &pixels(153, 9)),
        ),
        (
            "crema_color.png",
            image(3, 6, 5, 10).encode(Encoding::Png).ok(),
        ),
        (
            "crema_color.jpg",
            image(3, 8, 9, 11).encode(Encoding::Jpeg).ok(),
        ),
        (
            "crema_gray.png",
            image(1, 4, 4, 12).encode(Encoding::Png).ok(),
        ),
    ];
    for (name, bytes) in cases {
        if let Some(bytes) = bytes {
            out.push(Seed::new(name, bytes));
        }
    }
    out
}

fn h5_bytes(datasets: Vec<DatasetBuilder>, big_endian: bool) -> Option<Vec<u8>> {
    let builder = datasets
        .into_iter()
        .fold(Hdf5Builder::new(), |b, d| b.dataset(d));
    let options = WriteOptions {
        byte_order: if big_endian {
            ByteOrder::BigEndian
        } else {
            ByteOrder::LittleEndian
        },
        ..WriteOptions::default()
    };
    builder.into_plan().ok()?.encode(options).ok()
}

/// `data` [rows, 2, 3] and `label` [rows] (labels in 0..4), f32, contiguous: the layout HDF5Data reads.
fn h5_rows(rows: usize, base: usize) -> Vec<u8> {
    let data: Vec<f32> = (0..rows * 6).map(|i| (i + base) as f32 * 0.1).collect();
    let label: Vec<f32> = (0..rows).map(|i| ((i + base) % 4) as f32).collect();
    h5_bytes(
        vec![
            DatasetBuilder::typed_data::<f32>("data", vec![rows as u64, 2, 3], &data).unwrap(),
            DatasetBuilder::typed_data::<f32>("label", vec![rows as u64], &label).unwrap(),
        ],
        false,
    )
    .expect("hdf5-writer writes f32 datasets")
}

/// HDF5 files in every layout and type the reader converts: contiguous, compact, chunked, deflate and
/// shuffle filters, unlimited maximum shapes, integer types of every width, big-endian.
fn make_h5() -> Vec<Seed> {
    let mut out = vec![Seed::new("rows5.h5", h5_rows(5, 0))];
    let deflate = |level: u32| FilterDescription {
        id: hdf5_writer::FILTER_DEFLATE,
        name: None,
        client_data: vec![level],
    };
    let shuffle = FilterDescription {
        id: hdf5_writer::FILTER_SHUFFLE,
        name: None,
        client_data: vec![],
    };
    let f32s: Vec<f32> = (0..24).map(|i| i as f32 - 3.5).collect();
    let f64s: Vec<f64> = (0..12).map(|i| i as f64 * 0.25).collect();
    let mut add = |name: &str, datasets: Option<Vec<DatasetBuilder>>, big: bool| {
        if let Some(bytes) = datasets.and_then(|d| h5_bytes(d, big)) {
            out.push(Seed::new(name, bytes));
        }
    };
    add(
        "f64_i32.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<f64>("data", vec![4, 3], &f64s).ok()?,
                DatasetBuilder::typed_data::<i32>("label", vec![4], &[0, 1, 2, 3]).ok()?,
            ])
        })(),
        false,
    );
    add(
        "u8_i64_be.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<u8>(
                    "data",
                    vec![3, 2, 2],
                    &[1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                )
                .ok()?,
                DatasetBuilder::typed_data::<i64>("label", vec![3], &[2i64, 0, 1]).ok()?,
            ])
        })(),
        true,
    );
    add(
        "ints.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<i8>("data", vec![2, 2], &[-1i8, 2, -3, 4]).ok()?,
                DatasetBuilder::typed_data::<u16>("label", vec![2], &[1u16, 3]).ok()?,
                DatasetBuilder::typed_data::<u32>("extra", vec![2], &[7u32, 9]).ok()?,
                DatasetBuilder::typed_data::<u64>("big", vec![2], &[1u64 << 40, 5]).ok()?,
                DatasetBuilder::typed_data::<i16>("small", vec![2], &[-7i16, 300]).ok()?,
            ])
        })(),
        false,
    );
    add(
        "chunked_deflate.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<f32>("data", vec![6, 4], &f32s)
                    .ok()?
                    .chunked(vec![2, 4])
                    .filter(deflate(4)),
                DatasetBuilder::typed_data::<f32>(
                    "label",
                    vec![6],
                    &[0.0, 1.0, 2.0, 3.0, 1.0, 0.0],
                )
                .ok()?
                .chunked(vec![3])
                .filter(shuffle.clone())
                .filter(deflate(6)),
            ])
        })(),
        false,
    );
    add(
        "unlimited.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<f32>("data", vec![6, 4], &f32s)
                    .ok()?
                    .chunked(vec![4, 2])
                    .max_shape(vec![hdf5_writer::UNLIMITED, 4]),
                DatasetBuilder::typed_data::<f32>(
                    "label",
                    vec![6],
                    &[1.0, 1.0, 2.0, 3.0, 1.0, 0.0],
                )
                .ok()?
                .chunked(vec![4])
                .max_shape(vec![hdf5_writer::UNLIMITED]),
            ])
        })(),
        false,
    );
    add(
        "compact.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<f32>("data", vec![3, 2], &f32s[..6])
                    .ok()?
                    .compact(),
                DatasetBuilder::typed_data::<f32>("label", vec![3], &[0.0, 2.0, 1.0])
                    .ok()?
                    .compact(),
            ])
        })(),
        false,
    );
    add(
        "scalar_and_empty.h5",
        (|| {
            Some(vec![
                DatasetBuilder::typed_data::<f32>("data", vec![0, 3], &[]).ok()?,
                DatasetBuilder::typed_data::<f32>("label", Vec::<u64>::new(), &[4.0]).ok()?,
            ])
        })(),
        false,
    );
    out
}

fn npy_of(shape: Vec<usize>, values: Vec<f32>) -> Vec<u8> {
    crema::io::npy::npy_bytes(&Array::from_f32(shape, values).expect("sizes match"))
}

/// A BlobProto of a C × C matrix.
fn matrix_blobproto(c: usize, legacy: bool) -> BlobProto {
    let values: Vec<f32> = (0..c * c)
        .map(|i| {
            if i % (c + 1) == 0 {
                1.0
            } else {
                0.1 * (i % 3) as f32
            }
        })
        .collect();
    if legacy {
        BlobProto {
            num: Some(1),
            channels: Some(1),
            height: Some(c as i32),
            width: Some(c as i32),
            data: values,
            ..Default::default()
        }
    } else {
        crema_proto_blob_from_f32(&[c, c], values)
    }
}

fn crema_proto_blob_from_f32(shape: &[usize], values: Vec<f32>) -> BlobProto {
    crema::proto::blob::from_f32(shape, values)
}

/// Writes the side folder: what our nets, solvers and the reference cases refer to by name.
pub fn write_side_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes);
    let fixtures = repo_root().join("tests/fixtures/caffe-reference");
    for (name, from) in [
        ("H.binaryproto", "cases/a_2d_source/H.binaryproto"),
        ("H_balance.binaryproto", "train/H_balance.binaryproto"),
        ("train.h5", "train/train.h5"),
        ("test.h5", "train/test.h5"),
        ("train_h5.txt", "train/train_h5.txt"),
        ("test_h5.txt", "train/test_h5.txt"),
        ("tiny_ip.caffemodel", "formats/tiny_ip.caffemodel"),
    ] {
        std::fs::copy(fixtures.join(from), dir.join(name))?;
    }
    w(
        "H5.binaryproto",
        &binary::encode(&matrix_blobproto(5, false)),
    )?;
    w(
        "H4.binaryproto",
        &binary::encode(&matrix_blobproto(4, true)),
    )?;
    let h4: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
        .collect();
    w("H4.npy", &npy_of(vec![4, 4], h4))?;
    w("counts.txt", b"3 0 5\n1\n")?;
    w("counts.npy", &npy_of(vec![4], vec![3.0, 0.0, 5.0, 1.0]))?;
    w("d1.h5", &h5_rows(5, 0))?;
    w("d2.h5", &h5_rows(3, 7))?;
    w("h5_list.txt", b"d1.h5\n\n  d2.h5  \n")?;
    w("h5_one.txt", b"d2.h5\n")?;
    w(
        "img0.png",
        &image(3, 7, 9, 1).encode(Encoding::Png).expect("png"),
    )?;
    w(
        "img1.jpg",
        &image(3, 6, 5, 2).encode(Encoding::Jpeg).expect("jpeg"),
    )?;
    w(
        "img2.png",
        &image(1, 5, 5, 3).encode(Encoding::Png).expect("png"),
    )?;
    w("img_list.txt", b"img0.png 0\nimg1.jpg 2\n\nimg2.png 1\n")?;
    let mean = crema_proto_blob_from_f32(&[1, 3, 4, 4], (0..48).map(|i| i as f32).collect());
    w("mean.binaryproto", &binary::encode(&mean))?;
    for (name, net) in OUR_NETS {
        w(name, net.as_bytes())?;
    }
    // fz_img.caffemodel (a solver's `weights`): the image net's weights.
    let net = build(NET_IMAGES, dir).map_err(std::io::Error::other)?;
    w("fz_img.caffemodel", &binary::encode(&net.to_proto(false)))?;
    // The LMDB: raw and encoded Datums of 3 × 4 × 4 images.
    let db = dir.join("db");
    if !db.exists() {
        let mut writer =
            crema::data::lmdb::LmdbWriter::create(&db).map_err(std::io::Error::other)?;
        for i in 0..5u8 {
            let img = image(3, 4, 4, 20 * i);
            let record = if i % 2 == 0 {
                datum::raw_datum(&img, i32::from(i % 3))
            } else {
                datum::encoded_datum(img.encode(Encoding::Png).expect("png"), i32::from(i % 3))
            };
            writer
                .put(format!("{i:08}").as_bytes(), &binary::encode(&record))
                .map_err(std::io::Error::other)?;
        }
        writer.finish().map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Builds `text` as a TRAIN net resolving files in `dir`.
pub fn build(text: &str, dir: &Path) -> Result<crema::Net, String> {
    let mut param: NetParameter = text::parse(text, "seed").map_err(|e| e.to_string())?;
    crema::proto::upgrade::upgrade_net(&mut param, "seed").map_err(|e| e.to_string())?;
    let state = crema::proto::NetState {
        phase: Some(crema::proto::caffe::Phase::Train as i32),
        ..Default::default()
    };
    crema::Net::new(
        &param,
        &state,
        &crema::NetOptions {
            origin: "seed".into(),
            search_dirs: vec![dir.to_path_buf()],
            seed: 1,
        },
    )
    .map_err(|e| e.to_string())
}

/// A log that keeps nothing.
pub struct Quiet;

impl crema::solver::SolverLog for Quiet {
    fn line(&mut self, _text: &str) {}
}

/// Builds the solver `text` with its files in `dir`, snapshots into `prefix` after `steps` iterations.
pub fn solver(text: &str, dir: &Path, prefix: &Path) -> Result<crema::solver::Solver, String> {
    let mut param: SolverParameter = text::parse(text, "seed").map_err(|e| e.to_string())?;
    crema::proto::upgrade::upgrade_solver(&mut param, "seed").map_err(|e| e.to_string())?;
    param.snapshot_prefix = Some(prefix.display().to_string());
    crema::solver::Solver::new(
        param,
        &crema::solver::SolverOptions {
            solver_path: Some(dir.join("solver.prototxt")),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())
}

fn push_file_seeds(corpus: &mut Corpus, path: &Path, name: String) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let seed = Seed::new(name.clone(), bytes);
    match ext(path).as_str() {
        "prototxt" => {
            if name.contains("solver") {
                corpus.text_solvers.push(seed);
            } else {
                corpus.text_nets.push(seed);
            }
        }
        "binaryproto" | "caffemodel" | "solverstate" | "pb" => corpus.binary.push(seed),
        "npy" => corpus.npy.push(seed),
        "h5" => corpus.h5.push(seed),
        "txt" => corpus.labels.push(seed),
        _ => {}
    }
}

/// Loads and makes every seed; `side` is the side folder, written first.
pub fn corpus(side: &Path) -> Corpus {
    write_side_folder(side).expect("the side folder can be written");
    let mut corpus = Corpus::default();
    let root = repo_root();
    for dir in ["tests/fixtures", "examples"] {
        let mut files = Vec::new();
        files_under(&root.join(dir), &mut files);
        for path in files {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            push_file_seeds(&mut corpus, &path, name);
        }
    }
    // The reference cases build against the side folder (H.binaryproto is there).
    for seed in &corpus.text_nets {
        if seed.name.contains("caffe-reference/cases/")
            || seed.name.contains("caffe-reference/train/net_")
            || seed.name.ends_with("tiny_ip.prototxt")
        {
            corpus.buildable_nets.push(seed.clone());
        }
    }
    for (name, net) in OUR_NETS {
        // Ours weigh more: they use every layer and build in both phases.
        for _ in 0..4 {
            corpus.buildable_nets.push(Seed::new(*name, net.as_bytes()));
        }
        corpus.text_nets.push(Seed::new(*name, net.as_bytes()));
    }
    for (name, solver) in OUR_SOLVERS {
        corpus
            .text_solvers
            .push(Seed::new(*name, solver.as_bytes()));
        corpus
            .runnable_solvers
            .push(Seed::new(*name, solver.as_bytes()));
    }

    // Binary seeds made here: Datums, a BlobProtoVector, caffemodels of our nets, the nets as binary.
    let img = image(3, 4, 5, 9);
    corpus.binary.push(Seed::new(
        "raw.datum",
        binary::encode(&datum::raw_datum(&img, 3)),
    ));
    corpus.binary.push(Seed::new(
        "encoded.datum",
        binary::encode(&datum::encoded_datum(
            img.encode(Encoding::Png).expect("png"),
            1,
        )),
    ));
    let float_datum = crema::proto::Datum {
        channels: Some(1),
        height: Some(2),
        width: Some(3),
        float_data: vec![0.5, 1.5, -2.0, 3.0, 4.0, 5.0],
        label: Some(2),
        ..Default::default()
    };
    corpus
        .binary
        .push(Seed::new("float.datum", binary::encode(&float_datum)));
    let vector = BlobProtoVector {
        blobs: vec![matrix_blobproto(3, false), matrix_blobproto(2, true)],
    };
    corpus
        .binary
        .push(Seed::new("pair.blobprotovector", binary::encode(&vector)));
    corpus.binary.push(Seed::new(
        "H5_f64.binaryproto",
        binary::encode(&crema::proto::blob::from_f64(
            &[5, 5],
            (0..25).map(f64::from).collect(),
        )),
    ));
    for (name, net) in OUR_NETS {
        if let Ok(built) = build(net, side) {
            corpus.binary.push(Seed::new(
                format!("{name}.caffemodel"),
                binary::encode(&built.to_proto(true)),
            ));
        }
    }

    // Solverstates (and their caffemodels) of every solver, after a few iterations.
    let states = side.join("states");
    let _ = std::fs::create_dir_all(&states);
    for &k in SOLVERSTATE_SOLVERS {
        let (name, text) = OUR_SOLVERS[k];
        let prefix = states.join(name.trim_end_matches(".prototxt"));
        let made = solver(text, side, &prefix).and_then(|mut s| {
            s.step(3, &mut Quiet).map_err(|e| e.to_string())?;
            s.snapshot(&mut Quiet).map_err(|e| e.to_string())
        });
        match made {
            Ok((model, state)) => {
                let state_bytes = std::fs::read(&state).unwrap_or_default();
                let model_bytes = std::fs::read(&model).unwrap_or_default();
                // The fuzzed copy names its caffemodel by a bare name, found beside it in the case folder.
                let mut relative: crema::proto::SolverState =
                    binary::decode(&state_bytes, "seed").expect("a solverstate crema wrote");
                relative.learned_net = Some(SOLVERSTATE_MODEL.to_owned());
                corpus.binary.push(Seed::new(
                    format!("{name}.solverstate"),
                    state_bytes.clone(),
                ));
                corpus
                    .solverstates
                    .push(Seed::new(name, binary::encode(&relative)));
                corpus.solverstate_models.push(Seed::new(name, model_bytes));
            }
            Err(e) => panic!("the seed solver {name} does not run: {e}"),
        }
    }

    corpus.images = make_images();
    corpus.h5.extend(make_h5());
    // Generated npy files: 0-d, 1-d labels, 4-d, f64, and an empty one.
    corpus.npy.push(Seed::new(
        "gen_labels.npy",
        npy_of(vec![6], vec![0.0, 1.0, 2.0, 3.0, 1.0, 1.0]),
    ));
    corpus.npy.push(Seed::new(
        "gen_4d.npy",
        npy_of(vec![1, 2, 2, 3], (0..12).map(|i| i as f32).collect()),
    ));
    corpus.npy.push(Seed::new(
        "gen_f64.npy",
        crema::io::npy::npy_bytes(&Array::from_f64(vec![2, 2], vec![1.0, -1.0, 0.5, 2.0]).unwrap()),
    ));

    // Label sources, named by the extension `read_labels` goes by.
    let mut labels = Vec::new();
    for seed in &corpus.npy {
        if seed.name.contains("label") || seed.name.contains("int_") {
            labels.push(Seed::new(
                format!("{}#labels.npy", seed.name),
                seed.bytes.clone(),
            ));
        }
    }
    for seed in corpus.h5.iter().filter(|s| !s.name.contains("train/")) {
        labels.push(Seed::new(
            format!("{}#labels.h5", seed.name),
            seed.bytes.clone(),
        ));
    }
    labels.push(Seed::new(
        "image_list#labels.txt",
        b"a.png 1\nb c.jpg 0\n\n d.png\t3 \r\n".to_vec(),
    ));
    labels.push(Seed::new(
        "h5_list#labels.txt",
        b"../d1.h5\n../d2.h5\n".to_vec(),
    ));
    labels.push(Seed::new("h5_list_one#labels.list", b"../d2.h5\n".to_vec()));
    for seed in std::mem::take(&mut corpus.labels) {
        labels.push(Seed::new(format!("{}#labels.txt", seed.name), seed.bytes));
    }
    corpus.labels = labels;

    // The dictionary of prototxt pieces.
    // Nets and solvers have different top levels: one dictionary each, the solvers' also holding what nets
    // hold inside their blocks (for inline nets).
    let mut dict = TextDictionary::default();
    for seed in &corpus.text_nets {
        dict.add_text(&seed.bytes);
    }
    let mut solver_dict = TextDictionary::default();
    for seed in &corpus.text_solvers {
        solver_dict.add_text(&seed.bytes);
    }
    for t in LAYER_TYPES {
        dict.strings.push(format!("\"{t}\""));
        dict.add_value("type", &format!("\"{t}\""));
    }
    for f in SIDE_FILES {
        dict.strings.push(format!("\"{f}\""));
        for field in [
            "source",
            "mean_file",
            "counts_file",
            "net",
            "train_net",
            "test_net",
            "weights",
        ] {
            dict.add_value(field, &format!("\"{f}\""));
        }
    }
    solver_dict.merge_nested(&dict);
    dict.finish();
    solver_dict.finish();
    corpus.dict = dict;
    corpus.solver_dict = solver_dict;
    corpus.proto_strings = SIDE_FILES
        .iter()
        .chain(LAYER_TYPES)
        .map(|s| s.to_string())
        .chain(
            [
                "data",
                "label",
                "loss",
                "ip",
                "H",
                "/nonexistent/x.caffemodel",
            ]
            .map(String::from),
        )
        .collect();
    corpus
}
