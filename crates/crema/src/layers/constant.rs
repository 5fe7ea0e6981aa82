//! Constant (crema's own layer): one top blob loaded once, when the net is built, and never read again.
//!
//! Parameters: `constant_param { source shape }`. `source` is a `.binaryproto` or `.npy` file (by extension),
//! found as every path in a prototxt (working directory, then the prototxt's folder). When `shape` is given the
//! file's blob must have exactly that shape; without it the top takes the file's shape. Values must be finite.
//!
//! The use: an InfogainLoss H (or any other fixed input) as a bottom, without a data layer that Caffe would
//! advance every iteration. Forward leaves the top as loaded; no gradient flows into it. Caffe's own way to
//! the same end also works in crema: a `Parameter` layer with `param { lr_mult: 0 decay_mult: 0 }` whose
//! blob comes from `--weights`.

use crate::blob::Blob;
use crate::io;
use crate::layer::{required_text, Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::input::shape_from_proto;

/// The Constant layer.
pub struct Constant {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Makes a Constant layer: reads and checks its file.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.constant_param.clone().unwrap_or_default();
    let source = required_text(
        param.source.as_deref(),
        "constant_param.source",
        "the .binaryproto or .npy file to load",
    )?;
    let path = ctx.resolve(source);
    let array = io::read_array(&path)
        .map_err(|e| LayerError::new(format!("constant_param.source: {e}")))?;
    let shape = array.shape().to_vec();
    if let Some(declared) = &param.shape {
        let declared = shape_from_proto(declared, "constant_param.shape")?;
        if declared != shape {
            return Err(LayerError::new(format!(
                "constant_param.shape: {declared:?} declared, but {} holds shape {shape:?}",
                path.display()
            )));
        }
    }
    let values = array.to_f32_vec();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(LayerError::new(format!(
            "constant_param.source: {} holds {} at index {at}",
            path.display(),
            values[at]
        )));
    }
    Ok(Box::new(Constant { shape, values }))
}

impl Layer for Constant {
    fn type_name(&self) -> &'static str {
        "Constant"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].reshape(&self.shape)?;
        top[0].data_mut().copy_from_slice(&self.values);
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Array;
    use crate::layers::test_support::context;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("crema-constant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn make(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    #[test]
    fn loads_npy_and_binaryproto_with_their_shapes() {
        let values = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        for (name, shape) in [("c.npy", vec![2, 3]), ("c.binaryproto", vec![1, 1, 2, 3])] {
            let path = scratch(name);
            io::write_array(
                &path,
                &Array::from_f32(shape.clone(), values.clone()).unwrap(),
            )
            .unwrap();
            let mut layer = make(&format!("constant_param {{ source: {:?} }}", path)).unwrap();
            let mut top = Blob::default();
            layer.setup(&[], &mut [&mut top]).unwrap();
            layer.reshape(&[], &mut [&mut top]).unwrap();
            layer.forward(&[], &mut [&mut top]).unwrap();
            assert_eq!(top.shape(), shape.as_slice());
            assert_eq!(top.data(), values.as_slice());
        }
    }

    #[test]
    fn declared_shape_is_checked() {
        let path = scratch("s.npy");
        io::write_array(&path, &Array::from_f32(vec![2, 2], vec![0.0; 4]).unwrap()).unwrap();
        let ok = format!("constant_param {{ source: {path:?} shape {{ dim: 2 dim: 2 }} }}");
        assert!(make(&ok).is_ok());
        let bad = format!("constant_param {{ source: {path:?} shape {{ dim: 1 dim: 4 }} }}");
        let err = make(&bad).err().unwrap().0;
        assert!(
            err.starts_with("constant_param.shape: [1, 4] declared, but ")
                && err.ends_with("[2, 2]"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_missing_source_and_non_finite_values_are_errors() {
        let err = make("name: \"c\"").err().unwrap().0;
        assert!(err.starts_with("constant_param.source: missing"), "{err}");
        let err = make("constant_param { source: \"/nonexistent/H.npy\" }")
            .err()
            .unwrap()
            .0;
        assert!(err.contains("/nonexistent/H.npy"), "{err}");
        let path = scratch("nan.npy");
        io::write_array(
            &path,
            &Array::from_f32(vec![2], vec![1.0, f32::NAN]).unwrap(),
        )
        .unwrap();
        let err = make(&format!("constant_param {{ source: {path:?} }}"))
            .err()
            .unwrap()
            .0;
        assert!(err.ends_with("holds NaN at index 1"), "{err}");
    }
}
