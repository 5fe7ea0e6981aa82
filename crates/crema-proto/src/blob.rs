//! Caffe's rules for reading a [`BlobProto`]: which shape wins, which values count, and their agreement.
//!
//! - Shape: if any of the legacy `num`/`channels`/`height`/`width` fields is present, the blob is 4-D
//!   `(num, channels, height, width)` (absent ones read as 0) and `shape` is ignored; otherwise `shape.dim`.
//! - Values: `double_data` when it is non-empty, else `data`; their count must equal the shape's element count.
//!   The same for `double_diff` / `diff`, which may also be empty.
//!
//! Writers follow `caffe.io.array_to_blobproto`: `shape` and float `data`, never the legacy fields.

use crate::caffe::{BlobProto, BlobShape};
use crate::error::{ProtoError, Result};

/// A blob's values, in the precision the file holds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlobValues<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl BlobValues<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            BlobValues::F32(values) => values.len(),
            BlobValues::F64(values) => values.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to f64.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            BlobValues::F32(values) => values.iter().map(|&v| f64::from(v)).collect(),
            BlobValues::F64(values) => values.to_vec(),
        }
    }

    /// The values as f32 (double values rounded, as Caffe's float blobs do).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            BlobValues::F32(values) => values.to_vec(),
            BlobValues::F64(values) => values.iter().map(|&v| v as f32).collect(),
        }
    }
}

/// Whether the blob uses the legacy 4-D fields (any of them present), which then win over `shape`.
pub fn is_legacy_shape(blob: &BlobProto) -> bool {
    blob.num.is_some() || blob.channels.is_some() || blob.height.is_some() || blob.width.is_some()
}

/// The shape as Caffe reads it, unchecked: legacy 4-D when any legacy field is present, else `shape.dim`.
pub fn raw_shape(blob: &BlobProto) -> Vec<i64> {
    if is_legacy_shape(blob) {
        [blob.num(), blob.channels(), blob.height(), blob.width()]
            .into_iter()
            .map(i64::from)
            .collect()
    } else {
        blob.shape
            .as_ref()
            .map(|shape| shape.dim.clone())
            .unwrap_or_default()
    }
}

/// The shape as Caffe reads it, every dimension checked to be non-negative and the element count to fit.
pub fn checked_shape(blob: &BlobProto, origin: &str) -> Result<Vec<usize>> {
    let raw = raw_shape(blob);
    let field = |i: usize| {
        if is_legacy_shape(blob) {
            ["num", "channels", "height", "width"][i].to_owned()
        } else {
            format!("shape.dim[{i}]")
        }
    };
    let mut count: usize = 1;
    let mut shape = Vec::with_capacity(raw.len());
    for (i, &dim) in raw.iter().enumerate() {
        let dim = usize::try_from(dim).map_err(|_| {
            ProtoError::invalid(origin, field(i), format!("dimension {dim} is negative"))
        })?;
        count = count
            .checked_mul(dim)
            .filter(|&c| c <= i32::MAX as usize)
            .ok_or_else(|| {
                ProtoError::invalid(
                    origin,
                    "shape",
                    format!("{raw:?} has more than {} elements", i32::MAX),
                )
            })?;
        shape.push(dim);
    }
    Ok(shape)
}

/// The blob's values: `double_data` when non-empty, else `data`.
pub fn values(blob: &BlobProto) -> BlobValues<'_> {
    if blob.double_data.is_empty() {
        BlobValues::F32(&blob.data)
    } else {
        BlobValues::F64(&blob.double_data)
    }
}

/// The blob's gradient values, if it carries any: `double_diff` when non-empty, else `diff`.
pub fn diff_values(blob: &BlobProto) -> Option<BlobValues<'_>> {
    if !blob.double_diff.is_empty() {
        Some(BlobValues::F64(&blob.double_diff))
    } else if !blob.diff.is_empty() {
        Some(BlobValues::F32(&blob.diff))
    } else {
        None
    }
}

