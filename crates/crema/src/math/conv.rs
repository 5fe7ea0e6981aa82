//! Convolution kernels: gathering input patches into columns (`im2col`), its adjoint (`col2im`, which sums
//! columns back into images), and moving values between image-major and channel-major layouts, for any number
//! of spatial axes with padding, stride and dilation.
//!
//! A convolution over a chunk of images is then a few matrix products (see `math::convolve`): the patches of
//! `n` images as one `K × (n·S)` matrix (K = channels × kernel size per patch, S output positions per image,
//! the images side by side), multiplied by the `M × K` weights. Each row of that matrix is one (channel,
//! kernel offset) for every position of every image: a row is made of runs copied from image rows. With
//! `Threads::All` rows (and in `col2im`, planes) are filled in parallel; with `Threads::One` the caller is
//! itself one piece of a parallel loop.

use smallvec::SmallVec;

use super::{for_each_block, Threads};

/// Dimensions of the spatial axes (rarely more than 3).
pub type Dims = SmallVec<[usize; 4]>;

/// The geometry of one convolution: an input image of `channels × input[0] × input[1] ...` read through a
/// kernel of `kernel` with `stride`, `pad` (zeros on both sides) and `dilation` on each spatial axis, giving
/// `output` positions per axis (Caffe's floor rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvShape {
    pub channels: usize,
    pub input: Dims,
    pub kernel: Dims,
    pub stride: Dims,
    pub pad: Dims,
    pub dilation: Dims,
    pub output: Dims,
}

impl ConvShape {
    /// The geometry of a convolution of `input`; an error (naming the axis) when the kernel, with its
    /// dilation, does not fit in the padded input, or a kernel size, stride or dilation is 0.
    pub fn new(
        channels: usize,
        input: &[usize],
        kernel: &[usize],
        stride: &[usize],
        pad: &[usize],
        dilation: &[usize],
    ) -> Result<ConvShape, String> {
        let mut output = Dims::new();
        for axis in 0..input.len() {
            let extent = Self::extent(kernel[axis], stride[axis], dilation[axis], axis)?;
            let padded = input[axis] + 2 * pad[axis];
            if extent > padded {
                return Err(format!(
                    "spatial axis {axis}: the kernel spans {extent} (kernel {} with dilation {}) but the input is \
                     {} with padding {} on each side ({padded})",
                    kernel[axis], dilation[axis], input[axis], pad[axis]
                ));
            }
            output.push((padded - extent) / stride[axis] + 1);
        }
        Ok(ConvShape {
            channels,
            input: input.into(),
            kernel: kernel.into(),
            stride: stride.into(),
            pad: pad.into(),
            dilation: dilation.into(),
            output,
        })
    }

    /// The geometry whose `output` is `output`: what a deconvolution of an input of `output` positions makes
    /// (`stride·(o−1) + extent − 2·pad` per axis); an error when that is not a positive size.
    pub fn with_output(
        channels: usize,
        output: &[usize],
        kernel: &[usize],
        stride: &[usize],
        pad: &[usize],
        dilation: &[usize],
    ) -> Result<ConvShape, String> {
        let mut input = Dims::new();
        for axis in 0..output.len() {
            let extent = Self::extent(kernel[axis], stride[axis], dilation[axis], axis)?;
            let full = stride[axis] * output[axis].saturating_sub(1) + extent;
            if output[axis] == 0 || full <= 2 * pad[axis] {
                return Err(format!(
                    "spatial axis {axis}: an input of {} with stride {}, kernel extent {extent} and padding {} makes \
                     no output",
                    output[axis], stride[axis], pad[axis]
                ));
            }
            input.push(full - 2 * pad[axis]);
        }
        let shape = ConvShape::new(channels, &input, kernel, stride, pad, dilation)?;
        debug_assert_eq!(&shape.output[..], output);
        Ok(shape)
    }

