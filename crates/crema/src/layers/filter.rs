//! Filter: the items (along the first axis) whose selector is not 0, `topᵢ = bottomᵢ[{n : s_n ≠ 0}]`.
//!
//! Bottoms: the blobs to filter, then the selector, last; one top per filtered blob, in order. Every bottom has
//! the selector's first axis; the selector's other axes must all be 1 (one value per item). An item goes
//! through where its selector value is not 0 (NaN counts as not 0, as in Caffe); the selected items keep
//! their order. No parameters.
//!
//! The tops' first axis is the number of selected items, so it changes with the selector's values: forward
//! reshapes the tops (within the storage the first reshape gave them, so nothing is allocated), as Caffe
//! does (Caffe reshapes every layer before each forward). As in Caffe, the first reshape, before any selector
//! values exist, gives the tops all the items. The layers after a Filter must then be reshaped before their own
//! forward, as Caffe's net does for every layer: a net that does not would hand them tops of a shape they were
//! not set up for.
//!
//! Gradient: each selected item's gradient goes back to where it came from, the others get 0. None to the
//! selector: Filter refuses `force_backward` for it, and backward fails if a net asks for one (Caffe aborts).

use smallvec::SmallVec;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Filter layer.
pub struct Filter {
    /// The selected items, from the last reshape or forward.
    selected: Vec<usize>,
    first_reshape: bool,
    /// The selector's bottom index (the last), from the definition and then from the bottoms given.
    selector: usize,
}

/// Makes a Filter layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Filter {
        selected: Vec::new(),
        first_reshape: true,
        selector: ctx.param.bottom.len().saturating_sub(1),
    }))
}

impl Filter {
    /// Checks the bottoms' shapes against the selector's and the number of tops; returns the number of items.
    fn check(bottom: &[&Blob], tops: usize) -> LayerResult<usize> {
        let last = bottom.len() - 1;
        if tops != last {
            return Err(LayerError::new(format!(
                "Filter needs one top per filtered bottom: {last} bottoms before the selector, {tops} tops"
            )));
        }
        let selector = bottom[last];
        if selector.num_axes() == 0 || selector.shape()[1..].iter().any(|&d| d != 1) {
            return Err(LayerError::new(format!(
                "the selector (bottom {last}, the last) must hold one value per item: shape N or N × 1 × …, \
                 got {}",
                selector.shape_string()
            )));
        }
        let num = selector.shape()[0];
        for (i, b) in bottom[..last].iter().enumerate() {
            if b.shape().first() != Some(&num) {
                return Err(LayerError::new(format!(
                    "bottom {i} ({}) must have the selector's first dimension, {num}",
                    b.shape_string()
                )));
            }
        }
        Ok(num)
    }

    /// Reads the selector and shapes the tops for the selected items.
    fn select(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let selector = bottom[bottom.len() - 1].data();
        self.selected.clear();
        self.selected.extend(
            selector
                .iter()
                .enumerate()
                .filter(|(_, &s)| s != 0.0)
                .map(|(n, _)| n),
        );
        self.shape_tops(bottom, top, self.selected.len())
    }

    fn shape_tops(&self, bottom: &[&Blob], top: &mut [&mut Blob], items: usize) -> LayerResult {
        for (t, b) in top.iter_mut().zip(bottom) {
            let mut shape: SmallVec<[usize; 6]> = SmallVec::from_slice(b.shape());
            shape[0] = items;
            t.reshape(&shape)?;
        }
        Ok(())
    }
}

