//! `crema compute-mean DB_PATH [MEAN.binaryproto]`: the mean image of an LMDB of Datums, as Caffe's
//! `compute_image_mean` tool, for `transform_param { mean_file }`; prints each channel's mean.

use std::path::PathBuf;

use anyhow::{bail, Result};
use crema::data::lmdb::mean_image;

/// Compute the mean image of an LMDB (for transform_param's mean_file), as Caffe's compute_image_mean.
///
/// Encoded records are decoded; every image must have the same size. The mean is written as Caffe writes it
/// (a BlobProto of 1 × C × H × W); each channel's mean (for transform_param's mean_value) is printed.
///
/// Example: crema compute-mean train_lmdb mean.binaryproto
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The LMDB folder of Datum records.
    db_path: PathBuf,
    /// The .binaryproto file to write the mean image to (left out: only print the channel means).
    output: Option<PathBuf>,
    /// The database kind: lmdb (crema reads no LevelDB).
    #[arg(long, default_value = "lmdb")]
    backend: String,
}

pub fn run(args: Args) -> Result<()> {
    if !args.backend.eq_ignore_ascii_case("lmdb") {
        bail!("--backend {}: crema reads LMDB only", args.backend);
    }
    let mean = mean_image(&args.db_path)?;
    eprintln!("Processed {} files.", mean.count);
    if let Some(output) = &args.output {
        crema::proto::files::write_binary(output, &mean.to_blobproto())?;
        eprintln!("Write to {}", output.display());
    }
    println!(
        "{}: mean of {} images of {} × {} × {} (channels × height × width)",
        args.db_path.display(),
        mean.count,
        mean.channels,
        mean.height,
        mean.width
    );
    println!("Number of channels: {}", mean.channels);
    for (c, value) in mean.channel_means().iter().enumerate() {
        println!("mean_value channel [{c}]: {value}");
    }
    Ok(())
}
