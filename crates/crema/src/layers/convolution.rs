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
//! How it runs: `math::convolve::Convolver`, made at reshape for the batch's shape, cuts the batch into chunks
//! of images and runs each as matrix products on its patch matrix (small maps side by side on all cores,
//! large ones a chunk at a time with the products split across cores). Deconvolution runs the same products
//! the other way round (its forward is a convolution's input gradient).

use crema_proto::caffe::ConvolutionParameter;

use crate::blob::Blob;
use crate::filler::filled_blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::math::conv::{ConvShape, Dims};
use crate::math::convolve::{Convolver, Direction, Gradients};
use crate::math::Rng;

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
    /// Set at reshape: the convolution of the batch (for Deconvolution, the convolution it is the transpose
    /// of) with its buffers.
    convolver: Option<Convolver>,
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
        convolver: None,
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
    fn direction(&self) -> Direction {
        if self.transposed {
            Direction::Transposed
        } else {
            Direction::Convolution
        }
    }

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
        let num = x.count_range(0, self.axis);
        let spatial = &x.shape()[self.axis + 1..];
        let (conv_in, conv_out) = self.conv_channels();
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
        let unchanged = self
            .convolver
            .as_ref()
            .is_some_and(|c| c.num() == num && *c.shape() == shape);
        if !unchanged {
            // The old buffers go before the new ones are allocated: never both at once.
            self.convolver = None;
            self.convolver = Some(Convolver::new(
                self.direction(),
                shape,
                conv_out,
                self.group,
                num,
                self.num_output,
            )?);
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let Some(convolver) = &mut self.convolver else {
            return Err(LayerError::new("forward before reshape"));
        };
        convolver.forward(
            self.blobs[0].data(),
            self.blobs.get(1).map(Blob::data),
            bottom[0].data(),
            top[0].data_mut(),
        );
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let Some(convolver) = &mut self.convolver else {
            return Err(LayerError::new("backward before reshape"));
        };
        let (weights, bias) = self.blobs.split_at_mut(1);
        let (weights, dweights) = weights[0].data_and_diff_mut();
        let (x, dx) = bottom[0].data_and_diff_mut();
        convolver.backward(
            weights,
            x,
            top[0].diff(),
            Gradients {
                weights: dweights,
                bias: bias.first_mut().map(Blob::diff_mut),
                input: propagate_down[0].then_some(dx),
            },
        );
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
