//! Every case that real Caffe ran (tests/fixtures/caffe-reference/cases) reproduced through `crema forward`:
//! the loss within 1e-5 (relative) and the score gradients within 1e-5 (absolute) of Caffe's, except where
//! Caffe clips log(p), where the loss is the exact value; and each of Caffe's crashes or garbage results on
//! bad input is a clear error instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crema::io::read_npy;

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/caffe-reference/cases")
        .join(name)
}

/// Runs `crema forward --backward` on a case; returns the output folder, or stderr when it failed.
fn forward(name: &str) -> Result<PathBuf, String> {
    let dir = case_dir(name);
    let net = std::fs::read_to_string(dir.join("net.prototxt")).unwrap();
    let out = std::env::temp_dir().join(format!("crema-case-{name}-{}", std::process::id()));
    let mut args: Vec<String> = ["forward", "--model", "net.prototxt", "--backward", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(out.display().to_string());
    args.extend([
        "--input".into(),
        "scores=in_scores.npy".into(),
        "--input".into(),
        "label=in_label.npy".into(),
    ]);
    if net.contains("top: \"H\"") {
        args.extend(["--input".into(), "H=in_H.npy".into()]);
    }
    let output = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(&args)
        .current_dir(&dir)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(out)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn values(path: &Path) -> Vec<f32> {
    read_npy(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_f32_vec()
}

/// Checks loss and gradient against Caffe's; `exact_loss` replaces Caffe's loss where Caffe clips.
fn check_against_caffe(name: &str, exact_loss: Option<f64>) {
    let out = forward(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = case_dir(name);
    let loss = f64::from(values(&out.join("loss.npy"))[0]);
    let expected = exact_loss.unwrap_or_else(|| f64::from(values(&dir.join("out_loss.npy"))[0]));
    assert!(
        (loss - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "{name}: loss {loss}, expected {expected}"
    );
    let grad = values(&out.join("scores.diff.npy"));
    let caffe_grad = values(&dir.join("grad_scores.npy"));
    assert_eq!(grad.len(), caffe_grad.len(), "{name}");
    for (i, (g, c)) in grad.iter().zip(&caffe_grad).enumerate() {
        assert!(
            (g - c).abs() <= 1e-5,
            "{name}: gradient [{i}] {g}, Caffe {c}"
        );
    }
    if dir.join("out_prob.npy").exists() {
        for (p, c) in values(&out.join("prob.npy"))
            .iter()
            .zip(values(&dir.join("out_prob.npy")))
        {
            assert!((p - c).abs() <= 1e-6, "{name}: prob {p}, Caffe {c}");
        }
    }
}

/// The exact mean of -Σ_k H[l, k] log p_k over rows (2-D scores, no ignored labels), in f64.
fn exact_loss(name: &str, identity: bool) -> f64 {
    let dir = case_dir(name);
    let scores = read_npy(&dir.join("in_scores.npy")).unwrap();
    let labels = values(&dir.join("in_label.npy"));
    let classes = scores.shape()[1];
    let h: Vec<f64> = if identity {
        (0..classes * classes)
            .map(|i| if i % (classes + 1) == 0 { 1.0 } else { 0.0 })
            .collect()
    } else {
        values(&dir.join("in_H.npy"))
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    };
    let x = scores.to_f64_vec();
    let mut total = 0.0;
    for (row, &label) in x.chunks(classes).zip(&labels) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let l = label as usize;
        total -= (0..classes)
            .map(|k| h[l * classes + k] * (row[k] - lse))
            .sum::<f64>();
    }
    total / labels.len() as f64
}

#[test]
fn h_from_source_in_every_binaryproto_form() {
    for name in ["a_2d_source", "a2_2d_source_legacy", "a3_2d_source_2dshape"] {
        check_against_caffe(name, None);
    }
}

#[test]
fn h_as_third_bottom() {
    check_against_caffe("b_2d_H_bottom", None);
}

#[test]
fn force_backward_with_h_as_bottom_works_and_leaves_h_without_gradient() {
    // Caffe aborts here ("cannot backpropagate to infogain inputs").
    let out = forward("b2_2d_H_bottom_force_backward").unwrap();
    let loss = values(&out.join("loss.npy"))[0];
    let caffe_b = values(&case_dir("b_2d_H_bottom").join("out_loss.npy"))[0];
    assert!((loss - caffe_b).abs() <= 1e-5 * caffe_b.abs());
    assert!(values(&out.join("H.diff.npy")).iter().all(|&d| d == 0.0));
    assert!(values(&out.join("label.diff.npy"))
        .iter()
        .all(|&d| d == 0.0));
}

#[test]
fn four_dimensional_scores_along_axis_one() {
    check_against_caffe("c_4d_axis1", None);
}

#[test]
fn ignore_label_under_every_normalization() {
    for name in [
        "e_2d_ignore_FULL",
        "e_2d_ignore_VALID",
        "e_2d_ignore_BATCH_SIZE",
        "e_2d_ignore_NONE",
        "e_2d_ignore_default",
        "e_2d_ignore_inrange_class2",
        "e_2d_all_ignored_VALID",
        "e_2d_all_ignored_FULL",
    ] {
        check_against_caffe(name, None);
    }
}

#[test]
fn extreme_scores_give_the_exact_loss_where_caffe_clips() {
    let exact = exact_loss("f_extreme_logits_identityH", false);
    let caffe = f64::from(values(&case_dir("f_extreme_logits_identityH").join("out_loss.npy"))[0]);
    assert!(
        exact > caffe + 1.0,
        "the case should hit Caffe's clip: exact {exact}, Caffe {caffe}"
    );
    check_against_caffe("f_extreme_logits_identityH", Some(exact));
    check_against_caffe(
        "f_extreme_logits_softmaxwithloss",
        Some(exact_loss("f_extreme_logits_softmaxwithloss", true)),
    );
}

#[test]
fn probabilities_as_second_top() {
    check_against_caffe("g_2d_prob_top", None);
}

#[test]
fn two_tops_without_loss_weights_weigh_the_loss_only() {
    // Caffe aborts (2 tops, 1 default loss weight); crema weighs the first top 1 and the second 0.
    let out = forward("g0_2d_prob_top_no_loss_weight").unwrap();
    let loss = values(&out.join("loss.npy"))[0];
    let caffe_g = values(&case_dir("g_2d_prob_top").join("out_loss.npy"))[0];
    assert!((loss - caffe_g).abs() <= 1e-5 * caffe_g.abs());
}

#[test]
fn loss_weight_scales_the_gradient() {
    check_against_caffe("h_2d_loss_weight_2p5", None);
}

#[test]
fn identity_h_equals_softmax_with_loss() {
    check_against_caffe("i_identityH_infogain", None);
    check_against_caffe("i_softmaxwithloss", None);
    let a = values(
        &forward("i_identityH_infogain")
            .unwrap()
            .join("scores.diff.npy"),
    );
    let b = values(
        &forward("i_softmaxwithloss")
            .unwrap()
            .join("scores.diff.npy"),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    for (name, expected) in [
        (
            "j_label_out_of_range_eq_C",
            "label 5 at position 3 is not a class index in [0, 5)",
        ),
        ("j_label_out_of_range_7", "label 7 at position 3"),
        ("j_label_negative_no_ignore", "label -1 at position 3"),
        ("j_label_fractional", "is not a class index"),
        ("j_label_softmaxwithloss_out_of_range", "label"),
        ("j_H_wrong_size_4x4_for_C5", "has 16 values"),
        ("j_H_bottom_wrong_size", "has 16 values"),
        ("j_label_count_mismatch", "one label per position"),
        ("j_normalize_false", "loss_param.normalize is deprecated"),
        ("j_missing_source", "no H: give infogain_loss_param.source"),
        (
            "j_source_file_absent",
            "infogain_loss_param.source: does_not_exist.binaryproto",
        ),
    ] {
        let err = forward(name)
            .err()
            .unwrap_or_else(|| panic!("{name} should fail"));
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            err.contains("net.prototxt: layer \"loss\""),
            "{name} should name the file and layer: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}
