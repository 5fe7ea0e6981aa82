//! LRN (local response normalization): `y = x · s^−β`, with `s` from the squares of neighbouring values.
//!
//! - ACROSS_CHANNELS (the default): `s = k + α/n · Σ x²` over the `n` channels centred on the value's channel
//!   (`local_size`, odd), the window padded with zeros at the first and last channels. Computed as Caffe does,
//!   with a running sum over channels: each channel's `s` is the previous one's plus the square entering the
//!   window and minus the one leaving it.
//! - WITHIN_CHANNEL: `s = 1 + α · avg x²` over the `n × n` window centred on the value in its own channel
//!   (`k` is ignored, as in Caffe). Caffe builds it from layers: Power (square), Pooling (AVE, pad
//!   `(n − 1)/2`, stride 1: the divisor counts the padding, so it is always `n²`), Power (`(1 + α·p)^−β`) and
//!   an elementwise product; the values are the same.
//!
//! Parameters: `lrn_param { local_size (5) alpha (1) beta (0.75) k (1) norm_region (ACROSS_CHANNELS) }`; the
//! bottom must have 4 axes (num, channels, height, width). Gradient (Caffe's, the exact one):
//! `dx = dy · s^−β − (2αβ/n') · x · Σ_w dy_w · y_w / s_w`, the sum over the windows `w` holding the value,
//! with `n' = n` across channels and `n²` within a channel.

use crema_proto::caffe::lrn_parameter::NormRegion;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The LRN layer.
pub struct Lrn {
    region: NormRegion,
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    /// (num, channels, height, width) of the bottom.
    dims: [usize; 4],
    /// `s` for every value, from the last forward.
    scale: Vec<f32>,
    /// Backward scratch: `dy · y / s` for one image (across channels) or one plane (within a channel).
    ratio: Vec<f32>,
    /// Scratch of one plane: a running window sum, or the box sum of a plane.
    plane: Vec<f32>,
    /// Scratch of one plane: the row sums of a box sum (within a channel).
    rows: Vec<f32>,
}

/// Makes an LRN layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.lrn_param.unwrap_or_default();
    let region = NormRegion::try_from(p.norm_region.unwrap_or(NormRegion::AcrossChannels as i32))
        .map_err(|_| {
        LayerError::new(format!(
            "lrn_param.norm_region: {} is not ACROSS_CHANNELS or WITHIN_CHANNEL",
            p.norm_region.unwrap_or_default()
        ))
    })?;
    let size = p.local_size();
    if size.is_multiple_of(2) {
        return Err(LayerError::new(format!(
            "lrn_param.local_size: must be odd (Caffe's LRN centres the window on the value), not {size}"
        )));
    }
    for (field, value) in [("alpha", p.alpha()), ("beta", p.beta()), ("k", p.k())] {
        if !value.is_finite() {
            return Err(LayerError::new(format!(
                "lrn_param.{field}: must be a finite number, not {value}"
            )));
        }
    }
    Ok(Box::new(Lrn {
        region,
        size: size as usize,
        alpha: p.alpha(),
        beta: p.beta(),
        k: p.k(),
        dims: [0; 4],
        scale: Vec::new(),
        ratio: Vec::new(),
        plane: Vec::new(),
        rows: Vec::new(),
    }))
}

/// `out[i] = Σ src[j]` over `|j − i| ≤ radius` (zero padding): `src` shifted by every offset of the window
/// added into `out`, one contiguous pass per offset.
fn window_sum_1d(src: &[f32], out: &mut [f32], radius: usize) {
    let len = src.len();
    out.copy_from_slice(src);
    for d in 1..=radius.min(len.saturating_sub(1)) {
        // out[i] += src[i + d] and out[i + d] += src[i].
        for (o, &s) in out[..len - d].iter_mut().zip(&src[d..]) {
            *o += s;
        }
        for (o, &s) in out[d..].iter_mut().zip(&src[..len - d]) {
            *o += s;
        }
    }
}

