//! Adam (Kingma & Ba), as Caffe writes it (`momentum` β₁, `momentum2` β₂, `delta` ε, `t = iter + 1`):
//!
//! ```text
//! m ← (1 − β₁)·g + β₁·m
//! v ← (1 − β₂)·g² + β₂·v
//! step = lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + ε)
//! ```
//!
//! The bias correction folds into the rate, with `t` one more than the number of updates made before, and ε
//! is added to the uncorrected `√v`. Histories: `m` for every learnable blob, then `v` for every learnable blob.

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// The Adam rule.
#[derive(Debug, Clone)]
pub struct Adam {
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    histories: Histories,
}

impl Adam {
    /// Adam with decays `beta1` (of the mean) and `beta2` (of the mean square), and `epsilon`.
    pub fn new(beta1: f32, beta2: f32, epsilon: f32) -> Adam {
        Adam {
            beta1,
            beta2,
            epsilon,
            histories: Histories::new(2),
        }
    }

    /// Adam from the SolverParameter: `momentum` (β₁) and `momentum2` (β₂), each in [0, 1), and `delta` (ε).
    pub fn from_param(param: &SolverParameter) -> Result<Adam, SolverError> {
        for (field, value) in [
            ("momentum", param.momentum()),
            ("momentum2", param.momentum2()),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(SolverError::field(
                    field,
                    format!("is {value}; Adam needs it in [0, 1) (its bias correction divides by 1 − it^t)"),
                ));
            }
        }
        Ok(Adam::new(
            param.momentum(),
            param.momentum2(),
            param.delta(),
        ))
    }

    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)` for `t = iter + 1`, in double precision as Caffe computes it.
    fn correction(&self, iter: u32) -> f32 {
        let t = f64::from(iter) + 1.0;
        let beta1 = f64::from(self.beta1);
        let beta2 = f64::from(self.beta2);
        ((1.0 - beta2.powf(t)).sqrt() / (1.0 - beta1.powf(t))) as f32
    }
}

impl UpdateRule for Adam {
    fn type_name(&self) -> &'static str {
        "Adam"
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
        iter: u32,
    ) {
        let rate = local_rate * self.correction(iter);
        let (beta1, beta2, epsilon) = (self.beta1, self.beta2, self.epsilon);
        let (means, squares) = self.histories.pair(id, offset, diff.len());
        debug_assert_eq!(means.len(), diff.len());
        for ((g, m), v) in diff.iter_mut().zip(means).zip(squares) {
            *m = (1.0 - beta1) * *g + beta1 * *m;
            *v = (1.0 - beta2) * (*g * *g) + beta2 * *v;
            *g = rate * (*m / (v.sqrt() + epsilon));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn bias_corrected_with_t_one_past_iter() {
        // The hyperparameters as the f32 values the rule holds (1 − 0.999 loses digits in f32).
        let (b1, b2, eps, lr) = (0.9f32, 0.999f32, 1e-8f32, 0.001f32);
        let mut rule = Adam::new(b1, b2, eps);
        let out = steps(&mut rule, &[&[0.5, -2.0], &[0.1, 0.0]], lr);
        let (b1, b2, eps, lr) = (f64::from(b1), f64::from(b2), f64::from(eps), f64::from(lr));
        // Iteration 0 (t = 1): m = 0.1·g, v = 0.001·g²
        let g1 = [0.5, -2.0];
        let m1 = [(1.0 - b1) * g1[0], (1.0 - b1) * g1[1]];
        let v1 = [(1.0 - b2) * g1[0] * g1[0], (1.0 - b2) * g1[1] * g1[1]];
        let c1 = f64::sqrt(1.0 - b2) / (1.0 - b1);
        let step1: Vec<f64> = (0..2)
            .map(|i| lr * c1 * m1[i] / (f64::sqrt(v1[i]) + eps))
            .collect();
        assert_close(&out[0], &step1);
        // Iteration 1 (t = 2)
        let g2 = [0.1, 0.0];
        let m2 = [(1.0 - b1) * g2[0] + b1 * m1[0], b1 * m1[1]];
        let v2 = [(1.0 - b2) * g2[0] * g2[0] + b2 * v1[0], b2 * v1[1]];
        let c2 = f64::sqrt(1.0 - b2 * b2) / (1.0 - b1 * b1);
        let step2: Vec<f64> = (0..2)
            .map(|i| lr * c2 * m2[i] / (f64::sqrt(v2[i]) + eps))
            .collect();
        assert_close(&out[1], &step2);
        assert_close(rule.history()[0].data(), &m2);
        assert_close(rule.history()[1].data(), &v2);
    }

    #[test]
    fn histories_are_all_means_then_all_mean_squares() {
        let mut rule = Adam::new(0.9, 0.999, 1e-8);
        rule.presolve(&[&[1], &[2]]).unwrap();
        let mut first = [1.0];
        let mut second = [2.0, -2.0];
        rule.compute_update(0, 0, &mut first, 0.1, 0);
        rule.compute_update(1, 0, &mut second, 0.1, 0);
        let history: Vec<&[f32]> = rule.history().iter().map(|b| b.data()).collect();
        assert_close(history[0], &[0.1 * 1.0]);
        assert_close(history[1], &[0.1 * 2.0, 0.1 * -2.0]);
        let one_minus_b2 = 1.0 - f64::from(0.999f32);
        assert_close(history[2], &[one_minus_b2 * 1.0]);
        assert_close(history[3], &[one_minus_b2 * 4.0, one_minus_b2 * 4.0]);
    }
}
