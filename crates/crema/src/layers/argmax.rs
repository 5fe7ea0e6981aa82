//! ArgMax: the indices (and optionally values) of the `top_k` largest inputs, `y = argmaxₖ x`.
//!
//! Parameters: `argmax_param { out_max_val (false) top_k (1) axis }`.
//! - With `axis`: the maximum is taken along that axis; the top has the bottom's shape with that axis'
//!   dim replaced by `top_k`, and holds the indices, or the values when `out_max_val`.
//! - Without: the maximum is taken over all axes but the first, per item; the top has shape
//!   `N × 1 × top_k` (`N × 2 × top_k` with `out_max_val`: indices, then values), padded with 1s to the
//!   bottom's number of axes.
//!
//! Ties go to the larger index (Caffe sorts (value, index) pairs in decreasing order); NaN counts as the
//! largest value. No gradient: ArgMax refuses `force_backward`, and backward fails if a gradient is asked for.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use std::cmp::Ordering;

/// The ArgMax layer.
pub struct ArgMax {
    out_max_val: bool,
    top_k: usize,
    axis: Option<i32>,
    /// Resolved at reshape: the length searched, and the stride between its values.
    dim: usize,
    inner: usize,
    /// (value, index) pairs of one search.
    pairs: Vec<(f32, usize)>,
}

/// Makes an ArgMax layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.argmax_param.unwrap_or_default();
    if p.top_k() == 0 {
        return Err(LayerError::new("argmax_param.top_k: must be at least 1"));
    }
    Ok(Box::new(ArgMax {
        out_max_val: p.out_max_val(),
        top_k: p.top_k() as usize,
        axis: p.axis,
        dim: 0,
        inner: 0,
        pairs: Vec::new(),
    }))
}

/// Decreasing value (NaN first), then decreasing index: a total order.
fn before(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    let by_value = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => b.0.partial_cmp(&a.0).expect("not NaN"),
    };
    by_value.then(b.1.cmp(&a.1))
}

