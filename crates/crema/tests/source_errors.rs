//! Bad values named where they were read: a label that is not a class index is reported by the loss with the
//! file and row (or image) its data layer read it from; in-place layers Caffe would run wrong are refused.

use std::path::{Path, PathBuf};

use crema::proto::caffe::Phase;
use crema::testing::net_from_text;
use hdf5_writer::{DatasetBuilder, Hdf5Builder, WriteOptions};

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("crema-source-errors-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_h5(path: &Path, data: &[f32], labels: &[f32]) {
    let rows = labels.len() as u64;
    let bytes = Hdf5Builder::new()
        .dataset(DatasetBuilder::typed_data::<f32>("data", vec![rows, 2], data).unwrap())
        .dataset(DatasetBuilder::typed_data::<f32>("label", vec![rows], labels).unwrap())
        .into_plan()
        .unwrap()
        .encode(WriteOptions::default())
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn build_error(net: &str) -> String {
    match net_from_text(net, Phase::Train, &[]) {
        Ok(_) => panic!("the net was built"),
        Err(e) => e.to_string(),
    }
}

fn forward_error(net: &str) -> String {
    let mut net = net_from_text(net, Phase::Train, &[]).unwrap();
    let mut last = Ok(0.0);
    for _ in 0..4 {
        last = net.forward();
        if last.is_err() {
            break;
        }
    }
    last.unwrap_err().to_string()
}

#[test]
fn a_bad_hdf5_label_is_named_with_its_file_and_row() {
    let dir = temp_dir("hdf5");
    // Rows 0..6 of a.h5 and b.h5; b.h5 row 2 holds label 7 with 3 classes.
    write_h5(
        &dir.join("a.h5"),
        &[0.0; 12],
        &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
    );
    write_h5(
        &dir.join("b.h5"),
        &[0.0; 12],
        &[0.0, 1.0, 7.0, 0.0, 1.0, 2.0],
    );
    std::fs::write(dir.join("list.txt"), "a.h5\nb.h5\n").unwrap();
    let identity: Vec<f32> = (0..9).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
    let h = dir.join("H.npy");
    crema::io::write_array(
        &h,
        &crema::io::Array::from_f32(vec![3, 3], identity).unwrap(),
    )
    .unwrap();
    let infogain = format!(
        "\"InfogainLoss\" infogain_loss_param {{ source: \"{}\" }}",
        h.display()
    );
    for (loss, words) in [
        (
            "\"SoftmaxWithLoss\"",
            "label 7 at position 0 is outside [0, 3)",
        ),
        (
            infogain.as_str(),
            "label 7 at position 0 is not a class index in [0, 3)",
        ),
        ("\"Accuracy\"", "label 7 at position 0 is outside [0, 3)"),
    ] {
        let net = format!(
            r#"layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
                 hdf5_data_param {{ source: "{}" batch_size: 4 }} }}
               layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                 inner_product_param {{ num_output: 3 }} }}
               layer {{ name: "s" type: "Split" bottom: "label" top: "l1" top: "l2" }}
               layer {{ name: "loss" type: {loss} bottom: "ip" bottom: "l2" top: "loss" }}"#,
            dir.join("list.txt").display()
        );
        let err = forward_error(&net);
        // Batches of 4: rows a0-a3, then a4 a5 b0 b1, then b2 (position 0 of the third batch).
        let from = format!(
            "(from layer \"data\": {}, dataset \"label\", row 2)",
            dir.join("b.h5").display()
        );
        assert!(err.contains(words) && err.ends_with(&from), "{loss}: {err}");
    }
}

#[test]
fn a_bad_image_list_label_is_named_with_its_image() {
    let dir = temp_dir("images");
    let pixel = image::GrayImage::from_pixel(2, 2, image::Luma([9u8]));
    for name in ["a.png", "b.png"] {
        pixel.save(dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("list.txt"), "a.png 1\nb.png -3\n").unwrap();
    let net = format!(
        r#"layer {{ name: "images" type: "ImageData" top: "data" top: "label"
             image_data_param {{ source: "{}" root_folder: "{}/" batch_size: 2 is_color: false }} }}
           layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ num_output: 2 }} }}
           layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}"#,
        dir.join("list.txt").display(),
        dir.display()
    );
    let err = forward_error(&net);
    assert!(
        err.contains("label -3 at position 1 is outside [0, 2)")
            && err.contains("(from layer \"images\": image \"b.png\" (entry 2 of"),
        "{err}"
    );
}

const IN_PLACE: &str = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 3 } }
layer { name: "act" type: TYPE bottom: "y" top: "y" }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "x" top: "loss" }
"#;

#[test]
fn in_place_layers_run_where_caffe_runs_them_right() {
    // Backward reads only the top: in place everywhere.
    for kind in ["ReLU", "Sigmoid", "TanH", "ELU", "Exp", "Dropout"] {
        let net = IN_PLACE.replace("TYPE", &format!("\"{kind}\""));
        net_from_text(&net, Phase::Train, &[]).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    // Backward reads the input the top overwrote: refused where a gradient flows, fine where none does.
    for kind in [
        "\"AbsVal\"",
        "\"BNLL\"",
        "\"Log\"",
        "\"Power\" power_param { power: 2 }",
    ] {
        let net = IN_PLACE.replace("TYPE", kind);
        let err = build_error(&net);
        assert!(
            err.contains("top \"y\" is also its bottom (in place)")
                && err.contains("reads its input again in backward"),
            "{kind}: {err}"
        );
        let forward_only = net
            .replace("top: \"loss\" }", "top: \"loss\" }\n")
            .replace("type: \"EuclideanLoss\"", "type: \"Eltwise\"")
            .replace("top: \"loss\"", "top: \"sum\"");
        net_from_text(&forward_only, Phase::Test, &[]).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    // Power with power 1 keeps a gradient that needs no input: in place like Caffe's.
    let net = IN_PLACE.replace("TYPE", "\"Power\" power_param { scale: 2 }");
    net_from_text(&net, Phase::Train, &[]).unwrap();
    // Layers whose top is computed from the whole bottom never run in place, even with the same shape.
    let net = IN_PLACE.replace("TYPE", "\"Softmax\"");
    net_from_text(&net, Phase::Train, &[]).unwrap();
    let net = IN_PLACE.replace(
        "TYPE",
        "\"InnerProduct\" inner_product_param { num_output: 3 }",
    );
    let err = build_error(&net);
    assert!(
        err.contains("layer \"act\" (InnerProduct)")
            && err.contains("computes its top from the whole bottom at once"),
        "{err}"
    );
}
