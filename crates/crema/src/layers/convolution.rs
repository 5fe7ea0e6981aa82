//! Convolution, and what Deconvolution shares with it (Caffe's BaseConvolutionLayer).
//!
//! Parameters: `convolution_param { num_output (required) bias_term (true) kernel_size | kernel_h kernel_w,
//! stride | stride_h stride_w (1), pad | pad_h pad_w (0), dilation (1), group (1), axis (1), weight_filler
//! bias_filler }`. `kernel_size`, `stride`, `pad` and `dilation` take one value for every spatial axis or one
//! per axis; the `_h`/`_w` forms are for two spatial axes only. The spatial axes are those after `axis`, as
//! many as the bottom has (1-D, 2-D, 3-D...). Output size per axis: `(in + 2·pad − extent) / stride + 1`
//! rounded down, `extent = dilation·(kernel − 1) + 1`.
//!
//! Learnable blobs: the weights, `num_output × channels/group × kernel...` (Deconvolution:
//! `channels × num_output/group × kernel...`), and the bias of `num_output` when `bias_term`.
//!
//! How it runs: the patches of every image are gathered as one `K × (N·S)` matrix (`math::conv::im2col`, rows
//! in parallel), and forward and backward are each one or two large matrix products per group on views of it,
//! split across cores by the matrix product: the output, the weight gradient and the patch gradient (summed
//! back into images by `col2im`). Deconvolution runs the same products
//! the other way round (its forward is a convolution's input gradient).

use crema_proto::caffe::ConvolutionParameter;

use crate::blob::Blob;
use crate::filler::filled_blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::math::conv::{self, ConvShape, Dims};
use crate::math::{matmul, MatMut, MatRef, Rng};
use crate::memory;

/// A Convolution or Deconvolution layer.
pub struct Convolution {
    param: ConvolutionParameter,
    /// Deconvolution: the top is what a convolution with these weights would take as input.
    transposed: bool,
    num_output: usize,
    group: usize,
    /// Set at setup: the channel axis, the number of spatial axes, the channels of the bottom.
    axis: usize,
    spatial_axes: usize,
    channels: usize,
    kernel: Dims,
    stride: Dims,
    pad: Dims,
    dilation: Dims,
    /// Set at reshape: the images in the batch and the convolution's geometry (for Deconvolution, of the
    /// convolution it is the transpose of).
    num: usize,
    shape: Option<ConvShape>,
    /// `patch_len × (num·positions)`: the patches of the convolution input (or their gradient).
    cols: Vec<f32>,
    /// Channel-major values: the convolution output (or its gradient), `outputs × (num·positions)`.
    channel_major: Vec<f32>,
    blobs: Vec<Blob>,
    rng: Rng,
}

/// Makes a Convolution layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    create_either(ctx, false)
}

/// Makes a Convolution (`transposed` false) or Deconvolution layer.
pub(crate) fn create_either(
    ctx: &mut LayerContext,
    transposed: bool,
) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.convolution_param.clone().unwrap_or_default();
    let num_output = param.num_output() as usize;
    if num_output == 0 {
        return Err(LayerError::new(
            "convolution_param.num_output: must be set and positive",
        ));
    }
    let group = param.group() as usize;
    if group == 0 {
        return Err(LayerError::new(
            "convolution_param.group: must be at least 1",
        ));
    }
    if !num_output.is_multiple_of(group) {
        return Err(LayerError::new(format!(
            "convolution_param.group: {group} does not divide num_output {num_output}"
        )));
    }
    Ok(Box::new(Convolution {
        param,
        transposed,
        num_output,
        group,
        axis: 0,
        spatial_axes: 0,
        channels: 0,
        kernel: Dims::new(),
        stride: Dims::new(),
        pad: Dims::new(),
        dilation: Dims::new(),
        num: 0,
        shape: None,
        cols: Vec::new(),
        channel_major: Vec::new(),
        blobs: Vec::new(),
        rng: ctx.rng.clone(),
    }))
}

