//! The focal loss kernel: weighted softmax cross-entropy with every term weighed by `(1 − p)^γ`.
//!
//! For one position with scores `x`, weights `w` (the row of H its label picks) and `p = softmax(x)`:
//!
//! `loss = −Σ_k w_k (1 − p_k)^γ log p_k`, and with `a_k = w_k (γ p_k (1 − p_k)^(γ−1) log p_k − (1 − p_k)^γ)`,
//! `∂loss/∂x_j = a_j − p_j Σ_k a_k`.
//!
//! Exact for extreme scores: `log p_k = x_k − logsumexp(x)` is never clipped, `1 − p_k` is `−expm1(log p_k)`
//! (exact as `p_k → 1`), and `p (1 − p)^(γ−1) log p` is computed as `p (1 − p)^γ · (log p / (1 − p))`, whose
//! last factor tends to −1, so that γ < 1 stays finite where `(1 − p)^(γ−1)` alone would not. Each position is
//! computed in f32 (whole γ by multiplication), the loss summed in f64. With γ = 0 the loss is InfogainLoss's; the
//! layer then uses InfogainLoss's own kernels.

/// `(1 − p)^γ`, with γ's common whole values done by multiplication.
#[derive(Clone, Copy)]
enum Exponent {
    Whole(i32),
    Real(f32),
}

impl Exponent {
    fn of(gamma: f32) -> Exponent {
        if gamma.fract() == 0.0 && (0.0..=8.0).contains(&gamma) {
            Exponent::Whole(gamma as i32)
        } else {
            Exponent::Real(gamma)
        }
    }

    #[inline(always)]
    fn power(self, q: f32) -> f32 {
        match self {
            Exponent::Whole(2) => q * q,
            Exponent::Whole(n) => q.powi(n),
            Exponent::Real(g) => q.powf(g),
        }
    }
}

/// Focal loss of every position of a `channels × inner` block of scores (classes `inner` apart; rows when
/// `inner` is 1), each position's weights being the row of `h` (`channels × channels`) its label picks; a
/// negative label marks an ignored position (no loss, zero gradient). Writes `scale · ∂loss/∂x` to `grad` and
/// returns the summed loss (summed in f64; each position in f32, as InfogainLoss's kernels).
#[allow(clippy::too_many_arguments)]
pub fn focal_cross_entropy(
    x: &[f32],
    channels: usize,
    inner: usize,
    labels: &[i32],
    h: &[f32],
    gamma: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let exponent = Exponent::of(gamma);
    // One position's scores (gathered when they are `inner` apart), its a_k and its probabilities.
    let mut scores = vec![0.0f32; if inner == 1 { 0 } else { channels }];
    let mut a = vec![0.0f32; channels];
    let mut p = vec![0.0f32; channels];
    let mut loss = 0.0f64;
    for (position, &label) in labels.iter().enumerate() {
        let offset = position / inner * channels * inner + position % inner;
        if label < 0 {
            for k in 0..channels {
                grad[offset + k * inner] = 0.0;
            }
            continue;
        }
        let row: &[f32] = if inner == 1 {
            &x[offset..offset + channels]
        } else {
            for (k, s) in scores.iter_mut().enumerate() {
                *s = x[offset + k * inner];
            }
            &scores
        };
        let w = &h[label as usize * channels..][..channels];
        loss += focal_position(row, w, gamma, exponent, &mut a, &mut p);
        let a_sum: f32 = a.iter().sum();
        for (k, (&ak, &pk)) in a.iter().zip(&p).enumerate() {
            grad[offset + k * inner] = scale * (ak - pk * a_sum);
        }
    }
    loss
}

