//! Exp: `y = base^(shift + scale · x)`.
//!
//! Parameters: `exp_param { base scale shift }` (defaults -1, 1, 0); `base` -1 means e, any other base must
//! be positive (and finite). Computed as `outer · e^(inner · x)` with `inner = ln(base) · scale` and
//! `outer = base^shift`. Gradient: `inner · y · dy`.

use crate::layer::{Layer, LayerContext, LayerError, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Exp layer's math.
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
    neuron(Exp {
        inner_scale,
        outer_scale,
    })
}

impl NeuronOp for Exp {
    const TYPE_NAME: &'static str = "Exp";

    fn value(&self, x: f32) -> f32 {
        let (inner, outer) = (self.inner_scale, self.outer_scale);
        let e = if inner == 1.0 {
            x.exp()
        } else {
            (inner * x).exp()
        };
        if outer == 1.0 {
            e
        } else {
            outer * e
        }
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, _x: f32, y: f32, dy: f32) -> f32 {
        self.inner_scale * y * dy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{assert_close, run};
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
