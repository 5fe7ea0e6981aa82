//! HingeLoss: the one-vs-all hinge loss of `N` items of `D` scores each,
//! `L = Σ_n Σ_k max(0, 1 − δ(k, label_n) · x_nk)^p / N`, where `δ = 1` at the label and `−1` elsewhere, and
//! `p = 1` (L1) or `2` (L2).
//!
//! Bottoms: scores `N × D` (everything after the first axis is one item) and labels (`N` values, each an integer
//! in `[0, D)`). Top: the loss (a scalar). Parameters: `hinge_loss_param { norm }` (L1, the default, or L2).
//!
//! Gradient, with `m = max(0, 1 − δ·x)` and `loss_weight` = `top[0].diff[0]`: L1 `−δ · [m > 0] · loss_weight / N`,
//! L2 `−2δ · m · loss_weight / N`. Labels get no gradient.

use crema_proto::caffe::hinge_loss_parameter::Norm;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};
use crate::layers::loss::{check_item_labels, item_class};

/// The HingeLoss layer.
pub struct HingeLoss {
    norm: Norm,
    num: usize,
    dim: usize,
}

/// Makes a HingeLoss layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let norm = ctx
        .param
        .hinge_loss_param
        .as_ref()
        .map_or(Norm::L1, |p| p.norm());
    Ok(Box::new(HingeLoss {
        norm,
        num: 0,
        dim: 0,
    }))
}

impl Layer for HingeLoss {
    fn type_name(&self) -> &'static str {
        "HingeLoss"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index != 1
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        (self.num, self.dim) = check_item_labels(bottom, |num| num.to_string())?;
        Ok(top[0].reshape(&[])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut loss = 0.0f64;
        for (n, &label) in bottom[1].data().iter().enumerate() {
            let label = item_class(label, n, self.dim)?;
            let row = &bottom[0].data()[n * self.dim..(n + 1) * self.dim];
            for (k, &x) in row.iter().enumerate() {
                let margin = f64::from((1.0 + if k == label { -x } else { x }).max(0.0));
                loss += match self.norm {
                    Norm::L1 => margin,
                    Norm::L2 => margin * margin,
                };
            }
        }
        top[0].data_mut()[0] = (loss / self.num.max(1) as f64) as f32;
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] || self.dim == 0 {
            return Ok(());
        }
        let scale = top[0].diff()[0] / self.num.max(1) as f32;
        let (first, rest) = bottom.split_at_mut(1);
        let (scores, labels) = (&mut *first[0], rest[0].data());
        let (x, dx) = scores.data_and_diff_mut();
        let rows = x.chunks_exact(self.dim).zip(dx.chunks_exact_mut(self.dim));
        for (n, ((x, dx), &label)) in rows.zip(labels).enumerate() {
            let label = item_class(label, n, self.dim)?;
            for (k, (dx, &x)) in dx.iter_mut().zip(x).enumerate() {
                // d/dx of max(0, 1 + s·x) is s where positive, with s = −1 at the label and +1 elsewhere.
                let sign = if k == label { -1.0 } else { 1.0 };
                let margin = (1.0 + sign * x).max(0.0);
                *dx = match self.norm {
                    Norm::L1 if margin > 0.0 => sign * scale,
                    Norm::L1 => 0.0,
                    Norm::L2 => 2.0 * sign * margin * scale,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::loss::test_support::scalar_loss;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        layer_from_text(create, text)
    }

    fn run(text: &str, x: &Blob, labels: &Blob) -> LayerResult<f32> {
        scalar_loss(layer(text).as_mut(), &[x, labels])
    }

    #[test]
    fn forward_by_hand() {
        // Item 0, label 0: margins [max(0, 1 − 2), 1 + 0.5, max(0, 1 − 3)] = [0, 1.5, 0].
        // Item 1, label 2: margins [1 + 1, max(0, 1 − 1), 1 − 0.5] = [2, 0, 0.5].
        let x = Blob::from_data(&[2, 3], vec![2.0, 0.5, -3.0, 1.0, -1.0, 0.5]).unwrap();
        let labels = Blob::from_data(&[2], vec![0.0, 2.0]).unwrap();
        assert_eq!(run("", &x, &labels).unwrap(), (1.5 + 2.0 + 0.5) / 2.0);
        assert_eq!(
            run("hinge_loss_param { norm: L1 }", &x, &labels).unwrap(),
            2.0
        );
        assert_eq!(
            run("hinge_loss_param { norm: L2 }", &x, &labels).unwrap(),
            (2.25 + 4.0 + 0.25) / 2.0
        );
    }

    #[test]
    fn bad_labels_and_shapes_are_errors() {
        let x = Blob::new(&[4, 5]).unwrap();
        let err = run(
            "",
            &x,
            &Blob::from_data(&[4], vec![0.0, 1.0, 4.0, 7.0]).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.0, "label 7 at position 3 is outside [0, 5)");
        let err = run("", &x, &Blob::new(&[4, 2]).unwrap()).unwrap_err();
        assert!(err.0.contains("one value per item"), "{err}");
        let err = run("", &x, &Blob::new(&[2]).unwrap()).unwrap_err();
        assert!(err.0.contains("same first dimension"), "{err}");
    }

    #[test]
    fn gradient() {
        for norm in ["L1", "L2"] {
            for (shape, classes) in [(&[5, 4][..], 4usize), (&[2, 3, 2, 1], 6)] {
                let mut layer = layer(&format!("hinge_loss_param {{ norm: {norm} }}"));
                // Scores kept away from the kinks at ±1.
                let mut x = uniform_blob(shape, -2.0, 2.0, 41);
                for v in x.data_mut() {
                    if (v.abs() - 1.0).abs() < 0.1 {
                        *v *= 0.8;
                    }
                }
                let mut labels = uniform_blob(&[shape[0]], 0.0, classes as f32, 42);
                labels.data_mut().iter_mut().for_each(|v| *v = v.floor());
                GradientChecker::default()
                    .check(layer.as_mut(), &mut [x, labels], 1, &[0])
                    .unwrap_or_else(|e| panic!("{norm} {shape:?}: {e}"));
            }
        }
    }
}
