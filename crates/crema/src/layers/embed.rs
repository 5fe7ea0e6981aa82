//! Embed: a learned lookup table, `y[…, :] = W[x[…], :] + b`.
//!
//! Every value of the bottom is an index into the table: a whole number in `[0, input_dim)`, else an error
//! naming its position (and, through the net, where the data layer read it). The top has the bottom's shape
//! followed by `num_output`. Learnable blobs, in Caffe's order: the weights `W`, `input_dim × num_output` (the
//! transpose of InnerProduct's, one row per index), and the bias `b` of `num_output` when `bias_term`.
//!
//! Parameters: `embed_param { num_output input_dim (both required, > 0) bias_term (true) weight_filler
//! bias_filler }` (fillers default to constant 0).
//!
//! Gradients: `dW[x_n] += dy_n` for every index `n`, `db += Σ_n dy_n`. None to the indices: Embed refuses
//! `force_backward` for its bottom, and backward fails if a net asks for one (Caffe aborts there too).

use crema_proto::caffe::EmbedParameter;

use crate::blob::Blob;
use crate::filler::{fill, filled_blob};
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::loss::whole_class;
use crate::math::Rng;

/// The Embed layer.
pub struct Embed {
    param: EmbedParameter,
    /// `num_output` and `input_dim`.
    n: usize,
    k: usize,
    /// `[W]` or `[W, b]` once set up.
    blobs: Vec<Blob>,
    /// The bottom's values as table rows, from the last forward.
    indices: Vec<usize>,
    rng: Rng,
}

/// Makes an Embed layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.embed_param.clone().unwrap_or_default();
    let n = param.num_output() as usize;
    if n == 0 {
        return Err(LayerError::new(
            "embed_param.num_output: must be set and positive (the length of each embedding)",
        ));
    }
    let k = param.input_dim() as usize;
    if k == 0 {
        return Err(LayerError::new(
            "embed_param.input_dim: must be set and positive (the number of indices, the table's rows)",
        ));
    }
    Ok(Box::new(Embed {
        param,
        n,
        k,
        blobs: Vec::new(),
        indices: Vec::new(),
        rng: ctx.rng.clone(),
    }))
}

impl Layer for Embed {
    fn type_name(&self) -> &'static str {
        "Embed"
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

