//! Classification metrics from a confusion matrix: overall accuracy, per-class recall and precision, balanced
//! accuracy and macro F1; and for segmentation (scores with positions along spatial axes, every pixel counted),
//! per-class intersection over union, mean IoU, pixel accuracy and frequency-weighted IoU.
//!
//! A [`ConfusionMatrix`] counts positions by true class (rows) and predicted class (columns). It is filled from
//! batches of (scores, labels) with the semantics of Caffe's `Accuracy` layer ([`ConfusionMatrix::accumulate`]):
//! scores are `outer × C × inner` around an axis, labels `outer × inner` class indices, positions whose label is
//! the ignore label are skipped, and the prediction is the class of the highest score. A tie for the highest
//! score counts against the label, as in Caffe, so the matrix's trace over its total is exactly the top-1
//! accuracy the layer reports.
//!
//! A metric that divides by zero is undefined and comes back as `None`: the recall of a class with no samples,
//! the precision of a class never predicted, any metric of an empty matrix. Averages over classes (balanced
//! accuracy, macro F1) skip the classes where their per-class metric is undefined, as scikit-learn's do.
//!
//! The segmentation metrics are those of the FCN papers' `score.py` (Long, Shelhamer & Darrell): the IoU of a
//! class is `TP / (TP + FP + FN)` (its correct pixels over the pixels labelled or predicted as it), undefined for
//! a class neither in the labels nor in the predictions; the mean IoU is the mean over the classes where it is
//! defined (numpy's `nanmean` over classes with `TP + FP + FN > 0`), so a class absent from the data and never
//! predicted neither counts as 0 nor as 1; a class predicted but never labelled counts with IoU 0. The
//! frequency-weighted IoU is `Σ_c freq_c · IoU_c` with `freq_c` the class's share of the labelled pixels.

use crate::blob::Blob;

/// A problem with the scores or labels given to a [`ConfusionMatrix`]; says which value and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MetricsError(pub String);

/// Counts of (true class, predicted class) pairs over `C` classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `C × C`: `counts[t * C + p]` positions of true class `t` predicted as `p`.
    counts: Vec<u64>,
    /// Positions skipped because their label was the ignore label.
    ignored: u64,
    /// Positions skipped because a score was NaN (no class can be called the highest).
    not_a_number: u64,
}

