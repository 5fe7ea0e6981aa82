//! Parameter: a learnable blob offered as a top (`y = θ`).
//!
//! Parameters: `parameter_param { shape }` (an empty shape makes a scalar). The blob θ is param 0; it starts
//! at zero (Caffe has no filler here: its values come from trained weights or a solver). Forward copies θ to
//! the top; backward adds the top's diff to θ's diff.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::input::shape_from_proto;

/// The Parameter layer.
pub struct Parameter {
    shape: Vec<usize>,
    /// `[θ]` once set up.
    blobs: Vec<Blob>,
}

/// Makes a Parameter layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let shape = match ctx
        .param
        .parameter_param
        .as_ref()
        .and_then(|p| p.shape.as_ref())
    {
        Some(shape) => shape_from_proto(shape, "parameter_param.shape")?,
        None => Vec::new(),
    };
    Ok(Box::new(Parameter {
        shape,
        blobs: Vec::new(),
    }))
}

impl Layer for Parameter {
    fn type_name(&self) -> &'static str {
        "Parameter"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn setup(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        if self.blobs.is_empty() {
            self.blobs.push(Blob::new(&self.shape)?);
        }
        Ok(())
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let theta = self
            .blobs
            .first()
            .ok_or_else(|| LayerError::new("Parameter: reshape before setup"))?;
        Ok(top[0].reshape_like(theta)?)
    }

    fn forward(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].copy_data_from(&self.blobs[0]);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        _propagate_down: &[bool],
        _bottom: &mut [&mut Blob],
    ) -> LayerResult {
        for (d, &dy) in self.blobs[0].diff_mut().iter_mut().zip(top[0].diff()) {
            *d += dy;
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
    use crate::layers::test_support::{context, layer_from_text};
    use crate::testing::GradientChecker;

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    #[test]
    fn forward_copies_the_blob_and_backward_accumulates() {
        let mut l = layer("parameter_param { shape { dim: 2 dim: 2 } }");
        let mut top = Blob::default();
        l.setup(&[], &mut [&mut top]).unwrap();
        l.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        l.params_mut()[0].diff_mut().fill(1.0);
        l.reshape(&[], &mut [&mut top]).unwrap();
        l.forward(&[], &mut [&mut top]).unwrap();
        assert_eq!(top.shape(), [2, 2]);
        assert_eq!(top.data(), [1.0, 2.0, 3.0, 4.0]);
        top.diff_mut().copy_from_slice(&[0.5, -1.0, 0.0, 2.0]);
        l.backward(&[&top], &[], &mut []).unwrap();
        assert_eq!(l.params()[0].diff(), [1.5, 0.0, 1.0, 3.0]);
    }

    #[test]
    fn no_shape_is_a_scalar_and_negative_dims_are_refused() {
        let mut l = layer("name: \"p\"");
        let mut top = Blob::default();
        l.setup(&[], &mut [&mut top]).unwrap();
        l.reshape(&[], &mut [&mut top]).unwrap();
        assert_eq!((top.num_axes(), top.count()), (0, 1));
        let param = crema_proto::text::parse("parameter_param { shape { dim: -2 } }", "t").unwrap();
        let err = create(&mut context(&param)).err().unwrap();
        assert!(err.0.starts_with("parameter_param.shape: "), "{err}");
    }

    #[test]
    fn gradient() {
        for shape in ["dim: 3", "dim: 2 dim: 3 dim: 2"] {
            let mut l = layer(&format!("parameter_param {{ shape {{ {shape} }} }}"));
            GradientChecker::default()
                .check(l.as_mut(), &mut [], 1, &[])
                .unwrap();
        }
    }
}
