//! `crema test` on a segmentation net: an Accuracy layer whose scores are N × C × H × W counts every pixel, and
//! the report adds per-class IoU, mean IoU, pixel accuracy and frequency-weighted IoU (text, JSON, and the
//! side-by-side table of several weights files).

mod common;

use common::{crema, stderr, stdout, temp_dir};

use std::path::Path;

use crema::proto::{files, NetState};
use crema::{Net, NetOptions};

/// Two 2 × 3 images, four classes (class 3 never labelled nor predicted). The data are one-hot pixels of the
/// class the 1 × 1 convolution will predict (with identity weights); the labels say what is true, and one pixel
/// is ignored (255).
const SEG_NET: &str = r#"
name: "seg"
layer { name: "data" type: "Parameter" top: "data"
  parameter_param { shape { dim: 2 dim: 4 dim: 2 dim: 3 } } }
layer { name: "label" type: "Parameter" top: "label"
  parameter_param { shape { dim: 2 dim: 1 dim: 2 dim: 3 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 } }
layer { name: "accuracy" type: "Accuracy" bottom: "score" bottom: "label" top: "accuracy"
  accuracy_param { ignore_label: 255 } }
"#;

/// The class each pixel's data says, image by image, row by row.
const PREDICTED: [usize; 12] = [0, 0, 1, 1, 2, 2, 0, 1, 1, 2, 2, 0];
/// The true classes; 255 is ignored.
const LABELS: [f32; 12] = [0.0, 0.0, 1.0, 2.0, 2.0, 255.0, 0.0, 1.0, 0.0, 2.0, 2.0, 0.0];

/// Writes the net, and as `file` a .caffemodel whose convolution maps data class `c` to score class `map[c]`.
fn write_weights(dir: &Path, file: &str, map: [usize; 4]) {
    std::fs::write(dir.join("seg.prototxt"), SEG_NET).unwrap();
    let (param, _) = files::read_net_text(&dir.join("seg.prototxt")).unwrap();
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    let index = |name: &str| net.layer_index(name).unwrap();
    let (data, label, score) = (index("data"), index("label"), index("score"));
    let values = net.layer_params_mut(data)[0].data_mut();
    values.fill(0.0);
    for (pixel, &class) in PREDICTED.iter().enumerate() {
        let (item, at) = (pixel / 6, pixel % 6);
        values[(item * 4 + class) * 6 + at] = 1.0;
    }
    net.layer_params_mut(label)[0]
        .data_mut()
        .copy_from_slice(&LABELS);
    let params = net.layer_params_mut(score);
    let w = params[0].data_mut();
    w.fill(0.0);
    for (c, &to) in map.iter().enumerate() {
        w[to * 4 + c] = 1.0;
    }
    params[1].data_mut().fill(0.0);
    files::write_binary(&dir.join(file), &net.to_proto(false)).unwrap();
}

fn close(value: &serde_json::Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

/// The words of the first line after the line containing `header` whose first word is `first`.
fn row_after<'a>(text: &'a str, header: &str, first: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.contains(header))
        .find(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no row {first:?} after {header:?} in\n{text}"))
        .split_whitespace()
        .collect()
}

#[test]
fn segmentation_scores_report_iou() {
    let dir = temp_dir("test-seg");
    write_weights(&dir, "seg.caffemodel", [0, 1, 2, 3]);
    let out = crema(
        &[
            "test",
            "--model",
            "seg.prototxt",
            "--weights",
            "seg.caffemodel",
            "--iterations",
            "2",
            "--json",
            "report.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Per batch: 11 pixels counted, 1 ignored.
    assert!(
        text.contains("22 positions counted, 2 with ignore_label 255 skipped"),
        "{text}"
    );
    // Rows: true class; columns: predicted. [4 1 0 0] [0 2 0 0] [0 1 3 0] [0 0 0 0], twice.
    // IoU: class 0 8/(10+8-8) = 0.8; class 1 4/(4+8-4) = 0.5; class 2 6/(8+6-6) = 0.75; class 3 n/a.
    assert_eq!(
        row_after(&text, "precision", "0"),
        ["0", "10", "8", "8", "0.8000", "1.0000", "0.8889", "0.8000"]
    );
    assert_eq!(
        row_after(&text, "precision", "1")[7..],
        ["0.5000"],
        "{text}"
    );
    assert_eq!(
        row_after(&text, "precision", "2")[7..],
        ["0.7500"],
        "{text}"
    );
    assert_eq!(
        row_after(&text, "precision", "3")[4..],
        ["n/a", "n/a", "n/a", "n/a"],
        "{text}"
    );
    assert!(text.contains("F1 and IoU: both"), "{text}");
    // Pixel accuracy 18/22; mean IoU over the 3 classes labelled or predicted; fwIoU = (4 + 1 + 3) / 11.
    assert!(
        text.contains("pixel accuracy          0.8182  18 of 22 pixels right (6 per image)"),
        "{text}"
    );
    assert!(
        text.contains(
            "mean IoU                0.6833  mean IoU of the 3 of 4 classes labelled or predicted"
        ),
        "{text}"
    );
    assert!(text.contains("frequency-weighted IoU  0.7273"), "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let seg = &report["accuracy_layers"][0]["segmentation"];
    assert_eq!(seg["positions_per_item"], 6);
    assert!(close(&seg["pixel_accuracy"], 18.0 / 22.0), "{seg}");
    assert!(close(&seg["mean_iou"], (0.8 + 0.5 + 0.75) / 3.0), "{seg}");
    assert_eq!(seg["mean_iou_classes"], 3);
    assert!(close(&seg["frequency_weighted_iou"], 8.0 / 11.0), "{seg}");
    let per_class = seg["per_class_iou"].as_array().unwrap();
    assert!(close(&per_class[0], 0.8) && close(&per_class[1], 0.5) && close(&per_class[2], 0.75));
    assert!(per_class[3].is_null());
}

#[test]
fn classification_scores_have_no_segmentation_metrics() {
    // The same net with 1 × 1 images is a classifier: no IoU column, no segmentation rows, null in JSON.
    let dir = temp_dir("test-seg-1x1");
    let net = SEG_NET
        .replace("dim: 2 dim: 4 dim: 2 dim: 3", "dim: 2 dim: 4 dim: 1 dim: 1")
        .replace("dim: 2 dim: 1 dim: 2 dim: 3", "dim: 2 dim: 1 dim: 1 dim: 1");
    std::fs::write(dir.join("seg.prototxt"), net).unwrap();
    let (param, _) = files::read_net_text(&dir.join("seg.prototxt")).unwrap();
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    files::write_binary(&dir.join("seg.caffemodel"), &net.to_proto(false)).unwrap();
    let out = crema(
        &[
            "test",
            "--model",
            "seg.prototxt",
            "--weights",
            "seg.caffemodel",
            "--iterations",
            "1",
            "--json",
            "report.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("IoU"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(report["accuracy_layers"][0]["segmentation"].is_null());
}

#[test]
fn several_weights_compare_iou_side_by_side() {
    let dir = temp_dir("test-seg-several");
    write_weights(&dir, "a.caffemodel", [0, 1, 2, 3]);
    // Classes 1 and 2 swapped: [4 0 1 0] [0 0 2 0] [0 3 1 0]: IoU 0.8, 0, 1/7.
    write_weights(&dir, "b.caffemodel", [0, 2, 1, 3]);
    let out = crema(
        &[
            "test",
            "--model",
            "seg.prototxt",
            "--weights",
            "a.caffemodel",
            "--weights",
            "b.caffemodel",
            "--iterations",
            "1",
            "--json",
            "report.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("IoU per class, mean IoU"), "{text}");
    let header = "Recall per class";
    assert_eq!(
        row_after(&text, header, "IoU 0"),
        ["IoU", "0", "5", "0.8000", "0.8000", "+0.0000"]
    );
    assert_eq!(
        row_after(&text, header, "IoU 1"),
        ["IoU", "1", "2", "0.5000", "0.0000", "-0.5000"]
    );
    assert_eq!(
        row_after(&text, header, "IoU 2"),
        ["IoU", "2", "4", "0.7500", "0.1429", "-0.6071"]
    );
    assert_eq!(
        row_after(&text, header, "IoU 3"),
        ["IoU", "3", "0", "n/a", "n/a", "n/a"]
    );
    let mean_b = (0.8 + 0.0 + 1.0 / 7.0) / 3.0;
    let mean_a: f64 = (0.8 + 0.5 + 0.75) / 3.0;
    assert_eq!(
        row_after(&text, header, "mean IoU"),
        [
            "mean",
            "IoU",
            "0.6833",
            &format!("{mean_b:.4}"),
            &format!("{:+.4}", mean_b - mean_a)
        ]
    );
    assert_eq!(
        row_after(&text, header, "frequency-weighted IoU")[2..],
        ["0.7273", "0.4156", "-0.3117"]
    );
    assert!(
        text.contains("IoU n/a: the class was neither labelled nor predicted"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let b = &report["runs"][1]["accuracy_layers"][0]["segmentation"];
    assert!(close(&b["mean_iou"], mean_b), "{b}");
    assert!(close(&b["frequency_weighted_iou"], 32.0 / 77.0), "{b}");
}
