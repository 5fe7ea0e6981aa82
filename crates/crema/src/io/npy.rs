//! numpy .npy files (being written).
use std::path::Path;

use super::array::Array;
use crate::error::Result;

/// Reads a .npy file.
pub fn read_npy(_path: &Path) -> Result<Array> {
    todo!()
}

/// Writes a .npy file.
pub fn write_npy(_path: &Path, _array: &Array) -> Result<()> {
    todo!()
}
