//! Slice: splits one bottom along an axis into consecutive parts, `yᵢ = x[…, pᵢ₋₁..pᵢ, …]`.
//!
//! Parameters: `slice_param { axis (1) slice_point }`, or the deprecated `slice_dim` (non-negative; not both).
//! With `slice_point`s (one fewer than the tops, strictly increasing) top `i` gets the indices from point
//! `i - 1` (0 for the first) to point `i` (the axis' end for the last); without, the axis is split into equal
//! parts, one per top, and its length must divide evenly. Backward puts each top's diff back into its part of
//! the bottom's. The axis parameter and the layout of the parts are the Concat layer's ([`super::concat`]).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::concat::{JoinAxis, Joined};

/// The Slice layer.
pub struct Slice {
    axis: JoinAxis,
    points: Vec<usize>,
    /// Resolved at reshape.
    joined: Joined,
}

/// Makes a Slice layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.slice_param.clone().unwrap_or_default();
    let axis = JoinAxis::new("slice_param", "slice_dim", p.axis, p.axis(), p.slice_dim)?;
    let points: Vec<usize> = p.slice_point.iter().map(|&v| v as usize).collect();
    let mut prev = 0;
    for &point in &points {
        if point <= prev {
            return Err(LayerError::new(format!(
                "slice_param.slice_point: points must be positive and strictly increasing, got {:?}",
                p.slice_point
            )));
        }
        prev = point;
    }
    Ok(Box::new(Slice {
        axis,
        points,
        joined: Joined::default(),
    }))
}

impl Layer for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let axis = self.axis.resolve(x)?;
        let len = x.shape()[axis];
        let tops = top.len();
        let mut shape = x.shape().to_vec();
        if self.points.is_empty() {
            if !len.is_multiple_of(tops) {
                return Err(LayerError::new(format!(
                    "slice_param: {tops} tops do not split axis {axis} of length {len} evenly (bottom {})",
                    x.shape_string()
                )));
            }
            shape[axis] = len / tops;
            for t in top.iter_mut() {
                t.reshape(&shape)?;
            }
        } else {
            if self.points.len() + 1 != tops {
                return Err(LayerError::new(format!(
                    "slice_param.slice_point: {} points make {} parts, but there are {tops} tops",
                    self.points.len(),
                    self.points.len() + 1
                )));
            }
            let last = self.points[self.points.len() - 1];
            if tops > len || last > len {
                return Err(LayerError::new(format!(
                    "slice_param.slice_point: {:?} does not fit axis {axis} of length {len} (bottom {})",
                    self.points,
                    x.shape_string()
                )));
            }
            let mut prev = 0;
            for (i, t) in top.iter_mut().enumerate() {
                let next = self.points.get(i).copied().unwrap_or(len);
                shape[axis] = next - prev;
                t.reshape(&shape)?;
                prev = next;
            }
        }
        self.joined = Joined::along(x, axis);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut parts = self.joined.parts(bottom[0]);
        let x = bottom[0].data();
        for t in top.iter_mut() {
            let runs = parts.next_part(t);
            let y = t.data_mut();
            for (part, whole) in runs {
                y[part].copy_from_slice(&x[whole]);
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = self.joined.parts(bottom[0]);
        let dx = bottom[0].diff_mut();
        for t in top {
            let dy = t.diff();
            for (part, whole) in parts.next_part(t) {
                dx[whole].copy_from_slice(&dy[part]);
            }
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

    fn forward(text: &str, bottom: &Blob, tops: usize) -> LayerResult<Vec<Blob>> {
        let mut l = layer(text)?;
        let mut blobs: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
        l.reshape(&[bottom], &mut refs)?;
        l.forward(&[bottom], &mut refs)?;
        Ok(blobs)
    }

    #[test]
    fn forward_by_hand() {
        let x = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let tops = forward("slice_param { slice_point: 1 }", &x, 2).unwrap();
        assert_eq!(
            (tops[0].shape(), tops[0].data()),
            (&[2, 1][..], &[1.0, 4.0][..])
        );
        assert_eq!(
            (tops[1].shape(), tops[1].data()),
            (&[2, 2][..], &[2.0, 3.0, 5.0, 6.0][..])
        );

        let tops = forward("name: \"s\"", &x, 3).unwrap();
        assert_eq!(tops[2].data(), [3.0, 6.0]);

        for text in [
            "slice_param { axis: 0 }",
            "slice_param { slice_dim: 0 }",
            "slice_param { axis: -2 }",
        ] {
            let tops = forward(text, &x, 2).unwrap();
            assert_eq!(
                (tops[0].shape(), tops[0].data()),
                (&[1, 3][..], &[1.0, 2.0, 3.0][..])
            );
            assert_eq!(tops[1].data(), [4.0, 5.0, 6.0]);
        }
        let tops = forward("name: \"s\"", &x, 1).unwrap();
        assert_eq!(tops[0].data(), x.data());
    }

    #[test]
    fn errors_name_the_field() {
        let x = Blob::new(&[2, 3]).unwrap();
        let err = layer("slice_param { axis: 1 slice_dim: 1 }").err().unwrap();
        assert!(err.0.starts_with("slice_param: "), "{err}");
        let err = layer("slice_param { slice_point: 2 slice_point: 2 }")
            .err()
            .unwrap();
        assert!(err.0.starts_with("slice_param.slice_point: "), "{err}");
        let cases = [
            (
                "slice_param { slice_point: 1 }",
                3,
                "slice_param.slice_point: ",
            ),
            (
                "slice_param { slice_point: 4 }",
                2,
                "slice_param.slice_point: ",
            ),
            ("name: \"s\"", 2, "slice_param: "),
            ("slice_param { slice_dim: 2 }", 2, "slice_param.slice_dim: "),
            ("slice_param { axis: 2 }", 2, "slice_param.axis: "),
        ];
        for (text, tops, prefix) in cases {
            let err = forward(text, &x, tops).unwrap_err();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
    }

    #[test]
    fn gradient() {
        for (text, tops) in [
            ("slice_param { slice_point: 1 slice_point: 3 }", 3),
            ("slice_param { axis: -1 }", 2),
        ] {
            for shape in [&[2, 4, 2][..], &[3, 6, 2, 2]] {
                let mut l = layer(text).unwrap();
                GradientChecker::default()
                    .check(
                        l.as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, 6)],
                        tops,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
