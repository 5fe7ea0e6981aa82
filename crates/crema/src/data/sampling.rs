//! Class-balanced sampling (`sampling_param { mode }`): which item of a source each place of a batch takes.
//!
//! `CLASS_BALANCED` draws a class uniformly among the classes that have items, `SQRT` draws class c with
//! probability proportional to √n_c; then an item of that class is drawn uniformly, with replacement. Draws come
//! from the layer's own generator (derived from the solver's seed), whose state is all a solverstate needs to
//! resume the same draws. `INSTANCE` (every item in turn) is the sources' own reading and needs no sampler.

use rand::Rng as _;

use crate::math::{rng_from_state, rng_state, Rng};

/// How classes are weighed when drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Every class with items equally often.
    Uniform,
    /// Class c in proportion to √n_c.
    Sqrt,
}

/// Draws item indices class by class.
#[derive(Debug, Clone)]
pub struct ClassSampler {
    /// The items of each class, by index into the source.
    by_class: Vec<Vec<usize>>,
    /// The running sum of the class probabilities (the last is 1).
    cumulative: Vec<f64>,
    rng: Rng,
}

impl ClassSampler {
    /// A sampler over items whose classes are `labels` (one per item: whole numbers from 0); an error names the
    /// first label that is not a class, or says that there are no items.
    pub fn new(labels: &[f64], balance: Balance, rng: Rng) -> Result<Self, String> {
        let mut by_class: Vec<Vec<usize>> = Vec::new();
        for (item, &label) in labels.iter().enumerate() {
            if !(label.is_finite()
                && label >= 0.0
                && label.fract() == 0.0
                && label < crate::imbalance::MAX_CLASSES as f64)
            {
                return Err(format!(
                    "label {label} of item {item} is not a class (a whole number from 0)"
                ));
            }
            let class = label as usize;
            if by_class.len() <= class {
                by_class.resize_with(class + 1, Vec::new);
            }
            by_class[class].push(item);
        }
        if labels.is_empty() {
            return Err("no items to sample from".into());
        }
        let weights: Vec<f64> = by_class
            .iter()
            .map(|items| match (items.len(), balance) {
                (0, _) => 0.0,
                (_, Balance::Uniform) => 1.0,
                (n, Balance::Sqrt) => (n as f64).sqrt(),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let mut cumulative: Vec<f64> = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        if let Some(last) = cumulative.iter_mut().rev().find(|_| true) {
            *last = 1.0;
        }
        Ok(ClassSampler {
            by_class,
            cumulative,
            rng,
        })
    }

    /// The next item's index.
    pub fn draw(&mut self) -> usize {
        let u: f64 = self.rng.random();
        // The first class whose running sum passes u; empty classes add nothing, so they are never picked.
        let class = self
            .cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1);
        let items = &self.by_class[class];
        items[self.rng.random_range(0..items.len())]
    }

    /// The probability of each class.
    pub fn class_probabilities(&self) -> Vec<f64> {
        let mut previous = 0.0;
        self.cumulative
            .iter()
            .map(|&c| {
                let p = c - previous;
                previous = c;
                p
            })
            .collect()
    }

    /// The generator's state, for a solverstate.
    pub fn state(&self) -> Vec<u8> {
        rng_state(&self.rng)
    }

    /// Puts back a state from [`ClassSampler::state`]; false when the bytes are not one.
    pub fn set_state(&mut self, bytes: &[u8]) -> bool {
        match rng_from_state(bytes) {
            Some(rng) => {
                self.rng = rng;
                true
            }
            None => false,
        }
    }
}

/// The sampler's generator for a layer: the layer's seed on a stream of its own, apart from the layer's other
/// draws (shuffling, transforms) and from every other layer's (whose streams are their positions in the net).
pub fn sampling_rng(layer_rng: &Rng) -> Rng {
    let mut rng = layer_rng.clone();
    rng.set_stream(layer_rng.get_stream() ^ (1 << 63));
    rng.set_word_pos(0);
    rng
}

/// The sampler a `sampling_param` asks for (None for INSTANCE), over items of classes `labels`.
pub fn sampler_for(
    mode: crema_proto::caffe::sampling_parameter::Mode,
    labels: impl FnOnce() -> Result<Vec<f64>, String>,
    rng: Rng,
) -> Result<Option<ClassSampler>, String> {
    use crema_proto::caffe::sampling_parameter::Mode;
    let balance = match mode {
        Mode::Instance => return Ok(None),
        Mode::ClassBalanced => Balance::Uniform,
        Mode::Sqrt => Balance::Sqrt,
    };
    ClassSampler::new(&labels()?, balance, rng).map(Some)
}

/// Pearson's chi-squared statistic of `counts` drawn against `probabilities` (a class of probability 0 must have
/// no draws), for the statistical tests of sampled batches.
#[cfg(test)]
pub(crate) fn chi_squared(counts: &[u64], probabilities: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(probabilities)
        .map(|(&c, &p)| {
            if p == 0.0 {
                assert_eq!(c, 0, "a class of probability 0 was drawn");
                0.0
            } else {
                let expected = p * n as f64;
                (c as f64 - expected).powi(2) / expected
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1000 items: class 0 has 900, class 1 has 90, class 2 none, class 3 has 10.
    fn labels() -> Vec<f64> {
        let mut labels = vec![0.0; 900];
        labels.extend(vec![1.0; 90]);
        labels.extend(vec![3.0; 10]);
        labels
    }

    #[test]
    fn class_frequencies_match_the_mode() {
        let labels = labels();
        for (balance, expected) in [
            (Balance::Uniform, vec![1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0]),
            (Balance::Sqrt, {
                let s = [900f64.sqrt(), 90f64.sqrt(), 0.0, 10f64.sqrt()];
                let t: f64 = s.iter().sum();
                s.iter().map(|v| v / t).collect()
            }),
        ] {
            let mut sampler = ClassSampler::new(&labels, balance, crate::math::rng(7, 1)).unwrap();
            for (p, q) in sampler.class_probabilities().iter().zip(&expected) {
                assert!((p - q).abs() < 1e-12);
            }
            let mut counts = vec![0u64; 4];
            let mut items = vec![0u64; labels.len()];
            for _ in 0..60_000 {
                let item = sampler.draw();
                counts[labels[item] as usize] += 1;
                items[item] += 1;
            }
            // 2 degrees of freedom: P(chi² > 13.8) = 0.001.
            let statistic = chi_squared(&counts, &expected);
            assert!(
                statistic < 13.8,
                "{balance:?}: chi² {statistic}, counts {counts:?}"
            );
            // Within class 3, each of its 10 items about equally often.
            let class3 = &items[990..];
            let share = 1.0 / 10.0;
            let within: Vec<f64> = vec![share; 10];
            let statistic = chi_squared(class3, &within);
            assert!(statistic < 27.9, "within a class: chi² {statistic}"); // 9 degrees of freedom, P = 0.001
        }
    }

    #[test]
    fn draws_repeat_from_the_seed_and_from_a_saved_state() {
        let labels = labels();
        let mut a = ClassSampler::new(&labels, Balance::Uniform, crate::math::rng(3, 0)).unwrap();
        let mut b = ClassSampler::new(&labels, Balance::Uniform, crate::math::rng(3, 0)).unwrap();
        let first: Vec<usize> = (0..100).map(|_| a.draw()).collect();
        assert_eq!(first, (0..100).map(|_| b.draw()).collect::<Vec<_>>());
        let saved = a.state();
        let next: Vec<usize> = (0..100).map(|_| a.draw()).collect();
        let mut c = ClassSampler::new(&labels, Balance::Uniform, crate::math::rng(9, 9)).unwrap();
        assert!(c.set_state(&saved));
        assert_eq!(next, (0..100).map(|_| c.draw()).collect::<Vec<_>>());
        assert!(!c.set_state(&[1, 2, 3]));
    }

    #[test]
    fn bad_labels_are_named() {
        let error =
            ClassSampler::new(&[0.0, 1.5], Balance::Uniform, crate::math::rng(1, 0)).unwrap_err();
        assert!(error.contains("label 1.5 of item 1"), "{error}");
        let error =
            ClassSampler::new(&[0.0, -1.0], Balance::Sqrt, crate::math::rng(1, 0)).unwrap_err();
        assert!(error.contains("label -1 of item 1"), "{error}");
        assert!(ClassSampler::new(&[], Balance::Sqrt, crate::math::rng(1, 0)).is_err());
    }
}
