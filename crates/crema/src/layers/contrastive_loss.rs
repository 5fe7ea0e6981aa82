//! ContrastiveLoss: the siamese-network loss, `L = 1/2N Σ_n [y_n ≠ 0] d_n² + [y_n = 0] max(margin − d_n, 0)²`
//! with `d_n = ‖a_n − b_n‖₂`.
//!
//! Bottoms: the features `a` and `b`, `N × C` (or `N × C × 1 × 1`: Caffe's 4-D view, so at most 4 axes, the
//! last two of size 1), and the similarity `y`, one value per pair (`N`, or `N × 1 × 1 × 1`). A pair is similar
//! when `y`, cut to an integer as Caffe does, is not 0 (so 0.5 means dissimilar). Top: the loss (a scalar).
//!
//! Parameters: `contrastive_loss_param { margin (1) legacy_version (false) }`. With `legacy_version` a
//! dissimilar pair adds `max(margin − d², 0)` (not squared), as in Caffe's first version.
//!
//! Gradients, as Caffe computes them (`w` the loss weight, `top[0].diff[0]`), for `a` (and the opposite for
//! `b`): similar pairs `w/N · (a − b)`; dissimilar pairs, where the margin is not yet met, `−w/N · (a − b)`
//! (legacy) or `−w/N · (margin − d) / (d + 10⁻⁴) · (a − b)`, and 0 elsewhere. The 10⁻⁴ keeps the gradient
//! finite for identical features. None to `y`: the layer refuses `force_backward` for it, and writes 0 if a net
//! asks for it anyway (the loss is flat in `y` between integers).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::loss::check_first_dims;

/// The ContrastiveLoss layer.
pub struct ContrastiveLoss {
    margin: f32,
    legacy: bool,
    /// Resolved at reshape: pairs and features per pair.
    num: usize,
    channels: usize,
    /// `a − b` and `‖a − b‖²` per pair, from the last forward.
    difference: Vec<f32>,
    dist_sq: Vec<f32>,
}

/// Makes a ContrastiveLoss layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.contrastive_loss_param.unwrap_or_default();
    let margin = p.margin();
    if !margin.is_finite() {
        return Err(LayerError::new(format!(
            "contrastive_loss_param.margin: {margin} is not a finite number"
        )));
    }
    Ok(Box::new(ContrastiveLoss {
        margin,
        legacy: p.legacy_version(),
        num: 0,
        channels: 0,
        difference: Vec::new(),
        dist_sq: Vec::new(),
    }))
}

/// Checks that `blob` (bottom `index`, `what`) is `N × channels × 1 × 1` in Caffe's 4-D view.
fn check_legacy(blob: &Blob, index: usize, what: &str, channels: usize) -> LayerResult {
    let fits = blob.num_axes() <= 4
        && blob.legacy_dim(1) == channels
        && blob.legacy_dim(2) == 1
        && blob.legacy_dim(3) == 1;
    if fits {
        Ok(())
    } else {
        Err(LayerError::new(format!(
            "bottom {index} ({what}) must be N × {channels} (or N × {channels} × 1 × 1), got {}",
            blob.shape_string()
        )))
    }
}

impl ContrastiveLoss {
    /// Whether pair `n` is similar: `y` cut to an integer is not 0 (Caffe's `static_cast<int>`); NaN is an error.
    fn similar(y: f32, n: usize) -> LayerResult<bool> {
        if y.is_nan() {
            return Err(LayerError::at_item(
                format!("similarity {y} at position {n} is not a number; give 1 (similar) or 0 (dissimilar)"),
                2,
                n,
            ));
        }
        Ok(y.trunc() != 0.0)
    }
}

