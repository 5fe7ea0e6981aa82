//! Fillers: how learnable blobs get their first values (`weight_filler { type: "xavier" }`).
//!
//! constant, uniform, gaussian (optionally sparse), positive_unitball, xavier, msra and bilinear, with
//! `variance_norm` FAN_IN, FAN_OUT or AVERAGE for xavier and msra, as Caffe defines them.

use crema_proto::caffe::{filler_parameter::VarianceNorm, FillerParameter};
use rand::Rng as _;
use rand_distr::{Distribution, Normal};

use crate::blob::Blob;
use crate::layer::{LayerError, LayerResult};
use crate::math::Rng;

/// Fills `blob` as `filler` says, drawing from `rng`. `field` names the filler in errors (`weight_filler`).
pub fn fill(blob: &mut Blob, filler: &FillerParameter, rng: &mut Rng, field: &str) -> LayerResult {
    let count = blob.count();
    let fan_in = if blob.num_axes() > 0 && blob.shape()[0] > 0 {
        count / blob.shape()[0]
    } else {
        count
    };
    let fan_out = if blob.num_axes() > 1 && blob.shape()[1] > 0 {
        count / blob.shape()[1]
    } else {
        count
    };
    let fan = || match filler.variance_norm() {
        VarianceNorm::FanIn => fan_in as f32,
        VarianceNorm::FanOut => fan_out as f32,
        VarianceNorm::Average => (fan_in + fan_out) as f32 / 2.0,
    };
    let uniform = |blob: &mut Blob, rng: &mut Rng, low: f32, high: f32| -> LayerResult {
        if !low.is_finite() || !high.is_finite() {
            return Err(LayerError::new(format!(
                "{field}: min {low} and max {high} must be finite numbers"
            )));
        }
        if low > high {
            return Err(LayerError::new(format!(
                "{field}: min {low} is above max {high}"
            )));
        }
        let wide = !(high - low).is_finite();
        for v in blob.data_mut() {
            *v = if low == high {
                low
            } else if wide {
                // The span overflows f32 (e.g. -3e38..3e38): draw in f64, where it fits.
                let (low, high) = (f64::from(low), f64::from(high));
                (low + (high - low) * rng.random::<f64>()) as f32
            } else {
                rng.random_range(low..=high)
            };
        }
        Ok(())
    };
    let gaussian = |blob: &mut Blob, rng: &mut Rng, mean: f32, std: f32| -> LayerResult {
        if !mean.is_finite() || !std.is_finite() || std < 0.0 {
            return Err(LayerError::new(format!(
                "{field}: mean {mean} and std {std} must be finite, std non-negative"
            )));
        }
        let normal = Normal::new(mean, std).map_err(|_| {
            LayerError::new(format!("{field}: std {std} must be a non-negative number"))
        })?;
        for v in blob.data_mut() {
            *v = normal.sample(rng);
        }
        Ok(())
    };
    match filler.r#type() {
        "constant" => {
            let value = filler.value();
            if !value.is_finite() {
                return Err(LayerError::new(format!(
                    "{field}: value {value} is not a finite number"
                )));
            }
            blob.data_mut().fill(value)
        }
        "uniform" => uniform(blob, rng, filler.min(), filler.max())?,
        "gaussian" => {
            gaussian(blob, rng, filler.mean(), filler.std())?;
            if filler.sparse() >= 0 {
                let outputs = blob.shape().first().copied().unwrap_or(1).max(1);
                let keep = (filler.sparse() as f64 / outputs as f64).min(1.0);
                for v in blob.data_mut() {
                    if !rng.random_bool(keep) {
                        *v = 0.0;
                    }
                }
            }
        }
        "positive_unitball" => {
            uniform(blob, rng, 0.0, 1.0)?;
            let rows = blob.shape().first().copied().unwrap_or(1).max(1);
            let width = count / rows;
            if width > 0 {
                for row in blob.data_mut().chunks_exact_mut(width) {
                    let sum: f32 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
        }
        "xavier" => {
            let scale = (3.0 / fan()).sqrt();
            uniform(blob, rng, -scale, scale)?;
        }
        "msra" => {
            let std = (2.0 / fan()).sqrt();
            gaussian(blob, rng, 0.0, std)?;
        }
        "bilinear" => {
            let shape = blob.shape();
            if shape.len() != 4 || shape[2] != shape[3] {
                return Err(LayerError::new(format!(
                    "{field}: bilinear needs a 4-D blob with equal height and width, not {shape:?}"
                )));
            }
            let width = shape[3];
            let f = (width as f32 / 2.0).ceil();
            let c = (2.0 * f - 1.0 - f % 2.0) / (2.0 * f);
            for (i, v) in blob.data_mut().iter_mut().enumerate() {
                let x = (i % width) as f32;
                let y = ((i / width) % width) as f32;
                *v = (1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs());
            }
        }
        other => {
            return Err(LayerError::new(format!(
                "{field}: unknown filler type \"{other}\" (constant, uniform, gaussian, positive_unitball, xavier, msra, bilinear)"
            )))
        }
    }
    Ok(())
}

/// A new blob of `shape` filled as `filler` says (constant 0 when the prototxt gives none, as Caffe's default
/// FillerParameter): a layer's weights or bias. `field` names the filler in errors.
pub fn filled_blob(
    shape: &[usize],
    filler: Option<&FillerParameter>,
    rng: &mut Rng,
    field: &str,
) -> LayerResult<Blob> {
    let mut blob = Blob::new(shape)?;
    fill(&mut blob, &filler.cloned().unwrap_or_default(), rng, field)?;
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(kind: &str, shape: &[usize], edit: impl FnOnce(&mut FillerParameter)) -> Blob {
        let mut filler = FillerParameter {
            r#type: Some(kind.into()),
            ..Default::default()
        };
        edit(&mut filler);
        let mut blob = Blob::new(shape).unwrap();
        fill(
            &mut blob,
            &filler,
            &mut crate::math::rng(7, 0),
            "weight_filler",
        )
        .unwrap();
        blob
    }

    fn mean_and_variance(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    #[test]
    fn constant_and_uniform() {
        assert!(filled("constant", &[3, 2], |f| f.value = Some(0.25))
            .data()
            .iter()
            .all(|&v| v == 0.25));
        let blob = filled("uniform", &[100, 100], |f| {
            (f.min, f.max) = (Some(-2.0), Some(3.0))
        });
        assert!(blob.data().iter().all(|&v| (-2.0..=3.0).contains(&v)));
        let (mean, _) = mean_and_variance(blob.data());
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }

    #[test]
    fn xavier_and_msra_variances_follow_the_fan() {
        // fan_in = 200, fan_out = 100 * 200 / 50 ... shape [100, 200]: fan_in 200, fan_out 100.
        let xavier = filled("xavier", &[100, 200], |_| {});
        let (_, var) = mean_and_variance(xavier.data());
        assert!((var - 1.0 / 200.0).abs() < 0.0005, "{var}"); // uniform(-s, s) has variance s²/3 = 1/fan_in
        let msra = filled("msra", &[100, 200], |f| {
            f.variance_norm = Some(VarianceNorm::FanOut as i32)
        });
        let (_, var) = mean_and_variance(msra.data());
        assert!((var - 2.0 / 100.0).abs() < 0.002, "{var}");
    }

    #[test]
    fn gaussian_sparse_keeps_about_sparse_per_output() {
        let blob = filled("gaussian", &[50, 400], |f| f.sparse = Some(10));
        let non_zero = blob.data().iter().filter(|&&v| v != 0.0).count() as f64;
        let expected = 400.0 * 10.0; // probability 10/50 of 20000 values
        assert!((non_zero - expected).abs() < 300.0, "{non_zero}");
    }

    #[test]
    fn positive_unitball_rows_sum_to_one() {
        let blob = filled("positive_unitball", &[4, 6], |_| {});
        for row in blob.data().chunks(6) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(row.iter().all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn bilinear_is_the_upsampling_kernel() {
        let blob = filled("bilinear", &[1, 1, 4, 4], |_| {});
        // f = 2, c = 0.375: weights per axis 0.25, 0.75, 0.75, 0.25.
        let axis = [0.25f32, 0.75, 0.75, 0.25];
        for y in 0..4 {
            for x in 0..4 {
                assert!((blob.data()[y * 4 + x] - axis[x] * axis[y]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn unknown_type_names_the_field() {
        let mut blob = Blob::new(&[2]).unwrap();
        let filler = FillerParameter {
            r#type: Some("orthogonal".into()),
            ..Default::default()
        };
        let err = fill(
            &mut blob,
            &filler,
            &mut crate::math::rng(1, 0),
            "weight_filler",
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("weight_filler: unknown filler type \"orthogonal\""),
            "{err}"
        );
    }

    fn fill_err(kind: &str, edit: impl FnOnce(&mut FillerParameter)) -> String {
        let mut filler = FillerParameter {
            r#type: Some(kind.into()),
            ..Default::default()
        };
        edit(&mut filler);
        let mut blob = Blob::new(&[4]).unwrap();
        fill(
            &mut blob,
            &filler,
            &mut crate::math::rng(1, 0),
            "data_filler",
        )
        .unwrap_err()
        .0
    }

    #[test]
    fn a_uniform_span_past_f32_is_drawn_in_f64() {
        let blob = filled("uniform", &[1000], |f| {
            (f.min, f.max) = (Some(-3e38), Some(3e38))
        });
        assert!(blob.data().iter().all(|v| (-3e38..=3e38).contains(v)));
        assert!(blob.data().iter().any(|&v| v < -1e38) && blob.data().iter().any(|&v| v > 1e38));
    }

    #[test]
    fn non_finite_parameters_are_refused_naming_the_field() {
        let err = fill_err("uniform", |f| {
            (f.min, f.max) = (Some(0.0), Some(f32::INFINITY))
        });
        assert_eq!(err, "data_filler: min 0 and max inf must be finite numbers");
        let err = fill_err("uniform", |f| f.min = Some(f32::NAN));
        assert!(err.contains("must be finite"), "{err}");
        let err = fill_err("gaussian", |f| f.std = Some(f32::INFINITY));
        assert!(err.starts_with("data_filler: mean 0 and std inf"), "{err}");
        let err = fill_err("constant", |f| f.value = Some(f32::NAN));
        assert_eq!(err, "data_filler: value NaN is not a finite number");
    }
}
