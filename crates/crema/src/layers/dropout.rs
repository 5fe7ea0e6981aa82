//! Dropout: in the TRAIN phase, `y = x · m / (1 - dropout_ratio)` with a fresh mask `m` of independent
//! Bernoulli(1 - dropout_ratio) draws at every forward; in the TEST phase, `y = x`.
//!
//! Parameters: `dropout_param { dropout_ratio }` (default 0.5), the probability of dropping a value, in
//! `[0, 1)`. Gradient: the same mask and scale as the last forward (`dy` unchanged in TEST). The draws come
//! from the layer's own generator, so a net with a given seed drops the same values every run.

use rand::distr::{Bernoulli, Distribution};

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};
use crate::math::Rng;

/// The Dropout layer.
pub struct Dropout {
    /// Whether this is the TRAIN phase (else the layer is the identity).
    train: bool,
    /// `1 / (1 - dropout_ratio)`.
    scale: f32,
    /// Bernoulli(1 - dropout_ratio): whether a value is kept.
    keep: Bernoulli,
    rng: Rng,
    /// Per value, the factor of the last TRAIN forward: `scale` where kept, 0 where dropped.
    mask: Vec<f32>,
}

/// Makes a Dropout layer from its parameters and phase.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let ratio = ctx
        .param
        .dropout_param
        .as_ref()
        .map_or(0.5, |p| p.dropout_ratio());
    if !(0.0..1.0).contains(&ratio) {
        return Err(LayerError::new(format!(
            "dropout_param.dropout_ratio: must be in [0, 1), not {ratio}"
        )));
    }
    let keep = Bernoulli::new(1.0 - f64::from(ratio))
        .map_err(|e| LayerError::new(format!("dropout_param.dropout_ratio: {e}")))?;
    Ok(Box::new(Dropout {
        train: ctx.phase == crema_proto::caffe::Phase::Train,
        scale: 1.0 / (1.0 - ratio),
        keep,
        rng: ctx.rng.clone(),
        mask: Vec::new(),
    }))
}

impl Layer for Dropout {
    fn type_name(&self) -> &'static str {
        "Dropout"
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

