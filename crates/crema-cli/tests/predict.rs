//! `crema predict`: images through a trained net, as DIGITS' "classify one image" does. Tiny nets whose weights
//! make the answer known: a classifier that scores an image by its mean red, green and blue, and a 1 × 1
//! convolution that labels each pixel by its colour.

mod common;

use std::path::Path;

use common::{crema, stderr, stdout, temp_dir};
use crema::data::pixels::{read_image, ColorMode, Encoding, Image};
use crema::io::{write_blobproto, Array};
use crema::proto::{files, NetState};
use crema::{Net, NetOptions};

/// A deploy net: 2 images of 3 × 4 × 4 at a time, one score per colour (class 0 red, 1 green, 2 blue: the mean
/// of that channel over 255), then Softmax.
const DEPLOY: &str = r#"
name: "colours"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"#;

/// The same net without its Softmax: the scores are the output.
const DEPLOY_SCORES: &str = r#"
name: "colours"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
"#;

/// A train_val net as DIGITS writes it: data layers by stage (the validation one scales by 2), an Input for the
/// deploy stage, the loss excluded there and a Softmax only there.
const TRAIN_VAL: &str = r#"
name: "colours"
layer { name: "train-data" type: "Data" top: "data" top: "label" include { stage: "train" }
  transform_param { scale: 3 } data_param { source: "train_db" batch_size: 4 backend: LMDB } }
layer { name: "val-data" type: "Data" top: "data" top: "label" include { stage: "val" }
  transform_param { scale: 2 } data_param { source: "val_db" batch_size: 4 backend: LMDB } }
layer { name: "deploy-data" type: "Input" top: "data" include { stage: "deploy" }
  input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  exclude { stage: "deploy" } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
  include { stage: "val" } }
layer { name: "softmax" type: "Softmax" bottom: "ip" top: "softmax" include { stage: "deploy" } }
"#;

