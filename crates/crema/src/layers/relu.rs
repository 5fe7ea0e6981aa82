//! ReLU: `y = max(0, x) + negative_slope · min(0, x)`.
//!
//! Parameters: `relu_param { negative_slope }` (default 0). Gradient: `dy` where `x > 0`, `negative_slope · dy`
//! elsewhere (Caffe's convention at 0).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The ReLU layer.
pub struct ReLU {
    negative_slope: f32,
}

/// Makes a ReLU layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let negative_slope = ctx
        .param
        .relu_param
        .as_ref()
        .map_or(0.0, |p| p.negative_slope());
    Ok(Box::new(ReLU { negative_slope }))
}

impl Layer for ReLU {
    fn type_name(&self) -> &'static str {
        "ReLU"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let slope = self.negative_slope;
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = if x > 0.0 { x } else { slope * x };
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
        let slope = self.negative_slope;
        let (x, dx) = bottom[0].data_and_diff_mut();
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(top[0].diff()) {
            *dx = if x > 0.0 { dy } else { slope * dy };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    /// Inputs kept away from the kink at 0, where the finite difference straddles two slopes.
    fn inputs(shape: &[usize]) -> Blob {
        let mut blob = uniform_blob(shape, -1.0, 1.0, 3);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    #[test]
    fn forward_clamps_or_leaks() {
        for (slope, expected) in [(0.0, [0.0, 0.0, 2.0]), (0.1, [-0.3, 0.0, 2.0])] {
            let param =
                crema_proto::text::parse(&format!("relu_param {{ negative_slope: {slope} }}"), "t")
                    .unwrap();
            let mut layer = create(&mut context(&param)).unwrap();
            let bottom = Blob::from_data(&[3], vec![-3.0, 0.0, 2.0]).unwrap();
            let mut top = Blob::default();
            layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
            layer.forward(&[&bottom], &mut [&mut top]).unwrap();
            assert_eq!(top.data(), expected);
        }
    }

    #[test]
    fn gradient() {
        for slope in ["0", "0.25"] {
            for shape in [&[10][..], &[2, 3, 4, 5]] {
                let param = crema_proto::text::parse(
                    &format!("relu_param {{ negative_slope: {slope} }}"),
                    "t",
                )
                .unwrap();
                let mut layer = create(&mut context(&param)).unwrap();
                GradientChecker::default()
                    .check(layer.as_mut(), &mut [inputs(shape)], 1, &[0])
                    .unwrap();
            }
        }
    }
}
