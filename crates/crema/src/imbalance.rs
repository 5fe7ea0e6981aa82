//! Class weights from label counts: the computations behind the ClassWeights layer and `crema infogain`.
//!
//! Given the count `n_c` of each class `c` among `N` samples, a [`Method`] gives raw weights that grow as a
//! class gets rarer, and a [`Normalization`] scales them:
//!
//! | method | raw weight `w_c` |
//! |---|---|
//! | [`Method::InverseFrequency`] | `1 / n_c` |
//! | [`Method::MedianFrequency`] | `median_k(f_k) / f_c`, with `f_c = n_c / N` (Eigen & Fergus 2015; SegNet) |
//! | [`Method::EffectiveNumber`] | `(1 - β) / (1 - β^n_c)`, the inverse of the effective number of samples (Cui et al. 2019) |
//!
//! | normalization | scaling |
//! |---|---|
//! | [`Normalization::MeanOne`] | the mean weight over the samples is 1: `Σ_c n_c w_c = N` (keeps learning rates that worked unweighted) |
//! | [`Normalization::SumOne`] | `Σ_c w_c = 1` (what hand-written "ComputeH" layers do; the mean sample weight becomes about 1/C²) |
//! | [`Normalization::None`] | as the method gives them |
//!
//! Inverse and median frequency differ only by a constant factor, so after `MeanOne` or `SumOne` they agree.
//!
//! A class with no samples would get an infinite weight. It gets the weight of the rarest class that has
//! samples instead (before normalization), so a class missing from a batch never divides by zero and, should
//! it appear later, counts as the rarest. With no samples at all, every weight is 1 before normalization.
//!
//! ```
//! use crema::imbalance::{class_weights, Method, Normalization};
//! let w = class_weights(&[30, 10, 0], Method::InverseFrequency, Normalization::MeanOne).unwrap();
//! // N = 40: raw 1/n = (1/30, 1/10, 1/10 for the absent class), scaled so that 30 w_0 + 10 w_1 = 40.
//! assert!((w[0] - 40.0 / 60.0).abs() < 1e-12 && (w[1] - 2.0).abs() < 1e-12 && w[2] == w[1]);
//! ```

/// The most classes: `H = diag(w)` holds C × C values, and a blob at most [`crate::blob::MAX_BLOB_COUNT`]
/// (46340² ≤ 2³¹ - 1 < 46341²). A class count read from a file or a label is checked against it before anything
/// is allocated for it.
pub const MAX_CLASSES: usize = 46_340;

// H = diag(w) of the most classes fits a blob, and of one more would not.
const _: () = assert!(
    MAX_CLASSES * MAX_CLASSES <= crate::blob::MAX_BLOB_COUNT
        && (MAX_CLASSES + 1) * (MAX_CLASSES + 1) > crate::blob::MAX_BLOB_COUNT
);

/// How raw class weights are computed from counts (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    InverseFrequency,
    MedianFrequency,
    /// With β in [0, 1); β = 0 weighs every present class alike, β → 1 tends to inverse frequency.
    EffectiveNumber {
        beta: f64,
    },
}

/// How class weights are scaled (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    MeanOne,
    SumOne,
    None,
}

/// Why class weights could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImbalanceError {
    #[error("label {value} at position {index} is not an integer")]
    LabelNotInteger { index: usize, value: f64 },
    #[error(
        "label {value} at position {index} is outside [0, {classes}) (num_classes is {classes})"
    )]
    LabelOutOfRange {
        index: usize,
        value: f64,
        classes: usize,
    },
    #[error(transparent)]
    OutOfMemory(#[from] crate::memory::AllocError),
    #[error("beta {0} is outside [0, 1)")]
    BadBeta(f64),
    #[error("count {value} of class {class} is not a non-negative whole number")]
    BadCount { class: usize, value: f64 },
    #[error("no classes: the number of classes must be at least 1")]
    NoClasses,
    #[error("no class has a sample: every count is 0")]
    NoSamples,
    #[error("{0} classes; at most {MAX_CLASSES} (H holds C × C values)")]
    TooManyClasses(usize),
}

