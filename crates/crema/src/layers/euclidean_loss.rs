//! EuclideanLoss: `L = Σ_i (a_i − b_i)² / 2N`, with `N` the size of the first axis of `a`.
//!
//! Bottoms: `a` and `b`, the same first axis and the same count per item. Top: the loss (a scalar).
//! No parameters.
//!
//! Gradient: `±loss_weight · (a − b) / N` (plus for `a`, minus for `b`), `loss_weight` being `top[0].diff[0]`.
//! Unlike the other losses, both bottoms may receive a gradient, so `force_backward` reaches both (as in Caffe).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::loss::check_first_dims;

/// The EuclideanLoss layer.
pub struct EuclideanLoss {
    /// `a − b` of the last forward.
    difference: Vec<f32>,
    num: usize,
}

/// Makes a EuclideanLoss layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(EuclideanLoss {
        difference: Vec::new(),
        num: 0,
    }))
}

impl Layer for EuclideanLoss {
    fn type_name(&self) -> &'static str {
        "EuclideanLoss"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        check_first_dims(bottom)?;
        if bottom[0].count_from(1) != bottom[1].count_from(1) {
            return Err(LayerError::new(format!(
                "inputs must have the same dimension per item: bottom 0 is {}, bottom 1 is {}",
                bottom[0].shape_string(),
                bottom[1].shape_string()
            )));
        }
        self.num = bottom[0].shape()[0];
        crate::memory::resize(&mut self.difference, bottom[0].count(), 0.0, || {
            "the differences".into()
        })?;
        Ok(top[0].reshape(&[])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut sum = 0.0f64;
        for ((d, &a), &b) in self
            .difference
            .iter_mut()
            .zip(bottom[0].data())
            .zip(bottom[1].data())
        {
            *d = a - b;
            sum += f64::from(*d) * f64::from(*d);
        }
        top[0].data_mut()[0] = (sum / (2.0 * self.num.max(1) as f64)) as f32;
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let scale = top[0].diff()[0] / self.num.max(1) as f32;
        for (i, sign) in [(0, 1.0f32), (1, -1.0)] {
            if propagate_down[i] {
                let alpha = sign * scale;
                for (dx, &d) in bottom[i].diff_mut().iter_mut().zip(&self.difference) {
                    *dx = alpha * d;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::loss::test_support::scalar_loss;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer() -> Box<dyn Layer> {
        create(&mut context(&Default::default())).unwrap()
    }

    fn run(a: &Blob, b: &Blob) -> LayerResult<f32> {
        scalar_loss(layer().as_mut(), &[a, b])
    }

    #[test]
    fn forward_by_hand() {
        // Differences [1, −2, 0, 3]: Σ d² = 14, N = 2 → 14 / 4.
        let a = Blob::from_data(&[2, 2], vec![1.0, 0.0, 5.0, 4.0]).unwrap();
        let b = Blob::from_data(&[2, 2], vec![0.0, 2.0, 5.0, 1.0]).unwrap();
        assert_eq!(run(&a, &b).unwrap(), 3.5);
        // The per-item shapes may differ as long as the counts agree.
        let b = Blob::from_data(&[2, 2, 1], vec![0.0, 2.0, 5.0, 1.0]).unwrap();
        assert_eq!(run(&a, &b).unwrap(), 3.5);
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let a = Blob::new(&[2, 3]).unwrap();
        let err = run(&a, &Blob::new(&[2, 4]).unwrap()).unwrap_err();
        assert!(err.0.contains("same dimension per item"), "{err}");
        let err = run(&a, &Blob::new(&[3, 2]).unwrap()).unwrap_err();
        assert!(err.0.contains("same first dimension"), "{err}");
        let err = run(&Blob::new(&[]).unwrap(), &Blob::new(&[]).unwrap()).unwrap_err();
        assert!(err.0.contains("no axes"), "{err}");
    }

    #[test]
    fn gradient_reaches_both_bottoms() {
        for shape in [&[4][..], &[3, 5], &[2, 3, 2, 2]] {
            let mut layer = layer();
            assert!(layer.is_loss() && layer.allow_force_backward(1));
            let mut bottoms = [
                uniform_blob(shape, -1.0, 1.0, 31),
                uniform_blob(shape, -1.0, 1.0, 32),
            ];
            GradientChecker::default()
                .check(layer.as_mut(), &mut bottoms, 1, &[0, 1])
                .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        }
    }
}
