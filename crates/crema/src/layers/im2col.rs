//! Im2col: each image's patches laid out as Caffe's convolution reads them, `y[n][c·K + k][o] = x[n][c][o·s −
//! p + k·d]` (0 in the padding), for any number of spatial axes.
//!
//! Parameters: those of Convolution that place the patches, `convolution_param { kernel_size | kernel_h
//! kernel_w, stride | stride_h stride_w (1), pad | pad_h pad_w (0), dilation (1), axis (1) }`, read as
//! Convolution reads them (one value for every spatial axis or one per axis; `_h`/`_w` for two spatial axes
//! only); `num_output`, `group`, the fillers and `force_nd_im2col` change nothing here.
//!
//! Shapes, as in Caffe's Im2colLayer: the axes before `axis` are the images (`num` is their product), `axis` is
//! the channel axis, the axes after it are the spatial axes (at least one). The top has the bottom's shape with
//! the channel axis multiplied by the kernel size (`C·kh·kw` for 2-D: channel-major, then kernel row, then
//! kernel column) and each spatial axis replaced by its output size, `(in + 2·pad − extent) / stride + 1`
//! rounded down (`extent = dilation·(kernel − 1) + 1`). Where Caffe would compute an output size of 0 or less
//! (a kernel wider than the padded input), crema refuses the shape, as its Convolution does.
//!
//! Backward sums each patch value's gradient back into the input value it was read from (col2im). Both
//! directions run image by image through `math::conv`'s patch kernels, which fill the rows in parallel.

use crema_proto::caffe::ConvolutionParameter;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::convolution::Geometry;
use crate::math::conv::{self, ConvShape, Dims};
use crate::math::Threads;

/// The Im2col layer.
pub struct Im2col {
    param: ConvolutionParameter,
    /// Set at setup: the channel axis, the number of spatial axes, and the geometry per spatial axis.
    axis: usize,
    spatial_axes: usize,
    kernel: Dims,
    stride: Dims,
    pad: Dims,
    dilation: Dims,
    /// Set at reshape: the images (the product of the axes before `axis`) and the geometry of one image.
    num: usize,
    shape: Option<ConvShape>,
}

/// Makes an Im2col layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Im2col {
        param: ctx.param.convolution_param.clone().unwrap_or_default(),
        axis: 0,
        spatial_axes: 0,
        kernel: Dims::new(),
        stride: Dims::new(),
        pad: Dims::new(),
        dilation: Dims::new(),
        num: 0,
        shape: None,
    }))
}

