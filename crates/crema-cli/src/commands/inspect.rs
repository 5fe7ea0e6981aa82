//! `crema inspect FILE`: what a Caffe or numpy file holds, judged by its content rather than its name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use crema::io::{self, Array};
use crema::proto::kind::{sniff, FileKind};
use crema::proto::prost_reflect::Value;
use crema::proto::{
    blob, files, text, BlobProto, CaffeMessage, NetParameter, NetStateRule, SolverState,
};

use crate::table::Table;

/// Show what a file holds: an array's shape and statistics, a net's layers, a solver's settings,
/// a caffemodel's weights or a solverstate's history.
///
/// Understands .npy, .binaryproto, net and solver .prototxt, .caffemodel and .solverstate files,
/// whatever their names.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to inspect.
    file: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let path = args.file.as_path();
    let bytes = files::read_bytes(path, crema::proto::binary::MAX_BINARY_BYTES, "file")?;
    let extension = path.extension().and_then(|e| e.to_str());
    match sniff(&bytes, extension) {
        FileKind::Npy => print_array(path, "numpy array (.npy)", &io::read_npy(path)?, None),
        FileKind::BlobProto => {
            let proto: BlobProto = crema::proto::binary::decode(&bytes, &path.display().to_string())?;
            let array = io::array_from_blobproto(&proto, &path.display().to_string())?;
            let form = if blob::is_legacy_shape(&proto) {
                "legacy num/channels/height/width form"
            } else {
                "shape form"
            };
            let diff = blob::diff_values(&proto).map(|d| format!("{} values", d.len()));
            print_array(path, &format!("BlobProto (.binaryproto), {form}"), &array, diff);
        }
        FileKind::NetText => print_net_text(path)?,
        FileKind::SolverText => print_solver(path)?,
        FileKind::NetBinary => print_caffemodel(path)?,
        FileKind::SolverState => print_solverstate(path, &bytes)?,
        FileKind::UnknownText => {
            // Parse again as the likelier kind, so the user sees the first error in it.
            let text = String::from_utf8_lossy(&bytes);
            let origin = path.display().to_string();
            let error = if text.contains("layer") {
                text::parse::<NetParameter>(&text, &origin).err()
            } else {
                text::parse::<crema::proto::SolverParameter>(&text, &origin).err()
            };
            match error {
                Some(error) => bail!("{path:?} is text but neither a net nor a solver prototxt:\n{error}"),
                None => bail!("{path:?} is text but neither a net nor a solver prototxt"),
            }
        }
        FileKind::UnknownBinary => bail!(
            "{}: not a file crema knows: not .npy, nor a binaryproto, caffemodel or solverstate that decodes cleanly",
            path.display()
        ),
    }
    Ok(())
}

fn shape_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "() (scalar)".into();
    }
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" x ")
}

fn print_array(path: &Path, what: &str, array: &Array, diff: Option<String>) {
    let summary = array.summary();
    println!("{}: {what}", path.display());
    let mut table = Table::new(["field", "value"]);
    table.row(["shape".to_string(), shape_text(array.shape())]);
    table.row(["dtype".to_string(), array.dtype().to_string()]);
    table.row(["count".to_string(), array.len().to_string()]);
    table.row(["min".to_string(), format!("{:.6}", summary.min)]);
    table.row(["max".to_string(), format!("{:.6}", summary.max)]);
    table.row(["mean".to_string(), format!("{:.6}", summary.mean)]);
    let finite = if summary.non_finite == 0 {
        "all finite".to_string()
    } else {
        format!("{} values are NaN or infinite", summary.non_finite)
    };
    table.row(["finite".to_string(), finite]);
    if let Some(diff) = diff {
        table.row(["diff".to_string(), diff]);
    }
    print!("{}", table.render(2));
}

/// A rule as `phase=TRAIN stage=deploy`, for one table cell.
fn rule_text(rule: &NetStateRule) -> String {
    let mut parts = Vec::new();
    if rule.phase.is_some() {
        parts.push(format!("phase={}", rule.phase().as_str_name()));
    }
    if let Some(level) = rule.min_level {
        parts.push(format!("min_level={level}"));
    }
    if let Some(level) = rule.max_level {
        parts.push(format!("max_level={level}"));
    }
    parts.extend(rule.stage.iter().map(|s| format!("stage={s}")));
    parts.extend(rule.not_stage.iter().map(|s| format!("not_stage={s}")));
    parts.join(" ")
}

