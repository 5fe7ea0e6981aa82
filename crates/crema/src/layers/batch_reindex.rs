//! BatchReindex: items of the first bottom picked by index, `y[i] = x[idx[i]]` along the first axis.
//!
//! Bottoms: the data `x` (a first axis of `N` items) and the indices `idx`, one axis of any length `M`; every
//! index must be a whole number in `[0, N)`, else an error naming its position (and, through the net, where
//! the data layer read it). An index may repeat or be left out. The top has shape `M × x`'s other axes. No
//! parameters.
//!
//! Gradient: `dx[n] = Σ_{i : idx[i] = n} dy[i]` (0 for items never picked). None to the indices: the layer
//! refuses `force_backward` for them, and backward fails if a net asks for one (Caffe aborts there too).

use smallvec::SmallVec;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::loss::whole_class;

/// The BatchReindex layer.
pub struct BatchReindex {
    /// The indices of the last forward.
    indices: Vec<usize>,
    /// Values per item.
    inner: usize,
}

/// Makes a BatchReindex layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(BatchReindex {
        indices: Vec::new(),
        inner: 0,
    }))
}

impl Layer for BatchReindex {
    fn type_name(&self) -> &'static str {
        "BatchReindex"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index != 1
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (x, idx) = (bottom[0], bottom[1]);
        if idx.num_axes() != 1 {
            return Err(LayerError::new(format!(
                "the indices (bottom 1) must have one axis, got shape {}",
                idx.shape_string()
            )));
        }
        if x.num_axes() == 0 {
            return Err(LayerError::new(
                "the data (bottom 0) has no axes; it needs a first axis of items to pick from",
            ));
        }
        let mut shape: SmallVec<[usize; 6]> = SmallVec::from_slice(x.shape());
        shape[0] = idx.count();
        top[0].reshape(&shape)?;
        self.inner = x.count_from(1);
        crate::memory::resize(&mut self.indices, idx.count(), 0, || {
            "the batch indices".into()
        })?;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let items = bottom[0].shape()[0];
        for (position, (index, &value)) in self.indices.iter_mut().zip(bottom[1].data()).enumerate()
        {
            *index = whole_class(value, items).ok_or_else(|| {
                LayerError::at_item(
                    format!(
                        "index {value} at position {position} is not a whole number in [0, {items}) (the items \
                         of bottom 0)"
                    ),
                    1,
                    position,
                )
            })?;
        }
        let inner = self.inner;
        if inner == 0 {
            return Ok(());
        }
        let x = bottom[0].data();
        for (out, &n) in top[0].data_mut().chunks_exact_mut(inner).zip(&self.indices) {
            out.copy_from_slice(&x[n * inner..(n + 1) * inner]);
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[1] {
            return Err(LayerError::new(
                "BatchReindex cannot pass a gradient to its indices (bottom 1); set propagate_down: false on it",
            ));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let inner = self.inner;
        let dx = bottom[0].diff_mut();
        dx.fill(0.0);
        if inner == 0 {
            return Ok(());
        }
        for (g, &n) in top[0].diff().chunks_exact(inner).zip(&self.indices) {
            for (d, &g) in dx[n * inner..(n + 1) * inner].iter_mut().zip(g) {
                *d += g;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::BottomItem;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer() -> Box<dyn Layer> {
        create(&mut context(&Default::default())).unwrap()
    }

    fn forward(l: &mut dyn Layer, x: &Blob, idx: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        l.reshape(&[x, idx], &mut [&mut top])?;
        l.forward(&[x, idx], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let mut x = Blob::from_data(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut idx = Blob::from_data(&[4], vec![2.0, 0.0, 2.0, 2.0]).unwrap();
        let mut l = layer();
        let mut top = forward(l.as_mut(), &x, &idx).unwrap();
        assert_eq!(top.shape(), [4, 2]);
        assert_eq!(top.data(), [5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 5.0, 6.0]);
        top.diff_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        x.diff_mut().fill(f32::NAN);
        l.backward(&[&top], &[true, false], &mut [&mut x, &mut idx])
            .unwrap();
        assert_eq!(x.diff(), [3.0, 4.0, 0.0, 0.0, 13.0, 16.0]);
        // No indices: an empty top.
        let top = forward(l.as_mut(), &x, &Blob::new(&[0]).unwrap()).unwrap();
        assert_eq!(top.shape(), [0, 2]);
    }

    #[test]
    fn errors_name_the_bottom_and_the_position() {
        let x = Blob::new(&[3, 2]).unwrap();
        let err = forward(layer().as_mut(), &x, &Blob::new(&[2, 1]).unwrap()).unwrap_err();
        assert!(
            err.0
                .starts_with("the indices (bottom 1) must have one axis"),
            "{err}"
        );
        let err = forward(
            layer().as_mut(),
            &Blob::new(&[]).unwrap(),
            &Blob::new(&[1]).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.0.starts_with("the data (bottom 0) has no axes"),
            "{err}"
        );
        for (bad, what) in [(3.0, "3"), (-1.0, "-1"), (0.5, "0.5"), (f32::NAN, "NaN")] {
            let idx = Blob::from_data(&[2], vec![0.0, bad]).unwrap();
            let err = forward(layer().as_mut(), &x, &idx).unwrap_err();
            assert_eq!(
                err.1,
                Some(BottomItem {
                    bottom: 1,
                    index: 1
                })
            );
            assert!(
                err.0.starts_with(&format!(
                    "index {what} at position 1 is not a whole number in [0, 3)"
                )),
                "{err}"
            );
        }
        let mut l = layer();
        assert!(l.allow_force_backward(0) && !l.allow_force_backward(1));
        let (mut x, mut idx) = (x, Blob::new(&[1]).unwrap());
        let top = forward(l.as_mut(), &x, &idx).unwrap();
        let err = l
            .backward(&[&top], &[true, true], &mut [&mut x, &mut idx])
            .unwrap_err();
        assert!(
            err.0.starts_with("BatchReindex cannot pass a gradient"),
            "{err}"
        );
    }

    #[test]
    fn gradient() {
        for (shape, indices) in [
            (&[4, 3][..], vec![3.0, 1.0, 1.0, 0.0, 3.0]),
            (&[3, 2, 2], vec![2.0]),
            (&[2], vec![1.0, 0.0, 1.0]),
        ] {
            let idx = Blob::from_data(&[indices.len()], indices).unwrap();
            let mut bottoms = [uniform_blob(shape, -1.0, 1.0, 4), idx];
            GradientChecker::default()
                .check(layer().as_mut(), &mut bottoms, 1, &[0])
                .unwrap();
        }
    }
}
