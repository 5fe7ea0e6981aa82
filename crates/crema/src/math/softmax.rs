//! Softmax and log-sum-exp along the middle axis of an `(outer, channels, inner)` layout, the shape every Caffe
//! layer with an `axis` parameter sees its input in.

use super::exp::madd;

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

/// Whether this CPU runs the kernels' AVX2 + FMA versions (the answer is cached by the standard library).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Positions per tile of the column kernel: small enough that a tile's per-position values stay in registers
/// and L1, large enough to vectorize well.
const TILE: usize = 16;

/// How far ahead (in scores) the column kernel asks for the rows of a later tile: with 20-odd rows read a few
/// cache lines at a time, the hardware prefetchers lose track of them.
/// How many classes ahead the column kernel prefetches scores.
const PREFETCH_CLASSES: usize = 4;

/// Asks the cache for `count` scores of `x` from `from` on (no effect where the CPU has no prefetch hint).
#[inline(always)]
fn prefetch_ahead(x: &[f32], from: usize, count: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = (from + count).min(x.len());
        let mut at = from;
        while at < end {
            // SAFETY: `at < x.len()`, so the address is inside the slice; a prefetch reads nothing.
            unsafe {
                core::arch::x86_64::_mm_prefetch(
                    x.as_ptr().add(at).cast::<i8>(),
                    core::arch::x86_64::_MM_HINT_T0,
                );
            }
            at += 16;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, from, count);
}

/// Lanes the row kernel keeps independent accumulators in (a multiple of every SIMD width in use).
const LANES: usize = 8;

