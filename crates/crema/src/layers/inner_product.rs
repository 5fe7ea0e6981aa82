//! InnerProduct (fully connected): `y = x · Wᵀ + b`.
//!
//! The bottom is viewed as an `M × K` matrix: `M` is the product of the axes before `axis`, `K` the product of
//! `axis` and the axes after it. The top has the bottom's first `axis` axes followed by `N = num_output`.
//! Learnable blobs, in Caffe's order: the weights `W`, `N × K` (`K × N` when `transpose`, then
//! `y = x · W + b`), and the bias `b` of `N` when `bias_term`.
//!
//! Parameters: `inner_product_param { num_output (required, > 0) bias_term (true) axis (1) transpose (false)
//! weight_filler bias_filler }` (fillers default to constant 0). `K` is fixed at setup: a later bottom must
//! have the same `K`.
//!
//! Gradients: `dx = dy · W`, `dW += dyᵀ · x` (`xᵀ · dy` when transposed), `db += Σ_rows dy`.

use crema_proto::caffe::InnerProductParameter;

use crate::blob::Blob;
use crate::filler::filled_blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::math::{sgemm, Rng, Transpose};

/// The InnerProduct layer.
pub struct InnerProduct {
    param: InnerProductParameter,
    n: usize,
    /// Set at setup.
    k: usize,
    /// Set at reshape.
    m: usize,
    /// `[W]` or `[W, b]` once set up.
    blobs: Vec<Blob>,
    rng: Rng,
}

/// Makes an InnerProduct layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.inner_product_param.clone().unwrap_or_default();
    let n = param.num_output() as usize;
    if n == 0 {
        return Err(LayerError::new(
            "inner_product_param.num_output: must be set and positive",
        ));
    }
    Ok(Box::new(InnerProduct {
        param,
        n,
        k: 0,
        m: 0,
        blobs: Vec::new(),
        rng: ctx.rng.clone(),
    }))
}

impl InnerProduct {
    fn axis(&self, bottom: &Blob) -> LayerResult<usize> {
        bottom
            .canonical_axis(self.param.axis())
            .map_err(|e| LayerError::new(format!("inner_product_param.axis: {e}")))
    }

    fn weight_trans(&self) -> Transpose {
        if self.param.transpose() {
            Transpose::No
        } else {
            Transpose::Yes
        }
    }
}