/// Shape and values together, checked to agree as Caffe's `Blob::FromProto` requires.
///
/// ```
/// use crema_proto::{blob, BlobProto, BlobShape};
/// let legacy = BlobProto { num: Some(1), channels: Some(1), height: Some(2), width: Some(2),
///                          shape: Some(BlobShape { dim: vec![9] }), data: vec![1.0; 4], ..Default::default() };
/// let (shape, values) = blob::checked(&legacy, "H.binaryproto")?;
/// assert_eq!(shape, vec![1, 1, 2, 2]);
/// assert_eq!(values.len(), 4);
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn checked<'a>(blob: &'a BlobProto, origin: &str) -> Result<(Vec<usize>, BlobValues<'a>)> {
    let shape = checked_shape(blob, origin)?;
    let count: usize = shape.iter().product();
    let data = values(blob);
    if data.len() != count {
        let field = match data {
            BlobValues::F32(_) => "data",
            BlobValues::F64(_) => "double_data",
        };
        return Err(ProtoError::invalid(
            origin,
            field,
            format!(
                "holds {} values but the shape {shape:?} has {count}",
                data.len()
            ),
        ));
    }
    if let Some(diff) = diff_values(blob) {
        if diff.len() != count {
            let field = match diff {
                BlobValues::F32(_) => "diff",
                BlobValues::F64(_) => "double_diff",
            };
            return Err(ProtoError::invalid(
                origin,
                field,
                format!(
                    "holds {} values but the shape {shape:?} has {count}",
                    diff.len()
                ),
            ));
        }
    }
    Ok((shape, data))
}

/// Whether a blob of `shape` can take this proto's values, by Caffe's `Blob::ShapeEquals`: a proto with legacy
/// `num`/`channels`/`height`/`width` fields matches a shape of at most four axes that, padded with leading 1s,
/// is the same (what V0/V1 caffemodels and the model zoo's pretrained weights hold: InnerProduct weights as
/// 1×1×N×K); any other proto's `shape` must be equal.
pub fn shape_equals(blob: &BlobProto, shape: &[usize]) -> bool {
    if is_legacy_shape(blob) {
        if shape.len() > 4 {
            return false;
        }
        let padded = std::iter::repeat_n(1, 4 - shape.len()).chain(shape.iter().copied());
        let legacy = [blob.num(), blob.channels(), blob.height(), blob.width()];
        return padded
            .zip(legacy)
            .all(|(dim, given)| i64::try_from(dim) == Ok(i64::from(given)));
    }
    let given = blob.shape.as_ref().map_or(&[][..], |s| &s.dim[..]);
    given.len() == shape.len()
        && given
            .iter()
            .zip(shape)
            .all(|(&g, &d)| i64::try_from(d) == Ok(g))
}

/// The shape as Caffe prints it, `1 1 4 3 (12)`, with `num`/`channels`/`height`/`width` named when the proto
/// uses the legacy fields.
pub fn shape_string(blob: &BlobProto) -> String {
    let raw = raw_shape(blob);
    let dims: Vec<String> = raw.iter().map(i64::to_string).collect();
    let count = raw.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d));
    let count = count.map_or_else(|| "too many".to_owned(), |c| c.to_string());
    let legacy = if is_legacy_shape(blob) {
        " as num/channels/height/width"
    } else {
        ""
    };
    format!("{} ({count}){legacy}", dims.join(" "))
}

fn shape_of(shape: &[usize]) -> Option<BlobShape> {
    Some(BlobShape {
        dim: shape.iter().map(|&d| d as i64).collect(),
    })
}

/// A blob of float values in the form `caffe.io.array_to_blobproto` writes: `shape` and `data`.
pub fn from_f32(shape: &[usize], data: Vec<f32>) -> BlobProto {
    BlobProto {
        shape: shape_of(shape),
        data,
        ..Default::default()
    }
}