#[inline(always)]
fn greater(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Weighted softmax cross-entropy of every row of `x` (rows of `channels` contiguous scores), each row's
/// weights being the row of `h` (`channels × channels`) its label picks; a negative label marks an ignored row
/// (no loss, zero gradient). For a row with scores `x` and weights `w` summing to `w_sum`:
///
/// `loss = -Σ_k w_k · (x_k − logsumexp(x)) = w_sum · logsumexp(x) − w·x`, and
/// `grad_k = scale · (softmax(x)_k · w_sum − w_k)`.
///
/// Returns the summed loss in f64 and writes the gradients to `grad`.
#[allow(clippy::too_many_arguments)]
pub fn weighted_cross_entropy_rows(
    x: &[f32],
    channels: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { rows_avx2(x, channels, labels, h, h_sums, scale, grad) };
    }
    rows_portable::<false>(x, channels, labels, h, h_sums, scale, grad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    x: &[f32],
    channels: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    rows_portable::<true>(x, channels, labels, h, h_sums, scale, grad)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_portable<const FMA: bool>(
    x: &[f32],
    channels: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let mut loss = 0.0;
    for ((g, xs), &label) in grad
        .chunks_exact_mut(channels)
        .zip(x.chunks_exact(channels))
        .zip(labels)
    {
        if label < 0 {
            g.fill(0.0);
            continue;
        }
        let l = label as usize;
        loss += weighted_cross_entropy_row_portable::<FMA>(
            xs,
            &h[l * channels..][..channels],
            h_sums[l],
            scale,
            g,
        );
    }
    loss
}

#[inline(always)]
fn weighted_cross_entropy_row_portable<const FMA: bool>(
    x: &[f32],
    w: &[f32],
    w_sum: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let n = x.len();
    let (w, grad) = (&w[..n], &mut grad[..n]);
    let split = n - n % LANES;
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut dots = [0.0f32; LANES];
    for (xs, ws) in x[..split]
        .chunks_exact(LANES)
        .zip(w[..split].chunks_exact(LANES))
    {
        for j in 0..LANES {
            maxes[j] = greater(xs[j], maxes[j]);
            dots[j] = madd::<FMA>(ws[j], xs[j], dots[j]);
        }
    }
    let mut max = maxes.iter().copied().fold(f32::NEG_INFINITY, greater);
    let mut dot: f64 = dots.iter().map(|&d| f64::from(d)).sum();
    for k in split..n {
        max = greater(x[k], max);
        dot += f64::from(w[k] * x[k]);
    }
    let mut sums = [0.0f32; LANES];
    for (xs, gs) in x[..split]
        .chunks_exact(LANES)
        .zip(grad[..split].chunks_exact_mut(LANES))
    {
        for j in 0..LANES {
            let e = super::exp::exp_with::<FMA>(xs[j] - max);
            gs[j] = e;
            sums[j] += e;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for k in split..n {
        let e = super::exp::exp_with::<FMA>(x[k] - max);
        grad[k] = e;
        sum += e;
    }
    let lse = max + sum.ln();
    let a = scale * w_sum / sum;
    let minus_scale = -scale;
    for (g, &wk) in grad.iter_mut().zip(w) {
        *g = madd::<FMA>(*g, a, minus_scale * wk);
    }
    f64::from(lse) * f64::from(w_sum) - dot
}

/// The same as [`weighted_cross_entropy_rows`] for every position of a `channels × inner` block (classes `inner`
/// apart), the layout of scores with `inner > 1` (such as per-pixel classes). `labels[i]` picks the row of `h`
/// (`channels × channels`) for position `i`; a negative label marks an ignored position (no loss, zero gradient).
#[allow(clippy::too_many_arguments)]
pub fn weighted_cross_entropy_columns(
    x: &[f32],
    channels: usize,
    inner: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { columns_avx2(x, channels, inner, labels, h, h_sums, scale, grad) };
    }
    columns_portable::<false>(x, channels, inner, labels, h, h_sums, scale, grad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn columns_avx2(
    x: &[f32],
    channels: usize,
    inner: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    columns_portable::<true>(x, channels, inner, labels, h, h_sums, scale, grad)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn columns_portable<const FMA: bool>(
    x: &[f32],
    channels: usize,
    inner: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    // Scratch for one tile: its weights class by class, weights[c * TILE + t] = H[label_t, c] (0 for ignored
    // positions), so that the passes read them contiguously instead of gathering from H; and its exponentials. Each thread keeps its buffer,
    // so nothing is allocated once it has grown to the largest class count seen.
    // (Taken out and put back rather than borrowed in a closure: a closure would not inherit the caller's
    // target features, and the kernel would lose its FMA and AVX code.)
    let mut weights = TILE_SCRATCH.take();
    let needed = 2 * channels * TILE + channels * LOOKUP_WIDTH;
    if weights.len() < needed {
        weights.resize(needed, 0.0);
    }
    let loss = columns_with_weights::<FMA>(
        x,
        channels,
        inner,
        labels,
        h,
        h_sums,
        scale,
        grad,
        &mut weights,
    );
    TILE_SCRATCH.set(weights);
    loss
}

thread_local! {
    static TILE_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn columns_with_weights<const FMA: bool>(
    x: &[f32],
    channels: usize,
    inner: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
    weights: &mut [f32],
) -> f64 {
    // H transposed and padded, one row of LOOKUP_WIDTH per class, for the in-register lookup.
    let (table, weights) = weights.split_at_mut(channels * LOOKUP_WIDTH);
    let lookup = FMA && channels <= LOOKUP_WIDTH;
    if lookup {
        for c in 0..channels {
            for j in 0..LOOKUP_WIDTH {
                table[c * LOOKUP_WIDTH + j] = if j < channels {
                    h[j * channels + c]
                } else {
                    0.0
                };
            }
        }
    }
    // A diagonal H (class weights, the common case) needs no lookup: a position's weight for class c is its
    // label's weight where c is the label, else 0.
    let diagonal =
        (0..channels).all(|r| (0..channels).all(|c| r == c || h[r * channels + c] == 0.0));
    let source = if diagonal {
        RowSource::Diagonal
    } else if lookup {
        RowSource::Table(table)
    } else {
        RowSource::Gather
    };
    let mut loss = 0.0f64;
    let mut start = 0;
    while start < inner {
        let len = TILE.min(inner - start);
        // A full tile gets a constant length, so its loops compile without remainder handling.
        loss += if len == TILE {
            column_tile::<FMA>(
                x, channels, inner, start, TILE, labels, h, h_sums, scale, grad, weights, source,
            )
        } else {
            column_tile::<FMA>(
                x, channels, inner, start, len, labels, h, h_sums, scale, grad, weights, source,
            )
        };
        start += len;
    }
    loss
}

/// How a tile gets each position's row of H.
#[derive(Clone, Copy)]
enum RowSource<'a> {
    /// H is diagonal: the weight is the label's own where the class is the label, else 0.
    Diagonal,
    /// H transposed and padded to LOOKUP_WIDTH columns, looked up in registers (AVX2, C <= LOOKUP_WIDTH).
    Table(&'a [f32]),
    /// One load per class and position.
    Gather,
}

/// Classes a row of the in-register lookup table holds (three AVX registers).
const LOOKUP_WIDTH: usize = 24;

/// `weights[c · TILE + t] = table[c · LOOKUP_WIDTH + classes[t]]` for a full tile: each class's table row sits
/// in three registers and eight positions are looked up at once by permutes, instead of one load each.
#[inline(always)]
fn lookup_weights(table: &[f32], classes: &[i32; TILE], channels: usize, weights: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        assert!(table.len() >= channels * LOOKUP_WIDTH && weights.len() >= channels * TILE);
        // SAFETY: only reached from the AVX2+FMA instantiation (`table` is Some only when FMA is true); every
        // load and store is within the slices checked above; class indices are below LOOKUP_WIDTH.
        unsafe {
            let seven = _mm256_set1_epi32(7);
            let fifteen = _mm256_set1_epi32(15);
            // Positions outside, classes inside: the indices and the blend masks are made once per eight
            // positions.
            for t in (0..TILE).step_by(8) {
                let index = _mm256_loadu_si256(classes.as_ptr().add(t).cast());
                let above_7 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, seven));
                let above_15 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, fifteen));
                for c in 0..channels {
                    let row = table.as_ptr().add(c * LOOKUP_WIDTH);
                    let low = _mm256_permutevar8x32_ps(_mm256_loadu_ps(row), index);
                    let middle = _mm256_permutevar8x32_ps(_mm256_loadu_ps(row.add(8)), index);
                    let high = _mm256_permutevar8x32_ps(_mm256_loadu_ps(row.add(16)), index);
                    let value =
                        _mm256_blendv_ps(_mm256_blendv_ps(low, middle, above_7), high, above_15);
                    _mm256_storeu_ps(weights.as_mut_ptr().add(c * TILE + t), value);
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for c in 0..channels {
        for t in 0..TILE {
            weights[c * TILE + t] = table[c * LOOKUP_WIDTH + classes[t] as usize];
        }
    }
}

/// Writes each position's row of H to `weights` (`weights[c · TILE + t] = H[label_t, c]`), zero for ignored
/// positions.
#[inline(always)]
fn tile_rows(
    labels: &[i32],
    h: &[f32],
    channels: usize,
    start: usize,
    len: usize,
    weights: &mut [f32],
    source: RowSource,
) {
    // Ignored positions read row 0 and are zeroed after.
    match source {
        RowSource::Diagonal => {
            let mut classes = [0i32; TILE];
            let mut own = [0.0f32; TILE];
            for t in 0..len {
                let class = labels[start + t].max(0);
                classes[t] = class;
                own[t] = h[class as usize * (channels + 1)];
            }
            for c in 0..channels {
                let ws = &mut weights[c * TILE..][..len];
                for t in 0..len {
                    ws[t] = if classes[t] == c as i32 { own[t] } else { 0.0 };
                }
            }
        }
        RowSource::Table(table) if len == TILE => {
            let mut classes = [0i32; TILE];
            for (class, &label) in classes.iter_mut().zip(&labels[start..start + len]) {
                *class = label.max(0);
            }
            lookup_weights(table, &classes, channels, weights);
        }
        _ => {
            let mut rows = [0usize; TILE];
            for (row, &label) in rows.iter_mut().zip(&labels[start..start + len]) {
                *row = label.max(0) as usize * channels;
            }
            for c in 0..channels {
                let ws = &mut weights[c * TILE..][..len];
                for t in 0..len {
                    ws[t] = h[rows[t] + c];
                }
            }
        }
    }
    for (t, &label) in labels[start..start + len].iter().enumerate() {
        if label < 0 {
            for c in 0..channels {
                weights[c * TILE + t] = 0.0;
            }
        }
    }
}

/// One tile of positions `start .. start + len` of [`weighted_cross_entropy_columns`]; returns its loss.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_tile<const FMA: bool>(
    x: &[f32],
    channels: usize,
    inner: usize,
    start: usize,
    len: usize,
    labels: &[i32],
    h: &[f32],
    h_sums: &[f32],
    scale: f32,
    grad: &mut [f32],
    weights: &mut [f32],
    source: RowSource,
) -> f64 {
    let mut loss = 0.0f64;
    let mut a = [0.0f32; TILE];
    let mut maxes = [f32::NEG_INFINITY; TILE];
    let mut sums = [0.0f32; TILE];
    let mut dots = [0.0f32; TILE];
    // A full tile on a CPU with AVX2 and FMA takes the hand-vectorized passes (two registers per class);
    // they do the same operations in the same order as the loops below, so the values are the same.
    #[cfg(target_arch = "x86_64")]
    let vectorized = FMA && len == TILE;
    #[cfg(not(target_arch = "x86_64"))]
    let vectorized = false;
    // With a diagonal H the vectorized passes make each class's weights from the labels in registers; the
    // other ways write every position's row of H to `weights` first.
    let diagonal = vectorized && matches!(source, RowSource::Diagonal);
    let mut classes = [-1i32; TILE];
    let mut own = [0.0f32; TILE];
    if diagonal {
        for t in 0..TILE {
            let label = labels[start + t];
            classes[t] = label;
            own[t] = if label < 0 {
                0.0
            } else {
                h[label as usize * (channels + 1)]
            };
        }
    } else {
        tile_rows(labels, h, channels, start, len, weights, source);
    }
    let (weights, exps) = weights.split_at_mut(channels * TILE);
    #[cfg(target_arch = "x86_64")]
    let rows = Avx2Rows {
        weights,
        classes: &classes,
        own: &own,
    };
    if vectorized {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only the AVX2+FMA instantiation (FMA is true) gets here.
        unsafe {
            if diagonal {
                tile_terms_avx2::<true>(
                    x, channels, inner, start, rows, exps, &mut maxes, &mut sums, &mut dots,
                );
            } else {
                tile_terms_avx2::<false>(
                    x, channels, inner, start, rows, exps, &mut maxes, &mut sums, &mut dots,
                );
            }
        }
    } else {
        // The scores are read once, into `exps` (the classes of a tile lie `inner` apart: with a power-of-two
        // `inner` they all fall in one cache set, so a second read would miss). The prefetch runs a few
        // classes ahead in the same order, then on into the next tile, so that only a few lines of a set are
        // in flight.
        for c in 0..channels {
            let xs = &x[c * inner + start..][..len];
            let ws = &weights[c * TILE..][..len];
            let copy = &mut exps[c * TILE..][..len];
            prefetch_ahead(x, prefetch_index(c, channels, inner, start), TILE);
            for t in 0..len {
                copy[t] = xs[t];
                maxes[t] = greater(xs[t], maxes[t]);
                dots[t] = madd::<FMA>(ws[t], xs[t], dots[t]);
            }
        }
        for c in 0..channels {
            let es = &mut exps[c * TILE..][..len];
            for t in 0..len {
                let e = super::exp::exp_with::<FMA>(es[t] - maxes[t]);
                es[t] = e;
                sums[t] += e;
            }
        }
    }
    // Per position, without branches: ignored positions get weight 0, so they add no loss and no gradient.
    let mut w_sums = [0.0f32; TILE];
    for t in 0..len {
        let label = labels[start + t];
        w_sums[t] = if label < 0 {
            0.0
        } else {
            h_sums[label.max(0) as usize]
        };
    }
    let mut tile_loss = [0.0f32; TILE];
    if vectorized {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only the AVX2+FMA instantiation (FMA is true) gets here.
        unsafe {
            tile_scales_avx2(&maxes, &sums, &dots, &w_sums, scale, &mut a, &mut tile_loss);
        }
    } else {
        for t in 0..len {
            let lse = maxes[t] + super::exp::ln(sums[t]);
            a[t] = scale * w_sums[t] / sums[t];
            tile_loss[t] = lse * w_sums[t] - dots[t];
        }
    }
    loss += tile_loss[..len].iter().map(|&l| f64::from(l)).sum::<f64>();
    let minus_scale = -scale;
    if vectorized {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only the AVX2+FMA instantiation (FMA is true) gets here.
        unsafe {
            if diagonal {
                tile_gradient_avx2::<true>(
                    grad,
                    channels,
                    inner,
                    start,
                    rows,
                    exps,
                    &a,
                    minus_scale,
                );
            } else {
                tile_gradient_avx2::<false>(
                    grad,
                    channels,
                    inner,
                    start,
                    rows,
                    exps,
                    &a,
                    minus_scale,
                );
            }
        }
        return loss;
    }
    for c in 0..channels {
        let gs = &mut grad[c * inner + start..][..len];
        let ws = &weights[c * TILE..][..len];
        let es = &exps[c * TILE..][..len];
        for t in 0..len {
            gs[t] = madd::<FMA>(es[t], a[t], minus_scale * ws[t]);
        }
    }
    loss
}

/// Where to prefetch scores while class `c` of the tile at `start` is read: `PREFETCH_CLASSES` classes on, in
/// this tile or (past the last class) in the next.
#[inline(always)]
fn prefetch_index(c: usize, channels: usize, inner: usize, start: usize) -> usize {
    let ahead = c + PREFETCH_CLASSES;
    if ahead < channels {
        ahead * inner + start
    } else {
        (ahead - channels) * inner + start + TILE
    }
}

/// Where the AVX2 passes take the weights `H[label_t, c]` of a tile's class `c` from.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2Rows<'a> {
    /// Written by [`tile_rows`], `weights[c · TILE + t]` (unless H is diagonal).
    weights: &'a [f32],
    /// A diagonal H: each position's label (-1 when ignored) and its weight there (0 when ignored).
    classes: &'a [i32; TILE],
    own: &'a [f32; TILE],
}

#[cfg(target_arch = "x86_64")]
impl Avx2Rows<'_> {
    /// The weights of class `c` for the tile's sixteen positions.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn get<const DIAGONAL: bool>(
        &self,
        c: usize,
    ) -> (core::arch::x86_64::__m256, core::arch::x86_64::__m256) {
        use core::arch::x86_64::*;
        if DIAGONAL {
            // SAFETY: both arrays hold TILE = 16 values.
            unsafe {
                let class = _mm256_set1_epi32(c as i32);
                let classes = self.classes.as_ptr();
                let hit0 = _mm256_cmpeq_epi32(_mm256_loadu_si256(classes.cast()), class);
                let hit1 = _mm256_cmpeq_epi32(_mm256_loadu_si256(classes.add(8).cast()), class);
                let own = self.own.as_ptr();
                (
                    _mm256_and_ps(_mm256_castsi256_ps(hit0), _mm256_loadu_ps(own)),
                    _mm256_and_ps(_mm256_castsi256_ps(hit1), _mm256_loadu_ps(own.add(8))),
                )
            }
        } else {
            assert!(self.weights.len() >= (c + 1) * TILE);
            // SAFETY: the class's TILE weights are inside the slice (checked above).
            unsafe {
                let w = self.weights.as_ptr().add(c * TILE);
                (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)))
            }
        }
    }
}

