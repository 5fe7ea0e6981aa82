//! Accuracy: the fraction of positions whose label is among the `top_k` highest scores,
//! `A = #{positions not ignored: #{c : x_c ≥ x_label} ≤ top_k} / #{positions not ignored}` (0 when none counts).
//!
//! Bottoms: scores (`outer × C × inner` around the axis) and labels (`outer × inner` values, each an integer in
//! `[0, C)` or the ignore label). Tops: the accuracy (a scalar) and, optionally, the accuracy of each class
//! (`C` values; 0 for a class with no position). A tie with the label's score counts against it, as in Caffe.
//!
//! Parameters: `accuracy_param { top_k axis ignore_label }` (`top_k` default 1, between 1 and C; `axis` default
//! 1, negative counts from the end). Not differentiable: no gradient, and `force_backward` does not ask for one.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::loss::{check_position_labels, class_label};

/// The Accuracy layer.
pub struct Accuracy {
    top_k: usize,
    axis: i32,
    ignore_label: Option<i32>,
    outer: usize,
    channels: usize,
    inner: usize,
    /// Positions counted per class (for the per-class top).
    per_class_count: Vec<usize>,
}

/// Makes an Accuracy layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.accuracy_param.unwrap_or_default();
    if param.top_k() == 0 {
        return Err(LayerError::new("accuracy_param.top_k must be at least 1"));
    }
    Ok(Box::new(Accuracy {
        top_k: param.top_k() as usize,
        axis: param.axis(),
        ignore_label: param.ignore_label,
        outer: 0,
        channels: 0,
        inner: 0,
        per_class_count: Vec::new(),
    }))
}