fn rules_text(include: &[NetStateRule], exclude: &[NetStateRule]) -> String {
    let include = include.iter().map(|r| format!("include({})", rule_text(r)));
    let exclude = exclude.iter().map(|r| format!("exclude({})", rule_text(r)));
    include.chain(exclude).collect::<Vec<_>>().join(" ")
}

fn print_net_text(path: &Path) -> Result<()> {
    let (net, report) = files::read_net_text(path)?;
    println!(
        "{}: net prototxt \"{}\", {} layers",
        path.display(),
        net.name(),
        net.layer.len()
    );
    for step in &report.steps {
        println!("  upgraded on load: {step}");
    }
    for warning in &report.warnings {
        println!("  warning: {warning}");
    }
    if net.force_backward() {
        println!("  force_backward: true");
    }
    let mut table = Table::new(["#", "name", "type", "bottoms", "tops", "rules"]).right(0);
    for (index, layer) in net.layer.iter().enumerate() {
        table.row([
            index.to_string(),
            layer.name().to_owned(),
            layer.r#type().to_owned(),
            layer.bottom.join(", "),
            layer.top.join(", "),
            rules_text(&layer.include, &layer.exclude),
        ]);
    }
    print!("{}", table.render(2));
    Ok(())
}

fn print_solver(path: &Path) -> Result<()> {
    let (solver, report) = files::read_solver_text(path)?;
    println!(
        "{}: solver prototxt, type {}",
        path.display(),
        solver.r#type()
    );
    for step in &report.steps {
        println!("  upgraded on load: {step}");
    }
    let dynamic = solver.to_dynamic();
    let mut fields: Vec<_> = dynamic.fields().collect();
    fields.sort_by_key(|(field, _)| field.number());
    let mut table = Table::new(["setting", "value"]);
    for (field, value) in fields {
        let shown = match value {
            Value::Message(net) if field.name().ends_with("net_param") => {
                let net = NetParameter::from_dynamic(net);
                format!(
                    "(inline net \"{}\", {} layers)",
                    net.name(),
                    net.layer.len() + net.layers.len()
                )
            }
            Value::List(nets) if field.name().ends_with("net_param") => {
                format!("({} inline nets)", nets.len())
            }
            value => text::print_inline(value, &field.kind()),
        };
        table.row([field.name().to_owned(), shown]);
    }
    print!("{}", table.render(2));
    Ok(())
}

fn print_caffemodel(path: &Path) -> Result<()> {
    let (net, report) = files::read_net_binary(path)?;
    let origin = path.display().to_string();
    let mut total = 0usize;
    let mut table = Table::new(["#", "layer", "type", "blobs"]).right(0);
    for (index, layer) in net.layer.iter().enumerate() {
        let mut shapes = Vec::new();
        for (b, proto) in layer.blobs.iter().enumerate() {
            let (shape, _) = blob::checked(
                proto,
                &format!("{origin}: layer \"{}\" blobs[{b}]", layer.name()),
            )?;
            total += shape.iter().product::<usize>();
            shapes.push(shape_text(&shape));
        }
        table.row([
            index.to_string(),
            layer.name().to_owned(),
            layer.r#type().to_owned(),
            shapes.join(", "),
        ]);
    }
    println!(
        "{}: caffemodel (binary NetParameter) \"{}\", {} layers, {total} learnable values",
        path.display(),
        net.name(),
        net.layer.len()
    );
    for step in &report.steps {
        println!("  upgraded on load: {step}");
    }
    print!("{}", table.render(2));
    Ok(())
}

fn print_solverstate(path: &Path, bytes: &[u8]) -> Result<()> {
    let origin = path.display().to_string();
    let state: SolverState = crema::proto::binary::decode(bytes, &origin)?;
    println!("{}: solverstate", path.display());
    println!("  iteration     {}", state.iter());
    println!("  learned_net   {}", state.learned_net());
    println!("  current_step  {}", state.current_step());
    let mut table = Table::new(["history", "shape", "count"]).right(0).right(2);
    for (index, proto) in state.history.iter().enumerate() {
        let (shape, values) = blob::checked(proto, &format!("{origin}: history[{index}]"))?;
        table.row([
            index.to_string(),
            shape_text(&shape),
            values.len().to_string(),
        ]);
    }
    print!("{}", table.render(2));
    Ok(())
}
