//! Clip: `y = max(min, min(x, max))`, the input clamped to `[min, max]`.
//!
//! Parameters: `clip_param { min max }`, both required; `min` must not exceed `max` (Caffe does not check,
//! and would give `min` everywhere). NaN gives `min`, as Caffe's `std::max(min, std::min(x, max))` does.
//!
//! Gradient: `dy` where `min ≤ x ≤ max` (the bounds included, as in Caffe), 0 elsewhere. It reads the input,
//! so Clip runs in place only where no gradient flows through it.

use crate::layer::{Layer, LayerContext, LayerError, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Clip layer's math.
pub struct Clip {
    min: f32,
    max: f32,
}

/// Makes a Clip layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx
        .param
        .clip_param
        .as_ref()
        .ok_or_else(|| LayerError::new("clip_param: missing; give clip_param { min max }"))?;
    for (field, value) in [("min", p.min), ("max", p.max)] {
        if value.is_nan() {
            return Err(LayerError::new(format!(
                "clip_param.{field}: is NaN; give a number"
            )));
        }
    }
    if p.min > p.max {
        return Err(LayerError::new(format!(
            "clip_param: min ({}) is greater than max ({})",
            p.min, p.max
        )));
    }
    neuron(Clip {
        min: p.min,
        max: p.max,
    })
}

impl NeuronOp for Clip {
    const TYPE_NAME: &'static str = "Clip";

    fn value(&self, x: f32) -> f32 {
        // Caffe's std::max(min, std::min(x, max)), comparison for comparison: NaN gives min.
        let low = if self.max < x { self.max } else { x };
        if self.min < low {
            low
        } else {
            self.min
        }
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        if x >= self.min && x <= self.max {
            dy
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::run;
    use crate::layers::test_support::{context, layer_from_text};
    use crate::testing::{uniform_blob, GradientChecker};

    const PARAM: &str = "clip_param { min: -1 max: 2 }";

    #[test]
    fn forward_and_backward_by_hand() {
        let mut layer = layer_from_text(create, PARAM);
        let x = [-3.0, -1.0, -0.5, 0.0, 2.0, 2.5, f32::NEG_INFINITY, f32::NAN];
        let dy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let (y, dx) = run(layer.as_mut(), &x, &dy);
        assert_eq!(y, [-1.0, -1.0, -0.5, 0.0, 2.0, 2.0, -1.0, -1.0]);
        // The bounds themselves pass the gradient.
        assert_eq!(dx, [0.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_field() {
        for (text, expected) in [
            ("name: \"c\"", "clip_param: missing"),
            (
                "clip_param { min: 3 max: 2 }",
                "clip_param: min (3) is greater than max (2)",
            ),
            ("clip_param { min: nan max: 2 }", "clip_param.min: is NaN"),
        ] {
            let param = crema_proto::text::parse(text, "t").unwrap();
            let err = create(&mut context(&param)).err().unwrap();
            assert!(err.0.starts_with(expected), "{text}: {err}");
        }
        // min == max is allowed: a constant.
        let mut layer = layer_from_text(create, "clip_param { min: 1 max: 1 }");
        assert_eq!(run(layer.as_mut(), &[0.0, 5.0], &[1.0; 2]).0, [1.0, 1.0]);
    }

    #[test]
    fn gradient() {
        for shape in [&[10][..], &[2, 3, 4, 5]] {
            // Inputs kept away from the bounds, where the finite difference would straddle two slopes.
            let mut x = uniform_blob(shape, -3.0, 3.0, 5);
            for v in x.data_mut() {
                for bound in [-1.0f32, 2.0] {
                    if (*v - bound).abs() < 0.05 {
                        *v = bound + 0.1;
                    }
                }
            }
            let mut layer = layer_from_text(create, PARAM);
            GradientChecker::default()
                .check(layer.as_mut(), &mut [x], 1, &[0])
                .unwrap();
        }
    }
}