impl Layer for Accuracy {
    fn type_name(&self) -> &'static str {
        "Accuracy"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::between(1, 2)
    }

    fn allow_force_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (_, outer, channels, inner) =
            check_position_labels(bottom, self.axis, "accuracy_param.axis")?;
        if self.top_k > channels {
            return Err(LayerError::new(format!(
                "accuracy_param.top_k ({}) must be at most the number of classes ({channels})",
                self.top_k
            )));
        }
        self.outer = outer;
        self.channels = channels;
        self.inner = inner;
        crate::memory::resize(&mut self.per_class_count, channels, 0, || {
            "the per-class counts".into()
        })?;
        top[0].reshape(&[])?;
        if let Some(per_class) = top.get_mut(1) {
            per_class.reshape(&[channels])?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (channels, inner) = (self.channels, self.inner);
        let (x, labels) = (bottom[0].data(), bottom[1].data());
        self.per_class_count.fill(0);
        let (first, rest) = top.split_at_mut(1);
        let mut per_class = rest.first_mut().map(|t| t.data_mut());
        if let Some(hits) = per_class.as_deref_mut() {
            hits.fill(0.0);
        }
        let (mut correct, mut counted) = (0usize, 0usize);
        for o in 0..self.outer {
            for i in 0..inner {
                let position = o * inner + i;
                let Some(label) =
                    class_label(labels[position], position, channels, self.ignore_label)?
                else {
                    continue;
                };
                let at = |c: usize| o * channels * inner + c * inner + i;
                let truth = x[at(label)];
                // Scores at least as high as the label's, the label's own included.
                let mut higher = 0usize;
                for c in 0..channels {
                    if x[at(c)] >= truth {
                        higher += 1;
                        if higher > self.top_k {
                            break;
                        }
                    }
                }
                counted += 1;
                self.per_class_count[label] += 1;
                if higher <= self.top_k {
                    correct += 1;
                    if let Some(hits) = per_class.as_deref_mut() {
                        hits[label] += 1.0;
                    }
                }
            }
        }
        first[0].data_mut()[0] = if counted == 0 {
            0.0
        } else {
            (correct as f64 / counted as f64) as f32
        };
        if let Some(hits) = per_class {
            for (hit, &count) in hits.iter_mut().zip(&self.per_class_count) {
                *hit = if count == 0 {
                    0.0
                } else {
                    (f64::from(*hit) / count as f64) as f32
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::{context, layer_from_text};
    use crate::testing::uniform_blob;

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn run(text: &str, x: &Blob, labels: &Blob, tops: usize) -> LayerResult<Vec<Blob>> {
        let mut layer = layer(text);
        let mut top: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        let mut top_refs: Vec<&mut Blob> = top.iter_mut().collect();
        layer.reshape(&[x, labels], &mut top_refs)?;
        layer.forward(&[x, labels], &mut top_refs)?;
        Ok(top)
    }

    fn scores() -> Blob {
        // Four items, three classes; argmaxes 0, 1, 2, 2; second-best 1, 0, 1, 0.
        Blob::from_data(
            &[4, 3],
            vec![0.9, 0.5, 0.1, 0.4, 0.6, 0.0, 0.1, 0.3, 0.7, 0.2, 0.1, 0.8],
        )
        .unwrap()
    }

    #[test]
    fn top_1_and_per_class() {
        let labels = Blob::from_data(&[4], vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        let top = run("", &scores(), &labels, 2).unwrap();
        assert_eq!(top[0].shape(), &[] as &[usize]);
        assert_eq!(top[0].data(), [0.5]);
        // Class 0: items 0 (right) and 3 (wrong); class 1: items 1 (right) and 2 (wrong); class 2: none.
        assert_eq!(top[1].shape(), &[3]);
        assert_eq!(top[1].data(), [0.5, 0.5, 0.0]);
    }

    #[test]
    fn top_k_and_ties() {
        let labels = Blob::from_data(&[4], vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        let top = run("accuracy_param { top_k: 2 }", &scores(), &labels, 1).unwrap();
        assert_eq!(top[0].data(), [1.0]);
        let top = run("accuracy_param { top_k: 3 }", &scores(), &labels, 1).unwrap();
        assert_eq!(top[0].data(), [1.0]);
        // Equal scores: the tie counts against the label (Caffe's rule).
        let tied = Blob::from_data(&[1, 2], vec![0.5, 0.5]).unwrap();
        let label = Blob::from_data(&[1], vec![0.0]).unwrap();
        assert_eq!(run("", &tied, &label, 1).unwrap()[0].data(), [0.0]);
        assert_eq!(
            run("accuracy_param { top_k: 2 }", &tied, &label, 1).unwrap()[0].data(),
            [1.0]
        );
    }

    #[test]
    fn ignore_label() {
        let labels = Blob::from_data(&[4], vec![0.0, -1.0, 1.0, -1.0]).unwrap();
        let top = run("accuracy_param { ignore_label: -1 }", &scores(), &labels, 2).unwrap();
        assert_eq!(top[0].data(), [0.5]);
        assert_eq!(top[1].data(), [1.0, 0.0, 0.0]);
        let all = Blob::from_data(&[4], vec![-1.0; 4]).unwrap();
        assert_eq!(
            run("accuracy_param { ignore_label: -1 }", &scores(), &all, 1).unwrap()[0].data(),
            [0.0]
        );
    }

    #[test]
    fn middle_and_negative_axes() {
        // Scores (2, 3, 4) over axis 1 hold the same predictions as their transpose (2, 4, 3) over axis -1.
        let x = uniform_blob(&[2, 3, 4], -1.0, 1.0, 51);
        let mut transposed = Blob::new(&[2, 4, 3]).unwrap();
        for o in 0..2 {
            for c in 0..3 {
                for i in 0..4 {
                    transposed.data_mut()[o * 12 + i * 3 + c] = x.data()[o * 12 + c * 4 + i];
                }
            }
        }
        let mut labels = uniform_blob(&[2, 4], 0.0, 3.0, 52);
        labels.data_mut().iter_mut().for_each(|v| *v = v.floor());
        // Count by hand: argmax along the class axis equals the label.
        let mut expected = 0;
        for o in 0..2 {
            for i in 0..4 {
                let best = (0..3)
                    .max_by(|&a, &b| {
                        x.data()[o * 12 + a * 4 + i].total_cmp(&x.data()[o * 12 + b * 4 + i])
                    })
                    .unwrap();
                expected += usize::from(best as f32 == labels.data()[o * 4 + i]);
            }
        }
        let expected = expected as f32 / 8.0;
        assert_eq!(
            run("accuracy_param { axis: 1 }", &x, &labels, 1).unwrap()[0].data(),
            [expected]
        );
        assert_eq!(
            run("accuracy_param { axis: -1 }", &transposed, &labels, 1).unwrap()[0].data(),
            [expected]
        );
        assert_eq!(
            run("accuracy_param { axis: 2 }", &transposed, &labels, 1).unwrap()[0].data(),
            [expected]
        );
    }

    #[test]
    fn errors() {
        let labels = Blob::from_data(&[4], vec![0.0, 1.0, 3.0, 0.0]).unwrap();
        let err = run("", &scores(), &labels, 1).unwrap_err();
        assert_eq!(err.0, "label 3 at position 2 is outside [0, 3)");
        let err = run("", &scores(), &Blob::new(&[3]).unwrap(), 1).unwrap_err();
        assert!(err.0.contains("number of labels must match"), "{err}");
        let err = run(
            "accuracy_param { top_k: 4 }",
            &scores(),
            &Blob::new(&[4]).unwrap(),
            1,
        )
        .unwrap_err();
        assert!(err.0.contains("accuracy_param.top_k"), "{err}");
        let err = run(
            "accuracy_param { axis: 2 }",
            &scores(),
            &Blob::new(&[4]).unwrap(),
            1,
        )
        .unwrap_err();
        assert!(err.0.contains("accuracy_param.axis"), "{err}");
        let param = crema_proto::text::parse("accuracy_param { top_k: 0 }", "t").unwrap();
        assert!(create(&mut context(&param)).is_err());
        assert!(!layer("").allow_force_backward(0) && !layer("").is_loss());
    }
}
