//! `crema test`: score trained weights as `caffe test` does (each batch's outputs, then their means), and for
//! every Accuracy layer of the net the confusion matrix of its scores and labels with per-class recall and
//! precision, balanced accuracy and macro F1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crema::metrics::{ClassMetrics, ConfusionMatrix};
use crema::proto::caffe::Phase;
use crema::Net;
use serde_json::{json, Value};

use super::forward::build_net;
use crate::table::Table;

/// Score trained weights: run N batches forward, print each batch's outputs and their means, and for every
/// Accuracy layer the confusion matrix and per-class metrics.
///
/// Example: crema test --model train_val.prototxt --weights snapshot_iter_2000.caffemodel --iterations 20
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net definition (prototxt; old V0/V1 formats are upgraded).
    #[arg(long)]
    model: PathBuf,
    /// The trained weights to score (.caffemodel), copied into layers of the same name.
    #[arg(long)]
    weights: PathBuf,
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
    /// Also write every number printed (batch outputs, means, confusion matrices, metrics) to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seed for random fillers and dropout.
    #[arg(long, default_value_t = 1701)]
    seed: u64,
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
                }
            })
            .collect()
    }

    /// Counts what the layer read in the last forward.
    fn accumulate(&mut self, net: &Net, batch: usize) -> Result<()> {
        let bottoms = net.layer_bottoms(self.layer);
        let (scores, labels) = (bottoms[0], bottoms[1]);
        let classes = scores
            .canonical_axis(self.axis)
            .map(|axis| scores.shape()[axis])
            .map_err(anyhow::Error::msg)?;
        let matrix = self
            .matrix
            .get_or_insert_with(|| ConfusionMatrix::new(classes));
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

        out.push_str("\n  Per class\n");
        let mut table = Table::new([
            "class",
            "samples",
            "predicted",
            "correct",
            "recall",
            "precision",
            "F1",
        ]);
        for column in 0..7 {
            table = table.right(column);
        }
        for (class, c) in per_class.iter().enumerate() {
            table.row([
                class.to_string(),
                c.support.to_string(),
                c.predicted.to_string(),
                c.correct.to_string(),
                metric(c.recall),
                metric(c.precision),
                metric(c.f1),
            ]);
        }
        out.push_str(&table.render(2));
        let undefined = per_class
            .iter()
            .any(|c| c.recall.is_none() || c.precision.is_none());
        if undefined {
            out.push_str(
                "  n/a: undefined (recall: the class has no samples; precision: it was never predicted; F1: \
                 both)\n",
            );
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
        out.push_str(&table.render(2));
        out
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

pub fn run(args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations 0: give at least 1 batch to run");
    }
    let mut net = build_net(
        &args.model,
        Some(&args.weights),
        args.phase.phase(),
        &args.stages,
        args.level,
        args.seed,
    )?;
    note_zero_inputs(&net, "test");
    let mut probes = Probe::find(&net);
    if probes.is_empty() {
        eprintln!(
            "note: the net has no Accuracy layer in the {} phase, so no confusion matrix: add one with the scores \
             and labels as bottoms",
            args.phase.name()
        );
    }
    println!(
        "Running {} iterations of net \"{}\" ({} phase)",
        args.iterations,
        net.name(),
        args.phase.name()
    );

    let mut sums: Option<OutputSums> = None;
    let mut batches_json = Vec::new();
    let mut total_loss = 0.0f64;
    for batch in 0..args.iterations {
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
                println!("Batch {batch}, {name} = {}", caffe_number(f64::from(value)));
                *sum += f64::from(value);
            }
            batch_json.push(json!({ "name": name, "values": values }));
        }
        batches_json.push(json!({ "batch": batch, "outputs": batch_json }));
        for probe in &mut probes {
            probe.accumulate(&net, batch)?;
        }
    }

    let n = args.iterations as f64;
    let mean_loss = total_loss / n;
    println!("Loss: {}", caffe_number(mean_loss));
    let sums = sums.expect("at least one batch ran");
    let mut outputs_json = Vec::new();
    for ((name, sum), &weight) in sums.names.iter().zip(&sums.sums).zip(&sums.loss_weights) {
        let means: Vec<f64> = sum.iter().map(|s| s / n).collect();
        for &mean in &means {
            let weighted = if weight != 0.0 {
                format!(
                    " (* {} = {} loss)",
                    caffe_number(f64::from(weight)),
                    caffe_number(f64::from(weight) * mean)
                )
            } else {
                String::new()
            };
            println!("{name} = {}{weighted}", caffe_number(mean));
        }
        outputs_json.push(json!({ "name": name, "mean": means, "loss_weight": weight }));
    }
    for probe in &probes {
        println!();
        print!("{}", probe.report());
    }

    if let Some(path) = &args.json {
        let report = json!({
            "model": args.model.display().to_string(),
            "weights": args.weights.display().to_string(),
            "phase": args.phase.name(),
            "stages": args.stages,
            "level": args.level,
            "iterations": args.iterations,
            "loss": mean_loss,
            "outputs": outputs_json,
            "batches": batches_json,
            "accuracy_layers": probes.iter().map(Probe::to_json).collect::<Vec<_>>(),
        });
        write_json(path, &report).with_context(|| format!("writing --json {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
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
