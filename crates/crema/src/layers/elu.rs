//! ELU: `y = x` for `x > 0`, `alpha · (e^x - 1)` otherwise.
//!
//! Parameters: `elu_param { alpha }` (default 1). Gradient: `dy` where `x > 0`, `alpha · e^x · dy` elsewhere
//! (Caffe's convention at 0, where the two sides agree only when `alpha = 1`).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The ELU layer.
pub struct Elu {
    alpha: f32,
}

/// Makes an ELU layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let alpha = ctx.param.elu_param.as_ref().map_or(1.0, |p| p.alpha());
    Ok(Box::new(Elu { alpha }))
}

impl Layer for Elu {
    fn type_name(&self) -> &'static str {
        "ELU"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let alpha = self.alpha;
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = if x > 0.0 { x } else { alpha * x.exp_m1() };
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] {
            return Ok(());
        }
        let alpha = self.alpha;
        let (x, dx) = bottom[0].data_and_diff_mut();
        for (((dx, &x), &y), &dy) in dx.iter_mut().zip(x).zip(top[0].data()).zip(top[0].diff()) {
            // For x <= 0, dy/dx = alpha · e^x = y + alpha.
            *dx = if x > 0.0 { dy } else { (y + alpha) * dy };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(alpha: f32) -> Box<dyn Layer> {
        let param =
            crema_proto::text::parse(&format!("elu_param {{ alpha: {alpha} }}"), "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    /// Inputs kept away from the kink at 0.
    fn inputs(shape: &[usize], seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, -2.0, 2.0, seed);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    #[test]
    fn forward_and_backward_by_hand() {
        for alpha in [1.0f32, 0.5] {
            let mut layer = layer(alpha);
            let mut bottom = Blob::from_data(&[4], vec![-1.0, 0.0, 2.0, -3.0]).unwrap();
            let mut top = Blob::default();
            layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
            layer.forward(&[&bottom], &mut [&mut top]).unwrap();
            let a = f64::from(alpha);
            let expected = [
                a * ((-1f64).exp() - 1.0),
                0.0,
                2.0,
                a * ((-3f64).exp() - 1.0),
            ];
            for (&y, e) in top.data().iter().zip(expected) {
                assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
            }
            top.diff_mut().fill(1.0);
            layer
                .backward(&[&top], &[true], &mut [&mut bottom])
                .unwrap();
            let expected = [a * (-1f64).exp(), a, 1.0, a * (-3f64).exp()];
            for (&dx, e) in bottom.diff().iter().zip(expected) {
                assert!((f64::from(dx) - e).abs() < 1e-6, "{dx} vs {e}");
            }
        }
    }

    #[test]
    fn default_alpha_is_one() {
        let param = crema_proto::LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = Blob::from_data(&[1], vec![-2.0]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        assert!((f64::from(top.data()[0]) - ((-2f64).exp() - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn gradient() {
        for alpha in [1.0, 0.5, 2.0] {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                GradientChecker::default()
                    .check(layer(alpha).as_mut(), &mut [inputs(shape, seed)], 1, &[0])
                    .unwrap();
            }
        }
    }
}
