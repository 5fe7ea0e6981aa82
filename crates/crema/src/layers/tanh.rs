//! TanH: `y = tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x))`.
//!
//! Parameters: `tanh_param { engine }`, ignored (there is one implementation). Gradient: `(1 - y²) · dy`, from
//! the top's values.

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The TanH layer's math.
pub struct TanH;

/// Makes a TanH layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    neuron(TanH)
}

impl NeuronOp for TanH {
    const TYPE_NAME: &'static str = "TanH";

    fn value(&self, x: f32) -> f32 {
        x.tanh()
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, _x: f32, y: f32, dy: f32) -> f32 {
        dy * (1.0 - y * y)
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
        let (y, _) = run(layer.as_mut(), &[0.0, 1.0, -0.5, 50.0, -50.0], &[1.0; 5]);
        let t = |x: f64| (x.exp() - (-x).exp()) / (x.exp() + (-x).exp());
        let expected = [0.0, t(1.0), t(-0.5), 1.0, -1.0];
        for (&y, e) in y.iter().zip(expected) {
            assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
        }
    }

    #[test]
    fn gradient() {
        check_default_gradient(create, &[(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 3.0)]);
    }
}
