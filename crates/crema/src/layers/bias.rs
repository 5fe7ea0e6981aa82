//! Bias: `y = x + b`, with `b` broadcast over the axes it does not span.
//!
//! `b` is the second bottom, or, with one bottom, a learnable blob (param 0). Its shape must equal the
//! bottom's dims from `axis` on, for as many axes as `b` has: for `x` of shape `N C H W` and `axis: 1`, `b` may
//! be `C`, `C H` or `C H W`; a scalar `b` (no axes) is added everywhere. The learned `b` spans `num_axes` axes
//! from `axis` (`-1`: all the rest; `0`: a scalar) and starts from `filler` (default constant 0).
//!
//! Parameters: `bias_param { axis (1) num_axes (1) filler }` (`num_axes` and `filler` only matter for the
//! learned `b`). Gradients: `dx = dy`, `db = Σ dy` over the broadcast axes (added to the learned blob's diff,
//! written to a second bottom's diff).
//!
//! The helpers here (the learned operand's shape and filling, broadcasting) are shared with the Scale layer.

use crema_proto::caffe::{BiasParameter, FillerParameter};

use crate::blob::Blob;
use crate::filler::fill;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};
use crate::math::Rng;

/// How an operand of a Bias or Scale layer lines up with bottom 0: bottom 0 is `outer` repetitions of `dim`
/// operand values, each applying to `inner` consecutive values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Broadcast {
    pub outer: usize,
    pub dim: usize,
    pub inner: usize,
}

/// A learned operand: shaped as bottom 0's dims from `axis`, `num_axes` of them (-1: to the end), and filled by
/// `filler`. `field` prefixes errors (`bias_param`), `filler_field` names the filler in them (`filler`).
pub(crate) fn learned_blob(
    bottom: &Blob,
    (axis, num_axes): (i32, i32),
    filler: &FillerParameter,
    (field, filler_field): (&str, &str),
    rng: &mut Rng,
) -> LayerResult<Blob> {
    let start = bottom
        .canonical_axis(axis)
        .map_err(|e| LayerError::new(format!("{field}.axis: {e}")))?;
    let end = match num_axes {
        -1 => bottom.num_axes(),
        n if n >= 0 => start + n as usize,
        n => {
            return Err(LayerError::new(format!(
                "{field}.num_axes: {n} must be >= 0, or -1 for all axes from axis on"
            )))
        }
    };
    if end > bottom.num_axes() {
        return Err(LayerError::new(format!(
            "{field}.num_axes: {num_axes} axes from axis {start} pass the end of bottom 0 ({})",
            bottom.shape_string()
        )));
    }
    let mut blob = Blob::new(&bottom.shape()[start..end])?;
    fill(&mut blob, filler, rng, &format!("{field}.{filler_field}"))?;
    Ok(blob)
}

/// How `operand` (a shape) lines up with `bottom` from `axis` (ignored for a scalar operand). `field` prefixes
/// axis errors (`bias_param`); `layer` and `what` name the layer and operand in shape errors.
pub(crate) fn broadcast(
    bottom: &Blob,
    operand: &[usize],
    axis: i32,
    field: &str,
    layer: &str,
    what: &str,
) -> LayerResult<Broadcast> {
    let start = if operand.is_empty() {
        0
    } else {
        bottom
            .canonical_axis(axis)
            .map_err(|e| LayerError::new(format!("{field}.axis: {e}")))?
    };
    let end = start + operand.len();
    if end > bottom.num_axes() || bottom.shape()[start..end] != *operand {
        return Err(LayerError::new(format!(
            "{layer}: the {what} has shape {operand:?}, which does not match bottom 0 ({}) from axis {start}",
            bottom.shape_string()
        )));
    }
    Ok(Broadcast {
        outer: bottom.count_range(0, start),
        dim: operand.iter().product(),
        inner: bottom.count_from(end),
    })
}

/// `y += b`, broadcast.
pub(crate) fn add_broadcast(y: &mut [f32], b: &[f32], bc: Broadcast) {
    if y.is_empty() {
        return;
    }
    for block in y.chunks_exact_mut(bc.dim * bc.inner) {
        for (row, &v) in block.chunks_exact_mut(bc.inner).zip(b) {
            row.iter_mut().for_each(|y| *y += v);
        }
    }
}

/// `out = Σ dy` over the broadcast axes; added to `out` when `accumulate`, written over it otherwise.
pub(crate) fn sum_broadcast(dy: &[f32], out: &mut [f32], bc: Broadcast, accumulate: bool) {
    if !accumulate {
        out.fill(0.0);
    }
    if dy.is_empty() {
        return;
    }
    for block in dy.chunks_exact(bc.dim * bc.inner) {
        for (row, o) in block.chunks_exact(bc.inner).zip(out.iter_mut()) {
            *o += row.iter().sum::<f32>();
        }
    }
}

/// The Bias layer.
pub struct Bias {
    param: BiasParameter,
    /// `[b]` when learned, once set up; empty with two bottoms.
    blobs: Vec<Blob>,
    bc: Broadcast,
    rng: Rng,
}

/// Makes a Bias layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Bias {
        param: ctx.param.bias_param.clone().unwrap_or_default(),
        blobs: Vec::new(),
        bc: Broadcast::default(),
        rng: ctx.rng.clone(),
    }))
}

