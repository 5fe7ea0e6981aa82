//! MultinomialLogisticLoss: `L = −Σ_n log(max(p_{n, label_n}, 1e-20)) / N` for probabilities already computed
//! (by a Softmax layer, say).
//!
//! Bottoms: probabilities `N × D` (everything after the first axis is one row of `D` classes) and labels (`N`
//! values, each an integer in `[0, D)`; shape `N` or `N × 1 × 1 × 1`). Top: the loss (a scalar). No parameters.
//! The probability is clipped at Caffe's `kLOG_THRESHOLD` = 1e-20 so a zero probability gives a finite loss.
//!
//! Gradient: `−loss_weight / (N · max(p_label, 1e-20))` at each row's label, zero elsewhere; `loss_weight` is
//! `top[0].diff[0]`. Labels get no gradient.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};
use crate::layers::loss::{check_item_labels, item_class};

/// Caffe's floor on a probability before its logarithm is taken.
const LOG_THRESHOLD: f32 = 1e-20;

/// The MultinomialLogisticLoss layer.
pub struct MultinomialLogisticLoss {
    num: usize,
    dim: usize,
}

/// Makes a MultinomialLogisticLoss layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(MultinomialLogisticLoss { num: 0, dim: 0 }))
}

impl Layer for MultinomialLogisticLoss {
    fn type_name(&self) -> &'static str {
        "MultinomialLogisticLoss"
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

    fn allow_force_backward(&self, index: usize) -> bool {
        index != 1
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        (self.num, self.dim) =
            check_item_labels(bottom, |num| format!("shape {num} or {num} 1 1 1"))?;
        Ok(top[0].reshape(&[])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (p, labels) = (bottom[0].data(), bottom[1].data());
        let mut loss = 0.0f64;
        for (n, &label) in labels.iter().enumerate() {
            let label = item_class(label, n, self.dim)?;
            loss -= f64::from(p[n * self.dim + label].max(LOG_THRESHOLD).ln());
        }
        top[0].data_mut()[0] = (loss / self.num.max(1) as f64) as f32;
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
        let scale = -top[0].diff()[0] / self.num.max(1) as f32;
        let (first, rest) = bottom.split_at_mut(1);
        let (probs, labels) = (&mut *first[0], rest[0].data());
        let (p, dp) = probs.data_and_diff_mut();
        dp.fill(0.0);
        for (n, &label) in labels.iter().enumerate() {
            let at = n * self.dim + item_class(label, n, self.dim)?;
            dp[at] = scale / p[at].max(LOG_THRESHOLD);
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

    fn run(probs: &Blob, labels: &Blob) -> LayerResult<f32> {
        scalar_loss(layer().as_mut(), &[probs, labels])
    }

    #[test]
    fn forward_by_hand() {
        let probs = Blob::from_data(&[2, 3], vec![0.2, 0.5, 0.3, 0.1, 0.1, 0.8]).unwrap();
        let labels = Blob::from_data(&[2], vec![1.0, 2.0]).unwrap();
        let expected = -(0.5f32.ln() + 0.8f32.ln()) / 2.0;
        assert!((run(&probs, &labels).unwrap() - expected).abs() < 1e-6);
        // A zero probability is clipped at 1e-20: −ln(1e-20) = 46.0517.
        let zero = Blob::from_data(&[1, 2], vec![1.0, 0.0]).unwrap();
        let got = run(&zero, &Blob::from_data(&[1, 1, 1, 1], vec![1.0]).unwrap()).unwrap();
        assert!((got - 46.051_7).abs() < 1e-3, "{got}");
    }

    #[test]
    fn bad_labels_and_shapes_are_errors() {
        let probs = Blob::new(&[4, 5]).unwrap();
        let err = run(
            &probs,
            &Blob::from_data(&[4], vec![0.0, 1.0, 4.0, 7.0]).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.0, "label 7 at position 3 is outside [0, 5)");
        let err = run(
            &probs,
            &Blob::from_data(&[4], vec![0.0, 0.5, 4.0, 1.0]).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.0, "label 0.5 at position 1 is not an integer");
        let err = run(&probs, &Blob::new(&[4, 2]).unwrap()).unwrap_err();
        assert!(err.0.contains("one value per item"), "{err}");
        let err = run(&probs, &Blob::new(&[3]).unwrap()).unwrap_err();
        assert!(err.0.contains("same first dimension"), "{err}");
    }

    #[test]
    fn gradient() {
        for (shape, classes) in [(&[3, 4][..], 4usize), (&[2, 3, 2, 1], 6)] {
            let mut layer = layer();
            let probs = uniform_blob(shape, 0.2, 1.0, 3);
            let mut labels = uniform_blob(&[shape[0]], 0.0, classes as f32, 4);
            labels.data_mut().iter_mut().for_each(|v| *v = v.floor());
            // Larger relative error: the loss is −ln p, with curvature 1/p² at the step.
            let checker = GradientChecker {
                step: 1e-3,
                threshold: 2e-3,
                ..Default::default()
            };
            checker
                .check(layer.as_mut(), &mut [probs, labels], 1, &[0])
                .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        }
    }
}