/// A train_val net whose one data layer and loss are excluded in the deploy stage, and no Input layer at all:
/// crema makes one from the data layer (crop_size 4, three mean values: 3 × 4 × 4).
const TRAIN_VAL_NO_INPUT: &str = r#"
name: "colours"
layer { name: "data" type: "Data" top: "data" top: "label" exclude { stage: "deploy" }
  transform_param { crop_size: 4 mean_value: 0 mean_value: 0 mean_value: 0 scale: 2 }
  data_param { source: "db" batch_size: 3 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  exclude { stage: "deploy" } }
"#;

const LABELS: &str = "red\ngreen\nblue\n";

/// Writes `prototxt` as `name` and a caffemodel `colours.caffemodel` whose InnerProduct "ip" scores class k by
/// the mean of colour k's channel (BGR order: red is channel 2) over 255.
fn write_net(dir: &Path, name: &str, prototxt: &str) {
    std::fs::write(dir.join(name), prototxt).unwrap();
    std::fs::write(dir.join("deploy_for_weights.prototxt"), DEPLOY).unwrap();
    let (param, _) = files::read_net_text(&dir.join("deploy_for_weights.prototxt")).unwrap();
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    let ip = net.layer_index("ip").unwrap();
    let params = net.layer_params_mut(ip);
    let w = params[0].data_mut();
    w.fill(0.0);
    for (class, channel) in [(0, 2), (1, 1), (2, 0)] {
        for p in 0..16 {
            w[class * 48 + channel * 16 + p] = 1.0 / (16.0 * 255.0);
        }
    }
    params[1].data_mut().fill(0.0);
    files::write_binary(&dir.join("colours.caffemodel"), &net.to_proto(false)).unwrap();
}

/// Writes a `height × width` PNG of one colour (R, G, B).
fn write_png(path: &Path, [r, g, b]: [u8; 3], height: usize, width: usize) {
    let plane = height * width;
    let mut values = vec![b; plane];
    values.extend(std::iter::repeat_n(g, plane));
    values.extend(std::iter::repeat_n(r, plane));
    let png = Image::new(3, height, width, values)
        .unwrap()
        .encode(Encoding::Png)
        .unwrap();
    std::fs::write(path, png).unwrap();
}

/// A folder with red, green and blue PNG images (6 × 5, resized to the net's 4 × 4) and labels.txt.
fn workspace(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(&format!("predict-{name}"));
    write_png(&dir.join("red.png"), [255, 0, 0], 6, 5);
    write_png(&dir.join("green.png"), [0, 255, 0], 6, 5);
    write_png(&dir.join("blue.png"), [0, 0, 255], 6, 5);
    std::fs::write(dir.join("labels.txt"), LABELS).unwrap();
    dir
}

/// The softmax of `scores`, each printed as crema predict prints a probability.
fn probabilities(scores: [f64; 3]) -> [String; 3] {
    let sum: f64 = scores.iter().map(|s| s.exp()).sum();
    scores.map(|s| format!("{:.6}", s.exp() / sum))
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = crema(args, dir);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = crema(args, dir);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

/// The lines printed for `image`.
fn lines_of<'a>(text: &'a str, image: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{image}: ")))
        .collect()
}

#[test]
fn a_classifier_ranks_the_colours() {
    let dir = workspace("classify");
    write_net(&dir, "deploy.prototxt", DEPLOY);
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--labels",
            "labels.txt",
            "red.png",
            "green.png",
            "blue.png",
        ],
    );
    // Three images through an input of batch 2: two batches.
    assert!(
        text.contains("images resized to 4 × 4 (BGR), no mean, scale 1; 3 images in batches of 2"),
        "{text}"
    );
    assert!(
        text.contains("Output \"prob\": 3 classes, probabilities from the Softmax layer \"prob\""),
        "{text}"
    );
    // The image's own colour scores 1, the others 0.
    let [high, low, _] = probabilities([1.0, 0.0, 0.0]);
    assert_eq!(
        lines_of(&text, "red.png"),
        [
            format!("red.png: 0 (red) {high}"),
            format!("red.png: 1 (green) {low}"),
            format!("red.png: 2 (blue) {low}"),
        ]
    );
    assert_eq!(
        lines_of(&text, "green.png")[0],
        format!("green.png: 1 (green) {high}")
    );
    assert_eq!(
        lines_of(&text, "blue.png")[0],
        format!("blue.png: 2 (blue) {high}")
    );
    // The order of the results is the order of the images.
    let first: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(".png: "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(first[0], "red.png");
    assert_eq!(first[8], "blue.png");

    // --top-k 1, without labels; a JPEG and a grey image work too (grey: every channel the same).
    write_png(&dir.join("grey.png"), [200, 200, 200], 3, 3);
    let jpeg = Image::new(
        3,
        8,
        8,
        [vec![0u8; 64], vec![250u8; 64], vec![0u8; 64]].concat(),
    )
    .unwrap()
    .encode(Encoding::Jpeg)
    .unwrap();
    std::fs::write(dir.join("green.jpg"), jpeg).unwrap();
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--top-k",
            "1",
            "green.jpg",
            "grey.png",
        ],
    );
    let green = lines_of(&text, "green.jpg");
    assert_eq!(green.len(), 1);
    assert!(green[0].starts_with("green.jpg: 1 0.5"), "{text}");
    // Grey: three equal scores.
    assert_eq!(lines_of(&text, "grey.png"), ["grey.png: 0 0.333333"]);
}

#[test]
fn a_softmax_before_a_flatten_is_still_one() {
    // Probabilities reshaped after the Softmax are not given a second softmax.
    let dir = workspace("flatten");
    let net = format!(
        "{DEPLOY}layer {{ name: \"flat\" type: \"Flatten\" bottom: \"prob\" top: \"flat\" }}\n"
    );
    write_net(&dir, "deploy.prototxt", &net);
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--top-k",
            "1",
            "red.png",
        ],
    );
    assert!(
        text.contains("Output \"flat\": 3 classes, probabilities from the Softmax layer \"prob\""),
        "{text}"
    );
    let [high, _, _] = probabilities([1.0, 0.0, 0.0]);
    assert_eq!(lines_of(&text, "red.png"), [format!("red.png: 0 {high}")]);
}

#[test]
fn scores_without_a_softmax_get_one() {
    let dir = workspace("scores");
    write_net(&dir, "deploy.prototxt", DEPLOY_SCORES);
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--scale",
            "2",
            "red.png",
        ],
    );
    assert!(
        text.contains(
            "Output \"ip\": 3 classes, scores of the InnerProduct layer \"ip\" (not a Softmax): softmax applied"
        ),
        "{text}"
    );
    assert!(text.contains("times 2"), "{text}");
    let [high, low, _] = probabilities([2.0, 0.0, 0.0]);
    assert_eq!(
        lines_of(&text, "red.png"),
        [
            format!("red.png: 0 {high}"),
            format!("red.png: 1 {low}"),
            format!("red.png: 2 {low}")
        ]
    );
}