/// One class's counts and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassMetrics {
    /// Positions whose true class is this one (the row sum).
    pub support: u64,
    /// Positions predicted as this class (the column sum).
    pub predicted: u64,
    /// Positions of this class predicted as it (the diagonal entry).
    pub correct: u64,
    /// `correct / support`; `None` when the class has no samples.
    pub recall: Option<f64>,
    /// `correct / predicted`; `None` when the class was never predicted.
    pub precision: Option<f64>,
    /// `2·correct / (support + predicted)`; `None` when the class was neither present nor predicted.
    pub f1: Option<f64>,
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (count > 0).then(|| sum / count as f64)
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes, or an error when its C × C counts do not fit in memory.
    pub fn new(classes: usize) -> Result<Self, crate::memory::AllocError> {
        let cells = classes.saturating_mul(classes);
        Ok(ConfusionMatrix {
            classes,
            counts: crate::memory::zeroed(cells, || {
                format!("a confusion matrix over {classes} classes")
            })?,
            ignored: 0,
            not_a_number: 0,
        })
    }

    /// A matrix from row-major counts (`counts[t * C + p]`: true class `t` predicted as `p`).
    pub fn from_counts(classes: usize, counts: Vec<u64>) -> Result<Self, MetricsError> {
        if counts.len() != classes * classes {
            return Err(MetricsError(format!(
                "a confusion matrix over {classes} classes needs {} counts, not {}",
                classes * classes,
                counts.len()
            )));
        }
        Ok(ConfusionMatrix {
            classes,
            counts,
            ignored: 0,
            not_a_number: 0,
        })
    }

    /// The number of classes `C`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Positions of true class `truth` predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// The counts row by row (true class), each row by predicted class.
    pub fn rows(&self) -> impl Iterator<Item = &[u64]> {
        self.counts.chunks(self.classes.max(1))
    }

    /// Positions counted (ignored and NaN positions not included).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Positions skipped because their label was the ignore label.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Positions skipped because one of their scores was NaN.
    pub fn not_a_number(&self) -> u64 {
        self.not_a_number
    }

    /// Counts one position of class `truth` predicted as `predicted`.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        assert!(
            truth < self.classes && predicted < self.classes,
            "class index out of range"
        );
        self.counts[truth * self.classes + predicted] += 1;
    }

    /// Adds another matrix's counts (over the same classes).
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<(), MetricsError> {
        if other.classes != self.classes {
            return Err(MetricsError(format!(
                "cannot merge a confusion matrix over {} classes into one over {}",
                other.classes, self.classes
            )));
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.ignored += other.ignored;
        self.not_a_number += other.not_a_number;
        Ok(())
    }

    /// Counts a batch as Caffe's `Accuracy` layer reads it: `scores` hold `C` class scores along `axis`
    /// (negative counts from the end), `labels` one class index per position (`outer × inner` values, any
    /// shape). Positions labelled `ignore_label` are skipped, as are positions with a NaN score. Returns the
    /// number of positions counted.
    pub fn accumulate(
        &mut self,
        scores: &Blob,
        labels: &Blob,
        axis: i32,
        ignore_label: Option<i32>,
    ) -> Result<u64, MetricsError> {
        let axis = scores
            .canonical_axis(axis)
            .map_err(|e| MetricsError(format!("axis {axis} of the scores: {e}")))?;
        let channels = scores.shape()[axis];
        let (outer, inner) = (scores.count_range(0, axis), scores.count_from(axis + 1));
        if channels != self.classes {
            return Err(MetricsError(format!(
                "the scores {} have {channels} classes along axis {axis}, the confusion matrix {}",
                scores.shape_string(),
                self.classes
            )));
        }
        if labels.count() != outer * inner {
            return Err(MetricsError(format!(
                "the scores {} need {outer} × {inner} = {} labels (one per position around axis {axis}), but \
                 the labels {} hold {}",
                scores.shape_string(),
                outer * inner,
                labels.shape_string(),
                labels.count()
            )));
        }
        let (x, y) = (scores.data(), labels.data());
        let mut counted = 0;
        for o in 0..outer {
            for i in 0..inner {
                let position = o * inner + i;
                let value = y[position];
                if ignore_label.is_some_and(|ignore| value == ignore as f32) {
                    self.ignored += 1;
                    continue;
                }
                if !value.is_finite()
                    || value.fract() != 0.0
                    || value < 0.0
                    || value >= channels as f32
                {
                    return Err(MetricsError(format!(
                        "label {value} at position {position} is not a class index: labels must be integers in \
                         [0, {channels}){}",
                        match ignore_label {
                            Some(ignore) => format!(" or the ignore label {ignore}"),
                            None => String::new(),
                        }
                    )));
                }
                let truth = value as usize;
                let score = |c: usize| x[o * channels * inner + c * inner + i];
                match predict(score, channels, truth) {
                    Some(predicted) => {
                        self.counts[truth * channels + predicted] += 1;
                        counted += 1;
                    }
                    None => self.not_a_number += 1,
                }
            }
        }
        Ok(counted)
    }

    /// Counts, recall, precision and F1 of class `class`.
    pub fn class(&self, class: usize) -> ClassMetrics {
        let c = self.classes;
        let support: u64 = self.counts[class * c..(class + 1) * c].iter().sum();
        let predicted: u64 = (0..c).map(|t| self.counts[t * c + class]).sum();
        let correct = self.counts[class * c + class];
        ClassMetrics {
            support,
            predicted,
            correct,
            recall: ratio(correct, support),
            precision: ratio(correct, predicted),
            f1: ratio(2 * correct, support + predicted),
        }
    }

    /// Every class's metrics, in class order.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes).map(|c| self.class(c)).collect()
    }

    /// The fraction of positions predicted right (Caffe's top-1 accuracy); `None` when nothing was counted.
    pub fn accuracy(&self) -> Option<f64> {
        let correct = (0..self.classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    /// The mean recall over the classes that have samples; `None` when nothing was counted.
    pub fn balanced_accuracy(&self) -> Option<f64> {
        mean(self.per_class().into_iter().filter_map(|m| m.recall))
    }

    /// The mean F1 over the classes that were present or predicted; `None` when nothing was counted.
    pub fn macro_f1(&self) -> Option<f64> {
        mean(self.per_class().into_iter().filter_map(|m| m.f1))
    }

    /// The intersection over union of class `class`: `TP / (TP + FP + FN)`, its correct positions over the
    /// positions labelled or predicted as it; `None` when it is neither.
    pub fn iou(&self, class: usize) -> Option<f64> {
        let m = self.class(class);
        ratio(m.correct, m.support + m.predicted - m.correct)
    }

    /// Every class's IoU, in class order.
    pub fn per_class_iou(&self) -> Vec<Option<f64>> {
        (0..self.classes).map(|c| self.iou(c)).collect()
    }

    /// The mean IoU over the classes present in the labels or the predictions (FCN's `nanmean`); `None` when
    /// nothing was counted.
    pub fn mean_iou(&self) -> Option<f64> {
        mean(self.per_class_iou().into_iter().flatten())
    }

    /// The number of classes the mean IoU is taken over: those present in the labels or the predictions.
    pub fn iou_classes(&self) -> usize {
        self.per_class_iou().iter().filter(|v| v.is_some()).count()
    }

    /// The fraction of positions (pixels) predicted right: the same number as [`ConfusionMatrix::accuracy`].
    pub fn pixel_accuracy(&self) -> Option<f64> {
        self.accuracy()
    }

    /// `Σ_c freq_c · IoU_c`, `freq_c` the share of the counted positions labelled `c` (a class with labels
    /// always has an IoU); `None` when nothing was counted.
    pub fn frequency_weighted_iou(&self) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let weighted = (0..self.classes)
            .filter_map(|c| {
                let support = self.class(c).support;
                (support > 0).then(|| support as f64 / total as f64 * self.iou(c).unwrap_or(0.0))
            })
            .sum();
        Some(weighted)
    }
}