    fn extent(kernel: usize, stride: usize, dilation: usize, axis: usize) -> Result<usize, String> {
        if kernel == 0 || stride == 0 || dilation == 0 {
            return Err(format!(
                "spatial axis {axis}: kernel {kernel}, stride {stride} and dilation {dilation} must all be at least 1"
            ));
        }
        Ok(dilation * (kernel - 1) + 1)
    }

    /// Values in one patch (one row of `im2row`): channels × kernel size.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel.iter().product::<usize>()
    }

    /// Output positions per image (rows of `im2row`).
    pub fn positions(&self) -> usize {
        self.output.iter().product()
    }

    /// Values in one input image.
    pub fn image_len(&self) -> usize {
        self.channels * self.input.iter().product::<usize>()
    }
}

/// For row `k` of the patch matrix of one image (channel `k / kernel size`, kernel offset `k % kernel size`),
/// calls `visit(position, input_offset)` for every output position: the offset into the image the value comes
/// from, None in the padding. The general path, for any number of spatial axes.
#[inline(always)]
fn walk_row(shape: &ConvShape, k: usize, mut visit: impl FnMut(usize, Option<usize>)) {
    let axes = shape.input.len();
    let kernel_len: usize = shape.kernel.iter().product();
    let (c, offset) = (k / kernel_len, k % kernel_len);
    let mut k_index: Dims = smallvec::smallvec![0; axes];
    let mut o_index: Dims = smallvec::smallvec![0; axes];
    unravel(offset, &shape.kernel, &mut k_index);
    let plane: usize = shape.input.iter().product();
    for position in 0..shape.positions() {
        unravel(position, &shape.output, &mut o_index);
        let mut at = Some(0);
        for a in 0..axes {
            let i = (o_index[a] * shape.stride[a] + k_index[a] * shape.dilation[a]) as isize
                - shape.pad[a] as isize;
            at = at
                .filter(|_| i >= 0 && (i as usize) < shape.input[a])
                .map(|at| at * shape.input[a] + i as usize);
        }
        visit(position, at.map(|at| c * plane + at));
    }
}

/// `index` as a multi-index over `dims` (row-major).
#[inline]
fn unravel(mut index: usize, dims: &[usize], out: &mut [usize]) {
    for a in (0..dims.len()).rev() {
        out[a] = index % dims[a];
        index /= dims[a];
    }
}

/// For two spatial axes, the common case: row `k` = (channel, ky, kx) of the patch matrix of one image as runs,
/// one per output row `oy`: `visit(oy, line, first, end, x)` where `line` is the offset of the image row read
/// (None when it is in the padding), output columns `first..end` read it (the others are in the padding), and
/// `x` is the image column that output column `first` reads (then every `stride` columns).
#[inline(always)]
fn row_runs_2d(
    shape: &ConvShape,
    k: usize,
    mut visit: impl FnMut(usize, Option<usize>, usize, usize, usize),
) {
    let (h, w) = (shape.input[0], shape.input[1]);
    let (oh, ow) = (shape.output[0], shape.output[1]);
    let (kh, kw) = (shape.kernel[0], shape.kernel[1]);
    let (sh, sw) = (shape.stride[0], shape.stride[1]);
    let (ph, pw) = (shape.pad[0], shape.pad[1]);
    let (dh, dw) = (shape.dilation[0], shape.dilation[1]);
    let (c, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
    // Output column ox reads image column ox·sw + kx·dw − pw: inside for ox in first..end.
    let shift = kx * dw;
    let first = pw.saturating_sub(shift).div_ceil(sw).min(ow);
    let end = if w + pw > shift {
        (w + pw - shift).div_ceil(sw).min(ow)
    } else {
        0
    }
    .max(first);
    // No column reads the image (a stride past it): no image column either, so that callers slice nothing.
    let x = if first < end {
        (first * sw + shift).saturating_sub(pw)
    } else {
        0
    };
    for oy in 0..oh {
        let iy = (oy * sh + ky * dh) as isize - ph as isize;
        let line = (iy >= 0 && (iy as usize) < h).then(|| (c * h + iy as usize) * w);
        visit(oy, line, first, end, x);
    }
}

/// Lanes moved at once by [`copy_run`] and [`add_run`].
const LANES: usize = 8;

/// `dst = src` for the short runs of image rows that patches are made of: in fixed-size blocks, because a call
/// to `memcpy` per run of a few values costs more than the copy.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = src.chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        let block: [f32; LANES] = s.try_into().unwrap_or([0.0; LANES]);
        d.copy_from_slice(&block);
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// `dst += src` for short runs, as [`copy_run`].
#[inline(always)]
fn add_run(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = src.chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        for (d, &s) in d.iter_mut().zip(s) {
            *d += s;
        }
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += s;
    }
}