impl Layer for Filter {
    fn type_name(&self) -> &'static str {
        "Filter"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index != self.selector
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let num = Self::check(bottom, top.len())?;
        self.selector = bottom.len() - 1;
        crate::memory::reserve(&mut self.selected, num, || "the selected items".into())?;
        if self.first_reshape {
            self.first_reshape = false;
            self.selected.clear();
            self.selected.extend(0..num);
            return self.shape_tops(bottom, top, num);
        }
        self.select(bottom, top)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Self::check(bottom, top.len())?;
        self.select(bottom, top)?;
        for (t, b) in top.iter_mut().zip(bottom) {
            let dim = b.count_from(1);
            let (x, y) = (b.data(), t.data_mut());
            for (out, &n) in y.chunks_exact_mut(dim.max(1)).zip(&self.selected) {
                out.copy_from_slice(&x[n * dim..(n + 1) * dim]);
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let last = bottom.len() - 1;
        if propagate_down[last] {
            return Err(LayerError::new(format!(
                "Filter cannot pass a gradient to its selector (bottom {last}, the last); set propagate_down: \
                 false on it"
            )));
        }
        for ((t, b), &down) in top.iter().zip(bottom.iter_mut()).zip(propagate_down) {
            if !down {
                continue;
            }
            let dim = b.count_from(1);
            let dx = b.diff_mut();
            dx.fill(0.0);
            for (g, &n) in t.diff().chunks_exact(dim.max(1)).zip(&self.selected) {
                dx[n * dim..(n + 1) * dim].copy_from_slice(g);
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
        create(&mut context(&Default::default())).unwrap()
    }

    fn run(l: &mut dyn Layer, bottoms: &[&Blob], tops: usize) -> LayerResult<Vec<Blob>> {
        let mut blobs = vec![Blob::default(); tops];
        let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
        l.setup(bottoms, &mut refs)?;
        l.reshape(bottoms, &mut refs)?;
        l.forward(bottoms, &mut refs)?;
        Ok(blobs)
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let a = Blob::from_data(&[4, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        let b = Blob::from_data(&[4], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
        let s = Blob::from_data(&[4, 1], vec![1.0, 0.0, f32::NAN, 0.0]).unwrap();
        let mut l = layer();
        let mut tops = vec![Blob::default(); 2];
        {
            let mut refs: Vec<&mut Blob> = tops.iter_mut().collect();
            l.setup(&[&a, &b, &s], &mut refs).unwrap();
            // The first reshape, before the selector has values, gives the tops every item.
            l.reshape(&[&a, &b, &s], &mut refs).unwrap();
        }
        assert_eq!((tops[0].shape(), tops[1].shape()), (&[4, 2][..], &[4][..]));
        {
            let mut refs: Vec<&mut Blob> = tops.iter_mut().collect();
            l.forward(&[&a, &b, &s], &mut refs).unwrap();
        }
        assert_eq!(
            (tops[0].shape(), tops[0].data()),
            (&[2, 2][..], &[1.0, 2.0, 5.0, 6.0][..])
        );
        assert_eq!(
            (tops[1].shape(), tops[1].data()),
            (&[2][..], &[10.0, 30.0][..])
        );

        tops[0].diff_mut().copy_from_slice(&[0.1, 0.2, 0.3, 0.4]);
        tops[1].diff_mut().copy_from_slice(&[-1.0, -2.0]);
        let (mut a, mut b, mut s) = (a, b, s);
        a.diff_mut().fill(f32::NAN);
        b.diff_mut().fill(f32::NAN);
        s.diff_mut().fill(7.0);
        let top_refs: Vec<&Blob> = tops.iter().collect();
        l.backward(
            &top_refs,
            &[true, true, false],
            &mut [&mut a, &mut b, &mut s],
        )
        .unwrap();
        assert_eq!(a.diff(), [0.1, 0.2, 0.0, 0.0, 0.3, 0.4, 0.0, 0.0]);
        assert_eq!(b.diff(), [-1.0, 0.0, -2.0, 0.0]);
        assert_eq!(s.diff(), [7.0; 4]);
    }

    #[test]
    fn the_selection_follows_the_selector_each_forward() {
        let a = Blob::from_data(&[3], vec![1.0, 2.0, 3.0]).unwrap();
        let mut s = Blob::from_data(&[3], vec![0.0, 0.0, 0.0]).unwrap();
        let mut l = layer();
        let mut top = Blob::default();
        l.setup(&[&a, &s], &mut [&mut top]).unwrap();
        l.reshape(&[&a, &s], &mut [&mut top]).unwrap();
        for (selector, expected) in [
            ([0.0, 0.0, 0.0], &[][..]),
            ([1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            ([0.0, -2.0, 0.5], &[2.0, 3.0]),
        ] {
            s.data_mut().copy_from_slice(&selector);
            l.forward(&[&a, &s], &mut [&mut top]).unwrap();
            assert_eq!((top.shape()[0], top.data()), (expected.len(), expected));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let a = Blob::new(&[3, 2]).unwrap();
        let cases = [
            (
                vec![Blob::new(&[3]).unwrap()],
                2,
                "Filter needs one top per filtered bottom",
            ),
            (
                vec![Blob::new(&[3, 2]).unwrap()],
                1,
                "the selector (bottom 1, the last)",
            ),
            (
                vec![Blob::new(&[]).unwrap()],
                1,
                "the selector (bottom 1, the last)",
            ),
            (
                vec![Blob::new(&[4, 1]).unwrap()],
                1,
                "bottom 0 (3 2 (6)) must have",
            ),
        ];
        for (selector, tops, expected) in cases {
            let err = run(layer().as_mut(), &[&a, &selector[0]], tops).unwrap_err();
            assert!(err.0.starts_with(expected), "{err}");
        }
        let mut l = layer();
        let mut s = Blob::from_data(&[3], vec![1.0, 0.0, 1.0]).unwrap();
        let mut a = a;
        let tops = run(l.as_mut(), &[&a, &s], 1).unwrap();
        assert!(l.allow_force_backward(0) && !l.allow_force_backward(1));
        let err = l
            .backward(&[&tops[0]], &[true, true], &mut [&mut a, &mut s])
            .unwrap_err();
        assert!(
            err.0
                .starts_with("Filter cannot pass a gradient to its selector"),
            "{err}"
        );
    }

    #[test]
    fn gradient() {
        let selector = Blob::from_data(&[5, 1, 1], vec![0.0, 1.0, 1.0, 0.0, 3.0]).unwrap();
        let mut bottoms = [
            uniform_blob(&[5, 2, 3], -1.0, 1.0, 1),
            uniform_blob(&[5], -1.0, 1.0, 2),
            selector,
        ];
        GradientChecker::default()
            .check(layer().as_mut(), &mut bottoms, 2, &[0, 1])
            .unwrap();
    }
}
