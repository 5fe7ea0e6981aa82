//! What happens to a gradient before the update rule sees it: normalization over `iter_size`, weight decay
//! (L2 or L1) and clipping by the global L2 norm.

use crema_proto::SolverParameter;

use super::SolverError;

/// Divides a gradient summed over `iter_size` backward passes by `iter_size` (Caffe's `Normalize`).
pub fn normalize(diff: &mut [f32], iter_size: u32) {
    if iter_size <= 1 {
        return;
    }
    let scale = 1.0 / iter_size as f32;
    for d in diff {
        *d *= scale;
    }
}

/// `iter_size` from the solver parameter, checked to be at least 1.
pub fn iter_size(param: &SolverParameter) -> Result<u32, SolverError> {
    let iter_size = param.iter_size();
    if iter_size < 1 {
        return Err(SolverError::field(
            "iter_size",
            format!(
                "is {iter_size}; it counts the backward passes summed per update and must be ≥ 1"
            ),
        ));
    }
    Ok(iter_size as u32)
}

/// The weight-decay penalty, `regularization_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regularization {
    /// `½·λ·‖w‖²`: adds `λ·w` to the gradient.
    L2,
    /// `λ·‖w‖₁`: adds `λ·sign(w)` to the gradient (sign 0 at 0).
    L1,
}

impl Regularization {
    /// The penalty `regularization_type` names ("L2", the default, or "L1").
    pub fn from_param(param: &SolverParameter) -> Result<Regularization, SolverError> {
        match param.regularization_type() {
            "L2" => Ok(Regularization::L2),
            "L1" => Ok(Regularization::L1),
            other => Err(SolverError::field(
                "regularization_type",
                format!("\"{other}\" is not a regularization (valid: L2, L1)"),
            )),
        }
    }
}

/// Adds the weight-decay gradient of `data` to `diff`; `local_decay` is `weight_decay · decay_mult`. Nothing
/// happens when it is 0.
pub fn regularize(kind: Regularization, local_decay: f32, data: &[f32], diff: &mut [f32]) {
    debug_assert_eq!(data.len(), diff.len());
    if local_decay == 0.0 {
        return;
    }
    match kind {
        Regularization::L2 => crate::math::axpy(local_decay, data, diff),
        Regularization::L1 => {
            for (d, &w) in diff.iter_mut().zip(data) {
                *d += local_decay * sign(w);
            }
        }
    }
}

/// Caffe's sign: 1 for positives, −1 for negatives, 0 for zeros (and NaN).
fn sign(x: f32) -> f32 {
    f32::from(u8::from(x > 0.0)) - f32::from(u8::from(x < 0.0))
}

/// The factor by which clipping scales every gradient, given the sum of squares of all of them: `clip / norm`
/// when the L2 norm passes `clip_gradients`, `None` when it does not or clipping is off (`clip_gradients < 0`).
pub fn clip_factor(sum_of_squares: f64, clip_gradients: f32) -> Option<f32> {
    if clip_gradients < 0.0 {
        return None;
    }
    let norm = sum_of_squares.sqrt();
    (norm > f64::from(clip_gradients)).then(|| (f64::from(clip_gradients) / norm) as f32)
}

/// Scales all `diffs` together so that their global L2 norm is at most `clip_gradients` (off when it is
/// negative); returns the factor used, if any.
pub fn clip_gradients(diffs: &mut [&mut [f32]], clip_gradients: f32) -> Option<f32> {
    let sum_of_squares = diffs.iter().map(|d| crate::math::dot(d, d)).sum();
    let factor = clip_factor(sum_of_squares, clip_gradients)?;
    for diff in diffs.iter_mut() {
        scale(diff, factor);
    }
    Some(factor)
}

/// Multiplies every value by `factor`.
pub(super) fn scale(values: &mut [f32], factor: f32) {
    for v in values {
        *v *= factor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_divides_accumulated_gradients_by_iter_size() {
        // Gradients summed over 4 backward passes become their mean.
        let mut diff = [0.0, 1.2, -4.0];
        normalize(&mut diff, 4);
        assert_eq!(diff, [0.0, 1.2 * 0.25, -1.0]);
        let mut untouched = [0.1, -0.2];
        normalize(&mut untouched, 1);
        assert_eq!(untouched, [0.1, -0.2]);
    }

    #[test]
    fn iter_size_below_one_is_refused() {
        let param = SolverParameter {
            iter_size: Some(0),
            ..Default::default()
        };
        let message = iter_size(&param).unwrap_err().to_string();
        assert!(message.contains("iter_size"), "{message}");
        assert_eq!(iter_size(&SolverParameter::default()).unwrap(), 1);
    }

    #[test]
    fn l2_adds_decay_times_weights() {
        let data = [2.0, -1.0, 0.0];
        let mut diff = [0.5, 0.5, 0.5];
        regularize(Regularization::L2, 0.1, &data, &mut diff);
        assert_eq!(diff, [0.5 + 0.1 * 2.0, 0.5 - 0.1, 0.5]);
    }

    #[test]
    fn l1_adds_decay_times_sign_and_nothing_at_zero() {
        let data = [2.0, -3.0, 0.0, -0.0];
        let mut diff = [0.5, 0.5, 0.5, 0.5];
        regularize(Regularization::L1, 0.25, &data, &mut diff);
        assert_eq!(diff, [0.75, 0.25, 0.5, 0.5]);
    }

    #[test]
    fn zero_decay_leaves_the_gradient() {
        let mut diff = [0.5, -0.5];
        regularize(Regularization::L1, 0.0, &[1.0, 1.0], &mut diff);
        regularize(Regularization::L2, 0.0, &[1.0, 1.0], &mut diff);
        assert_eq!(diff, [0.5, -0.5]);
    }

    #[test]
    fn regularization_type_is_checked() {
        assert_eq!(
            Regularization::from_param(&SolverParameter::default()).unwrap(),
            Regularization::L2
        );
        let param = SolverParameter {
            regularization_type: Some("L3".into()),
            ..Default::default()
        };
        let message = Regularization::from_param(&param).unwrap_err().to_string();
        assert!(
            message.contains("regularization_type") && message.contains("L3"),
            "{message}"
        );
    }

    #[test]
    fn clipping_scales_all_gradients_by_clip_over_global_norm() {
        // ‖(3, 0) ∪ (4)‖ = 5 > 1: everything scaled by 1/5.
        let mut a = [3.0, 0.0];
        let mut b = [4.0];
        let factor = clip_gradients(&mut [&mut a, &mut b], 1.0);
        assert_eq!(factor, Some(0.2));
        assert!((a[0] - 0.6).abs() < 1e-7 && a[1] == 0.0 && (b[0] - 0.8).abs() < 1e-7);
        // Under the threshold, or clipping off: untouched.
        let mut c = [3.0, 4.0];
        assert_eq!(clip_gradients(&mut [&mut c], 5.0), None);
        assert_eq!(clip_gradients(&mut [&mut c], -1.0), None);
        assert_eq!(c, [3.0, 4.0]);
        // clip 0 zeroes any nonzero gradient, as in Caffe.
        assert_eq!(clip_factor(25.0, 0.0), Some(0.0));
    }
}
