//! Arrays to and from Caffe's BlobProto (.binaryproto files: mean images, infogain matrices H).
//!
//! Reading follows Caffe's precedence rules (see [`crema_proto::blob`]): legacy 4-D fields over `shape`,
//! `double_data` over `data`. Writing gives exactly the bytes of pycaffe's
//! `caffe.io.array_to_blobproto(arr).SerializeToString()`: `shape` and float `data`, f64 values rounded to f32 as
//! pycaffe does. The `_f64` variants keep f64 values in `double_data`, as Caffe's `Blob<double>::ToProto` writes.

use std::path::Path;

use crema_proto::{blob, BlobProto};

use super::array::Array;
use crate::error::Result;
use crate::memory;

/// The array a BlobProto holds, checked as Caffe checks it; `origin` names it in errors.
pub fn array_from_blobproto(proto: &BlobProto, origin: &str) -> Result<Array> {
    let (shape, values) = blob::checked(proto, origin)?;
    let what = || format!("the values of {origin}");
    match values {
        blob::BlobValues::F32(v) => {
            Array::from_f32(shape, memory::collect(v.iter().copied(), v.len(), what)?)
        }
        blob::BlobValues::F64(v) => {
            Array::from_f64(shape, memory::collect(v.iter().copied(), v.len(), what)?)
        }
    }
}

/// The BlobProto pycaffe's `array_to_blobproto` makes of an array: `shape` and float `data`.
///
/// ```
/// use crema::io::{array_to_blobproto, Array};
/// let proto = array_to_blobproto(&Array::from_f64(vec![2], vec![0.5, 0.25])?);
/// assert_eq!(proto.data, vec![0.5f32, 0.25]);
/// # Ok::<(), crema::Error>(())
/// ```
pub fn array_to_blobproto(array: &Array) -> BlobProto {
    blob::from_f32(array.shape(), array.to_f32_vec())
}

/// The BlobProto of an array with its values as f64 in `double_data`.
pub fn array_to_blobproto_f64(array: &Array) -> BlobProto {
    blob::from_f64(array.shape(), array.to_f64_vec())
}

/// Reads a .binaryproto file as an array.
///
/// ```no_run
/// let h = crema::io::read_blobproto("H.binaryproto".as_ref())?;
/// println!("{:?} {}", h.shape(), h.dtype());
/// # Ok::<(), crema::Error>(())
/// ```
pub fn read_blobproto(path: &Path) -> Result<Array> {
    let proto: BlobProto = crema_proto::files::read_binary(path)?;
    array_from_blobproto(&proto, &path.display().to_string())
}

/// Writes an array to a .binaryproto file as pycaffe does (float `data`), atomically.
pub fn write_blobproto(path: &Path, array: &Array) -> Result<()> {
    Ok(crema_proto::files::write_binary(
        path,
        &array_to_blobproto(array),
    )?)
}

/// Writes an array to a .binaryproto file with f64 `double_data`, atomically.
pub fn write_blobproto_f64(path: &Path, array: &Array) -> Result<()> {
    Ok(crema_proto::files::write_binary(
        path,
        &array_to_blobproto_f64(array),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_arrays_keep_their_precision() {
        let array = Array::from_f64(vec![2], vec![0.1, 1e-300]).unwrap();
        let proto = array_to_blobproto_f64(&array);
        assert!(proto.data.is_empty());
        assert_eq!(array_from_blobproto(&proto, "x").unwrap(), array);
    }
}