    fn setup(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        if !self.blobs.is_empty() {
            return Ok(());
        }
        let mut weights = Blob::new(&[self.k, self.n])
            .map_err(|e| LayerError::new(format!("embed_param: the weights: {e}")))?;
        let weight_filler = self.param.weight_filler.clone().unwrap_or_default();
        fill(
            &mut weights,
            &weight_filler,
            &mut self.rng,
            "embed_param.weight_filler",
        )?;
        self.blobs.push(weights);
        if self.param.bias_term() {
            let bias = filled_blob(
                &[self.n],
                self.param.bias_filler.as_ref(),
                &mut self.rng,
                "embed_param.bias_filler",
            )?;
            self.blobs.push(bias);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.blobs.is_empty() {
            return Err(LayerError::new("Embed: reshape before setup"));
        }
        let mut shape = smallvec::SmallVec::<[usize; 8]>::from_slice(bottom[0].shape());
        shape.push(self.n);
        top[0].reshape(&shape)?;
        crate::memory::resize(&mut self.indices, bottom[0].count(), 0, || {
            "the embedding indices".into()
        })?;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (n, k) = (self.n, self.k);
        for (position, (index, &value)) in self.indices.iter_mut().zip(bottom[0].data()).enumerate()
        {
            *index = whole_class(value, k).ok_or_else(|| {
                LayerError::at_item(
                    format!(
                        "index {value} at position {position} is not a whole number in [0, {k}) \
                         (embed_param.input_dim is {k})"
                    ),
                    0,
                    position,
                )
            })?;
        }
        let weights = self.blobs[0].data();
        let y = top[0].data_mut();
        for (row, &index) in y.chunks_exact_mut(n).zip(&self.indices) {
            row.copy_from_slice(&weights[index * n..(index + 1) * n]);
        }
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
        _bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            return Err(LayerError::new(
                "Embed cannot pass a gradient to its bottom (the indices); set propagate_down: false on it",
            ));
        }
        let n = self.n;
        let dy = top[0].diff();
        let dw = self.blobs[0].diff_mut();
        for (row, &index) in dy.chunks_exact(n).zip(&self.indices) {
            for (d, &g) in dw[index * n..(index + 1) * n].iter_mut().zip(row) {
                *d += g;
            }
        }
        if let Some(bias) = self.blobs.get_mut(1) {
            let db = bias.diff_mut();
            for row in dy.chunks_exact(n) {
                for (d, &g) in db.iter_mut().zip(row) {
                    *d += g;
                }
            }
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
    use crate::testing::{net_from_text, GradientChecker};
    use crema_proto::caffe::Phase;

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    /// A layer with W = [[1, 2], [3, 4], [5, 6]] (3 indices, 2 outputs) and b = [0.5, -1] when `bias`.
    fn table(bias: bool) -> Box<dyn Layer> {
        let mut l = layer(&format!(
            "embed_param {{ num_output: 2 input_dim: 3 bias_term: {bias} }}"
        ))
        .unwrap();
        let x = Blob::new(&[1]).unwrap();
        l.setup(&[&x], &mut [&mut Blob::default()]).unwrap();
        l.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        if bias {
            l.params_mut()[1].data_mut().copy_from_slice(&[0.5, -1.0]);
        }
        l
    }

    fn forward(l: &mut dyn Layer, x: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        l.reshape(&[x], &mut [&mut top])?;
        l.forward(&[x], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_and_backward_by_hand() {
        let mut x = Blob::from_data(&[2, 2], vec![2.0, 0.0, 2.0, 1.0]).unwrap();
        let mut l = table(false);
        assert_eq!(l.params().len(), 1);
        let top = forward(l.as_mut(), &x).unwrap();
        assert_eq!(top.shape(), [2, 2, 2]);
        assert_eq!(top.data(), [5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 3.0, 4.0]);

        let mut l = table(true);
        assert_eq!(l.params()[0].shape(), [3, 2]);
        assert_eq!(l.params()[1].shape(), [2]);
        let mut top = forward(l.as_mut(), &x).unwrap();
        assert_eq!(top.data(), [5.5, 5.0, 1.5, 1.0, 5.5, 5.0, 3.5, 3.0]);
        top.diff_mut()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        l.backward(&[&top], &[false], &mut [&mut x]).unwrap();
        // Index 2 twice (rows 0 and 2 of dy), index 0 once (row 1), index 1 once (row 3).
        assert_eq!(l.params()[0].diff(), [3.0, 4.0, 7.0, 8.0, 6.0, 8.0]);
        assert_eq!(l.params()[1].diff(), [16.0, 20.0]);
    }

    #[test]
    fn errors_name_the_field_and_the_position() {
        for (text, expected) in [
            ("embed_param { input_dim: 3 }", "embed_param.num_output: "),
            ("embed_param { num_output: 2 }", "embed_param.input_dim: "),
            ("name: \"e\"", "embed_param.num_output: "),
        ] {
            let err = layer(text).err().unwrap();
            assert!(err.0.starts_with(expected), "{text}: {err}");
        }
        let mut l = table(true);
        for (bad, what) in [(3.0, "3"), (-1.0, "-1"), (1.5, "1.5"), (f32::NAN, "NaN")] {
            let x = Blob::from_data(&[3], vec![0.0, bad, 1.0]).unwrap();
            let err = forward(l.as_mut(), &x).unwrap_err();
            assert_eq!(
                err.1,
                Some(crate::layer::BottomItem {
                    bottom: 0,
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
        assert!(!l.allow_force_backward(0));
        let mut x = Blob::new(&[1]).unwrap();
        let top = forward(l.as_mut(), &x).unwrap();
        let err = l.backward(&[&top], &[true], &mut [&mut x]).unwrap_err();
        assert!(err.0.starts_with("Embed cannot pass a gradient"), "{err}");
        // A table past the largest blob is an error, not an abort.
        let mut l = layer("embed_param { num_output: 100000 input_dim: 100000 }").unwrap();
        let err = l.setup(&[&x], &mut [&mut Blob::default()]).unwrap_err();
        assert!(err.0.starts_with("embed_param: the weights: "), "{err}");
    }

    #[test]
    fn gradient_to_the_weights() {
        for (bias, shape) in [(true, &[4][..]), (false, &[2, 3]), (true, &[2, 2, 2])] {
            let mut l = layer(&format!(
                "embed_param {{ num_output: 3 input_dim: 5 bias_term: {bias} \
                 weight_filler {{ type: \"uniform\" min: -1 max: 1 }} \
                 bias_filler {{ type: \"uniform\" min: -1 max: 1 }} }}"
            ))
            .unwrap();
            let count: usize = shape.iter().product();
            // Indices repeat, so that one row gathers several gradients.
            let values = (0..count).map(|i| ((i * 3) % 5) as f32).collect();
            let mut x = Blob::from_data(shape, values).unwrap();
            GradientChecker::default()
                .check(l.as_mut(), std::slice::from_mut(&mut x), 1, &[])
                .unwrap();
        }
    }

    #[test]
    fn a_bad_index_in_a_net_names_the_layer() {
        let text = r#"
            layer { name: "in" type: "Input" top: "words" input_param { shape { dim: 2 } } }
            layer { name: "emb" type: "Embed" bottom: "words" top: "e" embed_param { num_output: 2 input_dim: 4 } }
        "#;
        let mut net = net_from_text(text, Phase::Train, &[]).unwrap();
        net.blob_mut("words")
            .unwrap()
            .data_mut()
            .copy_from_slice(&[1.0, 4.0]);
        let err = net.forward().unwrap_err().to_string();
        assert!(
            err.contains("\"emb\"") && err.contains("index 4 at position 1"),
            "{err}"
        );
    }
}