impl Layer for ContrastiveLoss {
    fn type_name(&self) -> &'static str {
        "ContrastiveLoss"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(3)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index != 2
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        check_first_dims(bottom)?;
        let (a, b, y) = (bottom[0], bottom[1], bottom[2]);
        let channels = a.legacy_dim(1);
        check_legacy(a, 0, "the features a", channels)?;
        check_legacy(b, 1, "the features b", channels)?;
        check_legacy(y, 2, "the similarity", 1)?;
        self.num = a.shape()[0];
        if y.num_axes() == 0 || y.count() != self.num {
            return Err(LayerError::new(format!(
                "bottom 2 (the similarity) must hold one value per pair ({}), got {}",
                self.num,
                y.shape_string()
            )));
        }
        self.channels = channels;
        crate::memory::resize(&mut self.difference, a.count(), 0.0, || {
            "the differences".into()
        })?;
        crate::memory::resize(&mut self.dist_sq, self.num, 0.0, || {
            "the squared distances".into()
        })?;
        Ok(top[0].reshape(&[])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        for ((d, &a), &b) in self
            .difference
            .iter_mut()
            .zip(bottom[0].data())
            .zip(bottom[1].data())
        {
            *d = a - b;
        }
        let margin = f64::from(self.margin);
        let mut loss = 0.0f64;
        for (n, (dist_sq, &y)) in self.dist_sq.iter_mut().zip(bottom[2].data()).enumerate() {
            let d = &self.difference[n * self.channels..(n + 1) * self.channels];
            *dist_sq = d.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32;
            let dist_sq = f64::from(*dist_sq);
            loss += if Self::similar(y, n)? {
                dist_sq
            } else if self.legacy {
                (margin - dist_sq).max(0.0)
            } else {
                let gap = (margin - dist_sq.sqrt()).max(0.0);
                gap * gap
            };
        }
        top[0].data_mut()[0] = (loss / self.num.max(1) as f64 / 2.0) as f32;
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let (c, margin) = (self.channels, self.margin);
        let (features, similarity) = bottom.split_at_mut(2);
        let y = similarity[0].data();
        for (i, sign) in [(0, 1.0f32), (1, -1.0)] {
            if !propagate_down[i] {
                continue;
            }
            let alpha = sign * top[0].diff()[0] / self.num.max(1) as f32;
            let dx = features[i].diff_mut();
            for (n, (&dist_sq, &y)) in self.dist_sq.iter().zip(y).enumerate() {
                let (out, d) = (
                    &mut dx[n * c..(n + 1) * c],
                    &self.difference[n * c..(n + 1) * c],
                );
                let scale = if Self::similar(y, n)? {
                    alpha
                } else {
                    let (gap, beta) = if self.legacy {
                        (margin - dist_sq, -alpha)
                    } else {
                        let dist = dist_sq.sqrt();
                        let gap = margin - dist;
                        (gap, -alpha * gap / (dist + 1e-4))
                    };
                    if gap > 0.0 {
                        beta
                    } else {
                        0.0
                    }
                };
                for (o, &d) in out.iter_mut().zip(d) {
                    *o = scale * d;
                }
            }
        }
        if propagate_down[2] {
            similarity[0].diff_mut().fill(0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::loss::test_support::scalar_loss;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::{net_from_text, uniform_blob, GradientChecker};
    use crema_proto::caffe::Phase;

    fn run(text: &str, a: &Blob, b: &Blob, y: &Blob) -> LayerResult<f32> {
        scalar_loss(layer_from_text(create, text).as_mut(), &[a, b, y])
    }

    /// Three pairs of 2 features: distances 5 (similar), 0.5 (dissimilar) and 3 (dissimilar).
    fn pairs() -> (Blob, Blob, Blob) {
        let a = Blob::from_data(&[3, 2], vec![3.0, 4.0, 0.5, 0.0, 1.0, 1.0]).unwrap();
        let b = Blob::from_data(&[3, 2, 1, 1], vec![0.0, 0.0, 0.0, 0.0, 1.0, -2.0]).unwrap();
        let y = Blob::from_data(&[3], vec![1.0, 0.0, 0.0]).unwrap();
        (a, b, y)
    }

    #[test]
    fn forward_by_hand() {
        let (a, b, y) = pairs();
        // Similar: d² = 25. Dissimilar, margin 1: max(1 − 0.5, 0)² = 0.25 and max(1 − 3, 0)² = 0.
        assert_eq!(run("", &a, &b, &y).unwrap(), (25.0 + 0.25) / 6.0);
        // Margin 4: (4 − 0.5)² + (4 − 3)² = 12.25 + 1.
        let text = "contrastive_loss_param { margin: 4 }";
        assert_eq!(run(text, &a, &b, &y).unwrap(), (25.0 + 12.25 + 1.0) / 6.0);
        // Legacy: max(4 − d², 0): 4 − 0.25 = 3.75 and max(4 − 9, 0) = 0.
        let text = "contrastive_loss_param { margin: 4 legacy_version: true }";
        assert_eq!(run(text, &a, &b, &y).unwrap(), (25.0 + 3.75) / 6.0);
        // Similarities are cut to integers: 0.9 is dissimilar, −1 and 2.5 are similar.
        let y = Blob::from_data(&[3, 1, 1, 1], vec![0.9, -1.0, 2.5]).unwrap();
        assert_eq!(run("", &a, &b, &y).unwrap(), (0.0 + 0.25 + 9.0) / 6.0);
    }

    #[test]
    fn backward_by_hand() {
        let (mut a, mut b, mut y) = pairs();
        let mut l = layer_from_text(create, "contrastive_loss_param { margin: 2 }");
        let mut top = Blob::default();
        l.reshape(&[&a, &b, &y], &mut [&mut top]).unwrap();
        l.forward(&[&a, &b, &y], &mut [&mut top]).unwrap();
        top.diff_mut()[0] = 3.0;
        l.backward(&[&top], &[true, true, false], &mut [&mut a, &mut b, &mut y])
            .unwrap();
        // w/N = 1. Pair 0: a − b = (3, 4). Pair 1: d = 0.5, −(2 − 0.5) / (0.5 + 1e-4) · (0.5, 0). Pair 2: d = 3
        // is past the margin.
        let beta = -(1.5f32) / (0.5 + 1e-4);
        assert_eq!(a.diff(), [3.0, 4.0, beta * 0.5, 0.0, 0.0, 0.0]);
        assert_eq!(b.diff(), [-3.0, -4.0, -beta * 0.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn shape_errors_say_what_is_wrong() {
        let (a, b, y) = pairs();
        let cases = [
            (
                Blob::new(&[3, 3]).unwrap(),
                y.clone(),
                "bottom 1 (the features b) must be N × 2",
            ),
            (
                Blob::new(&[3, 2, 2]).unwrap(),
                y.clone(),
                "bottom 1 (the features b) must be N × 2",
            ),
            (
                Blob::new(&[2, 2]).unwrap(),
                y.clone(),
                "the data and label should have the same first dimension",
            ),
            (
                b.clone(),
                Blob::new(&[3, 2]).unwrap(),
                "bottom 2 (the similarity) must be N × 1",
            ),
        ];
        for (b, y, expected) in cases {
            let err = run("", &a, &b, &y).unwrap_err();
            assert!(err.0.starts_with(expected), "{err}");
        }
        let err = run("", &a, &b, &Blob::new(&[]).unwrap()).unwrap_err();
        assert!(
            err.0
                .starts_with("bottom 2 (the similarity) must hold one value per pair"),
            "{err}"
        );
        let a5 = Blob::new(&[3, 2, 1, 1, 1]).unwrap();
        let err = run("", &a5, &b, &y).unwrap_err();
        assert!(err.0.starts_with("bottom 0 (the features a)"), "{err}");
        let nan = Blob::from_data(&[3], vec![1.0, f32::NAN, 0.0]).unwrap();
        let err = run("", &a, &b, &nan).unwrap_err();
        assert_eq!(
            err.1,
            Some(crate::layer::BottomItem {
                bottom: 2,
                index: 1
            })
        );
        let param =
            crema_proto::text::parse("contrastive_loss_param { margin: inf }", "t").unwrap();
        let err = create(&mut crate::layers::test_support::context(&param))
            .err()
            .unwrap();
        assert!(
            err.0.starts_with("contrastive_loss_param.margin: "),
            "{err}"
        );
    }

    #[test]
    fn gradient_reaches_both_features() {
        for text in [
            "",
            "contrastive_loss_param { margin: 2 }",
            "contrastive_loss_param { margin: 2 legacy_version: true }",
        ] {
            for (shape, seed) in [(&[6, 3][..], 1), (&[5, 2, 1, 1], 2)] {
                let mut l = layer_from_text(create, text);
                assert!(l.is_loss() && l.allow_force_backward(1) && !l.allow_force_backward(2));
                let n = shape[0];
                let y = (0..n).map(|i| (i % 2) as f32).collect();
                let mut bottoms = [
                    uniform_blob(shape, -1.0, 1.0, seed),
                    uniform_blob(shape, -1.0, 1.0, seed + 10),
                    Blob::from_data(&[n], y).unwrap(),
                ];
                // The 1e-4 in Caffe's gradient of the non-legacy form is within the threshold at these distances.
                GradientChecker::default()
                    .check(l.as_mut(), &mut bottoms, 1, &[0, 1])
                    .unwrap_or_else(|e| panic!("{text} {shape:?}: {e}"));
            }
        }
    }

    #[test]
    fn trains_twin_towers_with_shared_weights() {
        let text = r#"
            name: "TwinTowers"
            layer { name: "in" type: "Input" top: "first" top: "second" top: "same"
                    input_param { shape { dim: 4 dim: 5 } shape { dim: 4 dim: 5 } shape { dim: 4 } } }
            layer { name: "tower_a" type: "InnerProduct" bottom: "first" top: "embed_a"
                    param { name: "tower_w" } param { name: "tower_b" }
                    inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
            layer { name: "tower_b" type: "InnerProduct" bottom: "second" top: "embed_b"
                    param { name: "tower_w" } param { name: "tower_b" }
                    inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
            layer { name: "pair_loss" type: "ContrastiveLoss" bottom: "embed_a" bottom: "embed_b" bottom: "same"
                    top: "pair_loss" contrastive_loss_param { margin: 1.25 } }
        "#;
        let mut net = net_from_text(text, Phase::Train, &[]).unwrap();
        for (name, seed) in [("first", 1), ("second", 2)] {
            let values = uniform_blob(&[4, 5], -1.0, 1.0, seed);
            net.blob_mut(name)
                .unwrap()
                .data_mut()
                .copy_from_slice(values.data());
        }
        net.blob_mut("same")
            .unwrap()
            .data_mut()
            .copy_from_slice(&[1.0, 0.0, 1.0, 0.0]);
        let loss = net.forward().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{loss}");
        net.backward().unwrap();
        let loss_layer = net.layer_names().position(|n| n == "pair_loss").unwrap();
        assert_eq!(net.bottom_needs_backward(loss_layer), [true, true, false]);
    }
}
