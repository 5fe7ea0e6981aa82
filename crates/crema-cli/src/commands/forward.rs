//! `crema forward`: build a net, fill its inputs from .npy files, run forward (and backward), and write every
//! blob to .npy files.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use crema::io::{self, Array};
use crema::proto::caffe::Phase;
use crema::proto::{files, NetState};
use crema::{Net, NetOptions};

/// Run a net forward (and backward) on inputs from .npy files and write every blob as .npy.
///
/// Example: crema forward --model net.prototxt --input scores=x.npy --input label=y.npy --backward --out out/
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net definition (prototxt; old V0/V1 formats are upgraded).
    #[arg(long)]
    model: PathBuf,
    /// Weights to load by layer name (.caffemodel).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The phase to build the net in.
    #[arg(long, value_enum, default_value = "test")]
    phase: PhaseArg,
    /// A stage of the net state (repeatable), matched by include/exclude rules.
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// The net state's level.
    #[arg(long, default_value_t = 0)]
    level: i32,
    /// Fill blob BLOB from an .npy file (repeatable): an Input layer's top, or a Parameter layer's top.
    #[arg(long = "input", value_name = "BLOB=FILE.npy")]
    inputs: Vec<String>,
    /// Also run backward, each loss top's gradient set to its loss_weight, and write the gradients.
    #[arg(long)]
    backward: bool,
    /// Folder to write `<blob>.npy` (and `<blob>.diff.npy` with --backward) into; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Seed for random fillers and dropout.
    #[arg(long, default_value_t = 1701)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PhaseArg {
    Train,
    Test,
}

/// A blob name as a file name: path separators become `_`.
fn file_stem(blob: &str) -> String {
    blob.replace(['/', '\\'], "_")
}

/// Builds the net the arguments describe, with its weights loaded.
pub fn build_net(
    model: &Path,
    weights: Option<&Path>,
    phase: Phase,
    stages: &[String],
    level: i32,
    seed: u64,
) -> Result<Net> {
    let (param, report) = files::read_net_text(model)?;
    for step in &report.steps {
        eprintln!("note: {}: upgraded on load: {step}", model.display());
    }
    let state = NetState {
        phase: Some(phase as i32),
        level: Some(level),
        stage: stages.to_vec(),
    };
    let search_dirs = model
        .parent()
        .map(|p| vec![p.to_path_buf()])
        .unwrap_or_default();
    let options = NetOptions {
        origin: model.display().to_string(),
        search_dirs,
        seed,
    };
    let mut net = Net::new(&param, &state, &options)?;
    for warning in net.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(weights) = weights {
        let (trained, _) = files::read_net_binary(weights)?;
        net.copy_trained_from(&trained, &weights.display().to_string())?;
    }
    Ok(net)
}

fn fill_input(net: &mut Net, name: &str, array: &Array, file: &str) -> Result<()> {
    let producer = net
        .producer_of(name)
        .ok_or_else(|| anyhow!("--input {name}={file}: the net has no blob \"{name}\""))?;
    let layer_type = net
        .layer_types()
        .nth(producer)
        .unwrap_or_default()
        .to_owned();
    let values = array.to_f32_vec();
    match layer_type.as_str() {
        "Input" => {
            let blob = net.blob_mut(name).expect("the producer's blob exists");
            blob.reshape(array.shape())?;
            blob.data_mut().copy_from_slice(&values);
        }
        "Parameter" => {
            let param = &mut net.layer_params_mut(producer)[0];
            if param.shape() != array.shape() {
                bail!(
                    "--input {name}={file}: the Parameter blob \"{name}\" has shape {:?}, the file {:?}",
                    param.shape(),
                    array.shape()
                );
            }
            param.data_mut().copy_from_slice(&values);
        }
        other => bail!("--input {name}={file}: \"{name}\" is made by a {other} layer; only Input and Parameter tops can be filled"),
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let phase = match args.phase {
        PhaseArg::Train => Phase::Train,
        PhaseArg::Test => Phase::Test,
    };
    let mut net = build_net(
        &args.model,
        args.weights.as_deref(),
        phase,
        &args.stages,
        args.level,
        args.seed,
    )?;
    for input in &args.inputs {
        let (name, file) = input
            .split_once('=')
            .ok_or_else(|| anyhow!("--input {input}: write it as BLOB=FILE.npy"))?;
        let array = io::read_array(Path::new(file))?;
        fill_input(&mut net, name, &array, file)?;
    }
    net.reshape()?;
    let loss = net.forward()?;
    if args.backward {
        net.clear_param_diffs();
        net.backward()?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let names: Vec<String> = net
        .visible_blob_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for name in &names {
        let blob = net.blob(name).expect("visible names exist");
        let data = Array::from_f32(blob.shape().to_vec(), blob.data().to_vec())?;
        io::write_npy(&args.out.join(format!("{}.npy", file_stem(name))), &data)?;
        if args.backward {
            let diff = net.blob_diff(name).expect("visible names exist").to_vec();
            let diff = Array::from_f32(blob.shape().to_vec(), diff)?;
            io::write_npy(
                &args.out.join(format!("{}.diff.npy", file_stem(name))),
                &diff,
            )?;
        }
    }
    println!("loss = {loss}");
    println!(
        "wrote {} blobs{} to {}",
        names.len(),
        if args.backward {
            " and their gradients"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}
