//! Arrays in and out of files: numpy .npy, Caffe .binaryproto, and the blobs of .caffemodel files.
//!
//! ```no_run
//! use crema::io;
//! let h = io::read_array("H.npy".as_ref())?;              // .npy or .binaryproto, by extension
//! io::write_array("H.binaryproto".as_ref(), &h)?;
//! # Ok::<(), crema::Error>(())
//! ```

mod array;
pub mod blobproto;
pub mod npy;

pub use array::{Array, ArrayData, DType, Summary};
pub use blobproto::{
    array_from_blobproto, array_to_blobproto, array_to_blobproto_f64, read_blobproto,
    write_blobproto, write_blobproto_f64,
};
pub use npy::{read_npy, write_npy};

use std::path::Path;

use crate::error::{Error, Result};

/// The kinds of array file crema reads and writes, told apart by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFormat {
    Npy,
    BinaryProto,
}

impl ArrayFormat {
    /// The format of `path` by its extension (`.npy`; `.binaryproto` or `.pb`), or an error naming both.
    pub fn of(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("npy") => Ok(ArrayFormat::Npy),
            Some("binaryproto") | Some("pb") => Ok(ArrayFormat::BinaryProto),
            _ => Err(Error::Shape {
                origin: path.display().to_string(),
                reason: "unknown array file extension: use .npy or .binaryproto".into(),
            }),
        }
    }
}

/// Reads an array from a .npy or .binaryproto file, chosen by extension.
pub fn read_array(path: &Path) -> Result<Array> {
    match ArrayFormat::of(path)? {
        ArrayFormat::Npy => read_npy(path),
        ArrayFormat::BinaryProto => read_blobproto(path),
    }
}

/// Writes an array to a .npy or .binaryproto file, chosen by extension (atomically).
pub fn write_array(path: &Path, array: &Array) -> Result<()> {
    match ArrayFormat::of(path)? {
        ArrayFormat::Npy => write_npy(path, array),
        ArrayFormat::BinaryProto => write_blobproto(path, array),
    }
}
