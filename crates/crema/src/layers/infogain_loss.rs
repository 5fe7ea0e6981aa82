//! InfogainLoss: softmax cross-entropy in which the label's row of a matrix H weighs the log-probability of
//! every class,
//!
//! `loss = -(1 / normalizer) · Σ_n Σ_k H[l_n, k] · log p_nk`, with `p = softmax(scores)` along `axis`.
//!
//! With `H = I` it is SoftmaxWithLoss; with `H = diag(w)`, class-weighted cross-entropy.
//!
//! - Bottoms: scores (any shape; classes along `infogain_loss_param.axis`, default 1, negative allowed), labels
//!   (one per position: count = outer × inner around the axis), and optionally H (count C², any shape, read
//!   row-major) — otherwise H comes from `infogain_loss_param.source`, a .binaryproto or .npy read once.
//! - Tops: the loss, and optionally the probabilities.
//! - `loss_param { ignore_label normalization }` as every loss (see [`super::loss`]); the deprecated
//!   `normalize` is refused, as Caffe's InfogainLoss refuses it.
//! - Exact where Caffe clips: `log p` is `x − logsumexp(x)`, never `log(max(p, 1e-20))`.
//! - Gradient: `loss_weight / normalizer · (p · rowsum(H)[l] − H[l, :])`, zero at ignored positions. Labels and
//!   H receive no gradient (their diffs are left at zero even under force_backward).
//! - Labels must be integers in `[0, C)` or the ignore label; H must be finite: anything else is an error that
//!   says where (Caffe reads out of bounds instead).

use std::path::PathBuf;

use rayon::prelude::*;

use super::loss::{loss_settings, DeprecatedNormalize, LossSettings};
use crate::blob::{canonical_axis, Blob};
use crate::io;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::math::focal::focal_cross_entropy;
use crate::math::labels::labels_to_classes;
use crate::math::softmax;

/// Below this many scores the layer runs on one thread: splitting costs more than it saves.
const PARALLEL_MIN_VALUES: usize = 1 << 16;
/// Scores per parallel task.
const TASK_VALUES: usize = 1 << 15;
/// Labels checked per task.
const LABEL_CHUNK: usize = 1 << 14;

/// The InfogainLoss layer, and FocalLoss, which is InfogainLoss with a focusing exponent ([`Focus`]).
pub struct InfogainLoss {
    /// What the layer is: InfogainLoss (γ = 0, H required) or FocalLoss.
    focus: Focus,
    axis: i32,
    settings: LossSettings,
    /// H read from `source`, with the file it came from (or the identity, for FocalLoss without H).
    source: Option<(Vec<f32>, PathBuf)>,
    /// Whether `source` holds the identity made at reshape rather than a file's H.
    identity_h: bool,
    /// Row sums of H (cached while H comes from the file).
    row_sums: Vec<f32>,
    channels: usize,
    outer: usize,
    inner: usize,
    /// Class index per position, or -1 where the label is ignored.
    labels: Vec<i32>,
    /// `scale · (p · rowsum(H)[l] − H[l, :])` per score, computed in forward and handed over in backward.
    gradient: Vec<f32>,
    /// The scale `gradient` was computed with: loss weight / normalizer.
    gradient_scale: f32,
    /// Whether `gradient` holds the gradient of the last forward (backward hands it over once).
    gradient_ready: bool,
    normalizer: f32,
}

/// How the cross-entropy terms are weighed beyond H.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Focus {
    /// InfogainLoss: H must be given.
    None,
    /// FocalLoss: every term weighed by `(1 − p)^gamma`; H is the identity when none is given. With gamma 0 the
    /// layer runs InfogainLoss's kernels, so its values are InfogainLoss's bit for bit.
    Focal { gamma: f32 },
}

/// Makes an InfogainLoss layer, reading H from `source` when one is given.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    create_with(ctx, Focus::None)
}