/// The loss of one position, with `a_k` written to `a` and `p_k` to `p`.
#[inline(always)]
fn focal_position(
    x: &[f32],
    w: &[f32],
    gamma: f32,
    exponent: Exponent,
    a: &mut [f32],
    p: &mut [f32],
) -> f64 {
    // exp(x − max) once per class (crema's vectorizable exp), kept in p until the sum is known.
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (p, &xk) in p.iter_mut().zip(x) {
        *p = super::exp::exp(xk - max);
        sum += *p;
    }
    let lse = max + sum.ln();
    let inverse = 1.0 / sum;
    let mut loss = 0.0f64;
    for (((a, p), &xk), &wk) in a.iter_mut().zip(p.iter_mut()).zip(x).zip(w) {
        let log_p = xk - lse;
        *p *= inverse;
        // 1 − p: directly while p is small, as −expm1(log p) when it is near 1 (where 1 − p cancels).
        let q = if *p < 0.5 { 1.0 - *p } else { -log_p.exp_m1() };
        let focus = exponent.power(q);
        // log p / (1 − p) → −1 as p → 1 (log(1 − q) / q = −1 − q/2 − …).
        let ratio = if q > 1e-6 { log_p / q } else { -1.0 - 0.5 * q };
        if wk != 0.0 {
            loss -= f64::from(wk * focus * log_p);
        }
        *a = wk * (gamma * *p * focus * ratio - focus);
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss of one row by the definition, in f64, and its gradient by central differences.
    fn by_definition(x: &[f64], w: &[f64], gamma: f64) -> f64 {
        let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        x.iter()
            .zip(w)
            .map(|(&xk, &wk)| {
                let p = (xk - lse).exp();
                -wk * (1.0 - p).powf(gamma) * (xk - lse)
            })
            .sum()
    }

    #[test]
    fn loss_and_gradient_match_the_definition() {
        let x = [0.3f32, -1.2, 2.0, 0.7];
        let h = [
            1.0f32, 0.0, 0.0, 0.0, 0.2, 2.0, 0.0, 0.1, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 3.0,
        ];
        for gamma in [0.0f32, 0.5, 1.0, 2.0, 5.0] {
            for label in 0..4 {
                let mut grad = [0.0f32; 4];
                let loss = focal_cross_entropy(&x, 4, 1, &[label], &h, gamma, 1.0, &mut grad);
                let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let w: Vec<f64> = h[label as usize * 4..][..4]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let expected = by_definition(&xs, &w, f64::from(gamma));
                assert!(
                    (loss - expected).abs() < 1e-5 * expected.abs().max(1.0),
                    "gamma {gamma}: {loss} vs {expected}"
                );
                for j in 0..4 {
                    let step = 1e-5;
                    let (mut up, mut down) = (xs.clone(), xs.clone());
                    up[j] += step;
                    down[j] -= step;
                    let numeric = (by_definition(&up, &w, f64::from(gamma))
                        - by_definition(&down, &w, f64::from(gamma)))
                        / (2.0 * step);
                    assert!(
                        (f64::from(grad[j]) - numeric).abs() < 1e-5,
                        "gamma {gamma} label {label} j {j}: {} vs {numeric}",
                        grad[j]
                    );
                }
            }
        }
    }

    #[test]
    fn columns_and_rows_agree_and_ignored_positions_are_zero() {
        // Two positions as columns (inner 2) and as rows.
        let columns = [1.0f32, -2.0, 0.5, 3.0, -1.0, 0.0];
        let rows = [1.0f32, 0.5, -1.0, -2.0, 3.0, 0.0];
        let h = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mut g_columns = [9.0f32; 6];
        let mut g_rows = [9.0f32; 6];
        let a = focal_cross_entropy(&columns, 3, 2, &[2, 1], &h, 2.0, 0.5, &mut g_columns);
        let b = focal_cross_entropy(&rows, 3, 1, &[2, 1], &h, 2.0, 0.5, &mut g_rows);
        assert_eq!(a, b);
        for k in 0..3 {
            assert_eq!(g_columns[2 * k], g_rows[k]);
            assert_eq!(g_columns[2 * k + 1], g_rows[3 + k]);
        }
        let mut g = [9.0f32; 6];
        let loss = focal_cross_entropy(&rows, 3, 1, &[-1, 1], &h, 2.0, 1.0, &mut g);
        assert_eq!(&g[..3], &[0.0; 3]);
        assert!(loss > 0.0);
    }

    #[test]
    fn extreme_scores_stay_exact() {
        // The label's class far ahead: p → 1 exactly in f32; loss and gradient are (near) zero, never NaN.
        let h = [1.0f32, 0.0, 0.0, 1.0];
        for gamma in [0.0f32, 0.3, 2.0] {
            let mut g = [0.0f32; 2];
            let loss = focal_cross_entropy(&[1e4, -1e4], 2, 1, &[0], &h, gamma, 1.0, &mut g);
            assert!((0.0..1e-30).contains(&loss), "{loss}");
            assert!(g.iter().all(|v| v.is_finite() && v.abs() < 1e-30), "{g:?}");
            // Far behind: log p = −2e4 exactly (no clipping at log 1e-20 as Caffe's), the gradient −1 / +1.
            let loss = focal_cross_entropy(&[-1e4, 1e4], 2, 1, &[0], &h, gamma, 1.0, &mut g);
            assert_eq!(loss, 2e4);
            assert_eq!(g, [-1.0, 1.0]);
        }
    }
}
