//! Power: `y = (shift + scale · x)^power`.
//!
//! Parameters: `power_param { power scale shift }` (defaults 1, 1, 0). When `power · scale = 0` the output
//! does not depend on the input: every value is `1` when `power = 0`, else `shift^power`, and the gradient is
//! 0. Otherwise the gradient is `power · scale · (shift + scale · x)^(power - 1) · dy`.

use crate::layer::{Layer, LayerContext, LayerResult};
use crate::layers::neuron::{neuron, NeuronOp};

/// The Power layer's math.
pub struct Power {
    power: f32,
    scale: f32,
    shift: f32,
    /// `power · scale`: the derivative's factor, zero exactly when the output is a constant.
    diff_scale: f32,
    /// The output when it is a constant: 1 when `power = 0`, else `shift^power`.
    constant: f32,
}

/// Makes a Power layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let (power, scale, shift) = ctx
        .param
        .power_param
        .as_ref()
        .map_or((1.0, 1.0, 0.0), |p| (p.power(), p.scale(), p.shift()));
    neuron(Power {
        power,
        scale,
        shift,
        diff_scale: power * scale,
        constant: if power == 0.0 { 1.0 } else { shift.powf(power) },
    })
}

impl NeuronOp for Power {
    const TYPE_NAME: &'static str = "Power";

    fn value(&self, x: f32) -> f32 {
        let Power {
            power,
            scale,
            shift,
            ..
        } = *self;
        if self.diff_scale == 0.0 {
            // The input is ignored (even where it is infinite or NaN), as in Caffe.
            self.constant
        } else if power == 1.0 {
            shift + scale * x
        } else {
            (shift + scale * x).powf(power)
        }
    }

    fn backward_in_place(&self) -> bool {
        self.diff_scale == 0.0 || self.power == 1.0
    }

    fn gradient(&self, x: f32, _y: f32, dy: f32) -> f32 {
        let Power {
            power,
            scale,
            shift,
            diff_scale,
            ..
        } = *self;
        if diff_scale == 0.0 {
            0.0
        } else if power == 1.0 {
            diff_scale * dy
        } else if power == 2.0 {
            diff_scale * (shift + scale * x) * dy
        } else {
            // Computed from the base rather than as diff_scale · y / base, so a zero base gives the limit
            // (0 for power > 1) instead of 0 / 0.
            diff_scale * (shift + scale * x).powf(power - 1.0) * dy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::neuron::test_support::{assert_close, run};
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(power: f32, scale: f32, shift: f32) -> Box<dyn Layer> {
        let text = format!("power_param {{ power: {power} scale: {scale} shift: {shift} }}");
        let param = crema_proto::text::parse(&text, "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    #[test]
    fn forward_and_backward_by_hand() {
        // (1 + 3x)^2 and its derivative 6 (1 + 3x).
        let (y, dx) = run(
            layer(2.0, 3.0, 1.0).as_mut(),
            &[1.0, 2.0, -1.0],
            &[1.0, 0.5, 2.0],
        );
        assert_close(&y, &[16.0, 49.0, 4.0]);
        assert_close(&dx, &[24.0, 21.0, -24.0]);
        // (2x)^0.5, derivative 0.5 · 2 · (2x)^-0.5.
        let (y, dx) = run(layer(0.5, 2.0, 0.0).as_mut(), &[2.0, 8.0], &[1.0, 1.0]);
        assert_close(&y, &[2.0, 4.0]);
        assert_close(&dx, &[0.5, 0.25]);
        // Linear: 2 - x.
        let (y, dx) = run(layer(1.0, -1.0, 2.0).as_mut(), &[1.0, 5.0], &[3.0, 1.0]);
        assert_close(&y, &[1.0, -3.0]);
        assert_close(&dx, &[-3.0, -1.0]);
        // x^3 at 0: the derivative is 0, not 0 / 0.
        let (y, dx) = run(layer(3.0, 1.0, 0.0).as_mut(), &[0.0, -2.0], &[1.0, 1.0]);
        assert_close(&y, &[0.0, -8.0]);
        assert_close(&dx, &[0.0, 12.0]);
    }

    #[test]
    fn constant_output_ignores_the_input() {
        // power 0: all ones; scale 0: shift^power. The gradient is 0 either way.
        let (y, dx) = run(
            layer(0.0, 2.0, 3.0).as_mut(),
            &[1.0, f32::INFINITY],
            &[1.0, 1.0],
        );
        assert_eq!((y, dx), (vec![1.0, 1.0], vec![0.0, 0.0]));
        let (y, dx) = run(layer(3.0, 0.0, 2.0).as_mut(), &[1.0, f32::NAN], &[1.0, 1.0]);
        assert_eq!((y, dx), (vec![8.0, 8.0], vec![0.0, 0.0]));
    }

    #[test]
    fn defaults_are_identity() {
        let param = crema_proto::LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let (y, dx) = run(layer.as_mut(), &[-1.5, 2.0], &[0.5, 3.0]);
        assert_eq!((y, dx), (vec![-1.5, 2.0], vec![0.5, 3.0]));
    }

    #[test]
    fn gradient() {
        // Inputs in [0.5, 2) keep every non-integer power's base positive.
        let settings = [
            (0.37, 0.83, 0.5),
            (-1.5, 1.2, 0.3),
            (2.0, 0.34, -2.4),
            (3.0, -0.5, 1.0),
            (1.0, 0.83, -2.4),
            (0.0, 0.83, -2.4),
            (2.0, 0.0, 1.5),
        ];
        for (power, scale, shift) in settings {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                GradientChecker::default()
                    .check(
                        layer(power, scale, shift).as_mut(),
                        &mut [uniform_blob(shape, 0.5, 2.0, seed)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("power {power} scale {scale} shift {shift}: {e}"));
            }
        }
    }
}
