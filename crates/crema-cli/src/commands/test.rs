//! `crema test`: score trained weights as `caffe test` does (each batch's outputs, then their means), and for
//! every Accuracy layer of the net the confusion matrix of its scores and labels with per-class recall and
//! precision, balanced accuracy and macro F1. When the scores have positions after the class axis (a
//! segmentation net's N × C × H × W), every position is a pixel and the segmentation metrics are added: per-class
//! IoU, mean IoU, pixel accuracy and frequency-weighted IoU. Given several weights files, it scores each on the
//! same batches and prints their outputs, per-class recall and balanced accuracy (and IoU) side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crema::metrics::{ClassMetrics, ConfusionMatrix};
use crema::proto::caffe::Phase;
use crema::Net;
use serde_json::{json, Value};

use super::forward::build_edited_net;
use super::posthoc::LogitAdjustArgs;
use crate::table::Table;

/// Score trained weights: run N batches forward, print each batch's outputs and their means, and for every
/// Accuracy layer the confusion matrix and per-class metrics.
///
/// Scores with positions after the class axis (N × C × H × W, segmentation) count every pixel, and add per-class
/// IoU (TP / (TP + FP + FN)), mean IoU (over the classes in the labels or the predictions, as FCN's nanmean),
/// pixel accuracy and frequency-weighted IoU.
///
/// With several --weights (say a plain and a cost-sensitive run of the same net), each is scored on the same
/// batches and the output means, per-class recall, accuracy, balanced accuracy and macro F1 of all of them are
/// printed side by side, one column per weights file (named by --label, else the file's name).
///
/// Example: crema test --model train_val.prototxt --weights snapshot_iter_2000.caffemodel --iterations 20
///
/// Example: crema test --model net.prototxt --weights a_iter_1000.caffemodel --label plain --weights
/// b_iter_1000.caffemodel --label weighted --iterations 5
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net definition (prototxt; old V0/V1 formats are upgraded).
    #[arg(long)]
    model: PathBuf,
    /// The trained weights to score (.caffemodel), copied into layers of the same name. Repeat to compare
    /// several weights files on the same batches.
    #[arg(long, required = true, value_name = "FILE")]
    weights: Vec<PathBuf>,
    /// A name for each --weights in the side-by-side table, in the same order (give none or one per
    /// --weights; default: the weights file's name without extension).
    #[arg(long = "label", value_name = "NAME")]
    labels: Vec<String>,
    /// Number of batches to run forward (each data layer reads its next batch every time).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// The phase to build the net in.
    #[arg(long, value_enum, default_value = "test")]
    phase: PhaseArg,
    /// A stage of the net state (repeatable), matched by include/exclude rules.
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// The net state's level.
    #[arg(long, default_value_t = 0)]
    level: i32,
    /// Also write every number printed (batch outputs, means, confusion matrices, metrics) to this JSON file;
    /// with several --weights, one entry per weights file under "runs".
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seed for random fillers and dropout.
    #[arg(long, default_value_t = 1701)]
    seed: u64,
    #[command(flatten)]
    posthoc: LogitAdjustArgs,
}

/// A net phase on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PhaseArg {
    Train,
    Test,
}

impl PhaseArg {
    pub fn phase(self) -> Phase {
        match self {
            PhaseArg::Train => Phase::Train,
            PhaseArg::Test => Phase::Test,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PhaseArg::Train => "TRAIN",
            PhaseArg::Test => "TEST",
        }
    }
}

/// A number as C++ streams print a float by default (`%g`, 6 significant digits), as Caffe's logs show them.
pub fn caffe_number(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if !value.is_finite() {
        return if value.is_nan() {
            "nan".into()
        } else if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let exponent = value.abs().log10().floor() as i32;
    // Rounding to 6 digits can carry into the next power of ten (999999.5 → 1e+06).
    let rounded: f64 = format!("{value:.5e}").parse().unwrap_or(value);
    let exponent = if rounded.abs() >= 10f64.powi(exponent + 1) {
        exponent + 1
    } else {
        exponent
    };
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if (-4..6).contains(&exponent) {
        let decimals = (5 - exponent).max(0) as usize;
        trim(format!("{value:.decimals$}"))
    } else {
        let mantissa = rounded / 10f64.powi(exponent);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim(format!("{mantissa:.5}")),
            exponent.abs()
        )
    }
}

