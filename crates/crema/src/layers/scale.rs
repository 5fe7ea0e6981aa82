//! Scale: `y = x ⊙ s (+ b)`, with `s` (and `b`) broadcast over the axes they do not span.
//!
//! `s` is the second bottom, or, with one bottom, a learnable blob (param 0). Its shape must equal the
//! bottom's dims from `axis` on, for as many axes as `s` has (a scalar `s` scales everything); see the Bias
//! layer for the rule. The learned `s` spans `num_axes` axes from `axis` (`-1`: all the rest; `0`: a scalar)
//! and starts from `filler` (default constant 1). With `bias_term`, a learned bias `b` is added after scaling,
//! as a Bias layer would: it is the last param, spans the same axes as `s`, and starts from `bias_filler`
//! (default constant 0).
//!
//! Parameters: `scale_param { axis (1) num_axes (1) filler bias_term (false) bias_filler }`. Gradients:
//! `dx = dy ⊙ s`, `ds = Σ dy ⊙ x` and `db = Σ dy` over the broadcast axes (added to learned blobs' diffs,
//! written to a second bottom's diff).

use crema_proto::caffe::{FillerParameter, ScaleParameter};

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::bias::{add_broadcast, broadcast, learned_blob, sum_broadcast, Broadcast};
use crate::math::Rng;

/// The Scale layer.
pub struct Scale {
    param: ScaleParameter,
    /// `[s]`, `[s, b]`, `[b]` (two bottoms with a bias) or nothing, once set up.
    blobs: Vec<Blob>,
    /// Whether `s` is learned (one bottom); known at setup.
    learned: bool,
    scale_bc: Broadcast,
    bias_bc: Broadcast,
    rng: Rng,
}

/// Makes a Scale layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Scale {
        param: ctx.param.scale_param.clone().unwrap_or_default(),
        blobs: Vec::new(),
        learned: false,
        scale_bc: Broadcast::default(),
        bias_bc: Broadcast::default(),
        rng: ctx.rng.clone(),
    }))
}

/// `out = Σ dy ⊙ x` over the broadcast axes; added to `out` when `accumulate`, written over it otherwise.
fn scale_gradient(dy: &[f32], x: &[f32], out: &mut [f32], bc: Broadcast, accumulate: bool) {
    if !accumulate {
        out.fill(0.0);
    }
    if dy.is_empty() {
        return;
    }
    let block = bc.dim * bc.inner;
    for (dy_block, x_block) in dy.chunks_exact(block).zip(x.chunks_exact(block)) {
        for ((dy_row, x_row), o) in dy_block
            .chunks_exact(bc.inner)
            .zip(x_block.chunks_exact(bc.inner))
            .zip(out.iter_mut())
        {
            *o += dy_row.iter().zip(x_row).map(|(&g, &v)| g * v).sum::<f32>();
        }
    }
}

/// `y = x ⊙ s`, broadcast.
fn multiply(y: &mut [f32], x: &[f32], s: &[f32], bc: Broadcast) {
    if y.is_empty() {
        return;
    }
    let block = bc.dim * bc.inner;
    for (y_block, x_block) in y.chunks_exact_mut(block).zip(x.chunks_exact(block)) {
        for ((y_row, x_row), &v) in y_block
            .chunks_exact_mut(bc.inner)
            .zip(x_block.chunks_exact(bc.inner))
            .zip(s)
        {
            for (y, &x) in y_row.iter_mut().zip(x_row) {
                *y = x * v;
            }
        }
    }
}

impl Scale {
    fn has_bias(&self) -> bool {
        self.param.bias_term()
    }
}