/// Passes 1 and 2 of a full tile with AVX2: each class's scores copied to `exps`, the running maximum and
/// `dots = Σ_c w_c x_c`; then `exps = e^(x - max)` and their sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn tile_terms_avx2<const DIAGONAL: bool>(
    x: &[f32],
    channels: usize,
    inner: usize,
    start: usize,
    rows: Avx2Rows,
    exps: &mut [f32],
    maxes: &mut [f32; TILE],
    sums: &mut [f32; TILE],
    dots: &mut [f32; TILE],
) {
    use core::arch::x86_64::*;
    assert!(channels > 0 && (channels - 1) * inner + start + TILE <= x.len());
    assert!(rows.weights.len() >= channels * TILE && exps.len() >= channels * TILE);
    let (mut max0, mut max1) = (
        _mm256_set1_ps(f32::NEG_INFINITY),
        _mm256_set1_ps(f32::NEG_INFINITY),
    );
    let (mut dot0, mut dot1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for c in 0..channels {
        prefetch_ahead(x, prefetch_index(c, channels, inner, start), TILE);
        // SAFETY: the row's TILE scores and the class's TILE weights and exps are inside the slices (checked
        // above).
        unsafe {
            let row = x.as_ptr().add(c * inner + start);
            let (x0, x1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
            let copy = exps.as_mut_ptr().add(c * TILE);
            _mm256_storeu_ps(copy, x0);
            _mm256_storeu_ps(copy.add(8), x1);
            max0 = _mm256_max_ps(x0, max0);
            max1 = _mm256_max_ps(x1, max1);
            let (w0, w1) = rows.get::<DIAGONAL>(c);
            dot0 = _mm256_fmadd_ps(w0, x0, dot0);
            dot1 = _mm256_fmadd_ps(w1, x1, dot1);
        }
    }
    let (mut sum0, mut sum1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for c in 0..channels {
        // SAFETY: as above.
        unsafe {
            let e = exps.as_mut_ptr().add(c * TILE);
            let e0 = super::exp::exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(e), max0));
            let e1 =
                super::exp::exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(e.add(8)), max1));
            _mm256_storeu_ps(e, e0);
            _mm256_storeu_ps(e.add(8), e1);
            sum0 = _mm256_add_ps(sum0, e0);
            sum1 = _mm256_add_ps(sum1, e1);
        }
    }
    // SAFETY: each array holds TILE = 16 values.
    unsafe {
        _mm256_storeu_ps(maxes.as_mut_ptr(), max0);
        _mm256_storeu_ps(maxes.as_mut_ptr().add(8), max1);
        _mm256_storeu_ps(sums.as_mut_ptr(), sum0);
        _mm256_storeu_ps(sums.as_mut_ptr().add(8), sum1);
        _mm256_storeu_ps(dots.as_mut_ptr(), dot0);
        _mm256_storeu_ps(dots.as_mut_ptr().add(8), dot1);
    }
}

