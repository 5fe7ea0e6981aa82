//! Reduction: each item's values reduced to one number, `y_n = coeff · op(x_n)`.
//!
//! Parameters: `reduction_param { operation (SUM) axis (0) coeff (1) }`. The bottom is viewed as `num × dim`:
//! `num` the product of the axes before `axis`, `dim` that of `axis` and every axis after it (Caffe reduces
//! all the trailing axes, not only `axis`). The top keeps the axes before `axis`: a scalar for `axis: 0`.
//! Operations: SUM `Σ x`, ASUM `Σ |x|`, SUMSQ `Σ x²`, MEAN `Σ x / dim`.
//!
//! Gradients, as Caffe: SUM `coeff · dy`, MEAN `coeff / dim · dy`, ASUM `coeff · sign(x) · dy` (0 at 0),
//! SUMSQ `2 · coeff · x · dy`, each value of an item getting its item's `dy`.

use crema_proto::caffe::reduction_parameter::ReductionOp;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Reduction layer.
pub struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f32,
    /// Resolved at reshape: items, values per item, and the factor applied (`coeff`, over `dim` for MEAN).
    num: usize,
    dim: usize,
    scale: f32,
}

/// Makes a Reduction layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.reduction_param.unwrap_or_default();
    let op =
        ReductionOp::try_from(p.operation.unwrap_or(ReductionOp::Sum as i32)).map_err(|_| {
            LayerError::new(format!(
                "reduction_param.operation: {} is not one of SUM, ASUM, SUMSQ, MEAN",
                p.operation.unwrap_or_default()
            ))
        })?;
    let coeff = p.coeff();
    if coeff.is_nan() {
        return Err(LayerError::new(
            "reduction_param.coeff: is NaN; give a number",
        ));
    }
    Ok(Box::new(Reduction {
        op,
        axis: p.axis(),
        coeff,
        num: 0,
        dim: 0,
        scale: coeff,
    }))
}

