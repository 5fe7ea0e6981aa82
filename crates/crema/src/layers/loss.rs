//! What the loss layers (and Accuracy) share: `loss_param { ignore_label normalization normalize }`, the
//! normalizer, and the checks of their bottoms and labels.
//!
//! The normalizer divides the summed loss: FULL by every position (outer × inner), VALID by the positions whose
//! label is not ignored (every position when there is no ignore label), BATCH_SIZE by outer, NONE by 1; the
//! result is clamped to at least 1, so a batch whose labels are all ignored has loss 0 and gradient 0.
//!
//! Labels are stored as floats: `class_label` reads one as a class index (or the ignore label), refusing
//! anything else with its position. `check_first_dims` is Caffe's check of every loss layer's bottoms;
//! `check_item_labels` and `check_position_labels` check that the labels match the scores, one per item
//! (losses over rows of scores) or one per position around a class axis (SoftmaxWithLoss, Accuracy).

use crema_proto::caffe::loss_parameter::NormalizationMode;
use crema_proto::LayerParameter;

use crate::blob::Blob;
use crate::layer::{LayerError, LayerResult};
use crate::layers::softmax::axis_view;

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
    /// Whether `label` is the ignore label.
    pub fn ignores(&self, label: f32) -> bool {
        is_ignored(label, self.ignore_label)
    }

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

/// Whether `label` is the ignore label `ignore` (never, without one).
fn is_ignored(label: f32, ignore: Option<i32>) -> bool {
    ignore.is_some_and(|ignore| label == ignore as f32)
}

/// `value` as a class index when it is a whole number in `[0, classes)`. Cheap enough for every position of a
/// batch: one conversion each way (`f32::fract` is a libm call on baseline x86-64).
#[inline]
pub(crate) fn whole_class(value: f32, classes: usize) -> Option<usize> {
    // The cast saturates and sends NaN to 0; only a whole number in range converts back to itself.
    let class = value as i32;
    (class as f32 == value && class >= 0 && (class as usize) < classes).then_some(class as usize)
}

/// The class that the label `value` at `position` names, or `None` when it is the ignore label.
/// A label that is neither an integer in `[0, classes)` nor the ignore label is an error (Caffe would read out
/// of bounds), about value `position` of bottom 1, where every layer using this reads its labels.
pub(crate) fn class_label(
    value: f32,
    position: usize,
    classes: usize,
    ignore: Option<i32>,
) -> LayerResult<Option<usize>> {
    if is_ignored(value, ignore) {
        return Ok(None);
    }
    if let Some(class) = whole_class(value, classes) {
        return Ok(Some(class));
    }
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(LayerError::at_item(
            format!("label {value} at position {position} is not an integer"),
            1,
            position,
        ));
    }
    if value < 0.0 || value >= classes as f32 {
        return Err(LayerError::at_item(
            format!("label {value} at position {position} is outside [0, {classes})"),
            1,
            position,
        ));
    }
    Ok(Some(value as usize))
}

/// The class that the label `value` of item `item` names, for a layer without an ignore label: an integer in
/// `[0, classes)`, else an error as [`class_label`] words it.
pub(crate) fn item_class(value: f32, item: usize, classes: usize) -> LayerResult<usize> {
    Ok(class_label(value, item, classes, None)?.expect("no ignore label"))
}

/// Caffe's check of every loss layer: both bottoms have a first axis, of the same size.
pub(crate) fn check_first_dims(bottom: &[&Blob]) -> LayerResult {
    for (i, b) in bottom.iter().enumerate().take(2) {
        if b.num_axes() == 0 {
            return Err(LayerError::new(format!(
                "bottom {i} has no axes; a loss layer needs a first (batch) axis"
            )));
        }
    }
    if bottom[0].shape()[0] != bottom[1].shape()[0] {
        return Err(LayerError::new(format!(
            "the data and label should have the same first dimension: bottom 0 is {}, bottom 1 is {}",
            bottom[0].shape_string(),
            bottom[1].shape_string()
        )));
    }
    Ok(())
}

/// The bottoms of a loss over `N` items (the first axis of the scores, everything after it one item) with one
/// label each: [`check_first_dims`], then `N` labels. `shapes` words the accepted label shapes for `N` in the
/// error. Returns `N` and the scores per item.
pub(crate) fn check_item_labels(
    bottom: &[&Blob],
    shapes: impl FnOnce(usize) -> String,
) -> LayerResult<(usize, usize)> {
    check_first_dims(bottom)?;
    let num = bottom[0].shape()[0];
    if bottom[1].count() != num {
        return Err(LayerError::new(format!(
            "the labels must hold one value per item ({}), got {}",
            shapes(num),
            bottom[1].shape_string()
        )));
    }
    Ok((num, bottom[0].count_from(1)))
}

/// The scores (bottom 0) around their class axis `axis`, with one label (bottom 1) per position: the canonical
/// axis and `(outer, classes, inner)`, as [`axis_view`]. `field` names the axis parameter in errors.
pub(crate) fn check_position_labels(
    bottom: &[&Blob],
    axis: i32,
    field: &str,
) -> LayerResult<(usize, usize, usize, usize)> {
    let (axis, outer, classes, inner) = axis_view(bottom[0], axis, field)?;
    if bottom[1].count() != outer * inner {
        return Err(LayerError::new(format!(
            "number of labels must match number of predictions: the scores {} with {field} {} need outer × inner \
             = {} × {} = {} labels, but the labels {} hold {}",
            bottom[0].shape_string(),
            axis,
            outer,
            inner,
            outer * inner,
            bottom[1].shape_string(),
            bottom[1].count()
        )));
    }
    Ok((axis, outer, classes, inner))
}

/// Helpers for the loss layers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::blob::Blob;
    use crate::layer::{Layer, LayerResult};

    /// Runs `layer` forward on `bottoms` and returns its loss, checking that the top is a scalar.
    pub fn scalar_loss(layer: &mut dyn Layer, bottoms: &[&Blob]) -> LayerResult<f32> {
        let mut top = Blob::default();
        layer.reshape(bottoms, &mut [&mut top])?;
        layer.forward(bottoms, &mut [&mut top])?;
        assert_eq!(top.shape(), &[] as &[usize]);
        Ok(top.data()[0])
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
