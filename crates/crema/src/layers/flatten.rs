//! Flatten: `y = x` with axes `axis..=end_axis` merged into one.
//!
//! Parameters: `flatten_param { axis (1) end_axis (-1) }`, either counting from the end. A bottom of shape
//! `2 3 4 5` gives `2 60` by default; with `axis: 1 end_axis: 2`, `2 12 5`. As in Caffe, `end_axis` may be
//! `axis - 1`, which inserts an axis of 1. The values are copied (crema never shares storage between blobs);
//! backward copies the top's diff to the bottom's.

use crate::blob::Blob;
use crate::layer::{Arity, BottomItem, Layer, LayerContext, LayerError, LayerResult};

/// The Flatten layer.
pub struct Flatten {
    axis: i32,
    end_axis: i32,
}

/// Makes a Flatten layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.flatten_param.unwrap_or_default();
    Ok(Box::new(Flatten {
        axis: p.axis(),
        end_axis: p.end_axis(),
    }))
}

impl Layer for Flatten {
    fn type_name(&self) -> &'static str {
        "Flatten"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_item_source(&self, _top: usize, index: usize) -> Option<BottomItem> {
        Some(BottomItem { bottom: 0, index })
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let start = x
            .canonical_axis(self.axis)
            .map_err(|e| LayerError::new(format!("flatten_param.axis: {e}")))?;
        let end = x
            .canonical_axis(self.end_axis)
            .map_err(|e| LayerError::new(format!("flatten_param.end_axis: {e}")))?;
        if end + 1 < start {
            return Err(LayerError::new(format!(
                "flatten_param.end_axis: {} (axis {end}) comes before axis {} (axis {start})",
                self.end_axis, self.axis
            )));
        }
        let mut shape = smallvec::SmallVec::<[usize; 8]>::from_slice(&x.shape()[..start]);
        shape.push(x.count_range(start, end + 1));
        shape.extend_from_slice(&x.shape()[end + 1..]);
        Ok(top[0].reshape(&shape)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0].copy_data_from(bottom[0]);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            bottom[0].diff_mut().copy_from_slice(top[0].diff());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn shaped(text: &str, shape: &[usize]) -> LayerResult<Vec<usize>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = Blob::new(shape).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top])?;
        Ok(top.shape().to_vec())
    }

    #[test]
    fn shapes() {
        assert_eq!(shaped("name: \"f\"", &[2, 3, 4, 5]).unwrap(), [2, 60]);
        assert_eq!(
            shaped("flatten_param { axis: 1 end_axis: 2 }", &[2, 3, 4, 5]).unwrap(),
            [2, 12, 5]
        );
        assert_eq!(
            shaped("flatten_param { axis: 0 }", &[2, 3, 4]).unwrap(),
            [24]
        );
        assert_eq!(
            shaped("flatten_param { axis: -2 end_axis: -1 }", &[2, 3, 4]).unwrap(),
            [2, 12]
        );
        assert_eq!(
            shaped("flatten_param { axis: 1 end_axis: 0 }", &[2, 3]).unwrap(),
            [2, 1, 3]
        );
    }

    #[test]
    fn errors_name_the_field() {
        // As in Caffe, the default axis 1 does not exist in a 1-D blob.
        let err = shaped("name: \"f\"", &[7]).unwrap_err();
        assert!(err.0.starts_with("flatten_param.axis: "), "{err}");
        let err = shaped("flatten_param { axis: 3 }", &[2, 3]).unwrap_err();
        assert!(err.0.starts_with("flatten_param.axis: "), "{err}");
        let err = shaped("flatten_param { end_axis: -4 }", &[2, 3]).unwrap_err();
        assert!(err.0.starts_with("flatten_param.end_axis: "), "{err}");
        let err = shaped("flatten_param { axis: 2 end_axis: 0 }", &[2, 3, 4]).unwrap_err();
        assert!(err.0.starts_with("flatten_param.end_axis: "), "{err}");
    }

    #[test]
    fn forward_copies_values() {
        let param = crema_proto::text::parse("name: \"f\"", "t").unwrap();
        let mut layer = create(&mut context(&param)).unwrap();
        let bottom = Blob::from_data(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        assert_eq!(top.shape(), [2, 2]);
        assert_eq!(top.data(), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn gradient() {
        for text in ["name: \"f\"", "flatten_param { axis: 1 end_axis: 2 }"] {
            for shape in [&[2, 3, 4][..], &[2, 1, 3, 2]] {
                let param = crema_proto::text::parse(text, "t").unwrap();
                let mut layer = create(&mut context(&param)).unwrap();
                GradientChecker::default()
                    .check(
                        layer.as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, 2)],
                        1,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
