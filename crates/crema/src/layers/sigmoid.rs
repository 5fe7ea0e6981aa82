//! Sigmoid: `y = 1 / (1 + e^(-x))`, computed as `0.5 · tanh(0.5 · x) + 0.5`, which never overflows.
//!
//! Parameters: `sigmoid_param { engine }`, ignored (there is one implementation). Gradient: `y · (1 - y) · dy`,
//! from the top's values.

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Sigmoid layer's math.
pub struct Sigmoid;

/// Makes a Sigmoid layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    neuron(Sigmoid)
}

impl NeuronOp for Sigmoid {
    const TYPE_NAME: &'static str = "Sigmoid";

    /// The logistic function, stable for every input.
    fn value(&self, x: f32) -> f32 {
        0.5 * (0.5 * x).tanh() + 0.5
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, _x: f32, y: f32, dy: f32) -> f32 {
        dy * y * (1.0 - y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{check_default_gradient, run};
    use crate::layers::test_support::context;
    use crema_proto::LayerParameter;

    #[test]
    fn forward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let (y, _) = run(layer.as_mut(), &[0.0, 2.0, -2.0, 100.0, -100.0], &[1.0; 5]);
        let s2 = 1.0 / (1.0 + (-2.0f64).exp());
        let expected = [0.5, s2, 1.0 - s2, 1.0, 0.0];
        for (&y, e) in y.iter().zip(expected) {
            assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
        }
    }

    #[test]
    fn gradient() {
        check_default_gradient(create, &[(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 4.0)]);
    }
}