/// A blob of double values, as Caffe's `Blob<double>::ToProto` writes: `shape` and `double_data`.
pub fn from_f64(shape: &[usize], double_data: Vec<f64>) -> BlobProto {
    BlobProto {
        shape: shape_of(shape),
        double_data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_shapes_match_padded_with_leading_ones() {
        let legacy = |n, c, h, w| BlobProto {
            num: Some(n),
            channels: Some(c),
            height: Some(h),
            width: Some(w),
            ..Default::default()
        };
        assert!(shape_equals(&legacy(1, 1, 4, 3), &[4, 3]));
        assert!(shape_equals(&legacy(1, 1, 1, 4), &[4]));
        assert!(shape_equals(&legacy(2, 3, 4, 5), &[2, 3, 4, 5]));
        assert!(shape_equals(&legacy(1, 1, 1, 1), &[]));
        assert!(!shape_equals(&legacy(1, 1, 3, 4), &[4, 3]));
        assert!(!shape_equals(&legacy(2, 1, 4, 3), &[4, 3]));
        assert!(!shape_equals(&legacy(1, 1, 4, 3), &[1, 1, 1, 4, 3]));
        let modern = BlobProto {
            shape: Some(BlobShape {
                dim: vec![1, 1, 4, 3],
            }),
            ..Default::default()
        };
        // Only the legacy fields are padded: a `shape` must be equal, as in Caffe.
        assert!(!shape_equals(&modern, &[4, 3]));
        assert!(shape_equals(&modern, &[1, 1, 4, 3]));
        assert_eq!(
            shape_string(&legacy(1, 1, 4, 3)),
            "1 1 4 3 (12) as num/channels/height/width"
        );
        assert_eq!(shape_string(&modern), "1 1 4 3 (12)");
    }

    #[test]
    fn legacy_fields_win_even_when_partial() {
        let blob = BlobProto {
            height: Some(3),
            shape: Some(BlobShape { dim: vec![3] }),
            ..Default::default()
        };
        assert_eq!(raw_shape(&blob), vec![0, 0, 3, 0]);
        assert_eq!(checked(&blob, "x").unwrap().0, vec![0, 0, 3, 0]);
    }

    #[test]
    fn double_data_wins_over_data() {
        let blob = BlobProto {
            shape: Some(BlobShape { dim: vec![2] }),
            data: vec![1.0],
            double_data: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(checked(&blob, "x").unwrap().1, BlobValues::F64(&[1.0, 2.0]));
    }

    #[test]
    fn count_mismatch_names_the_field() {
        let blob = from_f32(&[2, 3], vec![0.0; 5]);
        let err = checked(&blob, "m.binaryproto").unwrap_err().to_string();
        assert_eq!(
            err,
            "m.binaryproto: data: holds 5 values but the shape [2, 3] has 6"
        );
        let mut with_diff = from_f32(&[2], vec![0.0; 2]);
        with_diff.diff = vec![1.0];
        assert!(checked(&with_diff, "d")
            .unwrap_err()
            .to_string()
            .contains("diff"));
    }

    #[test]
    fn negative_and_huge_shapes_are_refused() {
        let negative = BlobProto {
            shape: Some(BlobShape { dim: vec![2, -1] }),
            ..Default::default()
        };
        assert!(checked(&negative, "n")
            .unwrap_err()
            .to_string()
            .contains("shape.dim[1]"));
        let huge = BlobProto {
            shape: Some(BlobShape {
                dim: vec![1 << 20, 1 << 20, 1 << 20],
            }),
            ..Default::default()
        };
        assert!(checked(&huge, "h")
            .unwrap_err()
            .to_string()
            .contains("elements"));
    }

    #[test]
    fn empty_shape_is_a_scalar() {
        assert_eq!(
            checked(&from_f32(&[], vec![4.0]), "s").unwrap().0,
            Vec::<usize>::new()
        );
    }
}