impl Layer for Im2col {
    fn type_name(&self) -> &'static str {
        "Im2col"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        let geometry = Geometry::read(&self.param, bottom[0])?;
        (self.axis, self.spatial_axes) = (geometry.axis, geometry.spatial_axes);
        (self.kernel, self.stride, self.pad, self.dilation) = (
            geometry.kernel,
            geometry.stride,
            geometry.pad,
            geometry.dilation,
        );
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        if x.num_axes() != self.axis + 1 + self.spatial_axes {
            return Err(LayerError::new(format!(
                "the bottom changed to {} from {} spatial axes after the channel axis {} at setup",
                x.shape_string(),
                self.spatial_axes,
                self.axis
            )));
        }
        let channels = x.shape()[self.axis];
        let spatial = &x.shape()[self.axis + 1..];
        let shape = ConvShape::new(
            channels,
            spatial,
            &self.kernel,
            &self.stride,
            &self.pad,
            &self.dilation,
        )
        .map_err(|e| LayerError::new(format!("Im2col on bottom {}: {e}", x.shape_string())))?;
        let mut top_shape = x.shape()[..self.axis].to_vec();
        top_shape.push(shape.patch_len());
        top_shape.extend_from_slice(&shape.output);
        top[0].reshape(&top_shape)?;
        self.num = x.count_range(0, self.axis);
        self.shape = Some(shape);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let shape = self.shape.as_ref().expect("reshape runs before forward");
        let (image_len, top_len) = (shape.image_len(), shape.patch_len() * shape.positions());
        if image_len == 0 || top_len == 0 {
            top[0].data_mut().fill(0.0);
            return Ok(());
        }
        let x = bottom[0].data();
        for (image, cols) in x
            .chunks_exact(image_len)
            .zip(top[0].data_mut().chunks_exact_mut(top_len))
            .take(self.num)
        {
            conv::im2col(Threads::All, shape, image, 1, cols);
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
        let shape = self.shape.as_ref().expect("reshape runs before backward");
        let (image_len, top_len) = (shape.image_len(), shape.patch_len() * shape.positions());
        if image_len == 0 || top_len == 0 {
            bottom[0].diff_mut().fill(0.0);
            return Ok(());
        }
        let dy = top[0].diff();
        for (cols, image) in dy
            .chunks_exact(top_len)
            .zip(bottom[0].diff_mut().chunks_exact_mut(image_len))
            .take(self.num)
        {
            conv::col2im(Threads::All, shape, cols, 1, image);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn make(params: &str) -> Box<dyn Layer> {
        layer_from_text(
            create,
            &format!("name: \"i\" type: \"Im2col\" convolution_param {{ {params} }}"),
        )
    }

    fn run(params: &str, x: &Blob) -> Blob {
        let mut layer = make(params);
        let mut top = Blob::default();
        layer.setup(&[x], &mut [&mut top]).unwrap();
        layer.reshape(&[x], &mut [&mut top]).unwrap();
        top.data_mut().fill(f32::NAN);
        layer.forward(&[x], &mut [&mut top]).unwrap();
        top
    }

    /// Values `first, first + 1, ...` in a blob of `shape`.
    fn counting(shape: &[usize], first: f32) -> Blob {
        let count: usize = shape.iter().product();
        Blob::from_data(shape, (0..count).map(|i| first + i as f32).collect()).unwrap()
    }

    #[test]
    fn patches_are_channel_major_rows_over_the_output_positions() {
        // 3×3 image 1..9, kernel 2: row (ky, kx) holds x[oy + ky][ox + kx] for the 2×2 positions.
        let x = counting(&[1, 1, 3, 3], 1.0);
        let top = run("kernel_size: 2", &x);
        assert_eq!(top.shape(), [1, 4, 2, 2]);
        #[rustfmt::skip]
        assert_eq!(top.data(), [
            1.0, 2.0, 4.0, 5.0,
            2.0, 3.0, 5.0, 6.0,
            4.0, 5.0, 7.0, 8.0,
            5.0, 6.0, 8.0, 9.0,
        ]);
    }

    #[test]
    fn padding_reads_zeros_and_images_and_channels_keep_their_order() {
        // Two images of two 3×3 channels: image n, channel c holds 1..9 + 10·c + 100·n. Kernel 2, pad 1,
        // stride 2: output (3 + 2 − 2) / 2 + 1 = 2 per axis; position (oy, ox) reads row 2·oy + ky − 1 and
        // column 2·ox + kx − 1.
        let mut x = Blob::new(&[2, 2, 3, 3]).unwrap();
        for (i, v) in x.data_mut().iter_mut().enumerate() {
            let (n, c, at) = (i / 18, (i / 9) % 2, i % 9);
            *v = (at + 1 + 10 * c + 100 * n) as f32;
        }
        let top = run("kernel_size: 2 pad: 1 stride: 2", &x);
        assert_eq!(top.shape(), [2, 8, 2, 2]);
        // For channel 0 of image 0, by hand: (ky, kx) = (0, 0) reads (−1, −1), (−1, 1), (1, −1), (1, 1).
        let channel0: [[f32; 4]; 4] = [
            [0.0, 0.0, 0.0, 5.0],
            [0.0, 0.0, 4.0, 6.0],
            [0.0, 2.0, 0.0, 8.0],
            [1.0, 3.0, 7.0, 9.0],
        ];
        for n in 0..2 {
            for c in 0..2 {
                for (k, row) in channel0.iter().enumerate() {
                    let at = ((n * 8) + c * 4 + k) * 4;
                    let expected: Vec<f32> = row
                        .iter()
                        .map(|&v| {
                            if v == 0.0 {
                                0.0
                            } else {
                                v + (10 * c + 100 * n) as f32
                            }
                        })
                        .collect();
                    assert_eq!(
                        &top.data()[at..at + 4],
                        expected,
                        "image {n} channel {c} row {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn dilation_and_rectangular_kernels() {
        // 4×4 image 0..15, kernel 2 with dilation 2 (extent 3): 2×2 positions; row (ky, kx) starts at
        // x[2·ky][2·kx].
        let x = counting(&[1, 1, 4, 4], 0.0);
        let top = run("kernel_size: 2 dilation: 2", &x);
        assert_eq!(top.shape(), [1, 4, 2, 2]);
        #[rustfmt::skip]
        assert_eq!(top.data(), [
            0.0, 1.0, 4.0, 5.0,
            2.0, 3.0, 6.0, 7.0,
            8.0, 9.0, 12.0, 13.0,
            10.0, 11.0, 14.0, 15.0,
        ]);
        // 3×4 image 0..11, kernel 1×3 (kernel_h / kernel_w), stride_w 1: 3×2 positions; rows kx = 0, 1, 2.
        let x = counting(&[1, 1, 3, 4], 0.0);
        let top = run("kernel_h: 1 kernel_w: 3", &x);
        assert_eq!(top.shape(), [1, 3, 3, 2]);
        #[rustfmt::skip]
        assert_eq!(top.data(), [
            0.0, 1.0, 4.0, 5.0, 8.0, 9.0,
            1.0, 2.0, 5.0, 6.0, 9.0, 10.0,
            2.0, 3.0, 6.0, 7.0, 10.0, 11.0,
        ]);
    }

    #[test]
    fn one_spatial_axis_and_leading_image_axes() {
        // 1-D: 2 images × 2 channels × 5, kernel 3 stride 2: outputs 2; row (c, k) = x[c][2·o + k].
        let x = counting(&[2, 2, 5], 0.0);
        let top = run("kernel_size: 3 stride: 2", &x);
        assert_eq!(top.shape(), [2, 6, 2]);
        #[rustfmt::skip]
        assert_eq!(&top.data()[..12], [
            0.0, 2.0, 1.0, 3.0, 2.0, 4.0,
            5.0, 7.0, 6.0, 8.0, 7.0, 9.0,
        ]);
        assert_eq!(top.data()[12], 10.0);
        // axis: 2: the first two axes are images (2·3 of them), each 1 channel of 2×2, kernel 2: one position.
        let x = counting(&[2, 3, 1, 2, 2], 0.0);
        let top = run("kernel_size: 2 axis: 2", &x);
        assert_eq!(top.shape(), [2, 3, 4, 1, 1]);
        assert_eq!(top.data(), x.data());
        // Three spatial axes, one value per axis for the kernel.
        let x = counting(&[1, 1, 2, 3, 4], 0.0);
        let top = run("kernel_size: 2 kernel_size: 3 kernel_size: 4", &x);
        assert_eq!(top.shape(), [1, 24, 1, 1, 1]);
        assert_eq!(top.data(), x.data());
    }

    #[test]
    fn the_rows_are_what_convolution_weights_multiply() {
        // Caffe's column layout is the one its convolution weights (M × C × kh × kw) are laid out in: a
        // Convolution's output is its weights, as an M × (C·kh·kw) matrix, times each image's Im2col top.
        let geometry = "kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 dilation: 1";
        let x = uniform_blob(&[2, 3, 6, 5], -1.0, 1.0, 11);
        let cols = run(geometry, &x);
        let mut conv = layer_from_text(
            crate::layers::convolution::create,
            &format!(
                "name: \"c\" type: \"Convolution\" convolution_param {{ num_output: 4 bias_term: false {geometry} \
                 weight_filler {{ type: \"gaussian\" }} }}"
            ),
        );
        let mut y = Blob::default();
        conv.setup(&[&x], &mut [&mut y]).unwrap();
        conv.reshape(&[&x], &mut [&mut y]).unwrap();
        conv.forward(&[&x], &mut [&mut y]).unwrap();
        let (k, positions) = (cols.shape()[1], cols.count_from(2));
        assert_eq!(&y.shape()[2..], &cols.shape()[2..]);
        let w = conv.params()[0].data();
        for n in 0..2 {
            for m in 0..4 {
                for o in 0..positions {
                    let expected: f32 = (0..k)
                        .map(|r| w[m * k + r] * cols.data()[(n * k + r) * positions + o])
                        .sum();
                    let got = y.data()[(n * 4 + m) * positions + o];
                    assert!(
                        (got - expected).abs() < 1e-5,
                        "image {n} output {m} position {o}: {got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (params, shape) in [
            ("kernel_size: 3 stride: 2 pad: 1", &[2, 2, 5, 6][..]),
            (
                "kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0",
                &[1, 3, 4, 5],
            ),
            ("kernel_size: 2 dilation: 2 pad: 1", &[2, 1, 5, 5]),
            ("kernel_size: 3 stride: 2 pad: 2", &[2, 2, 7]),
            ("kernel_size: 2 stride: 1 pad: 1", &[1, 1, 3, 3, 3]),
        ] {
            let mut layer = make(params);
            let x = uniform_blob(shape, -1.0, 1.0, 7);
            GradientChecker::default()
                .check(layer.as_mut(), &mut [x], 1, &[0])
                .unwrap_or_else(|e| panic!("{params}: {e}"));
        }
    }

    #[test]
    fn a_net_makes_it_by_its_type_name() {
        let net = crate::testing::net_from_text(
            r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 6 } } }
               layer { name: "cols" type: "Im2col" bottom: "x" top: "y"
                       convolution_param { kernel_size: 3 stride: 2 pad: 1 } }"#,
            crema_proto::caffe::Phase::Train,
            &[],
        )
        .unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [2, 27, 4, 3]);
    }

    fn error(params: &str, shape: &[usize]) -> String {
        let mut layer = make(params);
        let x = Blob::new(shape).unwrap();
        let mut top = Blob::default();
        let result = layer
            .setup(&[&x], &mut [&mut top])
            .and_then(|()| layer.reshape(&[&x], &mut [&mut top]));
        match result {
            Ok(()) => panic!("{params} on {shape:?}: accepted"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn bad_parameters_and_shapes_are_named() {
        let x = [1, 2, 5, 5];
        let err = error("stride: 2", &x);
        assert!(err.contains("convolution_param.kernel: missing"), "{err}");
        let err = error("kernel_size: 0", &x);
        assert!(
            err.contains("spatial axis 0 has kernel 0") && err.contains("at least 1"),
            "{err}"
        );
        let err = error("kernel_size: 2 stride: 0", &x);
        assert!(err.contains("stride 0"), "{err}");
        let err = error("kernel_h: 2", &x);
        assert!(err.contains("give both kernel_h and kernel_w"), "{err}");
        let err = error("kernel_size: 2 kernel_h: 2 kernel_w: 2", &x);
        assert!(err.contains("not both"), "{err}");
        let err = error("kernel_h: 2 kernel_w: 2", &[1, 2, 5, 5, 5]);
        assert!(
            err.contains("for 2 spatial axes; this bottom has 3"),
            "{err}"
        );
        let err = error("kernel_size: 2 kernel_size: 2 kernel_size: 2", &x);
        assert!(err.contains("3 values for 2 spatial axes"), "{err}");
        let err = error("kernel_size: 7", &x);
        assert!(
            err.contains("Im2col on bottom") && err.contains("the kernel spans 7"),
            "{err}"
        );
        let err = error("kernel_size: 2", &[4, 3]);
        assert!(err.contains("no spatial axes"), "{err}");
        let err = error("kernel_size: 2 axis: 4", &x);
        assert!(err.contains("convolution_param.axis"), "{err}");
    }
}
