//! [`Blob`]: an n-dimensional f32 array with its gradient, and Caffe's axis rules.
//!
//! A blob's `data` holds values flowing forward, its `diff` the gradient of the loss flowing back. Axes may be
//! given negative, counting from the end (`-1` is the last), as everywhere in Caffe.

use crema_proto::{blob as proto_blob, BlobProto};

use crate::error::{Error, Result};

/// The most elements one blob may hold (Caffe's limit, INT_MAX).
pub const MAX_BLOB_COUNT: usize = i32::MAX as usize;

/// An n-dimensional f32 array (`data`) with its gradient (`diff`), both in C order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blob {
    shape: Vec<usize>,
    data: Vec<f32>,
    diff: Vec<f32>,
}

/// The number of elements of `shape`, or an error when it passes [`MAX_BLOB_COUNT`].
pub fn shape_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&count| count <= MAX_BLOB_COUNT)
        .ok_or_else(|| Error::Shape {
            origin: "blob".into(),
            reason: format!("shape {shape:?} has more than {MAX_BLOB_COUNT} elements"),
        })
}

impl Blob {
    /// A zero-filled blob of `shape`.
    pub fn new(shape: &[usize]) -> Result<Blob> {
        let mut blob = Blob::default();
        blob.reshape(shape)?;
        Ok(blob)
    }

    /// A blob holding `data` under `shape`; the counts must agree.
    pub fn from_data(shape: &[usize], data: Vec<f32>) -> Result<Blob> {
        if shape_count(shape)? != data.len() {
            return Err(Error::Shape {
                origin: "blob".into(),
                reason: format!("shape {shape:?} does not hold {} values", data.len()),
            });
        }
        let diff = crate::memory::zeroed(data.len(), || {
            format!("the gradient of a blob of shape {shape:?}")
        })?;
        Ok(Blob {
            shape: shape.to_vec(),
            data,
            diff,
        })
    }

    /// Gives the blob a new shape. Storage is kept when the count does not grow; new elements are zero. When
    /// the memory for the new shape cannot be had, the error says so and the blob keeps its old shape.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        let count = shape_count(shape)?;
        let old_count = self.data.len();
        crate::memory::resize(&mut self.data, count, 0.0, || {
            format!("a blob of shape {shape:?}")
        })?;
        if let Err(error) = crate::memory::resize(&mut self.diff, count, 0.0, || {
            format!("the gradient of a blob of shape {shape:?}")
        }) {
            self.data.truncate(old_count);
            return Err(error.into());
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        Ok(())
    }

    /// Takes the shape of `other`.
    pub fn reshape_like(&mut self, other: &Blob) -> Result<()> {
        self.reshape(&other.shape)
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn num_axes(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn count(&self) -> usize {
        self.data.len()
    }

    /// Product of the dimensions of axes `start..end`.
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        self.shape[start.min(self.shape.len())..end.min(self.shape.len())]
            .iter()
            .product()
    }

    /// Product of the dimensions from axis `start` on.
    pub fn count_from(&self, start: usize) -> usize {
        self.count_range(start, self.shape.len())
    }

    /// The axis index for `axis`, which may count from the end; an error message when out of range.
    pub fn canonical_axis(&self, axis: i32) -> std::result::Result<usize, String> {
        canonical_axis(axis, self.num_axes())
    }

    /// Dimension of `axis` (negative counts from the end).
    pub fn dim(&self, axis: i32) -> std::result::Result<usize, String> {
        Ok(self.shape[self.canonical_axis(axis)?])
    }

    /// Caffe's legacy 4-D view: the dimension at `index` (0..4), 1 where the blob has fewer axes.
    pub fn legacy_dim(&self, index: usize) -> usize {
        self.shape.get(index).copied().unwrap_or(1)
    }

    /// The values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, for writing.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The gradient.
    pub fn diff(&self) -> &[f32] {
        &self.diff
    }

    /// The gradient, for writing.
    pub fn diff_mut(&mut self) -> &mut [f32] {
        &mut self.diff
    }

    /// The values to read and the gradient to write, at once.
    pub fn data_and_diff_mut(&mut self) -> (&[f32], &mut [f32]) {
        (&self.data, &mut self.diff)
    }

    /// The values to write and the gradient to read, at once.
    pub fn data_mut_and_diff(&mut self) -> (&mut [f32], &[f32]) {
        (&mut self.data, &self.diff)
    }

    /// The values and the gradient, both for writing.
    pub fn data_and_diff_both_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (&mut self.data, &mut self.diff)
    }

    /// Caffe's `Blob::Update`: `data −= diff`.
    pub fn update(&mut self) {
        let (data, diff) = self.data_mut_and_diff();
        crate::math::axpy(-1.0, diff, data);
    }

