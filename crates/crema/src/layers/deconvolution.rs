//! Deconvolution (transposed convolution): the gradient of a Convolution with respect to its input, run as a
//! forward pass, so that it upsamples (FCN's learned ×2, ×8, ×32 upsampling, often with a `bilinear`
//! weight_filler and `lr_mult: 0`). Same `convolution_param` as Convolution; the top's size per spatial axis is
//! `stride·(in − 1) + dilation·(kernel − 1) + 1 − 2·pad`, and the weights are
//! `channels × num_output/group × kernel...`. See `convolution.rs`, which holds the shared implementation.

use crate::layer::{Layer, LayerContext, LayerResult};

/// Makes a Deconvolution layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    super::convolution::create_either(ctx, true)
}
