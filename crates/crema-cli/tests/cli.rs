//! The `crema` command as a user runs it: exit codes, output files, and what it prints.

mod common;

use common::{crema, fixture, stderr, stdout, temp_dir};

#[test]
fn convert_npy_to_binaryproto_is_byte_identical_to_pycaffe() {
    let dir = temp_dir("convert");
    let npy = fixture("caffe-reference/formats/H_4x4.npy");
    let out = crema(
        &[
            "convert",
            npy.to_str().unwrap(),
            "x.binaryproto",
            "--shape",
            "1,1,4,4",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read(dir.join("x.binaryproto")).unwrap();
    let expected = std::fs::read(fixture(
        "caffe-reference/formats/H_shape_1x1x4x4.binaryproto",
    ))
    .unwrap();
    assert_eq!(written, expected);

    // And back: the .npy holds the same 4x4 values under the new shape.
    let out = crema(&["convert", "x.binaryproto", "back.npy"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let back = crema::io::read_npy(&dir.join("back.npy")).unwrap();
    let original = crema::io::read_npy(&npy).unwrap();
    assert_eq!(back.shape(), &[1, 1, 4, 4]);
    assert_eq!(back.data(), original.data());
}

#[test]
fn convert_refuses_a_shape_with_another_count() {
    let dir = temp_dir("convert-bad");
    let npy = fixture("caffe-reference/formats/H_4x4.npy");
    let out = crema(
        &[
            "convert",
            npy.to_str().unwrap(),
            "x.binaryproto",
            "--shape",
            "1,1,3,5",
        ],
        &dir,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reshape [4, 4] (16 values) to [1, 1, 3, 5] (15 values)"),
        "{err}"
    );
    assert!(!dir.join("x.binaryproto").exists());
}

#[test]
fn convert_refuses_unknown_extensions() {
    let dir = temp_dir("convert-ext");
    let npy = fixture("caffe-reference/formats/H_4x4.npy");
    let out = crema(&["convert", npy.to_str().unwrap(), "x.txt"], &dir);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("use .npy or .binaryproto"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_tells_files_apart_by_content() {
    let dir = temp_dir("inspect");
    // A binaryproto under a misleading name is still recognised.
    std::fs::copy(
        fixture("caffe-reference/formats/H_legacy_nchw_1x1x4x4.binaryproto"),
        dir.join("weights.dat"),
    )
    .unwrap();
    let out = crema(&["inspect", "weights.dat"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("legacy num/channels/height/width form"),
        "{text}"
    );
    assert!(
        text.contains("1 x 1 x 4 x 4") && text.contains("2.875000") && text.contains("all finite"),
        "{text}"
    );

    let out = crema(
        &[
            "inspect",
            fixture("caffe-reference/formats/tiny_ip.caffemodel")
                .to_str()
                .unwrap(),
        ],
        &dir,
    );
    let text = stdout(&out);
    assert!(
        text.contains("caffemodel") && text.contains("InnerProduct") && text.contains("4 x 3, 4"),
        "{text}"
    );

    let out = crema(
        &[
            "inspect",
            fixture("caffe-reference/formats/tiny_ip.prototxt")
                .to_str()
                .unwrap(),
        ],
        &dir,
    );
    let text = stdout(&out);
    assert!(
        text.contains("net prototxt \"tiny_ip\", 2 layers"),
        "{text}"
    );
}

#[test]
fn inspect_reports_garbage_without_panicking() {
    let dir = temp_dir("inspect-bad");
    std::fs::write(dir.join("noise.bin"), [0xffu8, 0xfe, 0x00, 0x13, 0x37]).unwrap();
    let out = crema(&["inspect", "noise.bin"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("noise.bin: not a file crema knows"),
        "{}",
        stderr(&out)
    );
    let out = crema(&["inspect", "missing.npy"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.npy"), "{}", stderr(&out));
}

#[test]
fn upgrade_rewrites_a_v1_infogain_net() {
    let dir = temp_dir("upgrade");
    std::fs::write(
        dir.join("old.prototxt"),
        "name: 'old'\n\
         layers { name: 'fc' type: INNER_PRODUCT bottom: 'data' top: 'fc' blobs_lr: 1 blobs_lr: 2\n\
                  weight_decay: 1 weight_decay: 0 inner_product_param { num_output: 5 } }\n\
         layers { name: 'loss' type: INFOGAIN_LOSS bottom: 'fc' bottom: 'label' top: 'loss'\n\
                  infogain_loss_param { source: 'H.binaryproto' } }\n",
    )
    .unwrap();
    let out = crema(&["upgrade", "old.prototxt", "new.prototxt"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("V1 'layers' definitions upgraded"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(dir.join("new.prototxt")).unwrap();
    assert!(text.contains("type: \"InfogainLoss\""), "{text}");
    assert!(
        text.contains("infogain_loss_param {\n    source: \"H.binaryproto\"\n  }"),
        "{text}"
    );
    assert!(
        text.contains("param {\n    lr_mult: 2\n    decay_mult: 0\n  }"),
        "{text}"
    );
    assert!(!text.contains("layers"), "{text}");
}

#[test]
fn forward_honours_stages_and_writes_blobs_and_gradients() {
    let dir = temp_dir("forward-stages");
    std::fs::write(
        dir.join("net.prototxt"),
        "layer { name: 'd' type: 'Input' top: 'x' top: 'label' input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n\
         layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip' inner_product_param { num_output: 3 \
                 weight_filler { type: 'constant' value: 0.5 } } }\n\
         layer { name: 'relu' type: 'ReLU' bottom: 'ip' top: 'ip' }\n\
         layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' exclude { stage: 'deploy' } }\n",
    )
    .unwrap();
    let x = crema::io::Array::from_f32(vec![2, 3], vec![1.0, -2.0, 0.5, 0.0, 1.0, 2.0]).unwrap();
    crema::io::write_npy(&dir.join("x.npy"), &x).unwrap();
    let labels = crema::io::Array::from_f32(vec![2], vec![0.0, 2.0]).unwrap();
    crema::io::write_npy(&dir.join("label.npy"), &labels).unwrap();

    let out = crema(
        &[
            "forward",
            "--model",
            "net.prototxt",
            "--phase",
            "train",
            "--input",
            "x=x.npy",
            "--input",
            "label=label.npy",
            "--backward",
            "--out",
            "train",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("loss = 1.0986"), "{}", stdout(&out)); // all scores equal: ln 3
    assert!(dir.join("train/loss.npy").exists() && dir.join("train/ip.diff.npy").exists());

    let out = crema(
        &[
            "forward",
            "--model",
            "net.prototxt",
            "--stage",
            "deploy",
            "--input",
            "x=x.npy",
            "--out",
            "deploy",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("loss = 0"), "{}", stdout(&out));
    assert!(!dir.join("deploy/loss.npy").exists() && dir.join("deploy/ip.npy").exists());

    let out = crema(
        &[
            "forward",
            "--model",
            "net.prototxt",
            "--input",
            "nothing=x.npy",
            "--out",
            "o",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the net has no blob \"nothing\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn forward_params_writes_shared_blobs_under_every_layer_with_the_summed_gradient() {
    let dir = temp_dir("forward-params");
    let net = r#"
force_backward: true
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya" param { name: "w" }
  inner_product_param { num_output: 2 bias_term: false weight_filler { type: "gaussian" std: 1 } } }
layer { name: "b" type: "InnerProduct" bottom: "x" top: "yb" param { name: "w" }
  inner_product_param { num_output: 2 bias_term: false weight_filler { type: "gaussian" std: 1 } } }
layer { name: "sum" type: "Eltwise" bottom: "ya" bottom: "yb" top: "y" }
"#;
    std::fs::write(dir.join("net.prototxt"), net).unwrap();
    let x = crema::io::Array::from_f32(vec![2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0]).unwrap();
    crema::io::write_npy(&dir.join("x.npy"), &x).unwrap();
    let g = crema::io::Array::from_f32(vec![2, 2], vec![1.0, 0.0, 0.0, 2.0]).unwrap();
    crema::io::write_npy(&dir.join("g.npy"), &g).unwrap();
    let args = [
        "forward",
        "--model",
        "net.prototxt",
        "--input",
        "x=x.npy",
        "--backward",
        "--top-diff",
        "y=g.npy",
        "--params",
        "--out",
        "o",
    ];
    let output = crema(&args, &dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let read = |f: &str| {
        crema::io::read_npy(&dir.join("o").join(f))
            .unwrap()
            .to_f64_vec()
    };
    assert_eq!(read("a.0.npy"), read("b.0.npy"));
    // y = 2·x·Wᵀ, so dW = 2·Gᵀ·x, counted once per sharing layer and summed: both files hold the sum.
    let expected = [2.0, 4.0, 6.0, -4.0, 2.0, 0.0];
    assert_eq!(read("a.0.diff.npy"), expected);
    assert_eq!(read("b.0.diff.npy"), expected);
}

#[test]
fn the_plain_binary_refuses_a_python_layer_and_says_how_to_run_it() {
    let dir = temp_dir("python-layer");
    std::fs::write(
        dir.join("net.prototxt"),
        r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 } } }
layer { name: "h" type: "Python" bottom: "x" top: "h"
  python_param { module: "compute_h" layer: "ComputeH" } }"#,
    )
    .unwrap();
    let out = crema(
        &["forward", "--model", "net.prototxt", "--out", "out"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "net.prototxt: layer \"h\" (Python): Python layers run where crema runs inside Python"
        ) && err.contains("pip install .")
            && err.contains("python -m crema"),
        "{err}"
    );
}