/// The zero-padded box sum of an `h × w` plane over a `(2r+1) × (2r+1)` window: rows first (into `rows`),
/// then columns (into `out`), whole rows at a time.
fn box_sum(src: &[f32], out: &mut [f32], rows: &mut [f32], (h, w): (usize, usize), r: usize) {
    for (src_row, row) in src.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        window_sum_1d(src_row, row, r);
    }
    for i in 0..h {
        let out_row = &mut out[i * w..(i + 1) * w];
        let first = i.saturating_sub(r);
        let last = (i + r).min(h - 1);
        out_row.copy_from_slice(&rows[first * w..(first + 1) * w]);
        for j in first + 1..=last {
            for (o, &v) in out_row.iter_mut().zip(&rows[j * w..(j + 1) * w]) {
                *o += v;
            }
        }
    }
}

impl Lrn {
    fn forward_across(&mut self, x: &[f32], y: &mut [f32]) {
        let [_, channels, h, w] = self.dims;
        let hw = h * w;
        let pre_pad = (self.size - 1) / 2;
        let a = self.alpha / self.size as f32;
        for (x, scale) in x
            .chunks_exact(channels * hw)
            .zip(self.scale.chunks_exact_mut(channels * hw))
        {
            // The first channel: k plus the squares of channels 0..=pre_pad (the rest of the window is padding).
            let (first, _) = scale.split_at_mut(hw);
            first.fill(self.k);
            for c in 0..=pre_pad.min(channels - 1) {
                for (s, &v) in first.iter_mut().zip(&x[c * hw..(c + 1) * hw]) {
                    *s += a * (v * v);
                }
            }
            // Then each channel from the previous: add the square entering the window, take the one leaving.
            for c in 1..channels {
                let (before, rest) = scale.split_at_mut(c * hw);
                let (previous, current) = (&before[(c - 1) * hw..], &mut rest[..hw]);
                current.copy_from_slice(previous);
                if let Some(head) = Some(c + pre_pad).filter(|&head| head < channels) {
                    for (s, &v) in current.iter_mut().zip(&x[head * hw..(head + 1) * hw]) {
                        *s += a * (v * v);
                    }
                }
                if let Some(tail) = (c - 1).checked_sub(pre_pad) {
                    for (s, &v) in current.iter_mut().zip(&x[tail * hw..(tail + 1) * hw]) {
                        *s -= a * (v * v);
                    }
                }
            }
        }
        for ((y, &x), &s) in y.iter_mut().zip(x).zip(&self.scale) {
            *y = x * s.powf(-self.beta);
        }
    }

    fn backward_across(&mut self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let [_, channels, h, w] = self.dims;
        let hw = h * w;
        let block = channels * hw;
        let pre_pad = (self.size - 1) / 2;
        let cache = 2.0 * self.alpha * self.beta / self.size as f32;
        for ((((x, y), dy), dx), scale) in x
            .chunks_exact(block)
            .zip(y.chunks_exact(block))
            .zip(dy.chunks_exact(block))
            .zip(dx.chunks_exact_mut(block))
            .zip(self.scale.chunks_exact(block))
        {
            for (((r, &dy), &y), &s) in self.ratio.iter_mut().zip(dy).zip(y).zip(scale) {
                *r = dy * y / s;
            }
            // accum: the running sum of ratio over channels c − pre_pad ..= c + pre_pad.
            let accum = &mut self.plane[..hw];
            accum.fill(0.0);
            for c in 0..pre_pad.min(channels) {
                for (acc, &r) in accum.iter_mut().zip(&self.ratio[c * hw..(c + 1) * hw]) {
                    *acc += r;
                }
            }
            for c in 0..channels {
                if c + pre_pad < channels {
                    let head = c + pre_pad;
                    for (acc, &r) in accum
                        .iter_mut()
                        .zip(&self.ratio[head * hw..(head + 1) * hw])
                    {
                        *acc += r;
                    }
                }
                let range = c * hw..(c + 1) * hw;
                for ((((dx, &dy), &s), &x), &acc) in dx[range.clone()]
                    .iter_mut()
                    .zip(&dy[range.clone()])
                    .zip(&scale[range.clone()])
                    .zip(&x[range])
                    .zip(accum.iter())
                {
                    *dx = dy * s.powf(-self.beta) - cache * x * acc;
                }
                if let Some(tail) = c.checked_sub(pre_pad) {
                    for (acc, &r) in accum
                        .iter_mut()
                        .zip(&self.ratio[tail * hw..(tail + 1) * hw])
                    {
                        *acc -= r;
                    }
                }
            }
        }
    }

