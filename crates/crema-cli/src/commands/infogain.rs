//! `crema infogain --source SRC -o OUT`: the InfogainLoss matrix H computed once from a data source's labels.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use crema::data::labels::read_labels;
use crema::imbalance::{self, Method, Normalization};
use crema::io::{self, Array, ArrayFormat};

use crate::table::Table;

/// Compute an InfogainLoss H = diag(w) from the labels of a data source, w from class counts.
///
/// SRC is an HDF5 source list (as hdf5_data_param.source), a .h5 file, an LMDB of Datum records, an image list
/// (`path label` lines) or a .npy of labels. H is written to OUT as .binaryproto (shape 1x1xCxC, for
/// infogain_loss_param.source) or .npy (CxC), by extension. The default weights (inverse frequency, mean one)
/// keep the mean weight over the training samples at 1, so the learning rate of an unweighted net stays right.
///
/// Example: crema infogain --source train_h5.txt -o H.binaryproto
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the labels are: HDF5 source list, .h5 file, LMDB folder, image list, or .npy of labels.
    #[arg(long)]
    source: PathBuf,
    /// The label dataset of HDF5 sources.
    #[arg(long, default_value = "label")]
    label_dataset: String,
    /// Number of classes C (default: the largest label + 1).
    #[arg(long)]
    num_classes: Option<usize>,
    /// How weights follow from counts: inverse (1/n_c), median (median frequency / f_c, Eigen & Fergus),
    /// effective-number ((1-beta)/(1-beta^n_c), Cui et al. 2019).
    #[arg(long, value_enum, default_value = "inverse")]
    method: MethodArg,
    /// beta of the effective-number method, in [0, 1).
    #[arg(long, default_value_t = 0.999)]
    beta: f64,
    /// mean-one: the mean weight over the samples is 1; sum-one: the weights sum to 1 (what hand-written
    /// ComputeH layers do: it divides the learning rate by about C²); none: as the method gives them.
    #[arg(long, value_enum, default_value = "mean-one")]
    normalize: NormalizeArg,
    /// Labels equal to this value are not counted (as loss_param.ignore_label).
    #[arg(long, allow_negative_numbers = true)]
    ignore_label: Option<i64>,
    /// A CxC CSV file of off-diagonal gains H[true, predicted] added to diag(w) for a full cost-sensitive H
    /// (its diagonal must be 0; lines starting with # are comments).
    #[arg(long, value_name = "FILE.csv")]
    gains: Option<PathBuf>,
    /// The file to write: .binaryproto or .npy.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Inverse,
    Median,
    EffectiveNumber,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NormalizeArg {
    MeanOne,
    SumOne,
    None,
}

pub fn run(args: Args) -> Result<()> {
    let format = ArrayFormat::of(&args.output)?;
    let method = match args.method {
        MethodArg::Inverse => Method::InverseFrequency,
        MethodArg::Median => Method::MedianFrequency,
        MethodArg::EffectiveNumber => Method::EffectiveNumber { beta: args.beta },
    };
    let normalization = match args.normalize {
        NormalizeArg::MeanOne => Normalization::MeanOne,
        NormalizeArg::SumOne => Normalization::SumOne,
        NormalizeArg::None => Normalization::None,
    };
    let labels = read_labels(&args.source, &args.label_dataset)?;
    let source = args.source.display();
    let classes = match args.num_classes {
        Some(0) => bail!("--num-classes must be at least 1"),
        Some(c) if c > imbalance::MAX_CLASSES => bail!(
            "--num-classes {c}: at most {} classes (H holds C × C values)",
            imbalance::MAX_CLASSES
        ),
        Some(c) => c,
        None => infer_classes(&labels.values, args.ignore_label)
            .map_err(|e| anyhow!("{source}: {e}"))?,
    };
    let counts = imbalance::count_labels(labels.values.iter().copied(), classes, args.ignore_label)
        .map_err(|e| anyhow!("{source} ({}): {e}", labels.kind.describe()))?;
    let weights = imbalance::class_weights(&counts, method, normalization)
        .map_err(|e| anyhow!("--beta: {e}"))?;
    let mut h = imbalance::diagonal_matrix(&weights)?;
    if let Some(gains) = &args.gains {
        add_gains(&mut h, &read_gains(gains, classes)?);
    }

    let total: u64 = counts.iter().sum();
    println!(
        "{source}: {} labels ({}), {total} counted, {classes} classes",
        labels.values.len(),
        labels.kind.describe()
    );
    print!("{}", weights_table(&counts, &weights));
    let absent: Vec<usize> = (0..classes).filter(|&c| counts[c] == 0).collect();
    if !absent.is_empty() {
        println!(
            "warning: no samples of class {}: given the weight of the rarest class with samples",
            list_some(&absent)
        );
    }
    let mean: f64 = if total > 0 {
        counts
            .iter()
            .zip(&weights)
            .map(|(&n, w)| n as f64 * w)
            .sum::<f64>()
            / total as f64
    } else {
        f64::NAN
    };
    println!("mean weight over the samples: {mean:.4}");

    let array = match format {
        ArrayFormat::BinaryProto => Array::from_f32(vec![1, 1, classes, classes], h)?,
        ArrayFormat::Npy => Array::from_f32(vec![classes, classes], h)?,
    };
    io::write_array(&args.output, &array)?;
    println!(
        "H written to {} (shape {:?})",
        args.output.display(),
        array.shape()
    );
    Ok(())
}