/// The per-position part of a full tile with AVX2, as the scalar loop in [`column_tile`]: the gradient's
/// scale `a = scale · Σw / Σe` and the loss `(max + ln Σe) · Σw − Σ w x` of every position.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_scales_avx2(
    maxes: &[f32; TILE],
    sums: &[f32; TILE],
    dots: &[f32; TILE],
    w_sums: &[f32; TILE],
    scale: f32,
    a: &mut [f32; TILE],
    tile_loss: &mut [f32; TILE],
) {
    use core::arch::x86_64::*;
    let scale = _mm256_set1_ps(scale);
    for t in (0..TILE).step_by(8) {
        // SAFETY: every array holds TILE values and t + 8 <= TILE.
        unsafe {
            let sum = _mm256_loadu_ps(sums.as_ptr().add(t));
            let w_sum = _mm256_loadu_ps(w_sums.as_ptr().add(t));
            let lse = _mm256_add_ps(
                _mm256_loadu_ps(maxes.as_ptr().add(t)),
                super::exp::ln_avx2(sum),
            );
            let a_t = _mm256_div_ps(_mm256_mul_ps(scale, w_sum), sum);
            let loss_t = _mm256_sub_ps(
                _mm256_mul_ps(lse, w_sum),
                _mm256_loadu_ps(dots.as_ptr().add(t)),
            );
            _mm256_storeu_ps(a.as_mut_ptr().add(t), a_t);
            _mm256_storeu_ps(tile_loss.as_mut_ptr().add(t), loss_t);
        }
    }
}

