//! ReLU: `y = max(0, x) + negative_slope · min(0, x)`.
//!
//! Parameters: `relu_param { negative_slope }` (default 0). Gradient: `dy` where `x > 0`, `negative_slope · dy`
//! elsewhere (Caffe's convention at 0).

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The ReLU layer's math.
pub struct ReLU {
    negative_slope: f32,
}

/// Makes a ReLU layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let negative_slope = ctx
        .param
        .relu_param
        .as_ref()
        .map_or(0.0, |p| p.negative_slope());
    neuron(ReLU { negative_slope })
}

impl NeuronOp for ReLU {
    const TYPE_NAME: &'static str = "ReLU";

    fn value(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.negative_slope * x
        }
    }

    fn backward_in_place(&self) -> bool {
        true
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        if x > 0.0 {
            dy
        } else {
            self.negative_slope * dy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{away_from_zero, run};
    use crate::layers::test_support::context;
    use crate::testing::GradientChecker;

    fn layer(slope: &str) -> Box<dyn Layer> {
        let param =
            crema_proto::text::parse(&format!("relu_param {{ negative_slope: {slope} }}"), "t")
                .unwrap();
        create(&mut context(&param)).unwrap()
    }

    #[test]
    fn forward_clamps_or_leaks() {
        for (slope, expected) in [("0", [0.0, 0.0, 2.0]), ("0.1", [-0.3, 0.0, 2.0])] {
            let (y, _) = run(layer(slope).as_mut(), &[-3.0, 0.0, 2.0], &[1.0; 3]);
            assert_eq!(y, expected);
        }
    }

    #[test]
    fn gradient() {
        for slope in ["0", "0.25"] {
            for shape in [&[10][..], &[2, 3, 4, 5]] {
                // Inputs kept away from the kink at 0, where the finite difference straddles two slopes.
                GradientChecker::default()
                    .check(
                        layer(slope).as_mut(),
                        &mut [away_from_zero(shape, -1.0, 1.0, 3)],
                        1,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
