//! Split: one bottom copied to several tops, `yᵢ = x`.
//!
//! No parameters. The net inserts Split layers where one blob feeds several layers; a prototxt may also use
//! it. Gradient: `dx = Σᵢ dyᵢ`.

use crate::blob::Blob;
use crate::layer::{Arity, BottomItem, Layer, LayerContext, LayerResult};

/// The Split layer.
pub struct Split;

/// Makes a Split layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Split))
}

impl Layer for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn top_item_source(&self, _top: usize, index: usize) -> Option<BottomItem> {
        Some(BottomItem { bottom: 0, index })
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        for t in top.iter_mut() {
            t.reshape_like(bottom[0])?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        for t in top.iter_mut() {
            t.copy_data_from(bottom[0]);
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
        let dx = bottom[0].diff_mut();
        dx.copy_from_slice(top[0].diff());
        for t in &top[1..] {
            for (d, &g) in dx.iter_mut().zip(t.diff()) {
                *d += g;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer() -> Box<dyn Layer> {
        let param = crema_proto::text::parse("name: \"s\"", "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    #[test]
    fn forward_copies_and_backward_sums() {
        let mut l = layer();
        let mut x = Blob::from_data(&[3], vec![1.0, -2.0, 3.0]).unwrap();
        let (mut a, mut b, mut c) = (Blob::default(), Blob::default(), Blob::default());
        l.reshape(&[&x], &mut [&mut a, &mut b, &mut c]).unwrap();
        l.forward(&[&x], &mut [&mut a, &mut b, &mut c]).unwrap();
        for t in [&a, &b, &c] {
            assert_eq!((t.shape(), t.data()), (&[3][..], &[1.0, -2.0, 3.0][..]));
        }
        a.diff_mut().copy_from_slice(&[1.0, 2.0, 3.0]);
        b.diff_mut().copy_from_slice(&[0.5, 0.5, 0.5]);
        c.diff_mut().copy_from_slice(&[-1.0, 0.0, 1.0]);
        x.diff_mut().fill(100.0);
        l.backward(&[&a, &b, &c], &[true], &mut [&mut x]).unwrap();
        assert_eq!(x.diff(), [0.5, 2.5, 4.5]);
    }

    #[test]
    fn gradient() {
        for tops in [1, 2, 3] {
            for shape in [&[4][..], &[2, 3, 2]] {
                GradientChecker::default()
                    .check(
                        layer().as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, 8)],
                        tops,
                        &[0],
                    )
                    .unwrap();
            }
        }
    }
}