impl Layer for Bias {
    fn type_name(&self) -> &'static str {
        "Bias"
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
        if bottom.len() == 1 && self.blobs.is_empty() {
            let b = learned_blob(
                bottom[0],
                (self.param.axis(), self.param.num_axes()),
                &self.param.filler.clone().unwrap_or_default(),
                ("bias_param", "filler"),
                &mut self.rng,
            )?;
            self.blobs.push(b);
        }
        Ok(())
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let operand = match bottom.get(1) {
            Some(b) => b.shape(),
            None => self
                .blobs
                .first()
                .ok_or_else(|| LayerError::new("Bias: reshape before setup"))?
                .shape(),
        };
        self.bc = broadcast(
            bottom[0],
            operand,
            self.param.axis(),
            "bias_param",
            "Bias",
            "bias",
        )?;
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let b = match bottom.get(1) {
            Some(b) => *b,
            None => &self.blobs[0],
        };
        let y = top[0].data_mut();
        y.copy_from_slice(bottom[0].data());
        add_broadcast(y, b.data(), self.bc);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let dy = top[0].diff();
        if propagate_down[0] {
            bottom[0].diff_mut().copy_from_slice(dy);
        }
        if bottom.len() > 1 {
            if propagate_down[1] {
                sum_broadcast(dy, bottom[1].diff_mut(), self.bc, false);
            }
        } else {
            sum_broadcast(dy, self.blobs[0].diff_mut(), self.bc, true);
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
        let b = Blob::from_data(&[2], vec![10.0, 20.0]).unwrap();
        let top = forward(layer("name: \"b\"").as_mut(), &[&x, &b]).unwrap();
        assert_eq!(top.data(), [10.0, 11.0, 22.0, 23.0, 14.0, 15.0, 26.0, 27.0]);
        let top = forward(layer("bias_param { axis: -1 }").as_mut(), &[&x, &b]).unwrap();
        assert_eq!(top.data(), [10.0, 21.0, 12.0, 23.0, 14.0, 25.0, 16.0, 27.0]);
        let b2 = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let top = forward(layer("bias_param { axis: 0 }").as_mut(), &[&x, &b2]).unwrap();
        assert_eq!(top.data(), [1.0, 2.0, 4.0, 5.0, 7.0, 8.0, 10.0, 11.0]);
        // A scalar bottom is added everywhere, whatever the axis.
        let s = Blob::from_data(&[], vec![0.5]).unwrap();
        let top = forward(layer("bias_param { axis: 2 }").as_mut(), &[&x, &s]).unwrap();
        assert_eq!(top.data()[7], 7.5);
    }

    #[test]
    fn learned_bias_shape_and_filler() {
        let x = Blob::new(&[2, 3, 4]).unwrap();
        let cases: [(&str, &[usize]); 4] = [
            ("name: \"b\"", &[3]),
            ("bias_param { num_axes: -1 }", &[3, 4]),
            ("bias_param { axis: 0 num_axes: 2 }", &[2, 3]),
            ("bias_param { num_axes: 0 }", &[]),
        ];
        for (text, shape) in cases {
            let mut l = layer(text);
            forward(l.as_mut(), &[&x]).unwrap();
            assert_eq!(l.params()[0].shape(), shape, "{text}");
        }
        let mut l = layer("bias_param { filler { type: \"constant\" value: 3 } }");
        let top = forward(l.as_mut(), &[&x]).unwrap();
        assert!(top.data().iter().all(|&v| v == 3.0));
    }

    #[test]
    fn errors_name_the_field() {
        let x = Blob::new(&[2, 3, 4]).unwrap();
        let cases = [
            ("bias_param { axis: 3 }", "bias_param.axis: "),
            ("bias_param { num_axes: -2 }", "bias_param.num_axes: "),
            (
                "bias_param { axis: 2 num_axes: 2 }",
                "bias_param.num_axes: ",
            ),
            (
                "bias_param { filler { type: \"nope\" } }",
                "bias_param.filler: ",
            ),
        ];
        for (text, prefix) in cases {
            let err = forward(layer(text).as_mut(), &[&x]).unwrap_err();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
        let err = forward(
            layer("name: \"b\"").as_mut(),
            &[&x, &Blob::new(&[4]).unwrap()],
        )
        .unwrap_err();
        assert!(err.0.starts_with("Bias: the bias has shape [4]"), "{err}");
        let err = forward(
            layer("bias_param { axis: 2 }").as_mut(),
            &[&x, &Blob::new(&[4, 1]).unwrap()],
        )
        .unwrap_err();
        assert!(err.0.starts_with("Bias: "), "{err}");
    }

    #[test]
    fn gradient_learned() {
        let filler = "filler { type: \"uniform\" min: -1 max: 1 }";
        for setting in ["", "axis: 0 num_axes: -1", "num_axes: 0", "axis: -1"] {
            for shape in [&[2, 3, 2][..], &[3, 2, 2, 2]] {
                let mut l = layer(&format!("bias_param {{ {setting} {filler} }}"));
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
        let cases: [(&str, &[usize], &[usize]); 4] = [
            ("", &[2, 3, 2], &[3]),
            ("axis: 1", &[2, 3, 2, 2], &[3, 2]),
            ("axis: 0", &[2, 3], &[2, 3]),
            ("axis: 1", &[2, 3, 2], &[]),
        ];
        for (setting, x, b) in cases {
            let mut l = layer(&format!("bias_param {{ {setting} }}"));
            let mut bottoms = [uniform_blob(x, -1.0, 1.0, 1), uniform_blob(b, -1.0, 1.0, 2)];
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[0, 1])
                .unwrap_or_else(|e| panic!("{setting} {x:?} {b:?}: {e}"));
        }
    }
}
