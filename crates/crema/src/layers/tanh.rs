//! TanH: `y = tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x))`.
//!
//! Parameters: `tanh_param { engine }`, ignored (there is one implementation). Gradient: `(1 - y²) · dy`, from
//! the top's values.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The TanH layer.
pub struct TanH;

/// Makes a TanH layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(TanH))
}

impl Layer for TanH {
    fn type_name(&self) -> &'static str {
        "TanH"
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
            *y = x.tanh();
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
        for ((dx, &y), &dy) in bottom[0]
            .diff_mut()
            .iter_mut()
            .zip(top[0].data())
            .zip(top[0].diff())
        {
            *dx = dy * (1.0 - y * y);
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
    fn forward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = Blob::from_data(&[5], vec![0.0, 1.0, -0.5, 50.0, -50.0]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        let t = |x: f64| (x.exp() - (-x).exp()) / (x.exp() + (-x).exp());
        let expected = [0.0, t(1.0), t(-0.5), 1.0, -1.0];
        for (&y, e) in top.data().iter().zip(expected) {
            assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
        }
    }

    #[test]
    fn gradient() {
        let param = LayerParameter::default();
        for (seed, shape, range) in [(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 3.0)] {
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
