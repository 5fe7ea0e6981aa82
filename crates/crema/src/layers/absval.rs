//! AbsVal: `y = |x|`.
//!
//! No parameters. Gradient: `sign(x) · dy`, with `sign(0) = 0` (Caffe's convention at the kink).

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The AbsVal layer's math.
pub struct AbsVal;

/// Makes an AbsVal layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    neuron(AbsVal)
}

/// -1, 0 or 1 as `x` is negative, zero (or NaN) or positive.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl NeuronOp for AbsVal {
    const TYPE_NAME: &'static str = "AbsVal";

    fn value(&self, x: f32) -> f32 {
        x.abs()
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        sign(x) * dy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{away_from_zero, run};
    use crate::layers::test_support::context;
    use crate::testing::GradientChecker;
    use crema_proto::LayerParameter;

    #[test]
    fn forward_and_backward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let (y, dx) = run(
            layer.as_mut(),
            &[-3.0, 0.0, 2.0, -0.5],
            &[1.0, 2.0, 3.0, 4.0],
        );
        assert_eq!(y, [3.0, 0.0, 2.0, 0.5]);
        assert_eq!(dx, [-1.0, 0.0, 3.0, -4.0]);
    }

    #[test]
    fn gradient() {
        let param = LayerParameter::default();
        for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5]), (3, &[3, 1, 7])] {
            let mut layer = create(&mut context(&param)).unwrap();
            // Inputs kept away from the kink at 0.
            GradientChecker::default()
                .check(
                    layer.as_mut(),
                    &mut [away_from_zero(shape, -1.0, 1.0, seed)],
                    1,
                    &[0],
                )
                .unwrap();
        }
    }
}
