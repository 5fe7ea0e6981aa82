//! `crema upgrade INPUT OUTPUT`: an old-format net (V0/V1 layers, input fields) rewritten in today's format.

use std::path::PathBuf;

use anyhow::{bail, Result};
use crema::proto::{files, kind};

/// Rewrite an old-format net prototxt or caffemodel in the current format.
///
/// V0 and V1 layer definitions (`layers { type: INFOGAIN_LOSS blobs_lr: 1 }`) become
/// `layer { type: "InfogainLoss" param { lr_mult: 1 } }`, net-level `input`/`input_dim`
/// fields become an Input layer. A .caffemodel output is written in binary, anything else as text.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net to upgrade: a prototxt or a .caffemodel.
    input: PathBuf,
    /// Where to write the upgraded net (.caffemodel for binary, otherwise text).
    output: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let bytes = files::read_bytes(&args.input, crema::proto::binary::MAX_BINARY_BYTES, "net")?;
    let (net, report) = if kind::looks_like_text(&bytes) {
        files::read_net_text(&args.input)?
    } else {
        files::read_net_binary(&args.input)?
    };
    if args.output.extension().is_some_and(|e| e == "caffemodel") {
        files::write_binary(&args.output, &net)?;
    } else {
        if net.layer.iter().any(|layer| !layer.blobs.is_empty()) {
            bail!(
                "{} holds learned weights; write it to a .caffemodel rather than {}",
                args.input.display(),
                args.output.display()
            );
        }
        files::write_text(&args.output, &net)?;
    }
    if report.upgraded() {
        for step in &report.steps {
            eprintln!("upgraded: {step}");
        }
    } else {
        eprintln!(
            "{} is already in the current format; written unchanged",
            args.input.display()
        );
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{} -> {} ({} layers)",
        args.input.display(),
        args.output.display(),
        net.layer.len()
    );
    Ok(())
}