/// Pass 3 of a full tile with AVX2: `grad = exps · a - scale · weights`, class by class.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn tile_gradient_avx2<const DIAGONAL: bool>(
    grad: &mut [f32],
    channels: usize,
    inner: usize,
    start: usize,
    rows: Avx2Rows,
    exps: &[f32],
    a: &[f32; TILE],
    minus_scale: f32,
) {
    use core::arch::x86_64::*;
    assert!(channels > 0 && (channels - 1) * inner + start + TILE <= grad.len());
    assert!(rows.weights.len() >= channels * TILE && exps.len() >= channels * TILE);
    let minus_scale = _mm256_set1_ps(minus_scale);
    // SAFETY: `a` holds TILE values; rows, weights and exps are inside their slices (checked above).
    unsafe {
        let (a0, a1) = (
            _mm256_loadu_ps(a.as_ptr()),
            _mm256_loadu_ps(a.as_ptr().add(8)),
        );
        for c in 0..channels {
            let e = exps.as_ptr().add(c * TILE);
            let g = grad.as_mut_ptr().add(c * inner + start);
            let (w0, w1) = rows.get::<DIAGONAL>(c);
            let w0 = _mm256_mul_ps(minus_scale, w0);
            let w1 = _mm256_mul_ps(minus_scale, w1);
            _mm256_storeu_ps(g, _mm256_fmadd_ps(_mm256_loadu_ps(e), a0, w0));
            _mm256_storeu_ps(g.add(8), _mm256_fmadd_ps(_mm256_loadu_ps(e.add(8)), a1, w1));
        }
    }
}

