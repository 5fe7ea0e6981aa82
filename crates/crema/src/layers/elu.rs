//! ELU: `y = x` for `x > 0`, `alpha · (e^x - 1)` otherwise.
//!
//! Parameters: `elu_param { alpha }` (default 1). Gradient: `dy` where `x > 0`, `alpha · e^x · dy` elsewhere
//! (Caffe's convention at 0, where the two sides agree only when `alpha = 1`).

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The ELU layer's math.
pub struct Elu {
    alpha: f32,
}

/// Makes an ELU layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let alpha = ctx.param.elu_param.as_ref().map_or(1.0, |p| p.alpha());
    neuron(Elu { alpha })
}

impl NeuronOp for Elu {
    const TYPE_NAME: &'static str = "ELU";

    fn value(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x.exp_m1()
        }
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, x: f32, y: f32, dy: f32) -> f32 {
        // For x <= 0, dy/dx = alpha · e^x = y + alpha.
        if x > 0.0 {
            dy
        } else {
            (y + self.alpha) * dy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{away_from_zero, run};
    use crate::layers::test_support::context;
    use crate::testing::GradientChecker;

    fn layer(alpha: f32) -> Box<dyn Layer> {
        let param =
            crema_proto::text::parse(&format!("elu_param {{ alpha: {alpha} }}"), "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    #[test]
    fn forward_and_backward_by_hand() {
        for alpha in [1.0f32, 0.5] {
            let (y, dx) = run(layer(alpha).as_mut(), &[-1.0, 0.0, 2.0, -3.0], &[1.0; 4]);
            let a = f64::from(alpha);
            let expected = [
                a * ((-1f64).exp() - 1.0),
                0.0,
                2.0,
                a * ((-3f64).exp() - 1.0),
            ];
            for (&y, e) in y.iter().zip(expected) {
                assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
            }
            let expected = [a * (-1f64).exp(), a, 1.0, a * (-3f64).exp()];
            for (&dx, e) in dx.iter().zip(expected) {
                assert!((f64::from(dx) - e).abs() < 1e-6, "{dx} vs {e}");
            }
        }
    }

    #[test]
    fn default_alpha_is_one() {
        let param = crema_proto::LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let (y, _) = run(layer.as_mut(), &[-2.0], &[1.0]);
        assert!((f64::from(y[0]) - ((-2f64).exp() - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn gradient() {
        for alpha in [1.0, 0.5, 2.0] {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                // Inputs kept away from the kink at 0.
                GradientChecker::default()
                    .check(
                        layer(alpha).as_mut(),
                        &mut [away_from_zero(shape, -2.0, 2.0, seed)],
                        1,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