/// Per-class counts of `labels`, each an integer in `[0, classes)` unless it equals `ignore_label` (then it is
/// skipped). Values are checked: a fractional, non-finite or out-of-range label is an error naming its position.
/// At most [`MAX_CLASSES`] classes.
pub fn count_labels(
    labels: impl IntoIterator<Item = f64> + Clone,
    classes: usize,
    ignore_label: Option<i64>,
) -> Result<Vec<u64>, ImbalanceError> {
    if classes > MAX_CLASSES {
        return Err(ImbalanceError::TooManyClasses(classes));
    }
    let mut counts = crate::memory::zeroed(classes, || format!("the counts of {classes} classes"))?;
    add_label_counts(&mut counts, labels, ignore_label)?;
    Ok(counts)
}

/// Adds the counts of `labels` to `counts` (as [`count_labels`], the class count being `counts.len()`). On an
/// error `counts` is left unchanged. A count stops at `u64::MAX` rather than wrapping around.
pub fn add_label_counts(
    counts: &mut [u64],
    labels: impl IntoIterator<Item = f64> + Clone,
    ignore_label: Option<i64>,
) -> Result<(), ImbalanceError> {
    let classes = counts.len();
    // Every label is checked before any is counted, so that nothing is allocated for a batch.
    for (index, value) in labels.clone().into_iter().enumerate() {
        label_class(index, value, classes, ignore_label)?;
    }
    for (index, value) in labels.into_iter().enumerate() {
        if let Some(class) = label_class(index, value, classes, ignore_label)? {
            counts[class] = counts[class].saturating_add(1);
        }
    }
    Ok(())
}

/// The class of one label value, None when it is the ignore label.
fn label_class(
    index: usize,
    value: f64,
    classes: usize,
    ignore_label: Option<i64>,
) -> Result<Option<usize>, ImbalanceError> {
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(ImbalanceError::LabelNotInteger { index, value });
    }
    // Whole numbers past 2^53 (a uint64 max read as a float) are out of range, not fractional.
    let label = value as i64;
    if ignore_label == Some(label) && value.abs() <= 2f64.powi(53) {
        return Ok(None);
    }
    if value < 0.0 || value >= classes as f64 {
        return Err(ImbalanceError::LabelOutOfRange {
            index,
            value,
            classes,
        });
    }
    Ok(Some(label as usize))
}

/// Counts given as numbers (from a prototxt or a file): each must be a finite, non-negative whole number.
pub fn counts_from_values(values: &[f64]) -> Result<Vec<u64>, ImbalanceError> {
    values
        .iter()
        .enumerate()
        .map(|(class, &value)| {
            if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(63) {
                Ok(value as u64)
            } else {
                Err(ImbalanceError::BadCount { class, value })
            }
        })
        .collect()
}

/// The weight of every class from its count (see the module documentation for the formulas and for classes
/// without samples).
pub fn class_weights(
    counts: &[u64],
    method: Method,
    normalization: Normalization,
) -> Result<Vec<f64>, ImbalanceError> {
    let mut weights = crate::memory::zeroed(counts.len(), || {
        format!("the weights of {} classes", counts.len())
    })?;
    class_weights_into(counts, method, normalization, &mut weights)?;
    Ok(weights)
}

/// [`class_weights`] into `weights` (one per class), allocating nothing: for layers that recompute the weights
/// every batch.
pub fn class_weights_into(
    counts: &[u64],
    method: Method,
    normalization: Normalization,
    weights: &mut [f64],
) -> Result<(), ImbalanceError> {
    assert_eq!(counts.len(), weights.len(), "one weight per class");
    if counts.is_empty() {
        return Err(ImbalanceError::NoClasses);
    }
    if let Method::EffectiveNumber { beta } = method {
        if !(0.0..1.0).contains(&beta) {
            return Err(ImbalanceError::BadBeta(beta));
        }
    }
    // Counts given by a user (or a saved state) may sum past u64.
    let total: u128 = counts.iter().map(|&n| u128::from(n)).sum();
    if total == 0 {
        weights.fill(1.0);
    } else {
        let median = match method {
            Method::MedianFrequency => median_frequency(counts, total, weights),
            _ => 0.0,
        };
        let rarest = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(1);
        for (w, &n) in weights.iter_mut().zip(counts) {
            let n = if n > 0 { n } else { rarest } as f64;
            *w = match method {
                Method::InverseFrequency => 1.0 / n,
                Method::MedianFrequency => median / (n / total as f64),
                Method::EffectiveNumber { beta: 0.0 } => 1.0,
                // 1 - β^n computed as -expm1(n ln β) stays exact for β near 1.
                Method::EffectiveNumber { beta } => (1.0 - beta) / -(n * beta.ln()).exp_m1(),
            };
        }
    }
    let scale = match normalization {
        Normalization::None => 1.0,
        Normalization::SumOne => 1.0 / weights.iter().sum::<f64>(),
        Normalization::MeanOne if total == 0 => 1.0,
        Normalization::MeanOne => {
            let weighted: f64 = weights.iter().zip(counts).map(|(w, &n)| w * n as f64).sum();
            total as f64 / weighted
        }
    };
    weights.iter_mut().for_each(|w| *w *= scale);
    Ok(())
}

