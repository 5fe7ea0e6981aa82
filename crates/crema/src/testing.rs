//! Test support shared by every layer's tests: a finite-difference gradient checker and blob builders.
//!
//! The checker takes the objective `L = Σ w · top` with fixed random weights `w` (for a loss layer's scalar
//! top, `w` is the loss weight), sets the tops' diffs to `w`, runs backward, and compares every bottom and
//! parameter gradient with `(L(x + h) - L(x - h)) / 2h`, as Caffe's GradientChecker does.

use rand::Rng as _;

use crate::blob::Blob;
use crate::layer::Layer;
use crate::math::{self, Rng};

/// A blob of `shape` with values drawn uniformly from `[low, high)` by a generator seeded with `seed`.
pub fn uniform_blob(shape: &[usize], low: f32, high: f32, seed: u64) -> Blob {
    let mut rng = math::rng(seed, 0);
    let mut blob = Blob::new(shape).expect("test shapes are small");
    for v in blob.data_mut() {
        *v = rng.random_range(low..high);
    }
    blob
}

/// Finite-difference gradient checking.
#[derive(Debug, Clone, Copy)]
pub struct GradientChecker {
    /// The step h.
    pub step: f32,
    /// Allowed difference, relative to max(|analytic|, |numeric|, 1).
    pub threshold: f32,
    /// Seed of the objective's weights.
    pub seed: u64,
    /// Put weight on this top only (as Caffe's checker does for layers whose other tops pass no gradient back,
    /// such as a loss layer's probabilities).
    pub only_top: Option<usize>,
}

impl Default for GradientChecker {
    fn default() -> Self {
        GradientChecker {
            step: 1e-2,
            threshold: 1e-3,
            seed: 1701,
            only_top: None,
        }
    }
}

fn run_forward(layer: &mut dyn Layer, bottoms: &[Blob], tops: &mut [Blob]) {
    let bottom_refs: Vec<&Blob> = bottoms.iter().collect();
    let mut top_refs: Vec<&mut Blob> = tops.iter_mut().collect();
    layer.reshape(&bottom_refs, &mut top_refs).expect("reshape");
    layer.forward(&bottom_refs, &mut top_refs).expect("forward");
}

fn objective(tops: &[Blob], weights: &[Vec<f32>]) -> f64 {
    tops.iter()
        .zip(weights)
        .map(|(top, w)| math::dot(top.data(), w))
        .sum()
}

impl GradientChecker {
    /// Checks the gradients of `layer` with respect to the bottoms listed in `check` and to every
    /// learnable blob (those [`Layer::param_is_learned`] says the solver changes). The layer must be freshly
    /// made; `tops` is how many tops to give it.
    /// Returns a description of the first mismatches, if any.
    pub fn check(
        &self,
        layer: &mut dyn Layer,
        bottoms: &mut [Blob],
        tops: usize,
        check: &[usize],
    ) -> Result<(), String> {
        let mut top_blobs: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        {
            let bottom_refs: Vec<&Blob> = bottoms.iter().collect();
            let mut top_refs: Vec<&mut Blob> = top_blobs.iter_mut().collect();
            layer
                .setup(&bottom_refs, &mut top_refs)
                .map_err(|e| format!("setup: {e}"))?;
        }
        run_forward(layer, bottoms, &mut top_blobs);
        let mut rng: Rng = math::rng(self.seed, 99);
        let weights: Vec<Vec<f32>> = top_blobs
            .iter()
            .enumerate()
            .map(|(t, top)| {
                let weighted = self.only_top.is_none_or(|only| only == t);
                (0..top.count())
                    .map(|_| {
                        if weighted {
                            rng.random_range(-1.0f32..1.0)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();

        // Analytic gradients.
        for (top, w) in top_blobs.iter_mut().zip(&weights) {
            top.diff_mut().copy_from_slice(w);
        }
        for param in layer.params_mut() {
            param.zero_diff();
        }
        for bottom in bottoms.iter_mut() {
            bottom.diff_mut().fill(f32::NAN);
        }
        let propagate: Vec<bool> = (0..bottoms.len()).map(|i| check.contains(&i)).collect();
        {
            let top_refs: Vec<&Blob> = top_blobs.iter().collect();
            let mut bottom_refs: Vec<&mut Blob> = bottoms.iter_mut().collect();
            layer
                .backward(&top_refs, &propagate, &mut bottom_refs)
                .map_err(|e| format!("backward: {e}"))?;
        }
        let bottom_grads: Vec<Vec<f32>> = bottoms.iter().map(|b| b.diff().to_vec()).collect();
        let param_grads: Vec<Vec<f32>> = layer.params().iter().map(|p| p.diff().to_vec()).collect();

        let mut failures = Vec::new();
        let mut compare = |what: String, analytic: f32, numeric: f64| {
            let scale = f64::from(analytic.abs()).max(numeric.abs()).max(1.0);
            let close = (f64::from(analytic) - numeric).abs() <= f64::from(self.threshold) * scale;
            if !close && failures.len() < 8 {
                failures.push(format!("{what}: analytic {analytic}, numeric {numeric}"));
            }
        };
        let h = self.step;
        for &b in check {
            for (i, &analytic) in bottom_grads[b].iter().enumerate() {
                let original = bottoms[b].data()[i];
                bottoms[b].data_mut()[i] = original + h;
                run_forward(layer, bottoms, &mut top_blobs);
                let plus = objective(&top_blobs, &weights);
                bottoms[b].data_mut()[i] = original - h;
                run_forward(layer, bottoms, &mut top_blobs);
                let minus = objective(&top_blobs, &weights);
                bottoms[b].data_mut()[i] = original;
                compare(
                    format!("bottom {b}[{i}]"),
                    analytic,
                    (plus - minus) / (2.0 * f64::from(h)),
                );
            }
        }
        for (p, grads) in param_grads.iter().enumerate() {
            if !layer.param_is_learned(p) {
                // Kept up to date by the layer itself (BatchNorm's statistics): no gradient is computed.
                continue;
            }
            for (i, &analytic) in grads.iter().enumerate() {
                let original = layer.params()[p].data()[i];
                layer.params_mut()[p].data_mut()[i] = original + h;
                run_forward(layer, bottoms, &mut top_blobs);
                let plus = objective(&top_blobs, &weights);
                layer.params_mut()[p].data_mut()[i] = original - h;
                run_forward(layer, bottoms, &mut top_blobs);
                let minus = objective(&top_blobs, &weights);
                layer.params_mut()[p].data_mut()[i] = original;
                compare(
                    format!("param {p}[{i}]"),
                    analytic,
                    (plus - minus) / (2.0 * f64::from(h)),
                );
            }
        }
        run_forward(layer, bottoms, &mut top_blobs);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }
}

/// A net built from prototxt text in `phase` with `stages` (errors name the origin `<net>`), for tests.
pub fn net_from_text(
    definition: &str,
    phase: crema_proto::caffe::Phase,
    stages: &[&str],
) -> crate::Result<crate::Net> {
    let param: crema_proto::NetParameter = crema_proto::text::parse(definition, "test.prototxt")?;
    let state = crema_proto::NetState {
        phase: Some(phase as i32),
        stage: stages.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    crate::Net::new(&param, &state, &crate::NetOptions::default())
}
