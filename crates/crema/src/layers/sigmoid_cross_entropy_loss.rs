//! SigmoidCrossEntropyLoss: the cross-entropy of targets `t` against `σ(x)`,
//! `L = −Σ_i [t_i log σ(x_i) + (1 − t_i) log(1 − σ(x_i))] / normalizer`, computed in the stable form
//! `max(x, 0) − x·t + log(1 + exp(−|x|))`.
//!
//! Bottoms: scores `x` (first axis: the batch) and targets `t` with the same count (usually in `[0, 1]`).
//! Top: the loss (a scalar).
//!
//! Parameters: `loss_param { ignore_label normalization }`: targets equal to `ignore_label` add neither loss
//! nor gradient. As in Caffe, this layer's default normalization is BATCH_SIZE (the first axis) when neither
//! `normalization` nor the deprecated `normalize` is set (`normalize: true/false` means VALID/BATCH_SIZE).
//! Outer × inner is batch × (count per item); see [`crate::layers::loss`].
//!
//! Gradient: `(σ(x) − t) · loss_weight / normalizer` (zero where the target is ignored), `loss_weight` being
//! `top[0].diff[0]`. Targets get no gradient.

use crema_proto::caffe::loss_parameter::NormalizationMode;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::bnll::logistic;
use crate::layers::loss::{check_first_dims, loss_settings, DeprecatedNormalize, LossSettings};

/// The SigmoidCrossEntropyLoss layer.
pub struct SigmoidCrossEntropyLoss {
    settings: LossSettings,
    outer: usize,
    inner: usize,
}

/// Makes a SigmoidCrossEntropyLoss layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let mut settings = loss_settings(ctx.param, DeprecatedNormalize::Map)?;
    let loss = ctx.param.loss_param.as_ref();
    if loss.is_none_or(|l| l.normalization.is_none() && l.normalize.is_none()) {
        settings.normalization = NormalizationMode::BatchSize;
    }
    Ok(Box::new(SigmoidCrossEntropyLoss {
        settings,
        outer: 0,
        inner: 0,
    }))
}

