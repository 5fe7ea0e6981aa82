//! The imbalanced-segmentation example (examples/imbalanced-segmentation) as run.sh runs it, shortened: its
//! scenes, label maps, test pictures and H are what its README says, its deploy net is its training nets'
//! layers, both solvers train (a few hundred iterations instead of 3000), `crema test` scores both snapshots on
//! every labelled pixel of the test scenes with per-class IoU and mean IoU side by side, and `crema predict`
//! writes for each test picture a mask of the classes the net gives that scene.

mod common;

use common::{crema, read_hdf5_list, stderr, stdout, temp_dir};

use std::path::{Path, PathBuf};

use crema::data::pixels::{read_image, ColorMode};
use crema::io::{read_array, ArrayData};
use crema::proto::{files, NetParameter, NetState};
use crema::{Net, NetOptions};

/// Classes: 0 the background, d + 1 the ink of digit d; the outline around the ink is void (ignored).
const CLASSES: usize = 11;
const VOID: usize = 255;
/// Scenes are 32 × 32 pixels.
const SIDE: usize = 32;
const TRAIN_SCENES: usize = 783;
const TEST_SCENES: usize = 125;
/// Pixels of each class in the training and the test scenes, and void pixels, from make_data.py.
const TRAIN_PIXELS: [usize; CLASSES] = [
    512146, 2363, 10433, 42746, 5097, 7221, 20237, 15134, 29073, 1983, 3706,
];
const TRAIN_VOID: usize = 151653;
const TEST_PIXELS: [usize; CLASSES] = [
    81275, 2044, 2252, 2238, 2169, 2189, 2244, 2256, 2148, 2573, 2157,
];
const TEST_VOID: usize = 24455;
/// The class with the fewest training pixels: digit 8 (40 of the 3132 training digits).
const RAREST: usize = 9;
/// The test scenes also stored as PNG pictures (images/test_K.png), with their label maps.
const PICTURES: usize = 4;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/imbalanced-segmentation")
}

/// The pixels of each class, and the void ones.
fn pixels_per_class(labels: &[f32]) -> (Vec<usize>, usize) {
    let (mut counts, mut void) = (vec![0; CLASSES], 0);
    for &label in labels {
        if label == VOID as f32 {
            void += 1;
            continue;
        }
        assert!(
            label.fract() == 0.0 && (0.0..CLASSES as f32).contains(&label),
            "label {label}"
        );
        counts[label as usize] += 1;
    }
    (counts, void)
}

/// Pascal VOC's colour of a class, as crema predict draws masks.
fn voc_colour(class: usize) -> [u8; 3] {
    let (mut c, mut rgb) = (class, [0u8; 3]);
    for shift in 0..8 {
        for (channel, value) in rgb.iter_mut().enumerate() {
            *value |= (((c >> channel) & 1) as u8) << (7 - shift);
        }
        c >>= 3;
    }
    rgb
}

/// The classes of a mask picture in Pascal VOC's colours (void too), pixel by pixel.
fn mask_classes(path: &Path) -> Vec<usize> {
    let mask = read_image(path, ColorMode::Color).unwrap();
    assert_eq!(
        (mask.height(), mask.width()),
        (SIDE, SIDE),
        "{}",
        path.display()
    );
    let (plane, bgr) = (SIDE * SIDE, mask.values());
    (0..plane)
        .map(|p| {
            let rgb = [bgr[2 * plane + p], bgr[plane + p], bgr[p]];
            (0..CLASSES)
                .chain([VOID])
                .find(|&c| voc_colour(c) == rgb)
                .unwrap_or_else(|| panic!("{}: colour {rgb:?} is no class's", path.display()))
        })
        .collect()
}