    fn forward_within(&mut self, x: &[f32], y: &mut [f32]) {
        let [_, _, h, w] = self.dims;
        let hw = h * w;
        let r = (self.size - 1) / 2;
        let a = self.alpha / (self.size as f32 * self.size as f32);
        for ((x, y), scale) in x
            .chunks_exact(hw)
            .zip(y.chunks_exact_mut(hw))
            .zip(self.scale.chunks_exact_mut(hw))
        {
            // Squares into the ratio scratch, their box sum into scale.
            let squares = &mut self.ratio[..hw];
            for (sq, &v) in squares.iter_mut().zip(x) {
                *sq = v * v;
            }
            box_sum(squares, scale, &mut self.rows, (h, w), r);
            for ((s, y), &x) in scale.iter_mut().zip(y.iter_mut()).zip(x) {
                *s = 1.0 + a * *s;
                *y = x * s.powf(-self.beta);
            }
        }
    }

    fn backward_within(&mut self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let [_, _, h, w] = self.dims;
        let hw = h * w;
        let r = (self.size - 1) / 2;
        let cache = 2.0 * self.alpha * self.beta / (self.size as f32 * self.size as f32);
        for ((((x, y), dy), dx), scale) in x
            .chunks_exact(hw)
            .zip(y.chunks_exact(hw))
            .zip(dy.chunks_exact(hw))
            .zip(dx.chunks_exact_mut(hw))
            .zip(self.scale.chunks_exact(hw))
        {
            let ratio = &mut self.ratio[..hw];
            for (((r, &dy), &y), &s) in ratio.iter_mut().zip(dy).zip(y).zip(scale) {
                *r = dy * y / s;
            }
            // The window is symmetric, so the windows holding a value are those centred within it.
            box_sum(ratio, &mut self.plane, &mut self.rows, (h, w), r);
            for ((((dx, &dy), &s), &x), &acc) in dx
                .iter_mut()
                .zip(dy)
                .zip(scale)
                .zip(x)
                .zip(self.plane.iter())
            {
                *dx = dy * s.powf(-self.beta) - cache * x * acc;
            }
        }
    }
}