impl Layer for Scale {
    fn type_name(&self) -> &'static str {
        "Scale"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::between(1, 2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn in_place(&self) -> InPlace {
        InPlace::Yes
    }

    fn setup(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        self.learned = bottom.len() == 1;
        if !self.blobs.is_empty() {
            return Ok(());
        }
        let p = &self.param;
        if self.learned {
            let filler = p.filler.clone().unwrap_or(FillerParameter {
                r#type: Some("constant".into()),
                value: Some(1.0),
                ..Default::default()
            });
            let s = learned_blob(
                bottom[0],
                (p.axis(), p.num_axes()),
                &filler,
                ("scale_param", "filler"),
                &mut self.rng,
            )?;
            self.blobs.push(s);
        }
        if p.bias_term() {
            // Caffe's inner Bias layer spans the second bottom's axes, or num_axes when s is learned.
            let num_axes = match bottom.get(1) {
                Some(s) => s.num_axes() as i32,
                None => p.num_axes(),
            };
            let b = learned_blob(
                bottom[0],
                (p.axis(), num_axes),
                &p.bias_filler.clone().unwrap_or_default(),
                ("scale_param", "bias_filler"),
                &mut self.rng,
            )?;
            self.blobs.push(b);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let expected = usize::from(self.learned) + usize::from(self.has_bias());
        if self.blobs.len() != expected || self.learned != (bottom.len() == 1) {
            return Err(LayerError::new(
                "Scale: reshape before setup, or with another number of bottoms",
            ));
        }
        let axis = self.param.axis();
        let s = if self.learned {
            self.blobs[0].shape()
        } else {
            bottom[1].shape()
        };
        self.scale_bc = broadcast(bottom[0], s, axis, "scale_param", "Scale", "scale")?;
        if let Some(b) = self.blobs.last().filter(|_| self.has_bias()) {
            self.bias_bc = broadcast(bottom[0], b.shape(), axis, "scale_param", "Scale", "bias")?;
        }
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let s = if self.learned {
            &self.blobs[0]
        } else {
            bottom[1]
        };
        let y = top[0].data_mut();
        multiply(y, bottom[0].data(), s.data(), self.scale_bc);
        if self.has_bias() {
            let b = self.blobs.last().expect("bias blob");
            add_broadcast(y, b.data(), self.bias_bc);
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let dy = top[0].diff();
        if self.has_bias() {
            let b = self.blobs.last_mut().expect("bias blob");
            sum_broadcast(dy, b.diff_mut(), self.bias_bc, true);
        }
        let bc = self.scale_bc;
        if self.learned {
            scale_gradient(dy, bottom[0].data(), self.blobs[0].diff_mut(), bc, true);
        } else if propagate_down[1] {
            let (x, s) = bottom.split_at_mut(1);
            scale_gradient(dy, x[0].data(), s[0].diff_mut(), bc, false);
        }
        if propagate_down[0] {
            let (first, rest) = bottom.split_at_mut(1);
            let s = if self.learned {
                self.blobs[0].data()
            } else {
                rest[0].data()
            };
            multiply(first[0].diff_mut(), dy, s, bc);
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
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn forward(l: &mut dyn Layer, bottoms: &[&Blob]) -> LayerResult<Blob> {
        let mut top = Blob::default();
        l.setup(bottoms, &mut [&mut top])?;
        l.reshape(bottoms, &mut [&mut top])?;
        l.forward(bottoms, &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_with_a_second_bottom() {
        let x = Blob::from_data(&[2, 2, 2], (0..8).map(|v| v as f32).collect()).unwrap();
        let s = Blob::from_data(&[2], vec![2.0, -1.0]).unwrap();
        let top = forward(layer("name: \"s\"").as_mut(), &[&x, &s]).unwrap();
        assert_eq!(top.data(), [0.0, 2.0, -2.0, -3.0, 8.0, 10.0, -6.0, -7.0]);
        let top = forward(layer("scale_param { axis: -1 }").as_mut(), &[&x, &s]).unwrap();
        assert_eq!(top.data(), [0.0, -1.0, 4.0, -3.0, 8.0, -5.0, 12.0, -7.0]);
        let scalar = Blob::from_data(&[], vec![0.5]).unwrap();
        let top = forward(layer("scale_param { axis: 2 }").as_mut(), &[&x, &scalar]).unwrap();
        assert_eq!(top.data()[7], 3.5);

        // With a bias: its shape follows the second bottom; it starts from bias_filler.
        let text = "scale_param { bias_term: true bias_filler { type: \"constant\" value: 1 } }";
        let mut l = layer(text);
        let top = forward(l.as_mut(), &[&x, &s]).unwrap();
        assert_eq!(l.params().len(), 1);
        assert_eq!(l.params()[0].shape(), [2]);
        assert_eq!(top.data(), [1.0, 3.0, -1.0, -2.0, 9.0, 11.0, -5.0, -6.0]);
    }

    #[test]
    fn learned_scale_and_bias() {
        let x = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut l = layer("scale_param { bias_term: true }");
        let top = forward(l.as_mut(), &[&x]).unwrap();
        // Default fillers: s = 1, b = 0.
        assert_eq!(top.data(), x.data());
        assert_eq!(
            (l.params()[0].shape(), l.params()[1].shape()),
            (&[3][..], &[3][..])
        );
        l.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[1.0, 0.0, -1.0]);
        l.params_mut()[1]
            .data_mut()
            .copy_from_slice(&[0.5, 0.5, 0.5]);
        let mut top = Blob::default();
        l.reshape(&[&x], &mut [&mut top]).unwrap();
        l.forward(&[&x], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), [1.5, 0.5, -2.5, 4.5, 0.5, -5.5]);

        let mut l = layer("scale_param { num_axes: 0 filler { type: \"constant\" value: 3 } }");
        let top = forward(l.as_mut(), &[&x]).unwrap();
        assert_eq!(l.params()[0].shape(), [0usize; 0]);
        assert_eq!(top.data()[5], 18.0);
    }

    #[test]
    fn errors_name_the_field() {
        let x = Blob::new(&[2, 3, 4]).unwrap();
        let cases = [
            ("scale_param { axis: -4 }", "scale_param.axis: "),
            ("scale_param { num_axes: -3 }", "scale_param.num_axes: "),
            (
                "scale_param { axis: 1 num_axes: 3 }",
                "scale_param.num_axes: ",
            ),
            (
                "scale_param { filler { type: \"nope\" } }",
                "scale_param.filler: ",
            ),
            (
                "scale_param { bias_term: true bias_filler { type: \"nope\" } }",
                "scale_param.bias_filler: ",
            ),
        ];
        for (text, prefix) in cases {
            let err = forward(layer(text).as_mut(), &[&x]).unwrap_err();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
        let err = forward(
            layer("name: \"s\"").as_mut(),
            &[&x, &Blob::new(&[2]).unwrap()],
        )
        .unwrap_err();
        assert!(err.0.starts_with("Scale: the scale has shape [2]"), "{err}");
    }

    #[test]
    fn param_gradients_accumulate() {
        let mut l = layer("scale_param { bias_term: true }");
        let mut x = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut top = forward(l.as_mut(), &[&x]).unwrap();
        top.diff_mut().copy_from_slice(&[1.0, 1.0, 2.0, -1.0]);
        for p in l.params_mut() {
            p.diff_mut().fill(10.0);
        }
        l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
        assert_eq!(l.params()[0].diff(), [10.0 + 1.0 + 6.0, 10.0 + 2.0 - 4.0]);
        assert_eq!(l.params()[1].diff(), [13.0, 10.0]);
        assert_eq!(x.diff(), top.diff());
    }

    #[test]
    fn gradient_learned() {
        let fillers = "filler { type: \"uniform\" min: -1 max: 1 } bias_filler { type: \"uniform\" min: -1 max: 1 }";
        let settings = [
            "",
            "bias_term: true",
            "axis: 0 num_axes: -1 bias_term: true",
            "num_axes: 0 bias_term: true",
            "axis: -1",
        ];
        for setting in settings {
            for shape in [&[2, 3, 2][..], &[3, 2, 2, 2]] {
                let mut l = layer(&format!("scale_param {{ {setting} {fillers} }}"));
                GradientChecker::default()
                    .check(
                        l.as_mut(),
                        &mut [uniform_blob(shape, -1.0, 1.0, 9)],
                        1,
                        &[0],
                    )
                    .unwrap_or_else(|e| panic!("{setting} {shape:?}: {e}"));
            }
        }
    }

    #[test]
    fn gradient_second_bottom() {
        let bias = "bias_term: true bias_filler { type: \"uniform\" min: -1 max: 1 }";
        let cases: [(&str, &[usize], &[usize]); 5] = [
            ("", &[2, 3, 2], &[3]),
            (bias, &[2, 3, 2, 2], &[3, 2]),
            ("axis: 0", &[2, 3], &[2, 3]),
            ("axis: 1", &[2, 3, 2], &[]),
            (bias, &[2, 3, 2], &[]),
        ];
        for (setting, x, s) in cases {
            let mut l = layer(&format!("scale_param {{ {setting} }}"));
            let mut bottoms = [uniform_blob(x, -1.0, 1.0, 1), uniform_blob(s, -1.0, 1.0, 2)];
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[0, 1])
                .unwrap_or_else(|e| panic!("{setting} {x:?} {s:?}: {e}"));
        }
    }
}
