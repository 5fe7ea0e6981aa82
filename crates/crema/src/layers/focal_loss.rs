//! FocalLoss (Lin et al., ICCV 2017): InfogainLoss with every term weighed by `(1 − p)^γ`,
//!
//! `loss = −(1 / normalizer) · Σ_n Σ_k H[l_n, k] · (1 − p_nk)^γ · log p_nk`, with `p = softmax(scores)`.
//!
//! `focal_loss_param { gamma }` (default 2; γ = 0 is InfogainLoss bit for bit). Everything else is
//! InfogainLoss's: bottoms scores, labels and optionally H (a third bottom, or `infogain_loss_param.source`; the
//! identity when neither is given, so that H = diag(α) makes α-balanced focal loss), `infogain_loss_param.axis`,
//! `loss_param { ignore_label normalization }`, the optional probability top, and the same errors. The kernel is
//! in [`crate::math::focal`].

use super::infogain_loss::{create_with, Focus};
use crate::layer::{Layer, LayerContext, LayerError, LayerResult};

/// Makes a FocalLoss layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let gamma = ctx
        .param
        .focal_loss_param
        .as_ref()
        .map_or(2.0, |p| p.gamma());
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(LayerError::new(format!(
            "focal_loss_param.gamma: {gamma}; give a finite exponent of 0 or more"
        )));
    }
    create_with(ctx, Focus::Focal { gamma })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blob;
    use crate::layers::test_support::{forward_once as run, layer_from_text};
    use crate::testing::{uniform_blob, GradientChecker};

    fn labels(shape: &[usize], classes: usize, seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, 0.0, classes as f32, seed);
        blob.data_mut().iter_mut().for_each(|v| *v = v.floor());
        blob
    }

    #[test]
    fn hand_computed_values() {
        // Scores (0, ln 3): p = (1/4, 3/4). Label 1 with H = I, γ = 2: −(1/4)² ln(3/4).
        // Label 0 with H = diag(2, 1): −2 (3/4)² ln(1/4). FULL normalization over 2 positions.
        let mut layer = layer_from_text(
            create,
            "focal_loss_param { gamma: 2 } loss_param { normalization: FULL }",
        );
        let scores = Blob::from_data(&[2, 2], vec![0.0, 3f32.ln(), 0.0, 3f32.ln()]).unwrap();
        let label = Blob::from_data(&[2], vec![1.0, 0.0]).unwrap();
        let h = Blob::from_data(&[2, 2], vec![2.0, 0.0, 0.0, 1.0]).unwrap();
        let top = run(layer.as_mut(), &[&scores, &label, &h], 1).unwrap();
        let expected =
            (-(0.25f64).powi(2) * 0.75f64.ln() - 2.0 * 0.75f64.powi(2) * 0.25f64.ln()) / 2.0;
        assert!((f64::from(top[0].data()[0]) - expected).abs() < 1e-6);
        // Without H: the identity.
        let mut layer = layer_from_text(create, "loss_param { normalization: FULL }");
        let top = run(layer.as_mut(), &[&scores, &label], 1).unwrap();
        let expected = (-(0.25f64).powi(2) * 0.75f64.ln() - 0.75f64.powi(2) * 0.25f64.ln()) / 2.0;
        assert!((f64::from(top[0].data()[0]) - expected).abs() < 1e-6);
    }

    #[test]
    fn gamma_zero_is_infogain_loss_bit_for_bit() {
        for (shape, axis, label_shape) in [
            (&[6, 5][..], 1, &[6][..]),
            (&[2, 4, 3, 3][..], 1, &[2, 3, 3][..]),
        ] {
            let classes = shape[axis as usize];
            let scores = uniform_blob(shape, -4.0, 4.0, 1);
            let labels = labels(label_shape, classes, 2);
            let h = uniform_blob(&[classes, classes], 0.0, 2.0, 3);
            let params =
                format!("infogain_loss_param {{ axis: {axis} }} loss_param {{ ignore_label: 1 }}");
            let mut focal =
                layer_from_text(create, &format!("focal_loss_param {{ gamma: 0 }} {params}"));
            let mut infogain = layer_from_text(super::super::infogain_loss::create, &params);
            let a = run(focal.as_mut(), &[&scores, &labels, &h], 2).unwrap();
            let b = run(infogain.as_mut(), &[&scores, &labels, &h], 2).unwrap();
            assert_eq!(a[0].data()[0].to_bits(), b[0].data()[0].to_bits());
            assert_eq!(a[1].data(), b[1].data());
            let (mut ga, mut gb) = (scores.clone(), scores.clone());
            for (layer, grad, tops) in [(&mut focal, &mut ga, &a), (&mut infogain, &mut gb, &b)] {
                let mut tops: Vec<Blob> = tops.clone();
                tops[0].diff_mut()[0] = 1.0;
                let top_refs: Vec<&Blob> = tops.iter().collect();
                let (mut l, mut hh) = (labels.clone(), h.clone());
                layer
                    .backward(
                        &top_refs,
                        &[true, false, false],
                        &mut [grad, &mut l, &mut hh],
                    )
                    .unwrap();
            }
            assert_eq!(ga.diff(), gb.diff());
        }
    }

    #[test]
    fn gradient_for_gammas_axes_and_h_sources() {
        for gamma in ["0.5", "2", "3.5"] {
            for (shape, axis, label_shape) in [
                (&[4, 5][..], 1, &[4][..]),
                (&[2, 3, 4][..], 1, &[2, 4][..]),
                (&[2, 3, 5][..], -1, &[2, 3][..]),
            ] {
                let classes = shape[crate::blob::canonical_axis(axis, shape.len()).unwrap()];
                let text = format!(
                    "focal_loss_param {{ gamma: {gamma} }} infogain_loss_param {{ axis: {axis} }} \
                     loss_param {{ normalization: VALID ignore_label: 1 }}"
                );
                let mut bottoms = vec![
                    uniform_blob(shape, -2.0, 2.0, 5),
                    labels(label_shape, classes, 6),
                    uniform_blob(&[classes, classes], 0.0, 2.0, 7),
                ];
                let mut layer = layer_from_text(create, &text);
                GradientChecker::default()
                    .check(layer.as_mut(), &mut bottoms, 1, &[0])
                    .unwrap_or_else(|e| panic!("gamma {gamma} {shape:?}: {e}"));
                // H = I when no H is given.
                let mut layer = layer_from_text(create, &text);
                bottoms.pop();
                GradientChecker::default()
                    .check(layer.as_mut(), &mut bottoms, 1, &[0])
                    .unwrap_or_else(|e| panic!("gamma {gamma} {shape:?} without H: {e}"));
            }
        }
    }

    #[test]
    fn extreme_scores_are_exact() {
        let mut layer = layer_from_text(create, "loss_param { normalization: FULL }");
        let scores = Blob::from_data(&[2, 2], vec![-1e4, 1e4, 1e4, -1e4]).unwrap();
        let label = Blob::from_data(&[2], vec![0.0, 0.0]).unwrap();
        let top = run(layer.as_mut(), &[&scores, &label], 1).unwrap();
        // The wrong class far ahead: (1 − p)^γ = 1, −log p = 2e4; the right one: 0. Mean over 2.
        assert_eq!(top[0].data()[0], 1e4);
    }

    #[test]
    fn errors_are_infogain_losss() {
        let scores = uniform_blob(&[2, 3], -1.0, 1.0, 1);
        let bad_label = Blob::from_data(&[2], vec![0.0, 3.0]).unwrap();
        let mut layer = layer_from_text(create, "");
        let error = run(layer.as_mut(), &[&scores, &bad_label], 1).unwrap_err();
        assert!(
            error
                .0
                .contains("label 3 at position 1 is not a class index in [0, 3)"),
            "{}",
            error.0
        );
        let few = Blob::from_data(&[3], vec![0.0; 3]).unwrap();
        let mut layer = layer_from_text(create, "");
        let error = run(layer.as_mut(), &[&scores, &few], 1).unwrap_err();
        assert!(
            error.0.contains("give one label per position"),
            "{}",
            error.0
        );
        let small_h = Blob::from_data(&[2, 2], vec![1.0; 4]).unwrap();
        let labels = Blob::from_data(&[2], vec![0.0; 2]).unwrap();
        let mut layer = layer_from_text(create, "");
        let error = run(layer.as_mut(), &[&scores, &labels, &small_h], 1).unwrap_err();
        assert!(
            error.0.contains("H (bottom[2]) has 4 values"),
            "{}",
            error.0
        );
        let param = crema_proto::text::parse("focal_loss_param { gamma: -1 }", "t").unwrap();
        let error = create(&mut crate::layers::test_support::context(&param))
            .err()
            .unwrap();
        assert!(
            error.0.contains("focal_loss_param.gamma: -1"),
            "{}",
            error.0
        );
        let nan = Blob::from_data(&[2, 3], vec![f32::NAN; 6]).unwrap();
        let mut layer = layer_from_text(create, "");
        let error = run(layer.as_mut(), &[&nan, &labels], 1).unwrap_err();
        assert!(
            error
                .0
                .contains("the scores (bottom[0]) hold NaN at index 0"),
            "{}",
            error.0
        );
    }
}
