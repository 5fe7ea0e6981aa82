//! `crema infogain`: H from the labels of each kind of source, each method and normalization, gains, and errors.

mod common;

use std::path::Path;

use common::{crema, fixture, stderr, stdout, temp_dir};
use crema::io::{self, Array};

fn diagonal(path: &Path) -> Vec<f32> {
    let h = io::read_array(path).unwrap();
    let c = *h.shape().last().unwrap();
    let values = h.to_f32_vec();
    (0..c).map(|i| values[i * c + i]).collect()
}

fn assert_close(a: &[f32], b: &[f64], tolerance: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (f64::from(*x) - y).abs() <= tolerance * y.abs(),
            "{a:?} vs {b:?}"
        );
    }
}

const TRAIN_COUNTS: [f64; 10] = [
    1000.0, 599.0, 359.0, 215.0, 129.0, 77.0, 46.0, 28.0, 17.0, 10.0,
];

#[test]
fn hdf5_source_list_mean_one_by_default() {
    let dir = temp_dir("infogain-h5");
    let out = dir.join("H.binaryproto");
    let list = fixture("caffe-reference/train/train_h5.txt");
    let output = crema(
        &[
            "infogain",
            "--source",
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("2480 labels (HDF5 source list)"), "{text}");
    assert!(text.contains("      9     10   0.40%  24.800000"), "{text}");
    assert!(
        text.contains("mean weight over the samples: 1.0000"),
        "{text}"
    );
    assert_eq!(io::read_array(&out).unwrap().shape(), [1, 1, 10, 10]);
    // w_c = N / (C n_c).
    let expected: Vec<f64> = TRAIN_COUNTS.iter().map(|n| 2480.0 / (10.0 * n)).collect();
    assert_close(&diagonal(&out), &expected, 1e-6);
}

#[test]
fn sum_one_reproduces_the_hand_made_balancing_h() {
    // H_balance.npy was made in numpy by the "ComputeH" recipe: max/count, normalised to sum 1.
    let dir = temp_dir("infogain-sum-one");
    let out = dir.join("H.npy");
    let list = fixture("caffe-reference/train/train_h5.txt");
    let output = crema(
        &[
            "infogain",
            "--source",
            list.to_str().unwrap(),
            "--normalize",
            "sum-one",
            "-o",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(io::read_array(&out).unwrap().shape(), [10, 10]);
    let reference = diagonal(&fixture("caffe-reference/train/H_balance.npy"));
    let reference: Vec<f64> = reference.iter().map(|&v| f64::from(v)).collect();
    assert_close(&diagonal(&out), &reference, 1e-5);
}

#[test]
fn npy_labels_with_an_absent_class_median_and_effective_number() {
    let dir = temp_dir("infogain-npy");
    let labels = dir.join("labels.npy");
    // Counts (6, 3, 0, 1) with --num-classes 4; 255 ignored.
    let mut values = vec![0.0; 6];
    values.extend([1.0, 1.0, 1.0, 3.0, 255.0]);
    io::write_npy(&labels, &Array::from_f32(vec![11], values).unwrap()).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "infogain",
            "--source",
            "labels.npy",
            "--num-classes",
            "4",
            "--ignore-label",
            "255",
            "-o",
            "H.npy",
        ];
        args.extend_from_slice(extra);
        let output = crema(&args, &dir);
        assert!(output.status.success(), "{}", stderr(&output));
        (stdout(&output), diagonal(&dir.join("H.npy")))
    };
    // Median frequency: f = (0.6, 0.3, -, 0.1), median 0.3: (0.5, 1, 3 for the absent class as the rarest, 3).
    let (text, w) = run(&["--method", "median", "--normalize", "none"]);
    assert!(text.contains("warning: no samples of class 2"), "{text}");
    assert_close(&w, &[0.5, 1.0, 3.0, 3.0], 1e-6);
    // Effective number, β = 0.5: E_n = (1 - 0.5^n) / 0.5: n = 6 → 1.96875, 3 → 1.75, 1 → 1.
    let (_, w) = run(&[
        "--method",
        "effective-number",
        "--beta",
        "0.5",
        "--normalize",
        "none",
    ]);
    assert_close(&w, &[1.0 / 1.96875, 1.0 / 1.75, 1.0, 1.0], 1e-6);
}

#[test]
fn image_lists_and_gains() {
    let dir = temp_dir("infogain-list");
    std::fs::write(
        dir.join("list.txt"),
        "a.png 0\nb c.png 1\nd.png 1\ne.png 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("gains.csv"),
        "# true \\ predicted\n0, 0.5\n0.25, 0\n",
    )
    .unwrap();
    let output = crema(
        &[
            "infogain",
            "--source",
            "list.txt",
            "--gains",
            "gains.csv",
            "-o",
            "H.npy",
        ],
        &dir,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("4 labels (image list)"));
    // Counts (1, 3): w = 4 / (2 n) = (2, 2/3), plus the gains off the diagonal.
    let h = io::read_array(&dir.join("H.npy")).unwrap().to_f32_vec();
    assert_close(&h, &[2.0, 0.5, 0.25, 2.0 / 3.0], 1e-6);
}

#[test]
fn bad_input_is_named() {
    let dir = temp_dir("infogain-bad");
    io::write_npy(
        &dir.join("labels.npy"),
        &Array::from_f32(vec![3], vec![0.0, 4.0, 1.0]).unwrap(),
    )
    .unwrap();
    io::write_npy(
        &dir.join("fraction.npy"),
        &Array::from_f32(vec![2], vec![0.0, 1.5]).unwrap(),
    )
    .unwrap();
    io::write_npy(
        &dir.join("huge.npy"),
        &Array::from_f64(vec![2], vec![0.0, 2e9]).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("diag.csv"), "1, 0\n0, 0\n").unwrap();
    std::fs::write(dir.join("short.csv"), "0, 1\n").unwrap();
    for (args, message) in [
        (
            vec![
                "--source",
                "labels.npy",
                "--num-classes",
                "3",
                "-o",
                "H.npy",
            ],
            "labels.npy (.npy array): label 4 at position 1 is outside [0, 3) (num_classes is 3)",
        ),
        (
            vec!["--source", "fraction.npy", "-o", "H.npy"],
            "label 1.5 at position 1 is not an integer",
        ),
        (
            vec!["--source", "labels.npy", "-o", "H.txt"],
            "unknown array file extension",
        ),
        // H holds C × C values: far more classes than a blob holds are refused before anything is allocated.
        (
            vec![
                "--source",
                "labels.npy",
                "--num-classes",
                "5000000000",
                "-o",
                "H.npy",
            ],
            "--num-classes 5000000000: at most 46340 classes",
        ),
        (
            vec!["--source", "huge.npy", "-o", "H.npy"],
            "label 2000000000 at position 1 would make 2000000001 classes; at most 46340",
        ),
        (
            vec!["--source", "missing.txt", "-o", "H.npy"],
            "missing.txt",
        ),
        (
            vec![
                "--source",
                "labels.npy",
                "--method",
                "effective-number",
                "--beta",
                "1",
                "-o",
                "H.npy",
            ],
            "beta 1 is outside [0, 1)",
        ),
        (
            vec![
                "--source",
                "labels.npy",
                "--num-classes",
                "2",
                "--gains",
                "diag.csv",
                "-o",
                "H.npy",
            ],
            "label 4 at position 1",
        ),
        (
            vec![
                "--source",
                "labels.npy",
                "--num-classes",
                "5",
                "--gains",
                "diag.csv",
                "-o",
                "H.npy",
            ],
            "line 1: 2 values, expected 5",
        ),
    ] {
        let mut full = vec!["infogain"];
        full.extend(args.iter().copied());
        let output = crema(&full, &dir);
        assert!(!output.status.success(), "{args:?} succeeded");
        let err = stderr(&output);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    io::write_npy(
        &dir.join("two.npy"),
        &Array::from_f32(vec![2], vec![0.0, 1.0]).unwrap(),
    )
    .unwrap();
    for (gains, message) in [
        ("diag.csv", "the diagonal gain H[0, 0] is 1"),
        ("short.csv", "1 rows, expected 2"),
    ] {
        let output = crema(
            &[
                "infogain", "--source", "two.npy", "--gains", gains, "-o", "H.npy",
            ],
            &dir,
        );
        assert!(!output.status.success());
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}