/// The patch matrix of `n` images: `cols` (`patch_len × (n·positions)`) receives, for each patch value (row)
/// and each output position of each image (column), the input value it reads, 0 in the padding. With
/// [`Threads::All`] rows are filled in parallel.
pub fn im2col(threads: Threads, shape: &ConvShape, images: &[f32], n: usize, cols: &mut [f32]) {
    let (positions, image_len) = (shape.positions(), shape.image_len());
    let width = n * positions;
    assert!(images.len() >= n * image_len && cols.len() >= shape.patch_len() * width);
    if width == 0 {
        return;
    }
    let (ow, sw) = (
        shape.output.last().copied().unwrap_or(1),
        shape.stride.last().copied().unwrap_or(1),
    );
    let fill_row = |k: usize, row: &mut [f32]| {
        for (image, out) in images
            .chunks_exact(image_len)
            .zip(row.chunks_exact_mut(positions))
        {
            if shape.input.len() != 2 {
                walk_row(shape, k, |p, at| out[p] = at.map_or(0.0, |at| image[at]));
                continue;
            }
            row_runs_2d(shape, k, |oy, line, first, end, x| {
                let out = &mut out[oy * ow..(oy + 1) * ow];
                let Some(line) = line else {
                    out.fill(0.0);
                    return;
                };
                out[..first].fill(0.0);
                out[end..].fill(0.0);
                let line = &image[line..];
                if sw == 1 {
                    copy_run(&mut out[first..end], &line[x..x + end - first]);
                } else {
                    for (o, &v) in out[first..end].iter_mut().zip(line[x..].iter().step_by(sw)) {
                        *o = v;
                    }
                }
            });
        }
    };
    for_each_block(
        threads,
        &mut cols[..shape.patch_len() * width],
        width,
        fill_row,
    );
}

/// The adjoint of [`im2col`]: `images` (`n` of them, overwritten) receive the sum, over all columns, of each
/// patch value at the input value it was read from. With [`Threads::All`] the planes (one channel of one image,
/// fed by that channel's rows of patches only) are filled in parallel.
pub fn col2im(threads: Threads, shape: &ConvShape, cols: &[f32], n: usize, images: &mut [f32]) {
    let (positions, image_len) = (shape.positions(), shape.image_len());
    let width = n * positions;
    assert!(images.len() >= n * image_len && cols.len() >= shape.patch_len() * width);
    if width == 0 || image_len == 0 || shape.channels == 0 {
        return;
    }
    let (ow, sw) = (
        shape.output.last().copied().unwrap_or(1),
        shape.stride.last().copied().unwrap_or(1),
    );
    let (plane_len, kernel_len) = (
        image_len / shape.channels,
        shape.kernel.iter().product::<usize>(),
    );
    let fill_plane = |index: usize, plane: &mut [f32]| {
        let (i, c) = (index / shape.channels, index % shape.channels);
        // Offsets below are into the whole image; this plane starts at `base`.
        let base = c * plane_len;
        plane.fill(0.0);
        let rows = cols
            .chunks_exact(width)
            .enumerate()
            .skip(c * kernel_len)
            .take(kernel_len);
        for (k, row) in rows {
            let values = &row[i * positions..(i + 1) * positions];
            if shape.input.len() != 2 {
                walk_row(shape, k, |p, at| {
                    if let Some(at) = at {
                        plane[at - base] += values[p];
                    }
                });
                continue;
            }
            row_runs_2d(shape, k, |oy, line, first, end, x| {
                let Some(line) = line else { return };
                let values = &values[oy * ow + first..oy * ow + end];
                let start = line - base + x;
                if sw == 1 {
                    add_run(&mut plane[start..start + values.len()], values);
                } else {
                    for (o, &v) in plane[start..].iter_mut().step_by(sw).zip(values) {
                        *o += v;
                    }
                }
            });
        }
    };
    for_each_block(threads, &mut images[..n * image_len], plane_len, fill_plane);
}

