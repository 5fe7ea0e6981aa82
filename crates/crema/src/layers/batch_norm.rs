//! BatchNorm: `y = (x − mean) / √(var + eps)` per channel (axis 1), the statistics over every other axis.
//!
//! The layer keeps three blobs, as Caffe does: `[mean · sf]` and `[var · sf]` of shape `[C]`, and `[sf]` of
//! shape `[1]`, all starting at 0. They are running statistics, not learned: the net gives them lr_mult 0
//! ([`Layer::param_is_learned`]), as Caffe's BatchNorm does, and refuses a `param` asking for another.
//!
//! - With `use_global_stats` (the default in TEST): `mean = blobs[0] / sf`, `var = blobs[1] / sf` (both 0 when
//!   `sf` is 0). Gradient: `dx = dy / √(var + eps)`.
//! - Without (the default in TRAIN): mean and biased variance of the batch, over the `m = N · H · W …` values of
//!   each channel; then the blobs move, exactly as Caffe's: `sf ← f · sf + 1`, `blobs[0] ← mean + f · blobs[0]`,
//!   `blobs[1] ← m/(m−1) · var + f · blobs[1]` (`m/(m−1)` is 1 when `m` is 1), `f` the moving-average
//!   fraction. Gradient (through the batch statistics): `dx = (dy − mean(dy) − mean(dy · y) · y) / √(var + eps)`.
//!
//! Parameters: `batch_norm_param { use_global_stats moving_average_fraction (0.999) eps (1e-5) }`. The bottom
//! is `N × C` or `N × C × …`. The layer may run in place (its backward reads only its top and the statistics).
//! An empty batch leaves the statistics as they are.

use crema_proto::caffe::Phase;

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};

/// The BatchNorm layer.
pub struct BatchNorm {
    use_global_stats: bool,
    fraction: f32,
    eps: f32,
    /// `[mean · sf, var · sf, sf]`, once set up.
    blobs: Vec<Blob>,
    /// N, C and the count of the axes after C, of the bottom.
    num: usize,
    channels: usize,
    spatial: usize,
    /// Per channel: the mean and `√(var + eps)` of the last forward.
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Per channel scratch: sums.
    sums: Vec<f64>,
    sums2: Vec<f64>,
}

/// Makes a BatchNorm layer from its parameters and phase.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.batch_norm_param.unwrap_or_default();
    let fraction = p.moving_average_fraction();
    if !fraction.is_finite() {
        return Err(LayerError::new(format!(
            "batch_norm_param.moving_average_fraction: must be a finite number, not {fraction}"
        )));
    }
    let eps = p.eps();
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(LayerError::new(format!(
            "batch_norm_param.eps: must be a finite number ≥ 0, not {eps}"
        )));
    }
    Ok(Box::new(BatchNorm {
        use_global_stats: p.use_global_stats.unwrap_or(ctx.phase == Phase::Test),
        fraction,
        eps,
        blobs: Vec::new(),
        num: 0,
        channels: 0,
        spatial: 0,
        mean: Vec::new(),
        std: Vec::new(),
        sums: Vec::new(),
        sums2: Vec::new(),
    }))
}

