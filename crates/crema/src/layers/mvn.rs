//! MVN (mean-variance normalization): `y = x − mean`, or with `normalize_variance` (the default)
//! `y = (x − mean) / (√var + eps)`, the mean and (biased) variance over each (n, c)'s H × W values, or over each
//! n's C × H × W values with `across_channels`. As in Caffe, `eps` is added to the standard deviation.
//!
//! Parameters: `mvn_param { normalize_variance (true) across_channels (false) eps (1e-9) }`. The bottom has at
//! most 4 axes, read as Caffe's num, channels, height, width (missing axes are 1); the top is 4-D, as Caffe
//! makes it (`N × C` in, `N × C × 1 × 1` out). Gradient, as Caffe computes it (with `m` values per group):
//! `dx = (dy − Σdy/m − y · Σ(dy · y)/m) / (√var + eps)`, or `dx = dy − Σdy/m` without variance normalization.

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};

/// The MVN layer.
pub struct Mvn {
    normalize_variance: bool,
    across_channels: bool,
    eps: f32,
    /// How many values each group of the normalization holds (`dim` in Caffe).
    dim: usize,
    /// Per group: `√var + eps` of the last forward.
    std: Vec<f32>,
}

/// Makes an MVN layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.mvn_param.unwrap_or_default();
    let eps = p.eps();
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(LayerError::new(format!(
            "mvn_param.eps: must be a finite number ≥ 0, not {eps}"
        )));
    }
    Ok(Box::new(Mvn {
        normalize_variance: p.normalize_variance(),
        across_channels: p.across_channels(),
        eps,
        dim: 0,
        std: Vec::new(),
    }))
}

/// The mean of `values` (in f64, rounded to f32 as Caffe's float sums end).
fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64) as f32
}