    /// Exchanges the gradient's storage with `buffer`, which must hold `count()` values: a layer that computed a
    /// bottom's gradient ahead of time hands it over without copying.
    pub fn swap_diff(&mut self, buffer: &mut Vec<f32>) {
        assert_eq!(
            buffer.len(),
            self.diff.len(),
            "swap_diff needs a buffer of the blob's count"
        );
        std::mem::swap(&mut self.diff, buffer);
    }

    /// Sets every gradient value to zero.
    pub fn zero_diff(&mut self) {
        self.diff.fill(0.0);
    }

    /// Copies the values of `other`, which must have the same count.
    pub fn copy_data_from(&mut self, other: &Blob) {
        self.data.copy_from_slice(&other.data);
    }

    /// The shape as Caffe prints it: `2 3 4 (24)`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        format!("{} ({})", dims.join(" "), self.count())
    }

    /// The blob as Caffe's `Blob<float>::ToProto` writes it: `shape` and `data`, and `diff` when asked.
    pub fn to_proto(&self, write_diff: bool) -> BlobProto {
        let mut proto = proto_blob::from_f32(&self.shape, self.data.clone());
        if write_diff {
            proto.diff = self.diff.clone();
        }
        proto
    }

    /// Copies a BlobProto's values into this blob, whose shape stays: the proto's shape must match by Caffe's
    /// `Blob::ShapeEquals` (legacy 4-D protos match shapes padded with leading 1s; see
    /// [`crema_proto::blob::shape_equals`]). On a mismatch the error's reason gives both shapes, the proto's
    /// as `in {source}` (`the weights file`).
    pub fn copy_data_from_proto(
        &mut self,
        proto: &BlobProto,
        origin: &str,
        source: &str,
    ) -> Result<()> {
        let (_, values) = proto_blob::checked(proto, origin)?;
        if !proto_blob::shape_equals(proto, &self.shape) {
            return Err(Error::Shape {
                origin: origin.to_owned(),
                reason: format!(
                    "shape {} in {source}, {} in the net",
                    proto_blob::shape_string(proto),
                    self.shape_string()
                ),
            });
        }
        copy_values(&mut self.data, values);
        Ok(())
    }

    /// A blob from a BlobProto, by Caffe's rules (legacy 4-D shape first; double values rounded to f32).
    pub fn from_proto(proto: &BlobProto, origin: &str) -> Result<Blob> {
        let (shape, _) = proto_blob::checked(proto, origin)?;
        let mut blob = Blob::new(&shape)?;
        blob.copy_data_from_proto(proto, origin, "the proto")?;
        if let Some(diff) = proto_blob::diff_values(proto) {
            copy_values(&mut blob.diff, diff);
        }
        Ok(blob)
    }
}

/// Copies a proto's values (as many as `out` holds) into `out`, double values rounded to f32.
fn copy_values(out: &mut [f32], values: proto_blob::BlobValues<'_>) {
    match values {
        proto_blob::BlobValues::F32(v) => out.copy_from_slice(v),
        proto_blob::BlobValues::F64(v) => {
            for (out, &v) in out.iter_mut().zip(v) {
                *out = v as f32;
            }
        }
    }
}

/// The axis index for `axis` among `num_axes`, counting from the end when negative.
pub fn canonical_axis(axis: i32, num_axes: usize) -> std::result::Result<usize, String> {
    let n = num_axes as i64;
    let a = i64::from(axis);
    if a < -n || a >= n {
        return Err(format!(
            "axis {axis} is out of range for a blob with {num_axes} axes (valid: {} to {})",
            -n,
            n - 1
        ));
    }
    Ok(if a < 0 { (a + n) as usize } else { a as usize })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_count_from_the_end() {
        let blob = Blob::new(&[2, 3, 4, 5]).unwrap();
        assert_eq!(blob.canonical_axis(-1), Ok(3));
        assert_eq!(blob.canonical_axis(1), Ok(1));
        assert!(blob.canonical_axis(4).is_err());
        assert!(blob.canonical_axis(-5).is_err());
        assert_eq!(blob.count_range(1, 3), 12);
        assert_eq!(blob.count_from(2), 20);
        assert_eq!(blob.shape_string(), "2 3 4 5 (120)");
    }

    #[test]
    fn legacy_view_pads_with_ones() {
        let blob = Blob::new(&[7, 3]).unwrap();
        assert_eq!(
            (0..4).map(|i| blob.legacy_dim(i)).collect::<Vec<_>>(),
            [7, 3, 1, 1]
        );
    }

    #[test]
    fn huge_shapes_are_refused_before_allocating() {
        assert!(Blob::new(&[1 << 20, 1 << 20]).is_err());
        let mut blob = Blob::new(&[2]).unwrap();
        assert!(blob.reshape(&[usize::MAX, 2]).is_err());
    }

    #[test]
    fn proto_round_trip_keeps_shape_data_and_diff() {
        let mut blob = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        blob.diff_mut()[3] = 0.5;
        let back = Blob::from_proto(&blob.to_proto(true), "t").unwrap();
        assert_eq!(back, blob);
    }
}
