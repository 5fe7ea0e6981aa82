//! The imbalanced-digits example (examples/imbalanced-digits) as run.sh runs it: its data and H are what its
//! README says, its nets load, both solvers train, and `crema test` scores both snapshots side by side, the
//! class-weighted one ahead on balanced accuracy.

mod common;

use common::{crema, read_hdf5_list, stderr, stdout, temp_dir};

use std::path::PathBuf;

use crema::io::{read_array, ArrayData};

/// Training images of each digit, from make_data.py.
const TRAIN_COUNTS: [usize; 10] = [7, 29, 120, 14, 21, 59, 42, 84, 5, 10];

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/imbalanced-digits")
}

fn counts(labels: &[f32]) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &label in labels {
        assert!(
            label.fract() == 0.0 && (0.0..10.0).contains(&label),
            "label {label}"
        );
        counts[label as usize] += 1;
    }
    counts
}

#[test]
fn the_data_and_h_are_what_the_readme_says() {
    let dir = example();
    let n: usize = TRAIN_COUNTS.iter().sum();
    let (shape, data, labels) = read_hdf5_list(&dir.join("train_h5.txt"), n);
    assert_eq!(shape, [n, 1, 8, 8]);
    assert!(data.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(counts(&labels), TRAIN_COUNTS);

    let (shape, data, labels) = read_hdf5_list(&dir.join("test_h5.txt"), 500);
    assert_eq!(shape, [500, 1, 8, 8]);
    assert!(data.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(counts(&labels), [50; 10]);

    // H = diag(N / (C n_c)): inverse class frequency, the mean weight over the training images 1.
    let h = read_array(&dir.join("H.binaryproto")).unwrap();
    assert_eq!(h.shape(), [1, 1, 10, 10]);
    let ArrayData::F32(h) = h.data() else {
        panic!("H is not float32")
    };
    for row in 0..10 {
        for column in 0..10 {
            let expected = if row == column {
                (n as f64 / (10.0 * TRAIN_COUNTS[row] as f64)) as f32
            } else {
                0.0
            };
            assert_eq!(h[row * 10 + column], expected, "H[{row}][{column}]");
        }
    }
}

#[test]
fn both_solvers_train_and_infogain_wins_on_balanced_accuracy() {
    let dir = temp_dir("example-imbalanced-digits");
    let example = example();
    for loss in ["softmax", "infogain"] {
        // The example's solver as it is, but for the net's path and the snapshots, which go to the scratch
        // folder instead of the example's out/.
        let solver = std::fs::read_to_string(example.join(format!("solver_{loss}.prototxt")))
            .unwrap()
            .replace(
                &format!("net: \"net_{loss}.prototxt\""),
                &format!(
                    "net: \"{}\"",
                    example.join(format!("net_{loss}.prototxt")).display()
                ),
            )
            .replace(
                &format!("snapshot_prefix: \"examples/imbalanced-digits/out/{loss}\""),
                &format!("snapshot_prefix: \"{loss}\""),
            );
        assert!(solver.contains("max_iter: 1000"), "{solver}");
        std::fs::write(dir.join(format!("solver_{loss}.prototxt")), solver).unwrap();
        let out = crema(
            &[
                "train",
                "--solver",
                &format!("solver_{loss}.prototxt"),
                "--no-plot",
            ],
            &dir,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Test net output #0: accuracy = "),
            "{}",
            stderr(&out)
        );
    }
    let model = example.join("net_softmax.prototxt");
    let out = crema(
        &[
            "test",
            "--model",
            model.to_str().unwrap(),
            "--iterations",
            "5",
            "--weights",
            "softmax_iter_1000.caffemodel",
            "--label",
            "softmax",
            "--weights",
            "infogain_iter_1000.caffemodel",
            "--label",
            "infogain",
            "--json",
            "compare.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("500 positions counted"), "{text}");
    assert!(text.contains("balanced accuracy"), "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    let balanced: Vec<f64> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            run["accuracy_layers"][0]["balanced_accuracy"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // With random_seed 1: about 0.87 and 0.89 (README.md); over seeds 1 to 10 the weighted run led by 0.014
    // to 0.028.
    assert!(
        balanced[0] > 0.8 && balanced[1] > balanced[0],
        "balanced accuracy softmax {} infogain {}\n{text}",
        balanced[0],
        balanced[1]
    );
}
