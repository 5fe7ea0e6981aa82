//! SoftmaxWithLoss: the softmax of the scores along an axis, then the mean negative log-likelihood of the labels,
//! `L = Σ_{positions not ignored} (log Σ_c exp(x_c) − x_label) / normalizer`.
//!
//! Bottoms: scores (`outer × C × inner` around the axis) and labels (`outer × inner` values, each an integer in
//! `[0, C)` or the ignore label). Tops: the loss (a scalar) and, optionally, the probabilities (the scores' shape).
//!
//! Parameters: `softmax_param { axis }` (default 1, negative counts from the end) and `loss_param { ignore_label
//! normalization }` (default VALID; the deprecated `normalize: true/false` means VALID/BATCH_SIZE when
//! `normalization` is unset); see [`crate::layers::loss`].
//!
//! The loss is computed in log space (log-sum-exp with the maximum taken out), so it is exact for extreme scores:
//! scores `[1000, −1000]` with label 1 give 2000, where Caffe clips the probability at FLT_MIN (87.34 per term).
//!
//! Gradient: `(p − onehot(label)) · loss_weight / normalizer`, zero at ignored positions, where `loss_weight` is
//! `top[0].diff[0]`. As in Caffe, the probabilities top's gradient is ignored, and labels get no gradient.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};
use crate::layers::loss::{
    check_first_dims, check_position_labels, class_label, loss_settings, DeprecatedNormalize,
    LossSettings,
};

/// The SoftmaxWithLoss layer.
pub struct SoftmaxWithLoss {
    axis: i32,
    settings: LossSettings,
    outer: usize,
    channels: usize,
    inner: usize,
    /// The probabilities of the last forward, for backward and the second top.
    prob: Vec<f32>,
}

/// Makes a SoftmaxWithLoss layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let axis = ctx.param.softmax_param.as_ref().map_or(1, |p| p.axis());
    let settings = loss_settings(ctx.param, DeprecatedNormalize::Map)?;
    Ok(Box::new(SoftmaxWithLoss {
        axis,
        settings,
        outer: 0,
        channels: 0,
        inner: 0,
        prob: Vec::new(),
    }))
}

impl SoftmaxWithLoss {
    /// Counts the positions whose label is not ignored, checking every label.
    fn valid_count(&self, labels: &[f32]) -> LayerResult<usize> {
        let mut valid = 0;
        for (position, &label) in labels.iter().enumerate() {
            if class_label(label, position, self.channels, self.settings.ignore_label)?.is_some() {
                valid += 1;
            }
        }
        Ok(valid)
    }
}

