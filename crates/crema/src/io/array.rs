//! [`Array`]: an n-dimensional array of f32 or f64 in C order, the common currency of .npy and .binaryproto files.

use crate::error::{Error, Result};

/// Element type of an [`Array`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        })
    }
}

/// The values of an [`Array`], in the precision they were read or will be written in.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// An n-dimensional array in C (row-major) order.
///
/// ```
/// use crema::io::Array;
/// let mut h = Array::from_f32(vec![4, 4], vec![0.0; 16])?;
/// h.reshape(&[1, 1, 4, 4], "H")?;
/// assert_eq!(h.shape(), &[1, 1, 4, 4]);
/// assert!(h.reshape(&[3, 5], "H").is_err());
/// # Ok::<(), crema::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    shape: Vec<usize>,
    data: ArrayData,
}

/// Minimum, maximum and mean over an array's finite values, and how many values are not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub non_finite: usize,
}

fn check_count(shape: &[usize], len: usize) -> Result<()> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(len) {
        return Err(Error::Shape {
            origin: "array".into(),
            reason: format!("shape {shape:?} does not hold {len} values"),
        });
    }
    Ok(())
}

impl Array {
    /// An f32 array; `data.len()` must equal the product of `shape`.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        check_count(&shape, data.len())?;
        Ok(Array {
            shape,
            data: ArrayData::F32(data),
        })
    }

    /// An f64 array; `data.len()` must equal the product of `shape`.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Self> {
        check_count(&shape, data.len())?;
        Ok(Array {
            shape,
            data: ArrayData::F64(data),
        })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values.
    pub fn data(&self) -> &ArrayData {
        &self.data
    }

    /// The values, giving up the array.
    pub fn into_data(self) -> ArrayData {
        self.data
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            ArrayData::F32(_) => DType::F32,
            ArrayData::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ArrayData::F32(values) => values.len(),
            ArrayData::F64(values) => values.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives the array a new shape with the same element count; `origin` names it in the error.
    pub fn reshape(&mut self, shape: &[usize], origin: &str) -> Result<()> {
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if count != Some(self.len()) {
            return Err(Error::Shape {
                origin: origin.into(),
                reason: format!(
                    "cannot reshape {:?} ({} values) to {shape:?} ({} values)",
                    self.shape,
                    self.len(),
                    count.map_or("too many".to_string(), |c| c.to_string())
                ),
            });
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// The values as f32 (f64 values rounded to nearest).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(values) => values.clone(),
            ArrayData::F64(values) => values.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The values as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            ArrayData::F32(values) => values.iter().map(|&v| f64::from(v)).collect(),
            ArrayData::F64(values) => values.clone(),
        }
    }

    /// The same array with its values in `dtype` (f64 to f32 rounds to nearest).
    pub fn cast(self, dtype: DType) -> Array {
        let data = match (self.data, dtype) {
            (ArrayData::F64(values), DType::F32) => {
                ArrayData::F32(values.into_iter().map(|v| v as f32).collect())
            }
            (ArrayData::F32(values), DType::F64) => {
                ArrayData::F64(values.into_iter().map(f64::from).collect())
            }
            (data, _) => data,
        };
        Array {
            shape: self.shape,
            data,
        }
    }

    /// Minimum, maximum and mean of the finite values, and the count of NaN and infinite ones.
    /// With no finite value, min, max and mean are NaN.
    pub fn summary(&self) -> Summary {
        let (mut min, mut max, mut sum, mut finite, mut non_finite) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0, 0);
        let mut visit = |v: f64| {
            if v.is_finite() {
                min = min.min(v);
                max = max.max(v);
                sum += v;
                finite += 1;
            } else {
                non_finite += 1;
            }
        };
        match &self.data {
            ArrayData::F32(values) => values.iter().for_each(|&v| visit(f64::from(v))),
            ArrayData::F64(values) => values.iter().for_each(|&v| visit(v)),
        }
        if finite == 0 {
            return Summary {
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
                non_finite,
            };
        }
        Summary {
            min,
            max,
            mean: sum / finite as f64,
            non_finite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_must_match_shape() {
        assert!(Array::from_f32(vec![2, 2], vec![0.0; 3]).is_err());
        assert!(Array::from_f64(vec![usize::MAX, 2], vec![]).is_err());
        assert!(Array::from_f32(vec![], vec![1.0]).is_ok());
    }

    #[test]
    fn summary_skips_non_finite_values() {
        let array = Array::from_f32(vec![4], vec![1.0, f32::NAN, 3.0, f32::INFINITY]).unwrap();
        let summary = array.summary();
        assert_eq!(
            (summary.min, summary.max, summary.mean, summary.non_finite),
            (1.0, 3.0, 2.0, 2)
        );
    }
}
