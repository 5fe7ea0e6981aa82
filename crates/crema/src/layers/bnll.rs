//! BNLL (binomial normal log likelihood, "softplus"): `y = log(1 + e^x)`.
//!
//! Computed stably as `x + log(1 + e^(-x))` for `x > 0` and `log(1 + e^x)` otherwise, so large inputs neither
//! overflow nor lose the small term. No parameters. Gradient: `sigmoid(x) · dy`.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The BNLL layer.
pub struct Bnll;

/// Makes a BNLL layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Bnll))
}

/// `log(1 + e^x)` without overflow.
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `1 / (1 + e^(-x))` without overflow.
fn logistic(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Layer for Bnll {
    fn type_name(&self) -> &'static str {
        "BNLL"
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
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = softplus(x);
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
        let (x, dx) = bottom[0].data_and_diff_mut();
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(top[0].diff()) {
            *dx = dy * logistic(x);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};
    use crema_proto::LayerParameter;

    #[test]
    fn forward_and_backward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let mut bottom = Blob::from_data(&[5], vec![0.0, 1.0, -2.0, 100.0, -50.0]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let expected = [2f64.ln(), sp(1.0), sp(-2.0), 100.0, (-50f64).exp()];
        for (&y, e) in top.data().iter().zip(expected) {
            assert!(
                (f64::from(y) - e).abs() <= 1e-6 * e.abs().max(1e-30),
                "{y} vs {e}"
            );
        }
        top.diff_mut().fill(2.0);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = [1.0, 2.0 * s(1.0), 2.0 * s(-2.0), 2.0, 2.0 * s(-50.0)];
        for (&dx, e) in bottom.diff().iter().zip(expected) {
            assert!(
                (f64::from(dx) - e).abs() <= 1e-6 * e.abs().max(1e-30),
                "{dx} vs {e}"
            );
        }
    }

    #[test]
    fn gradient() {
        let param = LayerParameter::default();
        for (seed, shape, range) in [(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 5.0)] {
            let mut layer = create(&mut context(&param)).unwrap();
            GradientChecker::default()
                .check(
                    layer.as_mut(),
                    &mut [uniform_blob(shape, -range, range, seed)],
                    1,
                    &[0],
                )
                .unwrap();
        }
    }
}
