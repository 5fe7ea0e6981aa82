//! `crema predict`: run a trained net on image files, as NVIDIA DIGITS' "classify one image" and Caffe's
//! `classify.py` do: each image decoded (JPEG/PNG, BGR, channels first), resized whole to the input's H × W
//! (OpenCV's bilinear resize), made grey or colour by the input's channels, the mean subtracted and the data
//! layer's `scale` applied; then the top classes and their probabilities of a classifier, or a class mask per
//! image of a segmentation net.
//!
//! The image input is the net's Input layer (a deploy prototxt; the old `input:` fields are upgraded to one). A
//! train_val net whose data layers are excluded in a stage (DIGITS writes `exclude { stage: "deploy" }`, or
//! `include { stage: "train" }` and `"val"`) is built with `--stage deploy`; when that state has no Input layer,
//! one is made for the blob the data layer made, its shape from `--input-shape`, or from the data layer's
//! `crop_size` and mean. The `transform_param` of the data layer that makes the input blob in the prototxt (the
//! TEST-phase one first) gives the scale and the mean unless the command line gives them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use crema::data::pixels::{self, ColorMode, Encoding, Image};
use crema::net::filter::layer_included;
use crema::proto::caffe::{InputParameter, Phase, TransformationParameter};
use crema::proto::{files, BlobShape, LayerParameter, NetParameter, NetState};
use crema::{Net, NetOptions};

use crate::table::Table;

/// Classify images with a trained net (top-k classes and probabilities), or segment them (a PNG class mask each).
///
/// Each image is decoded (JPEG or PNG) as BGR or grey (by the input's channels), resized whole to the input's
/// H × W with OpenCV's bilinear resize, the mean subtracted (--mean-file, --mean-value, else the data layer's
/// transform_param) and multiplied by the scale (--scale, else transform_param.scale). Images go through the net
/// a batch at a time (the Input's batch size at most).
///
/// The last output decides what is printed. N × C (or N × C × 1 × 1): class scores, a softmax applied unless the
/// layer making them is a Softmax; the top K classes of each image are printed as `IMAGE: CLASS (NAME) PROB`.
/// N × C × H × W: a segmentation net; each image's class mask (argmax over C, Pascal VOC's colours) is written to
/// --out as `<image>_mask.png` with `legend.txt`, and each class's share of the pixels is printed.
///
/// Example: crema predict --model deploy.prototxt --weights snapshot_iter_1000.caffemodel --mean-file
/// mean.binaryproto --labels labels.txt cat.jpg dog.png
///
/// Example: crema predict --model train_val.prototxt --stage deploy --weights fcn.caffemodel --out masks/ *.png
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net definition: a deploy prototxt, or a train_val prototxt with --stage.
    #[arg(long)]
    model: PathBuf,
    /// The trained weights (.caffemodel), copied into layers of the same name.
    #[arg(long)]
    weights: PathBuf,
    /// A stage of the net state (repeatable), matched by include/exclude rules: `--stage deploy` for a DIGITS
    /// train_val net. The net is built in the TEST phase.
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// A mean image to subtract (.binaryproto as Caffe's compute_image_mean writes it, or .npy): C × H × W (or
    /// 1 × C × H × W) of at least the input's H × W, center-cropped to it when larger.
    #[arg(long, value_name = "FILE", conflicts_with = "mean_value")]
    mean_file: Option<PathBuf>,
    /// Mean values to subtract: one for every channel, or one per channel in the input's order (B,G,R).
    #[arg(
        long,
        value_name = "B,G,R",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    mean_value: Vec<f32>,
    /// Multiply (pixel - mean) by this (default: the data layer's transform_param.scale, else 1).
    #[arg(long)]
    scale: Option<f32>,
    /// Class names, one per line in class order (DIGITS' labels.txt); there must be one per class.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// How many of the most probable classes to print per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Folder for a segmentation net's masks (`<image>_mask.png`) and `legend.txt`; created if missing.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The input's channels, height and width: resize images to this (the Input's batch size kept); needed
    /// for a train_val net whose input shape cannot be told from its data layer.
    #[arg(long, value_name = "C,H,W", value_delimiter = ',', num_args = 1)]
    input_shape: Vec<usize>,
    /// The images: JPEG or PNG files.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    posthoc: super::posthoc::LogitAdjustArgs,
}