#[test]
fn means_are_subtracted() {
    let dir = workspace("mean");
    write_net(&dir, "deploy.prototxt", DEPLOY);
    // Mean values in BGR order: red's channel minus 255 makes the red image score 0 everywhere; the green one
    // scores -1 for red and 1 for green.
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--mean-value",
            "0,0,255",
            "red.png",
            "green.png",
        ],
    );
    assert!(text.contains("minus the mean values [0, 0, 255]"), "{text}");
    assert_eq!(lines_of(&text, "red.png")[0], "red.png: 0 0.333333");
    let [low, high, mid] = probabilities([-1.0, 1.0, 0.0]);
    assert_eq!(
        lines_of(&text, "green.png"),
        [
            format!("green.png: 1 {high}"),
            format!("green.png: 2 {mid}"),
            format!("green.png: 0 {low}")
        ]
    );

    // A 6 × 6 mean image, center-cropped to the input's 4 × 4: 255 in the red channel's centre, 1000 at its
    // border (which would change the scores if it were used).
    let mut mean = vec![0.0f32; 3 * 36];
    for y in 0..6 {
        for x in 0..6 {
            let centre = (1..5).contains(&y) && (1..5).contains(&x);
            mean[2 * 36 + y * 6 + x] = if centre { 255.0 } else { 1000.0 };
        }
    }
    write_blobproto(
        &dir.join("mean.binaryproto"),
        &Array::from_f32(vec![1, 3, 6, 6], mean).unwrap(),
    )
    .unwrap();
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--mean-file",
            "mean.binaryproto",
            "red.png",
        ],
    );
    assert!(
        text.contains("minus the mean image mean.binaryproto (3 × 6 × 6, center-cropped to 4 × 4)"),
        "{text}"
    );
    assert_eq!(lines_of(&text, "red.png")[0], "red.png: 0 0.333333");

    // A mean image smaller than the input, or of other channels, is refused, naming the file and both shapes.
    write_blobproto(
        &dir.join("small.binaryproto"),
        &Array::from_f32(vec![1, 3, 2, 2], vec![0.0; 12]).unwrap(),
    )
    .unwrap();
    write_blobproto(
        &dir.join("grey.binaryproto"),
        &Array::from_f32(vec![1, 1, 4, 4], vec![0.0; 16]).unwrap(),
    )
    .unwrap();
    for (file, shape) in [
        ("small.binaryproto", "3 × 2 × 2"),
        ("grey.binaryproto", "1 × 4 × 4"),
    ] {
        let err = fails(
            &dir,
            &[
                "predict",
                "--model",
                "deploy.prototxt",
                "--weights",
                "colours.caffemodel",
                "--mean-file",
                file,
                "red.png",
            ],
        );
        assert!(
            err.contains(file)
                && err.contains(&format!(
                    "the mean image is {shape}, the net's input 3 × 4 × 4"
                )),
            "{err}"
        );
    }
    // Two mean values for three channels.
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "deploy.prototxt",
            "--weights",
            "colours.caffemodel",
            "--mean-value",
            "1,2",
            "red.png",
        ],
    );
    assert!(
        err.contains("2 mean values for an input of 3 channels"),
        "{err}"
    );
}