/// The median of the present classes' frequencies `n_c / N` (the mean of the two middle ones for an even
/// number of classes, as numpy's median), sorting in `scratch` (at least one value per class).
fn median_frequency(counts: &[u64], total: u128, scratch: &mut [f64]) -> f64 {
    let mut present = 0;
    for &n in counts.iter().filter(|&&n| n > 0) {
        scratch[present] = n as f64;
        present += 1;
    }
    let values = &mut scratch[..present];
    values.sort_unstable_by(f64::total_cmp);
    let middle = present / 2;
    let median = if present % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    };
    median / total as f64
}

/// Counts from a file: an array file (.npy, .binaryproto) or text numbers separated by spaces, commas or lines;
/// the error names the file.
pub fn read_counts(path: &std::path::Path) -> Result<Vec<u64>, String> {
    let values: Vec<f64> = if crate::io::ArrayFormat::of(path).is_ok() {
        crate::io::read_array(path)
            .map_err(|e| e.to_string())?
            .to_f64_vec()
    } else {
        let text = crema_proto::files::read_text_file(path, "list of counts")
            .map_err(|e| e.to_string())?;
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| !word.is_empty())
            .map(|word| {
                word.parse::<f64>()
                    .map_err(|_| format!("{}: {word:?} is not a number", path.display()))
            })
            .collect::<Result<_, String>>()?
    };
    counts_from_values(&values).map_err(|e| format!("{}: {e}", path.display()))
}

/// The log class prior `log π_c = log(n_c / N)` of `counts`, for logit adjustment; a class without samples
/// takes the rarest present class's count (as the class weights do), so its log prior is finite. An error when
/// no class has a sample.
pub fn log_prior(counts: &[u64]) -> Result<Vec<f64>, ImbalanceError> {
    let rarest = counts.iter().copied().filter(|&n| n > 0).min();
    let Some(rarest) = rarest else {
        return Err(ImbalanceError::NoSamples);
    };
    let filled: Vec<f64> = counts
        .iter()
        .map(|&n| if n > 0 { n } else { rarest } as f64)
        .collect();
    let total: f64 = filled.iter().sum();
    Ok(filled.iter().map(|n| (n / total).ln()).collect())
}

/// Writes `H = diag(weights)` into `h` (C×C, row-major).
pub fn write_diagonal_matrix(weights: &[f64], h: &mut [f32]) {
    let classes = weights.len();
    h.fill(0.0);
    for (c, &w) in weights.iter().enumerate() {
        h[c * classes + c] = w as f32;
    }
}