impl Layer for InnerProduct {
    fn type_name(&self) -> &'static str {
        "InnerProduct"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        let axis = self.axis(bottom[0])?;
        self.k = bottom[0].count_from(axis);
        if !self.blobs.is_empty() {
            return Ok(());
        }
        let (n, k) = (self.n, self.k);
        let weight_shape = if self.param.transpose() {
            [k, n]
        } else {
            [n, k]
        };
        let weights = filled_blob(
            &weight_shape,
            self.param.weight_filler.as_ref(),
            &mut self.rng,
            "inner_product_param.weight_filler",
        )?;
        self.blobs.push(weights);
        if self.param.bias_term() {
            let bias = filled_blob(
                &[n],
                self.param.bias_filler.as_ref(),
                &mut self.rng,
                "inner_product_param.bias_filler",
            )?;
            self.blobs.push(bias);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.blobs.is_empty() {
            return Err(LayerError::new("InnerProduct: reshape before setup"));
        }
        let axis = self.axis(bottom[0])?;
        let k = bottom[0].count_from(axis);
        if k != self.k {
            return Err(LayerError::new(format!(
                "inner_product_param.axis: the bottom ({}) has {k} inputs from axis {axis}, but the weights \
                 were made for {}",
                bottom[0].shape_string(),
                self.k
            )));
        }
        self.m = bottom[0].count_range(0, axis);
        let mut shape = smallvec::SmallVec::<[usize; 8]>::from_slice(&bottom[0].shape()[..axis]);
        shape.push(self.n);
        Ok(top[0].reshape(&shape)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (m, n, k) = (self.m, self.n, self.k);
        let y = top[0].data_mut();
        sgemm(
            Transpose::No,
            self.weight_trans(),
            m,
            n,
            k,
            1.0,
            bottom[0].data(),
            self.blobs[0].data(),
            0.0,
            y,
        );
        if let Some(bias) = self.blobs.get(1) {
            for row in y.chunks_exact_mut(n) {
                for (v, &b) in row.iter_mut().zip(bias.data()) {
                    *v += b;
                }
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
        let (m, n, k) = (self.m, self.n, self.k);
        let dy = top[0].diff();
        let transpose = self.param.transpose();
        {
            let x = bottom[0].data();
            let dw = self.blobs[0].diff_mut();
            if transpose {
                sgemm(Transpose::Yes, Transpose::No, k, n, m, 1.0, x, dy, 1.0, dw);
            } else {
                sgemm(Transpose::Yes, Transpose::No, n, k, m, 1.0, dy, x, 1.0, dw);
            }
        }
        if let Some(bias) = self.blobs.get_mut(1) {
            let db = bias.diff_mut();
            if n > 0 {
                for row in dy.chunks_exact(n) {
                    for (d, &g) in db.iter_mut().zip(row) {
                        *d += g;
                    }
                }
            }
        }
        if propagate_down[0] {
            let w_op = if transpose {
                Transpose::Yes
            } else {
                Transpose::No
            };
            sgemm(
                Transpose::No,
                w_op,
                m,
                k,
                n,
                1.0,
                dy,
                self.blobs[0].data(),
                0.0,
                bottom[0].diff_mut(),
            );
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
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn forward(layer: &mut dyn Layer, bottom: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        layer.setup(&[bottom], &mut [&mut top])?;
        layer.reshape(&[bottom], &mut [&mut top])?;
        layer.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        // x = [[1, 2, 3], [4, 5, 6]] (shape 2 × 1 × 3), W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1].
        let x = Blob::from_data(&[2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        for transpose in [false, true] {
            let mut l = layer(&format!(
                "inner_product_param {{ num_output: 2 transpose: {transpose} }}"
            ))
            .unwrap();
            let mut top = Blob::default();
            l.setup(&[&x], &mut [&mut top]).unwrap();
            assert_eq!(
                l.params()[0].shape(),
                if transpose { [3, 2] } else { [2, 3] }
            );
            assert_eq!(l.params()[1].shape(), [2]);
            let w = if transpose {
                [1.0, 2.0, 0.0, 1.0, -1.0, 0.0]
            } else {
                [1.0, 0.0, -1.0, 2.0, 1.0, 0.0]
            };
            l.params_mut()[0].data_mut().copy_from_slice(&w);
            l.params_mut()[1].data_mut().copy_from_slice(&[0.5, -1.0]);
            l.reshape(&[&x], &mut [&mut top]).unwrap();
            l.forward(&[&x], &mut [&mut top]).unwrap();
            assert_eq!(top.shape(), [2, 2]);
            assert_eq!(top.data(), [-1.5, 3.0, -1.5, 12.0]);
        }
    }

    #[test]
    fn axis_keeps_leading_axes_and_fillers_apply() {
        let text = "inner_product_param { num_output: 4 axis: 2 bias_term: false
            weight_filler { type: \"constant\" value: 0.5 } }";
        let mut l = layer(text).unwrap();
        let x = Blob::from_data(&[2, 3, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        let top = forward(l.as_mut(), &x).unwrap();
        assert_eq!(l.params().len(), 1);
        assert_eq!(top.shape(), [2, 3, 4]);
        for (i, row) in top.data().chunks(4).enumerate() {
            let expected = 0.5 * (2 * i + 2 * i + 1) as f32;
            assert!(row.iter().all(|&v| v == expected));
        }
        let text =
            "inner_product_param { num_output: 3 bias_filler { type: \"constant\" value: 2 } }";
        let mut l = layer(text).unwrap();
        let top = forward(l.as_mut(), &x).unwrap();
        assert_eq!(top.shape(), [2, 3]);
        assert!(top.data().iter().all(|&v| v == 2.0));
    }

    #[test]
    fn errors_name_the_field() {
        let err = layer("inner_product_param { bias_term: false }")
            .err()
            .unwrap();
        assert!(
            err.0.starts_with("inner_product_param.num_output: "),
            "{err}"
        );
        let mut l = layer("inner_product_param { num_output: 2 axis: 3 }").unwrap();
        let err = forward(l.as_mut(), &Blob::new(&[2, 3]).unwrap()).unwrap_err();
        assert!(err.0.starts_with("inner_product_param.axis: "), "{err}");
        let mut l =
            layer("inner_product_param { num_output: 2 weight_filler { type: \"bogus\" } }")
                .unwrap();
        let err = forward(l.as_mut(), &Blob::new(&[2, 3]).unwrap()).unwrap_err();
        assert!(
            err.0.starts_with("inner_product_param.weight_filler: "),
            "{err}"
        );

        let mut l = layer("inner_product_param { num_output: 2 }").unwrap();
        let mut top = Blob::default();
        forward(l.as_mut(), &Blob::new(&[2, 3]).unwrap()).unwrap();
        // A new batch size is fine; a new K is not.
        l.reshape(&[&Blob::new(&[5, 3]).unwrap()], &mut [&mut top])
            .unwrap();
        assert_eq!(top.shape(), [5, 2]);
        let err = l
            .reshape(&[&Blob::new(&[2, 4]).unwrap()], &mut [&mut top])
            .unwrap_err();
        assert!(err.0.starts_with("inner_product_param.axis: "), "{err}");
    }

    #[test]
    fn param_gradients_accumulate() {
        let mut l =
            layer("inner_product_param { num_output: 2 weight_filler { type: \"gaussian\" } }")
                .unwrap();
        let mut x = Blob::from_data(&[1, 2], vec![1.0, -2.0]).unwrap();
        let mut top = forward(l.as_mut(), &x).unwrap();
        top.diff_mut().copy_from_slice(&[1.0, 3.0]);
        l.params_mut()[0].diff_mut().fill(1.0);
        l.params_mut()[1].diff_mut().fill(1.0);
        l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
        assert_eq!(l.params()[0].diff(), [2.0, -1.0, 4.0, -5.0]);
        assert_eq!(l.params()[1].diff(), [2.0, 4.0]);
        let w = l.params()[0].data();
        let expected = [w[0] + 3.0 * w[2], w[1] + 3.0 * w[3]];
        for (got, want) in x.diff().iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn gradient() {
        let filler = "weight_filler { type: \"gaussian\" std: 0.5 } bias_filler { type: \"uniform\" min: -1 max: 1 }";
        let settings = [
            "",
            "bias_term: false",
            "transpose: true",
            "axis: 2",
            "axis: -1 transpose: true",
        ];
        for setting in settings {
            for shape in [&[2, 3, 4][..], &[3, 2, 1, 2]] {
                let text = format!("inner_product_param {{ num_output: 3 {setting} {filler} }}");
                let mut l = layer(&text).unwrap();
                let mut bottoms = [uniform_blob(shape, -1.0, 1.0, 5)];
                GradientChecker::default()
                    .check(l.as_mut(), &mut bottoms, 1, &[0])
                    .unwrap_or_else(|e| panic!("{setting} {shape:?}: {e}"));
            }
        }
    }
}
