//! The two seed-shaped examples (examples/seed-class-weights, examples/seed-numpy-h) run as their READMEs say:
//! from their own folder, on a copy so that the repository stays clean.

mod common;

use std::path::{Path, PathBuf};

use common::{crema, stderr, stdout, temp_dir};
use crema::io::{self, Array};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A copy of `examples/<name>` beside a copy of the digits it reads; returns the copy's folder.
fn example_copy(name: &str) -> PathBuf {
    let root = temp_dir(&format!("seed-{name}"));
    copy_folder(&examples().join(name), &root.join(name));
    copy_folder(
        &examples().join("imbalanced-digits"),
        &root.join("imbalanced-digits"),
    );
    root.join(name)
}

fn run_ok(args: &[&str], dir: &Path) -> String {
    let output = crema(args, dir);
    assert!(
        output.status.success(),
        "crema {args:?} failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// The balanced accuracy `crema test` prints.
fn balanced_accuracy(test_output: &str) -> f64 {
    let line = test_output
        .lines()
        .find(|l| l.trim_start().starts_with("balanced accuracy"))
        .unwrap_or_else(|| panic!("no balanced accuracy in:\n{test_output}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn train_and_test(dir: &Path) -> f64 {
    run_ok(&["train", "--solver", "solver.prototxt", "--no-plot"], dir);
    let test = run_ok(
        &[
            "test",
            "--model",
            "train_val.prototxt",
            "--weights",
            "out/seed_iter_1000.caffemodel",
            "--iterations",
            "5",
        ],
        dir,
    );
    balanced_accuracy(&test)
}

#[test]
fn class_weights_seed_trains_tests_and_deploys() {
    let dir = example_copy("seed-class-weights");
    let balanced = train_and_test(&dir);
    assert!(balanced > 0.85, "balanced accuracy {balanced}");
    // The deploy stage: no data layers, no H, no loss; an Input and the probabilities.
    io::write_npy(
        &dir.join("digit.npy"),
        &Array::from_f32(vec![1, 1, 8, 8], vec![0.5; 64]).unwrap(),
    )
    .unwrap();
    run_ok(
        &[
            "forward",
            "--model",
            "train_val.prototxt",
            "--stage",
            "deploy",
            "--weights",
            "out/seed_iter_1000.caffemodel",
            "--input",
            "data=digit.npy",
            "--out",
            "out/deploy",
        ],
        &dir,
    );
    let prob = io::read_npy(&dir.join("out/deploy/prob.npy")).unwrap();
    assert_eq!(prob.shape(), [1, 10]);
    let sum: f32 = prob.to_f32_vec().iter().sum();
    assert!((sum - 1.0).abs() < 1e-5);
    assert!(!dir.join("out/deploy/H.npy").exists());
    assert!(!dir.join("out/deploy/loss.npy").exists());
}

#[test]
fn numpy_h_seed_converts_and_trains() {
    let dir = example_copy("seed-numpy-h");
    let converted = run_ok(
        &["convert", "H.npy", "H.binaryproto", "--shape", "1,1,10,10"],
        &dir,
    );
    assert!(converted.contains("shape [1, 1, 10, 10]"), "{converted}");
    let balanced = train_and_test(&dir);
    assert!(balanced > 0.8, "balanced accuracy {balanced}");
}