/// Makes the layer with `focus` (FocalLoss's constructor calls it with its gamma).
pub fn create_with(ctx: &mut LayerContext, focus: Focus) -> LayerResult<Box<dyn Layer>> {
    let settings = loss_settings(ctx.param, DeprecatedNormalize::Refuse)?;
    let param = ctx.param.infogain_loss_param.clone().unwrap_or_default();
    let source = match param.source.as_deref() {
        Some(path) if !path.is_empty() => {
            let resolved = ctx.resolve(path);
            let h = io::read_array(&resolved)
                .map_err(|e| LayerError::new(format!("infogain_loss_param.source: {e}")))?;
            let values = h.to_f32_vec();
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                return Err(LayerError::new(format!(
                    "infogain_loss_param.source: {} holds {} at index {at}; H must be finite",
                    resolved.display(),
                    values[at]
                )));
            }
            Some((values, resolved))
        }
        _ => None,
    };
    Ok(Box::new(InfogainLoss {
        focus,
        axis: param.axis(),
        settings,
        source,
        identity_h: false,
        row_sums: Vec::new(),
        channels: 0,
        outer: 0,
        inner: 0,
        labels: Vec::new(),
        gradient: Vec::new(),
        gradient_scale: 1.0,
        gradient_ready: false,
        normalizer: 1.0,
    }))
}

fn row_sums(h: &[f32], channels: usize, sums: &mut [f32]) {
    for (sum, row) in sums.iter_mut().zip(h.chunks_exact(channels)) {
        *sum = row.iter().sum();
    }
}

impl InfogainLoss {
    /// Checks every label and stores its class index (-1 when ignored); returns how many count.
    fn read_labels(&mut self, labels: &[f32]) -> LayerResult<usize> {
        let (channels, ignore) = (self.channels, self.settings.ignore_label);
        // Per chunk: the number of valid labels, or the first bad one. Chunks run in parallel on large inputs
        // (a segmentation batch has a label per pixel); the first bad label in position order is reported.
        let read = |(chunk, (labels, indices)): (usize, (&[f32], &mut [i32]))| {
            labels_to_classes(labels, channels, ignore, indices).map_err(|offset| {
                let position = chunk * LABEL_CHUNK + offset;
                (position, labels[offset])
            })
        };
        // Combined in position order, so the leftmost error wins.
        let combine = |a: Result<usize, (usize, f32)>, b| match (a, b) {
            (Ok(x), Ok(y)) => Ok(x + y),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let result = if labels.len() >= 2 * LABEL_CHUNK && rayon::current_num_threads() > 1 {
            labels
                .par_chunks(LABEL_CHUNK)
                .zip(self.labels.par_chunks_mut(LABEL_CHUNK))
                .enumerate()
                .map(read)
                .reduce(|| Ok(0), combine)
        } else {
            labels
                .chunks(LABEL_CHUNK)
                .zip(self.labels.chunks_mut(LABEL_CHUNK))
                .enumerate()
                .map(read)
                .fold(Ok(0), combine)
        };
        result.map_err(|(position, value)| {
            LayerError::at_item(
                format!(
                    "label {value} at position {position} is not a class index in [0, {channels}){}",
                    ignore.map_or(String::new(), |i| format!(" nor the ignore_label {i}"))
                ),
                1,
                position,
            )
        })
    }
}

impl InfogainLoss {
    /// Writes the loss from the summed `total` (an error naming a non-finite score when it is not finite) and
    /// the probabilities when asked for.
    fn finish_forward(&mut self, total: f64, scores: &[f32], top: &mut [&mut Blob]) -> LayerResult {
        if !total.is_finite() {
            if let Some(at) = scores.iter().position(|v| !v.is_finite()) {
                return Err(LayerError::new(format!(
                    "the scores (bottom[0]) hold {} at index {at}; the layers below produced a non-finite value",
                    scores[at]
                )));
            }
        }
        top[0].data_mut()[0] = (total / f64::from(self.normalizer)) as f32;
        self.gradient_ready = true;
        if let Some(prob) = top.get_mut(1) {
            softmax::softmax(
                scores,
                prob.data_mut(),
                self.outer,
                self.channels,
                self.inner,
            );
        }
        Ok(())
    }
}

impl Layer for InfogainLoss {
    fn type_name(&self) -> &'static str {
        match self.focus {
            Focus::None => "InfogainLoss",
            Focus::Focal { .. } => "FocalLoss",
        }
    }

    fn bottom_arity(&self) -> Arity {
        Arity::between(2, 3)
    }

