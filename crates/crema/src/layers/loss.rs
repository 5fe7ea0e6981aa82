//! What every loss layer shares: `loss_param { ignore_label normalization normalize }` and the normalizer.
//!
//! The normalizer divides the summed loss: FULL by every position (outer × inner), VALID by the positions whose
//! label is not ignored (every position when there is no ignore label), BATCH_SIZE by outer, NONE by 1; the
//! result is clamped to at least 1, so a batch whose labels are all ignored has loss 0 and gradient 0.

use crema_proto::caffe::loss_parameter::NormalizationMode;
use crema_proto::LayerParameter;

use crate::layer::{LayerError, LayerResult};

/// How a loss layer normalizes, and which label it ignores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossSettings {
    pub normalization: NormalizationMode,
    pub ignore_label: Option<i32>,
}

/// What to do with the deprecated `loss_param { normalize }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeprecatedNormalize {
    /// Map `normalize: true/false` to VALID/BATCH_SIZE when `normalization` is absent (SoftmaxWithLoss).
    Map,
    /// Refuse it with a clear error, as Caffe's InfogainLoss does.
    Refuse,
}

/// Reads `loss_param` of `param`.
pub fn loss_settings(
    param: &LayerParameter,
    deprecated: DeprecatedNormalize,
) -> LayerResult<LossSettings> {
    let loss = param.loss_param.unwrap_or_default();
    let normalization = match (loss.normalization, loss.normalize, deprecated) {
        (_, Some(_), DeprecatedNormalize::Refuse) => {
            return Err(LayerError::new(
                "loss_param.normalize is deprecated and not accepted by this layer; use \
                 loss_param { normalization: VALID } (or FULL, BATCH_SIZE, NONE) instead",
            ))
        }
        (None, Some(true), DeprecatedNormalize::Map) => NormalizationMode::Valid,
        (None, Some(false), DeprecatedNormalize::Map) => NormalizationMode::BatchSize,
        _ => loss.normalization(),
    };
    Ok(LossSettings {
        normalization,
        ignore_label: loss.ignore_label,
    })
}

impl LossSettings {
    /// The normalizer for `outer × inner` positions of which `valid` are not ignored, clamped to at least 1.
    pub fn normalizer(&self, outer: usize, inner: usize, valid: usize) -> f32 {
        let n = match self.normalization {
            NormalizationMode::Full => (outer * inner) as f32,
            NormalizationMode::Valid if self.ignore_label.is_some() => valid as f32,
            NormalizationMode::Valid => (outer * inner) as f32,
            NormalizationMode::BatchSize => outer as f32,
            NormalizationMode::None => 1.0,
        };
        n.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str, deprecated: DeprecatedNormalize) -> LayerResult<LossSettings> {
        loss_settings(&crema_proto::text::parse(text, "t").unwrap(), deprecated)
    }

    #[test]
    fn normalizers() {
        let valid = settings(
            "loss_param { ignore_label: 2 }",
            DeprecatedNormalize::Refuse,
        )
        .unwrap();
        assert_eq!(valid.normalizer(4, 3, 5), 5.0);
        assert_eq!(valid.normalizer(4, 3, 0), 1.0);
        let no_ignore = settings("", DeprecatedNormalize::Refuse).unwrap();
        assert_eq!(no_ignore.normalizer(4, 3, 0), 12.0);
        let batch = settings(
            "loss_param { normalization: BATCH_SIZE }",
            DeprecatedNormalize::Refuse,
        )
        .unwrap();
        assert_eq!(batch.normalizer(4, 3, 12), 4.0);
        let none = settings(
            "loss_param { normalization: NONE }",
            DeprecatedNormalize::Refuse,
        )
        .unwrap();
        assert_eq!(none.normalizer(4, 3, 12), 1.0);
    }

    #[test]
    fn deprecated_normalize_is_mapped_or_refused() {
        let mapped = settings("loss_param { normalize: false }", DeprecatedNormalize::Map).unwrap();
        assert_eq!(mapped.normalization, NormalizationMode::BatchSize);
        let err = settings(
            "loss_param { normalize: false }",
            DeprecatedNormalize::Refuse,
        )
        .unwrap_err();
        assert!(
            err.0.contains("loss_param.normalize is deprecated"),
            "{err}"
        );
    }
}
