//! RMSProp: `h ← (1 − ρ)·g² + ρ·h`, step `lr · g / (√h + δ)` (`rms_decay` ρ, `delta` δ).
//!
//! History: `h` per learnable blob. As in Caffe, momentum is refused and `rms_decay` must lie in [0, 1).

use crema_proto::SolverParameter;

use super::{Histories, SolverError, UpdateRule};

/// The RMSProp rule.
#[derive(Debug, Clone)]
pub struct RmsProp {
    rms_decay: f32,
    delta: f32,
    histories: Histories,
}

impl RmsProp {
    /// RMSProp with decay `rms_decay` of the mean square and `delta` added to its root.
    pub fn new(rms_decay: f32, delta: f32) -> RmsProp {
        RmsProp {
            rms_decay,
            delta,
            histories: Histories::new(1),
        }
    }

    /// RMSProp from the SolverParameter: `rms_decay` in [0, 1), `delta`; `momentum` must be absent or 0.
    pub fn from_param(param: &SolverParameter) -> Result<RmsProp, SolverError> {
        if param.momentum() != 0.0 {
            return Err(SolverError::field(
                "momentum",
                format!(
                    "is {}; momentum cannot be used with RMSProp (remove it or set it to 0)",
                    param.momentum()
                ),
            ));
        }
        let rms_decay = param.rms_decay();
        if !(0.0..1.0).contains(&rms_decay) {
            return Err(SolverError::field(
                "rms_decay",
                format!("is {rms_decay}; it must lie in [0, 1)"),
            ));
        }
        Ok(RmsProp::new(rms_decay, param.delta()))
    }
}

impl UpdateRule for RmsProp {
    fn type_name(&self) -> &'static str {
        "RMSProp"
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
        let (decay, delta) = (self.rms_decay, self.delta);
        let history = self.histories.first(id, offset, diff.len());
        debug_assert_eq!(history.len(), diff.len());
        for (g, h) in diff.iter_mut().zip(history) {
            *h = (1.0 - decay) * (*g * *g) + decay * *h;
            *g = local_rate * (*g / (h.sqrt() + delta));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::{assert_close, steps};

    #[test]
    fn divides_by_the_root_of_the_running_mean_square() {
        let mut rule = RmsProp::new(0.9, 0.1);
        let out = steps(&mut rule, &[&[2.0], &[1.0]], 0.5);
        // h1 = 0.1·4 = 0.4; h2 = 0.1·1 + 0.9·0.4 = 0.46
        let (h1, h2) = (0.1 * 4.0, 0.1 * 1.0 + 0.9 * 0.4);
        assert_close(&out[0], &[0.5 * 2.0 / (f64::sqrt(h1) + 0.1)]);
        assert_close(&out[1], &[0.5 * 1.0 / (f64::sqrt(h2) + 0.1)]);
        assert_close(rule.history()[0].data(), &[h2]);
    }
}
