//! Convolution kernels: gathering each output position's input patch into a row (`im2row`), its adjoint
//! (`row2im`, which sums rows back into an image), and moving values between image-major and channel-major
//! layouts, for any number of spatial axes with padding, stride and dilation.
//!
//! A convolution over a batch is then three large matrix products (see `layers::convolution`): the patches of
//! all images stacked as one `(N·S) × K` matrix (S output positions per image, K = channels × kernel size per
//! patch), multiplied by the weights. Rows are per position, so each image's patches are one contiguous block
//! and the images are gathered in parallel, each thread writing its own block.

use rayon::prelude::*;
use smallvec::SmallVec;

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

/// Walks every patch value of `shape`, calling `visit(row_offset, input_offset)`: the offset into the
/// `positions × patch_len` rows, and the offset into the image the value comes from (None in the padding).
///
/// Rows are visited in order and each row from its first value to its last, so the writes of `im2row` (and the
/// reads of `row2im`) stream through memory while the image, far smaller, stays in cache.
#[inline(always)]
fn walk(shape: &ConvShape, mut visit: impl FnMut(usize, Option<usize>)) {
    let axes = shape.input.len();
    let last = axes - 1;
    let patch = shape.patch_len();
    let kernel_inner: usize = shape.kernel[..last].iter().product();
    let k_last = shape.kernel[last];
    let (in_last, s_last, p_last, d_last) = (
        shape.input[last] as isize,
        shape.stride[last] as isize,
        shape.pad[last] as isize,
        shape.dilation[last] as isize,
    );
    // Strides of the image's spatial axes.
    let mut image_strides: Dims = smallvec::smallvec![1; axes];
    for a in (0..last).rev() {
        image_strides[a] = image_strides[a + 1] * shape.input[a + 1];
    }
    let plane: usize = shape.input.iter().product();
    let mut k_index: Dims = smallvec::smallvec![0; axes];
    let mut o_index: Dims = smallvec::smallvec![0; axes];
    for position in 0..shape.positions() {
        unravel(position, &shape.output, &mut o_index);
        let row = position * patch;
        let start = o_index[last] as isize * s_last - p_last;
        for kernel_pre in 0..kernel_inner {
            unravel(kernel_pre, &shape.kernel[..last], &mut k_index[..last]);
            // The offset within a plane on the axes before the last; None when one is in the padding.
            let mut base = Some(0);
            for a in 0..last {
                let i = (o_index[a] * shape.stride[a] + k_index[a] * shape.dilation[a]) as isize
                    - shape.pad[a] as isize;
                base = base
                    .filter(|_| i >= 0 && (i as usize) < shape.input[a])
                    .map(|b| b + i as usize * image_strides[a]);
            }
            for c in 0..shape.channels {
                let column = (c * kernel_inner + kernel_pre) * k_last;
                let base = base.map(|b| b + c * plane);
                for kx in 0..k_last {
                    let ix = start + kx as isize * d_last;
                    let at = base.filter(|_| ix >= 0 && ix < in_last);
                    visit(row + column + kx, at.map(|b| b + ix as usize));
                }
            }
        }
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

/// Writes the patch of every output position of `image` as one row of `rows` (`positions × patch_len`),
/// zeros where the patch lies in the padding.
pub fn im2row(shape: &ConvShape, image: &[f32], rows: &mut [f32]) {
    assert!(
        image.len() >= shape.image_len() && rows.len() >= shape.positions() * shape.patch_len()
    );
    match shape.input.len() {
        0 => rows[..shape.channels].copy_from_slice(&image[..shape.channels]),
        2 => rows_2d(shape, image, rows),
        _ => walk(shape, |row, at| rows[row] = at.map_or(0.0, |at| image[at])),
    }
}

/// The adjoint of [`im2row`]: `image` (overwritten) receives the sum, over all patches, of each row value at
/// the input value it was gathered from.
pub fn row2im(shape: &ConvShape, rows: &[f32], image: &mut [f32]) {
    assert!(
        image.len() >= shape.image_len() && rows.len() >= shape.positions() * shape.patch_len()
    );
    image[..shape.image_len()].fill(0.0);
    match shape.input.len() {
        0 => image[..shape.channels].copy_from_slice(&rows[..shape.channels]),
        2 => image_2d(shape, rows, image),
        _ => walk(shape, |row, at| {
            if let Some(at) = at {
                image[at] += rows[row];
            }
        }),
    }
}

/// For two spatial axes, the common case: each output position's patch row and, per kernel row, the kernel
/// columns `first..end` that fall inside the image row `iy` (None when the kernel row is in the padding), for
/// `visit(row, channel, ky, iy, x, first, end)` where `x` is the image column of kernel column `first`.
#[inline(always)]
fn walk_2d(
    shape: &ConvShape,
    mut visit: impl FnMut(usize, usize, usize, Option<usize>, usize, usize, usize),
) {
    let (h, w) = (shape.input[0] as isize, shape.input[1] as isize);
    let (oh, ow) = (shape.output[0], shape.output[1]);
    let kh = shape.kernel[0];
    let kw = shape.kernel[1];
    let (sh, sw) = (shape.stride[0], shape.stride[1]);
    let (ph, pw) = (shape.pad[0] as isize, shape.pad[1] as isize);
    let (dh, dw) = (shape.dilation[0], shape.dilation[1]);
    for oy in 0..oh {
        for ox in 0..ow {
            let position = oy * ow + ox;
            let x0 = (ox * sw) as isize - pw;
            // The kernel columns inside the image: first..end.
            let first = if x0 >= 0 {
                0
            } else {
                ((-x0) as usize).div_ceil(dw)
            };
            let end = if x0 >= w {
                0
            } else {
                (((w - 1 - x0) as usize) / dw + 1).min(kw)
            };
            let x = (x0 + (first * dw) as isize).max(0) as usize;
            for c in 0..shape.channels {
                for ky in 0..kh {
                    let iy = (oy * sh + ky * dh) as isize - ph;
                    let inside = (iy >= 0 && iy < h && first < end).then_some(iy as usize);
                    visit(position, c, ky, inside, x, first, end.max(first));
                }
            }
        }
    }
}

/// [`im2row`] for two spatial axes: each kernel row of a patch is one copy of a run of an image row (stride-1
/// kernels), zeros around it.
fn rows_2d(shape: &ConvShape, image: &[f32], rows: &mut [f32]) {
    let (w, plane) = (shape.input[1], shape.input[0] * shape.input[1]);
    let (kh, kw, dw) = (shape.kernel[0], shape.kernel[1], shape.dilation[1]);
    let patch = shape.patch_len();
    walk_2d(shape, |position, c, ky, iy, x, first, end| {
        let at = position * patch + (c * kh + ky) * kw;
        let out = &mut rows[at..at + kw];
        let Some(iy) = iy else {
            out.fill(0.0);
            return;
        };
        let line = &image[c * plane + iy * w..c * plane + (iy + 1) * w];
        out[..first].fill(0.0);
        if dw == 1 {
            out[first..end].copy_from_slice(&line[x..x + end - first]);
        } else {
            for (o, &v) in out[first..end].iter_mut().zip(line[x..].iter().step_by(dw)) {
                *o = v;
            }
        }
        out[end..].fill(0.0);
    });
}

/// [`row2im`] for two spatial axes (the image already zeroed), by the same walk as [`rows_2d`].
fn image_2d(shape: &ConvShape, rows: &[f32], image: &mut [f32]) {
    let (w, plane) = (shape.input[1], shape.input[0] * shape.input[1]);
    let (kh, kw, dw) = (shape.kernel[0], shape.kernel[1], shape.dilation[1]);
    let patch = shape.patch_len();
    walk_2d(shape, |position, c, ky, iy, x, first, end| {
        let Some(iy) = iy else { return };
        let at = position * patch + (c * kh + ky) * kw;
        let values = &rows[at + first..at + end];
        let line = &mut image[c * plane + iy * w..c * plane + (iy + 1) * w];
        for (o, &v) in line[x..].iter_mut().step_by(dw).zip(values) {
            *o += v;
        }
    });
}

/// [`im2row`] for every image of a batch at once: `images` holds `n` images, `rows` receives their blocks one
/// after another (`(n·positions) × patch_len`), in parallel.
pub fn im2row_batch(shape: &ConvShape, images: &[f32], rows: &mut [f32]) {
    let block = shape.positions() * shape.patch_len();
    if block == 0 {
        return;
    }
    rows.par_chunks_mut(block)
        .zip(images.par_chunks(shape.image_len().max(1)))
        .for_each(|(rows, image)| im2row(shape, image, rows));
}

/// [`row2im`] for every image of a batch at once (the images are overwritten), in parallel.
pub fn row2im_batch(shape: &ConvShape, rows: &[f32], images: &mut [f32]) {
    let block = shape.positions() * shape.patch_len();
    if block == 0 || shape.image_len() == 0 {
        return;
    }
    images
        .par_chunks_mut(shape.image_len())
        .zip(rows.par_chunks(block))
        .for_each(|(image, rows)| row2im(shape, rows, image));
}

/// `n` blocks of `channels × len` (image-major, as blobs hold them) into `channels × (n·len)` (channel-major:
/// one row per channel, the images side by side), the layout the batched products read and write.
pub fn to_channel_major(src: &[f32], n: usize, channels: usize, len: usize, dst: &mut [f32]) {
    if n * channels * len == 0 {
        return;
    }
    dst[..n * channels * len]
        .par_chunks_mut(n * len)
        .enumerate()
        .for_each(|(c, row)| {
            for (i, out) in row.chunks_exact_mut(len).enumerate() {
                let at = (i * channels + c) * len;
                out.copy_from_slice(&src[at..at + len]);
            }
        });
}

/// The inverse of [`to_channel_major`]: `channels × (n·len)` back into `n` blocks of `channels × len`. With
/// `accumulate` the values are added to `dst` instead of replacing it.
pub fn from_channel_major(
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
    dst[..n * channels * len]
        .par_chunks_mut(channels * len)
        .enumerate()
        .for_each(|(i, image)| {
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
        });
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
    fn patch_value(sh: &ConvShape, image: &[f32], position: usize, column: usize) -> f32 {
        let axes = sh.input.len();
        let mut o = vec![0; axes];
        unravel(position, &sh.output, &mut o);
        let kvol: usize = sh.kernel.iter().product();
        let (c, kflat) = (column / kvol, column % kvol);
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

    /// The generic N-D path on any shape, for comparing the 2-D one with it.
    fn generic_rows(sh: &ConvShape, image: &[f32]) -> Vec<f32> {
        let mut rows = vec![f32::NAN; sh.positions() * sh.patch_len()];
        walk(sh, |row, at| rows[row] = at.map_or(0.0, |at| image[at]));
        rows
    }

    #[test]
    fn the_two_dimensional_path_equals_the_general_one() {
        for sh in [
            shape(2, &[5, 4], &[3, 3], &[1, 1], &[1, 1], &[1, 1]),
            shape(3, &[7, 6], &[3, 2], &[2, 1], &[0, 1], &[1, 2]),
            shape(2, &[6, 7], &[2, 3], &[3, 2], &[1, 2], &[2, 3]),
            shape(1, &[3, 3], &[3, 3], &[1, 1], &[2, 2], &[1, 1]),
        ] {
            let image: Vec<f32> = (0..sh.image_len()).map(|i| i as f32 + 1.0).collect();
            let mut rows = vec![f32::NAN; sh.positions() * sh.patch_len()];
            im2row(&sh, &image, &mut rows);
            assert_eq!(rows, generic_rows(&sh, &image), "{sh:?}");
        }
    }

    fn check_against_definition(sh: &ConvShape) {
        let image: Vec<f32> = (0..sh.image_len()).map(|i| i as f32 + 1.0).collect();
        let mut rows = vec![f32::NAN; sh.positions() * sh.patch_len()];
        im2row(sh, &image, &mut rows);
        for p in 0..sh.positions() {
            for col in 0..sh.patch_len() {
                assert_eq!(
                    rows[p * sh.patch_len() + col],
                    patch_value(sh, &image, p, col),
                    "{sh:?} {p} {col}"
                );
            }
        }
        // row2im is the adjoint: <im2row(x), r> = <x, row2im(r)>.
        let r: Vec<f32> = (0..rows.len())
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let mut back = vec![f32::NAN; sh.image_len()];
        row2im(sh, &r, &mut back);
        let lhs: f64 = rows
            .iter()
            .zip(&r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let rhs: f64 = image
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
        check_against_definition(&shape(1, &[9], &[3], &[2], &[2], &[2]));
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
        to_channel_major(&src, 2, 3, 4, &mut cm);
        // Channel 1: image 0's values 4..8, then image 1's 16..20.
        assert_eq!(&cm[8..16], [4.0, 5.0, 6.0, 7.0, 16.0, 17.0, 18.0, 19.0]);
        let mut back = vec![0.0; 24];
        from_channel_major(&cm, 2, 3, 4, &mut back, false);
        assert_eq!(back, src);
        from_channel_major(&cm, 2, 3, 4, &mut back, true);
        assert_eq!(back[5], 10.0);
    }
}