/// `n` blocks of `channels × len` (image-major, as blobs hold them) into `channels × (n·len)` (channel-major:
/// one row per channel, the images side by side), the layout the batched products read and write.
pub fn to_channel_major(
    threads: Threads,
    src: &[f32],
    n: usize,
    channels: usize,
    len: usize,
    dst: &mut [f32],
) {
    if n * channels * len == 0 {
        return;
    }
    for_each_block(
        threads,
        &mut dst[..n * channels * len],
        n * len,
        |c, row| {
            for (i, out) in row.chunks_exact_mut(len).enumerate() {
                let at = (i * channels + c) * len;
                out.copy_from_slice(&src[at..at + len]);
            }
        },
    );
}

/// The inverse of [`to_channel_major`]: `channels × (n·len)` back into `n` blocks of `channels × len`. With
/// `accumulate` the values are added to `dst` instead of replacing it.
pub fn from_channel_major(
    threads: Threads,
    src: &[f32],
    n: usize,
    channels: usize,
    len: usize,
    dst: &mut [f32],
    accumulate: bool,
) {
    if n * channels * len == 0 {
        return;
    }
    for_each_block(
        threads,
        &mut dst[..n * channels * len],
        channels * len,
        |i, image| {
            for (c, out) in image.chunks_exact_mut(len).enumerate() {
                let at = c * n * len + i * len;
                if accumulate {
                    for (o, &v) in out.iter_mut().zip(&src[at..at + len]) {
                        *o += v;
                    }
                } else {
                    out.copy_from_slice(&src[at..at + len]);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(
        c: usize,
        input: &[usize],
        k: &[usize],
        s: &[usize],
        p: &[usize],
        d: &[usize],
    ) -> ConvShape {
        ConvShape::new(c, input, k, s, p, d).unwrap()
    }

    /// The patch value by definition: image[c][o·s − p + k·d] or 0 outside.
    fn patch_value(sh: &ConvShape, image: &[f32], position: usize, row: usize) -> f32 {
        let axes = sh.input.len();
        let mut o = vec![0; axes];
        unravel(position, &sh.output, &mut o);
        let kvol: usize = sh.kernel.iter().product();
        let (c, kflat) = (row / kvol, row % kvol);
        let mut k = vec![0; axes];
        unravel(kflat, &sh.kernel, &mut k);
        let mut offset = c;
        for a in 0..axes {
            let i = (o[a] * sh.stride[a] + k[a] * sh.dilation[a]) as isize - sh.pad[a] as isize;
            if i < 0 || i as usize >= sh.input[a] {
                return 0.0;
            }
            offset = offset * sh.input[a] + i as usize;
        }
        image[offset]
    }

    /// Two images side by side: every column holds its image's patch value, and col2im is im2col's adjoint.
    fn check_against_definition(sh: &ConvShape) {
        let n = 2;
        let images: Vec<f32> = (0..n * sh.image_len()).map(|i| i as f32 + 1.0).collect();
        let width = n * sh.positions();
        let mut cols = vec![f32::NAN; sh.patch_len() * width];
        im2col(Threads::All, sh, &images, n, &mut cols);
        for i in 0..n {
            let image = &images[i * sh.image_len()..(i + 1) * sh.image_len()];
            for row in 0..sh.patch_len() {
                for p in 0..sh.positions() {
                    let got = cols[row * width + i * sh.positions() + p];
                    assert_eq!(
                        got,
                        patch_value(sh, image, p, row),
                        "{sh:?} image {i} row {row} position {p}"
                    );
                }
            }
        }
        // <im2col(x), r> = <x, col2im(r)>.
        let r: Vec<f32> = (0..cols.len())
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let mut back = vec![f32::NAN; n * sh.image_len()];
        col2im(Threads::All, sh, &r, n, &mut back);
        let lhs: f64 = cols
            .iter()
            .zip(&r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let rhs: f64 = images
            .iter()
            .zip(&back)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-6 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn patches_follow_the_definition_in_one_two_and_three_dimensions() {
        check_against_definition(&shape(2, &[5, 4], &[3, 3], &[1, 1], &[1, 1], &[1, 1]));
        check_against_definition(&shape(3, &[7, 6], &[3, 2], &[2, 1], &[0, 1], &[1, 2]));
        check_against_definition(&shape(2, &[6, 7], &[2, 3], &[3, 2], &[1, 2], &[2, 3]));
        check_against_definition(&shape(1, &[3, 3], &[3, 3], &[1, 1], &[2, 2], &[1, 1]));
        check_against_definition(&shape(1, &[9], &[3], &[2], &[2], &[2]));
        // A stride past the image with padding: the first kernel columns read only padding (found by the fuzz
        // suite: the fast 2-D path sliced the image at the position it would have read).
        check_against_definition(&shape(
            2,
            &[7, 7],
            &[3, 3],
            &[65535, 65535],
            &[1, 1],
            &[1, 1],
        ));
        check_against_definition(&shape(1, &[7, 5], &[3, 3], &[6, 4], &[2, 1], &[1, 2]));
        check_against_definition(&shape(
            2,
            &[4, 3, 5],
            &[2, 3, 2],
            &[1, 2, 2],
            &[1, 0, 1],
            &[1, 1, 2],
        ));
    }

    #[test]
    fn output_sizes_use_floor_and_bad_geometry_is_named() {
        let sh = shape(1, &[7, 7], &[3, 3], &[2, 2], &[0, 0], &[1, 1]);
        assert_eq!(&sh.output[..], [3, 3]);
        let sh = shape(1, &[8, 8], &[3, 3], &[2, 2], &[1, 1], &[1, 1]);
        assert_eq!(&sh.output[..], [4, 4]);
        let err = ConvShape::new(1, &[4, 4], &[5, 3], &[1, 1], &[0, 0], &[1, 1]).unwrap_err();
        assert!(
            err.starts_with("spatial axis 0: the kernel spans 5"),
            "{err}"
        );
        let err = ConvShape::new(1, &[4, 4], &[3, 3], &[1, 0], &[0, 0], &[1, 1]).unwrap_err();
        assert!(err.contains("must all be at least 1"), "{err}");
        let deconv =
            ConvShape::with_output(1, &[3, 4], &[4, 4], &[2, 2], &[1, 1], &[1, 1]).unwrap();
        assert_eq!(&deconv.input[..], [6, 8]);
    }

    #[test]
    fn channel_major_round_trips() {
        let src: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let mut cm = vec![0.0; 24];
        to_channel_major(Threads::All, &src, 2, 3, 4, &mut cm);
        // Channel 1: image 0's values 4..8, then image 1's 16..20.
        assert_eq!(&cm[8..16], [4.0, 5.0, 6.0, 7.0, 16.0, 17.0, 18.0, 19.0]);
        let mut back = vec![0.0; 24];
        from_channel_major(Threads::One, &cm, 2, 3, 4, &mut back, false);
        assert_eq!(back, src);
        from_channel_major(Threads::All, &cm, 2, 3, 4, &mut back, true);
        assert_eq!(back[5], 10.0);
    }
}
