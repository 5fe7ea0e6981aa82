//! Swish: `y = x · sigmoid(β · x)`.
//!
//! Parameters: `swish_param { beta (1) }`. The sigmoid is Caffe's, `0.5 · tanh(0.5 · z) + 0.5`, which never
//! overflows.
//!
//! Gradient, as Caffe computes it: `dy · (β · y + s · (1 − β · y))` with `s = sigmoid(β · x)`. Caffe keeps `s`
//! from forward and reads `y`, so its gradient is right in place too; crema computes `s` again from `x`, which
//! an in-place top leaves intact (it has storage of its own), so Swish may run in place.

use crate::layer::{Layer, LayerContext, LayerError, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Swish layer's math.
pub struct Swish {
    beta: f32,
}

/// Makes a Swish layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let beta = ctx.param.swish_param.as_ref().map_or(1.0, |p| p.beta());
    if !beta.is_finite() {
        return Err(LayerError::new(format!(
            "swish_param.beta: {beta} is not a finite number"
        )));
    }
    neuron(Swish { beta })
}

impl Swish {
    fn sigmoid(&self, x: f32) -> f32 {
        0.5 * (0.5 * (self.beta * x)).tanh() + 0.5
    }
}

impl NeuronOp for Swish {
    const TYPE_NAME: &'static str = "Swish";

    fn value(&self, x: f32) -> f32 {
        x * self.sigmoid(x)
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, x: f32, y: f32, dy: f32) -> f32 {
        let s = self.sigmoid(x);
        let beta_y = self.beta * y;
        dy * (beta_y + s * (1.0 - beta_y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{assert_close, check_default_gradient, run};
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn sigmoid(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let x = [-2.0f32, -0.5, 0.0, 1.0, 3.0];
        let dy = [1.0f32, 2.0, 3.0, 4.0, 0.5];
        for (text, beta) in [
            ("", 1.0),
            ("swish_param { beta: 2.5 }", 2.5),
            ("swish_param { beta: 0 }", 0.0),
        ] {
            let mut layer = layer_from_text(create, text);
            let (y, dx) = run(layer.as_mut(), &x, &dy);
            let expected_y: Vec<f64> = x
                .iter()
                .map(|&x| f64::from(x) * sigmoid(beta * f64::from(x)))
                .collect();
            // d/dx x·σ(βx) = σ(βx) + βx·σ(βx)(1 − σ(βx)).
            let expected_dx: Vec<f64> = x
                .iter()
                .zip(dy)
                .map(|(&x, dy)| {
                    let (x, s) = (f64::from(x), sigmoid(beta * f64::from(x)));
                    f64::from(dy) * (s + beta * x * s * (1.0 - s))
                })
                .collect();
            assert_close(&y, &expected_y);
            assert_close(&dx, &expected_dx);
        }
        // β = 0: half the input; large inputs do not overflow.
        let mut layer = layer_from_text(create, "swish_param { beta: 0 }");
        assert_eq!(run(layer.as_mut(), &[4.0], &[1.0]).0, [2.0]);
        let mut layer = layer_from_text(create, "");
        assert_eq!(
            run(layer.as_mut(), &[-200.0, 200.0], &[1.0; 2]).0,
            [-0.0, 200.0]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let param = crema_proto::text::parse("swish_param { beta: inf }", "t").unwrap();
        let err = create(&mut crate::layers::test_support::context(&param))
            .err()
            .unwrap();
        assert!(err.0.starts_with("swish_param.beta: "), "{err}");
    }

    #[test]
    fn gradient() {
        check_default_gradient(create, &[(1, &[10][..], 2.0), (2, &[2, 3, 4, 5], 4.0)]);
        let mut layer = layer_from_text(create, "swish_param { beta: 1.7 }");
        GradientChecker::default()
            .check(
                layer.as_mut(),
                &mut [uniform_blob(&[3, 4], -3.0, 3.0, 9)],
                1,
                &[0],
            )
            .unwrap();
    }
}
