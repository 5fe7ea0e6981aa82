//! Pooling over the two spatial axes of an N×C×H×W bottom: MAX, AVE and STOCHASTIC, with Caffe's rules.
//!
//! Parameters: `pooling_param { pool (MAX) kernel_size | kernel_h kernel_w, stride | stride_h stride_w (1),
//! pad | pad_h pad_w (0), global_pooling, round_mode (CEIL) }`. With `global_pooling` the kernel is the whole
//! plane (pad must be 0 and stride 1).
//!
//! Caffe's rules, kept exactly:
//! - Output size per axis: `ceil((in + 2·pad − kernel) / stride) + 1` (`floor` with `round_mode: FLOOR`); with
//!   padding, a last window that would start in the padding past the input is dropped.
//! - MAX: the window is clipped to the input; the first maximum in raster order wins and gets the whole gradient.
//!   An optional second top holds each maximum's index `h·W + w` in its plane (as a float).
//! - AVE: the divisor is the window clipped to the padded input (padding counts, the overhang past it does not);
//!   the sum runs over the window clipped to the input.
//! - STOCHASTIC (Zeiler & Fergus): in TRAIN, one value of each window drawn with probability proportional to
//!   its (non-negative) activation, which gets the gradient; in TEST, the activation-weighted average
//!   `Σx² / Σx` (0 for an all-zero window), differentiated as written. Caffe runs this only on the GPU; its
//!   draws are crema's own (the layer's generator, saved in solverstates).

use crema_proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crema_proto::caffe::{Phase, PoolingParameter};
use rand::Rng as _;
use rayon::prelude::*;
use std::sync::Arc;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::math::Rng;
use crate::memory;

/// The Pooling layer.
pub struct Pooling {
    param: PoolingParameter,
    method: PoolMethod,
    train: bool,
    /// Kernel, stride and pad as (height, width); the kernel is the plane with global pooling.
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    /// Set at reshape: input and output plane sizes and the number of planes (N·C).
    input: (usize, usize),
    output: (usize, usize),
    planes: usize,
    windows: Windows,
    /// MAX and STOCHASTIC (TRAIN): the index in its plane of the input value each output came from.
    chosen: Vec<u32>,
    rng: Rng,
}

/// Makes a Pooling layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.pooling_param.unwrap_or_default();
    let method = param.pool();
    let field = |f: &str| format!("pooling_param.{f}");
    let pair = |one: Option<u32>,
                h: Option<u32>,
                w: Option<u32>,
                name: &str|
     -> LayerResult<Option<(usize, usize)>> {
        match (one, h, w) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(LayerError::new(format!(
                "{}: give either {name} or {name}_h and {name}_w, not both",
                field(name)
            ))),
            (Some(v), None, None) => Ok(Some((v as usize, v as usize))),
            (None, Some(h), Some(w)) => Ok(Some((h as usize, w as usize))),
            (None, None, None) => Ok(None),
            _ => Err(LayerError::new(format!(
                "{}: give both {name}_h and {name}_w",
                field(name)
            ))),
        }
    };
    let kernel = pair(param.kernel_size, param.kernel_h, param.kernel_w, "kernel")?;
    let stride = pair(param.stride, param.stride_h, param.stride_w, "stride")?.unwrap_or((1, 1));
    let pad = pair(param.pad, param.pad_h, param.pad_w, "pad")?.unwrap_or((0, 0));
    let kernel = if param.global_pooling() {
        if kernel.is_some() {
            return Err(LayerError::new(
                "pooling_param.global_pooling: the kernel is the whole plane; give no kernel_size",
            ));
        }
        if pad != (0, 0) || stride != (1, 1) {
            return Err(LayerError::new(
                "pooling_param.global_pooling: needs pad 0 and stride 1",
            ));
        }
        (0, 0)
    } else {
        let kernel = kernel.ok_or_else(|| {
            LayerError::new("pooling_param.kernel_size: missing; give kernel_size, kernel_h and kernel_w, or global_pooling")
        })?;
        if kernel.0 == 0 || kernel.1 == 0 {
            return Err(LayerError::new(format!(
                "pooling_param.kernel_size: {} × {}; must be at least 1",
                kernel.0, kernel.1
            )));
        }
        if pad.0 >= kernel.0 || pad.1 >= kernel.1 {
            return Err(LayerError::new(format!(
                "pooling_param.pad: {} × {} must be smaller than the kernel {} × {}",
                pad.0, pad.1, kernel.0, kernel.1
            )));
        }
        kernel
    };
    if stride.0 == 0 || stride.1 == 0 {
        return Err(LayerError::new(format!(
            "pooling_param.stride: {} × {}; must be at least 1",
            stride.0, stride.1
        )));
    }
    Ok(Box::new(Pooling {
        param,
        method,
        train: ctx.phase == Phase::Train,
        kernel,
        stride,
        pad,
        input: (0, 0),
        output: (0, 0),
        planes: 0,
        windows: Windows::default(),
        chosen: Vec::new(),
        rng: ctx.rng.clone(),
    }))
}