#[test]
fn a_train_val_net_runs_in_the_deploy_stage() {
    let dir = workspace("stage");
    write_net(&dir, "train_val.prototxt", TRAIN_VAL);
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "train_val.prototxt",
            "--stage",
            "deploy",
            "--weights",
            "colours.caffemodel",
            "--labels",
            "labels.txt",
            "--top-k",
            "2",
            "blue.png",
        ],
    );
    // The validation data layer's scale (2), the deploy stage's Softmax; the data layers' LMDBs never opened.
    assert!(
        text.contains("times 2 (scale: transform_param of layer \"val-data\")"),
        "{text}"
    );
    assert!(text.contains("Softmax layer \"softmax\""), "{text}");
    let [high, low, _] = probabilities([2.0, 0.0, 0.0]);
    assert_eq!(
        lines_of(&text, "blue.png"),
        [
            format!("blue.png: 2 (blue) {high}"),
            format!("blue.png: 0 (red) {low}")
        ]
    );

    // Without --stage deploy the net reads from its Data layer: a clear error, not an LMDB error.
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "train_val.prototxt",
            "--weights",
            "colours.caffemodel",
            "blue.png",
        ],
    );
    assert!(
        err.contains("no layer makes blob \"data\" (read by layer \"ip\"), blob \"label\" (read by layer \"loss\")")
            && err.contains("--stage deploy"),
        "{err}"
    );

    // No Input layer: one is made for "data" from the excluded data layer (crop 4, three mean values).
    write_net(&dir, "no_input.prototxt", TRAIN_VAL_NO_INPUT);
    let out = crema(
        &[
            "predict",
            "--model",
            "no_input.prototxt",
            "--stage",
            "deploy",
            "--weights",
            "colours.caffemodel",
            "red.png",
            "green.png",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        stderr(&out).contains("the excluded data layer \"data\" makes"),
        "{}",
        stderr(&out)
    );
    assert!(
        text.contains(
            "minus the mean values [0, 0, 0], times 2 (mean and scale: transform_param of layer \"data\"); \
             2 images in batches of 2"
        ),
        "{text}"
    );
    assert!(text.contains("softmax applied"), "{text}");
    assert_eq!(
        lines_of(&text, "green.png")[0],
        format!("green.png: 1 {high}")
    );
    // Built without the deploy stage, the Data layer is in the net.
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "no_input.prototxt",
            "--weights",
            "colours.caffemodel",
            "red.png",
        ],
    );
    assert!(
        err.contains("reads its data from the Data layer \"data\"")
            && err.contains("--stage deploy"),
        "{err}"
    );
    // Without a crop_size and a mean to tell the size from, --input-shape is asked for, and then used.
    let no_crop = TRAIN_VAL_NO_INPUT.replace("crop_size: 4 ", "");
    std::fs::write(dir.join("no_crop.prototxt"), no_crop).unwrap();
    let args = [
        "predict",
        "--model",
        "no_crop.prototxt",
        "--stage",
        "deploy",
        "--weights",
        "colours.caffemodel",
        "red.png",
    ];
    let err = fails(&dir, &args);
    assert!(err.contains("give --input-shape C,H,W"), "{err}");
    let text = run(&dir, &[&args[..], &["--input-shape", "3,4,4"]].concat());
    assert_eq!(lines_of(&text, "red.png")[0], format!("red.png: 0 {high}"));
}

/// A segmentation net: 1 × 1 convolution over a 2 × 3 image; class 0 (background) scores 100 everywhere, class
/// 1 the red value, class 2 the green value.
const FCN: &str = r#"
name: "fcn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 2 dim: 3 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 } }
"#;

fn write_fcn(dir: &Path) {
    std::fs::write(dir.join("fcn.prototxt"), FCN).unwrap();
    let (param, _) = files::read_net_text(&dir.join("fcn.prototxt")).unwrap();
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    let score = net.layer_index("score").unwrap();
    let params = net.layer_params_mut(score);
    let w = params[0].data_mut();
    w.fill(0.0);
    // Weights [class, channel]: class 1 ← R (channel 2), class 2 ← G (channel 1).
    w[3 + 2] = 1.0;
    w[2 * 3 + 1] = 1.0;
    params[1].data_mut().copy_from_slice(&[100.0, 0.0, 0.0]);
    files::write_binary(&dir.join("fcn.caffemodel"), &net.to_proto(false)).unwrap();
}

/// Writes a 2 × 3 PNG of the given pixels (R, G, B), row by row.
fn write_pixels(path: &Path, pixels: [[u8; 3]; 6]) {
    let mut values = vec![0u8; 18];
    for (p, [r, g, b]) in pixels.iter().enumerate() {
        values[p] = *b;
        values[6 + p] = *g;
        values[12 + p] = *r;
    }
    let png = Image::new(3, 2, 3, values)
        .unwrap()
        .encode(Encoding::Png)
        .unwrap();
    std::fs::write(path, png).unwrap();
}

