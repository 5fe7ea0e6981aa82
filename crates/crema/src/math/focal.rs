//! The focal loss kernel: weighted softmax cross-entropy with every term weighed by `(1 − p)^γ`.
//!
//! For one position with scores `x`, weights `w` (the row of H its label picks) and `p = softmax(x)`:
//!
//! `loss = −Σ_k w_k (1 − p_k)^γ log p_k`, and with `a_k = w_k (γ p_k (1 − p_k)^(γ−1) log p_k − (1 − p_k)^γ)`,
//! `∂loss/∂x_j = a_j − p_j Σ_k a_k`.
//!
//! Exact for extreme scores: `log p_k = x_k − logsumexp(x)` is never clipped, `1 − p_k` is `−expm1(log p_k)`
//! (exact as `p_k → 1`), and `p (1 − p)^(γ−1) log p` is computed as `p (1 − p)^γ · (log p / (1 − p))`, whose
//! last factor tends to −1, so that γ < 1 stays finite where `(1 − p)^(γ−1)` alone would not. That care is needed
//! for the most probable class only: every other class has `1 − p ≥ ½` and runs in branch-free lanes (crema's
//! vectorizable `exp` and `ln`; FMA chosen at run time, as InfogainLoss's kernels). Each position is computed in
//! f32, the loss summed in f64. With γ = 0 the loss is InfogainLoss's; the layer then uses InfogainLoss's own
//! kernels.

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

    /// `q^γ` for any `q` in [0, 1], exactly as the standard library computes it (for the one class per position
    /// whose probability may be near 1).
    fn power_exact(self, q: f32) -> f32 {
        match self {
            Exponent::Whole(n) => q.powi(n),
            Exponent::Real(g) => q.powf(g),
        }
    }
}

/// Focal loss of every position of a `channels × inner` block of scores (classes `inner` apart; rows when
/// `inner` is 1), each position's weights being the row of `h` (`channels × channels`) its label picks; a
/// negative label marks an ignored position (no loss, zero gradient). Writes `scale · ∂loss/∂x` to `grad` and
/// returns the summed loss (each position in f32, summed in f64, as InfogainLoss's kernels).
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
    let block = Block {
        x,
        channels,
        inner,
        labels,
        h,
        gamma,
        scale,
    };
    #[cfg(target_arch = "x86_64")]
    if super::softmax::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { focal_avx2(&block, grad) };
    }
    focal_portable::<false>(&block, grad)
}

/// The inputs of [`focal_cross_entropy`], handed down its dispatch.
struct Block<'a> {
    x: &'a [f32],
    channels: usize,
    inner: usize,
    labels: &'a [i32],
    h: &'a [f32],
    gamma: f32,
    scale: f32,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn focal_avx2(block: &Block, grad: &mut [f32]) -> f64 {
    focal_portable::<true>(block, grad)
}

#[inline(always)]
fn focal_portable<const FMA: bool>(block: &Block, grad: &mut [f32]) -> f64 {
    // One loop per exponent, so that `q^γ` is known inside the per-class lanes.
    let exponent = Exponent::of(block.gamma);
    match exponent {
        Exponent::Whole(1) => focal_blocks::<FMA>(block, grad, exponent, |q| q),
        Exponent::Whole(2) => focal_blocks::<FMA>(block, grad, exponent, |q| q * q),
        Exponent::Whole(n) => focal_blocks::<FMA>(block, grad, exponent, |q| q.powi(n)),
        Exponent::Real(g) => focal_blocks::<FMA>(block, grad, exponent, |q| {
            super::exp::exp_with::<FMA>(g * super::exp::ln(q))
        }),
    }
}

/// [`focal_portable`] with `power(q) = q^γ` for every class but the most probable.
#[inline(always)]
fn focal_blocks<const FMA: bool>(
    block: &Block,
    grad: &mut [f32],
    exponent: Exponent,
    power: impl Fn(f32) -> f32 + Copy,
) -> f64 {
    let Block {
        x,
        channels,
        inner,
        labels,
        h,
        gamma,
        scale,
    } = *block;
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
        loss += focal_position::<FMA>(row, w, gamma, exponent, power, &mut a, &mut p);
        let a_sum: f32 = a.iter().sum();
        if inner == 1 {
            let out = &mut grad[offset..offset + channels];
            for ((g, &ak), &pk) in out.iter_mut().zip(&a).zip(&p) {
                *g = scale * (ak - pk * a_sum);
            }
        } else {
            for (k, (&ak, &pk)) in a.iter().zip(&p).enumerate() {
                grad[offset + k * inner] = scale * (ak - pk * a_sum);
            }
        }
    }
    loss
}

/// Lanes of the per-class loops.
const LANES: usize = 8;

/// The loss of one position, with `a_k` written to `a` and `p_k` to `p`. Every class but the most probable is
/// computed in branch-free lanes (its `1 − p` is at least ½, so computing it directly loses nothing); the most
/// probable one, whose `1 − p` may be tiny, exactly, with `−expm1(log p)`.
#[inline(always)]
fn focal_position<const FMA: bool>(
    x: &[f32],
    w: &[f32],
    gamma: f32,
    exponent: Exponent,
    power: impl Fn(f32) -> f32,
    a: &mut [f32],
    p: &mut [f32],
) -> f64 {
    let n = x.len();
    let (w, a, p) = (&w[..n], &mut a[..n], &mut p[..n]);
    // The maximum in lanes, then where it is (the first such class).
    let mut maxes = [f32::NEG_INFINITY; LANES];
    for xs in x.chunks(LANES) {
        for (m, &v) in maxes.iter_mut().zip(xs) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = maxes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let top = x.iter().position(|&v| v == max).unwrap_or(0);
    let mut sums = [0.0f32; LANES];
    for (ps, xs) in p.chunks_mut(LANES).zip(x.chunks(LANES)) {
        for (j, (pk, &xk)) in ps.iter_mut().zip(xs).enumerate() {
            *pk = super::exp::exp_with::<FMA>(xk - max);
            sums[j] += *pk;
        }
    }
    let sum: f32 = sums.iter().sum();
    let lse = max + sum.ln();
    let inverse = 1.0 / sum;
    let mut losses = [0.0f32; LANES];
    for (chunk, (((as_, ps), xs), ws)) in a
        .chunks_mut(LANES)
        .zip(p.chunks_mut(LANES))
        .zip(x.chunks(LANES))
        .zip(w.chunks(LANES))
        .enumerate()
    {
        for j in 0..xs.len() {
            let log_p = xs[j] - lse;
            let pk = ps[j] * inverse;
            ps[j] = pk;
            // q ≥ ½ for every class but the top one, which is left out here (selected to 0) and done below.
            let q = 1.0 - pk;
            let focus = power(q);
            let term = if chunk * LANES + j == top {
                0.0
            } else {
                ws[j] * focus
            };
            losses[j] = super::exp::madd::<FMA>(-term, log_p, losses[j]);
            as_[j] = ws[j] * (gamma * pk * focus * (log_p / q) - focus);
        }
    }
    // The top class, exactly: its 1 − p as −expm1(log p), and log p / (1 − p) → −1 as p → 1.
    let log_p = x[top] - lse;
    let q = -log_p.exp_m1();
    let focus = exponent.power_exact(q);
    let ratio = if q > 1e-6 { log_p / q } else { -1.0 - 0.5 * q };
    a[top] = w[top] * (gamma * p[top] * focus * ratio - focus);
    let lanes: f64 = losses.iter().map(|&l| f64::from(l)).sum();
    lanes - f64::from(w[top] * focus * log_p)
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