/// The layer types that read data from files or make it (not an image input crema predict can fill).
const DATA_LAYERS: [&str; 6] = [
    "Data",
    "ImageData",
    "HDF5Data",
    "MemoryData",
    "WindowData",
    "DummyData",
];

/// Where the images go in the net, and the data layer whose transform_param describes them.
struct InputPlan {
    /// The Input top the images fill.
    blob: String,
    /// The data layer of the prototxt that makes the same blob (its name and transform_param).
    transform: Option<(String, TransformationParameter)>,
    /// Set when crema made the Input layer (from the data layer): what it was made from.
    synthesized: Option<String>,
}

/// The state the net is built in: TEST, with the given stages.
fn net_state(stages: &[String]) -> NetState {
    NetState {
        phase: Some(Phase::Test as i32),
        level: Some(0),
        stage: stages.to_vec(),
    }
}

fn describe_state(stages: &[String]) -> String {
    if stages.is_empty() {
        "the TEST phase without stages".to_owned()
    } else {
        format!("the TEST phase with stages [{}]", stages.join(", "))
    }
}

/// The data layer in `param` (included in `state` or not) whose first top is `blob` and which has a
/// transform_param: the one in the TEST phase first (with stage "val", as DIGITS names its validation data),
/// else the first.
fn transform_source(param: &NetParameter, blob: &str) -> Option<(String, TransformationParameter)> {
    let candidates: Vec<&LayerParameter> = param
        .layer
        .iter()
        .filter(|l| l.r#type() != "Input" && l.top.first().map(String::as_str) == Some(blob))
        .filter(|l| l.transform_param.is_some())
        .collect();
    let test_states = [net_state(&[]), net_state(&["val".to_owned()])];
    let in_test = |l: &&&LayerParameter| {
        test_states
            .iter()
            .any(|s| layer_included(l, s).unwrap_or(false))
    };
    let chosen = candidates
        .iter()
        .find(in_test)
        .or_else(|| candidates.first())?;
    Some((
        chosen.name().to_owned(),
        chosen.transform_param.clone().unwrap_or_default(),
    ))
}

/// Finds the image input of the net `param` makes in `state`, adding an Input layer for the blob of an excluded
/// data layer when the state has none.
fn plan_input(param: &mut NetParameter, state: &NetState, args: &Args) -> Result<InputPlan> {
    let model = args.model.display();
    let mut included = Vec::new();
    for (i, layer) in param.layer.iter().enumerate() {
        let keep = layer_included(layer, state)
            .map_err(|e| anyhow!("{model}: layer \"{}\": {e}", layer.name()))?;
        if keep {
            included.push(i);
        }
    }
    let inputs: Vec<&str> = included
        .iter()
        .map(|&i| &param.layer[i])
        .filter(|l| l.r#type() == "Input")
        .flat_map(|l| l.top.iter().map(String::as_str))
        .collect();
    match inputs.as_slice() {
        [blob] => {
            let blob = (*blob).to_owned();
            return Ok(InputPlan {
                transform: transform_source(param, &blob),
                blob,
                synthesized: None,
            });
        }
        [] => {}
        several => bail!(
            "{model}: the net has {} Input blobs ({}); crema predict feeds images to one",
            several.len(),
            several.join(", ")
        ),
    }
    let stages = describe_state(&args.stages);
    if let Some(layer) = included
        .iter()
        .map(|&i| &param.layer[i])
        .find(|l| DATA_LAYERS.contains(&l.r#type()))
    {
        bail!(
            "{model}: in {stages} the net reads its data from the {} layer \"{}\", not from an Input layer; \
             crema predict needs an image input: use the deploy prototxt, or a train_val net whose data layers \
             are excluded in a stage (DIGITS writes `exclude {{ stage: \"deploy\" }}`) with --stage deploy",
            layer.r#type(),
            layer.name()
        );
    }
    // The blobs read that no layer of this state makes: the data layer's tops, excluded here. One is the
    // images; another (labels read by a loss) means the state is not a deploy one.
    let mut missing: Vec<(String, String)> = Vec::new();
    {
        let mut made: HashSet<&str> = HashSet::new();
        for &i in &included {
            let layer = &param.layer[i];
            for bottom in &layer.bottom {
                if !made.contains(bottom.as_str()) && !missing.iter().any(|(b, _)| b == bottom) {
                    missing.push((bottom.clone(), layer.name().to_owned()));
                }
            }
            made.extend(layer.top.iter().map(String::as_str));
        }
    }
    let blob = match missing.as_slice() {
        [] => bail!(
            "{model}: in {stages} the net has no Input layer: crema predict needs one for the images"
        ),
        [(blob, _)] => blob.clone(),
        several => bail!(
            "{model}: in {stages} the net has no Input layer, and no layer makes {}: crema predict fills one \
             image input; build the deploy stage of a train_val net (--stage deploy), where its data, loss and \
             accuracy layers are excluded",
            several
                .iter()
                .map(|(blob, layer)| format!("blob \"{blob}\" (read by layer \"{layer}\")"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let Some((layer, transform)) = transform_source(param, &blob).or_else(|| {
        param
            .layer
            .iter()
            .find(|l| l.top.first() == Some(&blob) && DATA_LAYERS.contains(&l.r#type()))
            .map(|l| (l.name().to_owned(), TransformationParameter::default()))
    }) else {
        bail!(
            "{model}: in {stages} the net reads blob \"{blob}\", which no layer makes: crema predict needs an \
             Input layer (or a data layer excluded in this state) for the images"
        );
    };
    let data_layer = param
        .layer
        .iter()
        .find(|l| l.name() == layer)
        .expect("found above");
    let batch = data_layer
        .data_param
        .as_ref()
        .map(|p| p.batch_size())
        .or_else(|| data_layer.image_data_param.as_ref().map(|p| p.batch_size()))
        .filter(|&b| b > 0)
        .unwrap_or(1);
    let [c, h, w] = match args.input_shape.as_slice() {
        [c, h, w] => [*c, *h, *w],
        _ => inferred_shape(&transform, &args.model).ok_or_else(|| {
            anyhow!(
                "{model}: in {stages} the net reads blob \"{blob}\" from the data layer \"{layer}\", which is \
                 excluded there, and its image size cannot be told from its transform_param (no crop_size or \
                 mean_file): give --input-shape C,H,W (the dataset's channels and image size, or crop size)"
            )
        })?,
    };
    let input = LayerParameter {
        name: Some(format!("{blob} (input for crema predict)")),
        r#type: Some("Input".to_owned()),
        top: vec![blob.clone()],
        input_param: Some(InputParameter {
            shape: vec![BlobShape {
                dim: [u64::from(batch), c as u64, h as u64, w as u64]
                    .iter()
                    .map(|&d| d as i64)
                    .collect(),
            }],
        }),
        ..Default::default()
    };
    param.layer.insert(0, input);
    Ok(InputPlan {
        blob,
        transform: Some((layer.clone(), transform)),
        synthesized: Some(layer),
    })
}

/// The C × H × W a data layer's images have, as far as its transform_param tells: H × W from crop_size, else
/// from the mean image; C from the mean image, three mean values, or force_gray / force_color.
fn inferred_shape(transform: &TransformationParameter, model: &Path) -> Option<[usize; 3]> {
    let mean_shape = transform.mean_file.as_deref().and_then(|file| {
        let dirs: Vec<PathBuf> = model.parent().map(Path::to_path_buf).into_iter().collect();
        let path = crema::layer::resolve_path(file, &dirs);
        read_mean_image(&path).ok().map(|(shape, _)| shape)
    });
    let crop = transform.crop_size() as usize;
    let (h, w) = if crop > 0 {
        (crop, crop)
    } else {
        mean_shape.map(|s| (s[1], s[2]))?
    };
    let c = if let Some(shape) = mean_shape {
        shape[0]
    } else if transform.force_gray() {
        1
    } else if transform.force_color() || transform.mean_value.len() == 3 {
        3
    } else {
        return None;
    };
    Some([c, h, w])
}

/// A mean image file's shape (C, H, W) and values: the first item of a 4-axis blob, fewer axes taken as the
/// last of (C, H, W), as Caffe reads mean files.
fn read_mean_image(path: &Path) -> Result<([usize; 3], Vec<f32>)> {
    let array = crema::io::read_array(path)?;
    let shape = array.shape();
    if shape.is_empty() || shape.len() > 4 {
        bail!(
            "{}: a mean image has 1 to 4 axes (C × H × W, or 1 × C × H × W), this one has shape {shape:?}",
            path.display()
        );
    }
    let mut dims = [1usize; 4];
    dims[4 - shape.len()..].copy_from_slice(shape);
    let [_, c, h, w] = dims;
    let count = c * h * w;
    let values = array.to_f32_vec();
    if count == 0 || values.len() < count {
        bail!(
            "{}: the mean image of shape {shape:?} holds no values",
            path.display()
        );
    }
    let values = values[..count].to_vec();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: the mean image holds {} at index {at}",
            path.display(),
            values[at]
        );
    }
    Ok(([c, h, w], values))
}

/// The mean subtracted from every input value.
enum Mean {
    None,
    /// One value for every channel, or one per channel.
    Values(Vec<f32>),
    /// C × H × W values, the input's size.
    Image(Vec<f32>),
}

impl Mean {
    fn at(&self, channel: usize, index: usize) -> f32 {
        match self {
            Mean::None => 0.0,
            Mean::Values(v) => v.get(channel).or(v.first()).copied().unwrap_or(0.0),
            Mean::Image(values) => values[index],
        }
    }
}

/// How an image becomes the input's values: its shape, colour, mean and scale.
struct Preprocess {
    channels: usize,
    height: usize,
    width: usize,
    mean: Mean,
    scale: f32,
}

impl Preprocess {
    fn color_mode(&self) -> ColorMode {
        if self.channels == 1 {
            ColorMode::Gray
        } else {
            ColorMode::Color
        }
    }

    /// Decodes, resizes and normalizes the image at `path` into `out` (C × H × W values).
    fn fill(&self, path: &Path, out: &mut [f32]) -> Result<()> {
        let image = pixels::read_image(path, self.color_mode())?;
        let image = image
            .resize(self.height, self.width)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let plane = self.height * self.width;
        for (index, (&value, out)) in image.values().iter().zip(out.iter_mut()).enumerate() {
            *out = (f32::from(value) - self.mean.at(index / plane, index)) * self.scale;
        }
        Ok(())
    }
}

/// The mean the arguments or the data layer's transform_param give, fitted to an input of C × H × W, a
/// description of it, and whether it came from the data layer.
fn resolve_mean(
    args: &Args,
    transform: Option<&(String, TransformationParameter)>,
    [channels, height, width]: [usize; 3],
) -> Result<(Mean, String, bool)> {
    let from_layer = transform.filter(|(_, t)| t.mean_file.is_some() || !t.mean_value.is_empty());
    let (file, values, origin): (Option<PathBuf>, Vec<f32>, String) =
        if args.mean_file.is_some() || !args.mean_value.is_empty() {
            (
                args.mean_file.clone(),
                args.mean_value.clone(),
                String::new(),
            )
        } else if let Some((layer, t)) = from_layer {
            let dirs: Vec<PathBuf> = args
                .model
                .parent()
                .map(Path::to_path_buf)
                .into_iter()
                .collect();
            let file = t
                .mean_file
                .as_deref()
                .map(|f| crema::layer::resolve_path(f, &dirs));
            (
                file,
                t.mean_value.clone(),
                format!(" (transform_param of layer \"{layer}\")"),
            )
        } else {
            return Ok((Mean::None, "no mean".to_owned(), false));
        };
    if let Some(path) = file {
        let ([c, h, w], image) = read_mean_image(&path)?;
        if c != channels || h < height || w < width {
            bail!(
                "{}: the mean image is {c} × {h} × {w}, the net's input {channels} × {height} × {width}: a mean \
                 image needs the input's channels and at least its size (a larger one is center-cropped)",
                path.display()
            );
        }
        let (h_off, w_off) = ((h - height) / 2, (w - width) / 2);
        let mut values = Vec::with_capacity(channels * height * width);
        for ch in 0..c {
            for y in 0..height {
                let from = (ch * h + h_off + y) * w + w_off;
                values.extend_from_slice(&image[from..from + width]);
            }
        }
        let cropped = if (h, w) == (height, width) {
            String::new()
        } else {
            format!(", center-cropped to {height} × {width}")
        };
        return Ok((
            Mean::Image(values),
            format!(
                "minus the mean image {} ({c} × {h} × {w}{cropped})",
                path.display()
            ),
            !origin.is_empty(),
        ));
    }
    if values.len() != 1 && values.len() != channels {
        bail!(
            "{} mean values{origin} for an input of {channels} channels: give one, or one per channel",
            values.len()
        );
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        bail!("mean value {v}{origin} is not a finite number");
    }
    let text = values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((
        Mean::Values(values),
        format!("minus the mean values [{text}]"),
        !origin.is_empty(),
    ))
}

/// Class names, one per line (trailing blank lines ignored), checked to be one per class.
fn read_labels(path: &Path, classes: usize, output: &str) -> Result<Vec<String>> {
    let text = files::read_text_file(path, "labels")?;
    let mut names: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    while names.last().is_some_and(|n| n.trim().is_empty()) {
        names.pop();
    }
    if names.len() != classes {
        bail!(
            "--labels {}: {} names for {classes} classes (the net's output \"{output}\" has {classes}): give one \
             name per line, one per class",
            path.display(),
            names.len()
        );
    }
    Ok(names)
}

/// Pascal VOC's colour map: class `c`'s bits spread over the high bits of R, G and B (bit 0 → R, 1 → G, 2 → B,
/// then the next three one bit lower, and so on): 0 black, 1 dark red, 2 dark green, 3 olive, 4 navy...
pub fn voc_color(class: usize) -> [u8; 3] {
    let mut rgb = [0u8; 3];
    let mut c = class;
    for j in 0..8 {
        for (k, channel) in rgb.iter_mut().enumerate() {
            *channel |= (((c >> k) & 1) as u8) << (7 - j);
        }
        c >>= 3;
    }
    rgb
}

/// What the net's last output is: class scores (probabilities when a Softmax made them) or a class map.
enum OutputKind {
    Classes { softmax_layer: Option<String> },
    Segmentation,
}

/// The Softmax layer whose values layer `index` hands out: itself, or the Softmax before the layers that only
/// change the shape (Flatten, Reshape, Split); None when the values are not a Softmax's.
fn softmax_before(net: &Net, mut index: usize) -> Option<String> {
    loop {
        match net.layer_types().nth(index)? {
            "Softmax" => return net.layer_names().nth(index).map(str::to_owned),
            "Flatten" | "Reshape" | "Split" => {
                let bottom = net.layer_bottom_names(index).first()?.to_string();
                let before = net.producer_of(&bottom)?;
                if before >= index {
                    return None;
                }
                index = before;
            }
            _ => return None,
        }
    }
}

/// Names an image's mask file: `<stem>_mask.png`, the image's index added when two images share a stem.
fn mask_name(image: &Path, index: usize, used: &mut HashSet<String>) -> String {
    let stem = image
        .file_stem()
        .map_or_else(|| "image".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut name = format!("{stem}_mask.png");
    if !used.insert(name.clone()) {
        name = format!("{stem}_{index}_mask.png");
        used.insert(name.clone());
    }
    name
}

/// A class as printed: its index and, with --labels, its name in parentheses.
fn class_text(class: usize, labels: Option<&[String]>) -> String {
    match labels.and_then(|l| l.get(class)) {
        Some(name) => format!("{class} ({name})"),
        None => class.to_string(),
    }
}

/// The softmax of one row of scores, in f64.
fn softmax(scores: &[f32]) -> Vec<f64> {
    let max = scores
        .iter()
        .copied()
        .map(f64::from)
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|&s| (f64::from(s) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The classes of one image's probabilities, most probable first (ties: lower class first), at most `k`.
fn top_k(probabilities: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// The class of the highest score at each of `plane` positions of `C × plane` scores (the first on ties; NaN
/// never wins).
fn argmax_map(scores: &[f32], classes: usize, plane: usize) -> Vec<usize> {
    (0..plane)
        .map(|p| {
            let mut best = (0, f32::NEG_INFINITY);
            for c in 0..classes {
                let v = scores[c * plane + p];
                if v > best.1 {
                    best = (c, v);
                }
            }
            best.0
        })
        .collect()
}

/// The legend of the masks' colours: one line per class, `class #rrggbb R G B name`.
fn legend(classes: usize, labels: Option<&[String]>) -> String {
    let mut table = Table::new(["class", "colour", "R", "G", "B", "name"])
        .right(0)
        .right(2)
        .right(3)
        .right(4);
    for class in 0..classes {
        let [r, g, b] = voc_color(class);
        table.row([
            class.to_string(),
            format!("#{r:02x}{g:02x}{b:02x}"),
            r.to_string(),
            g.to_string(),
            b.to_string(),
            labels
                .and_then(|l| l.get(class))
                .cloned()
                .unwrap_or_default(),
        ]);
    }
    format!(
        "# The colours of the classes in the masks written by crema predict (Pascal VOC's palette).\n{}",
        table.render(0)
    )
}

pub fn run(args: Args) -> Result<()> {
    if args.top_k == 0 {
        bail!("--top-k 0: give at least 1");
    }
    if !args.input_shape.is_empty() && args.input_shape.len() != 3 {
        bail!(
            "--input-shape: {} numbers; give C,H,W (channels, height, width)",
            args.input_shape.len()
        );
    }
    if args.input_shape.contains(&0) {
        bail!("--input-shape: every size must be at least 1");
    }
    if let Some(scale) = args.scale.filter(|s| !s.is_finite()) {
        bail!("--scale {scale}: not a finite number");
    }
    let model = args.model.display().to_string();
    let (mut param, report) = files::read_net_text(&args.model)?;
    for step in &report.steps {
        eprintln!("note: {model}: upgraded on load: {step}");
    }
    let state = net_state(&args.stages);
    let plan = plan_input(&mut param, &state, &args)?;
    if let Some(layer) = &plan.synthesized {
        eprintln!(
            "note: the net has no Input layer in {}; the images go into blob \"{}\", which the excluded data \
             layer \"{layer}\" makes",
            describe_state(&args.stages),
            plan.blob
        );
    }
    let options = NetOptions {
        origin: model.clone(),
        search_dirs: args
            .model
            .parent()
            .map(|p| vec![p.to_path_buf()])
            .unwrap_or_default(),
        seed: 1701,
    };
    let mut net = Net::new(&param, &state, &options)?;
    if args.posthoc.requested()?.is_some() {
        // The correction goes on the net's last output (on the logits, when a Softmax makes it).
        let output = net
            .output_names()
            .last()
            .map(|s| (*s).to_owned())
            .ok_or_else(|| anyhow!("{model}: the net has no output to adjust"))?;
        let adjusted = args.posthoc.apply(&mut param, &[output])?;
        eprintln!(
            "note: post-hoc logit adjustment on {}: scores minus {} · log(prior)",
            adjusted.join(", "),
            args.posthoc.logit_adjust.unwrap_or_default()
        );
        net = Net::new(&param, &state, &options)?;
    }
    for warning in net.warnings() {
        eprintln!("warning: {warning}");
    }

    // The input: N × C × H × W images of 1 or 3 channels.
    let blob = plan.blob.as_str();
    let shape = net
        .blob(blob)
        .map(|b| b.shape().to_vec())
        .ok_or_else(|| anyhow!("{model}: the net has no blob \"{blob}\""))?;
    let batch = shape.first().copied().unwrap_or(0).max(1);
    let [channels, height, width] = match (args.input_shape.as_slice(), shape.as_slice()) {
        ([c, h, w], _) => [*c, *h, *w],
        (_, [_, c, h, w]) => [*c, *h, *w],
        (_, [_, _]) => bail!(
            "{model}: the net's input \"{blob}\" has shape {shape:?} (N × D): not an image input (N × C × H × W); \
             crema predict feeds images (use crema forward --input {blob}=FILE.npy for other inputs)"
        ),
        _ => bail!(
            "{model}: the net's input \"{blob}\" has shape {shape:?}: not an image input (N × C × H × W){}",
            if shape.iter().product::<usize>() == 0 {
                "; give its size with --input-shape C,H,W"
            } else {
                ""
            }
        ),
    };
    if channels != 1 && channels != 3 {
        bail!(
            "{model}: the net's input \"{blob}\" has {channels} channels: images give 1 (grey) or 3 (BGR)"
        );
    }
    if height == 0 || width == 0 {
        bail!("{model}: the net's input \"{blob}\" is {height} × {width}: give its size with --input-shape C,H,W");
    }
    let reshape = |net: &mut Net, n: usize| -> Result<()> {
        net.blob_mut(blob)
            .expect("the input exists")
            .reshape(&[n, channels, height, width])?;
        net.reshape().with_context(|| {
            format!("reshaping the net for {n} images of {channels} × {height} × {width}")
        })
    };
    reshape(&mut net, batch.min(args.images.len()))?;
    let (trained, _) = files::read_net_binary(&args.weights)?;
    net.copy_trained_from(&trained, &args.weights.display().to_string())?;

    let (mean, mean_text, mean_from_layer) =
        resolve_mean(&args, plan.transform.as_ref(), [channels, height, width])?;
    let (scale, scale_text, scale_from_layer) = match (args.scale, &plan.transform) {
        (Some(s), _) => (s, format!("times {s}"), false),
        (None, Some((layer, t))) if t.scale() != 1.0 => {
            if !t.scale().is_finite() {
                bail!(
                    "{model}: layer \"{layer}\": transform_param.scale {} is not a finite number",
                    t.scale()
                );
            }
            (t.scale(), format!("times {}", t.scale()), true)
        }
        _ => (1.0, "scale 1".to_owned(), false),
    };
    let from_layer = match (&plan.transform, mean_from_layer, scale_from_layer) {
        (Some((layer, _)), true, true) => {
            format!(" (mean and scale: transform_param of layer \"{layer}\")")
        }
        (Some((layer, _)), true, false) => format!(" (mean: transform_param of layer \"{layer}\")"),
        (Some((layer, _)), false, true) => {
            format!(" (scale: transform_param of layer \"{layer}\")")
        }
        _ => String::new(),
    };
    let preprocess = Preprocess {
        channels,
        height,
        width,
        mean,
        scale,
    };

    // The output: the last one the net has.
    let output = net
        .output_names()
        .last()
        .map(|s| (*s).to_owned())
        .ok_or_else(|| anyhow!("{model}: the net has no output"))?;
    let out_shape = net.blob(&output).expect("outputs exist").shape().to_vec();
    let producer = net.producer_of(&output).expect("outputs have a producer");
    let producer_type = net
        .layer_types()
        .nth(producer)
        .unwrap_or_default()
        .to_owned();
    let producer_name = net
        .layer_names()
        .nth(producer)
        .unwrap_or_default()
        .to_owned();
    let classes = out_shape.get(1).copied().unwrap_or(0);
    let positions: usize = out_shape.iter().skip(2).product();
    let kind = match out_shape.len() {
        2.. if positions == 1 && out_shape.len() <= 4 => OutputKind::Classes {
            softmax_layer: softmax_before(&net, producer),
        },
        4 => OutputKind::Segmentation,
        _ => bail!(
            "{model}: the net's last output \"{output}\" has shape {out_shape:?}: crema predict reads N × C class \
             scores (or N × C × 1 × 1) or N × C × H × W class maps"
        ),
    };
    if classes == 0 {
        bail!("{model}: the net's last output \"{output}\" has shape {out_shape:?}: no classes");
    }
    let labels = args
        .labels
        .as_deref()
        .map(|path| read_labels(path, classes, &output))
        .transpose()?;
    let labels = labels.as_deref();
    if matches!(kind, OutputKind::Segmentation) && args.out.is_none() {
        bail!(
            "{model}: the net's last output \"{output}\" is {out_shape:?}, a class map per image (a segmentation \
             net): give --out DIR for the masks"
        );
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }

    let colour = if channels == 1 { "grey" } else { "BGR" };
    println!(
        "Input \"{blob}\": images resized to {height} × {width} ({colour}), {mean_text}, {scale_text}{from_layer}; \
         {} image{} in batches of {}",
        args.images.len(),
        if args.images.len() == 1 { "" } else { "s" },
        batch.min(args.images.len())
    );
    match &kind {
        OutputKind::Classes {
            softmax_layer: Some(layer),
        } => println!(
            "Output \"{output}\": {classes} classes, probabilities from the Softmax layer \"{layer}\""
        ),
        OutputKind::Classes {
            softmax_layer: None,
        } => println!(
            "Output \"{output}\": {classes} classes, scores of the {producer_type} layer \"{producer_name}\" (not a \
             Softmax): softmax applied"
        ),
        OutputKind::Segmentation => println!(
            "Output \"{output}\": {classes} classes per pixel (segmentation): masks written to {}",
            args.out.as_deref().expect("checked above").display()
        ),
    }

    let per_image = channels * height * width;
    let mut used_names = HashSet::new();
    let mut first = 0;
    for chunk in args.images.chunks(batch) {
        if chunk.len() != net.blob(blob).map_or(0, |b| b.shape()[0]) {
            reshape(&mut net, chunk.len())?;
        }
        {
            let input = net.blob_mut(blob).expect("the input exists").data_mut();
            for (path, values) in chunk.iter().zip(input.chunks_mut(per_image)) {
                preprocess.fill(path, values)?;
            }
        }
        net.forward().with_context(|| {
            format!("forward of images {} to {}", first + 1, first + chunk.len())
        })?;
        let result = net.blob(&output).expect("outputs exist");
        let shape = result.shape();
        if shape.first() != Some(&chunk.len()) || shape.get(1) != Some(&classes) {
            bail!(
                "the net's output \"{output}\" is {shape:?} for a batch of {} images: crema predict needs one \
                 row of {classes} classes per image",
                chunk.len()
            );
        }
        let plane = result.count_from(2);
        let data = result.data();
        for (i, path) in chunk.iter().enumerate() {
            let scores = &data[i * classes * plane..(i + 1) * classes * plane];
            let image = path.display();
            match &kind {
                OutputKind::Classes { softmax_layer } => {
                    let probabilities: Vec<f64> = if softmax_layer.is_some() {
                        scores.iter().map(|&s| f64::from(s)).collect()
                    } else {
                        softmax(scores)
                    };
                    for (class, p) in top_k(&probabilities, args.top_k) {
                        println!("{image}: {} {p:.6}", class_text(class, labels));
                    }
                }
                OutputKind::Segmentation => {
                    let (h, w) = (shape[2], shape[3]);
                    let map = argmax_map(scores, classes, plane);
                    let mut bgr = vec![0u8; 3 * plane];
                    let mut counts = vec![0usize; classes];
                    for (p, &class) in map.iter().enumerate() {
                        let [r, g, b] = voc_color(class);
                        bgr[p] = b;
                        bgr[plane + p] = g;
                        bgr[2 * plane + p] = r;
                        counts[class] += 1;
                    }
                    let mask = Image::new(3, h, w, bgr)
                        .and_then(|m| m.encode(Encoding::Png))
                        .map_err(|e| anyhow!("the mask of {image}: {e}"))?;
                    let name = mask_name(path, first + i, &mut used_names);
                    let file = args.out.as_deref().expect("checked above").join(&name);
                    files::write_atomic(&file, &mask)?;
                    let mut line = format!("{image}: mask {} ({h} × {w}):", file.display());
                    let mut present: Vec<(usize, usize)> = counts
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|&(_, n)| n > 0)
                        .collect();
                    present.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    for (k, (class, n)) in present.iter().enumerate() {
                        let share = 100.0 * *n as f64 / plane as f64;
                        let sep = if k == 0 { " " } else { ", " };
                        let _ = write!(line, "{sep}{} {share:.2}%", class_text(*class, labels));
                    }
                    println!("{line}");
                }
            }
        }
        first += chunk.len();
    }
    if let (OutputKind::Segmentation, Some(out)) = (&kind, &args.out) {
        let path = out.join("legend.txt");
        files::write_atomic(&path, legend(classes, labels).as_bytes())?;
        println!("Legend of the mask colours: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_palette() {
        assert_eq!(voc_color(0), [0, 0, 0]);
        assert_eq!(voc_color(1), [128, 0, 0]);
        assert_eq!(voc_color(2), [0, 128, 0]);
        assert_eq!(voc_color(3), [128, 128, 0]);
        assert_eq!(voc_color(4), [0, 0, 128]);
        assert_eq!(voc_color(7), [128, 128, 128]);
        assert_eq!(voc_color(8), [64, 0, 0]);
        assert_eq!(voc_color(15), [192, 128, 128]);
        assert_eq!(voc_color(20), [0, 64, 128]);
        // Distinct for many classes.
        let colours: HashSet<[u8; 3]> = (0..1000).map(voc_color).collect();
        assert_eq!(colours.len(), 1000);
    }

    #[test]
    fn softmax_and_ranking() {
        let p = softmax(&[0.0, (2.0f32).ln(), 1000.0]);
        assert!((p[2] - 1.0).abs() < 1e-12 && p[0] >= 0.0);
        let p = softmax(&[0.0, (3.0f32).ln()]);
        assert!((p[0] - 0.25).abs() < 1e-7 && (p[1] - 0.75).abs() < 1e-7);
        assert_eq!(
            top_k(&[0.2, 0.5, 0.2, 0.1], 3),
            vec![(1, 0.5), (0, 0.2), (2, 0.2)]
        );
        assert_eq!(top_k(&[0.5, 0.5], 5).len(), 2);
        // Two classes over three positions.
        assert_eq!(
            argmax_map(&[1.0, 0.0, 0.5, 0.0, 2.0, 0.5], 2, 3),
            vec![0, 1, 0]
        );
    }

    #[test]
    fn masks_are_named_by_image() {
        let mut used = HashSet::new();
        assert_eq!(
            mask_name(Path::new("a/cat.jpg"), 0, &mut used),
            "cat_mask.png"
        );
        assert_eq!(
            mask_name(Path::new("b/cat.png"), 1, &mut used),
            "cat_1_mask.png"
        );
        assert_eq!(
            mask_name(Path::new("dog.png"), 2, &mut used),
            "dog_mask.png"
        );
    }
}