#[test]
fn the_data_pictures_and_h_are_what_the_readme_says() {
    let dir = example();
    let (shape, data, labels) = read_hdf5_list(&dir.join("train_h5.txt"), TRAIN_SCENES);
    assert_eq!(shape, [TRAIN_SCENES, 1, SIDE, SIDE]);
    // Grey levels are bytes over 256, exactly.
    let bytes = |v: f32| (0.0..1.0).contains(&v) && (v * 256.0).fract() == 0.0;
    assert!(data.iter().all(|&v| bytes(v)));
    assert_eq!(
        pixels_per_class(&labels),
        (TRAIN_PIXELS.to_vec(), TRAIN_VOID)
    );

    let (shape, data, labels) = read_hdf5_list(&dir.join("test_h5.txt"), TEST_SCENES);
    assert_eq!(shape, [TEST_SCENES, 1, SIDE, SIDE]);
    assert!(data.iter().all(|&v| bytes(v)));
    assert_eq!(pixels_per_class(&labels), (TEST_PIXELS.to_vec(), TEST_VOID));
    let fewest = (0..CLASSES).min_by_key(|&c| TRAIN_PIXELS[c]).unwrap();
    assert_eq!(fewest, RAREST);

    // The pictures are the first test scenes: the grey bytes, and the label maps in the masks' colours.
    let plane = SIDE * SIDE;
    for k in 0..PICTURES {
        let picture =
            read_image(&dir.join(format!("images/test_{k}.png")), ColorMode::Native).unwrap();
        assert_eq!(
            (picture.channels(), picture.height(), picture.width()),
            (1, SIDE, SIDE)
        );
        let scene = &data[k * plane..(k + 1) * plane];
        for (&byte, &v) in picture.values().iter().zip(scene) {
            assert_eq!(f32::from(byte), v * 256.0, "images/test_{k}.png");
        }
        let truth = mask_classes(&dir.join(format!("images/test_{k}_truth.png")));
        let scene_labels: Vec<usize> = labels[k * plane..(k + 1) * plane]
            .iter()
            .map(|&l| l as usize)
            .collect();
        assert_eq!(truth, scene_labels, "images/test_{k}_truth.png");
    }

    // H = diag(w): median frequency median(f) / f_c scaled to a mean weight of 1 over the N labelled training
    // pixels (void left out), which is N / (C n_c): from 0.115 for the background to 29.8 for digit 8.
    let h = read_array(&dir.join("H.binaryproto")).unwrap();
    assert_eq!(h.shape(), [1, 1, CLASSES, CLASSES]);
    let ArrayData::F32(h) = h.data() else {
        panic!("H is not float32")
    };
    let n: usize = TRAIN_PIXELS.iter().sum();
    for row in 0..CLASSES {
        for column in 0..CLASSES {
            let value = f64::from(h[row * CLASSES + column]);
            if row == column {
                let expected = n as f64 / (CLASSES as f64 * TRAIN_PIXELS[row] as f64);
                assert!(
                    (value - expected).abs() < 1e-6 * expected,
                    "H[{row}][{row}] = {value}, expected {expected}"
                );
            } else {
                assert_eq!(value, 0.0, "H[{row}][{column}]");
            }
        }
    }
}

