//! AbsVal: `y = |x|`.
//!
//! No parameters. Gradient: `sign(x) · dy`, with `sign(0) = 0` (Caffe's convention at the kink).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The AbsVal layer.
pub struct AbsVal;

/// Makes an AbsVal layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(AbsVal))
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

impl Layer for AbsVal {
    fn type_name(&self) -> &'static str {
        "AbsVal"
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
            *y = x.abs();
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
            *dx = sign(x) * dy;
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

    /// Inputs kept away from the kink at 0.
    fn inputs(shape: &[usize], seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, -1.0, 1.0, seed);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let mut bottom = Blob::from_data(&[4], vec![-3.0, 0.0, 2.0, -0.5]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), [3.0, 0.0, 2.0, 0.5]);
        top.diff_mut().copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        assert_eq!(bottom.diff(), [-1.0, 0.0, 3.0, -4.0]);
    }

    #[test]
    fn gradient() {
        let param = LayerParameter::default();
        for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5]), (3, &[3, 1, 7])] {
            let mut layer = create(&mut context(&param)).unwrap();
            GradientChecker::default()
                .check(layer.as_mut(), &mut [inputs(shape, seed)], 1, &[0])
                .unwrap();
        }
    }
}
