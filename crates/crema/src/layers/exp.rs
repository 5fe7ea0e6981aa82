//! Exp: `y = base^(shift + scale · x)`.
//!
//! Parameters: `exp_param { base scale shift }` (defaults -1, 1, 0); `base` -1 means e, any other base must
//! be positive (and finite). Computed as `outer · e^(inner · x)` with `inner = ln(base) · scale` and
//! `outer = base^shift`. Gradient: `inner · y · dy`.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Exp layer.
pub struct Exp {
    /// `ln(base) · scale`.
    inner_scale: f32,
    /// `base^shift`.
    outer_scale: f32,
}

/// Makes an Exp layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let (base, scale, shift) = ctx
        .param
        .exp_param
        .as_ref()
        .map_or((-1.0, 1.0, 0.0), |p| (p.base(), p.scale(), p.shift()));
    let ln_base = if base == -1.0 {
        1.0
    } else if base > 0.0 && base.is_finite() {
        f64::from(base).ln()
    } else {
        return Err(LayerError::new(format!(
            "exp_param.base: must be positive (or -1, meaning e), not {base}"
        )));
    };
    let inner_scale = (ln_base * f64::from(scale)) as f32;
    let outer_scale = if shift == 0.0 {
        1.0
    } else {
        (ln_base * f64::from(shift)).exp() as f32
    };
    Ok(Box::new(Exp {
        inner_scale,
        outer_scale,
    }))
}

impl Layer for Exp {
    fn type_name(&self) -> &'static str {
        "Exp"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (inner, outer) = (self.inner_scale, self.outer_scale);
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            let e = if inner == 1.0 {
                x.exp()
            } else {
                (inner * x).exp()
            };
            *y = if outer == 1.0 { e } else { outer * e };
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
        let inner = self.inner_scale;
        for ((dx, &y), &dy) in bottom[0]
            .diff_mut()
            .iter_mut()
            .zip(top[0].data())
            .zip(top[0].diff())
        {
            *dx = inner * y * dy;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn param(base: f32, scale: f32, shift: f32) -> crema_proto::LayerParameter {
        crema_proto::LayerParameter {
            exp_param: Some(crema_proto::caffe::ExpParameter {
                base: Some(base),
                scale: Some(scale),
                shift: Some(shift),
            }),
            ..Default::default()
        }
    }

    fn layer(base: f32, scale: f32, shift: f32) -> Box<dyn Layer> {
        create(&mut context(&param(base, scale, shift))).unwrap()
    }

    fn run(layer: &mut dyn Layer, values: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut bottom = Blob::from_data(&[values.len()], values.to_vec()).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        top.diff_mut().copy_from_slice(dy);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        (top.data().to_vec(), bottom.diff().to_vec())
    }

    fn assert_close(actual: &[f32], expected: &[f64]) {
        for (&a, &e) in actual.iter().zip(expected) {
            assert!(
                (f64::from(a) - e).abs() <= 1e-5 * e.abs().max(1.0),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let e = std::f64::consts::E;
        // Defaults: e^x.
        let param = crema_proto::LayerParameter::default();
        let mut default = create(&mut context(&param)).unwrap();
        let (y, dx) = run(default.as_mut(), &[0.0, 1.0, -2.0], &[1.0, 2.0, 1.0]);
        assert_close(&y, &[1.0, e, e.powi(-2)]);
        assert_close(&dx, &[1.0, 2.0 * e, e.powi(-2)]);
        // 2^(1 + 0.5x): derivative ln 2 · 0.5 · y.
        let (y, dx) = run(
            layer(2.0, 0.5, 1.0).as_mut(),
            &[0.0, 2.0, 4.0, -2.0],
            &[1.0, 1.0, 1.0, 1.0],
        );
        assert_close(&y, &[2.0, 4.0, 8.0, 1.0]);
        let k = 0.5 * 2f64.ln();
        assert_close(&dx, &[2.0 * k, 4.0 * k, 8.0 * k, k]);
        // e^(3 - x).
        let (y, _) = run(layer(-1.0, -1.0, 3.0).as_mut(), &[3.0, 1.0], &[1.0, 1.0]);
        assert_close(&y, &[1.0, e * e]);
    }

    #[test]
    fn base_must_be_positive_or_minus_one() {
        for base in [0.0, -2.0, f32::INFINITY] {
            let err = create(&mut context(&param(base, 1.0, 0.0))).err().unwrap();
            assert!(err.0.starts_with("exp_param.base:"), "{err}");
        }
        // Base 1 is allowed: a constant 1.
        let (y, dx) = run(layer(1.0, 2.0, 3.0).as_mut(), &[5.0], &[1.0]);
        assert_eq!((y, dx), (vec![1.0], vec![0.0]));
    }

    #[test]
    fn gradient() {
        for (base, scale, shift) in [
            (-1.0, 1.0, 0.0),
            (2.0, 0.5, 1.0),
            (0.5, -1.3, 0.2),
            (-1.0, 0.7, -0.4),
        ] {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                GradientChecker::default()
                    .check(
                        layer(base, scale, shift).as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, seed)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("base {base} scale {scale} shift {shift}: {e}"));
            }
        }
    }
}
