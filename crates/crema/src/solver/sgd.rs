//! SGD with momentum: `h ← lr·g + μ·h`, step `h` (`momentum` μ, 0 when absent).
//!
//! History: `h` per learnable blob.

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// Stochastic gradient descent with momentum.
#[derive(Debug, Clone)]
pub struct Sgd {
    momentum: f32,
    histories: Histories,
}

impl Sgd {
    /// SGD with `momentum`.
    pub fn new(momentum: f32) -> Sgd {
        Sgd {
            momentum,
            histories: Histories::new(1),
        }
    }

    /// SGD with the SolverParameter's `momentum`.
    pub fn from_param(param: &SolverParameter) -> Result<Sgd, SolverError> {
        Ok(Sgd::new(param.momentum()))
    }
}

impl UpdateRule for Sgd {
    fn type_name(&self) -> &'static str {
        "SGD"
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
        let momentum = self.momentum;
        let history = self.histories.first(id, offset, diff.len());
        debug_assert_eq!(history.len(), diff.len());
        for (g, h) in diff.iter_mut().zip(history) {
            *h = local_rate * *g + momentum * *h;
            *g = *h;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn momentum_accumulates_scaled_gradients() {
        let mut rule = Sgd::new(0.9);
        let out = steps(&mut rule, &[&[1.0, -2.0], &[0.5, 0.0], &[0.0, 0.0]], 0.1);
        let h1 = [0.1 * 1.0, 0.1 * -2.0];
        let h2 = [0.1 * 0.5 + 0.9 * h1[0], 0.1 * 0.0 + 0.9 * h1[1]];
        let h3 = [0.9 * h2[0], 0.9 * h2[1]];
        assert_close(&out[0], &h1);
        assert_close(&out[1], &h2);
        assert_close(&out[2], &h3);
        assert_close(rule.history()[0].data(), &h3);
    }

    #[test]
    fn without_momentum_the_step_is_rate_times_gradient() {
        let mut rule = Sgd::new(0.0);
        let out = steps(&mut rule, &[&[3.0], &[-1.0]], 0.25);
        assert_eq!(out, [vec![0.75], vec![-0.25]]);
    }
}
