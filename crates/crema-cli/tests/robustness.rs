//! Inputs that once made crema panic, hang or abort (`tests/fixtures/robustness/`, found by mutation fuzzing),
//! each run as a user would run it: under a 2 GiB address-space cap and a time limit. A clean answer is a
//! message that names the file, layer or field and exit status 1 (or, for inputs that are in fact valid, a
//! result); never a panic (101), an abort (134), a hang, or an allocation the process cannot make.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, temp_dir};

/// The address-space cap the cases were found under.
const CAP_KIB: u64 = 2 * 1024 * 1024;
/// Every case answers within this (they take well under a second).
const LIMIT: Duration = Duration::from_secs(30);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn fails_cleanly(&self) -> &str {
        assert_eq!(
            self.code,
            Some(1),
            "expected a clean error (exit 1)\nstderr: {}\nstdout: {}",
            self.stderr,
            self.stdout
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("internal error"),
            "{}",
            self.stderr
        );
        &self.stderr
    }

    fn succeeds(&self) -> &str {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        &self.stdout
    }
}

/// Runs `crema ARGS` in `dir` under the memory cap and the time limit (killed past it, which fails the test).
fn crema_capped(args: &[&str], dir: &Path) -> Run {
    let out = dir.join(".stdout");
    let err = dir.join(".stderr");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_crema"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("sh runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crema {args:?} still ran after {LIMIT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// The command both HDF5 cases were found with.
const TEST_ONE_BATCH: &[&str] = &[
    "test",
    "--model",
    "net.prototxt",
    "--weights",
    "w.caffemodel",
    "--iterations",
    "1",
];

/// A scratch copy of case folder `name` (commands write their outputs into it).
fn case(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("robustness-{name}"));
    for entry in std::fs::read_dir(fixture(&format!("robustness/{name}"))).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn a_uniform_filler_spanning_all_of_f32_fills_and_an_infinite_bound_is_named() {
    let dir = case("filler_nonfinite");
    crema_capped(&["forward", "--model", "net.prototxt", "--out", "o"], &dir).succeeds();
    let values = crema::io::read_npy(&dir.join("o/d.npy"))
        .unwrap()
        .to_f64_vec();
    assert!(
        values.iter().all(|v| v.is_finite() && v.abs() <= 3e38),
        "{values:?}"
    );
    let run = crema_capped(
        &["forward", "--model", "net_inf.prototxt", "--out", "o"],
        &dir,
    );
    let err = run.fails_cleanly();
    assert!(
        err.contains("net_inf.prototxt: layer \"d\" (DummyData): dummy_data_param.data_filler[0]: min 0 and max inf")
            && err.contains("must be finite"),
        "{err}"
    );
}

#[test]
fn crema_time_prints_a_layer_name_of_any_length() {
    let dir = case("time_longname");
    let run = crema_capped(
        &["time", "--model", "net.prototxt", "--iterations", "1"],
        &dir,
    );
    let out = run.succeeds();
    let longest = out.lines().map(str::len).max().unwrap_or(0);
    assert!(longest > 65_535, "the long name is printed whole");
}

#[test]
fn a_log_with_nan_learning_rates_plots_at_once() {
    let dir = case("plot_nan_lr");
    let run = crema_capped(&["plot", "p.log", "p.svg"], &dir);
    run.succeeds();
    assert!(
        run.stderr.contains("NaN or infinite values left out"),
        "{}",
        run.stderr
    );
    assert!(std::fs::read_to_string(dir.join("p.svg"))
        .unwrap()
        .starts_with("<svg"));
}

#[test]
fn a_label_far_past_the_classes_seen_asks_for_num_classes_and_a_huge_h_is_an_allocation_error() {
    let dir = case("infogain_bigLabel");
    let run = crema_capped(&["infogain", "--source", "labels.npy", "-o", "H.npy"], &dir);
    let err = run.fails_cleanly();
    assert!(
        err.contains("labels.npy: label 40000 at position 1 would make 40001 classes, but only 2 distinct labels")
            && err.contains("give --num-classes 40001"),
        "{err}"
    );
    assert!(!dir.join("H.npy").exists());
    // Asked for, H (40001² floats, 6.4 GB) cannot be had under the cap: an error with its size, not an abort.
    let run = crema_capped(
        &[
            "infogain",
            "--source",
            "labels.npy",
            "--num-classes",
            "40001",
            "-o",
            "H.npy",
        ],
        &dir,
    );
    let err = run.fails_cleanly();
    assert!(
        err.contains(
            "H for 40001 classes (40001 × 40001): cannot allocate 6.0 GiB (6400320004 bytes)"
        ),
        "{err}"
    );
}

#[test]
fn hdf5_datasets_declared_larger_than_their_file_are_refused_before_allocating() {
    let dir = case("h5_declared_huge");
    let run = crema_capped(TEST_ONE_BATCH, &dir);
    let err = run.fails_cleanly();
    assert!(
        err.contains("layer \"data\" (HDF5Data)")
            && err.contains("d.h5: dataset \"data\": declares 640000000 values of 4 bytes")
            && err.contains("the file is damaged or its data was never written"),
        "{err}"
    );
    let run = crema_capped(&["infogain", "--source", "labels.h5", "-o", "H.npy"], &dir);
    let err = run.fails_cleanly();
    assert!(
        err.contains("labels.h5: dataset \"label\": declares 1000000000 values"),
        "{err}"
    );
}

#[test]
fn a_corrupted_compressed_hdf5_file_is_an_error_naming_it() {
    let dir = case("h5_corrupt_alloc");
    let run = crema_capped(TEST_ONE_BATCH, &dir);
    let err = run.fails_cleanly();
    assert!(
        err.contains("layer \"data\" (HDF5Data)") && err.contains("d.h5: dataset \"data\""),
        "{err}"
    );
}

#[test]
fn blobs_too_large_for_memory_are_errors_naming_the_layer_and_the_size() {
    let dir = case("classweights_big");
    let err = crema_capped(&["forward", "--model", "net.prototxt", "--out", "o"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("net.prototxt: layer \"H\" (ClassWeights): a blob of shape [1, 1, 40000, 40000]: cannot allocate 6.0 GiB (6400000000 bytes)"),
        "{err}"
    );
    let dir = case("input_huge_dim");
    let err = crema_capped(&["forward", "--model", "net.prototxt", "--out", "o"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("net.prototxt: layer \"x\" (Input): a blob of shape [1000000000]: cannot allocate 3.7 GiB (4000000000 bytes)"),
        "{err}"
    );
}

#[test]
fn a_layer_that_cannot_run_in_place_is_refused_naming_it() {
    let dir = case("inplace_array");
    for extra in [&["--backward"][..], &[][..]] {
        let mut args = vec!["forward", "--model", "net.prototxt", "--out", "o"];
        args.extend_from_slice(extra);
        let err = crema_capped(&args, &dir).fails_cleanly().to_owned();
        assert!(
            err.contains("net.prototxt: layer \"ip\" (InnerProduct): top \"data\" is also its bottom (in place)")
                && err.contains("makes a top of shape 2 4 (8) from a bottom of shape 2 3 (6)"),
            "{err}"
        );
    }
}

#[test]
fn legacy_caffemodels_load_as_caffe_loads_them() {
    // v0.caffemodel and v1.caffemodel store the InnerProduct weights as num/channels/height/width 1×1×4×3 (W =
    // 0.0, 0.1, ..., 1.1 row by row) and the bias as 1×1×1×4 (0.5 each), as old Caffe wrote them. (The case's
    // tiny_ip_y.npy is the output for other weights, those of caffe-reference/formats/tiny_ip.caffemodel, so
    // the expected output is computed here from the weights the files hold.)
    let dir = case("legacy_blob_compat");
    let x = crema::io::read_npy(&dir.join("tiny_ip_x.npy"))
        .unwrap()
        .to_f64_vec();
    let expected: Vec<f64> = (0..2)
        .flat_map(|n| {
            let x = &x;
            (0..4).map(move |o| {
                0.5 + (0..3)
                    .map(|k| f64::from((o * 3 + k) as f32 * 0.1) * x[n * 3 + k])
                    .sum::<f64>()
            })
        })
        .collect();
    for weights in ["v0.caffemodel", "v1.caffemodel"] {
        let out = format!("out_{weights}");
        let args = [
            "forward",
            "--model",
            "tiny_ip.prototxt",
            "--weights",
            weights,
            "--input",
            "data=tiny_ip_x.npy",
            "--out",
            &out,
        ];
        crema_capped(&args, &dir).succeeds();
        let got = crema::io::read_npy(&dir.join(&out).join("ip.npy")).unwrap();
        assert_eq!(got.shape(), [2, 4], "{weights}");
        for (g, e) in got.to_f64_vec().iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5, "{weights}: {g} vs {e}");
        }
    }
    // A legacy blob must still match: 1×1×3×4 does not fit a 4×3 weight.
    let mut model = std::fs::read(dir.join("v1.caffemodel")).unwrap();
    let legacy_dims = model
        .windows(8)
        .position(|w| w == [0x08, 1, 0x10, 1, 0x18, 4, 0x20, 3]);
    let at = legacy_dims.expect("the weights' num/channels/height/width");
    model[at + 5] = 3;
    model[at + 7] = 4;
    std::fs::write(dir.join("swapped.caffemodel"), model).unwrap();
    let args = [
        "forward",
        "--model",
        "tiny_ip.prototxt",
        "--weights",
        "swapped.caffemodel",
        "--input",
        "data=tiny_ip_x.npy",
        "--out",
        "o",
    ];
    let err = crema_capped(&args, &dir).fails_cleanly().to_owned();
    assert!(
        err.contains("cannot copy blobs[0]: shape 1 1 3 4 (12) as num/channels/height/width in the weights file, 4 3 (12) in the net"),
        "{err}"
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const SOFTMAX_NET: &str = r#"
layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "l" type: "Input" top: "l" input_param { shape { dim: 2 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss" }
"#;

#[test]
fn solver_errors_name_the_solver_file_and_its_field() {
    let dir = temp_dir("robustness-solver");
    write(&dir, "net.prototxt", SOFTMAX_NET);
    write(
        &dir,
        "dir.prototxt",
        "net: \".\"\nbase_lr: 0.1\nmax_iter: 1\n",
    );
    let err = crema_capped(&["train", "--solver", "dir.prototxt"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("dir.prototxt: net: \".\": .: is a directory, not a regular file"),
        "{err}"
    );
    write(
        &dir,
        "missing.prototxt",
        "net: \"nowhere.prototxt\"\nbase_lr: 0.1\n",
    );
    let err = crema_capped(&["train", "--solver", "missing.prototxt"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("missing.prototxt: net: \"nowhere.prototxt\""),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "said once: {err}");
    write(
        &dir,
        "policy.prototxt",
        "net: \"net.prototxt\"\nbase_lr: 0.1\nlr_policy: \"bogus\"\n",
    );
    let err = crema_capped(&["train", "--solver", "policy.prototxt"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("policy.prototxt: solver field `lr_policy`: \"bogus\""),
        "{err}"
    );

    // A solverstate whose learned_net was damaged names the field.
    write(
        &dir,
        "ok.prototxt",
        "net: \"net.prototxt\"\nbase_lr: 0.1\nlr_policy: \"fixed\"\nmax_iter: 1\nsnapshot_prefix: \"s\"\n",
    );
    crema_capped(&["train", "--solver", "ok.prototxt", "--no-plot"], &dir).succeeds();
    let mut state = std::fs::read(dir.join("s_iter_1.solverstate")).unwrap();
    let at = state
        .windows(18)
        .position(|w| w == b"s_iter_1.caffemodel"[..18].as_ref())
        .unwrap();
    state[at..at + 8].copy_from_slice(b"gone/x/y");
    std::fs::write(dir.join("bad.solverstate"), state).unwrap();
    let err = crema_capped(
        &[
            "train",
            "--solver",
            "ok.prototxt",
            "--snapshot",
            "bad.solverstate",
        ],
        &dir,
    )
    .fails_cleanly()
    .to_owned();
    assert!(
        err.contains("bad.solverstate: learned_net: \"gone/x/y"),
        "{err}"
    );
}

#[test]
fn paths_that_are_not_regular_files_are_refused_not_read() {
    let dir = temp_dir("robustness-fifo");
    let fifo = dir.join("pipe");
    if !fifo.exists() {
        let made = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
    }
    write(&dir, "net.prototxt", SOFTMAX_NET);
    write(&dir, "list.txt", "pipe\n");
    write(&dir, "images.txt", "pipe 0\n");
    let h5_net = r#"layer { name: "d" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "list.txt" batch_size: 1 } }"#;
    write(&dir, "h5.prototxt", h5_net);
    let image_net = r#"layer { name: "d" type: "ImageData" top: "data" top: "label"
        image_data_param { source: "images.txt" batch_size: 1 } }"#;
    write(&dir, "image.prototxt", image_net);
    let h_net = SOFTMAX_NET.replace(
        "type: \"SoftmaxWithLoss\" bottom: \"s\" bottom: \"l\" top: \"loss\" }",
        "type: \"InfogainLoss\" bottom: \"s\" bottom: \"l\" top: \"loss\" infogain_loss_param { source: \"pipe.npy\" } }",
    );
    write(&dir, "h.prototxt", &h_net);
    if !dir.join("pipe.npy").exists() {
        std::os::unix::fs::symlink(&fifo, dir.join("pipe.npy")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.npy")).unwrap();
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["forward", "--model", "pipe", "--out", "o"],
            "pipe: is a FIFO (named pipe), not a regular file",
        ),
        (
            &[
                "forward",
                "--model",
                "net.prototxt",
                "--input",
                "s=pipe.npy",
                "--out",
                "o",
            ],
            "pipe.npy: is a FIFO",
        ),
        (
            &["forward", "--model", "h5.prototxt", "--out", "o"],
            "layer \"d\" (HDF5Data)",
        ),
        (
            &["forward", "--model", "image.prototxt", "--out", "o"],
            "pipe: is a FIFO",
        ),
        (
            &["forward", "--model", "h.prototxt", "--out", "o"],
            "infogain_loss_param.source",
        ),
        (
            &["infogain", "--source", "pipe.npy", "-o", "H.npy"],
            "pipe.npy: is a FIFO",
        ),
        (
            &["infogain", "--source", "list.txt", "-o", "H.npy"],
            "pipe: is a FIFO",
        ),
        (
            &["inspect", "/dev/zero"],
            "/dev/zero: is a device, not a regular file",
        ),
        (
            &["convert", "zero.npy", "x.binaryproto"],
            "zero.npy: is a device, not a regular file",
        ),
        (&["plot", "pipe", "p.svg"], "pipe: is a FIFO"),
    ];
    for (args, expected) in cases {
        let err = crema_capped(args, &dir).fails_cleanly().to_owned();
        assert!(err.contains(expected), "crema {args:?}: {err}");
        assert!(
            err.contains("FIFO") || err.contains("device"),
            "crema {args:?}: {err}"
        );
    }
}

#[test]
fn huge_labels_are_out_of_range_and_warnings_stay_short() {
    let dir = temp_dir("robustness-labels");
    let labels = crema::io::Array::from_f64(vec![3], vec![0.0, 1.0, u64::MAX as f64]).unwrap();
    crema::io::write_array(&dir.join("big.npy"), &labels).unwrap();
    let err = crema_capped(&["infogain", "--source", "big.npy", "-o", "H.npy"], &dir)
        .fails_cleanly()
        .to_owned();
    assert!(
        err.contains("label 18446744073709552000 at position 2 would make 18446744073709552000 classes; at most"),
        "{err}"
    );
    let err = crema_capped(
        &[
            "infogain",
            "--source",
            "big.npy",
            "--num-classes",
            "5",
            "-o",
            "H.npy",
        ],
        &dir,
    )
    .fails_cleanly()
    .to_owned();
    assert!(
        err.contains("label 18446744073709552000 at position 2 is outside [0, 5)"),
        "{err}"
    );

    let labels = crema::io::Array::from_f64(vec![2], vec![0.0, 1.0]).unwrap();
    crema::io::write_array(&dir.join("two.npy"), &labels).unwrap();
    let run = crema_capped(
        &[
            "infogain",
            "--source",
            "two.npy",
            "--num-classes",
            "3000",
            "-o",
            "H.npy",
        ],
        &dir,
    );
    let out = run.succeeds();
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning:"))
        .expect("a warning");
    assert!(
        warning.contains("2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 2988 more"),
        "{warning}"
    );
    assert!(out.lines().count() < 40, "the table is cut short: {out}");
}
