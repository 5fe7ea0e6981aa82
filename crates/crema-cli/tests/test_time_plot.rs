//! `crema test`, `crema time` and `crema plot` as a user runs them.

mod common;

use common::{crema, stderr, stdout, temp_dir};

use std::path::Path;

use crema::proto::{files, NetState};
use crema::{Net, NetOptions};

/// Seven positions, four classes. The data are one-hot rows of the class the identity InnerProduct will
/// predict; the labels say what is true; the last position is ignored.
///
/// predicted: 0 0 1 1 0 2 3
/// true:      0 0 1 2 1 2 ignored
const TINY_NET: &str = r#"
name: "tiny"
layer { name: "data" type: "Parameter" top: "data" parameter_param { shape { dim: 7 dim: 4 } } }
layer { name: "label" type: "Parameter" top: "label" parameter_param { shape { dim: 7 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  loss_param { ignore_label: -1 } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" top: "per_class_accuracy"
  accuracy_param { ignore_label: -1 } }
"#;

/// Writes the tiny net and a .caffemodel holding its data, labels and identity weights into `dir`.
fn write_tiny_net(dir: &Path) {
    write_tiny_weights(dir, "tiny.caffemodel", [0, 1, 2, 3]);
}

/// Writes the tiny net and, as `file`, its data, labels and InnerProduct weights that map the one-hot row of
/// class `i` to the scores of class `map[i]`.
fn write_tiny_weights(dir: &Path, file: &str, map: [usize; 4]) {
    std::fs::write(dir.join("tiny.prototxt"), TINY_NET).unwrap();
    let (param, _) = files::read_net_text(&dir.join("tiny.prototxt")).unwrap();
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    let predicted = [0, 0, 1, 1, 0, 2, 3];
    let labels = [0.0, 0.0, 1.0, 2.0, 1.0, 2.0, -1.0];
    let index = |name: &str| net.layer_index(name).unwrap();
    let (data, label, ip) = (index("data"), index("label"), index("ip"));
    let rows = net.layer_params_mut(data)[0].data_mut();
    rows.fill(0.0);
    for (row, &class) in predicted.iter().enumerate() {
        rows[row * 4 + class] = 1.0;
    }
    net.layer_params_mut(label)[0]
        .data_mut()
        .copy_from_slice(&labels);
    let weights = net.layer_params_mut(ip);
    let matrix = weights[0].data_mut();
    matrix.fill(0.0);
    for (c, &to) in map.iter().enumerate() {
        matrix[to * 4 + c] = 1.0;
    }
    weights[1].data_mut().fill(0.0);
    files::write_binary(&dir.join(file), &net.to_proto(false)).unwrap();
}

#[test]
fn test_prints_batches_means_and_the_confusion_matrix() {
    let dir = temp_dir("test");
    write_tiny_net(&dir);
    let out = crema(
        &[
            "test",
            "--model",
            "tiny.prototxt",
            "--weights",
            "tiny.caffemodel",
            "--iterations",
            "3",
            "--json",
            "report.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Caffe's lines: every batch's outputs, then the means (losses with their weights).
    assert!(text.contains("Batch 0, accuracy = 0.666667"), "{text}");
    assert!(text.contains("Batch 2, per_class_accuracy = 0.5"), "{text}");
    assert!(text.contains("\naccuracy = 0.666667\n"), "{text}");
    let loss_line = text.lines().find(|l| l.starts_with("loss = ")).unwrap();
    assert!(
        loss_line.contains(" (* 1 = ") && loss_line.ends_with(" loss)"),
        "{loss_line}"
    );
    // The confusion matrix over three batches, the ignored position left out.
    assert!(
        text.contains("18 positions counted, 3 with ignore_label -1 skipped"),
        "{text}"
    );
    let matrix: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("true \\ pred"))
        .take(7)
        .collect();
    let expected = [
        "  true \\ pred  0  1  2  3  total",
        "  -----------  -  -  -  -  -----",
        "            0  6  0  0  0      6",
        "            1  3  3  0  0      6",
        "            2  0  3  3  0      6",
        "            3  0  0  0  0      0",
        "        total  9  6  3  0     18",
    ];
    assert_eq!(matrix, expected, "{text}");
    // Per class: class 3 has no samples and no predictions.
    let class = |c: &str| {
        text.lines()
            .skip_while(|l| !l.contains("precision"))
            .find(|l| l.split_whitespace().next() == Some(c))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        class("0"),
        ["0", "6", "9", "6", "1.0000", "0.6667", "0.8000"]
    );
    assert_eq!(
        class("1"),
        ["1", "6", "6", "3", "0.5000", "0.5000", "0.5000"]
    );
    assert_eq!(class("3"), ["3", "0", "0", "0", "n/a", "n/a", "n/a"]);
    assert!(text.contains("balanced accuracy  0.6667"), "{text}");
    assert!(text.contains("macro F1           0.6556"), "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let layer = &report["accuracy_layers"][0];
    assert_eq!(layer["layer"], "accuracy");
    assert_eq!(
        layer["confusion_matrix"],
        serde_json::json!([[6, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 0], [0, 0, 0, 0]])
    );
    assert!(layer["per_class"][3]["recall"].is_null());
    assert!((layer["macro_f1"].as_f64().unwrap() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    assert_eq!(report["batches"].as_array().unwrap().len(), 3);
    let names: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"accuracy") && names.contains(&"loss"),
        "{names:?}"
    );
}

/// The lines of the side-by-side table from the header that starts with `first` to the next blank line.
fn table_after<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with(first))
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn test_with_several_weights_prints_recall_side_by_side() {
    let dir = temp_dir("test-several");
    write_tiny_net(&dir);
    // Classes 0 and 1 both scored as 1: predicted 1 1 1 1 1 2 3 against true 0 0 1 2 1 2.
    write_tiny_weights(&dir, "merged.caffemodel", [1, 1, 2, 3]);
    let out = crema(
        &[
            "test",
            "--model",
            "tiny.prototxt",
            "--weights",
            "tiny.caffemodel",
            "--label",
            "identity",
            "--weights",
            "merged.caffemodel",
            "--label",
            "merged",
            "--iterations",
            "3",
            "--json",
            "several.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // No per-batch lines: the comparison only.
    assert!(!text.contains("Batch 0,"), "{text}");
    assert!(
        text.contains("Ran 3 iterations of net \"tiny\" (TEST phase) with each of 2 weights files"),
        "{text}"
    );
    assert!(text.contains("  identity  tiny.caffemodel\n"), "{text}");
    assert!(text.contains("  merged    merged.caffemodel\n"), "{text}");
    let outputs = table_after(&text, "output");
    assert_eq!(
        outputs[0].split_whitespace().collect::<Vec<_>>(),
        ["output", "identity", "merged", "change"]
    );
    let accuracy: Vec<&str> = outputs
        .iter()
        .find(|l| l.trim_start().starts_with("accuracy"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        accuracy,
        ["accuracy", "0.666667", "0.5", "-0.1667"],
        "{text}"
    );
    assert!(
        text.contains("not shown: per_class_accuracy (4 values); every value is in --json"),
        "{text}"
    );
    assert!(
        text.contains("18 positions counted, 3 with ignore_label -1 skipped"),
        "{text}"
    );
    let expected = [
        "  class              samples  identity  merged   change",
        "  -----------------  -------  --------  ------  -------",
        "  0                        6    1.0000  0.0000  -1.0000",
        "  1                        6    0.5000  1.0000  +0.5000",
        "  2                        6    0.5000  0.5000  +0.0000",
        "  3                        0       n/a     n/a      n/a",
    ];
    assert_eq!(table_after(&text, "class"), expected, "{text}");
    let summary = [
        "  accuracy                18    0.6667  0.5000  -0.1667",
        "  balanced accuracy             0.6667  0.5000  -0.1667",
        "  macro F1                      0.6556  0.4127  -0.2429",
        "  n/a: undefined (the class has no samples)",
    ];
    assert_eq!(table_after(&text, "accuracy    "), summary, "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("several.json")).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["label"], "identity");
    assert_eq!(runs[1]["weights"], "merged.caffemodel");
    assert_eq!(runs[1]["batches"].as_array().unwrap().len(), 3);
    assert_eq!(
        runs[1]["accuracy_layers"][0]["confusion_matrix"],
        serde_json::json!([[0, 6, 0, 0], [0, 6, 0, 0], [0, 3, 3, 0], [0, 0, 0, 0]])
    );
    assert_eq!(
        runs[0]["accuracy_layers"][0]["confusion_matrix"],
        serde_json::json!([[6, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 0], [0, 0, 0, 0]])
    );
}

#[test]
fn several_weights_are_named_by_file_unless_labelled_and_labels_must_match() {
    let dir = temp_dir("test-several-labels");
    write_tiny_net(&dir);
    write_tiny_weights(&dir, "merged.caffemodel", [1, 1, 2, 3]);
    write_tiny_weights(&dir, "swapped.caffemodel", [0, 2, 1, 3]);
    let out = crema(
        &[
            "test",
            "--model",
            "tiny.prototxt",
            "--weights",
            "tiny.caffemodel",
            "--weights",
            "merged.caffemodel",
            "--weights",
            "swapped.caffemodel",
            "--iterations",
            "1",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Three columns, named by file, and no change column (that is for two).
    let header: Vec<&str> = table_after(&text, "class")[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["class", "samples", "tiny", "merged", "swapped"],
        "{text}"
    );
    // Swapping classes 1 and 2: predicted 0 0 2 2 0 1 against true 0 0 1 2 1 2.
    let class2: Vec<&str> = table_after(&text, "class")
        .into_iter()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(class2, ["2", "2", "0.5000", "0.5000", "0.5000"], "{text}");

    let out = crema(
        &[
            "test",
            "--model",
            "tiny.prototxt",
            "--weights",
            "tiny.caffemodel",
            "--weights",
            "merged.caffemodel",
            "--label",
            "only-one",
        ],
        &dir,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("1 --label for 2 --weights"),
        "{}",
        stderr(&out)
    );
    // A weights file that does not exist is named.
    let out = crema(
        &[
            "test",
            "--model",
            "tiny.prototxt",
            "--weights",
            "tiny.caffemodel",
            "--weights",
            "missing.caffemodel",
        ],
        &dir,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing.caffemodel"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_needs_weights_and_names_bad_labels() {
    let dir = temp_dir("test-errors");
    write_tiny_net(&dir);
    let out = crema(&["test", "--model", "tiny.prototxt"], &dir);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--weights"), "{}", stderr(&out));
    // Without the ignore label the last position's label -1 is no class index.
    let net = TINY_NET.replace("accuracy_param { ignore_label: -1 }", "");
    let net = net.replace("loss_param { ignore_label: -1 }", "");
    std::fs::write(dir.join("bad.prototxt"), net).unwrap();
    let out = crema(
        &[
            "test",
            "--model",
            "bad.prototxt",
            "--weights",
            "tiny.caffemodel",
        ],
        &dir,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("label -1"), "{}", stderr(&out));
}

#[test]
fn time_reports_every_layer_and_the_averages() {
    let dir = temp_dir("time");
    std::fs::write(
        dir.join("mlp.prototxt"),
        r#"
name: "mlp"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 8 dim: 20 } shape { dim: 8 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 16 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"#,
    )
    .unwrap();
    let out = crema(
        &["time", "--model", "mlp.prototxt", "--iterations", "4"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Initial loss: 1.09861"), "{text}"); // ln 3: zero inputs, uniform softmax
    for layer in ["ip1", "relu1", "ip2", "loss"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{layer} ")))
            .unwrap_or_else(|| panic!("no line for {layer}: {text}"));
        assert!(
            line.contains("forward: ") && line.contains(" ms  backward: "),
            "{line}"
        );
    }
    let data = text
        .lines()
        .find(|l| l.trim_start().starts_with("data "))
        .unwrap();
    assert!(data.trim_end().ends_with("backward:      -"), "{data}");
    for summary in [
        "Average Forward pass:",
        "Average Backward pass:",
        "Average Forward-Backward:",
        "Total Time:",
    ] {
        let line = text.lines().find(|l| l.starts_with(summary)).unwrap();
        assert!(line.ends_with(" ms"), "{line}");
    }
    // The forward columns line up.
    let columns: Vec<usize> = text.lines().filter_map(|l| l.find("forward: ")).collect();
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
    assert!(stderr(&out).contains("zero-filled"), "{}", stderr(&out));
}

#[test]
fn plot_draws_a_log_into_an_svg() {
    let dir = temp_dir("plot");
    let mut log = String::new();
    for i in 0..=10 {
        let it = i * 100;
        if i % 5 == 0 {
            log.push_str(&format!(
                "I0101 00:00:00.000000  1 solver.cpp:330] Iteration {it}, Testing net (#0)\n\
                 I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #0: accuracy = {}\n\
                 I0101 00:00:00.000000  1 solver.cpp:397]     Test net output #1: loss = {} (* 1 = {} loss)\n",
                0.1 + 0.08 * i as f64,
                2.3 - 0.2 * i as f64,
                2.3 - 0.2 * i as f64
            ));
        }
        log.push_str(&format!(
            "I0101 00:00:00.000000  1 solver.cpp:218] Iteration {it} (10 iter/s, 1s/100 iters), loss = {}\n\
             I0101 00:00:00.000000  1 sgd_solver.cpp:105] Iteration {it}, lr = 0.01\n",
            2.3 / (1.0 + i as f64)
        ));
    }
    std::fs::write(dir.join("train.log"), log).unwrap();
    let out = crema(&["plot", "train.log", "curves.svg"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("training loss (11 points), 2 test outputs"),
        "{}",
        stdout(&out)
    );
    let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
    for text in ["training loss", "test accuracy", "test loss", "iteration"] {
        assert!(svg.contains(text), "{text} missing from the SVG");
    }

    std::fs::write(dir.join("empty.log"), "nothing to see\n").unwrap();
    let out = crema(&["plot", "empty.log", "empty.svg"], &dir);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing to plot"), "{}", stderr(&out));
    assert!(!dir.join("empty.svg").exists());
}

#[test]
fn timed_passes_compute_what_forward_and_backward_do() {
    let dir = temp_dir("timed");
    write_tiny_net(&dir);
    let (param, _) = files::read_net_text(&dir.join("tiny.prototxt")).unwrap();
    let (trained, _) = files::read_net_binary(&dir.join("tiny.caffemodel")).unwrap();
    let state = NetState {
        phase: Some(0),
        ..Default::default()
    };
    let build = || {
        let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
        net.copy_trained_from(&trained, "tiny.caffemodel").unwrap();
        net
    };
    let (mut plain, mut timed) = (build(), build());
    let loss = plain.forward().unwrap();
    plain.clear_param_diffs();
    plain.backward().unwrap();
    let (timed_loss, forward_times) = timed.forward_timed().unwrap();
    timed.clear_param_diffs();
    let backward_times = timed.backward_timed().unwrap();
    assert_eq!(loss, timed_loss);
    let layers = plain.layer_names().count();
    assert_eq!(
        (forward_times.len(), backward_times.len()),
        (layers, layers)
    );
    for i in 0..layers {
        for (a, b) in plain.layer_params(i).iter().zip(timed.layer_params(i)) {
            assert_eq!(a.diff(), b.diff(), "layer {i}");
        }
    }
    // The accessors `crema test` reads the Accuracy layer through.
    let accuracy = timed.layer_index("accuracy").unwrap();
    assert_eq!(timed.layer_param(accuracy).bottom, ["ip", "label"]);
    assert_eq!(timed.layer_bottoms(accuracy)[0].shape(), &[7, 4]);
    assert_eq!(
        timed.layer_top_names(accuracy),
        ["accuracy", "per_class_accuracy"]
    );
}
