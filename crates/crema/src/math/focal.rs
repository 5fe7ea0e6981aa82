//! The focal loss kernel: weighted softmax cross-entropy with every term weighed by `(1 − p)^γ`.
//!
//! For one position with scores `x`, weights `w` (the row of H its label picks) and `p = softmax(x)`:
//!
//! `loss = −Σ_k w_k (1 − p_k)^γ log p_k`, and with `a_k = w_k (γ p_k (1 − p_k)^(γ−1) log p_k − (1 − p_k)^γ)`,
//! `∂loss/∂x_j = a_j − p_j Σ_k a_k`.
//!
//! Exact for extreme scores: `log p_k = x_k − logsumexp(x)` is never clipped, `1 − p_k` is `−expm1(log p_k)`
//! (exact as `p_k → 1`), and `p (1 − p)^(γ−1) log p` is computed as `p (1 − p)^γ · (log p / (1 − p))`, whose
//! last factor tends to −1, so that γ < 1 stays finite where `(1 − p)^(γ−1)` alone would not. The sums run in
//! f64. With γ = 0 the loss is InfogainLoss's; the layer then uses InfogainLoss's own kernels.

/// Focal loss of every position of a `channels × inner` block of scores (classes `inner` apart; rows when
/// `inner` is 1), each position's weights being the row of `h` (`channels × channels`) its label picks; a
/// negative label marks an ignored position (no loss, zero gradient). Writes `scale · ∂loss/∂x` to `grad` and
/// returns the summed loss.
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
    let gamma = f64::from(gamma);
    let mut log_p = vec![0.0f64; channels];
    let mut a = vec![0.0f64; channels];
    let mut loss = 0.0;
    for (position, &label) in labels.iter().enumerate() {
        let block = position / inner * channels * inner;
        let offset = block + position % inner;
        let at = |k: usize| offset + k * inner;
        if label < 0 {
            for k in 0..channels {
                grad[at(k)] = 0.0;
            }
            continue;
        }
        let w = &h[label as usize * channels..][..channels];
        let max = (0..channels)
            .map(|k| f64::from(x[at(k)]))
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = (0..channels)
            .map(|k| (f64::from(x[at(k)]) - max).exp())
            .sum();
        let lse = max + sum.ln();
        let mut a_sum = 0.0;
        for k in 0..channels {
            log_p[k] = f64::from(x[at(k)]) - lse;
            let p = log_p[k].exp();
            let q = -log_p[k].exp_m1();
            let focus = q.powf(gamma);
            // log p / (1 − p) → −1 as p → 1.
            let ratio = if q > 0.0 { log_p[k] / q } else { -1.0 };
            let wk = f64::from(w[k]);
            if wk != 0.0 {
                loss -= wk * focus * log_p[k];
            }
            a[k] = wk * (gamma * p * focus * ratio - focus);
            a_sum += a[k];
        }
        let scale = f64::from(scale);
        for k in 0..channels {
            grad[at(k)] = (scale * (a[k] - log_p[k].exp() * a_sum)) as f32;
        }
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
                    (loss - expected).abs() < 1e-9,
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
