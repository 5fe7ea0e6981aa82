//! Reshape: `y = x` under a new shape with the same count.
//!
//! Parameters: `reshape_param { shape axis (0) num_axes (-1) }`. The bottom's axes `axis .. axis + num_axes`
//! (`num_axes: -1`: to the end; a negative `axis` counts from the end, -1 being the position after the last
//! axis) are replaced by `shape`, whose dims are taken as given, except `0`, which copies the bottom's dim at
//! the same position, and one `-1`, inferred so that the count is unchanged. The values are copied (crema never
//! shares storage between blobs); backward copies the top's diff to the bottom's.

use crate::blob::Blob;
use crate::layer::{Arity, BottomItem, Layer, LayerContext, LayerError, LayerResult};

/// The Reshape layer.
pub struct Reshape {
    /// `shape` as given; 0 and -1 are resolved at reshape.
    dims: Vec<i64>,
    /// Position in `dims` of the `-1`, if any.
    inferred: Option<usize>,
    axis: i32,
    num_axes: i32,
}

/// Makes a Reshape layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.reshape_param.clone().unwrap_or_default();
    let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    let mut inferred = None;
    for (i, &d) in dims.iter().enumerate() {
        if d < -1 {
            return Err(LayerError::new(format!(
                "reshape_param.shape: dim {i} is {d}; dims are positive, 0 (copy) or -1 (infer)"
            )));
        }
        if d == -1 {
            if inferred.is_some() {
                return Err(LayerError::new(
                    "reshape_param.shape: at most one dim may be -1",
                ));
            }
            inferred = Some(i);
        }
    }
    if p.num_axes() < -1 {
        return Err(LayerError::new(format!(
            "reshape_param.num_axes: {} must be >= 0, or -1 for all remaining axes",
            p.num_axes()
        )));
    }
    Ok(Box::new(Reshape {
        dims,
        inferred,
        axis: p.axis(),
        num_axes: p.num_axes(),
    }))
}

impl Reshape {
    /// The top shape for a bottom of `bottom` shape.
    fn top_shape(&self, bottom: &[usize]) -> LayerResult<Vec<usize>> {
        let n = bottom.len() as i64;
        let start = if self.axis >= 0 {
            i64::from(self.axis)
        } else {
            n + i64::from(self.axis) + 1
        };
        if !(0..=n).contains(&start) {
            return Err(LayerError::new(format!(
                "reshape_param.axis: {} is out of range for a {n}-axis bottom",
                self.axis
            )));
        }
        let start = start as usize;
        let end = if self.num_axes == -1 {
            bottom.len()
        } else {
            start + self.num_axes as usize
        };
        if end > bottom.len() {
            return Err(LayerError::new(format!(
                "reshape_param.num_axes: axis {start} + num_axes {} passes the bottom's {n} axes",
                self.num_axes
            )));
        }
        let mut shape = Vec::with_capacity(bottom.len() - (end - start) + self.dims.len());
        shape.extend_from_slice(&bottom[..start]);
        for (i, &d) in self.dims.iter().enumerate() {
            shape.push(match d {
                0 => *bottom.get(start + i).ok_or_else(|| {
                    LayerError::new(format!(
                        "reshape_param.shape: dim {i} is 0 (copy), but the bottom has no axis {}",
                        start + i
                    ))
                })?,
                -1 => 1,
                _ => usize::try_from(d).map_err(|_| {
                    LayerError::new(format!("reshape_param.shape: dim {d} is too large"))
                })?,
            });
        }
        shape.extend_from_slice(&bottom[end..]);
        let count: usize = bottom.iter().product();
        let known = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                LayerError::new("reshape_param.shape: the new shape's count overflows")
            })?;
        if let Some(i) = self.inferred {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(LayerError::new(format!(
                    "reshape_param.shape: cannot infer the -1: the bottom's count {count} is not a multiple of \
                     the other dims' product {known}"
                )));
            }
            shape[start + i] = count / known;
        } else if known != count {
            return Err(LayerError::new(format!(
                "reshape_param.shape: the new shape {shape:?} has {known} values, the bottom {count}"
            )));
        }
        Ok(shape)
    }
}

