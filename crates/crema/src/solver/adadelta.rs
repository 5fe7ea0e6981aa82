//! AdaDelta, as Caffe writes it (`momentum` μ, `delta` δ):
//!
//! ```text
//! a ← (1 − μ)·g² + μ·a                 mean square of gradients
//! u = g · √((b + δ) / (a + δ))         the AdaDelta step
//! b ← (1 − μ)·u² + μ·b                 mean square of steps
//! step = lr · u
//! ```
//!
//! Unlike the paper, Caffe multiplies the step by the learning rate (so AdaDelta solvers use `base_lr: 1`);
//! crema does the same. Histories: `a` for every learnable blob, then `b` for every learnable blob.

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// The AdaDelta rule.
#[derive(Debug, Clone)]
pub struct AdaDelta {
    momentum: f32,
    delta: f32,
    histories: Histories,
}

impl AdaDelta {
    /// AdaDelta with decay `momentum` of both mean squares and `delta` added to each.
    pub fn new(momentum: f32, delta: f32) -> AdaDelta {
        AdaDelta {
            momentum,
            delta,
            histories: Histories::new(2),
        }
    }

    /// AdaDelta from the SolverParameter's `momentum` and `delta`.
    pub fn from_param(param: &SolverParameter) -> Result<AdaDelta, SolverError> {
        Ok(AdaDelta::new(param.momentum(), param.delta()))
    }
}

impl UpdateRule for AdaDelta {
    fn type_name(&self) -> &'static str {
        "AdaDelta"
    }

    fn histories(&self) -> &Histories {
        &self.histories
    }

    fn histories_mut(&mut self) -> &mut Histories {
        &mut self.histories
    }

    fn compute_update(
        &mut self,
        id: usize,
        offset: usize,
        diff: &mut [f32],
        local_rate: f32,
        _iter: u32,
    ) {
        let (momentum, delta) = (self.momentum, self.delta);
        let (gradients, steps) = self.histories.pair(id, offset, diff.len());
        debug_assert_eq!(gradients.len(), diff.len());
        for ((g, a), b) in diff.iter_mut().zip(gradients).zip(steps) {
            *a = (1.0 - momentum) * (*g * *g) + momentum * *a;
            let step = *g * ((delta + *b) / (delta + *a)).sqrt();
            *b = (1.0 - momentum) * (step * step) + momentum * *b;
            *g = local_rate * step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn scales_by_the_ratio_of_running_root_mean_squares_and_the_rate() {
        let (mu, delta, lr) = (0.95, 1e-6, 0.5);
        let mut rule = AdaDelta::new(mu as f32, delta as f32);
        let out = steps(&mut rule, &[&[2.0], &[-1.0]], lr as f32);
        // Iteration 0: a = 0.05·4; u = 2·√(δ / (a + δ)); b = 0.05·u²
        let a1 = (1.0 - mu) * 4.0;
        let u1 = 2.0 * f64::sqrt((delta + 0.0) / (delta + a1));
        let b1 = (1.0 - mu) * u1 * u1;
        assert_close(&out[0], &[lr * u1]);
        // Iteration 1
        let a2 = (1.0 - mu) * 1.0 + mu * a1;
        let u2 = -f64::sqrt((delta + b1) / (delta + a2)); // g = −1
        let b2 = (1.0 - mu) * u2 * u2 + mu * b1;
        assert_close(&out[1], &[lr * u2]);
        // Histories: gradients' mean square, then steps' mean square.
        assert_close(rule.history()[0].data(), &[a2]);
        assert_close(rule.history()[1].data(), &[b2]);
    }
}