#[cfg(test)]
mod cross_entropy_tests {
    use super::*;

    /// The definition in f64: loss and unit-scale gradient of one position.
    fn reference(x: &[f32], w: &[f32]) -> (f64, Vec<f64>) {
        let max = x
            .iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = max
            + x.iter()
                .map(|&v| (f64::from(v) - max).exp())
                .sum::<f64>()
                .ln();
        let w_sum: f64 = w.iter().map(|&v| f64::from(v)).sum();
        let loss = -x
            .iter()
            .zip(w)
            .map(|(&xk, &wk)| f64::from(wk) * (f64::from(xk) - lse))
            .sum::<f64>();
        let grad = x
            .iter()
            .zip(w)
            .map(|(&xk, &wk)| (f64::from(xk) - lse).exp() * w_sum - f64::from(wk))
            .collect();
        (loss, grad)
    }

    #[test]
    fn row_kernel_matches_the_definition_for_odd_lengths_and_ignores() {
        for n in [1, 3, 8, 13, 100] {
            let x: Vec<f32> = (0..n).map(|k| ((k * 37 % 11) as f32 - 5.0) * 0.7).collect();
            let w: Vec<f32> = (0..n).map(|k| (k % 3) as f32 * 0.5).collect();
            let w_sum: f32 = w.iter().sum();
            // Every row of H is w; the label picks row 0.
            let h: Vec<f32> = w.iter().copied().cycle().take(n * n).collect();
            let mut grad = vec![0.0; n];
            let loss =
                weighted_cross_entropy_rows(&x, n, &[0], &h, &vec![w_sum; n], 2.0, &mut grad);
            let (expected, expected_grad) = reference(&x, &w);
            assert!(
                (loss - expected).abs() < 1e-5 * expected.abs().max(1.0),
                "n={n}: {loss} vs {expected}"
            );
            for (g, e) in grad.iter().zip(&expected_grad) {
                assert!(
                    (f64::from(*g) - 2.0 * e).abs() < 1e-5,
                    "n={n}: {g} vs {}",
                    2.0 * e
                );
            }
            let mut ignored = vec![f32::NAN; n];
            assert_eq!(
                weighted_cross_entropy_rows(&x, n, &[-1], &h, &vec![w_sum; n], 2.0, &mut ignored),
                0.0
            );
            assert!(ignored.iter().all(|&g| g == 0.0));
        }
    }

