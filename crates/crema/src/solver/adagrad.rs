//! AdaGrad: `h ← h + g²`, step `lr · g / (√h + δ)` (`delta` δ).
//!
//! History: `h` per learnable blob. Momentum is refused, as in Caffe.

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// The adaptive gradient rule.
#[derive(Debug, Clone)]
pub struct AdaGrad {
    delta: f32,
    histories: Histories,
}

impl AdaGrad {
    /// AdaGrad with `delta` added to the root of the history.
    pub fn new(delta: f32) -> AdaGrad {
        AdaGrad {
            delta,
            histories: Histories::new(1),
        }
    }

    /// AdaGrad from the SolverParameter: `delta`; `momentum` must be absent or 0.
    pub fn from_param(param: &SolverParameter) -> Result<AdaGrad, SolverError> {
        if param.momentum() != 0.0 {
            return Err(SolverError::field(
                "momentum",
                format!(
                    "is {}; momentum cannot be used with AdaGrad (remove it or set it to 0)",
                    param.momentum()
                ),
            ));
        }
        Ok(AdaGrad::new(param.delta()))
    }
}

impl UpdateRule for AdaGrad {
    fn type_name(&self) -> &'static str {
        "AdaGrad"
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
        let delta = self.delta;
        let history = self.histories.first(id, offset, diff.len());
        debug_assert_eq!(history.len(), diff.len());
        for (g, h) in diff.iter_mut().zip(history) {
            *h += *g * *g;
            *g = local_rate * (*g / (h.sqrt() + delta));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn divides_by_the_root_of_the_summed_squares() {
        let mut rule = AdaGrad::new(0.1);
        let out = steps(&mut rule, &[&[3.0, 0.0], &[4.0, 1.0]], 0.5);
        // h1 = (9, 0); step = 0.5·g/(√h + 0.1)
        assert_close(&out[0], &[0.5 * 3.0 / (3.0 + 0.1), 0.0]);
        // h2 = (9 + 16, 0 + 1) = (25, 1)
        assert_close(&out[1], &[0.5 * 4.0 / (5.0 + 0.1), 0.5 * 1.0 / (1.0 + 0.1)]);
        assert_close(rule.history()[0].data(), &[25.0, 1.0]);
    }
}