#[test]
fn a_segmentation_net_writes_class_masks() {
    let dir = temp_dir("predict-segment");
    write_fcn(&dir);
    let (red, green, blue, black) = ([255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]);
    // Classes: red 1, green 2, blue and black 0 (100 beats 0).
    write_pixels(&dir.join("scene.png"), [red, green, blue, black, red, red]);
    std::fs::create_dir_all(dir.join("other")).unwrap();
    write_pixels(&dir.join("other/scene.png"), [green; 6]);
    std::fs::write(
        dir.join("classes.txt"),
        "background\nred thing\ngreen thing\n",
    )
    .unwrap();
    let text = run(
        &dir,
        &[
            "predict",
            "--model",
            "fcn.prototxt",
            "--weights",
            "fcn.caffemodel",
            "--labels",
            "classes.txt",
            "--out",
            "masks",
            "scene.png",
            "other/scene.png",
        ],
    );
    assert!(
        text.contains(
            "Output \"score\": 3 classes per pixel (segmentation): masks written to masks"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "scene.png: mask masks/scene_mask.png (2 × 3): 1 (red thing) 50.00%, 0 (background) 33.33%, \
             2 (green thing) 16.67%"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "other/scene.png: mask masks/scene_1_mask.png (2 × 3): 2 (green thing) 100.00%"
        ),
        "{text}"
    );
    // The mask's pixels in Pascal VOC's colours: 0 black, 1 (128, 0, 0), 2 (0, 128, 0); read back as BGR planes.
    let mask = read_image(&dir.join("masks/scene_mask.png"), ColorMode::Color).unwrap();
    assert_eq!((mask.height(), mask.width()), (2, 3));
    let rgb: Vec<[u8; 3]> = (0..6)
        .map(|p| {
            let v = mask.values();
            [v[12 + p], v[6 + p], v[p]]
        })
        .collect();
    assert_eq!(
        rgb,
        [
            [128, 0, 0],
            [0, 128, 0],
            [0, 0, 0],
            [0, 0, 0],
            [128, 0, 0],
            [128, 0, 0]
        ]
    );
    let other = read_image(&dir.join("masks/scene_1_mask.png"), ColorMode::Color).unwrap();
    assert_eq!(other.values()[6..12], [128; 6]);
    // The legend: each class's colour and name.
    let legend = std::fs::read_to_string(dir.join("masks/legend.txt")).unwrap();
    let rows: Vec<Vec<&str>> = legend
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("class") && !l.starts_with('-'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["0", "#000000", "0", "0", "0", "background"],
            vec!["1", "#800000", "128", "0", "0", "red", "thing"],
            vec!["2", "#008000", "0", "128", "0", "green", "thing"],
        ],
        "{legend}"
    );

    // Without --out: an error before anything runs.
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "fcn.prototxt",
            "--weights",
            "fcn.caffemodel",
            "scene.png",
        ],
    );
    assert!(
        err.contains("segmentation") && err.contains("--out DIR"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_named() {
    let dir = workspace("errors");
    write_net(&dir, "deploy.prototxt", DEPLOY);
    let base = [
        "predict",
        "--model",
        "deploy.prototxt",
        "--weights",
        "colours.caffemodel",
    ];
    // An image that does not decode: the file is named.
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = fails(&dir, &[&base[..], &["red.png", "broken.png"]].concat());
    assert!(err.contains("broken.png"), "{err}");
    let err = fails(&dir, &[&base[..], &["missing.jpg"]].concat());
    assert!(err.contains("missing.jpg"), "{err}");

    // Labels: one name per class.
    std::fs::write(dir.join("two.txt"), "red\ngreen\n").unwrap();
    let err = fails(
        &dir,
        &[&base[..], &["--labels", "two.txt", "red.png"]].concat(),
    );
    assert!(
        err.contains("--labels two.txt: 2 names for 3 classes (the net's output \"prob\" has 3)"),
        "{err}"
    );

    // A net whose input is not an image.
    std::fs::write(
        dir.join("vector.prototxt"),
        r#"
name: "vector"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 12 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
"#,
    )
    .unwrap();
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "vector.prototxt",
            "--weights",
            "colours.caffemodel",
            "red.png",
        ],
    );
    assert!(
        err.contains("the net's input \"data\" has shape [1, 12] (N × D): not an image input"),
        "{err}"
    );
    // Four channels.
    std::fs::write(
        dir.join("rgba.prototxt"),
        DEPLOY.replace("dim: 2 dim: 3 dim: 4", "dim: 2 dim: 4 dim: 4"),
    )
    .unwrap();
    let err = fails(
        &dir,
        &[
            "predict",
            "--model",
            "rgba.prototxt",
            "--weights",
            "colours.caffemodel",
            "red.png",
        ],
    );
    assert!(err.contains("has 4 channels"), "{err}");
}
