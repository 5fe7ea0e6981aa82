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
    /// With --backward: the gradient of output blob BLOB (repeatable), as pycaffe's `net.backward(**{BLOB: G})`;
    /// the file holds the blob's shape.
    #[arg(long = "top-diff", value_name = "BLOB=FILE.npy", requires = "backward")]
    top_diffs: Vec<String>,
    /// Also write every layer's learnable blobs as `<layer>.<i>.npy` (i as in `net.params[layer][i]`), and with
    /// --backward their gradients as `<layer>.<i>.diff.npy`; a blob shared by name is written under every layer
    /// that shares it, with the whole summed gradient.
    #[arg(long)]
    params: bool,
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
    build_edited_net(model, weights, phase, stages, level, seed, |_| Ok(()))
}

/// [`build_net`] with the definition changed by `edit` first (post-hoc logit adjustment inserts a layer).
pub fn build_edited_net(
    model: &Path,
    weights: Option<&Path>,
    phase: Phase,
    stages: &[String],
    level: i32,
    seed: u64,
    edit: impl FnOnce(&mut crema::proto::NetParameter) -> Result<()>,
) -> Result<Net> {
    let (mut param, report) = files::read_net_text(model)?;
    edit(&mut param)?;
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

/// Writes every layer's learnable blobs (and gradients) as `<layer>.<i>.npy` (`.diff.npy`), a shared blob's
/// values and summed gradient taken from the layer that owns it.
fn write_params(net: &Net, out: &Path, gradients: bool) -> Result<()> {
    let names: Vec<&str> = net.layer_names().collect();
    for info in net.params() {
        let (owner_layer, owner_index) = info.owner.unwrap_or((info.layer, info.index));
        let blob = &net.layer_params(owner_layer)[owner_index];
        let stem = format!("{}.{}", file_stem(names[info.layer]), info.index);
        let shape = blob.shape().to_vec();
        io::write_npy(
            &out.join(format!("{stem}.npy")),
            &Array::from_f32(shape.clone(), blob.data().to_vec())?,
        )?;
        if gradients {
            io::write_npy(
                &out.join(format!("{stem}.diff.npy")),
                &Array::from_f32(shape, blob.diff().to_vec())?,
            )?;
        }
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
    let mut top_diffs = Vec::new();
    for given in &args.top_diffs {
        let (name, file) = given
            .split_once('=')
            .ok_or_else(|| anyhow!("--top-diff {given}: write it as BLOB=FILE.npy"))?;
        let array = io::read_array(Path::new(file))?;
        let blob = net
            .blob(name)
            .ok_or_else(|| anyhow!("--top-diff {given}: the net has no blob \"{name}\""))?;
        if array.shape() != blob.shape() {
            bail!(
                "--top-diff {given}: the file holds shape {:?}, the blob \"{name}\" has {:?}",
                array.shape(),
                blob.shape()
            );
        }
        top_diffs.push((name.to_owned(), array.to_f32_vec()));
    }
    let loss = net.forward()?;
    if args.backward {
        net.clear_param_diffs();
        let given: Vec<(&str, &[f32])> = top_diffs
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
            .collect();
        net.backward_from(&given)?;
        if !(0..net.layer_names().count()).any(|i| net.layer_needs_backward(i)) {
            eprintln!(
                "note: no layer runs backward: the net has no loss and no `force_backward: true`, so every \
                 gradient is 0"
            );
        }
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
    if args.params {
        write_params(&net, &args.out, args.backward)?;
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