impl Layer for Mvn {
    fn type_name(&self) -> &'static str {
        "MVN"
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

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        if x.num_axes() > 4 {
            return Err(LayerError::new(format!(
                "MVN takes a bottom of at most 4 axes (Caffe's num, channels, height, width), not shape {:?}",
                x.shape()
            )));
        }
        let dims = [0, 1, 2, 3].map(|i| x.legacy_dim(i));
        let groups = if self.across_channels {
            dims[0]
        } else {
            dims[0] * dims[1]
        };
        self.dim = x.count().checked_div(groups).unwrap_or(0);
        crate::memory::resize(&mut self.std, groups, 0.0, || {
            "the MVN standard deviations".into()
        })?;
        Ok(top[0].reshape(&dims)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.dim == 0 {
            return Ok(());
        }
        let groups = bottom[0]
            .data()
            .chunks_exact(self.dim)
            .zip(top[0].data_mut().chunks_exact_mut(self.dim))
            .zip(self.std.iter_mut());
        for ((x, y), std) in groups {
            let mean = mean(x);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - mean;
            }
            if self.normalize_variance {
                let var =
                    y.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / self.dim as f64;
                *std = (var as f32).sqrt() + self.eps;
                for y in y.iter_mut() {
                    *y /= *std;
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
        if !propagate_down[0] || self.dim == 0 {
            return Ok(());
        }
        let m = self.dim as f64;
        let groups = top[0]
            .data()
            .chunks_exact(self.dim)
            .zip(top[0].diff().chunks_exact(self.dim))
            .zip(bottom[0].diff_mut().chunks_exact_mut(self.dim))
            .zip(&self.std);
        for (((y, dy), dx), &std) in groups {
            let mean_dy = mean(dy);
            if self.normalize_variance {
                let mean_dy_y = (y
                    .iter()
                    .zip(dy)
                    .map(|(&y, &dy)| f64::from(y) * f64::from(dy))
                    .sum::<f64>()
                    / m) as f32;
                for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = (dy - mean_dy - y * mean_dy_y) / std;
                }
            } else {
                for (dx, &dy) in dx.iter_mut().zip(dy) {
                    *dx = dy - mean_dy;
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

    fn run(layer: &mut dyn Layer, bottom: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        layer.reshape(&[bottom], &mut [&mut top])?;
        layer.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    fn assert_close(actual: &[f32], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (&a, &e) in actual.iter().zip(expected) {
            assert!(
                (f64::from(a) - e).abs() <= 2e-6 * e.abs().max(1.0),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    /// Two images, two channels of 2 values: [1, 3 | 0, 4] and [2, 2 | -1, 5].
    fn x() -> Blob {
        Blob::from_data(&[2, 2, 1, 2], vec![1.0, 3.0, 0.0, 4.0, 2.0, 2.0, -1.0, 5.0]).unwrap()
    }

    #[test]
    fn per_channel_by_hand() {
        // Means 2, 2, 2, 2; standard deviations 1, 2, 0, 3.
        let top = run(layer("mvn_param { eps: 0.5 }").as_mut(), &x()).unwrap();
        assert_close(
            top.data(),
            &[
                -1.0 / 1.5,
                1.0 / 1.5,
                -2.0 / 2.5,
                2.0 / 2.5,
                0.0,
                0.0,
                -3.0 / 3.5,
                3.0 / 3.5,
            ],
        );
        let top = run(
            layer("mvn_param { normalize_variance: false }").as_mut(),
            &x(),
        )
        .unwrap();
        assert_eq!(top.data(), [-1.0, 1.0, -2.0, 2.0, 0.0, 0.0, -3.0, 3.0]);
    }

    #[test]
    fn across_channels_by_hand() {
        // Image 0: [1, 3, 0, 4], mean 2, variance (1 + 1 + 4 + 4)/4 = 2.5. Image 1: [2, 2, -1, 5], mean 2,
        // variance (0 + 0 + 9 + 9)/4 = 4.5.
        let top = run(
            layer("mvn_param { across_channels: true eps: 0 }").as_mut(),
            &x(),
        )
        .unwrap();
        let (s0, s1) = (2.5f64.sqrt(), 4.5f64.sqrt());
        assert_close(
            top.data(),
            &[
                -1.0 / s0,
                1.0 / s0,
                -2.0 / s0,
                2.0 / s0,
                0.0,
                0.0,
                -3.0 / s1,
                3.0 / s1,
            ],
        );
        let text = "mvn_param { across_channels: true normalize_variance: false }";
        let top = run(layer(text).as_mut(), &x()).unwrap();
        assert_eq!(top.data(), [-1.0, 1.0, -2.0, 2.0, 0.0, 0.0, -3.0, 3.0]);
    }

    #[test]
    fn the_top_is_4d_as_in_caffe() {
        let x = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        // One value per (n, c): everything becomes 0.
        let top = run(layer("").as_mut(), &x).unwrap();
        assert_eq!(top.shape(), [2, 3, 1, 1]);
        assert_eq!(top.data(), [0.0; 6]);
        let top = run(
            layer("mvn_param { across_channels: true eps: 0 }").as_mut(),
            &x,
        )
        .unwrap();
        let s = (2.0f64 / 3.0).sqrt();
        assert_close(
            top.data(),
            &[-1.0 / s, 0.0, 1.0 / s, -1.0 / s, 0.0, 1.0 / s],
        );
    }

    #[test]
    fn bad_parameters_and_shapes_are_errors() {
        for text in ["mvn_param { eps: -1e-9 }", "mvn_param { eps: nan }"] {
            let param = crema_proto::text::parse(text, "t").unwrap();
            let err = create(&mut crate::layers::test_support::context(&param))
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"));
            assert!(err.0.starts_with("mvn_param.eps: must be"), "{text}: {err}");
        }
        let err = run(layer("").as_mut(), &Blob::new(&[1, 2, 2, 2, 2]).unwrap()).unwrap_err();
        assert!(err.0.contains("at most 4 axes"), "{err}");
    }

    #[test]
    fn empty_bottoms_are_fine() {
        for shape in [&[0, 3, 2, 2][..], &[2, 0, 2], &[2, 3, 0]] {
            for text in ["", "mvn_param { across_channels: true }"] {
                let mut l = layer(text);
                let mut bottom = Blob::new(shape).unwrap();
                let mut top = run(l.as_mut(), &bottom).unwrap();
                top.diff_mut().fill(1.0);
                l.backward(&[&top], &[true], &mut [&mut bottom]).unwrap();
            }
        }
    }

    #[test]
    fn gradient() {
        for settings in [
            "",
            "across_channels: true",
            "normalize_variance: false",
            "normalize_variance: false across_channels: true",
        ] {
            for shape in [&[2, 3, 2, 3][..], &[3, 2, 4], &[2, 5]] {
                if shape.len() == 2 && !settings.contains("across") {
                    continue; // one value per group: y is 0 whatever x is
                }
                let mut l = layer(&format!("mvn_param {{ {settings} }}"));
                GradientChecker::default()
                    .check(
                        l.as_mut(),
                        &mut [uniform_blob(shape, -2.0, 2.0, 31)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("{settings} {shape:?}: {e}"));
            }
        }
    }
}