/// The predicted class of one position: the highest score, a tie with the true class counted against it (the
/// first other tied class is predicted), as Caffe's top-1 accuracy decides. `None` when a score is NaN.
fn predict(score: impl Fn(usize) -> f32, channels: usize, truth: usize) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    let truth_score = score(truth);
    let mut truth_strictly_best = true;
    for c in 0..channels {
        let v = score(c);
        if v.is_nan() {
            return None;
        }
        if c != truth && v >= truth_score {
            truth_strictly_best = false;
        }
        if c != truth && best.is_none_or(|(_, b)| v > b) {
            best = Some((c, v));
        }
    }
    if truth_strictly_best {
        Some(truth)
    } else {
        best.map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(shape: &[usize], data: &[f32]) -> Blob {
        Blob::from_data(shape, data.to_vec()).unwrap()
    }

    /// Rows: true 0..3, columns: predicted 0..3.
    ///   [5 1 0]
    ///   [2 3 0]
    ///   [0 0 0]
    fn three_classes() -> ConfusionMatrix {
        ConfusionMatrix::from_counts(3, vec![5, 1, 0, 2, 3, 0, 0, 0, 0]).unwrap()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn metrics_by_hand() {
        let m = three_classes();
        assert_eq!(m.total(), 11);
        assert!(close(m.accuracy(), 8.0 / 11.0));
        let c0 = m.class(0);
        assert_eq!((c0.support, c0.predicted, c0.correct), (6, 7, 5));
        assert!(close(c0.recall, 5.0 / 6.0));
        assert!(close(c0.precision, 5.0 / 7.0));
        assert!(close(c0.f1, 10.0 / 13.0));
        let c1 = m.class(1);
        assert!(close(c1.recall, 3.0 / 5.0));
        assert!(close(c1.precision, 3.0 / 4.0));
        assert!(close(c1.f1, 6.0 / 9.0));
        // Class 2: no samples, never predicted: nothing is defined.
        let c2 = m.class(2);
        assert_eq!((c2.recall, c2.precision, c2.f1), (None, None, None));
        // Averages over the classes where defined.
        assert!(close(m.balanced_accuracy(), (5.0 / 6.0 + 3.0 / 5.0) / 2.0));
        assert!(close(m.macro_f1(), (10.0 / 13.0 + 6.0 / 9.0) / 2.0));
    }

    #[test]
    fn never_predicted_class_has_recall_zero_and_no_precision() {
        // True class 1 always predicted as 0: recall 0, precision undefined, F1 0.
        let m = ConfusionMatrix::from_counts(2, vec![3, 0, 2, 0]).unwrap();
        let c1 = m.class(1);
        assert_eq!(c1.recall, Some(0.0));
        assert_eq!(c1.precision, None);
        assert_eq!(c1.f1, Some(0.0));
        assert!(close(m.balanced_accuracy(), 0.5));
        assert!(close(m.accuracy(), 0.6));
        assert!(close(m.macro_f1(), (6.0 / 8.0) / 2.0));
    }

    #[test]
    fn empty_matrix_is_undefined_not_nan() {
        let m = ConfusionMatrix::new(4).unwrap();
        assert_eq!(m.accuracy(), None);
        assert_eq!(m.balanced_accuracy(), None);
        assert_eq!(m.macro_f1(), None);
        assert!(m.per_class().iter().all(|c| c.recall.is_none()));
    }

    #[test]
    fn accumulate_matches_caffe_accuracy() {
        // Four items, three classes; argmaxes 0, 1, 2, 2 (the accuracy layer's test case).
        let scores = blob(
            &[4, 3],
            &[0.9, 0.5, 0.1, 0.4, 0.6, 0.0, 0.1, 0.3, 0.7, 0.2, 0.1, 0.8],
        );
        let labels = blob(&[4], &[0.0, 1.0, 1.0, 0.0]);
        let mut m = ConfusionMatrix::new(3).unwrap();
        assert_eq!(m.accumulate(&scores, &labels, 1, None).unwrap(), 4);
        assert_eq!(
            m.rows().collect::<Vec<_>>(),
            vec![&[1, 0, 1][..], &[0, 1, 1], &[0, 0, 0]]
        );
        assert_eq!(m.accuracy(), Some(0.5));
        // Batches add up.
        m.accumulate(&scores, &labels, 1, None).unwrap();
        assert_eq!(m.count(0, 2), 2);
        assert_eq!(m.total(), 8);
    }

    #[test]
    fn ties_count_against_the_label() {
        let scores = blob(&[3, 3], &[0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.2, 0.7, 0.7]);
        let labels = blob(&[3], &[0.0, 1.0, 0.0]);
        let mut m = ConfusionMatrix::new(3).unwrap();
        m.accumulate(&scores, &labels, 1, None).unwrap();
        // Item 0: tie of 0 and 1, label 0 → predicted 1. Item 1: label 1 → predicted 0. Item 2: tie of 1 and 2
        // without the label → the first, 1.
        assert_eq!(m.count(0, 1), 2);
        assert_eq!(m.count(1, 0), 1);
        assert_eq!(m.accuracy(), Some(0.0));
    }

    #[test]
    fn ignore_label_nan_and_axis() {
        // Scores 1 × 2 × 3 (classes along axis 1, three positions along axis 2); labels 1 × 3.
        let scores = blob(&[1, 2, 3], &[0.9, 0.1, f32::NAN, 0.1, 0.9, 0.0]);
        let labels = blob(&[1, 3], &[0.0, -1.0, 1.0]);
        let mut m = ConfusionMatrix::new(2).unwrap();
        assert_eq!(m.accumulate(&scores, &labels, 1, Some(-1)).unwrap(), 1);
        assert_eq!(m.count(0, 0), 1);
        assert_eq!(m.ignored(), 1);
        assert_eq!(m.not_a_number(), 1);
        // The same along a negative axis, classes last: 3 × 2.
        let scores = blob(&[3, 2], &[0.9, 0.1, 0.1, 0.9, 0.8, 0.2]);
        let labels = blob(&[3], &[0.0, 1.0, 1.0]);
        let mut m = ConfusionMatrix::new(2).unwrap();
        m.accumulate(&scores, &labels, -1, None).unwrap();
        assert_eq!(m.rows().collect::<Vec<_>>(), vec![&[1, 0][..], &[1, 1]]);
    }

    #[test]
    fn segmentation_metrics_by_hand() {
        // The three-class matrix: class 0: TP 5, FP 2, FN 1 → 5/8; class 1: TP 3, FP 1, FN 2 → 3/6; class 2 is
        // neither labelled nor predicted: undefined, and left out of the mean.
        let m = three_classes();
        assert!(close(m.iou(0), 5.0 / 8.0));
        assert!(close(m.iou(1), 0.5));
        assert_eq!(m.iou(2), None);
        assert_eq!(m.iou_classes(), 2);
        assert!(close(m.mean_iou(), (5.0 / 8.0 + 0.5) / 2.0));
        assert!(close(m.pixel_accuracy(), 8.0 / 11.0));
        // Frequencies from the labels: 6/11 and 5/11.
        assert!(close(
            m.frequency_weighted_iou(),
            6.0 / 11.0 * 5.0 / 8.0 + 5.0 / 11.0 * 0.5
        ));
        // A class predicted but never labelled counts, with IoU 0; it weighs nothing in fwIoU.
        //   [4 0 1]
        //   [1 2 1]
        //   [0 0 0]
        let m = ConfusionMatrix::from_counts(3, vec![4, 0, 1, 1, 2, 1, 0, 0, 0]).unwrap();
        assert!(close(m.iou(0), 4.0 / 6.0));
        assert!(close(m.iou(1), 2.0 / 4.0));
        assert_eq!(m.iou(2), Some(0.0));
        assert_eq!(m.iou_classes(), 3);
        assert!(close(m.mean_iou(), (4.0 / 6.0 + 0.5 + 0.0) / 3.0));
        assert!(close(
            m.frequency_weighted_iou(),
            5.0 / 9.0 * 4.0 / 6.0 + 4.0 / 9.0 * 0.5
        ));
        assert_eq!(
            m.per_class_iou(),
            vec![Some(4.0 / 6.0), Some(0.5), Some(0.0)]
        );
        // Perfect predictions: every IoU 1.
        let m = ConfusionMatrix::from_counts(2, vec![3, 0, 0, 7]).unwrap();
        assert_eq!(m.mean_iou(), Some(1.0));
        assert_eq!(m.frequency_weighted_iou(), Some(1.0));
        // Nothing counted: undefined, not NaN.
        let m = ConfusionMatrix::new(3).unwrap();
        assert_eq!(m.mean_iou(), None);
        assert_eq!(m.frequency_weighted_iou(), None);
        assert_eq!(m.iou_classes(), 0);
    }

    #[test]
    fn segmentation_counts_every_pixel() {
        // Scores 1 × 2 × 2 × 2 (two classes over a 2 × 2 image), labels 1 × 1 × 2 × 2 with one ignored pixel.
        let scores = blob(&[1, 2, 2, 2], &[0.9, 0.1, 0.7, 0.8, 0.1, 0.9, 0.3, 0.2]);
        let labels = blob(&[1, 1, 2, 2], &[0.0, 1.0, 1.0, 255.0]);
        let mut m = ConfusionMatrix::new(2).unwrap();
        assert_eq!(m.accumulate(&scores, &labels, 1, Some(255)).unwrap(), 3);
        // Predicted 0, 1, 0 for labels 0, 1, 1.
        assert_eq!(m.rows().collect::<Vec<_>>(), vec![&[1, 0][..], &[1, 1]]);
        assert!(close(m.iou(0), 0.5));
        assert!(close(m.iou(1), 0.5));
        assert!(close(m.mean_iou(), 0.5));
        assert!(close(m.pixel_accuracy(), 2.0 / 3.0));
    }

    #[test]
    fn bad_labels_and_shapes_are_errors() {
        let scores = blob(&[2, 3], &[0.0; 6]);
        let mut m = ConfusionMatrix::new(3).unwrap();
        for bad in [1.5, 3.0, -1.0, f32::NAN] {
            let error = m
                .accumulate(&scores, &blob(&[2], &[0.0, bad]), 1, None)
                .unwrap_err();
            assert!(error.0.contains("position 1"), "{error}");
            assert!(error.0.contains("[0, 3)"), "{error}");
        }
        let error = m
            .accumulate(&scores, &blob(&[3], &[0.0; 3]), 1, None)
            .unwrap_err();
        assert!(error.0.contains("need 2 × 1 = 2 labels"), "{error}");
        let error = ConfusionMatrix::new(4)
            .unwrap()
            .accumulate(&scores, &blob(&[2], &[0.0; 2]), 1, None)
            .unwrap_err();
        assert!(error.0.contains("3 classes"), "{error}");
        assert!(m.merge(&ConfusionMatrix::new(2).unwrap()).is_err());
    }
}