impl Layer for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_item_source(&self, _top: usize, index: usize) -> Option<BottomItem> {
        Some(BottomItem { bottom: 0, index })
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let shape = self.top_shape(bottom[0].shape())?;
        Ok(top[0].reshape(&shape)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].copy_data_from(bottom[0]);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            bottom[0].diff_mut().copy_from_slice(top[0].diff());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn shaped(text: &str, shape: &[usize]) -> LayerResult<Vec<usize>> {
        let mut layer = layer(text)?;
        let bottom = Blob::new(shape).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top])?;
        Ok(top.shape().to_vec())
    }

    #[test]
    fn shapes() {
        let cases: [(&str, &[usize], &[usize]); 9] = [
            (
                "reshape_param { shape { dim: 6 dim: 4 } }",
                &[2, 3, 4],
                &[6, 4],
            ),
            (
                "reshape_param { shape { dim: 0 dim: -1 } }",
                &[2, 3, 4],
                &[2, 12],
            ),
            (
                "reshape_param { shape { dim: -1 dim: 0 dim: 2 } }",
                &[2, 3, 4],
                &[4, 3, 2],
            ),
            (
                "reshape_param { shape { dim: 2 dim: 2 } axis: 2 }",
                &[2, 3, 4],
                &[2, 3, 2, 2],
            ),
            (
                "reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }",
                &[2, 3],
                &[2, 3, 1],
            ),
            (
                "reshape_param { shape { dim: 1 } axis: 0 num_axes: 0 }",
                &[2, 3],
                &[1, 2, 3],
            ),
            (
                "reshape_param { shape { dim: -1 } axis: 1 num_axes: 2 }",
                &[2, 3, 4, 5],
                &[2, 12, 5],
            ),
            (
                "reshape_param { shape { dim: 0 dim: 0 } axis: 1 }",
                &[2, 3, 4],
                &[2, 3, 4],
            ),
            (
                "reshape_param { shape { dim: 2 dim: -1 } }",
                &[2, 0, 3],
                &[2, 0],
            ),
        ];
        for (text, bottom, expected) in cases {
            assert_eq!(shaped(text, bottom).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, &[usize], &str); 8] = [
            (
                "reshape_param { shape { dim: -1 dim: -1 } }",
                &[2, 3],
                "reshape_param.shape: ",
            ),
            (
                "reshape_param { shape { dim: -2 } }",
                &[2, 3],
                "reshape_param.shape: ",
            ),
            (
                "reshape_param { shape { dim: 5 } }",
                &[2, 3],
                "reshape_param.shape: ",
            ),
            (
                "reshape_param { shape { dim: 4 dim: -1 } }",
                &[2, 3],
                "reshape_param.shape: ",
            ),
            (
                "reshape_param { shape { dim: 0 dim: 0 dim: 0 } }",
                &[2, 3],
                "reshape_param.shape: ",
            ),
            (
                "reshape_param { shape { dim: 6 } axis: 3 }",
                &[2, 3],
                "reshape_param.axis: ",
            ),
            (
                "reshape_param { shape { dim: 6 } num_axes: -2 }",
                &[2, 3],
                "reshape_param.num_axes: ",
            ),
            (
                "reshape_param { shape { dim: 6 } axis: 1 num_axes: 2 }",
                &[2, 3],
                "reshape_param.num_axes: ",
            ),
        ];
        for (text, bottom, prefix) in cases {
            let err = shaped(text, bottom).unwrap_err();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
    }

    #[test]
    fn forward_copies_values() {
        let mut l = layer("reshape_param { shape { dim: 3 dim: 2 } }").unwrap();
        let bottom = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut top = Blob::default();
        l.reshape(&[&bottom], &mut [&mut top]).unwrap();
        l.forward(&[&bottom], &mut [&mut top]).unwrap();
        assert_eq!(top.shape(), [3, 2]);
        assert_eq!(top.data(), bottom.data());
    }

    #[test]
    fn gradient() {
        for text in [
            "reshape_param { shape { dim: 0 dim: -1 } }",
            "reshape_param { shape { dim: -1 } axis: -3 }",
        ] {
            for shape in [&[2, 3, 4][..], &[3, 2, 2, 2]] {
                let mut l = layer(text).unwrap();
                GradientChecker::default()
                    .check(
                        l.as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, 4)],
                        1,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