/// The largest label + 1, the labels being checked to be non-negative integers (the ignore label aside).
fn infer_classes(labels: &[f64], ignore_label: Option<i64>) -> Result<usize> {
    // (label, position of its first occurrence) of the largest label, and which labels occur.
    let mut largest: Option<(i64, usize)> = None;
    let mut seen = vec![false; 0];
    for (index, &value) in labels.iter().enumerate() {
        if !value.is_finite() || value.fract() != 0.0 {
            bail!("label {value} at position {index} is not an integer");
        }
        if ignore_label.is_some_and(|l| l as f64 == value) {
            continue;
        }
        if value < 0.0 {
            bail!("label {value} at position {index} is negative (give --ignore-label if it marks samples to skip)");
        }
        if value >= imbalance::MAX_CLASSES as f64 {
            bail!(
                "label {value} at position {index} would make {} classes; at most {} (H holds C × C values)",
                value + 1.0,
                imbalance::MAX_CLASSES
            );
        }
        let label = value as i64;
        if largest.is_none_or(|(l, _)| label > l) {
            largest = Some((label, index));
        }
        let class = label as usize;
        if class >= seen.len() {
            seen.resize(class + 1, false);
        }
        seen[class] = true;
    }
    let Some((label, index)) = largest else {
        bail!("no labels to count; give --num-classes");
    };
    let classes = label as usize + 1;
    let present = seen.iter().filter(|&&s| s).count();
    if classes > 2 * present + SPARE_CLASSES {
        bail!(
            "label {label} at position {index} would make {classes} classes, but only {present} distinct labels \
             occur: labels are class indices 0, 1, ..., C-1. If the net really has {classes} classes, give \
             --num-classes {classes}"
        );
    }
    Ok(classes)
}

/// Classes without samples that `crema infogain` accepts, past as many as there are classes with samples,
/// before it takes the largest label for a mistake and asks for `--num-classes`.
const SPARE_CLASSES: usize = 16;

/// Rows of the weights table shown at each end when there are many classes.
const TABLE_ENDS: usize = 10;

/// Class numbers in a warning: the first few, then how many more.
fn list_some(classes: &[usize]) -> String {
    let shown: Vec<String> = classes
        .iter()
        .take(TABLE_ENDS)
        .map(usize::to_string)
        .collect();
    match classes.len().checked_sub(TABLE_ENDS) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// Class, count, share of the samples and weight, one row per class.
fn weights_table(counts: &[u64], weights: &[f64]) -> String {
    let total: u64 = counts.iter().sum();
    let mut table = Table::new(["class", "count", "share", "weight"])
        .right(0)
        .right(1)
        .right(2)
        .right(3);
    let classes = counts.len();
    for (class, (&n, w)) in counts.iter().zip(weights).enumerate() {
        if classes > 2 * TABLE_ENDS + 1 && (TABLE_ENDS..classes - TABLE_ENDS).contains(&class) {
            if class == TABLE_ENDS {
                let hidden = classes - 2 * TABLE_ENDS;
                table.row(["…".to_owned(), format!("({hidden} classes not shown)")]);
            }
            continue;
        }
        let share = if total > 0 {
            100.0 * n as f64 / total as f64
        } else {
            0.0
        };
        table.row([
            class.to_string(),
            n.to_string(),
            format!("{share:.2}%"),
            format!("{w:.6}"),
        ]);
    }
    table.render(2)
}

/// A C×C matrix of gains from a CSV file (commas or spaces between values; `#` starts a comment line).
fn read_gains(path: &Path, classes: usize) -> Result<Vec<f64>> {
    let text = crema::proto::files::read_text_file(path, "CSV file").context("--gains")?;
    let mut gains = Vec::with_capacity(classes * classes);
    let mut rows = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("--gains {}: line {}", path.display(), number + 1);
        let values: Vec<f64> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|g| g.is_finite())
                    .with_context(|| format!("{}: {v:?} is not a finite number", at()))
            })
            .collect::<Result<_>>()?;
        if values.len() != classes {
            bail!(
                "{}: {} values, expected {classes} (one per class)",
                at(),
                values.len()
            );
        }
        if rows == classes {
            bail!("{}: more than {classes} rows", at());
        }
        if values[rows] != 0.0 {
            bail!(
                "{}: the diagonal gain H[{rows}, {rows}] is {}; leave the diagonal at 0, it comes from --method",
                at(),
                values[rows]
            );
        }
        gains.extend(values);
        rows += 1;
    }
    if rows != classes {
        bail!(
            "--gains {}: {rows} rows, expected {classes}",
            path.display()
        );
    }
    let nonzero = gains.iter().filter(|g| **g != 0.0).count();
    println!("{nonzero} off-diagonal gains from {}", path.display());
    Ok(gains)
}

/// `h += gains` (the gains' diagonal is zero).
fn add_gains(h: &mut [f32], gains: &[f64]) {
    for (value, gain) in h.iter_mut().zip(gains) {
        *value += *gain as f32;
    }
}
