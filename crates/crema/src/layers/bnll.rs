//! BNLL (binomial normal log likelihood, "softplus"): `y = log(1 + e^x)`.
//!
//! Computed stably as `x + log(1 + e^(-x))` for `x > 0` and `log(1 + e^x)` otherwise, so large inputs neither
//! overflow nor lose the small term. No parameters. Gradient: `sigmoid(x) · dy`.

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The BNLL layer's math.
pub struct Bnll;

/// Makes a BNLL layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    neuron(Bnll)
}

/// `log(1 + e^x)` without overflow.
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `1 / (1 + e^(-x))` without overflow (shared with SigmoidCrossEntropyLoss).
pub(crate) fn logistic(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl NeuronOp for Bnll {
    const TYPE_NAME: &'static str = "BNLL";

    fn value(&self, x: f32) -> f32 {
        softplus(x)
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        dy * logistic(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{check_default_gradient, run};
    use crate::layers::test_support::context;
    use crema_proto::LayerParameter;

    #[test]
    fn forward_and_backward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let (y, dx) = run(layer.as_mut(), &[0.0, 1.0, -2.0, 100.0, -50.0], &[2.0; 5]);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let expected = [2f64.ln(), sp(1.0), sp(-2.0), 100.0, (-50f64).exp()];
        for (&y, e) in y.iter().zip(expected) {
            assert!(
                (f64::from(y) - e).abs() <= 1e-6 * e.abs().max(1e-30),
                "{y} vs {e}"
            );
        }
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = [1.0, 2.0 * s(1.0), 2.0 * s(-2.0), 2.0, 2.0 * s(-50.0)];
        for (&dx, e) in dx.iter().zip(expected) {
            assert!(
                (f64::from(dx) - e).abs() <= 1e-6 * e.abs().max(1e-30),
                "{dx} vs {e}"
            );
        }
    }

    #[test]
    fn gradient() {
        check_default_gradient(create, &[(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 5.0)]);
    }
}
