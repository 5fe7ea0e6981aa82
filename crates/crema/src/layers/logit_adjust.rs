//! LogitAdjust (Menon et al., ICLR 2021; the same as Balanced Softmax): `top = bottom + τ · log π` along `axis`,
//! `π` the class prior of the training labels.
//!
//! In place on the scores with `include { phase: TRAIN }`, it turns the SoftmaxWithLoss after it into the
//! logit-adjusted loss, while TEST and deploy nets see the raw scores; with a negative τ it is the post-hoc
//! correction of a net trained with plain softmax (what `crema test --logit-adjust` inserts).
//!
//! `logit_adjust_param { tau counts counts_file source axis ignore_label }`: `tau` (default 1); the prior from
//! exactly one of `counts` (inline, class order), `counts_file` (.npy, .binaryproto or text numbers) or `source`
//! (a data source whose labels are counted once, at setup: a .npy of labels, an .h5 file, an HDF5 source list,
//! an LMDB or an image list, as `crema infogain --source` reads them; `ignore_label` values are not counted).
//! A class without samples takes the rarest present class's count. The gradient passes through unchanged.

use std::path::PathBuf;

use crate::blob::{canonical_axis, Blob};
use crate::imbalance;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};

/// Where the class counts come from.
enum Prior {
    Counts(Vec<u64>),
    /// Labels read from a source, counted at setup when the number of classes is known.
    Labels {
        values: Vec<f64>,
        source: PathBuf,
    },
}

/// The LogitAdjust layer.
pub struct LogitAdjust {
    tau: f32,
    axis: i32,
    ignore_label: Option<i64>,
    prior: Prior,
    /// `τ · log π_c` per class, made at setup.
    offsets: Vec<f32>,
    outer: usize,
    inner: usize,
}

/// Makes a LogitAdjust layer, reading its counts or labels.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.logit_adjust_param.clone().unwrap_or_default();
    let tau = param.tau();
    if !tau.is_finite() {
        return Err(LayerError::new(format!(
            "logit_adjust_param.tau: {tau}; give a finite number"
        )));
    }
    let file = param.counts_file.as_deref().filter(|f| !f.is_empty());
    let source = param.source.as_deref().filter(|f| !f.is_empty());
    let prior = match (&param.counts[..], file, source) {
        (counts, None, None) if !counts.is_empty() => {
            let values: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
            Prior::Counts(
                imbalance::counts_from_values(&values)
                    .map_err(|e| LayerError::new(format!("logit_adjust_param.counts: {e}")))?,
            )
        }
        ([], Some(file), None) => Prior::Counts(
            imbalance::read_counts(&ctx.resolve(file))
                .map_err(|e| LayerError::new(format!("logit_adjust_param.counts_file: {e}")))?,
        ),
        ([], None, Some(source)) => {
            let path = ctx.resolve(source);
            let labels = crate::data::labels::read_labels(&path, "label")
                .map_err(|e| LayerError::new(format!("logit_adjust_param.source: {e}")))?;
            Prior::Labels {
                values: labels.values,
                source: path,
            }
        }
        ([], None, None) => {
            return Err(LayerError::new(
                "logit_adjust_param: no prior; give counts, counts_file or source",
            ))
        }
        _ => {
            return Err(LayerError::new(
                "logit_adjust_param: give one of counts, counts_file and source, not several",
            ))
        }
    };
    Ok(Box::new(LogitAdjust {
        tau,
        axis: param.axis(),
        ignore_label: param.ignore_label.map(i64::from),
        prior,
        offsets: Vec::new(),
        outer: 0,
        inner: 0,
    }))
}

