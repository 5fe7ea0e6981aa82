//! H for InfogainLoss inside nets: a Constant layer loads it once, a ClassWeights layer computes it from the
//! labels; both feed InfogainLoss's third bottom and agree with H given as `source`.

use std::path::{Path, PathBuf};

use crema::io::{self, Array};
use crema::proto::caffe::Phase;
use crema::proto::text;
use crema::Net;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crema-imbalance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn build(definition: &str, phase: Phase, stages: &[&str]) -> crema::Result<Net> {
    crema::testing::net_from_text(definition, phase, stages)
}

const SCORES: [f32; 12] = [
    0.5, -1.0, 2.0, 0.0, 1.5, -0.5, -2.0, 0.3, 0.7, 1.0, 1.0, -3.0,
];
const LABELS: [f32; 4] = [2.0, 0.0, 0.0, 1.0];

/// Scores (4×3) and labels as Input blobs, then the given layers.
fn with_inputs(layers: &str) -> String {
    format!(
        r#"
layer {{ name: "in" type: "Input" top: "scores" top: "label"
        input_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 }} }} }}
{layers}"#
    )
}

/// Loss and score gradient after one forward and backward, with the inputs set.
fn run(net: &mut Net) -> (f32, Vec<f32>) {
    net.blob_mut("scores")
        .unwrap()
        .data_mut()
        .copy_from_slice(&SCORES);
    net.blob_mut("label")
        .unwrap()
        .data_mut()
        .copy_from_slice(&LABELS);
    let loss = net.forward().unwrap();
    net.backward().unwrap();
    (loss, net.blob_diff("scores").unwrap().to_vec())
}

fn write_h(path: &Path, h: &[f32]) {
    let array = Array::from_f32(vec![1, 1, 3, 3], h.to_vec()).unwrap();
    io::write_array(path, &array).unwrap();
}

fn source_net(path: &Path) -> String {
    with_inputs(&format!(
        r#"layer {{ name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" top: "loss"
        infogain_loss_param {{ source: {path:?} }} }}"#
    ))
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{a:?} != {b:?}");
    }
}

#[test]
fn constant_h_is_read_once_and_feeds_infogain_as_the_third_bottom() {
    let h = [2.0, 0.5, 0.0, 0.0, 1.0, 0.25, 0.1, 0.0, 3.0];
    let path = scratch("H_constant.npy");
    write_h(&path, &h);
    let (expected_loss, expected_gradient) =
        run(&mut build(&source_net(&path), Phase::Train, &[]).unwrap());

    let definition = with_inputs(&format!(
        r#"layer {{ name: "H" type: "Constant" top: "H" constant_param {{ source: {path:?} shape {{ dim: 1 dim: 1 dim: 3 dim: 3 }} }} }}
layer {{ name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" bottom: "H" top: "loss" }}"#
    ));
    let mut net = build(&definition, Phase::Train, &[]).unwrap();
    // The file is gone after the net is built: every later iteration uses the values read at setup.
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        let (loss, gradient) = run(&mut net);
        assert!((loss - expected_loss).abs() <= 1e-6 * expected_loss.abs());
        assert_close(&gradient, &expected_gradient);
        assert_eq!(net.blob("H").unwrap().data(), h);
        assert!(net.blob_diff("H").unwrap().iter().all(|&d| d == 0.0));
    }
    // Building again does need the file, and says which.
    let err = build(&definition, Phase::Train, &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer \"H\" (Constant): constant_param.source: ")
            && err.contains("H_constant.npy"),
        "{err}"
    );
}

const SEED_SHAPED: &str = r#"
layer { name: "weights" type: "ClassWeights" bottom: "label" top: "H"
        class_weights_param { num_classes: 3 } exclude { stage: "deploy" } }
layer { name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" bottom: "H" top: "loss"
        infogain_loss_param { axis: 1 } loss_param { normalization: FULL } exclude { stage: "deploy" } }
layer { name: "prob" type: "Softmax" bottom: "scores" top: "prob" include { stage: "deploy" } }
"#;

#[test]
fn class_weights_from_the_batch_equal_h_from_a_file() {
    // Labels (2, 0, 0, 1): counts (2, 1, 1), mean-one inverse frequency w = 4 / (3 n) = (2/3, 4/3, 4/3).
    let h = [
        2.0 / 3.0,
        0.0,
        0.0,
        0.0,
        4.0 / 3.0,
        0.0,
        0.0,
        0.0,
        4.0 / 3.0,
    ];
    let path = scratch("H_batch.binaryproto");
    write_h(&path, &h);
    let (expected_loss, expected_gradient) =
        run(&mut build(&source_net(&path), Phase::Train, &[]).unwrap());

    let mut net = build(&with_inputs(SEED_SHAPED), Phase::Train, &[]).unwrap();
    let (loss, gradient) = run(&mut net);
    assert_close(net.blob("H").unwrap().data(), &h);
    assert!((loss - expected_loss).abs() <= 1e-6 * expected_loss.abs());
    assert_close(&gradient, &expected_gradient);
    assert!(!net.layer_names().any(|n| n == "prob"));

    // The deploy stage keeps neither the weights nor the loss.
    let deploy = build(&with_inputs(SEED_SHAPED), Phase::Test, &["deploy"]).unwrap();
    let names: Vec<_> = deploy.layer_names().collect();
    assert_eq!(names, ["in", "prob"]);
}

