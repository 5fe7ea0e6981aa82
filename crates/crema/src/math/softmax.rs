//! Softmax and log-sum-exp along the middle axis of an `(outer, channels, inner)` layout, the shape every Caffe
//! layer with an `axis` parameter sees its input in.

/// Softmax of `x` into `y` along `channels`, for each of the `outer × inner` positions.
/// Subtracts the maximum first, so no value overflows.
pub fn softmax(x: &[f32], y: &mut [f32], outer: usize, channels: usize, inner: usize) {
    let block = channels * inner;
    for (xs, ys) in x
        .chunks_exact(block)
        .zip(y.chunks_exact_mut(block))
        .take(outer)
    {
        if inner == 1 {
            softmax_row(xs, ys);
            continue;
        }
        for i in 0..inner {
            let max = (0..channels)
                .map(|c| xs[c * inner + i])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for c in 0..channels {
                let e = (xs[c * inner + i] - max).exp();
                ys[c * inner + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for c in 0..channels {
                ys[c * inner + i] *= inv;
            }
        }
    }
}

/// Softmax of one contiguous row.
pub fn softmax_row(x: &[f32], y: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - max).exp();
        sum += *y;
    }
    let inv = 1.0 / sum;
    y.iter_mut().for_each(|y| *y *= inv);
}

/// `log Σ exp(x)` of one contiguous row, exact for extreme values (the maximum is taken out first).
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_exact_for_extreme_scores() {
        let x = [1000.0, 0.0, -1000.0];
        let mut y = [0.0; 3];
        softmax_row(&x, &mut y);
        assert_eq!(y, [1.0, 0.0, 0.0]);
        assert_eq!(log_sum_exp(&x), 1000.0);
    }

    #[test]
    fn strided_softmax_matches_rows() {
        // outer 1, channels 3, inner 2: columns are [0, 2, 4] and [1, 3, 5].
        let x = [0.0, 1.0, 1.0, 2.0, 2.0, 3.0];
        let mut y = [0.0; 6];
        softmax(&x, &mut y, 1, 3, 2);
        let mut column = [0.0; 3];
        softmax_row(&[0.0, 1.0, 2.0], &mut column);
        for c in 0..3 {
            assert!((y[c * 2] - column[c]).abs() < 1e-7 && (y[c * 2 + 1] - column[c]).abs() < 1e-7);
        }
    }
}