/// Output positions along one axis by Caffe's rule (see the module documentation).
fn pooled(input: usize, kernel: usize, stride: usize, pad: usize, ceil: bool) -> Option<usize> {
    let span = (input + 2 * pad).checked_sub(kernel)?;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if pad > 0 && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Some(out)
}

/// [`max_row`] for one kernel width and stride.
type MaxRow = fn(&[f32], (usize, usize, usize), usize, &mut [f32], &mut [u32]);

/// MAX pooling of the windows of one output row that lie whole inside the input rows `y0..y1` (of width `w`):
/// window `i` covers columns `x0 + i·S ..+ K`. Its maximum and the first position in raster order holding it,
/// as Caffe picks it; with `K` and `S` known to the compiler and selects instead of branches.
fn max_row<const K: usize, const S: usize>(
    x: &[f32],
    (y0, y1, w): (usize, usize, usize),
    x0: usize,
    y: &mut [f32],
    chosen: &mut [u32],
) {
    for (i, (y, chosen)) in y.iter_mut().zip(chosen).enumerate() {
        let left = x0 + i * S;
        let mut best = f32::NEG_INFINITY;
        let mut at = y0 * w + left;
        for iy in y0..y1 {
            let start = iy * w + left;
            let Ok(window) = <&[f32; K]>::try_from(&x[start..start + K]) else {
                continue;
            };
            for (kx, &v) in window.iter().enumerate() {
                let wins = v > best;
                best = if wins { v } else { best };
                at = if wins { start + kx } else { at };
            }
        }
        *y = best;
        *chosen = at as u32;
    }
}

/// A window along one axis: start and end clipped to the input, and the size AVE divides by.
type Window = (usize, usize, usize);

/// A window along one axis: (start, end) clipped to the input, and the size counted by AVE (clipped to the
/// padded input).
#[inline]
fn window(
    o: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    input: usize,
) -> (usize, usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end = (start + kernel as isize).min((input + pad) as isize);
    let counted = (end - start) as usize;
    let (start, end) = (start.max(0) as usize, (end as usize).min(input));
    (start, end, counted)
}

/// The windows of every output row and column, made at reshape (shared, so that forward can hold them while
/// it writes the layer's other fields).
type Windows = Arc<(Vec<Window>, Vec<Window>)>;

