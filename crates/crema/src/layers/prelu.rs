//! PReLU: `y = max(0, x) + a_c · min(0, x)`, a ReLU whose negative slopes `a_c` are learned, one per channel
//! (axis 1), or one for the whole blob.
//!
//! Parameters: `prelu_param { filler channel_shared }`. The learnable blob holds `channels` slopes (shape
//! `[channels]`), or a single slope (shape `[]`) when `channel_shared`; it is filled by `filler`, a constant
//! 0.25 by default. The bottom needs at least 2 axes unless `channel_shared`. Gradients (Caffe's convention at
//! 0): `dx = dy` where `x > 0`, `a_c · dy` elsewhere; `da_c += Σ dy · x` over the values of channel `c` with
//! `x <= 0`.

use crema_proto::caffe::FillerParameter;

use crate::blob::Blob;
use crate::filler;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};
use crate::math::Rng;

/// The PReLU layer.
pub struct PReLU {
    channel_shared: bool,
    filler: FillerParameter,
    rng: Rng,
    /// The slopes, once [`Layer::setup`] has made them.
    blobs: Vec<Blob>,
    /// Slopes indexed per run of `inner` values: the channel is `run % channels`.
    channels: usize,
    /// Values per channel run: the count from axis 2, or the whole count when the slope is shared.
    inner: usize,
}

/// Makes a PReLU layer from its parameters; the slopes are made at setup, when the channels are known.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.prelu_param.clone().unwrap_or_default();
    let filler = param.filler.clone().unwrap_or_else(|| FillerParameter {
        r#type: Some("constant".into()),
        value: Some(0.25),
        ..Default::default()
    });
    Ok(Box::new(PReLU {
        channel_shared: param.channel_shared(),
        filler,
        rng: ctx.rng.clone(),
        blobs: Vec::new(),
        channels: 1,
        inner: 0,
    }))
}

impl PReLU {
    /// The number of slopes `bottom` needs, or an error when it has too few axes.
    fn slopes_for(&self, bottom: &Blob) -> LayerResult<usize> {
        if self.channel_shared {
            return Ok(1);
        }
        if bottom.num_axes() < 2 {
            return Err(LayerError::new(format!(
                "PReLU needs a bottom with at least 2 axes (channels on axis 1) unless prelu_param.channel_shared \
                 is set; got shape {}",
                bottom.shape_string()
            )));
        }
        Ok(bottom.shape()[1])
    }
}

impl Layer for PReLU {
    fn type_name(&self) -> &'static str {
        "PReLU"
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
        let slopes = self.slopes_for(bottom[0])?;
        if self.blobs.is_empty() {
            let shape: &[usize] = if self.channel_shared { &[] } else { &[slopes] };
            let mut blob = Blob::new(shape)?;
            filler::fill(&mut blob, &self.filler, &mut self.rng, "prelu_param.filler")?;
            self.blobs.push(blob);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let slopes = self.slopes_for(bottom[0])?;
        let have = self.blobs.first().map_or(0, Blob::count);
        if have != slopes {
            return Err(LayerError::new(format!(
                "PReLU has {have} slopes but the bottom (shape {}) needs {slopes}{}",
                bottom[0].shape_string(),
                if self.channel_shared {
                    " (prelu_param.channel_shared)"
                } else {
                    ", one per channel of axis 1"
                }
            )));
        }
        (self.channels, self.inner) = if self.channel_shared {
            (1, bottom[0].count())
        } else {
            (slopes, bottom[0].count_from(2))
        };
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if bottom[0].count() == 0 {
            return Ok(());
        }
        let slopes = self.blobs[0].data();
        let runs = top[0]
            .data_mut()
            .chunks_exact_mut(self.inner)
            .zip(bottom[0].data().chunks_exact(self.inner));
        for (run, (ys, xs)) in runs.enumerate() {
            let a = slopes[run % self.channels];
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = if x > 0.0 { x } else { a * x };
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
        if bottom[0].count() == 0 {
            return Ok(());
        }
        let (inner, channels) = (self.inner, self.channels);
        let dy = top[0].diff();
        // Slope gradients, accumulated into the parameter's diff.
        {
            let slope_diff = self.blobs[0].diff_mut();
            for (run, (dys, xs)) in dy
                .chunks_exact(inner)
                .zip(bottom[0].data().chunks_exact(inner))
                .enumerate()
            {
                let sum: f64 = dys
                    .iter()
                    .zip(xs)
                    .filter(|(_, &x)| x <= 0.0)
                    .map(|(&dy, &x)| f64::from(dy) * f64::from(x))
                    .sum();
                slope_diff[run % channels] += sum as f32;
            }
        }
        if propagate_down[0] {
            let slopes = self.blobs[0].data();
            let (x, dx) = bottom[0].data_and_diff_mut();
            let runs = dx
                .chunks_exact_mut(inner)
                .zip(x.chunks_exact(inner))
                .zip(dy.chunks_exact(inner));
            for (run, ((dxs, xs), dys)) in runs.enumerate() {
                let a = slopes[run % channels];
                for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                    *dx = if x > 0.0 { dy } else { a * dy };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};
    use crema_proto::LayerParameter;

    fn param(text: &str) -> LayerParameter {
        crema_proto::text::parse(text, "t").unwrap()
    }

    /// Inputs kept away from the kink at 0.
    fn inputs(shape: &[usize], seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, -1.0, 1.0, seed);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    fn set_up(layer: &mut dyn Layer, bottom: &Blob, top: &mut Blob) {
        layer.setup(&[bottom], &mut [&mut *top]).unwrap();
        layer.reshape(&[bottom], &mut [top]).unwrap();
    }

    #[test]
    fn default_slopes_are_a_quarter_per_channel() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = Blob::new(&[2, 3, 4]).unwrap();
        set_up(layer.as_mut(), &bottom, &mut Blob::default());
        assert_eq!(layer.params().len(), 1);
        assert_eq!(layer.params()[0].shape(), [3]);
        assert_eq!(layer.params()[0].data(), [0.25; 3]);

        let param = self::param("prelu_param { channel_shared: true }");
        let mut layer = create(&mut context(&param)).unwrap();
        set_up(layer.as_mut(), &bottom, &mut Blob::default());
        assert_eq!(layer.params()[0].shape(), [] as [usize; 0]);
        assert_eq!(layer.params()[0].data(), [0.25]);
    }

    #[test]
    fn forward_and_backward_by_hand() {
        // Shape [2, 2, 2]: channel 0 has slope 0.5, channel 1 slope -2.
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let mut bottom =
            Blob::from_data(&[2, 2, 2], vec![1.0, -2.0, -1.0, 3.0, -4.0, 0.0, 2.0, -3.0]).unwrap();
        let mut top = Blob::default();
        set_up(layer.as_mut(), &bottom, &mut top);
        layer.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[0.5, -2.0]);
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), [1.0, -1.0, 2.0, 3.0, -2.0, 0.0, 2.0, 6.0]);