    #[test]
    fn column_kernel_matches_the_row_kernel() {
        // 5 classes, and 21 (whose H rows span all three registers of the lookup).
        for channels in [5, 21] {
            column_kernel_matches_the_row_kernel_with(channels, false);
        }
        // A diagonal H (its own path), and more classes than the register lookup holds (loads per class).
        for channels in [5, 21, 30] {
            column_kernel_matches_the_row_kernel_with(channels, true);
        }
        column_kernel_matches_the_row_kernel_with(30, false);
    }

    fn column_kernel_matches_the_row_kernel_with(channels: usize, diagonal: bool) {
        let inner = 70;
        let x: Vec<f32> = (0..channels * inner)
            .map(|k| ((k * 13 % 17) as f32 - 8.0) * 0.3)
            .collect();
        let h: Vec<f32> = (0..channels * channels)
            .map(|k| {
                if diagonal && k % (channels + 1) != 0 {
                    0.0
                } else {
                    (k % 4) as f32 * 0.25 + 0.1
                }
            })
            .collect();
        let sums: Vec<f32> = h.chunks(channels).map(|r| r.iter().sum()).collect();
        let labels: Vec<i32> = (0..inner)
            .map(|i| {
                if i % 9 == 4 {
                    -1
                } else {
                    (i % channels) as i32
                }
            })
            .collect();
        let mut grad = vec![f32::NAN; channels * inner];
        let loss =
            weighted_cross_entropy_columns(&x, channels, inner, &labels, &h, &sums, 0.5, &mut grad);
        let mut expected = 0.0;
        for i in 0..inner {
            let column: Vec<f32> = (0..channels).map(|c| x[c * inner + i]).collect();
            if labels[i] < 0 {
                assert!((0..channels).all(|c| grad[c * inner + i] == 0.0));
                continue;
            }
            let mut row_grad = vec![0.0; channels];
            expected += weighted_cross_entropy_rows(
                &column,
                channels,
                &labels[i..=i],
                &h,
                &sums,
                0.5,
                &mut row_grad,
            );
            for c in 0..channels {
                assert!((grad[c * inner + i] - row_grad[c]).abs() < 1e-6);
            }
        }
        assert!((loss - expected).abs() < 1e-6 * expected.abs());
    }
}