/// One value per spatial axis from a repeated field (one value for all, or one each; `default` when empty) or
/// from its `_h`/`_w` pair; errors name the field.
fn per_axis(
    name: &str,
    values: &[u32],
    hw: (Option<u32>, Option<u32>),
    axes: usize,
    default: Option<usize>,
) -> LayerResult<Dims> {
    let field = |f: &str| format!("convolution_param.{f}");
    if hw.0.is_some() || hw.1.is_some() {
        if axes != 2 {
            return Err(LayerError::new(format!(
                "{}: {name}_h and {name}_w are for 2 spatial axes; this bottom has {axes} (give {name} per axis)",
                field(name)
            )));
        }
        if !values.is_empty() {
            return Err(LayerError::new(format!(
                "{}: give either {name} or {name}_h and {name}_w, not both",
                field(name)
            )));
        }
        return match hw {
            (Some(h), Some(w)) => Ok([h as usize, w as usize].into_iter().collect()),
            _ => Err(LayerError::new(format!(
                "{}: give both {name}_h and {name}_w",
                field(name)
            ))),
        };
    }
    match (values.len(), default) {
        (0, Some(default)) => Ok(std::iter::repeat_n(default, axes).collect()),
        (0, None) => Err(LayerError::new(format!(
            "{}: missing; give kernel_size (or kernel_h and kernel_w)",
            field(name)
        ))),
        (1, _) => Ok(std::iter::repeat_n(values[0] as usize, axes).collect()),
        (n, _) if n == axes => Ok(values.iter().map(|&v| v as usize).collect()),
        (n, _) => Err(LayerError::new(format!(
            "{}: {n} values for {axes} spatial axes; give one, or one per axis",
            field(name)
        ))),
    }
}

/// What `convolution_param` says about the spatial axes of a bottom, checked: the channel axis, how many
/// spatial axes follow it, and the kernel, stride, pad and dilation of each (Convolution, Deconvolution and
/// Im2col read it alike).
pub(crate) struct Geometry {
    pub axis: usize,
    pub spatial_axes: usize,
    pub kernel: Dims,
    pub stride: Dims,
    pub pad: Dims,
    pub dilation: Dims,
}

impl Geometry {
    pub(crate) fn read(p: &ConvolutionParameter, x: &Blob) -> LayerResult<Geometry> {
        let axis = x
            .canonical_axis(p.axis())
            .map_err(|e| LayerError::new(format!("convolution_param.axis: {e}")))?;
        let axes = x.num_axes() - axis - 1;
        if axes == 0 {
            return Err(LayerError::new(format!(
                "the bottom ({}) has no spatial axes after the channel axis {axis}",
                x.shape_string()
            )));
        }
        let kernel = per_axis(
            "kernel",
            &p.kernel_size,
            (p.kernel_h, p.kernel_w),
            axes,
            None,
        )?;
        let stride = per_axis("stride", &p.stride, (p.stride_h, p.stride_w), axes, Some(1))?;
        let pad = per_axis("pad", &p.pad, (p.pad_h, p.pad_w), axes, Some(0))?;
        let dilation = per_axis("dilation", &p.dilation, (None, None), axes, Some(1))?;
        if let Some(a) = (0..axes).find(|&a| kernel[a] == 0 || stride[a] == 0 || dilation[a] == 0) {
            return Err(LayerError::new(format!(
                "convolution_param: spatial axis {a} has kernel {}, stride {}, dilation {}; each must be at \
                 least 1",
                kernel[a], stride[a], dilation[a]
            )));
        }
        Ok(Geometry {
            axis,
            spatial_axes: axes,
            kernel,
            stride,
            pad,
            dilation,
        })
    }
}

impl Convolution {
    /// Channels of the convolution's input and output: (bottom, top) for Convolution, (top, bottom) for
    /// Deconvolution.
    fn conv_channels(&self) -> (usize, usize) {
        if self.transposed {
            (self.num_output, self.channels)
        } else {
            (self.channels, self.num_output)
        }
    }
}