/// Caffe's sign: −1, 0 or 1.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Layer for Reduction {
    fn type_name(&self) -> &'static str {
        "Reduction"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let axis = x
            .canonical_axis(self.axis)
            .map_err(|e| LayerError::new(format!("reduction_param.axis: {e}")))?;
        top[0].reshape(&x.shape()[..axis])?;
        self.num = x.count_range(0, axis);
        self.dim = x.count_from(axis);
        self.scale = match self.op {
            ReductionOp::Mean => self.coeff / self.dim as f32,
            _ => self.coeff,
        };
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let y = top[0].data_mut();
        if self.dim == 0 {
            // Empty items: the sum of nothing, scaled as Caffe scales it (MEAN's 0 · ∞ is NaN there too).
            y.fill(0.0 * self.scale);
            return Ok(());
        }
        for (y, item) in y.iter_mut().zip(bottom[0].data().chunks_exact(self.dim)) {
            let sum: f64 = match self.op {
                ReductionOp::Sum | ReductionOp::Mean => item.iter().map(|&v| f64::from(v)).sum(),
                ReductionOp::Asum => item.iter().map(|&v| f64::from(v.abs())).sum(),
                ReductionOp::Sumsq => item.iter().map(|&v| f64::from(v) * f64::from(v)).sum(),
            };
            *y = sum as f32 * self.scale;
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] || self.dim == 0 {
            return Ok(());
        }
        let dy = top[0].diff();
        let (x, dx) = bottom[0].data_and_diff_mut();
        let items = x.chunks_exact(self.dim).zip(dx.chunks_exact_mut(self.dim));
        for ((x, dx), &dy) in items.zip(dy) {
            let g = dy * self.scale;
            match self.op {
                ReductionOp::Sum | ReductionOp::Mean => dx.fill(g),
                ReductionOp::Asum => {
                    for (dx, &x) in dx.iter_mut().zip(x) {
                        *dx = sign(x) * g;
                    }
                }
                ReductionOp::Sumsq => {
                    for (dx, &x) in dx.iter_mut().zip(x) {
                        *dx = 2.0 * g * x;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::away_from_zero;
    use crate::layers::test_support::context;
    use crate::testing::GradientChecker;

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn forward(text: &str, bottom: &Blob) -> LayerResult<Blob> {
        let mut l = layer(text)?;
        let mut top = Blob::default();
        l.reshape(&[bottom], &mut [&mut top])?;
        l.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        let x = Blob::from_data(&[2, 3], vec![1.0, -2.0, 3.0, -4.0, 0.0, 0.5]).unwrap();
        // axis 0 (the default): everything to a scalar.
        let top = forward("name: \"r\"", &x).unwrap();
        assert_eq!((top.shape(), top.data()), (&[][..], &[-1.5][..]));
        // Caffe scales the sums by coeff (over dim for MEAN) in float: so does crema.
        for (op, sums, dim) in [
            ("SUM", [2.0f32, -3.5], 1.0f32),
            ("ASUM", [6.0, 4.5], 1.0),
            ("SUMSQ", [14.0, 16.25], 1.0),
            ("MEAN", [2.0, -3.5], 3.0),
        ] {
            let top = forward(
                &format!("reduction_param {{ operation: {op} axis: 1 }}"),
                &x,
            )
            .unwrap();
            assert_eq!(top.shape(), [2]);
            assert_eq!(top.data(), sums.map(|v| v * (1.0 / dim)), "{op}");
            let text = format!("reduction_param {{ operation: {op} axis: -1 coeff: -2 }}");
            let top = forward(&text, &x).unwrap();
            assert_eq!(top.data(), sums.map(|v| v * (-2.0 / dim)), "{op}");
        }
        // The axes after `axis` are reduced too.
        let x = Blob::from_data(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let top = forward("reduction_param { operation: MEAN axis: 1 }", &x).unwrap();
        assert_eq!((top.shape(), top.data()), (&[1][..], &[2.5][..]));
    }

    #[test]
    fn backward_by_hand() {
        let mut x = Blob::from_data(&[2, 2], vec![1.0, -2.0, 0.0, 3.0]).unwrap();
        for (op, expected) in [
            ("SUM", [2.0, 2.0, -4.0, -4.0]),
            ("MEAN", [1.0, 1.0, -2.0, -2.0]),
            ("ASUM", [2.0, -2.0, 0.0, -4.0]),
            ("SUMSQ", [4.0, -8.0, 0.0, -24.0]),
        ] {
            let mut l = layer(&format!(
                "reduction_param {{ operation: {op} axis: 1 coeff: 2 }}"
            ))
            .unwrap();
            let mut top = Blob::default();
            l.reshape(&[&x], &mut [&mut top]).unwrap();
            top.diff_mut().copy_from_slice(&[1.0, -2.0]);
            l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
            assert_eq!(x.diff(), expected, "{op}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let x = Blob::new(&[2, 3]).unwrap();
        let err = forward("reduction_param { axis: 2 }", &x).unwrap_err();
        assert!(err.0.starts_with("reduction_param.axis: "), "{err}");
        let err = layer("reduction_param { coeff: nan }").err().unwrap();
        assert!(err.0.starts_with("reduction_param.coeff: "), "{err}");
    }

    #[test]
    fn gradient() {
        for op in ["SUM", "ASUM", "SUMSQ", "MEAN"] {
            for (axis, shape) in [
                (0, &[6][..]),
                (1, &[2, 3, 2]),
                (-1, &[3, 4]),
                (2, &[2, 2, 3, 2]),
            ] {
                let mut l = layer(&format!(
                    "reduction_param {{ operation: {op} axis: {axis} coeff: 0.7 }}"
                ))
                .unwrap();
                // Away from ASUM's kink at 0.
                GradientChecker::default()
                    .check(
                        l.as_mut(),
                        &mut [away_from_zero(shape, -1.0, 1.0, 11)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("{op} axis {axis}: {e}"));
            }
        }
    }
}
