//! ClassWeights (crema's own layer): the InfogainLoss matrix `H = diag(w)` from class counts.
//!
//! bottom: labels (any shape; every value is one sample, an integer in `[0, C)` or the ignore label);
//! top: H, shape 1×1×C×C, for InfogainLoss's third bottom.
//!
//! Parameters: `class_weights_param { num_classes mode method beta normalize counts counts_file ignore_label
//! start_iter }`.
//! The weights are those of [`crate::imbalance`] (the same computations as `crema infogain`), by `mode`:
//! - `BATCH` (default): the counts of this batch's labels, what hand-written "ComputeH" Python layers do, except
//!   that a class missing from the batch gets a defined weight (the rarest present class's) instead of a crash;
//! - `RUNNING`: counts accumulated over every batch this layer has seen (saved in solverstates, so a resumed run
//!   goes on with them): weights settle instead of jumping from batch to batch;
//! - `FIXED`: counts given by `counts` or by `counts_file` (.npy, .binaryproto, or numbers in a text file); H is
//!   computed once, at setup, and the bottom is ignored (it may be left out).
//!
//! `start_iter` defers the re-weighting (DRW, Cao et al. 2019): in a TRAIN net, H is the identity for the first
//! `start_iter` forward passes (training iterations, times iter_size) and the class weights from then on; the
//! counts keep running meanwhile, and the number of passes is saved in solverstates, so a resumed run switches at
//! the same iteration. TEST nets give the class weights throughout.
//!
//! At most [`imbalance::MAX_CLASSES`] classes (H holds C × C values), checked before anything is allocated.
//! `normalize` defaults to `MEAN_ONE`: the mean weight over the counted samples is 1, so the learning rate of an
//! unweighted SoftmaxWithLoss net stays right. No gradient flows through this layer.

use crema_proto::caffe::class_weights_parameter::{Method as MethodParam, Mode, Normalization};

use crate::blob::Blob;
use crate::imbalance::{self, Method};
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The ClassWeights layer.
pub struct ClassWeights {
    classes: usize,
    mode: Mode,
    method: Method,
    normalization: imbalance::Normalization,
    ignore_label: Option<i64>,
    /// FIXED: the given counts; RUNNING: the counts so far; BATCH: the last batch's counts.
    counts: Vec<u64>,
    /// FIXED: H, computed at setup.
    fixed: Option<Vec<f32>>,
    /// The weights of the current batch (kept to allocate nothing per batch).
    weights: Vec<f64>,
    /// Deferred re-weighting: H is the identity for this many TRAIN forward passes (0: never).
    start_iter: u64,
    /// TRAIN forward passes so far, while `start_iter` is set (saved in snapshots so that a resumed run switches
    /// at the same iteration); TEST nets always give the class weights.
    passes: Option<u64>,
}