        top.diff_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        layer.params_mut()[0]
            .diff_mut()
            .copy_from_slice(&[10.0, 20.0]);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        assert_eq!(bottom.diff(), [1.0, 1.0, -6.0, 4.0, 2.5, 3.0, 7.0, -16.0]);
        // Channel 0: 2·(-2) + 5·(-4) + 6·0 = -24; channel 1: 3·(-1) + 8·(-3) = -27; added to 10 and 20.
        assert_eq!(layer.params()[0].diff(), [-14.0, -7.0]);

        // Without propagate_down the bottom diff is untouched but the slopes still learn.
        bottom.diff_mut().fill(9.0);
        layer
            .backward(&[&top], &[false], &mut [&mut bottom])
            .unwrap();
        assert!(bottom.diff().iter().all(|&v| v == 9.0));
        assert_eq!(layer.params()[0].diff(), [-38.0, -34.0]);
    }

    #[test]
    fn shared_slope_by_hand() {
        let param =
            param("prelu_param { channel_shared: true filler { type: \"constant\" value: 0.1 } }");
        let mut layer = create(&mut context(&param)).unwrap();
        let mut bottom = Blob::from_data(&[2, 2], vec![-1.0, 2.0, -3.0, 4.0]).unwrap();
        let mut top = Blob::default();
        set_up(layer.as_mut(), &bottom, &mut top);
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        let expected = [-0.1f32, 2.0, -0.3, 4.0];
        assert!(top
            .data()
            .iter()
            .zip(expected)
            .all(|(&y, e)| (y - e).abs() < 1e-7));
        top.diff_mut().fill(1.0);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        assert_eq!(layer.params()[0].diff(), [-4.0]);
        assert!(bottom
            .diff()
            .iter()
            .zip([0.1f32, 1.0, 0.1, 1.0])
            .all(|(&d, e)| (d - e).abs() < 1e-7));
    }

    #[test]
    fn shapes_are_checked() {
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        let flat = Blob::new(&[5]).unwrap();
        let err = layer
            .setup(&[&flat], &mut [&mut Blob::default()])
            .unwrap_err();
        assert!(err.0.contains("prelu_param.channel_shared"), "{err}");

        // A shared slope accepts any shape.
        let param = self::param("prelu_param { channel_shared: true }");
        let mut layer = create(&mut context(&param)).unwrap();
        set_up(layer.as_mut(), &flat, &mut Blob::default());

        // The channel count may not change after setup.
        let param = LayerParameter::default();
        let mut layer = create(&mut context(&param)).unwrap();
        set_up(
            layer.as_mut(),
            &Blob::new(&[2, 3]).unwrap(),
            &mut Blob::default(),
        );
        let err = layer
            .reshape(&[&Blob::new(&[2, 4]).unwrap()], &mut [&mut Blob::default()])
            .unwrap_err();
        assert!(err.0.contains("3 slopes"), "{err}");
    }

    #[test]
    fn gradient() {
        let settings = [
            "",
            "prelu_param { filler { type: \"uniform\" min: -1 max: 1 } }",
            "prelu_param { channel_shared: true }",
            "prelu_param { channel_shared: true filler { type: \"constant\" value: -0.7 } }",
        ];
        for text in settings {
            for (seed, shape) in [(1, &[2, 3][..]), (2, &[2, 3, 4, 5]), (3, &[3, 2, 5])] {
                let param = param(text);
                let mut layer = create(&mut context(&param)).unwrap();
                GradientChecker::default()
                    .check(layer.as_mut(), &mut [inputs(shape, seed)], 1, &[0])
                    .unwrap_or_else(|e| panic!("{text} {shape:?}: {e}"));
            }
        }
    }
}