impl Layer for Lrn {
    fn type_name(&self) -> &'static str {
        "LRN"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let shape = bottom[0].shape();
        let &[n, c, h, w] = shape else {
            return Err(LayerError::new(format!(
                "LRN takes a bottom of 4 axes (num, channels, height, width), not shape {shape:?}"
            )));
        };
        self.dims = [n, c, h, w];
        let count = bottom[0].count();
        let hw = h * w;
        let ratio = match self.region {
            NormRegion::AcrossChannels => c * hw,
            NormRegion::WithinChannel => hw,
        };
        crate::memory::resize(&mut self.scale, count, 0.0, || {
            format!("the LRN scale of shape {shape:?}")
        })?;
        crate::memory::resize(&mut self.ratio, ratio, 0.0, || {
            "the LRN gradient buffer".into()
        })?;
        crate::memory::resize(&mut self.plane, hw, 0.0, || "the LRN window sums".into())?;
        crate::memory::resize(&mut self.rows, hw, 0.0, || "the LRN window sums".into())?;
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if bottom[0].count() == 0 {
            return Ok(());
        }
        match self.region {
            NormRegion::AcrossChannels => self.forward_across(bottom[0].data(), top[0].data_mut()),
            NormRegion::WithinChannel => self.forward_within(bottom[0].data(), top[0].data_mut()),
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] || bottom[0].count() == 0 {
            return Ok(());
        }
        let (y, dy) = (top[0].data(), top[0].diff());
        let (x, dx) = bottom[0].data_and_diff_mut();
        match self.region {
            NormRegion::AcrossChannels => self.backward_across(x, y, dy, dx),
            NormRegion::WithinChannel => self.backward_within(x, y, dy, dx),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn run(layer: &mut dyn Layer, bottom: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        layer.reshape(&[bottom], &mut [&mut top])?;
        layer.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64) {
        assert_eq!(actual.len(), expected.len());
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (f64::from(a) - e).abs() <= tolerance * e.abs().max(1.0),
                "[{i}]: {a} vs {e}\n{actual:?}\n{expected:?}"
            );
        }
    }

    /// ACROSS_CHANNELS computed directly from the definition, in f64.
    fn naive_across(x: &Blob, size: usize, alpha: f64, beta: f64, k: f64) -> Vec<f64> {
        let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let pre_pad = (size - 1) / 2;
        let at = |ni: usize, ci: usize, i: usize| ((ni * c + ci) * h * w) + i;
        let mut out = vec![0.0; x.count()];
        for ni in 0..n {
            for ci in 0..c {
                for i in 0..h * w {
                    let lo = ci.saturating_sub(pre_pad);
                    let hi = (ci + pre_pad).min(c - 1);
                    let sum: f64 = (lo..=hi)
                        .map(|cj| f64::from(x.data()[at(ni, cj, i)]).powi(2))
                        .sum();
                    let s = k + alpha / size as f64 * sum;
                    out[at(ni, ci, i)] = f64::from(x.data()[at(ni, ci, i)]) * s.powf(-beta);
                }
            }
        }
        out
    }

    /// WITHIN_CHANNEL computed directly from the definition, in f64.
    fn naive_within(x: &Blob, size: usize, alpha: f64, beta: f64) -> Vec<f64> {
        let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let r = ((size - 1) / 2) as i64;
        let mut out = vec![0.0; x.count()];
        for plane in 0..n * c {
            let base = plane * h * w;
            for i in 0..h as i64 {
                for j in 0..w as i64 {
                    let mut sum = 0.0;
                    for di in -r..=r {
                        for dj in -r..=r {
                            let (a, b) = (i + di, j + dj);
                            if (0..h as i64).contains(&a) && (0..w as i64).contains(&b) {
                                sum +=
                                    f64::from(x.data()[base + (a * w as i64 + b) as usize]).powi(2);
                            }
                        }
                    }
                    let s = 1.0 + alpha * sum / (size * size) as f64;
                    let v = f64::from(x.data()[base + (i * w as i64 + j) as usize]);
                    out[base + (i * w as i64 + j) as usize] = v * s.powf(-beta);
                }
            }
        }
        out
    }

    #[test]
    fn across_channels_by_hand() {
        // n = 3, α/n = 1, k = 1, β = 1: s = 1 + Σ of the squares of the channel and its neighbours.
        // x = [1, 2, 2]: s = [1+1+4, 1+1+4+4, 1+4+4] = [6, 10, 9], y = x / s.
        let x = Blob::from_data(&[1, 3, 1, 1], vec![1.0, 2.0, 2.0]).unwrap();
        let mut l = layer("lrn_param { local_size: 3 alpha: 3 beta: 1 }");
        let top = run(l.as_mut(), &x).unwrap();
        assert_close(top.data(), &[1.0 / 6.0, 0.2, 2.0 / 9.0], 1e-7);
        // β = 0.5, k = 2: s = [7, 11, 10], y = x / √s.
        let mut l = layer("lrn_param { local_size: 3 alpha: 3 beta: 0.5 k: 2 }");
        let top = run(l.as_mut(), &x).unwrap();
        let expected = [1.0 / 7f64.sqrt(), 2.0 / 11f64.sqrt(), 2.0 / 10f64.sqrt()];
        assert_close(top.data(), &expected, 1e-7);
    }

    #[test]
    fn across_channels_matches_the_definition() {
        let x = uniform_blob(&[2, 7, 3, 4], -2.0, 2.0, 3);
        for (size, alpha, beta, k) in [
            (5, 1.0, 0.75, 1.0),
            (3, 0.5, 0.6, 2.0),
            (1, 2.0, 1.5, 1.0),
            (9, 1e-2, 0.75, 1.0),  // wider than the channels
            (15, 1e-4, 0.75, 2.0), // the window passes both ends at once
        ] {
            let text =
                format!("lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} }}");
            let top = run(layer(&text).as_mut(), &x).unwrap();
            assert_close(top.data(), &naive_across(&x, size, alpha, beta, k), 2e-6);
        }
    }

    #[test]
    fn within_channel_by_hand() {
        // 3 × 3 ones, n = 3, α/n² = 1, β = 1; k is ignored: s = 1 + the number of values in the window.
        let x = Blob::from_data(&[1, 1, 3, 3], vec![1.0; 9]).unwrap();
        let text = "lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 9 beta: 1 k: 5 }";
        let top = run(layer(text).as_mut(), &x).unwrap();
        let (corner, edge, centre) = (1.0 / 5.0, 1.0 / 7.0, 1.0 / 10.0);
        let expected = [
            corner, edge, corner, edge, centre, edge, corner, edge, corner,
        ];
        assert_close(top.data(), &expected, 1e-7);
    }

    #[test]
    fn within_channel_matches_the_definition() {
        let x = uniform_blob(&[2, 3, 5, 4], -2.0, 2.0, 4);
        for (size, alpha, beta) in [
            (3, 1.0, 0.75),
            (5, 2.0, 0.5),
            (1, 1.0, 1.0),
            (11, 3.0, 0.75),
        ] {
            let text = format!(
                "lrn_param {{ norm_region: WITHIN_CHANNEL local_size: {size} alpha: {alpha} beta: {beta} }}"
            );
            let top = run(layer(&text).as_mut(), &x).unwrap();
            assert_close(top.data(), &naive_within(&x, size, alpha, beta), 2e-6);
        }
    }

    #[test]
    fn bad_parameters_and_shapes_are_errors() {
        for (text, wanted) in [
            (
                "lrn_param { local_size: 4 }",
                "lrn_param.local_size: must be odd",
            ),
            (
                "lrn_param { local_size: 0 }",
                "lrn_param.local_size: must be odd",
            ),
            (
                "lrn_param { beta: nan }",
                "lrn_param.beta: must be a finite number",
            ),
            (
                "lrn_param { alpha: inf }",
                "lrn_param.alpha: must be a finite number",
            ),
        ] {
            let param = crema_proto::text::parse(text, "t").unwrap();
            let err = create(&mut crate::layers::test_support::context(&param))
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"));
            assert!(err.0.starts_with(wanted), "{text}: {err}");
        }
        for shape in [&[2, 3][..], &[2, 3, 4], &[1, 2, 3, 4, 5]] {
            let err = run(layer("name: \"n\"").as_mut(), &Blob::new(shape).unwrap()).unwrap_err();
            assert!(err.0.contains("LRN takes a bottom of 4 axes"), "{err}");
        }
    }

    #[test]
    fn empty_bottoms_are_fine() {
        for region in ["ACROSS_CHANNELS", "WITHIN_CHANNEL"] {
            for shape in [[0, 3, 2, 2], [2, 0, 2, 2], [2, 3, 0, 2]] {
                let mut l = layer(&format!("lrn_param {{ norm_region: {region} }}"));
                let mut bottom = Blob::new(&shape).unwrap();
                let top = run(l.as_mut(), &bottom).unwrap();
                assert_eq!(top.shape(), shape);
                l.backward(&[&top], &[true], &mut [&mut bottom]).unwrap();
            }
        }
    }

    #[test]
    fn gradient_across_channels() {
        for (size, shape) in [(5, [2, 7, 3, 3]), (3, [2, 4, 2, 3]), (7, [1, 3, 2, 2])] {
            let mut l = layer(&format!("lrn_param {{ local_size: {size} k: 2 }}"));
            GradientChecker::default()
                .check(
                    l.as_mut(),
                    &mut [uniform_blob(&shape, -1.5, 1.5, 11)],
                    1,
                    &[0],
                )
                .unwrap_or_else(|e| panic!("local_size {size} {shape:?}: {e}"));
        }
    }

    #[test]
    fn gradient_within_channel() {
        for (size, shape) in [(3, [2, 2, 4, 5]), (5, [1, 2, 5, 3]), (1, [1, 1, 2, 3])] {
            let text = format!(
                "lrn_param {{ norm_region: WITHIN_CHANNEL local_size: {size} alpha: 2 beta: 0.75 }}"
            );
            let mut l = layer(&text);
            GradientChecker::default()
                .check(
                    l.as_mut(),
                    &mut [uniform_blob(&shape, -1.5, 1.5, 12)],
                    1,
                    &[0],
                )
                .unwrap_or_else(|e| panic!("local_size {size} {shape:?}: {e}"));
        }
    }
}
