//! Nesterov's accelerated gradient, as Caffe writes it: `h' ← lr·g + μ·h`, step `(1 + μ)·h' − μ·h`.
//!
//! History: `h` per learnable blob.

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// Nesterov's accelerated gradient.
#[derive(Debug, Clone)]
pub struct Nesterov {
    momentum: f32,
    histories: Histories,
}

impl Nesterov {
    /// Nesterov with `momentum`.
    pub fn new(momentum: f32) -> Nesterov {
        Nesterov {
            momentum,
            histories: Histories::new(1),
        }
    }

    /// Nesterov with the SolverParameter's `momentum`.
    pub fn from_param(param: &SolverParameter) -> Result<Nesterov, SolverError> {
        Ok(Nesterov::new(param.momentum()))
    }
}

impl UpdateRule for Nesterov {
    fn type_name(&self) -> &'static str {
        "Nesterov"
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
            let previous = *h;
            *h = local_rate * *g + momentum * previous;
            *g = (1.0 + momentum) * *h - momentum * previous;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn steps_back_then_over_steps() {
        let mut rule = Nesterov::new(0.9);
        let out = steps(&mut rule, &[&[1.0, -1.0], &[1.0, 2.0]], 0.1);
        // h1 = 0.1·g1; step1 = 1.9·h1 − 0.9·0
        let h1 = [0.1, -0.1];
        assert_close(&out[0], &[1.9 * h1[0], 1.9 * h1[1]]);
        // h2 = 0.1·g2 + 0.9·h1; step2 = 1.9·h2 − 0.9·h1
        let h2 = [0.1 + 0.9 * h1[0], 0.2 + 0.9 * h1[1]];
        assert_close(
            &out[1],
            &[1.9 * h2[0] - 0.9 * h1[0], 1.9 * h2[1] - 0.9 * h1[1]],
        );
        assert_close(rule.history()[0].data(), &h2);
    }
}