impl Layer for Pooling {
    fn type_name(&self) -> &'static str {
        "Pooling"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        if self.method == PoolMethod::Max {
            Arity::between(1, 2)
        } else {
            Arity::exactly(1)
        }
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        if x.num_axes() != 4 {
            return Err(LayerError::new(format!(
                "the bottom is {}; Pooling needs 4 axes (num, channels, height, width)",
                x.shape_string()
            )));
        }
        let s = x.shape();
        self.input = (s[2], s[3]);
        self.planes = s[0] * s[1];
        if self.param.global_pooling() {
            self.kernel = self.input;
        }
        let ceil = self.param.round_mode() == RoundMode::Ceil;
        let axis = |i: usize, what: &str| {
            pooled(
                [self.input.0, self.input.1][i],
                [self.kernel.0, self.kernel.1][i],
                [self.stride.0, self.stride.1][i],
                [self.pad.0, self.pad.1][i],
                ceil,
            )
            .filter(|&o| o > 0)
            .ok_or_else(|| {
                LayerError::new(format!(
                    "the kernel's {what} {} is larger than the bottom's {what} {} with padding {}",
                    [self.kernel.0, self.kernel.1][i],
                    [self.input.0, self.input.1][i],
                    [self.pad.0, self.pad.1][i]
                ))
            })
        };
        self.output = (axis(0, "height")?, axis(1, "width")?);
        // With ceil rounding and no padding, a stride longer than the kernel can leave the last window past the
        // input (Caffe then reads out of bounds); refuse it.
        for (what, out, stride, pad, input) in [
            (
                "height",
                self.output.0,
                self.stride.0,
                self.pad.0,
                self.input.0,
            ),
            (
                "width",
                self.output.1,
                self.stride.1,
                self.pad.1,
                self.input.1,
            ),
        ] {
            if (out - 1) * stride >= input + pad {
                return Err(LayerError::new(format!(
                    "pooling_param.stride: the last window along the {what} would start at {} past a bottom of \
                     {input} (stride {stride}, ceil rounding); use round_mode: FLOOR or a shorter stride",
                    (out - 1) * stride - pad
                )));
            }
        }
        let shape = [s[0], s[1], self.output.0, self.output.1];
        top[0].reshape(&shape)?;
        if let Some(mask) = top.get_mut(1) {
            mask.reshape(&shape)?;
        }
        if self.input.0 * self.input.1 > u32::MAX as usize {
            return Err(LayerError::new(
                "the bottom's planes are too large to index",
            ));
        }
        let (kernel, stride, pad, input) = (self.kernel, self.stride, self.pad, self.input);
        self.windows = Arc::new((
            (0..self.output.0)
                .map(|o| window(o, kernel.0, stride.0, pad.0, input.0))
                .collect(),
            (0..self.output.1)
                .map(|o| window(o, kernel.1, stride.1, pad.1, input.1))
                .collect(),
        ));
        let outputs = top[0].count();
        memory::resize(&mut self.chosen, outputs, 0, || {
            "the pooling indices".into()
        })?;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let (plane, out_plane) = (h * w, oh * ow);
        if plane == 0 || out_plane == 0 {
            return Ok(());
        }
        let shared = Arc::clone(&self.windows);
        let windows = |oy: usize, ox: usize| (shared.0[oy], shared.1[ox]);
        let x = bottom[0].data();
        let (first, rest) = top.split_at_mut(1);
        let y = first[0].data_mut();
        match self.method {
            PoolMethod::Max => {
                let (kw, sw, pw) = (self.kernel.1, self.stride.1, self.pad.1);
                // Output columns whose windows lie whole inside the row: for the common kernels they run
                // through a loop that knows the kernel's width and stride (several times faster).
                let inside = |ox: usize| ox * sw >= pw && ox * sw - pw + kw <= w;
                let lo = (0..ow).find(|&ox| inside(ox)).unwrap_or(ow);
                let hi = (lo..ow).find(|&ox| !inside(ox)).unwrap_or(ow);
                let fixed: Option<MaxRow> = match (kw, sw) {
                    (2, 2) => Some(max_row::<2, 2>),
                    (3, 2) => Some(max_row::<3, 2>),
                    (3, 1) => Some(max_row::<3, 1>),
                    _ => None,
                };
                let (lo, hi) = if fixed.is_some() { (lo, hi) } else { (ow, ow) };
                y.par_chunks_mut(out_plane)
                    .zip(self.chosen.par_chunks_mut(out_plane))
                    .zip(x.par_chunks(plane))
                    .for_each(|((y, chosen), x)| {
                        for oy in 0..oh {
                            let (y0, y1, _) = shared.0[oy];
                            let y = &mut y[oy * ow..(oy + 1) * ow];
                            let chosen = &mut chosen[oy * ow..(oy + 1) * ow];
                            for ox in (0..lo).chain(hi..ow) {
                                let (x0, x1, _) = shared.1[ox];
                                let mut best = f32::NEG_INFINITY;
                                let mut at = y0 * w + x0;
                                for iy in y0..y1 {
                                    for ix in x0..x1 {
                                        let v = x[iy * w + ix];
                                        if v > best {
                                            best = v;
                                            at = iy * w + ix;
                                        }
                                    }
                                }
                                y[ox] = best;
                                chosen[ox] = at as u32;
                            }
                            if let Some(fixed) = fixed.filter(|_| lo < hi) {
                                let rows = (y0, y1, w);
                                fixed(x, rows, lo * sw - pw, &mut y[lo..hi], &mut chosen[lo..hi]);
                            }
                        }
                    });
                if let Some(mask) = rest.first_mut() {
                    for (m, &c) in mask.data_mut().iter_mut().zip(&self.chosen) {
                        *m = c as f32;
                    }
                }
            }
            PoolMethod::Ave => {
                y.par_chunks_mut(out_plane)
                    .zip(x.par_chunks(plane))
                    .for_each(|(y, x)| {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let ((y0, y1, ch), (x0, x1, cw)) = windows(oy, ox);
                                let mut sum = 0.0f32;
                                for iy in y0..y1 {
                                    sum += x[iy * w + x0..iy * w + x1].iter().sum::<f32>();
                                }
                                y[oy * ow + ox] = sum / (ch * cw) as f32;
                            }
                        }
                    });
            }
            PoolMethod::Stochastic if self.train => {
                // Draws in a fixed order, one generator: the same batches whatever the thread count.
                for ((y, chosen), x) in y
                    .chunks_mut(out_plane)
                    .zip(self.chosen.chunks_mut(out_plane))
                    .zip(x.chunks(plane))
                {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let ((y0, y1, _), (x0, x1, _)) = windows(oy, ox);
                            let mut total = 0.0f64;
                            for iy in y0..y1 {
                                for ix in x0..x1 {
                                    let v = x[iy * w + ix];
                                    if v.is_nan() || v < 0.0 {
                                        return Err(LayerError::new(format!(
                                            "STOCHASTIC pooling needs non-negative inputs (after a ReLU); found {v}"
                                        )));
                                    }
                                    total += f64::from(v);
                                }
                            }
                            let threshold = self.rng.random::<f64>() * total;
                            let mut running = 0.0f64;
                            let mut at = y0 * w + x0;
                            'search: for iy in y0..y1 {
                                for ix in x0..x1 {
                                    running += f64::from(x[iy * w + ix]);
                                    at = iy * w + ix;
                                    if running >= threshold && x[at] > 0.0 {
                                        break 'search;
                                    }
                                }
                            }
                            y[oy * ow + ox] = x[at];
                            chosen[oy * ow + ox] = at as u32;
                        }
                    }
                }
            }
            PoolMethod::Stochastic => {
                y.par_chunks_mut(out_plane)
                    .zip(x.par_chunks(plane))
                    .for_each(|(y, x)| {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let ((y0, y1, _), (x0, x1, _)) = windows(oy, ox);
                                let (mut sum, mut squares) = (0.0f32, 0.0f32);
                                for iy in y0..y1 {
                                    for &v in &x[iy * w + x0..iy * w + x1] {
                                        sum += v;
                                        squares += v * v;
                                    }
                                }
                                y[oy * ow + ox] = if sum == 0.0 { 0.0 } else { squares / sum };
                            }
                        }
                    });
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] {
            return Ok(());
        }
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let (plane, out_plane) = (h * w, oh * ow);
        if plane == 0 || out_plane == 0 {
            return Ok(());
        }
        let shared = Arc::clone(&self.windows);
        let windows = |oy: usize, ox: usize| (shared.0[oy], shared.1[ox]);
        let dy = top[0].diff();
        let (x, dx) = bottom[0].data_and_diff_mut();
        let chosen = &self.chosen;
        let by_index =
            self.method == PoolMethod::Max || (self.method == PoolMethod::Stochastic && self.train);
        let method = self.method;
        dx.par_chunks_mut(plane).enumerate().for_each(|(p, dx)| {
            dx.fill(0.0);
            let dy = &dy[p * out_plane..(p + 1) * out_plane];
            if by_index {
                for (&g, &at) in dy.iter().zip(&chosen[p * out_plane..(p + 1) * out_plane]) {
                    dx[at as usize] += g;
                }
                return;
            }
            let x = &x[p * plane..(p + 1) * plane];
            for oy in 0..oh {
                for ox in 0..ow {
                    let ((y0, y1, ch), (x0, x1, cw)) = windows(oy, ox);
                    let g = dy[oy * ow + ox];
                    if method == PoolMethod::Ave {
                        let share = g / (ch * cw) as f32;
                        for iy in y0..y1 {
                            dx[iy * w + x0..iy * w + x1]
                                .iter_mut()
                                .for_each(|d| *d += share);
                        }
                    } else {
                        // d(Σx²/Σx)/dx_i = (2·x_i·Σx − Σx²) / (Σx)².
                        let (mut sum, mut squares) = (0.0f32, 0.0f32);
                        for iy in y0..y1 {
                            for &v in &x[iy * w + x0..iy * w + x1] {
                                sum += v;
                                squares += v * v;
                            }
                        }
                        if sum == 0.0 {
                            continue;
                        }
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = x[iy * w + ix];
                                dx[iy * w + ix] += g * (2.0 * v * sum - squares) / (sum * sum);
                            }
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn state(&self) -> Option<Vec<u8>> {
        (self.method == PoolMethod::Stochastic && self.train)
            .then(|| crate::math::rng_state(&self.rng))
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        self.rng = crate::math::rng_from_state(state)
            .ok_or_else(|| LayerError::new("the saved random generator state is damaged"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context_in;
    use crate::testing::{uniform_blob, GradientChecker};

    fn make(params: &str, phase: Phase) -> Result<Box<dyn Layer>, String> {
        let text = format!("name: \"p\" type: \"Pooling\" pooling_param {{ {params} }}");
        let param: crema_proto::LayerParameter = crema_proto::text::parse(&text, "t").unwrap();
        create(&mut context_in(&param, phase)).map_err(|e| e.0)
    }

    fn run(params: &str, x: &Blob, tops: usize) -> Vec<Blob> {
        let mut layer = make(params, Phase::Test).unwrap();
        let mut top: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        let mut refs: Vec<&mut Blob> = top.iter_mut().collect();
        layer.setup(&[x], &mut refs).unwrap();
        layer.reshape(&[x], &mut refs).unwrap();
        layer.forward(&[x], &mut refs).unwrap();
        top
    }

    fn plane(values: &[f32], h: usize, w: usize) -> Blob {
        Blob::from_data(&[1, 1, h, w], values.to_vec()).unwrap()
    }

    #[test]
    fn output_sizes_follow_caffe_ceil_floor_and_the_padding_rule() {
        assert_eq!(pooled(5, 3, 2, 0, true), Some(2));
        assert_eq!(pooled(6, 3, 2, 0, true), Some(3)); // ceil(3/2) + 1
        assert_eq!(pooled(6, 3, 2, 0, false), Some(2));
        // Pad 1, kernel 2, stride 2 over 4: ceil(4/2) + 1 = 3 windows; the last starts at 2·2 − 1 = 3, inside.
        assert_eq!(pooled(4, 2, 2, 1, true), Some(3));
        // Pad 1, kernel 3, stride 3 over 5: ceil(4/3) + 1 = 3; the last would start at 2·3 − 1 = 5, in the
        // padding past the input: dropped.
        assert_eq!(pooled(5, 3, 3, 1, true), Some(2));
        assert_eq!(pooled(2, 3, 1, 0, true), None);
    }

    #[test]
    fn max_takes_the_first_maximum_and_reports_where() {
        // 3×4 plane, kernel 2 stride 2: windows {1,5,2,5}→ first 5 at index 1; ...
        let x = plane(
            &[1.0, 5.0, 2.0, 0.0, 3.0, 5.0, 7.0, 7.0, 9.0, 1.0, 1.0, 2.0],
            3,
            4,
        );
        let top = run("pool: MAX kernel_size: 2 stride: 2", &x, 2);
        assert_eq!(top[0].shape(), [1, 1, 2, 2]);
        assert_eq!(top[0].data(), [5.0, 7.0, 9.0, 2.0]);
        assert_eq!(top[1].data(), [1.0, 6.0, 8.0, 11.0]);
    }

    /// Every kernel that has a fast path, with padding and ceil overhang (edge windows take the general path):
    /// values with many ties (a few levels), against the definition: the maximum over the clipped window and
    /// the first position in raster order that holds it.
    #[test]
    fn max_fast_paths_match_the_definition() {
        let (h, w) = (9, 11);
        let values: Vec<f32> = (0..2 * h * w).map(|i| ((i * 7) % 5) as f32).collect();
        let x = Blob::from_data(&[1, 2, h, w], values.clone()).unwrap();
        for (k, s, p) in [
            (2, 2, 0),
            (3, 2, 0),
            (3, 2, 1),
            (3, 1, 1),
            (2, 2, 1),
            (4, 3, 1),
        ] {
            let top = run(
                &format!("pool: MAX kernel_size: {k} stride: {s} pad: {p}"),
                &x,
                2,
            );
            let (oh, ow) = (top[0].shape()[2], top[0].shape()[3]);
            for c in 0..2 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (ys, xs) = (
                            (oy * s) as isize - p as isize,
                            (ox * s) as isize - p as isize,
                        );
                        let mut best = (f32::NEG_INFINITY, usize::MAX);
                        for iy in ys.max(0)..(ys + k as isize).min(h as isize) {
                            for ix in xs.max(0)..(xs + k as isize).min(w as isize) {
                                let at = iy as usize * w + ix as usize;
                                if values[c * h * w + at] > best.0 {
                                    best = (values[c * h * w + at], at);
                                }
                            }
                        }
                        let o = (c * oh + oy) * ow + ox;
                        assert_eq!(
                            (top[0].data()[o], top[1].data()[o] as usize),
                            best,
                            "kernel {k} stride {s} pad {p} at {c},{oy},{ox}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn average_counts_padding_but_not_overhang() {
        // 3×3 of ones, kernel 2 stride 2 pad 1: 2×2 outputs (a third window would start in the padding). Window
        // (0, 0) is one padding row and column and one value: 1 / 4; window (1, 1) is four values: 4 / 4.
        let x = plane(&[1.0; 9], 3, 3);
        let top = run("pool: AVE kernel_size: 2 stride: 2 pad: 1", &x, 1);
        assert_eq!(top[0].shape(), [1, 1, 2, 2]);
        assert_eq!(top[0].data(), [0.25, 0.5, 0.5, 1.0]);
        // Overhang: 4×4, kernel 3 stride 2, no pad: ceil(1/2)+1 = 2; window 1 spans 2..5, clipped to 2..4 and
        // counted as 2 (not 3).
        let x = plane(&[1.0; 16], 4, 4);
        let top = run("pool: AVE kernel_size: 3 stride: 2", &x, 1);
        assert_eq!(top[0].data(), [1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn global_and_stochastic_test_pooling() {
        let x = plane(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        let top = run("pool: AVE global_pooling: true", &x, 1);
        assert_eq!(top[0].data(), [2.5]);
        let top = run("pool: STOCHASTIC global_pooling: true", &x, 1);
        assert_eq!(top[0].data(), [30.0 / 10.0]);
    }

    #[test]
    fn stochastic_train_draws_in_proportion_to_the_values() {
        let x = plane(&[1.0, 0.0, 3.0, 0.0], 2, 2);
        let mut layer = make("pool: STOCHASTIC global_pooling: true", Phase::Train).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&x], &mut [&mut top]).unwrap();
        let mut threes = 0;
        for _ in 0..4000 {
            layer.forward(&[&x], &mut [&mut top]).unwrap();
            assert!(
                top.data()[0] == 1.0 || top.data()[0] == 3.0,
                "{}",
                top.data()[0]
            );
            threes += usize::from(top.data()[0] == 3.0);
        }
        assert!(
            (2800..3200).contains(&threes),
            "{threes} of 4000 draws were 3"
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (params, phase) in [
            ("pool: MAX kernel_size: 3 stride: 2", Phase::Test),
            (
                "pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 1",
                Phase::Test,
            ),
            ("pool: AVE kernel_size: 3 stride: 2 pad: 1", Phase::Test),
            (
                "pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR",
                Phase::Test,
            ),
            ("pool: AVE global_pooling: true", Phase::Test),
            ("pool: STOCHASTIC kernel_size: 2 stride: 2", Phase::Test),
        ] {
            let mut layer = make(params, phase).unwrap();
            // Values apart enough that the finite-difference step never changes which one is the maximum.
            // 120 values 0.05 apart (a permutation of 1..=120, scaled), positive for STOCHASTIC.
            let mut x = uniform_blob(&[2, 2, 5, 6], 0.0, 1.0, 4);
            for (i, v) in x.data_mut().iter_mut().enumerate() {
                *v = ((i * 37) % 120 + 1) as f32 * 0.05;
            }
            GradientChecker::default()
                .check(layer.as_mut(), &mut [x], 1, &[0])
                .unwrap_or_else(|e| panic!("{params}: {e}"));
        }
    }

    fn make_err(params: &str) -> String {
        match make(params, Phase::Test) {
            Ok(_) => panic!("{params}: made"),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_parameters_and_shapes_are_named() {
        assert!(make_err("pool: MAX").contains("kernel_size: missing"));
        assert!(make_err("kernel_size: 2 stride: 0").contains("stride"));
        assert!(make_err("kernel_size: 2 pad: 2").contains("smaller than the kernel"));
        assert!(make_err("kernel_size: 2 kernel_h: 2").contains("not both"));
        assert!(make_err("global_pooling: true kernel_size: 2").contains("global_pooling"));
        let mut layer = make("kernel_size: 5", Phase::Test).unwrap();
        let x = Blob::new(&[1, 1, 3, 3]).unwrap();
        let err = layer
            .reshape(&[&x], &mut [&mut Blob::default()])
            .unwrap_err()
            .0;
        assert!(err.contains("larger than the bottom's height 3"), "{err}");
        let mut layer = make("kernel_size: 3 stride: 1000000", Phase::Test).unwrap();
        let x = Blob::new(&[1, 1, 8, 8]).unwrap();
        let err = layer
            .reshape(&[&x], &mut [&mut Blob::default()])
            .unwrap_err()
            .0;
        assert!(
            err.contains("would start at 1000000 past a bottom of 8"),
            "{err}"
        );
        let x = Blob::new(&[2, 3]).unwrap();
        let err = layer
            .reshape(&[&x], &mut [&mut Blob::default()])
            .unwrap_err()
            .0;
        assert!(err.contains("needs 4 axes"), "{err}");
    }
}