/// A metric that may be undefined, fixed to 4 decimals.
fn metric(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

/// An Accuracy layer of the net, and the confusion matrix of what it read.
struct Probe {
    layer: usize,
    name: String,
    /// The prototxt's names of the scores and labels bottoms.
    scores: String,
    labels: String,
    axis: i32,
    ignore_label: Option<i32>,
    top_k: u32,
    matrix: Option<ConfusionMatrix>,
    /// The most positions per item seen after the class axis (H × W of a segmentation net's scores); above 1,
    /// the segmentation metrics are reported.
    positions: usize,
}

impl Probe {
    fn find(net: &Net) -> Vec<Probe> {
        net.layer_types()
            .enumerate()
            .filter(|(_, t)| *t == "Accuracy")
            .map(|(layer, _)| {
                let param = net.layer_param(layer);
                let accuracy = param.accuracy_param.unwrap_or_default();
                Probe {
                    layer,
                    name: param.name().to_owned(),
                    scores: param.bottom[0].clone(),
                    labels: param.bottom[1].clone(),
                    axis: accuracy.axis(),
                    ignore_label: accuracy.ignore_label,
                    top_k: accuracy.top_k(),
                    matrix: None,
                    positions: 0,
                }
            })
            .collect()
    }

    /// Counts what the layer read in the last forward.
    fn accumulate(&mut self, net: &Net, batch: usize) -> Result<()> {
        let bottoms = net.layer_bottoms(self.layer);
        let (scores, labels) = (bottoms[0], bottoms[1]);
        let axis = scores
            .canonical_axis(self.axis)
            .map_err(anyhow::Error::msg)?;
        let classes = scores.shape()[axis];
        self.positions = self.positions.max(scores.count_from(axis + 1));
        if self.matrix.is_none() {
            self.matrix = Some(
                ConfusionMatrix::new(classes)
                    .with_context(|| format!("Accuracy layer \"{}\"", self.name))?,
            );
        }
        let matrix = self.matrix.as_mut().expect("made above");
        matrix
            .accumulate(scores, labels, self.axis, self.ignore_label)
            .with_context(|| {
                format!(
                    "batch {batch}: Accuracy layer \"{}\" (scores \"{}\", labels \"{}\")",
                    self.name, self.scores, self.labels
                )
            })?;
        Ok(())
    }

    fn report(&self) -> String {
        let mut out = String::new();
        let Some(m) = &self.matrix else {
            return out;
        };
        let classes = m.classes();
        let _ = write!(
            out,
            "Accuracy layer \"{}\" (scores \"{}\", labels \"{}\"): {} positions counted",
            self.name,
            self.scores,
            self.labels,
            m.total()
        );
        if let Some(ignore) = self.ignore_label {
            let _ = write!(out, ", {} with ignore_label {ignore} skipped", m.ignored());
        }
        if m.not_a_number() > 0 {
            let _ = write!(out, ", {} with NaN scores skipped", m.not_a_number());
        }
        out.push('\n');
        if self.top_k > 1 {
            let _ = writeln!(
                out,
                "  (the layer's top_k is {}; the matrix and metrics below use the top-1 prediction)",
                self.top_k
            );
        }

        out.push_str("\n  Confusion matrix (rows: true class, columns: predicted class)\n");
        let mut header = vec!["true \\ pred".to_owned()];
        header.extend((0..classes).map(|c| c.to_string()));
        header.push("total".into());
        let mut table = Table::new(header);
        for column in 0..=classes + 1 {
            table = table.right(column);
        }
        for (truth, row) in m.rows().enumerate() {
            let mut cells = vec![truth.to_string()];
            cells.extend(row.iter().map(u64::to_string));
            cells.push(row.iter().sum::<u64>().to_string());
            table.row(cells);
        }
        let per_class = m.per_class();
        let mut cells = vec!["total".to_owned()];
        cells.extend(per_class.iter().map(|c| c.predicted.to_string()));
        cells.push(m.total().to_string());
        table.row(cells);
        out.push_str(&table.render(2));

        let segmentation = self.is_segmentation();
        out.push_str("\n  Per class\n");
        let mut header = vec![
            "class",
            "samples",
            "predicted",
            "correct",
            "recall",
            "precision",
            "F1",
        ];
        if segmentation {
            header.push("IoU");
        }
        let columns = header.len();
        let mut table = Table::new(header);
        for column in 0..columns {
            table = table.right(column);
        }
        for (class, c) in per_class.iter().enumerate() {
            let mut cells = vec![
                class.to_string(),
                c.support.to_string(),
                c.predicted.to_string(),
                c.correct.to_string(),
                metric(c.recall),
                metric(c.precision),
                metric(c.f1),
            ];
            if segmentation {
                cells.push(metric(m.iou(class)));
            }
            table.row(cells);
        }
        out.push_str(&table.render(2));
        let undefined = per_class
            .iter()
            .any(|c| c.recall.is_none() || c.precision.is_none());
        if undefined {
            out.push_str(if segmentation {
                "  n/a: undefined (recall: the class has no samples; precision: it was never predicted; F1 and \
                 IoU: both)\n"
            } else {
                "  n/a: undefined (recall: the class has no samples; precision: it was never predicted; F1: \
                 both)\n"
            });
        }

        let present = per_class.iter().filter(|c| c.recall.is_some()).count();
        let with_f1 = per_class.iter().filter(|c| c.f1.is_some()).count();
        let correct: u64 = per_class.iter().map(|c| c.correct).sum();
        let _ = writeln!(out);
        let mut table = Table::new(["metric", "value", "over"]).right(1);
        table.row([
            "accuracy".to_owned(),
            metric(m.accuracy()),
            format!("{correct} of {} positions right", m.total()),
        ]);
        table.row([
            "balanced accuracy".to_owned(),
            metric(m.balanced_accuracy()),
            format!("mean recall of the {present} of {classes} classes with samples"),
        ]);
        table.row([
            "macro F1".to_owned(),
            metric(m.macro_f1()),
            format!("mean F1 of the {with_f1} of {classes} classes present or predicted"),
        ]);
        if segmentation {
            table.row([
                "pixel accuracy".to_owned(),
                metric(m.pixel_accuracy()),
                format!(
                    "{correct} of {} pixels right ({} per image)",
                    m.total(),
                    self.positions
                ),
            ]);
            table.row([
                "mean IoU".to_owned(),
                metric(m.mean_iou()),
                format!(
                    "mean IoU of the {} of {classes} classes labelled or predicted",
                    m.iou_classes()
                ),
            ]);
            table.row([
                "frequency-weighted IoU".to_owned(),
                metric(m.frequency_weighted_iou()),
                "IoU weighted by each class's share of the labelled pixels".to_owned(),
            ]);
        }
        out.push_str(&table.render(2));
        out
    }

    /// Whether the scores had positions after the class axis (pixels): then the segmentation metrics apply.
    fn is_segmentation(&self) -> bool {
        self.positions > 1
    }

    /// The segmentation metrics as JSON; null when the scores had one position per item.
    fn segmentation_json(&self) -> Value {
        match &self.matrix {
            Some(m) if self.is_segmentation() => json!({
                "positions_per_item": self.positions,
                "pixel_accuracy": m.pixel_accuracy(),
                "mean_iou": m.mean_iou(),
                "mean_iou_classes": m.iou_classes(),
                "frequency_weighted_iou": m.frequency_weighted_iou(),
                "per_class_iou": m.per_class_iou(),
            }),
            _ => Value::Null,
        }
    }

    fn to_json(&self) -> Value {
        let Some(m) = &self.matrix else {
            return Value::Null;
        };
        let class_json = |class: usize, c: &ClassMetrics| {
            json!({
                "class": class,
                "samples": c.support,
                "predicted": c.predicted,
                "correct": c.correct,
                "recall": c.recall,
                "precision": c.precision,
                "f1": c.f1,
            })
        };
        json!({
            "layer": self.name,
            "scores": self.scores,
            "labels": self.labels,
            "top_k": self.top_k,
            "ignore_label": self.ignore_label,
            "classes": m.classes(),
            "counted": m.total(),
            "ignored": m.ignored(),
            "nan_skipped": m.not_a_number(),
            "confusion_matrix": m.rows().map(<[u64]>::to_vec).collect::<Vec<_>>(),
            "per_class": m.per_class().iter().enumerate().map(|(i, c)| class_json(i, c)).collect::<Vec<_>>(),
            "accuracy": m.accuracy(),
            "balanced_accuracy": m.balanced_accuracy(),
            "macro_f1": m.macro_f1(),
            "segmentation": self.segmentation_json(),
        })
    }
}

/// Sums of each output's values over batches.
struct OutputSums {
    names: Vec<String>,
    sums: Vec<Vec<f64>>,
    loss_weights: Vec<f32>,
}

/// Tells the user when the net's data comes from Input layers, which nothing fills here.
pub fn note_zero_inputs(net: &Net, command: &str) {
    let inputs: Vec<String> = net
        .input_names()
        .into_iter()
        .map(|name| {
            let shape = net
                .blob(name)
                .map(|b| b.shape().to_vec())
                .unwrap_or_default();
            format!("{name} {shape:?}")
        })
        .collect();
    if !inputs.is_empty() {
        eprintln!(
            "note: {} come{} from Input layers, which `crema {command}` runs zero-filled; to read data, use a \
             data layer such as HDF5Data",
            inputs.join(", "),
            if inputs.len() == 1 { "s" } else { "" }
        );
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    crema::proto::files::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// One weights file scored: the means of the net's outputs and what its Accuracy layers counted.
struct Scored {
    mean_loss: f64,
    /// Each output's name, the means of its values over the batches, and its loss weight.
    outputs: Vec<(String, Vec<f64>, f32)>,
    batches_json: Vec<Value>,
    probes: Vec<Probe>,
}

impl Scored {
    fn outputs_json(&self) -> Vec<Value> {
        self.outputs
            .iter()
            .map(|(name, means, weight)| json!({ "name": name, "mean": means, "loss_weight": weight }))
            .collect()
    }
}

/// Builds the net with `weights` and finds its Accuracy layers; `notes` prints what the user should know about
/// the net (once, for the first of several weights files).
fn open(args: &Args, weights: &Path, notes: bool) -> Result<(Net, Vec<Probe>)> {
    let net = build_edited_net(
        &args.model,
        Some(weights),
        args.phase.phase(),
        &args.stages,
        args.level,
        args.seed,
        |param| {
            // Every Accuracy layer's scores, in the definition (layers of other phases too: the adjustment goes
            // before the first reader, whatever its phase).
            let scores: Vec<String> = param
                .layer
                .iter()
                .filter(|l| l.r#type() == "Accuracy")
                .filter_map(|l| l.bottom.first().cloned())
                .collect();
            if args.posthoc.requested()?.is_some() && scores.is_empty() {
                bail!("--logit-adjust: the net has no Accuracy layer whose scores to adjust");
            }
            let adjusted = args.posthoc.apply(param, &scores)?;
            if notes && !adjusted.is_empty() {
                eprintln!(
                    "note: post-hoc logit adjustment on {}: scores minus {} · log(prior)",
                    adjusted.join(", "),
                    args.posthoc.logit_adjust.unwrap_or_default()
                );
            }
            Ok(())
        },
    )?;
    let probes = Probe::find(&net);
    if notes {
        note_zero_inputs(&net, "test");
        if probes.is_empty() {
            eprintln!(
                "note: the net has no Accuracy layer in the {} phase, so no confusion matrix: add one with the \
                 scores and labels as bottoms",
                args.phase.name()
            );
        }
    }
    Ok((net, probes))
}

/// Runs `iterations` batches forward, counting for each Accuracy layer; with `print`, each batch's outputs
/// are printed as `caffe test` prints them.
fn score(net: &mut Net, mut probes: Vec<Probe>, iterations: usize, print: bool) -> Result<Scored> {
    let mut sums: Option<OutputSums> = None;
    let mut batches_json = Vec::new();
    let mut total_loss = 0.0f64;
    for batch in 0..iterations {
        let loss = net
            .forward()
            .with_context(|| format!("forward of batch {batch}"))?;
        total_loss += f64::from(loss);
        let outputs = net.output_values();
        let sums = sums.get_or_insert_with(|| OutputSums {
            names: outputs.iter().map(|o| o.0.clone()).collect(),
            sums: outputs.iter().map(|o| vec![0.0; o.1.len()]).collect(),
            loss_weights: outputs.iter().map(|o| o.2).collect(),
        });
        let mut batch_json = Vec::new();
        for (k, (name, values, _)) in outputs.iter().enumerate() {
            if values.len() != sums.sums[k].len() {
                bail!(
                    "batch {batch}: output \"{name}\" holds {} values, the first batch's {}; crema test needs \
                     outputs of a fixed size",
                    values.len(),
                    sums.sums[k].len()
                );
            }
            for (sum, &value) in sums.sums[k].iter_mut().zip(values) {
                if print {
                    println!("Batch {batch}, {name} = {}", caffe_number(f64::from(value)));
                }
                *sum += f64::from(value);
            }
            batch_json.push(json!({ "name": name, "values": values }));
        }
        batches_json.push(json!({ "batch": batch, "outputs": batch_json }));
        for probe in &mut probes {
            probe.accumulate(net, batch)?;
        }
    }
    let n = iterations as f64;
    let sums = sums.expect("at least one batch ran");
    let outputs = sums
        .names
        .into_iter()
        .zip(sums.sums)
        .zip(sums.loss_weights)
        .map(|((name, sum), weight)| (name, sum.iter().map(|s| s / n).collect(), weight))
        .collect();
    Ok(Scored {
        mean_loss: total_loss / n,
        outputs,
        batches_json,
        probes,
    })
}

pub fn run(args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations 0: give at least 1 batch to run");
    }
    if !args.labels.is_empty() && args.labels.len() != args.weights.len() {
        bail!(
            "{} --label for {} --weights: give none or one per --weights, in the same order",
            args.labels.len(),
            args.weights.len()
        );
    }
    if args.weights.len() > 1 {
        return run_several(&args);
    }
    let weights = &args.weights[0];
    let (mut net, probes) = open(&args, weights, true)?;
    println!(
        "Running {} iterations of net \"{}\" ({} phase)",
        args.iterations,
        net.name(),
        args.phase.name()
    );
    let scored = score(&mut net, probes, args.iterations, true)?;

    println!("Loss: {}", caffe_number(scored.mean_loss));
    for (name, means, weight) in &scored.outputs {
        for &mean in means {
            let weighted = if *weight != 0.0 {
                format!(
                    " (* {} = {} loss)",
                    caffe_number(f64::from(*weight)),
                    caffe_number(f64::from(*weight) * mean)
                )
            } else {
                String::new()
            };
            println!("{name} = {}{weighted}", caffe_number(mean));
        }
    }
    for probe in &scored.probes {
        println!();
        print!("{}", probe.report());
    }

    if let Some(path) = &args.json {
        let report = json!({
            "model": args.model.display().to_string(),
            "weights": weights.display().to_string(),
            "phase": args.phase.name(),
            "stages": args.stages,
            "level": args.level,
            "iterations": args.iterations,
            "loss": scored.mean_loss,
            "outputs": scored.outputs_json(),
            "batches": scored.batches_json,
            "accuracy_layers": scored.probes.iter().map(Probe::to_json).collect::<Vec<_>>(),
        });
        write_json(path, &report).with_context(|| format!("writing --json {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// The name of each weights file's column: its --label, else the file name without extension.
fn labels(args: &Args) -> Vec<String> {
    if !args.labels.is_empty() {
        return args.labels.clone();
    }
    args.weights
        .iter()
        .map(|w| {
            w.file_stem().map_or_else(
                || w.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// `crema test` with several weights files: each scored on the same batches (a fresh net each time, so data
/// layers start from the top), then one table of output means and, for every Accuracy layer, one of per-class
/// recall and the summary metrics, a column per weights file.
fn run_several(args: &Args) -> Result<()> {
    let labels = labels(args);
    let mut runs = Vec::with_capacity(args.weights.len());
    let mut net_name = String::new();
    for (i, weights) in args.weights.iter().enumerate() {
        let (mut net, probes) = open(args, weights, i == 0)
            .with_context(|| format!("--weights {}", weights.display()))?;
        net_name = net.name().to_owned();
        let scored = score(&mut net, probes, args.iterations, false)
            .with_context(|| format!("--weights {}", weights.display()))?;
        runs.push(scored);
    }

    println!(
        "Ran {} iterations of net \"{}\" ({} phase) with each of {} weights files",
        args.iterations,
        net_name,
        args.phase.name(),
        args.weights.len()
    );
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (label, weights) in labels.iter().zip(&args.weights) {
        println!(
            "  {}  {}",
            crate::table::pad_right(label, width),
            weights.display()
        );
    }
    let two = runs.len() == 2;
    let mut table = comparison_table(&["output"], &labels, two);
    let mut left_out = Vec::new();
    for (k, (name, means, _)) in runs[0].outputs.iter().enumerate() {
        if means.len() != 1 {
            left_out.push(format!("{name} ({} values)", means.len()));
            continue;
        }
        let values: Vec<f64> = runs.iter().map(|r| r.outputs[k].1[0]).collect();
        let mut cells = vec![name.clone()];
        cells.extend(values.iter().map(|&v| caffe_number(v)));
        if two {
            cells.push(format!("{:+.4}", values[1] - values[0]));
        }
        table.row(cells);
    }
    println!(
        "\n  Means of the outputs over the {} batches",
        args.iterations
    );
    print!("{}", table.render(2));
    if !left_out.is_empty() {
        println!(
            "  not shown: {}; every value is in --json",
            left_out.join(", ")
        );
    }

    for p in 0..runs[0].probes.len() {
        let probes: Vec<&Probe> = runs.iter().map(|r| &r.probes[p]).collect();
        println!();
        print!("{}", compare(&probes, &labels));
    }

    if let Some(path) = &args.json {
        let report = json!({
            "model": args.model.display().to_string(),
            "phase": args.phase.name(),
            "stages": args.stages,
            "level": args.level,
            "iterations": args.iterations,
            "runs": runs.iter().zip(&labels).zip(&args.weights).map(|((r, label), weights)| json!({
                "label": label,
                "weights": weights.display().to_string(),
                "loss": r.mean_loss,
                "outputs": r.outputs_json(),
                "batches": r.batches_json,
                "accuracy_layers": r.probes.iter().map(Probe::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        write_json(path, &report).with_context(|| format!("writing --json {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// One Accuracy layer as several weights files scored it: per-class recall, then accuracy, balanced accuracy
/// and macro F1, a column per weights file (and their change when there are two).
fn compare(probes: &[&Probe], labels: &[String]) -> String {
    let mut out = String::new();
    let first = probes[0];
    let matrices: Vec<&ConfusionMatrix> = probes.iter().filter_map(|p| p.matrix.as_ref()).collect();
    if matrices.len() != probes.len() {
        return out;
    }
    let m0 = matrices[0];
    let _ = write!(
        out,
        "Accuracy layer \"{}\" (scores \"{}\", labels \"{}\"): {} positions counted",
        first.name,
        first.scores,
        first.labels,
        m0.total()
    );
    if let Some(ignore) = first.ignore_label {
        let _ = write!(out, ", {} with ignore_label {ignore} skipped", m0.ignored());
    }
    out.push('\n');
    if first.top_k > 1 {
        let _ = writeln!(
            out,
            "  (the layer's top_k is {}; the metrics below use the top-1 prediction)",
            first.top_k
        );
    }
    for (label, m) in labels.iter().zip(&matrices) {
        if m.not_a_number() > 0 {
            let _ = writeln!(
                out,
                "  {label}: {} positions with NaN scores skipped",
                m.not_a_number()
            );
        }
    }
    let per_class: Vec<Vec<ClassMetrics>> = matrices.iter().map(|m| m.per_class()).collect();
    let same_samples = per_class.iter().all(|pc| {
        pc.len() == per_class[0].len()
            && pc
                .iter()
                .zip(&per_class[0])
                .all(|(a, b)| a.support == b.support)
    });
    if !same_samples {
        out.push_str(
            "  note: the weights files were scored on different samples (the data differ between runs); the \
             samples column is the first one's\n",
        );
    }

    let segmentation = first.is_segmentation();
    out.push_str(if segmentation {
        "\n  Recall per class, then accuracy, balanced accuracy (the mean recall) and macro F1;\n  then IoU per \
         class, mean IoU (over the classes labelled or predicted) and frequency-weighted IoU\n"
    } else {
        "\n  Recall per class, then accuracy, balanced accuracy (the mean recall) and macro F1\n"
    });
    let two = probes.len() == 2;
    let mut table = comparison_table(&["class", "samples"], labels, two);
    let row = |table: &mut Table, name: String, samples: String, values: Vec<Option<f64>>| {
        let mut cells = vec![name, samples];
        cells.extend(values.iter().map(|&v| metric(v)));
        if two {
            cells.push(match (values[0], values[1]) {
                (Some(a), Some(b)) => format!("{:+.4}", b - a),
                _ => "n/a".into(),
            });
        }
        table.row(cells);
    };
    let classes = per_class.iter().map(Vec::len).max().unwrap_or(0);
    for class in 0..classes {
        let samples = per_class[0]
            .get(class)
            .map_or_else(String::new, |c| c.support.to_string());
        let recalls = per_class
            .iter()
            .map(|pc| pc.get(class).and_then(|c| c.recall))
            .collect();
        row(&mut table, class.to_string(), samples, recalls);
    }
    table.row(Vec::<String>::new());
    row(
        &mut table,
        "accuracy".into(),
        m0.total().to_string(),
        matrices.iter().map(|m| m.accuracy()).collect(),
    );
    row(
        &mut table,
        "balanced accuracy".into(),
        String::new(),
        matrices.iter().map(|m| m.balanced_accuracy()).collect(),
    );
    row(
        &mut table,
        "macro F1".into(),
        String::new(),
        matrices.iter().map(|m| m.macro_f1()).collect(),
    );
    let mut undefined_iou = false;
    if segmentation {
        table.row(Vec::<String>::new());
        for class in 0..classes {
            let samples = per_class[0]
                .get(class)
                .map_or_else(String::new, |c| c.support.to_string());
            let ious: Vec<Option<f64>> = matrices
                .iter()
                .map(|m| (class < m.classes()).then(|| m.iou(class)).flatten())
                .collect();
            undefined_iou |= ious.iter().any(Option::is_none);
            row(&mut table, format!("IoU {class}"), samples, ious);
        }
        row(
            &mut table,
            "mean IoU".into(),
            String::new(),
            matrices.iter().map(|m| m.mean_iou()).collect(),
        );
        row(
            &mut table,
            "frequency-weighted IoU".into(),
            String::new(),
            matrices
                .iter()
                .map(|m| m.frequency_weighted_iou())
                .collect(),
        );
    }
    out.push_str(&table.render(2));
    if per_class.iter().flatten().any(|c| c.recall.is_none()) {
        out.push_str("  n/a: undefined (the class has no samples)\n");
    }
    if undefined_iou {
        out.push_str(
            "  IoU n/a: the class was neither labelled nor predicted (left out of the mean IoU)\n",
        );
    }
    out
}

/// A table with `first` columns, one column per weights file (`labels`), and a `change` column when there are
/// two; every column but the first right-aligned.
fn comparison_table(first: &[&str], labels: &[String], two: bool) -> Table {
    let mut header: Vec<String> = first.iter().map(|c| c.to_string()).collect();
    header.extend(labels.iter().cloned());
    if two {
        header.push("change".into());
    }
    let columns = header.len();
    let mut table = Table::new(header);
    for column in 1..columns {
        table = table.right(column);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::caffe_number;

    #[test]
    fn numbers_print_as_caffe_logs_them() {
        assert_eq!(caffe_number(0.655), "0.655");
        assert_eq!(caffe_number(0.65499997), "0.655");
        assert_eq!(caffe_number(12.558561), "12.5586");
        assert_eq!(caffe_number(1.0), "1");
        assert_eq!(caffe_number(0.0213921), "0.0213921");
        assert_eq!(caffe_number(0.000745346), "0.000745346");
        assert_eq!(caffe_number(1e-5), "1e-05");
        assert_eq!(caffe_number(2.5e-7), "2.5e-07");
        assert_eq!(caffe_number(1234567.0), "1.23457e+06");
        assert_eq!(caffe_number(999999.7), "1e+06");
        assert_eq!(caffe_number(-3.25), "-3.25");
        assert_eq!(caffe_number(f64::NAN), "nan");
    }
}