impl Layer for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn allow_force_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let mut shape;
        if let Some(axis) = self.axis {
            let a = x
                .canonical_axis(axis)
                .map_err(|e| LayerError::new(format!("argmax_param.axis: {e}")))?;
            self.dim = x.shape()[a];
            self.inner = x.count_from(a + 1);
            shape = x.shape().to_vec();
            shape[a] = self.top_k;
        } else {
            if x.num_axes() == 0 {
                return Err(LayerError::new(
                    "ArgMax: without argmax_param.axis the bottom needs a first (batch) axis",
                ));
            }
            self.dim = x.count_from(1);
            self.inner = 1;
            shape = vec![1; x.num_axes().max(3)];
            shape[0] = x.shape()[0];
            shape[1] = if self.out_max_val { 2 } else { 1 };
            shape[2] = self.top_k;
        }
        if self.top_k > self.dim {
            return Err(LayerError::new(format!(
                "argmax_param.top_k: {} is more than the {} values searched in bottom {}",
                self.top_k,
                self.dim,
                x.shape_string()
            )));
        }
        crate::memory::resize(&mut self.pairs, self.dim, (0.0, 0), || {
            "the search buffer".into()
        })?;
        Ok(top[0].reshape(&shape)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0].data();
        let y = top[0].data_mut();
        let (dim, inner, k) = (self.dim, self.inner, self.top_k);
        let searches = x.len() / dim;
        let values_only = self.axis.is_some() && self.out_max_val;
        let both = self.axis.is_none() && self.out_max_val;
        for i in 0..searches {
            let (outer, offset) = (i / inner, i % inner);
            for (j, pair) in self.pairs.iter_mut().enumerate() {
                *pair = (x[(outer * dim + j) * inner + offset], j);
            }
            if k < dim {
                self.pairs.select_nth_unstable_by(k - 1, before);
            }
            self.pairs[..k].sort_unstable_by(before);
            for (j, &(value, index)) in self.pairs[..k].iter().enumerate() {
                if both {
                    y[2 * i * k + j] = index as f32;
                    y[2 * i * k + k + j] = value;
                } else {
                    y[(outer * k + j) * inner + offset] =
                        if values_only { value } else { index as f32 };
                }
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        _top: &[&Blob],
        propagate_down: &[bool],
        _bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down.iter().any(|&down| down) {
            return Err(LayerError::new("ArgMax has no gradient"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;

    fn forward(text: &str, bottom: &Blob) -> LayerResult<Blob> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        let mut l = create(&mut context(&param))?;
        let mut top = Blob::default();
        l.setup(&[bottom], &mut [&mut top])?;
        l.reshape(&[bottom], &mut [&mut top])?;
        l.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    fn bottom() -> Blob {
        // Two items of 2 × 3.
        Blob::from_data(
            &[2, 2, 3],
            vec![1.0, 5.0, 3.0, 2.0, 4.0, 0.0, 9.0, -1.0, 7.0, 8.0, 6.0, 7.0],
        )
        .unwrap()
    }

    #[test]
    fn per_item() {
        let top = forward("name: \"a\"", &bottom()).unwrap();
        assert_eq!(top.shape(), [2, 1, 1]);
        assert_eq!(top.data(), [1.0, 0.0]);
        let top = forward("argmax_param { top_k: 3 out_max_val: true }", &bottom()).unwrap();
        assert_eq!(top.shape(), [2, 2, 3]);
        assert_eq!(
            top.data(),
            [1.0, 4.0, 2.0, 5.0, 4.0, 3.0, 0.0, 3.0, 5.0, 9.0, 8.0, 7.0]
        );
        let flat = Blob::from_data(&[2, 2], vec![0.0, 1.0, 3.0, 2.0]).unwrap();
        let top = forward("argmax_param { top_k: 2 }", &flat).unwrap();
        assert_eq!(
            (top.shape(), top.data()),
            (&[2, 1, 2][..], &[1.0, 0.0, 0.0, 1.0][..])
        );
        let four = Blob::new(&[1, 2, 1, 1]).unwrap();
        assert_eq!(forward("name: \"a\"", &four).unwrap().shape(), [1, 1, 1, 1]);
    }

    #[test]
    fn along_an_axis() {
        let top = forward("argmax_param { axis: 1 }", &bottom()).unwrap();
        assert_eq!(top.shape(), [2, 1, 3]);
        assert_eq!(top.data(), [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        let top = forward(
            "argmax_param { axis: -1 top_k: 2 out_max_val: true }",
            &bottom(),
        )
        .unwrap();
        assert_eq!(top.shape(), [2, 2, 2]);
        assert_eq!(top.data(), [5.0, 3.0, 4.0, 2.0, 9.0, 7.0, 8.0, 7.0]);
        let top = forward("argmax_param { axis: 2 top_k: 2 }", &bottom()).unwrap();
        assert_eq!(top.data(), [1.0, 2.0, 1.0, 0.0, 0.0, 2.0, 0.0, 2.0]);
    }

    #[test]
    fn ties_go_to_the_larger_index() {
        let b = Blob::from_data(&[1, 4], vec![2.0, 7.0, 7.0, 2.0]).unwrap();
        let top = forward("argmax_param { top_k: 4 }", &b).unwrap();
        assert_eq!(top.data(), [2.0, 1.0, 3.0, 0.0]);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("argmax_param { top_k: 0 }", "argmax_param.top_k: "),
            ("argmax_param { top_k: 7 }", "argmax_param.top_k: "),
            ("argmax_param { axis: 1 top_k: 3 }", "argmax_param.top_k: "),
            ("argmax_param { axis: 3 }", "argmax_param.axis: "),
        ];
        for (text, prefix) in cases {
            let err = forward(text, &bottom()).unwrap_err();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
    }

    #[test]
    fn no_gradient() {
        let param = crema_proto::text::parse("name: \"a\"", "t").unwrap();
        let mut l = create(&mut context(&param)).unwrap();
        assert!(!l.allow_force_backward(0));
        let mut b = bottom();
        let top = Blob::new(&[2, 1, 1]).unwrap();
        assert!(l.backward(&[&top], &[false], &mut [&mut b]).is_ok());
        assert!(l.backward(&[&top], &[true], &mut [&mut b]).is_err());
    }
}
