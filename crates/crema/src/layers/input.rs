//! Input: declares blobs the net fills from outside (`y = whatever the caller puts there`).
//!
//! Parameters: `input_param { shape }`, one shape for every top, or one per top, or none (then the tops are
//! empty, shape [0], until the caller gives them data). The tops are shaped once, in setup; reshape and forward do nothing, so a
//! caller may reshape an input blob between passes. No gradient.

use crema_proto::BlobShape;

use crate::blob::{shape_count, Blob};
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The most axes a blob may have (Caffe's kMaxBlobAxes).
const MAX_AXES: usize = 32;

/// The dimensions of a `BlobShape` from the parameters, checked: none negative, at most 32 axes, at most
/// [`crate::blob::MAX_BLOB_COUNT`] elements. `field` names the shape in errors (`input_param.shape`).
pub(crate) fn shape_from_proto(shape: &BlobShape, field: &str) -> LayerResult<Vec<usize>> {
    if shape.dim.len() > MAX_AXES {
        return Err(LayerError::new(format!(
            "{field}: {} axes, more than the {MAX_AXES} a blob may have",
            shape.dim.len()
        )));
    }
    let dims = shape
        .dim
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            LayerError::new(format!(
                "{field}: dimensions must not be negative, got {:?}",
                shape.dim
            ))
        })?;
    shape_count(&dims).map_err(|e| LayerError::new(format!("{field}: {e}")))?;
    Ok(dims)
}

/// The Input layer.
pub struct Input {
    shapes: Vec<Vec<usize>>,
}

/// Makes an Input layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let shapes = match &ctx.param.input_param {
        Some(p) => p
            .shape
            .iter()
            .enumerate()
            .map(|(i, s)| shape_from_proto(s, &format!("input_param.shape[{i}]")))
            .collect::<LayerResult<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(Box::new(Input { shapes }))
}

impl Layer for Input {
    fn type_name(&self) -> &'static str {
        "Input"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn setup(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let n = self.shapes.len();
        if n > 1 && n != top.len() {
            return Err(LayerError::new(format!(
                "input_param.shape: give one shape, one per top or none; got {n} shapes for {} tops",
                top.len()
            )));
        }
        for (i, t) in top.iter_mut().enumerate() {
            // Without a shape the top is empty (shape [0]) until it is given data (`crema forward --input`), as
            // pycaffe users reshape such inputs themselves.
            let shape = match n {
                0 => &[0][..],
                1 => &self.shapes[0],
                _ => &self.shapes[i],
            };
            t.reshape(shape)?;
        }
        Ok(())
    }

    fn reshape(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    #[test]
    fn one_shape_for_all_tops_or_one_each() {
        let mut l = layer("input_param { shape { dim: 2 dim: 3 } }").unwrap();
        let (mut a, mut b) = (Blob::default(), Blob::default());
        l.setup(&[], &mut [&mut a, &mut b]).unwrap();
        assert_eq!((a.shape(), b.shape()), (&[2, 3][..], &[2, 3][..]));

        let mut l =
            layer("input_param { shape { dim: 4 } shape { dim: 1 dim: 0 dim: 5 } }").unwrap();
        l.setup(&[], &mut [&mut a, &mut b]).unwrap();
        assert_eq!((a.shape(), b.shape()), (&[4][..], &[1, 0, 5][..]));
    }

    #[test]
    fn reshape_and_forward_leave_the_tops_alone() {
        let mut l = layer("input_param { shape { dim: 2 } }").unwrap();
        let mut a = Blob::default();
        l.setup(&[], &mut [&mut a]).unwrap();
        a.reshape(&[5, 1]).unwrap();
        a.data_mut()[4] = 7.0;
        l.reshape(&[], &mut [&mut a]).unwrap();
        l.forward(&[], &mut [&mut a]).unwrap();
        assert_eq!(a.shape(), [5, 1]);
        assert_eq!(a.data()[4], 7.0);

        // No shape at all: the top is empty until given data (a shape [] would claim one value).
        let mut l = layer("name: \"x\"").unwrap();
        l.setup(&[], &mut [&mut a]).unwrap();
        assert_eq!((a.shape(), a.count()), (&[0][..], 0));
    }

    #[test]
    fn errors_name_the_field() {
        let err = layer("input_param { shape { dim: 2 dim: -1 } }")
            .err()
            .unwrap();
        assert!(err.0.starts_with("input_param.shape[0]: "), "{err}");
        let mut l = layer("input_param { shape { dim: 2 } shape { dim: 3 } }").unwrap();
        let (mut a, mut b, mut c) = (Blob::default(), Blob::default(), Blob::default());
        let err = l.setup(&[], &mut [&mut a, &mut b, &mut c]).unwrap_err();
        assert!(err.0.starts_with("input_param.shape: "), "{err}");
    }
}
