//! `crema convert INPUT OUTPUT [--shape D0,D1,...] [--double]`: arrays between .npy and .binaryproto.

use std::path::PathBuf;

use anyhow::{Context, Result};
use crema::io::{self, ArrayFormat, DType};

/// Convert an array between .npy and .binaryproto (chosen by extension), optionally reshaping it.
///
/// A .binaryproto is written as pycaffe's caffe.io.array_to_blobproto writes it: float32 values
/// under `shape`. Example: crema convert H.npy H.binaryproto --shape 1,1,4,4
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The array to read: a .npy or .binaryproto file.
    input: PathBuf,
    /// The file to write: .npy or .binaryproto.
    output: PathBuf,
    /// New shape with the same element count, e.g. 1,1,L,L for an L×L infogain matrix.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    shape: Option<Vec<usize>>,
    /// Write float64 values (`double_data` in a .binaryproto) instead of float32.
    #[arg(long)]
    double: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut array = io::read_array(&args.input)?;
    if let Some(shape) = &args.shape {
        array
            .reshape(shape, &args.input.display().to_string())
            .context("--shape must keep the number of elements")?;
    }
    let format = ArrayFormat::of(&args.output)?;
    let dtype = match (format, args.double) {
        (_, true) => DType::F64,
        (ArrayFormat::BinaryProto, false) => DType::F32,
        (ArrayFormat::Npy, false) => array.dtype(),
    };
    if array.dtype() == DType::F64 && dtype == DType::F32 {
        eprintln!(
            "note: {} holds float64 values; they are written as float32, as pycaffe does (--double keeps float64)",
            args.input.display()
        );
    }
    let array = array.cast(dtype);
    match (format, dtype) {
        (ArrayFormat::BinaryProto, DType::F64) => io::write_blobproto_f64(&args.output, &array)?,
        (ArrayFormat::BinaryProto, DType::F32) => io::write_blobproto(&args.output, &array)?,
        (ArrayFormat::Npy, _) => io::write_npy(&args.output, &array)?,
    }
    println!(
        "{} -> {}: shape {:?}, {} values, {dtype}",
        args.input.display(),
        args.output.display(),
        array.shape(),
        array.len()
    );
    Ok(())
}