/// Makes a ClassWeights layer from its parameters (FIXED counts are read and H computed here).
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.class_weights_param.clone().unwrap_or_default();
    let mode = param.mode();
    let method = match param.method() {
        MethodParam::InverseFrequency => Method::InverseFrequency,
        MethodParam::MedianFrequency => Method::MedianFrequency,
        MethodParam::EffectiveNumber => Method::EffectiveNumber {
            beta: f64::from(param.beta()),
        },
    };
    let normalization = match param.normalize() {
        Normalization::MeanOne => imbalance::Normalization::MeanOne,
        Normalization::SumOne => imbalance::Normalization::SumOne,
        Normalization::None => imbalance::Normalization::None,
    };
    if let Method::EffectiveNumber { beta } = method {
        if !(0.0..1.0).contains(&beta) {
            return Err(LayerError::new(format!(
                "class_weights_param.beta: {beta} is outside [0, 1)"
            )));
        }
    }
    let given_counts = match (&param.counts[..], param.counts_file.as_deref()) {
        ([], None) => None,
        ([], Some(file)) => Some(
            imbalance::read_counts(&ctx.resolve(file))
                .map_err(|e| LayerError::new(format!("class_weights_param.counts_file: {e}")))?,
        ),
        (counts, None) => {
            let values: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
            Some(
                imbalance::counts_from_values(&values)
                    .map_err(|e| LayerError::new(format!("class_weights_param.counts: {e}")))?,
            )
        }
        (_, Some(_)) => {
            return Err(LayerError::new(
                "class_weights_param: give counts or counts_file, not both",
            ))
        }
    };
    let classes = match (param.num_classes, &given_counts) {
        (Some(0), _) => {
            return Err(LayerError::new(
                "class_weights_param.num_classes: must be at least 1",
            ))
        }
        (Some(c), Some(counts)) if c as usize != counts.len() => {
            return Err(LayerError::new(format!(
                "class_weights_param.num_classes: {c}, but {} counts are given",
                counts.len()
            )))
        }
        (Some(c), _) => c as usize,
        (None, Some(counts)) if mode == Mode::Fixed => counts.len(),
        (None, _) => {
            return Err(LayerError::new(
                "class_weights_param.num_classes: missing; give the number of classes",
            ))
        }
    };
    if classes > imbalance::MAX_CLASSES {
        return Err(LayerError::new(format!(
            "class_weights_param.num_classes: {}",
            imbalance::ImbalanceError::TooManyClasses(classes)
        )));
    }
    let mut layer = ClassWeights {
        classes,
        mode,
        method,
        normalization,
        ignore_label: param.ignore_label.map(i64::from),
        counts: crate::memory::zeroed(classes, || "the class counts".into())?,
        fixed: None,
        weights: crate::memory::zeroed(classes, || "the class weights".into())?,
        start_iter: u64::from(param.start_iter()),
        passes: (param.start_iter() > 0 && ctx.phase == crema_proto::caffe::Phase::Train)
            .then_some(0),
    };
    match (mode, given_counts) {
        (Mode::Fixed, Some(counts)) => {
            layer.counts = counts;
            layer.compute_weights()?;
            layer.fixed = Some(
                imbalance::diagonal_matrix(&layer.weights)
                    .map_err(|e| LayerError::new(e.to_string()))?,
            );
        }
        (Mode::Fixed, None) => {
            return Err(LayerError::new(
                "class_weights_param: mode FIXED needs counts or counts_file",
            ))
        }
        (_, Some(_)) => {
            return Err(LayerError::new(format!(
                "class_weights_param: counts are only used in mode FIXED, not {}",
                mode.as_str_name()
            )))
        }
        (_, None) => {}
    }
    Ok(Box::new(layer))
}

impl ClassWeights {
    /// The counts behind the current H (the given ones, the running totals, or the last batch's).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The class weights of the current counts, into `self.weights`.
    fn compute_weights(&mut self) -> LayerResult {
        imbalance::class_weights_into(
            &self.counts,
            self.method,
            self.normalization,
            &mut self.weights,
        )
        .map_err(|e| LayerError::new(e.to_string()))
    }
}

impl Layer for ClassWeights {
    fn type_name(&self) -> &'static str {
        "ClassWeights"
    }

    fn bottom_arity(&self) -> Arity {
        if self.mode == Mode::Fixed {
            Arity::between(0, 1)
        } else {
            Arity::exactly(1)
        }
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn allow_force_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].reshape(&[1, 1, self.classes, self.classes])?;
        if let (Some(h), None) = (&self.fixed, self.passes) {
            top[0].data_mut().copy_from_slice(h);
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let deferred = self.passes.is_some_and(|passes| passes < self.start_iter);
        if let Some(passes) = &mut self.passes {
            *passes = passes.saturating_add(1);
        }
        if self.mode != Mode::Fixed {
            self.count_batch(bottom[0])?;
        }
        if deferred {
            let h = top[0].data_mut();
            h.fill(0.0);
            h.iter_mut()
                .step_by(self.classes + 1)
                .for_each(|v| *v = 1.0);
        } else if let Some(h) = &self.fixed {
            top[0].data_mut().copy_from_slice(h);
        } else {
            imbalance::write_diagonal_matrix(&self.weights, top[0].data_mut());
        }
        Ok(())
    }

    fn state(&self) -> Option<Vec<u8>> {
        let mut state = Vec::new();
        if self.mode == Mode::Running {
            state.extend(self.counts.iter().flat_map(|c| c.to_le_bytes()));
        }
        if let Some(passes) = self.passes {
            state.extend(passes.to_le_bytes());
        }
        (!state.is_empty()).then_some(state)
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        let counts = if self.mode == Mode::Running {
            8 * self.classes
        } else {
            0
        };
        let passes = if self.passes.is_some() { 8 } else { 0 };
        if counts + passes == 0 || state.len() != counts + passes {
            return Err(LayerError::new(format!(
                "the saved state ({} bytes) does not fit this layer's {} classes in mode {}{}",
                state.len(),
                self.classes,
                self.mode.as_str_name(),
                if passes > 0 { " with start_iter" } else { "" }
            )));
        }
        let mut words = state
            .chunks_exact(8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().expect("chunks of 8 bytes")));
        if self.mode == Mode::Running {
            for count in &mut self.counts {
                *count = words.next().unwrap_or(0);
            }
        }
        if let Some(passes) = &mut self.passes {
            *passes = words.next().unwrap_or(0);
        }
        Ok(())
    }
}