impl Layer for LogitAdjust {
    fn type_name(&self) -> &'static str {
        "LogitAdjust"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn in_place(&self) -> InPlace {
        InPlace::Yes
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        let axis = canonical_axis(self.axis, bottom[0].num_axes())
            .map_err(|e| LayerError::new(format!("logit_adjust_param.axis: {e}")))?;
        let classes = bottom[0].shape()[axis];
        let counts = match &self.prior {
            Prior::Counts(counts) => counts.clone(),
            Prior::Labels { values, source } => {
                imbalance::count_labels(values.iter().copied(), classes, self.ignore_label).map_err(|e| {
                    LayerError::new(format!(
                        "logit_adjust_param.source: {}: {e} (the scores have {classes} classes along axis {axis})",
                        source.display()
                    ))
                })?
            }
        };
        if counts.len() != classes {
            return Err(LayerError::new(format!(
                "logit_adjust_param: {} counts, but the scores have {classes} classes along axis {axis}",
                counts.len()
            )));
        }
        let log_prior = imbalance::log_prior(&counts)
            .map_err(|e| LayerError::new(format!("logit_adjust_param: {e}")))?;
        self.offsets = log_prior
            .iter()
            .map(|l| (f64::from(self.tau) * l) as f32)
            .collect();
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let scores = bottom[0];
        let axis = canonical_axis(self.axis, scores.num_axes())
            .map_err(|e| LayerError::new(format!("logit_adjust_param.axis: {e}")))?;
        if scores.shape()[axis] != self.offsets.len() {
            return Err(LayerError::new(format!(
                "the scores {:?} have {} classes along axis {axis}; the prior has {}",
                scores.shape(),
                scores.shape()[axis],
                self.offsets.len()
            )));
        }
        self.outer = scores.count_range(0, axis);
        self.inner = scores.count_from(axis + 1);
        top[0].reshape_like(scores)?;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let inner = self.inner;
        let block = self.offsets.len() * inner;
        if block == 0 {
            // A blob with a zero extent past the class axis holds no scores.
            return Ok(());
        }
        for (tops, scores) in top[0]
            .data_mut()
            .chunks_exact_mut(block)
            .zip(bottom[0].data().chunks_exact(block))
        {
            for ((t, x), &offset) in tops
                .chunks_exact_mut(inner)
                .zip(scores.chunks_exact(inner))
                .zip(&self.offsets)
            {
                for (t, &x) in t.iter_mut().zip(x) {
                    *t = x + offset;
                }
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            bottom[0].diff_mut().copy_from_slice(top[0].diff());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn run(layer: &mut dyn Layer, bottom: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        layer.setup(&[bottom], &mut [&mut top])?;
        layer.reshape(&[bottom], &mut [&mut top])?;
        layer.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn adds_tau_log_prior_along_the_axis() {
        let scores = uniform_blob(&[2, 3, 2], -1.0, 1.0, 3);
        let mut layer = layer_from_text(
            create,
            "logit_adjust_param { tau: 0.5 counts: 10 counts: 30 counts: 60 }",
        );
        let top = run(layer.as_mut(), &scores).unwrap();
        let prior = [0.1f64, 0.3, 0.6];
        for n in 0..2 {
            for (c, p) in prior.iter().enumerate() {
                for i in 0..2 {
                    let at = (n * 3 + c) * 2 + i;
                    let expected = f64::from(scores.data()[at]) + 0.5 * p.ln();
                    assert!((f64::from(top.data()[at]) - expected).abs() < 1e-6);
                }
            }
        }
        // Along the last axis.
        let mut layer = layer_from_text(
            create,
            "logit_adjust_param { axis: -1 counts: 1 counts: 3 }",
        );
        let top = run(layer.as_mut(), &scores).unwrap();
        assert!((top.data()[1] - scores.data()[1] - 0.75f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn prior_from_a_counts_file_and_from_labels() {
        let dir = std::env::temp_dir().join(format!("crema-logit-adjust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("counts.txt"), "1, 3\n").unwrap();
        let labels = crate::io::Array::from_f32(vec![5], vec![1.0, 1.0, 0.0, 1.0, 7.0]).unwrap();
        crate::io::write_array(&dir.join("labels.npy"), &labels).unwrap();
        let scores = uniform_blob(&[4, 2], -1.0, 1.0, 3);
        for text in [
            format!(
                "logit_adjust_param {{ counts_file: '{}' }}",
                dir.join("counts.txt").display()
            ),
            format!(
                "logit_adjust_param {{ source: '{}' ignore_label: 7 }}",
                dir.join("labels.npy").display()
            ),
        ] {
            let mut layer = layer_from_text(create, &text);
            let top = run(layer.as_mut(), &scores).unwrap();
            assert!(
                (top.data()[0] - scores.data()[0] - 0.25f32.ln()).abs() < 1e-6,
                "{text}"
            );
            assert!(
                (top.data()[1] - scores.data()[1] - 0.75f32.ln()).abs() < 1e-6,
                "{text}"
            );
        }
        // Without ignore_label, 7 is not a class of 2.
        let text = format!(
            "logit_adjust_param {{ source: '{}' }}",
            dir.join("labels.npy").display()
        );
        let mut layer = layer_from_text(create, &text);
        let error = run(layer.as_mut(), &scores).unwrap_err();
        assert!(
            error.0.contains("labels.npy") && error.0.contains("label 7"),
            "{}",
            error.0
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_class_without_samples_takes_the_rarest_count() {
        let scores = Blob::from_data(&[1, 3], vec![0.0; 3]).unwrap();
        let mut layer = layer_from_text(
            create,
            "logit_adjust_param { counts: 0 counts: 2 counts: 6 }",
        );
        let top = run(layer.as_mut(), &scores).unwrap();
        assert!((top.data()[0] - 0.2f32.ln()).abs() < 1e-6);
        assert!((top.data()[2] - 0.6f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn gradient_passes_through() {
        let mut layer = layer_from_text(
            create,
            "logit_adjust_param { counts: 2 counts: 5 counts: 1 }",
        );
        let mut bottoms = vec![uniform_blob(&[2, 3, 4], -1.0, 1.0, 9)];
        GradientChecker::default()
            .check(layer.as_mut(), &mut bottoms, 1, &[0])
            .unwrap();
    }

    #[test]
    fn bad_parameters_say_which() {
        let scores = uniform_blob(&[2, 3], -1.0, 1.0, 1);
        for (text, expected) in [
            (
                "",
                "logit_adjust_param: no prior; give counts, counts_file or source",
            ),
            (
                "logit_adjust_param { counts: 1 counts: 2 }",
                "logit_adjust_param: 2 counts, but the scores have 3 classes along axis 1",
            ),
            (
                "logit_adjust_param { counts: 0 counts: 0 counts: 0 }",
                "logit_adjust_param: no class has a sample",
            ),
            (
                "logit_adjust_param { counts: 1.5 counts: 1 counts: 1 }",
                "logit_adjust_param.counts: count 1.5 of class 0",
            ),
            (
                "logit_adjust_param { counts: 1 counts_file: 'c.txt' }",
                "give one of counts, counts_file and source, not several",
            ),
            (
                "logit_adjust_param { counts_file: '/nonexistent/c.txt' }",
                "logit_adjust_param.counts_file: /nonexistent/c.txt",
            ),
            (
                "logit_adjust_param { axis: 4 counts: 1 }",
                "logit_adjust_param.axis",
            ),
        ] {
            let param = crema_proto::text::parse(text, "t").unwrap();
            let outcome = create(&mut crate::layers::test_support::context(&param))
                .and_then(|mut layer| run(layer.as_mut(), &scores).map(drop));
            let error = outcome.err().unwrap_or_else(|| panic!("{text}: no error"));
            assert!(error.0.contains(expected), "{text}: {}", error.0);
        }
    }
}