/// Adds the sum of every (n, c) row of `values` (`sums.len()` rows of `spatial` values per n) into `sums[c]`.
fn channel_sums(values: &[f32], spatial: usize, sums: &mut [f64]) {
    for image in values.chunks_exact(sums.len() * spatial) {
        for (row, sum) in image.chunks_exact(spatial).zip(sums.iter_mut()) {
            *sum += row.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
    }
}

impl BatchNorm {
    fn check_bottom(bottom: &Blob) -> LayerResult {
        if bottom.num_axes() < 2 {
            return Err(LayerError::new(format!(
                "BatchNorm takes a bottom of at least 2 axes (N × C × …, channels on axis 1), not shape {:?}",
                bottom.shape()
            )));
        }
        Ok(())
    }
}

impl Layer for BatchNorm {
    fn type_name(&self) -> &'static str {
        "BatchNorm"
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
        Self::check_bottom(bottom[0])?;
        if self.blobs.is_empty() {
            let channels = bottom[0].shape()[1];
            self.blobs = vec![
                Blob::new(&[channels])?,
                Blob::new(&[channels])?,
                Blob::new(&[1])?,
            ];
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Self::check_bottom(bottom[0])?;
        let Some(stats) = self.blobs.first() else {
            return Err(LayerError::new("BatchNorm: reshape before setup"));
        };
        let shape = bottom[0].shape();
        let channels = stats.count();
        if shape[1] != channels {
            return Err(LayerError::new(format!(
                "the bottom has {} channels (axis 1 of shape {shape:?}), but the layer's statistics have {channels}",
                shape[1]
            )));
        }
        self.num = shape[0];
        self.channels = channels;
        self.spatial = bottom[0].count_from(2);
        for buffer in [&mut self.mean, &mut self.std] {
            crate::memory::resize(buffer, channels, 0.0, || "the BatchNorm statistics".into())?;
        }
        for buffer in [&mut self.sums, &mut self.sums2] {
            crate::memory::resize(buffer, channels, 0.0, || "the BatchNorm statistics".into())?;
        }
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (channels, spatial) = (self.channels, self.spatial);
        let x = bottom[0].data();
        let y = top[0].data_mut();
        if x.is_empty() {
            return Ok(());
        }
        if self.use_global_stats {
            let sf = self.blobs[2].data()[0];
            let factor = if sf == 0.0 { 0.0 } else { 1.0 / sf };
            for c in 0..channels {
                self.mean[c] = factor * self.blobs[0].data()[c];
                self.std[c] = (factor * self.blobs[1].data()[c] + self.eps).sqrt();
            }
        } else {
            let m = self.num * spatial;
            self.sums.fill(0.0);
            channel_sums(x, spatial, &mut self.sums);
            for (mean, &sum) in self.mean.iter_mut().zip(&self.sums) {
                *mean = (sum / m as f64) as f32;
            }
            // The biased variance, E((x − mean)²), from the centred values as Caffe computes it.
            self.sums2.fill(0.0);
            for image in x.chunks_exact(channels * spatial) {
                for ((row, sum), &mean) in image
                    .chunks_exact(spatial)
                    .zip(self.sums2.iter_mut())
                    .zip(&self.mean)
                {
                    *sum += row
                        .iter()
                        .map(|&v| f64::from(v - mean).powi(2))
                        .sum::<f64>();
                }
            }
            let f = self.fraction;
            let correction = if m > 1 {
                m as f32 / (m - 1) as f32
            } else {
                1.0
            };
            let sf = &mut self.blobs[2].data_mut()[0];
            *sf = *sf * f + 1.0;
            for c in 0..channels {
                let var = (self.sums2[c] / m as f64) as f32;
                self.std[c] = (var + self.eps).sqrt();
                let mean_blob = &mut self.blobs[0].data_mut()[c];
                *mean_blob = self.mean[c] + f * *mean_blob;
                let var_blob = &mut self.blobs[1].data_mut()[c];
                *var_blob = correction * var + f * *var_blob;
            }
        }
        for (x, y) in x
            .chunks_exact(channels * spatial)
            .zip(y.chunks_exact_mut(channels * spatial))
        {
            for (((x, y), &mean), &std) in x
                .chunks_exact(spatial)
                .zip(y.chunks_exact_mut(spatial))
                .zip(&self.mean)
                .zip(&self.std)
            {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - mean) / std;
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
        let (channels, spatial) = (self.channels, self.spatial);
        if !propagate_down[0] || top[0].count() == 0 {
            return Ok(());
        }
        let (y, dy) = (top[0].data(), top[0].diff());
        let dx = bottom[0].diff_mut();
        let block = channels * spatial;
        if self.use_global_stats {
            for (dy, dx) in dy.chunks_exact(block).zip(dx.chunks_exact_mut(block)) {
                for ((dy, dx), &std) in dy
                    .chunks_exact(spatial)
                    .zip(dx.chunks_exact_mut(spatial))
                    .zip(&self.std)
                {
                    for (dx, &dy) in dx.iter_mut().zip(dy) {
                        *dx = dy / std;
                    }
                }
            }
            return Ok(());
        }
        // Σ dy and Σ dy · y per channel.
        self.sums.fill(0.0);
        channel_sums(dy, spatial, &mut self.sums);
        self.sums2.fill(0.0);
        for (y, dy) in y.chunks_exact(block).zip(dy.chunks_exact(block)) {
            for ((y, dy), sum) in y
                .chunks_exact(spatial)
                .zip(dy.chunks_exact(spatial))
                .zip(self.sums2.iter_mut())
            {
                *sum += y
                    .iter()
                    .zip(dy)
                    .map(|(&y, &dy)| f64::from(y) * f64::from(dy))
                    .sum::<f64>();
            }
        }
        let m = (self.num * spatial) as f64;
        for c in 0..channels {
            self.mean[c] = (self.sums[c] / m) as f32;
            self.sums2[c] /= m;
        }
        for ((y, dy), dx) in y
            .chunks_exact(block)
            .zip(dy.chunks_exact(block))
            .zip(dx.chunks_exact_mut(block))
        {
            for c in 0..channels {
                let range = c * spatial..(c + 1) * spatial;
                let (mean_dy, mean_dy_y, std) = (self.mean[c], self.sums2[c] as f32, self.std[c]);
                for ((dx, &y), &dy) in dx[range.clone()]
                    .iter_mut()
                    .zip(&y[range.clone()])
                    .zip(&dy[range])
                {
                    *dx = (dy - mean_dy - mean_dy_y * y) / std;
                }
            }
        }
        Ok(())
    }

    fn params(&self) -> &[Blob] {
        &self.blobs
    }

    fn params_mut(&mut self) -> &mut [Blob] {
        &mut self.blobs
    }

    fn param_is_learned(&self, _index: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::{context_in, layer_from_text};
    use crate::testing::{net_from_text, uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn setup(l: &mut dyn Layer, x: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        l.setup(&[x], &mut [&mut top])?;
        l.reshape(&[x], &mut [&mut top])?;
        Ok(top)
    }

    fn forward(l: &mut dyn Layer, x: &Blob, top: &mut Blob) -> LayerResult {
        l.reshape(&[x], &mut [top])?;
        l.forward(&[x], &mut [top])
    }

    fn assert_close(actual: &[f32], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (&a, &e) in actual.iter().zip(expected) {
            assert!(
                (f64::from(a) - e).abs() <= 2e-6 * e.abs().max(1.0),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    /// N = 2, C = 2, 2 values per channel: channel 0 holds [0, 2 | 4, 6] (mean 3, biased variance 5), channel 1
    /// [1, 1 | 1, 5] (mean 2, biased variance 3).
    fn batch() -> Blob {
        Blob::from_data(&[2, 2, 2], vec![0.0, 2.0, 1.0, 1.0, 4.0, 6.0, 1.0, 5.0]).unwrap()
    }

    #[test]
    fn train_normalizes_with_the_batch_and_moves_the_blobs_as_caffe() {
        let x = batch();
        let mut l = layer("batch_norm_param { moving_average_fraction: 0.5 eps: 0 }");
        let mut top = setup(l.as_mut(), &x).unwrap();
        assert_eq!(
            l.params()
                .iter()
                .map(|b| b.shape().to_vec())
                .collect::<Vec<_>>(),
            [vec![2], vec![2], vec![1]]
        );
        assert!(l
            .params()
            .iter()
            .all(|b| b.data().iter().all(|&v| v == 0.0)));
        // Statistics from before.
        l.params_mut()[0].data_mut().copy_from_slice(&[1.0, 2.0]);
        l.params_mut()[1].data_mut().copy_from_slice(&[4.0, 8.0]);
        l.params_mut()[2].data_mut()[0] = 2.0;
        forward(l.as_mut(), &x, &mut top).unwrap();
        let (s0, s1) = (5f64.sqrt(), 3f64.sqrt());
        assert_close(
            top.data(),
            &[
                -3.0 / s0,
                -1.0 / s0,
                -1.0 / s1,
                -1.0 / s1,
                1.0 / s0,
                3.0 / s0,
                -1.0 / s1,
                3.0 / s1,
            ],
        );
        // sf = 0.5 · 2 + 1; mean = batch mean + 0.5 · old; var = 4/3 · biased variance + 0.5 · old.
        assert_close(l.params()[2].data(), &[2.0]);
        assert_close(l.params()[0].data(), &[3.0 + 0.5, 2.0 + 1.0]);
        assert_close(
            l.params()[1].data(),
            &[4.0 / 3.0 * 5.0 + 2.0, 4.0 / 3.0 * 3.0 + 4.0],
        );

        // From zeros with the default fraction 0.999, twice.
        let mut l = layer("batch_norm_param { eps: 0 }");
        let mut top = setup(l.as_mut(), &x).unwrap();
        forward(l.as_mut(), &x, &mut top).unwrap();
        assert_close(l.params()[2].data(), &[1.0]);
        assert_close(l.params()[0].data(), &[3.0, 2.0]);
        assert_close(l.params()[1].data(), &[20.0 / 3.0, 4.0]);
        forward(l.as_mut(), &x, &mut top).unwrap();
        let f = f64::from(0.999f32);
        assert_close(l.params()[2].data(), &[f + 1.0]);
        assert_close(l.params()[0].data(), &[3.0 + f * 3.0, 2.0 + f * 2.0]);
        assert_close(
            l.params()[1].data(),
            &[20.0 / 3.0 * (1.0 + f), 4.0 * (1.0 + f)],
        );
    }

    #[test]
    fn one_value_per_channel_needs_no_bias_correction() {
        let x = Blob::from_data(&[1, 2], vec![3.0, -1.0]).unwrap();
        let mut l = layer("batch_norm_param { moving_average_fraction: 0 }");
        let mut top = setup(l.as_mut(), &x).unwrap();
        forward(l.as_mut(), &x, &mut top).unwrap();
        assert_eq!(top.data(), [0.0, 0.0]);
        assert_eq!(l.params()[0].data(), [3.0, -1.0]);
        assert_eq!(l.params()[1].data(), [0.0, 0.0]);
        assert_eq!(l.params()[2].data(), [1.0]);
    }

    #[test]
    fn global_stats_divide_by_the_scale_factor() {
        let x = batch();
        let mut l = layer("batch_norm_param { use_global_stats: true eps: 0.5 }");
        let mut top = setup(l.as_mut(), &x).unwrap();
        // sf = 0: mean and variance are 0, y = x / √eps; the blobs stay.
        forward(l.as_mut(), &x, &mut top).unwrap();
        let expected: Vec<f64> = x
            .data()
            .iter()
            .map(|&v| f64::from(v) / 0.5f64.sqrt())
            .collect();
        assert_close(top.data(), &expected);
        assert!(l
            .params()
            .iter()
            .all(|b| b.data().iter().all(|&v| v == 0.0)));
        // mean = [4, -2] / 2, var = [7, 1.5] / 2.
        l.params_mut()[0].data_mut().copy_from_slice(&[4.0, -4.0]);
        l.params_mut()[1].data_mut().copy_from_slice(&[7.0, 1.0]);
        l.params_mut()[2].data_mut()[0] = 2.0;
        forward(l.as_mut(), &x, &mut top).unwrap();
        let (s0, s1) = (2.0, 1.0);
        assert_close(
            top.data(),
            &[
                -2.0 / s0,
                0.0,
                3.0 / s1,
                3.0 / s1,
                2.0 / s0,
                4.0 / s0,
                3.0 / s1,
                7.0 / s1,
            ],
        );
        assert_eq!(l.params()[2].data(), [2.0]);
        // The gradient is dy / √(var + eps).
        let mut x = x;
        top.diff_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
        assert_eq!(x.diff(), [0.5, 1.0, 3.0, 4.0, 2.5, 3.0, 7.0, 8.0]);
    }

    #[test]
    fn use_global_stats_defaults_by_phase() {
        let x = batch();
        let param = crema_proto::text::parse("batch_norm_param { eps: 0 }", "t").unwrap();
        for (phase, moves) in [(Phase::Train, true), (Phase::Test, false)] {
            let mut l = create(&mut context_in(&param, phase)).unwrap();
            let mut top = setup(l.as_mut(), &x).unwrap();
            forward(l.as_mut(), &x, &mut top).unwrap();
            assert_eq!(l.params()[2].data()[0] == 1.0, moves, "{phase:?}");
        }
    }

    #[test]
    fn bad_parameters_and_shapes_are_errors() {
        for (text, wanted) in [
            (
                "batch_norm_param { eps: -1 }",
                "batch_norm_param.eps: must be",
            ),
            (
                "batch_norm_param { eps: nan }",
                "batch_norm_param.eps: must be",
            ),
            (
                "batch_norm_param { moving_average_fraction: inf }",
                "batch_norm_param.moving_average_fraction: must be",
            ),
        ] {
            let param = crema_proto::text::parse(text, "t").unwrap();
            let err = create(&mut context_in(&param, Phase::Train))
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"));
            assert!(err.0.starts_with(wanted), "{text}: {err}");
        }
        for shape in [&[4][..], &[]] {
            let err = setup(layer("").as_mut(), &Blob::new(shape).unwrap()).unwrap_err();
            assert!(err.0.contains("at least 2 axes"), "{err}");
        }
        // Another number of channels after setup.
        let mut l = layer("");
        let mut top = setup(l.as_mut(), &batch()).unwrap();
        let err = forward(l.as_mut(), &Blob::new(&[2, 3, 2]).unwrap(), &mut top).unwrap_err();
        assert!(
            err.0.contains("has 3 channels") && err.0.contains("have 2"),
            "{err}"
        );
    }

    #[test]
    fn empty_batches_leave_the_statistics() {
        let mut l = layer("");
        let mut x = Blob::new(&[0, 3, 2]).unwrap();
        let mut top = setup(l.as_mut(), &x).unwrap();
        forward(l.as_mut(), &x, &mut top).unwrap();
        assert_eq!(l.params()[2].data(), [0.0]);
        l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
    }

    #[test]
    fn gradient_with_batch_statistics() {
        for shape in [&[4, 3][..], &[2, 3, 2, 2], &[3, 2, 5]] {
            let mut l = layer("batch_norm_param { use_global_stats: false }");
            GradientChecker::default()
                .check(
                    l.as_mut(),
                    &mut [uniform_blob(shape, -2.0, 2.0, 21)],
                    1,
                    &[0],
                )
                .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        }
    }

    #[test]
    fn gradient_with_global_statistics() {
        for shape in [&[4, 3][..], &[2, 3, 2, 2]] {
            let mut l = layer("batch_norm_param { use_global_stats: true }");
            let x = uniform_blob(shape, -2.0, 2.0, 22);
            setup(l.as_mut(), &x).unwrap();
            l.params_mut()[0]
                .data_mut()
                .copy_from_slice(&[0.5, -1.0, 2.0]);
            l.params_mut()[1]
                .data_mut()
                .copy_from_slice(&[1.0, 3.0, 0.25]);
            l.params_mut()[2].data_mut()[0] = 1.5;
            GradientChecker::default()
                .check(l.as_mut(), &mut [x], 1, &[0])
                .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        }
    }

    const NET: &str = "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }
                       layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'h'
                               inner_product_param { num_output: 3 weight_filler { type: 'gaussian' } } }";

    fn bn_net(bn: &str, phase: Phase) -> crate::Result<crate::Net> {
        let definition = format!(
            "{NET}\nlayer {{ name: 'bn' type: 'BatchNorm' bottom: 'h' top: 'h' {bn} }}\n\
             layer {{ name: 'loss' type: 'EuclideanLoss' bottom: 'h' bottom: 'x' top: 'loss' }}"
        );
        net_from_text(&definition, phase, &[])
    }

    #[test]
    fn the_net_gives_the_statistics_lr_mult_0_and_caffe_s_param_specs() {
        let net = bn_net("", Phase::Train).unwrap();
        let bn = net.layer_index("bn").unwrap();
        let infos: Vec<_> = net.params().iter().filter(|p| p.layer == bn).collect();
        assert_eq!(infos.len(), 3);
        assert!(infos.iter().all(|p| p.lr_mult == 0.0), "{infos:?}");
        // As in a caffemodel Caffe saves: three `param { lr_mult: 0 }`.
        let saved = net.to_proto(false);
        let layer = saved.layer.iter().find(|l| l.name() == "bn").unwrap();
        assert_eq!(layer.param.len(), 3);
        assert!(layer.param.iter().all(|p| p.lr_mult == Some(0.0)));
        assert_eq!(layer.blobs.len(), 3);

        // Given specs with lr_mult 0 are kept (decay_mult included); missing ones are added.
        let net = bn_net("param { lr_mult: 0 decay_mult: 0 }", Phase::Train).unwrap();
        let infos: Vec<_> = net.params().iter().filter(|p| p.layer == bn).collect();
        assert_eq!(
            infos
                .iter()
                .map(|p| (p.lr_mult, p.decay_mult))
                .collect::<Vec<_>>(),
            [(0.0, 0.0), (0.0, 1.0), (0.0, 1.0)]
        );

        // Any other lr_mult is an error, as in Caffe.
        let err = bn_net("param { lr_mult: 0 } param { lr_mult: 1 }", Phase::Train)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"bn\"") && err.contains("param 1 has lr_mult 1"),
            "{err}"
        );
        // More specs than blobs.
        let err = bn_net(&"param { lr_mult: 0 } ".repeat(4), Phase::Train)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("4 param specs"), "{err}");
    }

    #[test]
    fn the_solver_never_moves_the_statistics() {
        let mut net = bn_net("", Phase::Train).unwrap();
        let bn = net.layer_index("bn").unwrap();
        net.blob_mut("x")
            .unwrap()
            .data_mut()
            .copy_from_slice(&[1.0, -2.0, 0.5, 3.0, 1.0, -1.0]);
        net.forward().unwrap();
        net.clear_param_diffs();
        net.backward().unwrap();
        let after_forward: Vec<Vec<f32>> = net
            .layer_params(bn)
            .iter()
            .map(|b| b.data().to_vec())
            .collect();
        assert!(after_forward[2][0] == 1.0);
        for rule_type in crate::solver::SOLVER_TYPES {
            let param: crema_proto::SolverParameter = crema_proto::text::parse(
                &format!(
                    "type: \"{rule_type}\" base_lr: 0.1 lr_policy: \"fixed\" weight_decay: 0.5"
                ),
                "solver.prototxt",
            )
            .unwrap();
            // Even with a gradient in the diffs, the statistics stay.
            for blob in net.layer_params_mut(bn) {
                blob.diff_mut().fill(3.0);
            }
            let mut rule = crate::solver::create_rule(&param).unwrap();
            crate::solver::apply_update(&mut net, rule.as_mut(), &param, 0).unwrap();
            let now: Vec<Vec<f32>> = net
                .layer_params(bn)
                .iter()
                .map(|b| b.data().to_vec())
                .collect();
            assert_eq!(now, after_forward, "{rule_type}");
        }
    }

    #[test]
    fn blobs_of_the_wrong_shape_in_the_prototxt_are_errors() {
        let blob = |dims: &str, values: &str| format!("blobs {{ shape {{ {dims} }} {values} }}");
        let good = [
            blob("dim: 3", "data: 1 data: 2 data: 3"),
            blob("dim: 3", "data: 4 data: 5 data: 6"),
            blob("dim: 1", "data: 2"),
        ];
        let net = bn_net(&good.concat(), Phase::Test).unwrap();
        let bn = net.layer_index("bn").unwrap();
        assert_eq!(net.layer_params(bn)[1].data(), [4.0, 5.0, 6.0]);
        assert_eq!(net.layer_params(bn)[2].data(), [2.0]);

        let wrong = [
            good[0].clone(),
            blob("dim: 4", "data: 1 data: 2 data: 3 data: 4"),
            good[2].clone(),
        ];
        let err = bn_net(&wrong.concat(), Phase::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"bn\"")
                && err.contains("blobs[1]")
                && err.contains("4 (4)")
                && err.contains("3 (3)"),
            "{err}"
        );
        let err = bn_net(&good[..2].concat(), Phase::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("gives 2 blobs") && err.contains("3 learnable blobs"),
            "{err}"
        );
    }

    #[test]
    fn in_place_runs_and_test_nets_get_the_statistics() {
        let mut train = bn_net("", Phase::Train).unwrap();
        train
            .blob_mut("x")
            .unwrap()
            .data_mut()
            .copy_from_slice(&[1.0, -2.0, 0.5, 3.0, 1.0, -1.0]);
        train.forward().unwrap();
        let mut test = bn_net("", Phase::Test).unwrap();
        test.copy_params_from(&train).unwrap();
        let bn = test.layer_index("bn").unwrap();
        assert_eq!(test.layer_params(bn)[2].data(), [1.0]);
        assert_eq!(
            test.layer_params(bn)[0].data(),
            train.layer_params(bn)[0].data()
        );
    }
}