    fn top_arity(&self) -> Arity {
        Arity::between(1, 2)
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index == 0
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        if bottom.len() < 3 && self.source.is_none() && self.focus == Focus::None {
            return Err(LayerError::new(
                "no H: give infogain_loss_param.source (a .binaryproto or .npy file) or H as a third bottom",
            ));
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let scores = bottom[0];
        let axis = canonical_axis(self.axis, scores.num_axes())
            .map_err(|e| LayerError::new(format!("infogain_loss_param.axis: {e}")))?;
        self.channels = scores.shape()[axis];
        self.outer = scores.count_range(0, axis);
        self.inner = scores.count_from(axis + 1);
        let positions = self.outer * self.inner;
        if bottom[1].count() != positions {
            return Err(LayerError::new(format!(
                "the labels (bottom[1], shape {:?}) hold {} values but the scores {:?} have {positions} positions \
                 around axis {axis} ({} × {}); give one label per position",
                bottom[1].shape(),
                bottom[1].count(),
                scores.shape(),
                self.outer,
                self.inner
            )));
        }
        let squared = self.channels * self.channels;
        if bottom.get(2).is_none() && (self.source.is_none() || self.identity_h) {
            // FocalLoss without H: the identity, remade when the number of classes changes.
            self.identity_h = true;
            let mut identity = Vec::new();
            crate::memory::resize(&mut identity, squared, 0.0, || {
                format!("H = I for {} classes", self.channels)
            })?;
            for c in 0..self.channels {
                identity[c * self.channels + c] = 1.0;
            }
            self.source = Some((identity, PathBuf::from("(the identity)")));
        }
        let (h_count, h_from) = match (bottom.get(2), &self.source) {
            (Some(h), _) => (h.count(), "bottom[2]".to_owned()),
            (None, Some((h, path))) => (
                h.len(),
                format!("infogain_loss_param.source {}", path.display()),
            ),
            (None, None) => unreachable!("setup refuses a layer without H"),
        };
        if h_count != squared {
            return Err(LayerError::new(format!(
                "H ({h_from}) has {h_count} values but the scores have {} classes along axis {axis}, so H must have \
                 {} × {} = {squared}",
                self.channels, self.channels, self.channels
            )));
        }
        crate::memory::resize(&mut self.row_sums, self.channels, 0.0, || {
            "the row sums of H".into()
        })?;
        if let (None, Some((h, _))) = (bottom.get(2), &self.source) {
            row_sums(h, self.channels, &mut self.row_sums);
        }
        crate::memory::resize(&mut self.labels, positions, -1, || {
            "the class indices".into()
        })?;
        crate::memory::resize(&mut self.gradient, scores.count(), 0.0, || {
            "the gradient buffer".into()
        })?;
        top[0].reshape(&[])?;
        if let Some(prob) = top.get_mut(1) {
            prob.reshape_like(scores)?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let valid = self.read_labels(bottom[1].data())?;
        if let Some(h) = bottom.get(2) {
            if let Some(at) = h.data().iter().position(|v| !v.is_finite()) {
                return Err(LayerError::new(format!(
                    "H (bottom[2]) holds {} at index {at}; H must be finite",
                    h.data()[at]
                )));
            }
            row_sums(h.data(), self.channels, &mut self.row_sums);
        }
        self.normalizer = self.settings.normalizer(self.outer, self.inner, valid);
        // The gradient is computed with the loss, scaled by the loss weight the net keeps in the top's diff;
        // backward then only hands it over. A zero weight still gets a gradient at scale 1/normalizer.
        let weight = top[0].diff()[0];
        self.gradient_scale = if weight != 0.0 { weight } else { 1.0 } / self.normalizer;
        let h: &[f32] = match (bottom.get(2), &self.source) {
            (Some(h), _) => h.data(),
            (None, Some((h, _))) => h,
            (None, None) => unreachable!("setup refuses a layer without H"),
        };
        let (channels, inner, scale) = (self.channels, self.inner, self.gradient_scale);
        let (labels, sums) = (&self.labels, &self.row_sums);
        let scores = bottom[0].data();
        if let Focus::Focal { gamma } = self.focus {
            if gamma != 0.0 {
                let block = |(g, (x, l)): (&mut [f32], (&[f32], &[i32]))| -> f64 {
                    focal_cross_entropy(x, channels, inner, l, h, gamma, scale, g)
                };
                // Blocks of whole positions: rows of `channels` when inner is 1, one image's planes otherwise.
                let per_block = if inner == 1 {
                    (TASK_VALUES / channels).max(1)
                } else {
                    inner
                };
                let total: f64 = self
                    .gradient
                    .par_chunks_mut(channels * per_block)
                    .zip(
                        scores
                            .par_chunks(channels * per_block)
                            .zip(labels.par_chunks(per_block)),
                    )
                    .map(block)
                    .sum();
                return self.finish_forward(total, scores, top);
            }
        }
        let rows = |grads: &mut [f32], xs: &[f32], labels: &[i32]| -> f64 {
            softmax::weighted_cross_entropy_rows(xs, channels, labels, h, sums, scale, grads)
        };
        let columns = |grads: &mut [f32], xs: &[f32], labels: &[i32]| -> f64 {
            softmax::weighted_cross_entropy_columns(
                xs, channels, inner, labels, h, sums, scale, grads,
            )
        };
        let parallel = scores.len() >= PARALLEL_MIN_VALUES && rayon::current_num_threads() > 1;
        let total: f64 = match (inner == 1, parallel) {
            (true, false) => rows(&mut self.gradient, scores, labels),
            (true, true) => {
                let rows_per_task = (TASK_VALUES / channels).max(1);
                self.gradient
                    .par_chunks_mut(channels * rows_per_task)
                    .zip(scores.par_chunks(channels * rows_per_task))
                    .zip(labels.par_chunks(rows_per_task))
                    .map(|((g, x), l)| rows(g, x, l))
                    .sum()
            }
            (false, false) => self
                .gradient
                .chunks_mut(channels * inner)
                .zip(scores.chunks(channels * inner))
                .zip(labels.chunks(inner))
                .map(|((g, x), l)| columns(g, x, l))
                .sum(),
            (false, true) => self
                .gradient
                .par_chunks_mut(channels * inner)
                .zip(scores.par_chunks(channels * inner))
                .zip(labels.par_chunks(inner))
                .map(|((g, x), l)| columns(g, x, l))
                .sum(),
        };
        self.finish_forward(total, scores, top)
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        for (index, blob) in bottom.iter_mut().enumerate().skip(1) {
            if propagate_down[index] {
                blob.zero_diff();
            }
        }
        if !propagate_down[0] {
            return Ok(());
        }
        if !self.gradient_ready {
            return Err(LayerError::new("backward without a forward before it"));
        }
        let scale = top[0].diff()[0] / self.normalizer;
        if scale != self.gradient_scale {
            let ratio = scale / self.gradient_scale;
            self.gradient.par_iter_mut().for_each(|g| *g *= ratio);
            self.gradient_scale = scale;
        }
        bottom[0].swap_diff(&mut self.gradient);
        self.gradient_ready = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::{context, forward_once as run, layer_from_text};
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn labels(shape: &[usize], classes: usize, seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, 0.0, classes as f32, seed);
        blob.data_mut().iter_mut().for_each(|v| *v = v.floor());
        blob
    }

    fn h(classes: usize) -> Blob {
        uniform_blob(&[classes, classes], 0.0, 2.0, 77)
    }

    #[test]
    fn identity_h_is_softmax_cross_entropy_and_exact_for_extreme_scores() {
        let mut layer = layer("loss_param { normalization: FULL }");
        let scores = Blob::from_data(&[2, 3], vec![1000.0, 0.0, -1000.0, 1.0, 2.0, 3.0]).unwrap();
        let labels = Blob::from_data(&[2], vec![2.0, 0.0]).unwrap();
        let identity =
            Blob::from_data(&[3, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let top = run(layer.as_mut(), &[&scores, &labels, &identity], 1).unwrap();
        let lse2 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let expected = (2000.0 + (lse2 - 1.0)) / 2.0; // Caffe would cap the first term at 46.05
        assert!(
            (f64::from(top[0].data()[0]) - expected).abs() < 1e-3,
            "{} vs {expected}",
            top[0].data()[0]
        );
    }

    #[test]
    fn gradient_for_axes_normalizations_and_h_from_bottom() {
        for (shape, axis, label_shape) in [
            (&[4, 5][..], 1, &[4][..]),
            (&[2, 3, 4][..], 1, &[2, 4][..]),
            (&[2, 3, 5][..], -1, &[2, 3][..]),
            (&[3, 4, 2, 2][..], 1, &[3, 2, 2][..]),
        ] {
            for normalization in ["FULL", "VALID", "BATCH_SIZE", "NONE"] {
                let classes = shape[crate::blob::canonical_axis(axis, shape.len()).unwrap()];
                let mut layer = layer(&format!(
                    "infogain_loss_param {{ axis: {axis} }} loss_param {{ normalization: {normalization} ignore_label: 1 }}"
                ));
                let mut bottoms = [
                    uniform_blob(shape, -2.0, 2.0, 5),
                    labels(label_shape, classes, 6),
                    h(classes),
                ];
                GradientChecker::default()
                    .check(layer.as_mut(), &mut bottoms, 1, &[0])
                    .unwrap_or_else(|e| {
                        panic!("shape {shape:?} axis {axis} {normalization}: {e}");
                    });
            }
        }
    }

    #[test]
    fn gradient_with_two_tops_and_h_from_a_file() {
        let dir = std::env::temp_dir().join(format!("crema-infogain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("H.npy");
        let h = h(4);
        io::write_npy(
            &path,
            &io::Array::from_f32(vec![4, 4], h.data().to_vec()).unwrap(),
        )
        .unwrap();
        let mut layer = layer(&format!(
            "infogain_loss_param {{ source: '{}' }}",
            path.display()
        ));
        let mut bottoms = [uniform_blob(&[6, 4], -3.0, 3.0, 8), labels(&[6], 4, 9)];
        let checker = GradientChecker {
            only_top: Some(0),
            ..Default::default()
        };
        checker
            .check(layer.as_mut(), &mut bottoms, 2, &[0])
            .unwrap();
    }

    #[test]
    fn all_ignored_gives_zero_loss_and_gradient() {
        let mut layer = layer("loss_param { ignore_label: 0 }");
        let scores = uniform_blob(&[3, 2], -1.0, 1.0, 1);
        let labels = Blob::from_data(&[3], vec![0.0; 3]).unwrap();
        let top = run(layer.as_mut(), &[&scores, &labels, &h(2)], 1).unwrap();
        assert_eq!(top[0].data()[0], 0.0);
    }

    #[test]
    fn the_first_bad_label_is_named_when_labels_are_checked_in_parallel_chunks() {
        let positions = 3 * LABEL_CHUNK + 5;
        let scores = uniform_blob(&[1, 2, positions], -1.0, 1.0, 1);
        let mut values = vec![1.0; positions];
        values[2 * LABEL_CHUNK + 3] = 2.0;
        values[LABEL_CHUNK + 1] = -3.0;
        let labels = Blob::from_data(&[1, positions], values).unwrap();
        let err = run(layer("").as_mut(), &[&scores, &labels, &h(2)], 1).unwrap_err();
        let expected = format!("label -3 at position {} is not", LABEL_CHUNK + 1);
        assert!(err.0.contains(&expected), "{err}");
    }

    #[test]
    fn bad_inputs_are_errors_that_say_where() {
        let scores = uniform_blob(&[3, 5], -1.0, 1.0, 1);
        let h5 = h(5);
        for (values, expected) in [
            (
                vec![0.0, 7.0, 1.0],
                "label 7 at position 1 is not a class index in [0, 5)",
            ),
            (vec![0.0, 1.0, 5.0], "label 5 at position 2"),
            (vec![-1.0, 1.0, 2.0], "label -1 at position 0"),
            (vec![0.5, 1.0, 2.0], "label 0.5 at position 0"),
            (vec![0.0, f32::NAN, 2.0], "label NaN at position 1"),
        ] {
            let labels = Blob::from_data(&[3], values).unwrap();
            let err = run(layer("").as_mut(), &[&scores, &labels, &h5], 1).unwrap_err();
            assert!(err.0.contains(expected), "{err}");
        }
        let labels = Blob::from_data(&[3], vec![0.0; 3]).unwrap();
        let err = run(layer("").as_mut(), &[&scores, &labels, &h(4)], 1).unwrap_err();
        assert!(
            err.0.contains("H (bottom[2]) has 16 values") && err.0.contains("5 × 5 = 25"),
            "{err}"
        );
        let short = Blob::from_data(&[2], vec![0.0; 2]).unwrap();
        assert!(run(layer("").as_mut(), &[&scores, &short, &h5], 1)
            .unwrap_err()
            .0
            .contains("one label per position"));
        let mut bad_h = h5.clone();
        bad_h.data_mut()[3] = f32::INFINITY;
        assert!(run(layer("").as_mut(), &[&scores, &labels, &bad_h], 1)
            .unwrap_err()
            .0
            .contains("H must be finite"));
        let param = crema_proto::text::parse("loss_param { normalize: true }", "t").unwrap();
        assert!(create(&mut context(&param))
            .err()
            .unwrap()
            .0
            .contains("normalize is deprecated"));
        let param = crema_proto::text::parse(
            "infogain_loss_param { source: '/nonexistent/H.binaryproto' }",
            "t",
        )
        .unwrap();
        assert!(create(&mut context(&param))
            .err()
            .unwrap()
            .0
            .starts_with("infogain_loss_param.source: /nonexistent/H.binaryproto"));
        let mut no_h = layer("");
        assert!(run(no_h.as_mut(), &[&scores, &labels], 1)
            .unwrap_err()
            .0
            .starts_with("no H"));
    }
}