impl ClassWeights {
    /// Counts the batch's labels (afresh in BATCH mode, added in RUNNING) and computes the weights.
    fn count_batch(&mut self, labels: &Blob) -> LayerResult {
        let labels = labels.data().iter().map(|&v| f64::from(v));
        if self.mode == Mode::Batch {
            self.counts.fill(0);
        }
        imbalance::add_label_counts(&mut self.counts, labels, self.ignore_label).map_err(|e| {
            let message = format!("bottom[0] (labels): {e}");
            match e {
                imbalance::ImbalanceError::LabelNotInteger { index, .. }
                | imbalance::ImbalanceError::LabelOutOfRange { index, .. } => {
                    LayerError::at_item(message, 0, index)
                }
                _ => LayerError::new(message),
            }
        })?;
        self.compute_weights()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io;
    use crate::layers::test_support::context;

    fn make(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    /// Runs one forward over `labels`; returns H's diagonal.
    fn diagonal(layer: &mut dyn Layer, labels: &[f32]) -> LayerResult<Vec<f32>> {
        let mut bottom = Blob::new(&[labels.len()]).unwrap();
        bottom.data_mut().copy_from_slice(labels);
        let mut top = Blob::default();
        layer.setup(&[&bottom], &mut [&mut top])?;
        layer.reshape(&[&bottom], &mut [&mut top])?;
        layer.forward(&[&bottom], &mut [&mut top])?;
        let c = top.shape()[2];
        assert_eq!(top.shape(), [1, 1, c, c]);
        for (i, v) in top.data().iter().enumerate() {
            assert!(i % (c + 1) == 0 || *v == 0.0, "off-diagonal H[{i}] = {v}");
        }
        Ok((0..c).map(|i| top.data()[i * c + i]).collect())
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn batch_mode_mean_one_by_hand_and_a_class_missing_from_the_batch() {
        let mut layer = make("class_weights_param { num_classes: 3 }").unwrap();
        // Counts (3, 1, 0): raw (1/3, 1, 1); 3/3 + 1 = 2 weighted for N = 4: scale 2 → (2/3, 2, 2).
        let w = diagonal(layer.as_mut(), &[0.0, 0.0, 1.0, 0.0]).unwrap();
        close(&w, &[2.0 / 3.0, 2.0, 2.0]);
        // The next batch alone decides.
        let w = diagonal(layer.as_mut(), &[2.0, 2.0]).unwrap();
        close(&w, &[1.0, 1.0, 1.0]);
    }

    #[test]
    fn running_mode_accumulates_and_restores() {
        let text = "class_weights_param { num_classes: 2 mode: RUNNING normalize: SUM_ONE }";
        let mut layer = make(text).unwrap();
        diagonal(layer.as_mut(), &[0.0, 0.0, 0.0]).unwrap();
        // Counts (3, 1): (1/3, 1) / (4/3) = (0.25, 0.75).
        let w = diagonal(layer.as_mut(), &[1.0]).unwrap();
        close(&w, &[0.25, 0.75]);
        let state = layer.state().unwrap();
        let mut resumed = make(text).unwrap();
        resumed.set_state(&state).unwrap();
        // Counts (4, 1) on both: (1/4, 1) / (5/4) = (0.2, 0.8).
        close(&diagonal(resumed.as_mut(), &[0.0]).unwrap(), &[0.2, 0.8]);
        close(&diagonal(layer.as_mut(), &[0.0]).unwrap(), &[0.2, 0.8]);
        assert!(resumed.set_state(&state[..8]).is_err());
    }

    #[test]
    fn fixed_mode_from_counts_and_from_a_file() {
        // Effective number, β = 0.9, no normalization: counts 1, 2, 10 → 1, 1/1.9, 1/6.513215599.
        let expected = [1.0, 1.0 / 1.9, 1.0 / 6.513_215_6];
        let mut layer = make(
            "class_weights_param { mode: FIXED method: EFFECTIVE_NUMBER beta: 0.9 normalize: NONE \
             counts: 1 counts: 2 counts: 10 }",
        )
        .unwrap();
        // The labels do not matter in FIXED mode.
        close(&diagonal(layer.as_mut(), &[0.0, 0.0]).unwrap(), &expected);
        let dir = std::env::temp_dir().join(format!("crema-cw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text_file = dir.join("counts.txt");
        std::fs::write(&text_file, "1, 2\n10\n").unwrap();
        let npy = dir.join("counts.npy");
        io::write_array(
            &npy,
            &io::Array::from_f32(vec![3], vec![1.0, 2.0, 10.0]).unwrap(),
        )
        .unwrap();
        for file in [text_file, npy] {
            let mut layer = make(&format!(
                "class_weights_param {{ mode: FIXED method: EFFECTIVE_NUMBER beta: 0.9 normalize: NONE \
                 counts_file: {file:?} num_classes: 3 }}"
            ))
            .unwrap();
            let mut top = Blob::default();
            layer.setup(&[], &mut [&mut top]).unwrap();
            layer.reshape(&[], &mut [&mut top]).unwrap();
            layer.forward(&[], &mut [&mut top]).unwrap();
            let w: Vec<f32> = (0..3).map(|i| top.data()[i * 4]).collect();
            close(&w, &expected);
        }
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        // Given counts whose sum passes u64.
        let mut layer = make(
            "class_weights_param { mode: FIXED normalize: SUM_ONE \
             counts: 9e18 counts: 9e18 counts: 9e18 counts: 3e18 }",
        )
        .unwrap();
        close(
            &diagonal(layer.as_mut(), &[]).unwrap(),
            // (1/9, 1/9, 1/9, 1/3) / (2/3).
            &[1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 0.5],
        );
        // Saved running counts at the top of u64, counted on.
        let text = "class_weights_param { num_classes: 2 mode: RUNNING normalize: SUM_ONE }";
        let mut layer = make(text).unwrap();
        let mut state = u64::MAX.to_le_bytes().to_vec();
        state.extend_from_slice(&u64::MAX.to_le_bytes());
        layer.set_state(&state).unwrap();
        close(&diagonal(layer.as_mut(), &[0.0, 1.0]).unwrap(), &[0.5, 0.5]);
    }

    #[test]
    fn median_frequency_and_ignore_label() {
        let mut layer = make(
            "class_weights_param { num_classes: 3 method: MEDIAN_FREQUENCY normalize: NONE ignore_label: 255 }",
        )
        .unwrap();
        // Counts (6, 3, 1) of 10 (the 255s skipped): f = (0.6, 0.3, 0.1), median 0.3 → (0.5, 1, 3).
        let mut labels = vec![0.0; 6];
        labels.extend([1.0, 1.0, 1.0, 2.0, 255.0, 255.0]);
        close(
            &diagonal(layer.as_mut(), &labels).unwrap(),
            &[0.5, 1.0, 3.0],
        );
    }

    #[test]
    fn bad_labels_and_bad_parameters_are_named() {
        let mut layer = make("class_weights_param { num_classes: 3 }").unwrap();
        let err = diagonal(layer.as_mut(), &[0.0, 3.0]).unwrap_err().0;
        assert_eq!(
            err,
            "bottom[0] (labels): label 3 at position 1 is outside [0, 3) (num_classes is 3)"
        );
        let err = diagonal(layer.as_mut(), &[0.5]).unwrap_err().0;
        assert_eq!(
            err,
            "bottom[0] (labels): label 0.5 at position 0 is not an integer"
        );
        for (text, start) in [
            ("name: \"w\"", "class_weights_param.num_classes: missing"),
            (
                "class_weights_param { num_classes: 0 }",
                "class_weights_param.num_classes: must be",
            ),
            (
                "class_weights_param { mode: FIXED num_classes: 2 }",
                "class_weights_param: mode FIXED needs",
            ),
            (
                "class_weights_param { num_classes: 2 counts: 1 counts: 2 }",
                "class_weights_param: counts are only used in mode FIXED, not BATCH",
            ),
            (
                "class_weights_param { mode: FIXED num_classes: 3 counts: 1 counts: 2 }",
                "class_weights_param.num_classes: 3, but 2 counts",
            ),
            (
                "class_weights_param { mode: FIXED counts: 1 counts: -2 }",
                "class_weights_param.counts: count -2 of class 1",
            ),
            (
                "class_weights_param { num_classes: 2 method: EFFECTIVE_NUMBER beta: 1 }",
                "class_weights_param.beta: 1 is outside",
            ),
            (
                "class_weights_param { mode: FIXED counts_file: \"/nonexistent/c.txt\" }",
                "class_weights_param.counts_file: /nonexistent/c.txt:",
            ),
            // H would hold C × C values: more than a blob may (and far more memory than there is).
            (
                "class_weights_param { num_classes: 4000000000 }",
                "class_weights_param.num_classes: 4000000000 classes; at most 46340",
            ),
        ] {
            let err = make(text).err().unwrap().0;
            assert!(err.starts_with(start), "{text}: {err}");
        }
    }

    #[test]
    fn deferred_reweighting_gives_the_identity_before_start_iter_and_resumes() {
        let text = "class_weights_param { num_classes: 3 mode: RUNNING start_iter: 2 }";
        let param = crema_proto::text::parse(text, "t").unwrap();
        let labels = Blob::from_data(&[4], vec![0.0, 0.0, 0.0, 1.0]).unwrap();
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let run = |layer: &mut Box<dyn Layer>| {
            let mut top = Blob::default();
            layer.reshape(&[&labels], &mut [&mut top]).unwrap();
            layer.forward(&[&labels], &mut [&mut top]).unwrap();
            top.data().to_vec()
        };
        let mut layer = create(&mut context(&param)).unwrap();
        assert_eq!(run(&mut layer), identity);
        let saved = layer.state().unwrap();
        assert_eq!(saved.len(), 8 * 3 + 8);
        assert_eq!(run(&mut layer), identity);
        let weighted = run(&mut layer);
        assert_ne!(weighted, identity);
        // The counts kept running under the identity: 9 zeros and 3 ones seen, class 2 none (the rarest's weight).
        assert!(weighted[0] < weighted[4]);
        // A layer resumed after the first pass switches at the same pass.
        let mut resumed = create(&mut context(&param)).unwrap();
        resumed.set_state(&saved).unwrap();
        assert_eq!(run(&mut resumed), identity);
        assert_eq!(run(&mut resumed), weighted);
        // A TEST net gives the weights from the start.
        let test = crate::layers::test_support::context_in(&param, crema_proto::caffe::Phase::Test);
        let mut layer = create(&mut { test }).unwrap();
        assert_ne!(run(&mut layer), identity);
        assert!(layer.state().is_some()); // the RUNNING counts
                                          // FIXED with start_iter: the identity, then the fixed H.
        let text = "class_weights_param { mode: FIXED counts: 1 counts: 3 start_iter: 1 }";
        let param = crema_proto::text::parse(text, "t").unwrap();
        let mut layer = create(&mut context(&param)).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[], &mut [&mut top]).unwrap();
        layer.forward(&[], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), &[1.0, 0.0, 0.0, 1.0]);
        layer.forward(&[], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), &[2.0, 0.0, 0.0, 2.0 / 3.0]);
        assert_eq!(layer.state().unwrap().len(), 8);
        assert!(layer.set_state(&[0; 3]).is_err());
    }
}