impl Layer for SoftmaxWithLoss {
    fn type_name(&self) -> &'static str {
        "SoftmaxWithLoss"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::between(1, 2)
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index != 1
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        check_first_dims(bottom)?;
        let (_, outer, channels, inner) =
            check_position_labels(bottom, self.axis, "softmax_param.axis")?;
        self.outer = outer;
        self.channels = channels;
        self.inner = inner;
        crate::memory::resize(&mut self.prob, bottom[0].count(), 0.0, || {
            "the probabilities".into()
        })?;
        top[0].reshape(&[])?;
        if let Some(prob_top) = top.get_mut(1) {
            prob_top.reshape_like(bottom[0])?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (channels, inner) = (self.channels, self.inner);
        let (x, labels) = (bottom[0].data(), bottom[1].data());
        let mut loss = 0.0f64;
        let mut valid = 0usize;
        for o in 0..self.outer {
            for i in 0..inner {
                let position = o * inner + i;
                let label = class_label(
                    labels[position],
                    position,
                    channels,
                    self.settings.ignore_label,
                )?;
                let at = |c: usize| o * channels * inner + c * inner + i;
                // log Σ exp(x) = max + ln(1 + Σ_{c ≠ argmax} exp(x_c − max)), exact for extreme scores.
                let (mut argmax, mut max) = (0, f32::NEG_INFINITY);
                for c in 0..channels {
                    if x[at(c)] > max || c == 0 {
                        (argmax, max) = (c, x[at(c)]);
                    }
                }
                let mut rest = 0.0f32;
                for c in 0..channels {
                    let e = (x[at(c)] - max).exp();
                    self.prob[at(c)] = e;
                    if c != argmax {
                        rest += e;
                    }
                }
                let inv = 1.0 / (1.0 + rest);
                for c in 0..channels {
                    self.prob[at(c)] *= inv;
                }
                if let Some(label) = label {
                    loss += f64::from(max - x[at(label)]) + f64::from(rest.ln_1p());
                    valid += 1;
                }
            }
        }
        let normalizer = self.settings.normalizer(self.outer, inner, valid);
        top[0].data_mut()[0] = (loss / f64::from(normalizer)) as f32;
        if let Some(prob_top) = top.get_mut(1) {
            prob_top.data_mut().copy_from_slice(&self.prob);
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
        let (channels, inner) = (self.channels, self.inner);
        let (first, rest) = bottom.split_at_mut(1);
        let (scores, labels) = (&mut *first[0], rest[0].data());
        let valid = self.valid_count(labels)?;
        let scale = top[0].diff()[0] / self.settings.normalizer(self.outer, inner, valid);
        let dx = scores.diff_mut();
        for (dx, &p) in dx.iter_mut().zip(&self.prob) {
            *dx = p * scale;
        }
        for o in 0..self.outer {
            for i in 0..inner {
                let position = o * inner + i;
                let at = |c: usize| o * channels * inner + c * inner + i;
                match class_label(
                    labels[position],
                    position,
                    channels,
                    self.settings.ignore_label,
                )? {
                    Some(label) => dx[at(label)] -= scale,
                    None => (0..channels).for_each(|c| dx[at(c)] = 0.0),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn run(
        layer: &mut dyn Layer,
        scores: &Blob,
        labels: &Blob,
        tops: usize,
    ) -> LayerResult<Vec<Blob>> {
        let mut top: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        let mut top_refs: Vec<&mut Blob> = top.iter_mut().collect();
        layer.reshape(&[scores, labels], &mut top_refs)?;
        layer.forward(&[scores, labels], &mut top_refs)?;
        Ok(top)
    }

    fn loss(text: &str, scores: &Blob, labels: &Blob) -> f32 {
        run(layer(text).as_mut(), scores, labels, 1).unwrap()[0].data()[0]
    }

    /// Labels of `count` positions in `[0, classes)`, every third one replaced by `ignore` when given.
    fn labels(shape: &[usize], classes: usize, ignore: Option<i32>, seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, 0.0, classes as f32, seed);
        for (i, v) in blob.data_mut().iter_mut().enumerate() {
            *v = match ignore {
                Some(ignore) if i % 3 == 1 => ignore as f32,
                _ => v.floor().min(classes as f32 - 1.0),
            };
        }
        blob
    }

    #[test]
    fn forward_by_hand() {
        // Row 0: p = [1, 2, 5] / 8, label 2 → ln(8/5). Row 1: label 0 → ln(8).
        let scores = Blob::from_data(
            &[2, 3],
            vec![0.0, 2f32.ln(), 5f32.ln(), 0.0, 2f32.ln(), 5f32.ln()],
        )
        .unwrap();
        let labels = Blob::from_data(&[2], vec![2.0, 0.0]).unwrap();
        let expected = (1.6f32.ln() + 8f32.ln()) / 2.0;
        let top = run(layer("").as_mut(), &scores, &labels, 2).unwrap();
        assert_eq!(top[0].shape(), &[] as &[usize]);
        assert!(
            (top[0].data()[0] - expected).abs() < 1e-6,
            "{}",
            top[0].data()[0]
        );
        // The second top holds the probabilities.
        assert_eq!(top[1].shape(), scores.shape());
        for (p, e) in top[1]
            .data()
            .iter()
            .zip([0.125, 0.25, 0.625, 0.125, 0.25, 0.625])
        {
            assert!((p - e).abs() < 1e-6);
        }
    }

    #[test]
    fn extreme_scores_give_the_exact_loss() {
        let scores = Blob::from_data(
            &[3, 2],
            vec![1000.0, -1000.0, -1000.0, 1000.0, 1000.0, 1000.0],
        )
        .unwrap();
        let wrong = Blob::from_data(&[3], vec![1.0, 0.0, 0.0]).unwrap();
        // Σ = 2000 + 2000 + ln 2, over 3 positions (Caffe would give (87.34 + 87.34 + ln 2) / 3).
        let expected = (4000.0 + 2f64.ln()) / 3.0;
        assert!((f64::from(loss("", &scores, &wrong)) - expected).abs() < 1e-3);
        let one = Blob::from_data(&[1, 2], vec![1000.0, -1000.0]).unwrap();
        assert_eq!(
            loss("", &one, &Blob::from_data(&[1], vec![1.0]).unwrap()),
            2000.0
        );
        assert_eq!(
            loss("", &one, &Blob::from_data(&[1], vec![0.0]).unwrap()),
            0.0
        );
        // A confident, correct prediction keeps its small loss: ln(1 + e^-20).
        let confident = Blob::from_data(&[1, 2], vec![500.0, 480.0]).unwrap();
        let small = loss("", &confident, &Blob::from_data(&[1], vec![0.0]).unwrap());
        assert!(
            (f64::from(small) - (-20f64).exp().ln_1p()).abs() < 1e-15,
            "{small}"
        );
    }

    #[test]
    fn ignore_label_and_normalizations() {
        // Scores [0, 0] everywhere: each counted position adds ln 2. Labels (outer 2, inner 3), two ignored.
        let scores = Blob::new(&[2, 2, 3]).unwrap();
        let labels = Blob::from_data(&[2, 3], vec![0.0, 1.0, 9.0, 1.0, 9.0, 0.0]).unwrap();
        let ln2 = 2f32.ln();
        for (normalization, divisor) in [
            ("", 4.0),
            ("normalization: VALID", 4.0),
            ("normalization: FULL", 6.0),
            ("normalization: BATCH_SIZE", 2.0),
            ("normalization: NONE", 1.0),
            ("normalize: true", 4.0),
            ("normalize: false", 2.0),
        ] {
            let text = format!("loss_param {{ ignore_label: 9 {normalization} }}");
            let got = loss(&text, &scores, &labels);
            assert!(
                (got - 4.0 * ln2 / divisor).abs() < 1e-6,
                "{normalization}: {got}"
            );
        }
        // Every label ignored: loss 0, no division by zero.
        let all = Blob::from_data(&[2, 3], vec![9.0; 6]).unwrap();
        assert_eq!(loss("loss_param { ignore_label: 9 }", &scores, &all), 0.0);
    }

    #[test]
    fn bad_labels_are_errors() {
        let scores = Blob::new(&[4, 5]).unwrap();
        let err = run(
            layer("").as_mut(),
            &scores,
            &Blob::from_data(&[4], vec![0.0, 1.0, 4.0, 7.0]).unwrap(),
            1,
        )
        .unwrap_err();
        assert_eq!(err.0, "label 7 at position 3 is outside [0, 5)");
        let err = run(
            layer("").as_mut(),
            &scores,
            &Blob::from_data(&[4], vec![0.0, -1.0, 4.0, 1.0]).unwrap(),
            1,
        )
        .unwrap_err();
        assert_eq!(err.0, "label -1 at position 1 is outside [0, 5)");
        let err = run(
            layer("").as_mut(),
            &scores,
            &Blob::from_data(&[4], vec![0.0, 1.5, 4.0, 1.0]).unwrap(),
            1,
        )
        .unwrap_err();
        assert_eq!(err.0, "label 1.5 at position 1 is not an integer");
        let nan = Blob::from_data(&[4], vec![f32::NAN, 1.0, 4.0, 1.0]).unwrap();
        assert!(run(layer("").as_mut(), &scores, &nan, 1).is_err());
        // -1 is fine once it is the ignore label.
        let ignored = Blob::from_data(&[4], vec![0.0, -1.0, 4.0, 1.0]).unwrap();
        assert!(run(
            layer("loss_param { ignore_label: -1 }").as_mut(),
            &scores,
            &ignored,
            1
        )
        .is_ok());
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let scores = Blob::new(&[2, 3, 4]).unwrap();
        let err = run(layer("").as_mut(), &scores, &Blob::new(&[2, 3]).unwrap(), 1).unwrap_err();
        assert!(
            err.0.contains("number of labels must match") && err.0.contains("softmax_param.axis 1"),
            "{err}"
        );
        let err = run(layer("").as_mut(), &scores, &Blob::new(&[8]).unwrap(), 1).unwrap_err();
        assert!(err.0.contains("same first dimension"), "{err}");
        let err = run(
            layer("softmax_param { axis: 3 }").as_mut(),
            &scores,
            &Blob::new(&[2]).unwrap(),
            1,
        )
        .unwrap_err();
        assert!(err.0.contains("softmax_param.axis"), "{err}");
        // Axis 2 (or -1): labels are outer × inner = 2 × 3.
        assert!(run(
            layer("softmax_param { axis: -1 }").as_mut(),
            &scores,
            &labels(&[2, 3], 4, None, 1),
            1
        )
        .is_ok());
    }

    /// Parameters, score shape, classes, label shape and ignore label of one gradient check.
    type Case = (
        &'static str,
        &'static [usize],
        usize,
        &'static [usize],
        Option<i32>,
    );

    #[test]
    fn gradient() {
        let cases: &[Case] = &[
            ("", &[4, 5], 5, &[4], None),
            ("", &[2, 3, 2, 2], 3, &[2, 1, 2, 2], None),
            (
                "softmax_param { axis: 2 }",
                &[2, 3, 4, 2],
                4,
                &[2, 3, 2],
                None,
            ),
            ("softmax_param { axis: -1 }", &[2, 3, 4], 4, &[2, 3], None),
            (
                "loss_param { ignore_label: -1 }",
                &[2, 4, 3],
                4,
                &[2, 3],
                Some(-1),
            ),
            (
                "loss_param { ignore_label: 2 normalization: FULL }",
                &[3, 4, 2],
                4,
                &[3, 2],
                Some(2),
            ),
            (
                "loss_param { ignore_label: 7 normalization: BATCH_SIZE }",
                &[3, 4, 2],
                4,
                &[3, 2],
                Some(7),
            ),
            (
                "loss_param { ignore_label: 7 normalization: NONE }",
                &[3, 4, 2],
                4,
                &[3, 2],
                Some(7),
            ),
            (
                "loss_param { normalize: false }",
                &[3, 4, 2],
                4,
                &[3, 2],
                None,
            ),
        ];
        for &(text, shape, classes, label_shape, ignore) in cases {
            let mut layer = layer(text);
            let mut bottoms = [
                uniform_blob(shape, -3.0, 3.0, 11),
                labels(label_shape, classes, ignore, 12),
            ];
            GradientChecker::default()
                .check(layer.as_mut(), &mut bottoms, 1, &[0])
                .unwrap_or_else(|e| panic!("{text} {shape:?}: {e}"));
        }
    }

    #[test]
    fn backward_scales_by_the_loss_weight_and_zeroes_ignored_positions() {
        let scores = Blob::new(&[2, 2]).unwrap();
        let labels = Blob::from_data(&[2], vec![1.0, 5.0]).unwrap();
        let mut layer = layer("loss_param { ignore_label: 5 }");
        let mut top = run(layer.as_mut(), &scores, &labels, 1).unwrap();
        top[0].diff_mut()[0] = 3.0;
        let mut scores = scores;
        let mut labels = labels;
        layer
            .backward(&[&top[0]], &[true, false], &mut [&mut scores, &mut labels])
            .unwrap();
        // One valid position: (p − onehot) · 3 / 1 = [0.5, −0.5] · 3.
        assert_eq!(scores.diff(), [1.5, -1.5, 0.0, 0.0]);
        assert!(layer.is_loss() && !layer.allow_force_backward(1) && layer.allow_force_backward(0));
    }
}