impl Layer for Convolution {
    fn type_name(&self) -> &'static str {
        if self.transposed {
            "Deconvolution"
        } else {
            "Convolution"
        }
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let geometry = Geometry::read(&self.param, x)?;
        (self.axis, self.spatial_axes) = (geometry.axis, geometry.spatial_axes);
        (self.kernel, self.stride, self.pad, self.dilation) = (
            geometry.kernel,
            geometry.stride,
            geometry.pad,
            geometry.dilation,
        );
        self.channels = x.shape()[self.axis];
        if !self.channels.is_multiple_of(self.group) {
            return Err(LayerError::new(format!(
                "convolution_param.group: {} does not divide the bottom's {} channels",
                self.group, self.channels
            )));
        }
        if !self.blobs.is_empty() {
            return Ok(());
        }
        // Convolution: num_output × channels/group; Deconvolution: channels × num_output/group.
        let (conv_in, conv_out) = self.conv_channels();
        let mut weight_shape = vec![conv_out, conv_in / self.group];
        weight_shape.extend_from_slice(&self.kernel);
        let weights = filled_blob(
            &weight_shape,
            self.param.weight_filler.as_ref(),
            &mut self.rng,
            "convolution_param.weight_filler",
        )?;
        self.blobs.push(weights);
        if self.param.bias_term() {
            let bias = filled_blob(
                &[self.num_output],
                self.param.bias_filler.as_ref(),
                &mut self.rng,
                "convolution_param.bias_filler",
            )?;
            self.blobs.push(bias);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        if x.num_axes() != self.axis + 1 + self.spatial_axes
            || x.shape()[self.axis] != self.channels
        {
            return Err(LayerError::new(format!(
                "the bottom changed to {} from {} channels on axis {} and {} spatial axes at setup",
                x.shape_string(),
                self.channels,
                self.axis,
                self.spatial_axes
            )));
        }
        self.num = x.count_range(0, self.axis);
        let spatial = &x.shape()[self.axis + 1..];
        let (conv_in, _) = self.conv_channels();
        let (k, s, p, d) = (&self.kernel, &self.stride, &self.pad, &self.dilation);
        let shape = if self.transposed {
            ConvShape::with_output(conv_in, spatial, k, s, p, d)
        } else {
            ConvShape::new(conv_in, spatial, k, s, p, d)
        }
        .map_err(|e| {
            LayerError::new(format!(
                "{} on bottom {}: {e}",
                self.type_name(),
                x.shape_string()
            ))
        })?;
        let top_spatial: &[usize] = if self.transposed {
            &shape.input
        } else {
            &shape.output
        };
        let mut top_shape = x.shape()[..=self.axis].to_vec();
        top_shape[self.axis] = self.num_output;
        top_shape.extend_from_slice(top_spatial);
        top[0].reshape(&top_shape)?;

        let cols = self.num * shape.positions() * shape.patch_len();
        let (_, conv_out) = self.conv_channels();
        let channel_major = self.num * shape.positions() * conv_out;
        memory::resize(&mut self.cols, cols, 0.0, || {
            "the convolution patches".into()
        })?;
        memory::resize(&mut self.channel_major, channel_major, 0.0, || {
            "the convolution's channel-major buffer".into()
        })?;
        self.shape = Some(shape);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let Some(shape) = &self.shape else {
            return Err(LayerError::new("forward before reshape"));
        };
        let (n, g) = (self.num, self.group);
        let (_, conv_out) = self.conv_channels();
        let (positions, patch) = (shape.positions(), shape.patch_len());
        let (kg, mg) = (patch / g, conv_out / g);
        let width = n * positions;
        let w = MatRef::new(self.blobs[0].data(), conv_out, kg);
        if !self.transposed {
            // cols = patches of x; O (conv_out × N·S) = W_g · cols_g per group; y = O image-major.
            conv::im2col(shape, bottom[0].data(), n, &mut self.cols);
            let cols = MatRef::new(&self.cols, patch, width);
            for group in 0..g {
                let out =
                    MatMut::new(&mut self.channel_major, conv_out, width).rows(group * mg, mg);
                matmul(
                    out,
                    w.rows(group * mg, mg),
                    cols.rows(group * kg, kg),
                    1.0,
                    0.0,
                );
            }
            let y = top[0].data_mut();
            conv::from_channel_major(&self.channel_major, n, conv_out, positions, y, false);
        } else {
            // X (conv_out × N·S) channel-major; cols_g = W_gᵀ · X_g; y = col2im(cols).
            conv::to_channel_major(
                bottom[0].data(),
                n,
                conv_out,
                positions,
                &mut self.channel_major,
            );
            let x = MatRef::new(&self.channel_major, conv_out, width);
            for group in 0..g {
                let out = MatMut::new(&mut self.cols, patch, width).rows(group * kg, kg);
                matmul(
                    out,
                    w.rows(group * mg, mg).t(),
                    x.rows(group * mg, mg),
                    1.0,
                    0.0,
                );
            }
            conv::col2im(shape, &self.cols, n, top[0].data_mut());
        }
        if let Some(bias) = self.blobs.get(1).map(Blob::data) {
            let plane = top[0].count() / (n * self.num_output).max(1);
            for image in top[0].data_mut().chunks_exact_mut(self.num_output * plane) {
                for (channel, &b) in image.chunks_exact_mut(plane).zip(bias) {
                    channel.iter_mut().for_each(|v| *v += b);
                }
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
        let Some(shape) = &self.shape else {
            return Err(LayerError::new("backward before reshape"));
        };
        let (n, g) = (self.num, self.group);
        let (_, conv_out) = self.conv_channels();
        let (positions, patch) = (shape.positions(), shape.patch_len());
        let (kg, mg) = (patch / g, conv_out / g);
        let width = n * positions;
        let dy = top[0].diff();
        if self.blobs.len() > 1 {
            let plane = top[0].count() / (n * self.num_output).max(1);
            let db = self.blobs[1].diff_mut();
            for image in dy.chunks_exact(self.num_output * plane) {
                for (channel, db) in image.chunks_exact(plane).zip(db.iter_mut()) {
                    *db += channel.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
                }
            }
        }
        let (weights, dweights) = self.blobs[0].data_and_diff_mut();
        let w = MatRef::new(weights, conv_out, kg);
        if !self.transposed {
            // D = dy channel-major; dW_g += D_g · cols_gᵀ; dcols_g = W_gᵀ · D_g; dx = col2im(dcols).
            conv::to_channel_major(dy, n, conv_out, positions, &mut self.channel_major);
            let d = MatRef::new(&self.channel_major, conv_out, width);
            {
                let cols = MatRef::new(&self.cols, patch, width);
                for group in 0..g {
                    let dw = MatMut::new(dweights, conv_out, kg).rows(group * mg, mg);
                    matmul(
                        dw,
                        d.rows(group * mg, mg),
                        cols.rows(group * kg, kg).t(),
                        1.0,
                        1.0,
                    );
                }
            }
            if propagate_down[0] {
                for group in 0..g {
                    let dcols = MatMut::new(&mut self.cols, patch, width).rows(group * kg, kg);
                    matmul(
                        dcols,
                        w.rows(group * mg, mg).t(),
                        d.rows(group * mg, mg),
                        1.0,
                        0.0,
                    );
                }
                conv::col2im(shape, &self.cols, n, bottom[0].diff_mut());
            }
        } else {
            // dcols = patches of dy; dW_g += X_g · dcols_gᵀ; dX_g = W_g · dcols_g; dx = dX image-major.
            conv::im2col(shape, dy, n, &mut self.cols);
            let dcols = MatRef::new(&self.cols, patch, width);
            {
                let x = MatRef::new(&self.channel_major, conv_out, width);
                for group in 0..g {
                    let dw = MatMut::new(dweights, conv_out, kg).rows(group * mg, mg);
                    matmul(
                        dw,
                        x.rows(group * mg, mg),
                        dcols.rows(group * kg, kg).t(),
                        1.0,
                        1.0,
                    );
                }
            }
            if propagate_down[0] {
                for group in 0..g {
                    let dx =
                        MatMut::new(&mut self.channel_major, conv_out, width).rows(group * mg, mg);
                    matmul(
                        dx,
                        w.rows(group * mg, mg),
                        dcols.rows(group * kg, kg),
                        1.0,
                        0.0,
                    );
                }
                let dx = bottom[0].diff_mut();
                conv::from_channel_major(&self.channel_major, n, conv_out, positions, dx, false);
            }
        }
        Ok(())
    }

    fn params(&self) -> &[Blob] {
        &self.blobs
    }

    fn params_mut(&mut self) -> &mut [Blob] {
        &mut self.blobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn make(text: &str) -> Result<Box<dyn Layer>, String> {
        let param: crema_proto::LayerParameter =
            crema_proto::text::parse(text, "t").map_err(|e| e.to_string())?;
        let transposed = param.r#type() == "Deconvolution";
        create_either(&mut context(&param), transposed).map_err(|e| e.0)
    }

    /// Convolution by its definition, in f64: y[n][o][p] = b[o] + Σ w[o][c][k] x[n][g·C/g + c][p·s − pad + k·d].
    fn direct_2d(
        x: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        weights: &[f32],
        bias: &[f32],
        (m, kh, kw): (usize, usize, usize),
        (s, p, d, g): (usize, usize, usize, usize),
    ) -> Vec<f64> {
        let oh = (h + 2 * p - (d * (kh - 1) + 1)) / s + 1;
        let ow = (w + 2 * p - (d * (kw - 1) + 1)) / s + 1;
        let (cg, mg) = (c / g, m / g);
        let mut y = vec![0.0; n * m * oh * ow];
        for i in 0..n {
            for o in 0..m {
                let group = o / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = f64::from(bias.get(o).copied().unwrap_or(0.0));
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * s + ky * d) as isize - p as isize;
                                    let ix = (ox * s + kx * d) as isize - p as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                        continue;
                                    }
                                    let xv = x[((i * c + group * cg + ci) * h + iy as usize) * w
                                        + ix as usize];
                                    let wv = weights[((o * cg + ci) * kh + ky) * kw + kx];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((i * m + o) * oh + oy) * ow + ox] = sum;
                    }
                }
            }
        }
        y
    }

    fn run_conv(text: &str, x: &Blob) -> (Box<dyn Layer>, Blob) {
        let mut layer = make(text).unwrap();
        let mut top = Blob::default();
        layer.setup(&[x], &mut [&mut top]).unwrap();
        // Non-trivial weights and biases.
        for (i, blob) in layer.params_mut().iter_mut().enumerate() {
            let values = uniform_blob(blob.shape(), -1.0, 1.0, 11 + i as u64);
            blob.data_mut().copy_from_slice(values.data());
        }
        layer.reshape(&[x], &mut [&mut top]).unwrap();
        layer.forward(&[x], &mut [&mut top]).unwrap();
        (layer, top)
    }

    #[test]
    fn forward_matches_the_definition_with_groups_stride_pad_and_dilation() {
        for (params, (c, h, w), (m, kh, kw), (s, p, d, g)) in [
            (
                "num_output: 4 kernel_size: 3",
                (3, 5, 6),
                (4, 3, 3),
                (1, 0, 1, 1),
            ),
            (
                "num_output: 4 kernel_size: 3 pad: 1 stride: 2",
                (2, 7, 7),
                (4, 3, 3),
                (2, 1, 1, 1),
            ),
            (
                "num_output: 6 kernel_size: 2 group: 3 dilation: 2",
                (3, 6, 5),
                (6, 2, 2),
                (1, 0, 2, 3),
            ),
            (
                "num_output: 2 kernel_h: 3 kernel_w: 1",
                (2, 4, 4),
                (2, 3, 1),
                (1, 0, 1, 1),
            ),
        ] {
            let x = uniform_blob(&[2, c, h, w], -1.0, 1.0, 5);
            let text =
                format!("name: \"c\" type: \"Convolution\" convolution_param {{ {params} }}");
            let (layer, top) = run_conv(&text, &x);
            let (weights, bias) = (layer.params()[0].data(), layer.params()[1].data());
            let expected = if params.contains("kernel_h") {
                // 3×1 kernel: compare against a 2-D definition with kh=3, kw=1.
                direct_2d(
                    x.data(),
                    (2, c, h, w),
                    weights,
                    bias,
                    (m, 3, 1),
                    (s, p, d, g),
                )
            } else {
                direct_2d(
                    x.data(),
                    (2, c, h, w),
                    weights,
                    bias,
                    (m, kh, kw),
                    (s, p, d, g),
                )
            };
            assert_eq!(top.count(), expected.len(), "{params}");
            for (a, b) in top.data().iter().zip(&expected) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "{params}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (params, shape) in [
            ("num_output: 3 kernel_size: 3 pad: 1 stride: 2", &[2, 2, 5, 5][..]),
            ("num_output: 4 kernel_size: 2 group: 2 dilation: 2 weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"gaussian\" std: 0.5 }", &[2, 4, 5, 4][..]),
            ("num_output: 2 kernel_size: 3 weight_filler { type: \"gaussian\" std: 0.5 }", &[1, 2, 5][..]),
            ("num_output: 2 kernel_size: 2 stride: 1 weight_filler { type: \"gaussian\" std: 0.5 }", &[1, 1, 3, 3, 3][..]),
        ] {
            for kind in ["Convolution", "Deconvolution"] {
                let text = format!("name: \"c\" type: \"{kind}\" convolution_param {{ {params} }}");
                let mut layer = make(&text).unwrap();
                let x = uniform_blob(shape, -1.0, 1.0, 3);
                GradientChecker::default()
                    .check(layer.as_mut(), &mut [x], 1, &[0])
                    .unwrap_or_else(|e| panic!("{kind} {params}: {e}"));
            }
        }
    }

    #[test]
    fn deconvolution_is_the_transpose_of_convolution() {
        // <conv(x), y> = <x, deconv(y)> with the same weights and no bias.
        let x = uniform_blob(&[2, 3, 5, 5], -1.0, 1.0, 1);
        let conv = "name: \"c\" type: \"Convolution\" convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 bias_term: false }";
        let (layer, y) = run_conv(conv, &x);
        assert_eq!(y.shape(), [2, 4, 3, 3]);
        let probe = uniform_blob(y.shape(), -1.0, 1.0, 2);
        let deconv = "name: \"d\" type: \"Deconvolution\" convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 bias_term: false }";
        let mut d = make(deconv).unwrap();
        let mut back = Blob::default();
        d.setup(&[&probe], &mut [&mut back]).unwrap();
        d.params_mut()[0]
            .data_mut()
            .copy_from_slice(layer.params()[0].data());
        d.reshape(&[&probe], &mut [&mut back]).unwrap();
        d.forward(&[&probe], &mut [&mut back]).unwrap();
        assert_eq!(back.shape(), x.shape());
        let dot = |a: &Blob, b: &Blob| -> f64 {
            a.data()
                .iter()
                .zip(b.data())
                .map(|(&u, &v)| f64::from(u) * f64::from(v))
                .sum()
        };
        let (lhs, rhs) = (dot(&y, &probe), dot(&x, &back));
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn bad_parameters_and_shapes_are_named() {
        let err = |params: &str, shape: &[usize]| {
            let text =
                format!("name: \"c\" type: \"Convolution\" convolution_param {{ {params} }}");
            let mut layer = match make(&text) {
                Ok(layer) => layer,
                Err(e) => return e,
            };
            let x = Blob::new(shape).unwrap();
            let mut top = Blob::default();
            layer
                .setup(&[&x], &mut [&mut top])
                .and_then(|()| layer.reshape(&[&x], &mut [&mut top]))
                .unwrap_err()
                .0
        };
        assert!(err("kernel_size: 3", &[1, 1, 4, 4]).contains("num_output: must be set"));
        assert!(err("num_output: 2", &[1, 1, 4, 4]).contains("convolution_param.kernel: missing"));
        assert!(err("num_output: 2 kernel_size: 5", &[1, 1, 4, 4]).contains("the kernel spans 5"));
        assert!(err("num_output: 2 kernel_size: 3 stride: 0", &[1, 1, 4, 4])
            .contains("must be at least 1"));
        assert!(err("num_output: 2 kernel_size: 1 group: 2", &[1, 3, 4, 4])
            .contains("does not divide the bottom's 3 channels"));
        assert!(err("num_output: 3 kernel_size: 1 group: 2", &[1, 4, 4, 4])
            .contains("does not divide num_output 3"));
        assert!(err(
            "num_output: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3",
            &[1, 1, 4, 4]
        )
        .contains("3 values for 2 spatial axes"));
        assert!(err("num_output: 2 kernel_h: 3", &[1, 1, 4, 4])
            .contains("give both kernel_h and kernel_w"));
        assert!(err("num_output: 2 kernel_size: 1", &[4, 3]).contains("no spatial axes"));
    }
}
