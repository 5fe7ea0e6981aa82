//! Images to LMDB to training, as a Caffe user goes: `convert-imageset`, `compute-mean`, a net with a Data layer
//! (its mean file, crop and mirror) run by `crema forward` and `crema train`, a resumed run reading on from the
//! saved data position, an ImageData net over the same images, and the errors a bad image or record gives.

mod common;

use std::path::{Path, PathBuf};

use common::{crema, stderr, stdout, temp_dir};
use crema::data::pixels::{Encoding, Image};

/// A folder with `images/` holding 12 small PNG images (some paths with spaces) and `list.txt` naming them
/// with labels 0..3; label k's images are brightest in channel k.
fn workspace(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("images-{name}"));
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("class 1")).unwrap();
    let mut list = String::new();
    for i in 0..12usize {
        let label = i % 3;
        let (h, w) = (6, 5 + i % 2);
        let values: Vec<u8> = (0..3 * h * w)
            .map(|p| {
                let c = p / (h * w);
                let base = if c == label { 180 } else { 40 };
                (base + (p * 7 + i * 13) % 60) as u8
            })
            .collect();
        let image = Image::new(3, h, w, values).unwrap();
        let file = if label == 1 {
            format!("class 1/img {i}.png")
        } else {
            format!("img{i}.png")
        };
        std::fs::write(images.join(&file), image.encode(Encoding::Png).unwrap()).unwrap();
        list.push_str(&format!("{file} {label}\n"));
    }
    std::fs::write(dir.join("list.txt"), list).unwrap();
    dir
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = crema(args, dir);
    assert!(
        out.status.success(),
        "crema {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = crema(args, dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "crema {args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

const NET: &str = r#"name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mean_file: "mean.binaryproto" scale: 0.0078125 mirror: true crop_size: 3 }
  data_param { source: "train_lmdb" batch_size: 4 backend: LMDB prefetch: 2 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { mean_file: "mean.binaryproto" scale: 0.0078125 crop_size: 3 }
  data_param { source: "train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" include { phase: TEST } }
"#;

const SOLVER: &str = r#"net: "net.prototxt"
test_iter: 3
test_interval: 4
base_lr: 0.05
lr_policy: "fixed"
momentum: 0.9
max_iter: 10
display: 1
snapshot: 4
snapshot_prefix: "tiny"
random_seed: 7
"#;

#[test]
fn convert_compute_mean_train_and_resume() {
    let dir = workspace("train");
    let out = ok(
        &[
            "convert-imageset",
            "--resize-height",
            "4",
            "--resize-width",
            "4",
            "--shuffle",
            "images/",
            "list.txt",
            "train_lmdb",
        ],
        &dir,
    );
    assert!(out.contains("12 records"), "{out}");
    let err = fails(
        &["convert-imageset", "images/", "list.txt", "train_lmdb"],
        &dir,
    );
    assert!(err.contains("already exists"), "{err}");

    // Keys `%08d_<path>` in the shuffled order, each record's label that of its path.
    let lmdb = dir.join("train_lmdb");
    let reader = crema::data::lmdb::LmdbReader::open(&lmdb).unwrap();
    let mut keys = Vec::new();
    reader
        .for_each(|key, _| {
            keys.push(String::from_utf8(key.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
    let labels = crema::data::lmdb::read_labels(&lmdb).unwrap();
    let list = crema::data::image_list::read_list(&dir.join("list.txt")).unwrap();
    assert_eq!(keys.len(), 12);
    let mut order = Vec::new();
    for (i, (key, label)) in keys.iter().zip(&labels).enumerate() {
        let (number, path) = key.split_once('_').unwrap();
        assert_eq!(number, format!("{i:08}"));
        let line = list.iter().position(|(p, _)| p == path).unwrap();
        assert_eq!(list[line].1, *label, "{key}");
        order.push(line);
    }
    assert_ne!(order, (0..12).collect::<Vec<_>>(), "shuffled");

    let out = ok(&["compute-mean", "train_lmdb", "mean.binaryproto"], &dir);
    assert!(out.contains("Number of channels: 3"), "{out}");
    assert!(out.contains("mean_value channel [2]: "), "{out}");
    let mean = crema::io::read_blobproto(&dir.join("mean.binaryproto")).unwrap();
    assert_eq!(mean.shape(), [1, 3, 4, 4]);

    std::fs::write(dir.join("net.prototxt"), NET).unwrap();
    std::fs::write(dir.join("solver.prototxt"), SOLVER).unwrap();

    // forward in TEST: a batch of centre crops, the mean subtracted and scaled.
    ok(
        &["forward", "--model", "net.prototxt", "--out", "out"],
        &dir,
    );
    let data = crema::io::read_npy(&dir.join("out/data.npy")).unwrap();
    assert_eq!(data.shape(), [4, 3, 3, 3]);
    let label = crema::io::read_npy(&dir.join("out/label.npy")).unwrap();
    let first: Vec<f64> = labels[..4].iter().map(|&l| f64::from(l)).collect();
    assert_eq!(label.to_f64_vec(), first);
    assert!(data.to_f64_vec().iter().all(|v| v.abs() < 2.0));

    // Train 10 iterations, snapshots at 4, 8 and 10; then again from the snapshot at 4.
    let log = stderr(&crema(
        &["train", "--solver", "solver.prototxt", "--no-plot"],
        &dir,
    ));
    assert!(log.contains("Optimization Done."), "{log}");
    assert!(log.contains("Test net output #0: accuracy = "), "{log}");
    let straight = std::fs::read(dir.join("tiny_iter_10.caffemodel")).unwrap();
    std::fs::remove_file(dir.join("tiny_iter_10.caffemodel")).unwrap();
    let log = stderr(&crema(
        &[
            "train",
            "--solver",
            "solver.prototxt",
            "--no-plot",
            "--snapshot",
            "tiny_iter_4.solverstate",
        ],
        &dir,
    ));
    assert!(
        log.contains("Resuming from tiny_iter_4.solverstate"),
        "{log}"
    );
    let resumed = std::fs::read(dir.join("tiny_iter_10.caffemodel")).unwrap();
    assert!(
        straight == resumed,
        "a resumed run reads on from the saved data position and ends with the same weights"
    );
}

#[test]
fn encoded_grey_records_and_image_data() {
    let dir = workspace("encoded");
    ok(
        &[
            "convert-imageset",
            "--gray",
            "--encode-type",
            "png",
            "--resize-height",
            "4",
            "--resize-width",
            "4",
            "images/",
            "list.txt",
            "gray_lmdb",
        ],
        &dir,
    );
    let out = ok(&["compute-mean", "gray_lmdb"], &dir);
    assert!(out.contains("Number of channels: 1"), "{out}");
    // Stored without resizing, PNG files are kept as they are.
    ok(
        &[
            "convert-imageset",
            "--encoded",
            "images/",
            "list.txt",
            "enc_lmdb",
        ],
        &dir,
    );
    let lmdb = dir.join("enc_lmdb");
    let reader = crema::data::lmdb::LmdbReader::open(&lmdb).unwrap();
    let (key, value) = reader.first().unwrap().unwrap();
    assert_eq!(key, b"00000000_img0.png");
    let datum = crema::data::datum::parse(&value).unwrap();
    assert!(datum.encoded());
    assert_eq!(
        datum.data(),
        std::fs::read(dir.join("images/img0.png")).unwrap()
    );

    let net = r#"layer { name: "d" type: "Data" top: "data" top: "label"
      data_param { source: "gray_lmdb" batch_size: 5 backend: LMDB } }
    layer { name: "i" type: "ImageData" top: "image" top: "image_label"
      transform_param { mirror: true crop_size: 4 }
      image_data_param { source: "list.txt" root_folder: "images/" batch_size: 5 shuffle: true } }"#;
    std::fs::write(dir.join("net.prototxt"), net).unwrap();
    ok(
        &[
            "forward",
            "--model",
            "net.prototxt",
            "--phase",
            "train",
            "--out",
            "out",
        ],
        &dir,
    );
    let data = crema::io::read_npy(&dir.join("out/data.npy")).unwrap();
    assert_eq!(data.shape(), [5, 1, 4, 4]);
    let image = crema::io::read_npy(&dir.join("out/image.npy")).unwrap();
    assert_eq!(image.shape(), [5, 3, 4, 4]);
    let label = crema::io::read_npy(&dir.join("out/label.npy")).unwrap();
    assert_eq!(label.to_f64_vec(), [0.0, 1.0, 2.0, 0.0, 1.0]);
}

#[test]
fn bad_images_and_records_are_errors_not_panics() {
    let dir = workspace("errors");
    std::fs::write(dir.join("images/bad.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let list = std::fs::read_to_string(dir.join("list.txt")).unwrap();
    std::fs::write(
        dir.join("more.txt"),
        format!("{list}bad.png 1\nmissing.png 2\n"),
    )
    .unwrap();
    // Unreadable images are skipped with a warning naming them, as Caffe does.
    let out = crema(
        &["convert-imageset", "images/", "more.txt", "skip_lmdb"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bad.png") && err.contains("missing.png"),
        "{err}"
    );
    assert!(stdout(&out).contains("12 records (2 skipped)"));
    // Images of two sizes with --check-size.
    let err = fails(
        &[
            "convert-imageset",
            "--check-size",
            "images/",
            "list.txt",
            "checked_lmdb",
        ],
        &dir,
    );
    assert!(
        err.contains("--check-size") && err.contains("img 1.png"),
        "{err}"
    );
    let err = fails(&["convert-imageset", "images", "list.txt", "x_lmdb"], &dir);
    assert!(err.contains("did you mean \"images/\"?"), "{err}");
    assert!(!dir.join("x_lmdb").exists());
    let err = fails(&["convert-imageset", "images/", "nope.txt", "x_lmdb"], &dir);
    assert!(err.contains("nope.txt"), "{err}");

    // A Data net over images of several sizes (no crop): the record that differs is named.
    ok(
        &["convert-imageset", "images/", "list.txt", "mixed_lmdb"],
        &dir,
    );
    let net = r#"layer { name: "d" type: "Data" top: "data" top: "label"
      data_param { source: "mixed_lmdb" batch_size: 2 backend: LMDB } }"#;
    std::fs::write(dir.join("net.prototxt"), net).unwrap();
    let err = fails(
        &["forward", "--model", "net.prototxt", "--out", "out"],
        &dir,
    );
    assert!(
        err.contains("record \"00000001_class 1/img 1.png\"") && err.contains("the same size"),
        "{err}"
    );
    let err = fails(&["compute-mean", "mixed_lmdb"], &dir);
    assert!(
        err.contains("record \"00000001_class 1/img 1.png\""),
        "{err}"
    );
    let err = fails(&["compute-mean", "no_lmdb"], &dir);
    assert!(err.contains("no_lmdb"), "{err}");
}

#[test]
fn infogain_counts_the_labels_of_an_lmdb_and_of_an_image_list() {
    let dir = workspace("infogain");
    // Every label-0 image, and one each of labels 1 and 2: counts (4, 1, 1).
    let list = std::fs::read_to_string(dir.join("list.txt")).unwrap();
    let mut seen = [0; 3];
    let mut uneven = String::new();
    for line in list.lines() {
        let label: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
        if label == 0 || seen[label] == 0 {
            uneven.push_str(line);
            uneven.push('\n');
            seen[label] += 1;
        }
    }
    std::fs::write(dir.join("uneven.txt"), uneven).unwrap();
    ok(
        &["convert-imageset", "images/", "uneven.txt", "uneven_lmdb"],
        &dir,
    );
    for source in ["uneven_lmdb", "uneven_lmdb/data.mdb", "uneven.txt"] {
        let printed = ok(&["infogain", "--source", source, "-o", "H.npy"], &dir);
        let kind = if source.ends_with(".txt") {
            "6 labels (image list)"
        } else {
            "6 labels (LMDB of Datum records)"
        };
        assert!(printed.contains(kind), "{printed}");
        // Mean one: w = N / (C n) = 6 / (3 n) = (0.5, 2, 2).
        let h = crema::io::read_npy(&dir.join("H.npy"))
            .unwrap()
            .to_f32_vec();
        let diagonal: Vec<f32> = (0..3).map(|i| h[i * 4]).collect();
        assert_eq!(diagonal, [0.5, 2.0, 2.0], "{source}");
    }
    // The data.mdb of the working directory (a path with no folder part).
    let printed = ok(
        &["infogain", "--source", "data.mdb", "-o", "../H2.npy"],
        &dir.join("uneven_lmdb"),
    );
    assert!(
        printed.contains("6 labels (LMDB of Datum records)"),
        "{printed}"
    );
}
