//! Log: `y = log_base(shift + scale · x)`.
//!
//! Parameters: `log_param { base scale shift }` (defaults -1, 1, 0); `base` -1 means e, any other base must
//! be positive, finite and not 1. Computed as `ln(shift + scale · x) / ln(base)`. Gradient:
//! `scale / (ln(base) · (shift + scale · x)) · dy`.

use crate::layer::{Layer, LayerContext, LayerError, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Log layer's math.
pub struct Log {
    scale: f32,
    shift: f32,
    /// `1 / ln(base)`.
    base_scale: f32,
    /// `scale / ln(base)`.
    backward_scale: f32,
}

/// Makes a Log layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let (base, scale, shift) = ctx
        .param
        .log_param
        .as_ref()
        .map_or((-1.0, 1.0, 0.0), |p| (p.base(), p.scale(), p.shift()));
    let ln_base = if base == -1.0 {
        1.0
    } else if base > 0.0 && base.is_finite() && base != 1.0 {
        f64::from(base).ln()
    } else {
        return Err(LayerError::new(format!(
            "log_param.base: must be positive and not 1 (or -1, meaning e), not {base}"
        )));
    };
    neuron(Log {
        scale,
        shift,
        base_scale: (1.0 / ln_base) as f32,
        backward_scale: (f64::from(scale) / ln_base) as f32,
    })
}

impl NeuronOp for Log {
    const TYPE_NAME: &'static str = "Log";

    fn value(&self, x: f32) -> f32 {
        let ln = (self.shift + self.scale * x).ln();
        if self.base_scale == 1.0 {
            ln
        } else {
            self.base_scale * ln
        }
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        self.backward_scale / (self.shift + self.scale * x) * dy
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
            log_param: Some(crema_proto::caffe::LogParameter {
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
        // Defaults: ln x, derivative 1 / x.
        let param = crema_proto::LayerParameter::default();
        let mut default = create(&mut context(&param)).unwrap();
        let (y, dx) = run(default.as_mut(), &[1.0, e as f32, 4.0], &[1.0, 1.0, 2.0]);
        assert_close(&y, &[0.0, 1.0, 4f64.ln()]);
        assert_close(&dx, &[1.0, 1.0 / e, 0.5]);
        // log2(1 + 0.5x): derivative 0.5 / (ln 2 · (1 + 0.5x)).
        let (y, dx) = run(
            layer(2.0, 0.5, 1.0).as_mut(),
            &[2.0, 6.0, 14.0],
            &[1.0, 1.0, 1.0],
        );
        assert_close(&y, &[1.0, 2.0, 3.0]);
        let l = 2f64.ln();
        assert_close(&dx, &[0.5 / (l * 2.0), 0.5 / (l * 4.0), 0.5 / (l * 8.0)]);
        // log10(x) at 100.
        let (y, _) = run(layer(10.0, 1.0, 0.0).as_mut(), &[100.0], &[1.0]);
        assert_close(&y, &[2.0]);
    }

    #[test]
    fn base_must_be_positive_and_not_one_or_minus_one() {
        for base in [0.0, -2.0, 1.0, f32::INFINITY] {
            let err = create(&mut context(&param(base, 1.0, 0.0))).err().unwrap();
            assert!(err.0.starts_with("log_param.base:"), "{err}");
        }
    }

    #[test]
    fn gradient() {
        // Inputs in [0.5, 2) keep shift + scale · x positive for every setting.
        for (base, scale, shift) in [
            (-1.0, 1.0, 0.0),
            (2.0, 0.5, 1.0),
            (0.5, 1.3, 0.2),
            (-1.0, -0.7, 2.0),
        ] {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                GradientChecker::default()
                    .check(
                        layer(base, scale, shift).as_mut(),
                        &mut [uniform_blob(shape, 0.5, 2.0, seed)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("base {base} scale {scale} shift {shift}: {e}"));
            }
        }
    }
}
