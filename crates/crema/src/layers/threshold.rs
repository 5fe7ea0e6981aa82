//! Threshold: `y = 1` where `x > threshold`, else `0`.
//!
//! Parameters: `threshold_param { threshold (0) }`. A value equal to the threshold gives 0, and so does NaN.
//!
//! No gradient (Caffe's backward is not implemented): Threshold refuses `force_backward`, and backward fails,
//! naming the layer, if a net asks for a gradient through it (a Threshold whose top feeds a loss, with a
//! bottom that needs a gradient); `propagate_down: false` on its bottom says none is wanted. May run in place.

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};

/// The Threshold layer.
pub struct Threshold {
    threshold: f32,
}

/// Makes a Threshold layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let threshold = ctx
        .param
        .threshold_param
        .as_ref()
        .map_or(0.0, |p| p.threshold());
    if threshold.is_nan() {
        return Err(LayerError::new(
            "threshold_param.threshold: is NaN; give a number",
        ));
    }
    Ok(Box::new(Threshold { threshold }))
}

impl Layer for Threshold {
    fn type_name(&self) -> &'static str {
        "Threshold"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn in_place(&self) -> InPlace {
        InPlace::Yes
    }

    fn allow_force_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let t = self.threshold;
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = if x > t { 1.0 } else { 0.0 };
        }
        Ok(())
    }

    fn backward(
        &mut self,
        _top: &[&Blob],
        propagate_down: &[bool],
        _bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            return Err(LayerError::new(
                "Threshold has no gradient (nor has it in Caffe), but the net asks for one through it: its top \
                 feeds a loss and its bottom needs a gradient; set propagate_down: false on this layer's bottom",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::layer_from_text;
    use crate::testing::net_from_text;
    use crema_proto::caffe::Phase;

    fn forward(text: &str, values: &[f32]) -> Vec<f32> {
        let mut layer = layer_from_text(create, text);
        let bottom = Blob::from_data(&[values.len()], values.to_vec()).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        top.data().to_vec()
    }

    #[test]
    fn forward_by_hand() {
        let x = [-1.0, 0.0, 0.25, 0.5, 0.75, f32::NAN, f32::INFINITY];
        assert_eq!(forward("", &x), [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            forward("threshold_param { threshold: 0.5 }", &x),
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
        );
        assert_eq!(
            forward("threshold_param { threshold: -1 }", &x),
            [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
        );
    }

    #[test]
    fn refuses_a_gradient() {
        let mut layer = layer_from_text(create, "");
        assert!(!layer.allow_force_backward(0));
        let mut bottom = Blob::new(&[2]).unwrap();
        let top = Blob::new(&[2]).unwrap();
        layer
            .backward(&[&top], &[false], &mut [&mut bottom])
            .unwrap();
        let err = layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap_err();
        assert!(err.0.contains("Threshold has no gradient"), "{err}");
    }

    const NET: &str = r#"
        layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 } }
        layer { name: "th" type: "Threshold" bottom: "ip" top: "ip" PROPAGATE }
        layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "t" top: "loss" }
    "#;

    #[test]
    fn in_a_net_the_error_names_the_layer_unless_no_gradient_is_asked_for() {
        let mut net = net_from_text(&NET.replace("PROPAGATE", ""), Phase::Train, &[]).unwrap();
        net.forward().unwrap();
        let err = net.backward().unwrap_err().to_string();
        assert!(
            err.contains("\"th\"") && err.contains("Threshold has no gradient"),
            "{err}"
        );
        let text = NET.replace("PROPAGATE", "propagate_down: false");
        let mut net = net_from_text(&text, Phase::Train, &[]).unwrap();
        net.forward().unwrap();
        net.backward().unwrap();
        // force_backward does not ask for one either.
        let frozen = NET.replace("PROPAGATE", "").replace(
            "top: \"ip\" inner_product_param",
            "top: \"ip\" param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param",
        );
        let net =
            net_from_text(&format!("force_backward: true {frozen}"), Phase::Train, &[]).unwrap();
        let th = net.layer_names().position(|n| n == "th").unwrap();
        assert_eq!(net.bottom_needs_backward(th), [false]);
    }
}