impl Layer for SigmoidCrossEntropyLoss {
    fn type_name(&self) -> &'static str {
        "SigmoidCrossEntropyLoss"
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
        check_first_dims(bottom)?;
        if bottom[0].count() != bottom[1].count() {
            return Err(LayerError::new(format!(
                "scores and targets must have the same count: bottom 0 is {}, bottom 1 is {}",
                bottom[0].shape_string(),
                bottom[1].shape_string()
            )));
        }
        self.outer = bottom[0].shape()[0];
        self.inner = bottom[0].count_from(1);
        Ok(top[0].reshape(&[])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut loss = 0.0f64;
        let mut valid = 0usize;
        for (&x, &t) in bottom[0].data().iter().zip(bottom[1].data()) {
            if self.settings.ignores(t) {
                continue;
            }
            loss += f64::from(x.max(0.0) - x * t + (-x.abs()).exp().ln_1p());
            valid += 1;
        }
        let normalizer = self.settings.normalizer(self.outer, self.inner, valid);
        top[0].data_mut()[0] = (loss / f64::from(normalizer)) as f32;
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
        let (first, rest) = bottom.split_at_mut(1);
        let (scores, targets) = (&mut *first[0], rest[0].data());
        let valid = targets
            .iter()
            .filter(|&&t| !self.settings.ignores(t))
            .count();
        let scale = top[0].diff()[0] / self.settings.normalizer(self.outer, self.inner, valid);
        let (x, dx) = scores.data_and_diff_mut();
        for ((dx, &x), &t) in dx.iter_mut().zip(x).zip(targets) {
            *dx = if self.settings.ignores(t) {
                0.0
            } else {
                (logistic(x) - t) * scale
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::loss::test_support::scalar_loss;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn run(text: &str, x: &Blob, t: &Blob) -> LayerResult<f32> {
        scalar_loss(layer(text).as_mut(), &[x, t])
    }

    /// The direct formula in f64, for comparison.
    fn cross_entropy(x: f64, t: f64) -> f64 {
        let p = 1.0 / (1.0 + (-x).exp());
        -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
    }

    #[test]
    fn forward_by_hand_defaults_to_batch_size() {
        let x = Blob::from_data(&[2, 2], vec![0.0, 2.0, -1.0, 0.5]).unwrap();
        let t = Blob::from_data(&[2, 2], vec![1.0, 0.0, 0.25, 1.0]).unwrap();
        let sum: f64 = x
            .data()
            .iter()
            .zip(t.data())
            .map(|(&x, &t)| cross_entropy(x.into(), t.into()))
            .sum();
        // x = 0, t = 1 alone is ln 2.
        assert!((cross_entropy(0.0, 1.0) - 2f64.ln()).abs() < 1e-12);
        for (text, divisor) in [
            ("", 2.0),
            ("loss_param { normalization: FULL }", 4.0),
            ("loss_param { normalization: VALID }", 4.0),
            ("loss_param { normalize: true }", 4.0),
            ("loss_param { normalization: NONE }", 1.0),
            ("loss_param { ignore_label: -1 }", 2.0),
        ] {
            let got = f64::from(run(text, &x, &t).unwrap());
            assert!(
                (got - sum / divisor).abs() < 1e-6,
                "{text}: {got} vs {}",
                sum / divisor
            );
        }
    }

    #[test]
    fn extreme_scores_are_exact() {
        let x = Blob::from_data(&[1, 4], vec![1000.0, -1000.0, 1000.0, -1000.0]).unwrap();
        let t = Blob::from_data(&[1, 4], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(
            run("loss_param { normalization: NONE }", &x, &t).unwrap(),
            2000.0
        );
    }

    #[test]
    fn ignored_targets_add_nothing() {
        let x = Blob::from_data(&[2, 2], vec![0.0, 5.0, 0.0, -3.0]).unwrap();
        let t = Blob::from_data(&[2, 2], vec![1.0, -1.0, 0.0, -1.0]).unwrap();
        let ln2 = 2f32.ln();
        let got = run(
            "loss_param { ignore_label: -1 normalization: VALID }",
            &x,
            &t,
        )
        .unwrap();
        assert!((got - ln2).abs() < 1e-6, "{got}");
        let all = Blob::from_data(&[2, 2], vec![-1.0; 4]).unwrap();
        assert_eq!(
            run(
                "loss_param { ignore_label: -1 normalization: VALID }",
                &x,
                &all
            )
            .unwrap(),
            0.0
        );
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let x = Blob::new(&[2, 3]).unwrap();
        let err = run("", &x, &Blob::new(&[2, 4]).unwrap()).unwrap_err();
        assert!(err.0.contains("same count"), "{err}");
        let err = run("", &x, &Blob::new(&[3, 2]).unwrap()).unwrap_err();
        assert!(err.0.contains("same first dimension"), "{err}");
        assert!(run("", &x, &Blob::new(&[2, 3, 1]).unwrap()).is_ok());
    }

    #[test]
    fn gradient() {
        for (text, shape) in [
            ("", &[4, 3][..]),
            ("", &[2, 3, 2, 2]),
            ("loss_param { normalization: FULL }", &[3, 5]),
            (
                "loss_param { ignore_label: -1 normalization: VALID }",
                &[3, 4],
            ),
            (
                "loss_param { ignore_label: -1 normalization: NONE }",
                &[2, 2, 3],
            ),
            ("loss_param { ignore_label: -1 }", &[2, 6]),
        ] {
            let mut layer = layer(text);
            let x = uniform_blob(shape, -4.0, 4.0, 21);
            let mut t = uniform_blob(shape, 0.0, 1.0, 22);
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                if text.contains("ignore") && i % 3 == 0 {
                    *v = -1.0;
                }
            }
            GradientChecker::default()
                .check(layer.as_mut(), &mut [x, t], 1, &[0])
                .unwrap_or_else(|e| panic!("{text} {shape:?}: {e}"));
        }
    }
}
