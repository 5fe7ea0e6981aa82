//! Sigmoid: `y = 1 / (1 + e^(-x))`, computed as `0.5 · tanh(0.5 · x) + 0.5`, which never overflows.
//!
//! Parameters: `sigmoid_param { engine }`, ignored (there is one implementation). Gradient: `y · (1 - y) · dy`,
//! from the top's values.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The Sigmoid layer.
pub struct Sigmoid;

/// Makes a Sigmoid layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Sigmoid))
}

/// The logistic function, stable for every input.
fn sigmoid(x: f32) -> f32 {
    0.5 * (0.5 * x).tanh() + 0.5
}

impl Layer for Sigmoid {
    fn type_name(&self) -> &'static str {
        "Sigmoid"
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
            *y = sigmoid(x);
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
            *dx = dy * y * (1.0 - y);
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
        let bottom = Blob::from_data(&[5], vec![0.0, 2.0, -2.0, 100.0, -100.0]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        let s2 = 1.0 / (1.0 + (-2.0f64).exp());
        let expected = [0.5, s2, 1.0 - s2, 1.0, 0.0];
        for (&y, e) in top.data().iter().zip(expected) {
            assert!((f64::from(y) - e).abs() < 1e-6, "{y} vs {e}");
        }
    }

    #[test]
    fn gradient() {
        let param = LayerParameter::default();
        for (seed, shape, range) in [(1, &[10][..], 1.0), (2, &[2, 3, 4, 5], 4.0)] {
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