#[test]
fn class_weights_errors_name_the_layer_and_the_label() {
    let mut net = build(&with_inputs(SEED_SHAPED), Phase::Train, &[]).unwrap();
    net.blob_mut("label")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[0.0, 1.0, 5.0, 0.0]);
    let err = net.forward().unwrap_err().to_string();
    assert_eq!(
        err,
        "<net>: layer \"weights\" (ClassWeights): bottom[0] (labels): label 5 at position 2 is outside [0, 3) (num_classes is 3)"
    );
}

struct Quiet;

impl crema::solver::SolverLog for Quiet {
    fn line(&mut self, _text: &str) {}
}

#[test]
fn caffes_own_way_a_parameter_layer_with_lr_mult_0_keeps_h_fixed_while_training() {
    // H given in the prototxt as the Parameter layer's blob; lr_mult 0 keeps the solver off it.
    let h = [2.0f32, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0];
    let data: Vec<String> = h.iter().map(|v| format!("data: {v}")).collect();
    let solver_text = format!(
        r#"
base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01 max_iter: 5 display: 0 random_seed: 3
snapshot_after_train: false
net_param {{
  layer {{ name: "in" type: "DummyData" top: "data" top: "label"
          dummy_data_param {{ shape {{ dim: 4 dim: 2 }} shape {{ dim: 4 }}
                             data_filler {{ type: "gaussian" }} data_filler {{ type: "constant" value: 1 }} }} }}
  layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "scores"
          inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
  layer {{ name: "H" type: "Parameter" top: "H" param {{ lr_mult: 0 decay_mult: 0 }}
          parameter_param {{ shape {{ dim: 3 dim: 3 }} }}
          blobs {{ shape {{ dim: 3 dim: 3 }} {} }} }}
  layer {{ name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" bottom: "H" top: "loss" }}
}}"#,
        data.join(" ")
    );
    let param: crema::proto::SolverParameter =
        text::parse(&solver_text, "solver.prototxt").unwrap();
    let mut solver =
        crema::solver::Solver::new(param, &crema::solver::SolverOptions::default()).unwrap();
    let ip = solver.net().layer_index("ip").unwrap();
    let before = solver.net().layer_params(ip)[0].data().to_vec();
    solver.solve(&mut Quiet).unwrap();
    let net = solver.net();
    let h_layer = net.layer_index("H").unwrap();
    assert_eq!(net.layer_params(h_layer)[0].data(), h);
    assert_eq!(net.blob("H").unwrap().data(), h);
    assert_ne!(net.layer_params(ip)[0].data(), before.as_slice());
}

#[test]
fn class_weights_feed_a_per_pixel_infogain_loss() {
    // Scores N×C×H×W = 2×3×2×3 and labels N×1×H×W, as segmentation nets have them.
    let scores: Vec<f32> = (0..36).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.4).collect();
    let labels: [f32; 12] = [0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 255.0];
    let inputs = r#"
layer { name: "in" type: "Input" top: "scores" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 2 dim: 3 } shape { dim: 2 dim: 1 dim: 2 dim: 3 } } }"#;
    let loss_layer = |h: &str| {
        format!(
            r#"layer {{ name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" {h} top: "loss"
        infogain_loss_param {{ axis: 1 {} }} loss_param {{ normalization: 0 ignore_label: 255 }} }}"#,
            if h.is_empty() {
                format!("source: {:?}", scratch("H_pixels.npy"))
            } else {
                String::new()
            }
        )
    };
    let run = |net: &mut Net| {
        net.blob_mut("scores")
            .unwrap()
            .data_mut()
            .copy_from_slice(&scores);
        net.blob_mut("label")
            .unwrap()
            .data_mut()
            .copy_from_slice(&labels);
        let loss = net.forward().unwrap();
        net.backward().unwrap();
        (loss, net.blob_diff("scores").unwrap().to_vec())
    };
    // Counts (8, 2, 1) over the 11 counted pixels: mean-one w = 11 / (3 n) = (11/24, 11/6, 11/3).
    let h = [
        11.0 / 24.0,
        0.0,
        0.0,
        0.0,
        11.0 / 6.0,
        0.0,
        0.0,
        0.0,
        11.0 / 3.0,
    ];
    write_h(&scratch("H_pixels.npy"), &h);
    let from_file = format!("{inputs}\n{}", loss_layer(""));
    let (expected_loss, expected_gradient) =
        run(&mut build(&from_file, Phase::Train, &[]).unwrap());
    let in_net = format!(
        r#"{inputs}
layer {{ name: "H" type: "ClassWeights" bottom: "label" top: "H"
        class_weights_param {{ num_classes: 3 ignore_label: 255 }} }}
{}"#,
        loss_layer(r#"bottom: "H""#)
    );
    let mut net = build(&in_net, Phase::Train, &[]).unwrap();
    let (loss, gradient) = run(&mut net);
    assert_close(net.blob("H").unwrap().data(), &h);
    assert!((loss - expected_loss).abs() <= 1e-6 * expected_loss.abs());
    assert_close(&gradient, &expected_gradient);
    // The ignored pixel (the last of the second image, class rows 3 × 6 apart) gets no gradient.
    for c in 0..3 {
        assert_eq!(gradient[18 + c * 6 + 5], 0.0);
    }
}