    fn state(&self) -> Option<Vec<u8>> {
        Some(crate::math::rng_state(&self.rng))
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        self.rng = crate::math::rng_from_state(state)
            .ok_or_else(|| LayerError::new("the saved random generator state is damaged"))?;
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].reshape_like(bottom[0])?;
        if self.train {
            crate::memory::resize(&mut self.mask, bottom[0].count(), 0.0, || {
                "the dropout mask".into()
            })?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (x, y) = (bottom[0].data(), top[0].data_mut());
        if !self.train {
            y.copy_from_slice(x);
            return Ok(());
        }
        for ((y, &x), m) in y.iter_mut().zip(x).zip(&mut self.mask) {
            *m = if self.keep.sample(&mut self.rng) {
                self.scale
            } else {
                0.0
            };
            *y = x * *m;
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
        let (dy, dx) = (top[0].diff(), bottom[0].diff_mut());
        if !self.train {
            dx.copy_from_slice(dy);
            return Ok(());
        }
        for ((dx, &dy), &m) in dx.iter_mut().zip(dy).zip(&self.mask) {
            *dx = dy * m;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::{context, context_in};
    use crate::testing::{uniform_blob, GradientChecker};
    use crema_proto::caffe::Phase;
    use crema_proto::LayerParameter;

    fn param(ratio: f32) -> LayerParameter {
        LayerParameter {
            dropout_param: Some(crema_proto::caffe::DropoutParameter {
                dropout_ratio: Some(ratio),
            }),
            ..Default::default()
        }
    }

    /// Values away from 0, so a zero in the top means a dropped value.
    fn inputs(shape: &[usize], seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, -1.0, 1.0, seed);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    fn forward(layer: &mut dyn Layer, bottom: &Blob, top: &mut Blob) {
        layer.reshape(&[bottom], &mut [&mut *top]).unwrap();
        layer.forward(&[bottom], &mut [top]).unwrap();
    }

    #[test]
    fn a_restored_state_draws_the_same_masks() {
        let param = param(0.5);
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = inputs(&[64], 3);
        let (mut top, mut again) = (Blob::default(), Blob::default());
        forward(layer.as_mut(), &bottom, &mut top);
        let saved = layer.state().unwrap();
        forward(layer.as_mut(), &bottom, &mut top);
        let mut restored = create(&mut context(&param)).unwrap();
        restored.set_state(&saved).unwrap();
        forward(restored.as_mut(), &bottom, &mut again);
        assert_eq!(again.data(), top.data());
        assert!(restored.set_state(&saved[..7]).is_err());
    }

    #[test]
    fn test_phase_is_identity() {
        let param = param(0.5);
        let mut layer = create(&mut context_in(&param, Phase::Test)).unwrap();
        let mut bottom = inputs(&[2, 3, 4], 1);
        let mut top = Blob::default();
        forward(layer.as_mut(), &bottom, &mut top);
        assert_eq!(top.data(), bottom.data());
        top.diff_mut()
            .copy_from_slice(uniform_blob(&[24], -1.0, 1.0, 2).data());
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        assert_eq!(bottom.diff(), top.diff());
    }

    #[test]
    fn train_drops_at_the_ratio_scales_kept_values_and_backward_uses_the_mask() {
        for ratio in [0.5f32, 0.2, 0.8] {
            let param = param(ratio);
            let mut layer = create(&mut context(&param)).unwrap();
            let mut bottom = inputs(&[100, 100], 3);
            let mut top = Blob::default();
            forward(layer.as_mut(), &bottom, &mut top);
            let scale = 1.0 / (1.0 - ratio);
            let mut dropped = 0usize;
            for (&y, &x) in top.data().iter().zip(bottom.data()) {
                if y == 0.0 {
                    dropped += 1;
                } else {
                    assert_eq!(y, x * scale);
                }
            }
            let rate = dropped as f32 / 10_000.0;
            // The standard deviation of the rate is at most 0.005.
            assert!(
                (rate - ratio).abs() < 0.025,
                "ratio {ratio}: dropped {rate}"
            );

            let dy = uniform_blob(&[100, 100], -1.0, 1.0, 4);
            top.diff_mut().copy_from_slice(dy.data());
            layer
                .backward(&[&top], &[true], &mut [&mut bottom])
                .unwrap();
            for ((&dx, &dy), &y) in bottom.diff().iter().zip(dy.data()).zip(top.data()) {
                assert_eq!(dx, if y == 0.0 { 0.0 } else { dy * scale });
            }
        }
    }

    #[test]
    fn each_forward_draws_a_new_mask() {
        let param = param(0.5);
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = inputs(&[1000], 5);
        let (mut first, mut second) = (Blob::default(), Blob::default());
        forward(layer.as_mut(), &bottom, &mut first);
        forward(layer.as_mut(), &bottom, &mut second);
        assert_ne!(first.data(), second.data());
    }

    #[test]
    fn zero_ratio_keeps_everything() {
        let param = param(0.0);
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = inputs(&[50], 6);
        let mut top = Blob::default();
        forward(layer.as_mut(), &bottom, &mut top);
        assert_eq!(top.data(), bottom.data());
    }

    #[test]
    fn ratio_must_be_in_zero_to_one() {
        for ratio in [1.0, 1.5, -0.1, f32::NAN] {
            let param = param(ratio);
            let err = create(&mut context(&param)).err().unwrap();
            assert!(err.0.starts_with("dropout_param.dropout_ratio:"), "{err}");
        }
    }

    #[test]
    fn gradient_in_test_phase() {
        for ratio in [0.5, 0.3] {
            for (seed, shape) in [(1, &[10][..]), (2, &[2, 3, 4, 5])] {
                let param = param(ratio);
                let mut layer = create(&mut context_in(&param, Phase::Test)).unwrap();
                GradientChecker::default()
                    .check(layer.as_mut(), &mut [inputs(shape, seed)], 1, &[0])
                    .unwrap();
            }
        }
    }
}