/// The C×C infogain matrix `H = diag(weights)`, row-major.
pub fn diagonal_matrix(weights: &[f64]) -> Result<Vec<f32>, ImbalanceError> {
    let classes = weights.len();
    let mut h = crate::memory::zeroed(classes * classes, || {
        format!("H for {classes} classes ({classes} × {classes})")
    })?;
    write_diagonal_matrix(weights, &mut h);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} != {b:?}");
        }
    }

    #[test]
    fn inverse_frequency_under_each_normalization() {
        let counts = [60, 30, 10];
        // Raw 1/n.
        let raw = [1.0 / 60.0, 1.0 / 30.0, 1.0 / 10.0];
        close(
            &class_weights(&counts, Method::InverseFrequency, Normalization::None).unwrap(),
            &raw,
        );
        // Mean one over 100 samples: w_c = N / (C n_c) = 100 / (3 n_c).
        let mean_one = [100.0 / 180.0, 100.0 / 90.0, 100.0 / 30.0];
        let w = class_weights(&counts, Method::InverseFrequency, Normalization::MeanOne).unwrap();
        close(&w, &mean_one);
        let mean: f64 = w.iter().zip(counts).map(|(w, n)| w * n as f64).sum::<f64>() / 100.0;
        assert!((mean - 1.0).abs() < 1e-12);
        // Sum one: (1/60, 1/30, 1/10) / (9/60) = (1/9, 2/9, 6/9).
        close(
            &class_weights(&counts, Method::InverseFrequency, Normalization::SumOne).unwrap(),
            &[1.0 / 9.0, 2.0 / 9.0, 6.0 / 9.0],
        );
    }

    #[test]
    fn median_frequency_by_hand() {
        // f = (0.6, 0.3, 0.1), median 0.3: w = (0.5, 1, 3).
        close(
            &class_weights(&[60, 30, 10], Method::MedianFrequency, Normalization::None).unwrap(),
            &[0.5, 1.0, 3.0],
        );
        // Even number of classes: median of (0.1, 0.2, 0.3, 0.4) is 0.25.
        close(
            &class_weights(&[1, 2, 3, 4], Method::MedianFrequency, Normalization::None).unwrap(),
            &[2.5, 1.25, 0.25 / 0.3, 0.625],
        );
        // Normalised, it is inverse frequency.
        let a = class_weights(
            &[60, 30, 10],
            Method::MedianFrequency,
            Normalization::MeanOne,
        );
        let b = class_weights(
            &[60, 30, 10],
            Method::InverseFrequency,
            Normalization::MeanOne,
        );
        close(&a.unwrap(), &b.unwrap());
    }

    #[test]
    fn effective_number_by_hand() {
        // β = 0.9: E_n = (1 - 0.9^n) / 0.1; n = 1 → 1, n = 2 → 1.9, n = 10 → 6.513215599.
        let w = class_weights(
            &[1, 2, 10],
            Method::EffectiveNumber { beta: 0.9 },
            Normalization::None,
        )
        .unwrap();
        close(&w, &[1.0, 1.0 / 1.9, 1.0 / 6.513215599]);
        // β = 0: every present class alike.
        let w = class_weights(
            &[5, 50],
            Method::EffectiveNumber { beta: 0.0 },
            Normalization::None,
        );
        close(&w.unwrap(), &[1.0, 1.0]);
        // β near 1 stays finite and tends to inverse frequency (ratio 10 for counts 1 and 10).
        let w = class_weights(
            &[1, 10],
            Method::EffectiveNumber { beta: 0.999999 },
            Normalization::None,
        )
        .unwrap();
        assert!((w[0] / w[1] - 10.0).abs() < 1e-3, "{w:?}");
        for beta in [1.0, -0.1, f64::NAN] {
            assert!(matches!(
                class_weights(&[1], Method::EffectiveNumber { beta }, Normalization::None),
                Err(ImbalanceError::BadBeta(_))
            ));
        }
    }

    #[test]
    fn absent_classes_get_the_rarest_present_weight() {
        // A batch without class 1 and class 3: no division by zero, their weight is class 2's (the rarest).
        let counts = [6, 0, 2, 0];
        for method in [
            Method::InverseFrequency,
            Method::MedianFrequency,
            Method::EffectiveNumber { beta: 0.99 },
        ] {
            for normalization in [
                Normalization::MeanOne,
                Normalization::SumOne,
                Normalization::None,
            ] {
                let w = class_weights(&counts, method, normalization).unwrap();
                assert!(w.iter().all(|w| w.is_finite() && *w > 0.0), "{w:?}");
                assert_eq!(w[1], w[2]);
                assert_eq!(w[3], w[2]);
            }
        }
        // Mean one over the 8 samples: 1/6 and 1/2 scaled so 6 w0 + 2 w2 = 8: w = (2/3, 2, 2, 2).
        close(
            &class_weights(&counts, Method::InverseFrequency, Normalization::MeanOne).unwrap(),
            &[2.0 / 3.0, 2.0, 2.0, 2.0],
        );
        // Sum one over all four classes: (1/6, 1/2, 1/2, 1/2) / (5/3).
        close(
            &class_weights(&counts, Method::InverseFrequency, Normalization::SumOne).unwrap(),
            &[0.1, 0.3, 0.3, 0.3],
        );
    }

    #[test]
    fn no_samples_at_all() {
        let none = class_weights(&[0, 0], Method::InverseFrequency, Normalization::MeanOne);
        close(&none.unwrap(), &[1.0, 1.0]);
        let sum = class_weights(&[0, 0], Method::InverseFrequency, Normalization::SumOne);
        close(&sum.unwrap(), &[0.5, 0.5]);
        assert_eq!(
            class_weights(&[], Method::InverseFrequency, Normalization::None),
            Err(ImbalanceError::NoClasses)
        );
    }

    #[test]
    fn counting_checks_every_label() {
        let labels = [0.0, 2.0, 2.0, -1.0, 1.0];
        assert_eq!(count_labels(labels, 3, Some(-1)).unwrap(), vec![1, 1, 2]);
        assert_eq!(
            count_labels(labels, 3, None),
            Err(ImbalanceError::LabelOutOfRange {
                index: 3,
                value: -1.0,
                classes: 3
            })
        );
        assert_eq!(
            count_labels([0.0, 3.0], 3, None),
            Err(ImbalanceError::LabelOutOfRange {
                index: 1,
                value: 3.0,
                classes: 3
            })
        );
        assert!(matches!(
            count_labels([0.5], 3, None),
            Err(ImbalanceError::LabelNotInteger { index: 0, .. })
        ));
        assert!(matches!(
            count_labels([f64::NAN], 3, None),
            Err(ImbalanceError::LabelNotInteger { .. })
        ));
        // A failed add leaves the running counts as they were.
        let mut counts = vec![1, 1, 1];
        assert!(add_label_counts(&mut counts, [0.0, 9.0], None).is_err());
        assert_eq!(counts, vec![1, 1, 1]);
        add_label_counts(&mut counts, [0.0, 0.0], None).unwrap();
        assert_eq!(counts, vec![3, 1, 1]);
    }

    #[test]
    fn counts_given_as_numbers_are_checked() {
        assert_eq!(counts_from_values(&[3.0, 0.0]).unwrap(), vec![3, 0]);
        for bad in [-1.0, 1.5, f64::INFINITY] {
            assert!(matches!(
                counts_from_values(&[1.0, bad]),
                Err(ImbalanceError::BadCount { class: 1, .. })
            ));
        }
    }

    #[test]
    fn counts_summing_past_u64_do_not_overflow() {
        let half = u64::MAX / 2;
        for normalization in [
            Normalization::MeanOne,
            Normalization::SumOne,
            Normalization::None,
        ] {
            let w =
                class_weights(&[half, half, 10], Method::MedianFrequency, normalization).unwrap();
            assert!(w.iter().all(|w| w.is_finite() && *w > 0.0), "{w:?}");
            assert_eq!(w[0], w[1]);
            assert!(w[2] > w[0]);
        }
        // Mean one: 2 half w0 + 10 w2 = N with w ∝ 1/n: each class weighs N / 3.
        let w = class_weights(
            &[half, half, 10],
            Method::InverseFrequency,
            Normalization::MeanOne,
        )
        .unwrap();
        let n = 2.0 * half as f64 + 10.0;
        close(
            &w,
            &[n / 3.0 / half as f64, n / 3.0 / half as f64, n / 30.0],
        );
        // Counting on past the top saturates.
        let mut counts = vec![u64::MAX, 0];
        add_label_counts(&mut counts, [0.0, 1.0], None).unwrap();
        assert_eq!(counts, [u64::MAX, 1]);
    }

    #[test]
    fn too_many_classes_are_refused_before_allocating() {
        assert_eq!(
            count_labels([0.0], MAX_CLASSES + 1, None),
            Err(ImbalanceError::TooManyClasses(MAX_CLASSES + 1))
        );
        assert_eq!(
            count_labels([0.0], MAX_CLASSES, None).unwrap().len(),
            MAX_CLASSES
        );
    }

    #[test]
    fn diagonal_matrix_layout() {
        assert_eq!(
            diagonal_matrix(&[2.0, 0.5]).unwrap(),
            vec![2.0, 0.0, 0.0, 0.5]
        );
    }
}