#[test]
fn the_deploy_net_is_the_training_nets_layers() {
    let dir = example();
    let read = |name: &str| files::read_net_text(&dir.join(name)).unwrap().0;
    let softmax = read("net_softmax.prototxt");
    let infogain = read("net_infogain.prototxt");
    let deploy = read("deploy.prototxt");
    // Between the data layers and the loss, the three nets have the same layers.
    let middle = |net: &NetParameter| {
        net.layer
            .iter()
            .filter(|l| {
                !matches!(l.r#type(), "HDF5Data" | "Input" | "Accuracy") && l.name() != "loss"
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(middle(&softmax), middle(&deploy));
    assert_eq!(middle(&infogain), middle(&deploy));
    let loss = |net: &NetParameter| {
        net.layer
            .iter()
            .find(|l| l.name() == "loss")
            .unwrap()
            .clone()
    };
    assert_eq!(loss(&softmax).r#type(), "SoftmaxWithLoss");
    let infogain_loss = loss(&infogain);
    assert_eq!(infogain_loss.r#type(), "InfogainLoss");
    let param = infogain_loss.infogain_loss_param.as_ref().unwrap();
    assert_eq!(param.source(), "H.binaryproto");
    assert_eq!(param.axis(), 1);
    // The FCN's parts: the net's output is as large as its input.
    let types: Vec<&str> = deploy.layer.iter().map(|l| l.r#type()).collect();
    for t in ["Convolution", "Pooling", "Deconvolution", "Crop"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let state = NetState {
        phase: Some(1),
        ..Default::default()
    };
    let net = Net::new(&deploy, &state, &NetOptions::default()).unwrap();
    assert_eq!(net.blob("score").unwrap().shape(), [1, CLASSES, SIDE, SIDE]);
}

/// Iterations of the shortened runs.
const ITERATIONS: usize = 300;

#[test]
fn both_solvers_train_test_reports_iou_and_predict_writes_masks() {
    let dir = temp_dir("example-imbalanced-segmentation");
    let example = example();
    for loss in ["softmax", "infogain"] {
        // The example's solver, shortened (the learning rate drops after two thirds of the iterations, as in
        // the example), the net named by its path, and the snapshots in the scratch folder.
        let solver =
            std::fs::read_to_string(example.join(format!("solver_{loss}.prototxt"))).unwrap();
        for line in [
            "max_iter: 3000",
            "stepsize: 2000",
            "test_interval: 250",
            "display: 250",
        ] {
            assert!(solver.contains(line), "no {line:?} in\n{solver}");
        }
        let solver = solver
            .replace("max_iter: 3000", &format!("max_iter: {ITERATIONS}"))
            .replace(
                "stepsize: 2000",
                &format!("stepsize: {}", ITERATIONS * 2 / 3),
            )
            .replace(
                "test_interval: 250",
                &format!("test_interval: {ITERATIONS}"),
            )
            .replace("display: 250", "display: 100")
            .replace(
                &format!("net: \"net_{loss}.prototxt\""),
                &format!(
                    "net: \"{}\"",
                    example.join(format!("net_{loss}.prototxt")).display()
                ),
            )
            .replace(
                &format!("snapshot_prefix: \"examples/imbalanced-segmentation/out/{loss}\""),
                &format!("snapshot_prefix: \"{loss}\""),
            );
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
            stderr(&out).contains(&format!("Iteration {ITERATIONS}, Testing net (#0)")),
            "{}",
            stderr(&out)
        );
    }

    // Both snapshots side by side on every labelled pixel of the 125 test scenes.
    let weights = |loss: &str| format!("{loss}_iter_{ITERATIONS}.caffemodel");
    let model = example.join("net_softmax.prototxt");
    let out = crema(
        &[
            "test",
            "--model",
            model.to_str().unwrap(),
            "--iterations",
            "5",
            "--weights",
            &weights("softmax"),
            "--label",
            "softmax",
            "--weights",
            &weights("infogain"),
            "--label",
            "infogain",
            "--json",
            "compare.json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{} positions counted, {TEST_VOID} with ignore_label 255 skipped",
            TEST_SCENES * SIDE * SIDE - TEST_VOID
        )),
        "{text}"
    );
    for row in ["IoU 0 ", "IoU 10 ", "mean IoU ", "frequency-weighted IoU "] {
        assert!(text.contains(row), "no {row:?} row in\n{text}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let mut rarest = Vec::new();
    for run in runs {
        let layer = &run["accuracy_layers"][0];
        let seg = &layer["segmentation"];
        assert_eq!(seg["positions_per_item"], SIDE * SIDE, "{seg}");
        assert_eq!(seg["mean_iou_classes"], CLASSES, "{seg}");
        let per_class = seg["per_class_iou"].as_array().unwrap();
        assert_eq!(per_class.len(), CLASSES);
        // Even after a short run the background, most of every scene, is found.
        let background = per_class[0].as_f64().unwrap();
        assert!(background > 0.9, "background IoU {background}\n{text}");
        let mean = seg["mean_iou"].as_f64().unwrap();
        assert!(mean > 0.0 && mean < 1.0, "mean IoU {mean}\n{text}");
        rarest.push(layer["per_class"][RAREST]["recall"].as_f64().unwrap());
    }
    // The weighted loss finds the rarest digit's ink more often, from the first iterations on (after 300,
    // softmax hardly ever predicts it).
    assert!(
        rarest[1] > rarest[0],
        "recall of class {RAREST}: softmax {} infogain {}\n{text}",
        rarest[0],
        rarest[1]
    );

    // crema predict on the test pictures: one mask each, the classes the trained net gives those scenes.
    let pictures: Vec<String> = (0..PICTURES)
        .map(|k| {
            example
                .join(format!("images/test_{k}.png"))
                .display()
                .to_string()
        })
        .collect();
    let deploy = example.join("deploy.prototxt");
    let labels = example.join("labels.txt");
    let infogain = weights("infogain");
    let mut args = vec![
        "predict",
        "--model",
        deploy.to_str().unwrap(),
        "--weights",
        &infogain,
        "--scale",
        "0.00390625",
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        "masks",
    ];
    args.extend(pictures.iter().map(String::as_str));
    let out = crema(&args, &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("test_0.png: mask masks/test_0_mask.png (32 × 32): 0 (background) "),
        "{text}"
    );
    // The legend: a colour and a name (labels.txt) for each of the 11 classes.
    let legend = std::fs::read_to_string(dir.join("masks/legend.txt")).unwrap();
    let rows: Vec<Vec<&str>> = legend
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), CLASSES, "{legend}");
    assert_eq!(rows[0], ["0", "#000000", "0", "0", "0", "background"]);
    assert_eq!(rows[9], ["9", "#c00000", "192", "0", "0", "digit", "8"]);

    // The test net's scores of the same scenes (the first batch of the test set), through crema forward.
    let net = example.join("net_infogain.prototxt");
    let out = crema(
        &[
            "forward",
            "--model",
            net.to_str().unwrap(),
            "--phase",
            "test",
            "--weights",
            &infogain,
            "--out",
            "forward",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let score = read_array(&dir.join("forward/score.npy")).unwrap();
    assert_eq!(score.shape()[1..], [CLASSES, SIDE, SIDE]);
    let ArrayData::F32(score) = score.data() else {
        panic!("scores are not float32")
    };
    let plane = SIDE * SIDE;
    for k in 0..PICTURES {
        let scores = &score[k * CLASSES * plane..(k + 1) * CLASSES * plane];
        let argmax: Vec<usize> = (0..plane)
            .map(|p| {
                (0..CLASSES)
                    .max_by(|&a, &b| scores[a * plane + p].total_cmp(&scores[b * plane + p]))
                    .unwrap()
            })
            .collect();
        let mask = mask_classes(&dir.join(format!("masks/test_{k}_mask.png")));
        // The picture's bytes times 1/256 are the HDF5 data exactly: the same scores, the same classes.
        assert_eq!(mask, argmax, "masks/test_{k}_mask.png");
    }
}
