//! Single-layer cases from real Caffe (tests/fixtures/caffe-reference/conv/: Convolution, Deconvolution,
//! Pooling, LRN, BatchNorm and friends) run from the shell as a user checks a layer: `crema forward --weights
//! params.caffemodel --input ... --backward --top-diff y=topdiff_y.npy --params`, and every output, input
//! gradient and parameter gradient compared with Caffe's to 1e-5 (relative to values above 1).

mod common;

use std::path::{Path, PathBuf};

use common::{crema, fixture, stderr, temp_dir};

fn case_dir(name: &str) -> PathBuf {
    fixture(&format!("caffe-reference/conv/{name}"))
}

fn read(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let array = crema::io::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (array.shape().to_vec(), array.to_f64_vec())
}

fn assert_close(what: &str, got: &Path, expected: &Path) {
    let (got_shape, got) = read(got);
    let (shape, expected) = read(expected);
    assert_eq!(got_shape, shape, "{what}: shape");
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
        .fold(0.0f64, f64::max);
    assert!(worst <= 1e-5, "{what}: off by {worst:e} (relative)");
}

/// Files of `dir` named `prefix*.npy`, with the part between the prefix and `.npy`.
fn files_with(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            let middle = name.strip_prefix(prefix)?.strip_suffix(".npy")?.to_owned();
            Some((middle, path))
        })
        .collect();
    found.sort();
    found
}

fn run_case(name: &str) {
    let dir = case_dir(name);
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("caffe-reference/conv/cases.json")).unwrap(),
    )
    .unwrap();
    let phase = cases[name]["phase"]
        .as_str()
        .unwrap_or("TEST")
        .to_ascii_lowercase();
    let out = temp_dir(&format!("conv-{name}"));
    let out_arg = out.display().to_string();
    let mut args: Vec<String> = [
        "forward",
        "--model",
        "net.prototxt",
        "--phase",
        &phase,
        "--backward",
        "--params",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if dir.join("params.caffemodel").exists() {
        args.extend(["--weights".into(), "params.caffemodel".into()]);
    }
    for (blob, _) in files_with(&dir, "in_") {
        args.extend(["--input".into(), format!("{blob}=in_{blob}.npy")]);
    }
    let top_diffs = files_with(&dir, "topdiff_");
    assert!(!top_diffs.is_empty(), "{name}: no top gradient given");
    for (blob, _) in &top_diffs {
        args.extend(["--top-diff".into(), format!("{blob}=topdiff_{blob}.npy")]);
    }
    args.extend(["--out".into(), out_arg]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = crema(&refs, &dir);
    assert!(output.status.success(), "{name}: {}", stderr(&output));

    for (blob, expected) in files_with(&dir, "out_") {
        assert_close(
            &format!("{name}: {blob}"),
            &out.join(format!("{blob}.npy")),
            &expected,
        );
    }
    for (blob, expected) in files_with(&dir, "grad_") {
        assert_close(
            &format!("{name}: d{blob}"),
            &out.join(format!("{blob}.diff.npy")),
            &expected,
        );
    }
    for (param, expected) in files_with(&dir, "paramgrad_") {
        // paramgrad_<layer>_<i>.npy ↔ <layer>.<i>.diff.npy
        let (layer, index) = param.rsplit_once('_').unwrap();
        let got = out.join(format!("{layer}.{index}.diff.npy"));
        assert_close(&format!("{name}: d{layer}[{index}]"), &got, &expected);
        // The values written are the ones loaded.
        let values = dir.join(format!("param_{layer}_{index}.npy"));
        assert_close(
            &format!("{name}: {layer}[{index}]"),
            &out.join(format!("{layer}.{index}.npy")),
            &values,
        );
    }
}

macro_rules! caffe_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_case(stringify!($name));
            }
        )*
    };
}

caffe_cases!(
    conv_3x3_nobias,
    conv_3x3_p1_s1,
    conv_5x5_s2_p0_floor,
    conv_kh3_kw1,
    deconv_4x4_s2_p0,
    pool_ave_3x3_s2_p1,
    pool_global_ave,
    pool_max_3x3_s2_ceil,
    concat_axis1,
    eltwise_sum_coeff,
    ip_axis2,
    scale_bias,
    dropout_test,
);

#[test]
fn every_case_in_the_fixtures_is_run() {
    let listed = [
        "conv_3x3_nobias",
        "conv_3x3_p1_s1",
        "conv_5x5_s2_p0_floor",
        "conv_kh3_kw1",
        "deconv_4x4_s2_p0",
        "pool_ave_3x3_s2_p1",
        "pool_global_ave",
        "pool_max_3x3_s2_ceil",
        "concat_axis1",
        "eltwise_sum_coeff",
        "ip_axis2",
        "scale_bias",
        "dropout_test",
        // Checked through the library by the normalization layers' tests (crates/crema/tests/conv_reference.rs).
        "lrn_across_5",
        "batchnorm_global",
    ];
    for entry in std::fs::read_dir(fixture("caffe-reference/conv")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(listed.contains(&name.as_str()), "case {name} is not run");
        }
    }
}

#[test]
fn top_diff_errors_are_clear() {
    let dir = case_dir("conv_3x3_p1_s1");
    let out = temp_dir("conv-errors");
    let out = out.display().to_string();
    let base = [
        "forward",
        "--model",
        "net.prototxt",
        "--input",
        "x=in_x.npy",
        "--backward",
        "--out",
        &out,
    ];
    for (extra, message) in [
        ("nope=topdiff_y.npy", "--top-diff nope=topdiff_y.npy: the net has no blob \"nope\""),
        ("y=in_x.npy", "--top-diff y=in_x.npy: the file holds shape [2, 3, 7, 7], the blob \"y\" has [2, 4, 7, 7]"),
        ("x=in_x.npy", "the gradient given for blob \"x\": it is not an output of the net"),
        ("y", "--top-diff y: write it as BLOB=FILE.npy"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--top-diff", extra]);
        let output = crema(&args, &dir);
        assert!(!output.status.success());
        assert!(stderr(&output).contains(message), "{extra}: {}", stderr(&output));
    }
}
