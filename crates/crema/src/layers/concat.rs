//! Concat: `y = [x₀, x₁, …]` joined along one axis.
//!
//! Parameters: `concat_param { axis (1) }`, or the deprecated `concat_dim` (non-negative; not both). Every
//! bottom must have the same number of axes and the same dims except along the concatenation axis. Backward
//! copies each bottom's part of the top's diff back to it.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Concat layer.
pub struct Concat {
    /// `axis`, or `concat_dim` when that is the one given.
    axis: i32,
    from_concat_dim: bool,
    /// Resolved at reshape: the axis, the product of the axes before it and after it.
    concat_axis: usize,
    outer: usize,
    inner: usize,
}

/// Makes a Concat layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.concat_param.unwrap_or_default();
    if p.axis.is_some() && p.concat_dim.is_some() {
        return Err(LayerError::new(
            "concat_param: give axis or concat_dim, not both",
        ));
    }
    let (axis, from_concat_dim) = match p.concat_dim {
        Some(dim) => (
            i32::try_from(dim).map_err(|_| {
                LayerError::new(format!("concat_param.concat_dim: {dim} is out of range"))
            })?,
            true,
        ),
        None => (p.axis(), false),
    };
    Ok(Box::new(Concat {
        axis,
        from_concat_dim,
        concat_axis: 0,
        outer: 0,
        inner: 0,
    }))
}

impl Layer for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let first = bottom[0];
        let num_axes = first.num_axes();
        let axis = if self.from_concat_dim {
            let axis = self.axis as usize;
            if axis >= num_axes {
                return Err(LayerError::new(format!(
                    "concat_param.concat_dim: {axis} is out of range for a {num_axes}-axis bottom"
                )));
            }
            axis
        } else {
            first
                .canonical_axis(self.axis)
                .map_err(|e| LayerError::new(format!("concat_param.axis: {e}")))?
        };
        let mut shape = first.shape().to_vec();
        for (i, b) in bottom.iter().enumerate().skip(1) {
            let same_elsewhere = b.num_axes() == num_axes
                && (0..num_axes).all(|j| j == axis || b.shape()[j] == first.shape()[j]);
            if !same_elsewhere {
                return Err(LayerError::new(format!(
                    "Concat: bottom {i} has shape {}, but bottom 0 has {}; they may differ only along axis {axis}",
                    b.shape_string(),
                    first.shape_string()
                )));
            }
            shape[axis] += b.shape()[axis];
        }
        top[0].reshape(&shape)?;
        self.concat_axis = axis;
        self.outer = first.count_range(0, axis);
        self.inner = first.count_from(axis + 1);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let top_rows = top[0].shape()[self.concat_axis] * self.inner;
        let y = top[0].data_mut();
        let mut offset = 0;
        for b in bottom {
            let rows = b.shape()[self.concat_axis] * self.inner;
            for n in 0..self.outer {
                let start = n * top_rows + offset;
                y[start..start + rows].copy_from_slice(&b.data()[n * rows..(n + 1) * rows]);
            }
            offset += rows;
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let top_rows = top[0].shape()[self.concat_axis] * self.inner;
        let dy = top[0].diff();
        let mut offset = 0;
        for (b, &down) in bottom.iter_mut().zip(propagate_down) {
            let rows = b.shape()[self.concat_axis] * self.inner;
            if down {
                let dx = b.diff_mut();
                for n in 0..self.outer {
                    let start = n * top_rows + offset;
                    dx[n * rows..(n + 1) * rows].copy_from_slice(&dy[start..start + rows]);
                }
            }
            offset += rows;
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

    fn forward(text: &str, bottoms: &[Blob]) -> LayerResult<Blob> {
        let mut l = layer(text)?;
        let refs: Vec<&Blob> = bottoms.iter().collect();
        let mut top = Blob::default();
        l.reshape(&refs, &mut [&mut top])?;
        l.forward(&refs, &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        let a = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Blob::from_data(&[2, 1], vec![5.0, 6.0]).unwrap();
        let top = forward("name: \"c\"", &[a.clone(), b]).unwrap();
        assert_eq!(top.shape(), [2, 3]);
        assert_eq!(top.data(), [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);

        let c = Blob::from_data(&[1, 2], vec![7.0, 8.0]).unwrap();
        for text in [
            "concat_param { axis: 0 }",
            "concat_param { concat_dim: 0 }",
            "concat_param { axis: -2 }",
        ] {
            let top = forward(text, &[a.clone(), c.clone()]).unwrap();
            assert_eq!(top.shape(), [3, 2]);
            assert_eq!(top.data(), [1.0, 2.0, 3.0, 4.0, 7.0, 8.0]);
        }
        // One bottom: a copy.
        let top = forward("name: \"c\"", std::slice::from_ref(&a)).unwrap();
        assert_eq!(top.data(), a.data());
    }

    #[test]
    fn errors_name_the_field() {
        let a = Blob::new(&[2, 3]).unwrap();
        let err = layer("concat_param { axis: 1 concat_dim: 1 }")
            .err()
            .unwrap();
        assert!(err.0.starts_with("concat_param: "), "{err}");
        let err = forward("concat_param { concat_dim: 2 }", &[a.clone(), a.clone()]).unwrap_err();
        assert!(err.0.starts_with("concat_param.concat_dim: "), "{err}");
        let err = forward("concat_param { axis: -3 }", &[a.clone(), a.clone()]).unwrap_err();
        assert!(err.0.starts_with("concat_param.axis: "), "{err}");
        let err = forward("name: \"c\"", &[a.clone(), Blob::new(&[3, 3]).unwrap()]).unwrap_err();
        assert!(err.0.starts_with("Concat: bottom 1"), "{err}");
        let err = forward("name: \"c\"", &[a, Blob::new(&[2, 3, 1]).unwrap()]).unwrap_err();
        assert!(err.0.starts_with("Concat: bottom 1"), "{err}");
    }

    #[test]
    fn gradient() {
        for (text, shapes) in [
            ("name: \"c\"", [&[2, 3, 2][..], &[2, 1, 2], &[2, 2, 2]]),
            ("concat_param { axis: 0 }", [&[1, 3][..], &[2, 3], &[3, 3]]),
            (
                "concat_param { axis: -1 }",
                [&[2, 2, 1][..], &[2, 2, 3], &[2, 2, 2]],
            ),
        ] {
            let mut l = layer(text).unwrap();
            let mut bottoms: Vec<Blob> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| uniform_blob(s, -1.0, 1.0, i as u64))
                .collect();
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[0, 2])
                .unwrap();
            let mut l = layer(text).unwrap();
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[1])
                .unwrap();
        }
    }
}
