//! The long-tail methods from the command line: post-hoc logit adjustment in `crema test`, checked against the
//! same correction computed by hand from the net's raw scores.

mod common;

use std::path::Path;

use common::{crema, stderr, temp_dir};

/// The digits example's softmax net and data, in a folder of its own, with a short solver.
fn digits(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/imbalanced-digits");
    for file in [
        "net_softmax.prototxt",
        "train.h5",
        "test.h5",
        "train_h5.txt",
        "test_h5.txt",
    ] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("solver.prototxt"),
        "net: \"net_softmax.prototxt\"\nbase_lr: 0.05\nlr_policy: \"fixed\"\nmomentum: 0.9\nmax_iter: 300\n\
         display: 0\nsnapshot_prefix: \"w\"\nrandom_seed: 1\n",
    )
    .unwrap();
}

/// Every confusion matrix in a `crema test --json` report.
fn confusion_matrices(value: &serde_json::Value, found: &mut Vec<Vec<Vec<u64>>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                if key == "confusion_matrix" {
                    found.push(serde_json::from_value(item.clone()).unwrap());
                } else {
                    confusion_matrices(item, found);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| confusion_matrices(i, found)),
        _ => {}
    }
}

fn test_matrix(dir: &Path, extra: &[&str]) -> Vec<Vec<u64>> {
    let mut args = vec![
        "test",
        "--model",
        "net_softmax.prototxt",
        "--weights",
        "w_iter_300.caffemodel",
        "--iterations",
        "1",
        "--json",
        "report.json",
    ];
    args.extend_from_slice(extra);
    let out = crema(&args, dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let mut found = Vec::new();
    confusion_matrices(&report, &mut found);
    assert_eq!(found.len(), 1, "{report}");
    found.pop().unwrap()
}

#[test]
fn posthoc_logit_adjustment_changes_the_metrics_as_computed_by_hand_and_never_the_weights() {
    let dir = temp_dir("posthoc");
    digits(&dir);
    let out = crema(&["train", "--solver", "solver.prototxt", "--no-plot"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let weights = std::fs::read(dir.join("w_iter_300.caffemodel")).unwrap();

    // The raw scores and labels of the first test batch.
    let out = crema(
        &[
            "forward",
            "--model",
            "net_softmax.prototxt",
            "--weights",
            "w_iter_300.caffemodel",
            "--phase",
            "test",
            "--out",
            "raw",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let scores = crema::io::read_npy(&dir.join("raw/ip2.npy"))
        .unwrap()
        .to_f64_vec();
    let labels = crema::io::read_npy(&dir.join("raw/label.npy"))
        .unwrap()
        .to_f64_vec();
    let train = crema::data::labels::read_labels(&dir.join("train_h5.txt"), "label").unwrap();
    let counts = crema::imbalance::count_labels(train.values.iter().copied(), 10, None).unwrap();
    let log_prior = crema::imbalance::log_prior(&counts).unwrap();
    let by_hand = |tau: f64| {
        let mut matrix = vec![vec![0u64; 10]; 10];
        for (row, &label) in scores.chunks_exact(10).zip(&labels) {
            let adjusted: Vec<f64> = row
                .iter()
                .zip(&log_prior)
                .map(|(s, l)| s - tau * l)
                .collect();
            let predicted = (0..10).fold(0, |best, c| {
                if adjusted[c] > adjusted[best] {
                    c
                } else {
                    best
                }
            });
            matrix[label as usize][predicted] += 1;
        }
        matrix
    };

    assert_eq!(test_matrix(&dir, &[]), by_hand(0.0));
    let adjusted = test_matrix(
        &dir,
        &["--logit-adjust", "1", "--prior-source", "train_h5.txt"],
    );
    assert_eq!(adjusted, by_hand(1.0));
    assert_ne!(
        adjusted,
        by_hand(0.0),
        "the correction changed no prediction"
    );
    // The prior as counts instead of labels; another tau.
    let text: Vec<String> = counts.iter().map(u64::to_string).collect();
    std::fs::write(dir.join("counts.txt"), text.join(" ")).unwrap();
    assert_eq!(
        test_matrix(&dir, &["--logit-adjust", "0.5", "--prior", "counts.txt"]),
        by_hand(0.5)
    );
    assert_eq!(
        std::fs::read(dir.join("w_iter_300.caffemodel")).unwrap(),
        weights
    );

    let out = crema(
        &[
            "test",
            "--model",
            "net_softmax.prototxt",
            "--weights",
            "w_iter_300.caffemodel",
            "--logit-adjust",
            "1",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--logit-adjust needs the class prior"),
        "{}",
        stderr(&out)
    );
}

/// Copies `examples/<name>` (without its out/) into `dir`.
fn copy_example(name: &str, dir: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_long_tail_example_prints_its_table() {
    let dir = temp_dir("long-tail-example");
    copy_example("long-tail-methods", &dir);
    copy_example("imbalanced-digits", &dir);
    let out = std::process::Command::new("python3")
        .arg(dir.join("long-tail-methods/run.py"))
        .args(["--seeds", "2"])
        .env("CREMA", env!("CARGO_BIN_EXE_crema"))
        .output()
        .expect("python3 runs the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let balanced = |method: &str| -> f64 {
        let line = table
            .lines()
            .find(|l| l.starts_with(method))
            .unwrap_or_else(|| panic!("no row {method:?} in\n{table}"));
        line[method.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for method in [
        "infogain, inverse frequency",
        "infogain, effective number",
        "focal (gamma 2)",
        "alpha-focal (gamma 2, inverse)",
        "deferred re-weighting",
        "class-balanced sampling",
        "square-root sampling",
    ] {
        assert!(balanced(method) > 0.8, "{method}\n{table}");
    }
    // The methods the papers rank first beat plain softmax here too, by a wide margin.
    for method in ["logit-adjusted loss (tau 1)", "post-hoc correction (tau 1)"] {
        assert!(
            balanced(method) > balanced("softmax") + 0.02,
            "{method}\n{table}"
        );
    }
    assert!(table.contains("over 2 seeds"), "{table}");
}
