//! Building and running nets: wiring, splits, in-place layers, shared params, stages and backward inference.

use crema_proto::caffe::Phase;

use super::Net;

fn net(definition: &str, phase: Phase, stages: &[&str]) -> crate::Result<Net> {
    crate::testing::net_from_text(definition, phase, stages)
}

const BRANCHY: &str = r#"
name: "branchy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 3 } }
layer { name: "sum" type: "Eltwise" bottom: "ip2" bottom: "data" top: "sum" }
layer { name: "loss" type: "EuclideanLoss" bottom: "sum" bottom: "data" top: "loss" exclude { stage: "deploy" } }
"#;

#[test]
fn a_blob_read_by_several_layers_is_split_and_in_place_relu_is_versioned() {
    let net = net(BRANCHY, Phase::Train, &[]).unwrap();
    let names: Vec<_> = net.layer_names().collect();
    assert_eq!(
        names,
        [
            "data",
            "data_data_0_split",
            "ip1",
            "relu",
            "ip2",
            "sum",
            "loss"
        ]
    );
    assert_eq!(net.blob_names().iter().filter(|n| *n == "ip1").count(), 2);
    assert_eq!(net.input_names(), ["data"]);
    assert_eq!(net.output_names(), ["loss"]);
}

#[test]
fn deploy_stage_drops_the_loss() {
    let net = net(BRANCHY, Phase::Test, &["deploy"]).unwrap();
    assert!(!net.layer_names().any(|n| n == "loss"));
    assert_eq!(net.output_names(), ["sum"]);
}

#[test]
fn shared_params_follow_their_owner_and_collect_its_gradient() {
    let mut net = net(BRANCHY, Phase::Train, &[]).unwrap();
    let shared: Vec<_> = net.params().iter().map(|p| p.owner).collect();
    assert_eq!(shared, [None, None, Some((2, 0)), Some((2, 1))]);
    assert_eq!(net.layer_params(2)[0].data(), net.layer_params(4)[0].data());
    net.blob_mut("data")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[0.5, -1.0, 2.0, 1.5, 0.25, -0.75]);
    net.forward().unwrap();
    net.clear_param_diffs();
    net.backward().unwrap();
    assert!(net.layer_params(4)[0].diff().iter().all(|&d| d == 0.0));
    assert!(net.layer_params(2)[0].diff().iter().any(|&d| d != 0.0));
}

#[test]
fn whole_net_gradient_matches_finite_differences() {
    // The shared weight's gradient, through a split, an in-place ReLU and two users, against central differences.
    let mut net = net(BRANCHY, Phase::Train, &[]).unwrap();
    let input = [0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75];
    net.blob_mut("data")
        .unwrap()
        .data_mut()
        .copy_from_slice(&input);
    net.forward().unwrap();
    net.clear_param_diffs();
    net.backward().unwrap();
    // Parameter gradient of the shared weight against finite differences of the loss.
    let analytic = net.layer_params(2)[0].diff().to_vec();
    let h = 1e-2f32;
    for (i, &expected) in analytic.iter().enumerate() {
        let original = net.layer_params(2)[0].data()[i];
        net.layer_params_mut(2)[0].data_mut()[i] = original + h;
        let plus = net.forward().unwrap();
        net.layer_params_mut(2)[0].data_mut()[i] = original - h;
        let minus = net.forward().unwrap();
        net.layer_params_mut(2)[0].data_mut()[i] = original;
        let numeric = (plus - minus) / (2.0 * h);
        assert!(
            (numeric - expected).abs() < 2e-2 * numeric.abs().max(1.0),
            "w[{i}]: {numeric} vs {expected}"
        );
    }
}

#[test]
fn unknown_layer_type_is_named_at_construction() {
    let err = net(
        "layer { name: 'c1' type: 'Convolution3D' top: 'x' }",
        Phase::Train,
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("layer \"c1\" (Convolution3D): crema has no layer of type \"Convolution3D\""),
        "{err}"
    );
}

#[test]
fn layers_left_out_on_purpose_are_named_as_such() {
    for (type_name, expected) in [
        (
            "LSTM",
            "crema does not implement the recurrent layers LSTM and RNN",
        ),
        (
            "RNN",
            "crema does not implement the recurrent layers LSTM and RNN",
        ),
        ("WindowData", "crema does not implement WindowData"),
        (
            "Python",
            "Python layers run where crema runs inside Python: install the Python package",
        ),
    ] {
        let text = format!("layer {{ name: 'l' type: '{type_name}' top: 'x' }}");
        let err = net(&text, Phase::Train, &[]).err().unwrap().to_string();
        assert!(
            err.contains(&format!("layer \"l\" ({type_name}): {expected}")),
            "{err}"
        );
    }
}

#[test]
fn wrong_number_of_loss_weights_is_an_error() {
    let err = net(
        "layer { name: 'd' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: 2 } } } \
         layer { name: 'l' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'l' loss_weight: 1 loss_weight: 2 }",
        Phase::Train,
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("has 1 tops but 2 loss_weight values"), "{err}");
}

#[test]
fn layers_feeding_no_loss_skip_backward() {
    let net = net(
        "layer { name: 'd' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 4 dim: 2 } } } \
         layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip' inner_product_param { num_output: 2 } } \
         layer { name: 'side' type: 'InnerProduct' bottom: 'x' top: 'side' inner_product_param { num_output: 2 } } \
         layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'y' top: 'loss' }",
        Phase::Train,
        &[],
    )
    .unwrap();
    let needs: Vec<_> = (0..net.layer_names().count())
        .map(|i| net.layer_needs_backward(i))
        .collect();
    let names: Vec<_> = net.layer_names().collect();
    let side = names.iter().position(|n| *n == "side").unwrap();
    let ip = names.iter().position(|n| *n == "ip").unwrap();
    assert!(!needs[side] && needs[ip], "{names:?} {needs:?}");
}

#[test]
fn softmax_feeding_infogain_is_warned_about() {
    let definition = "
        layer { name: 'd' type: 'Input' top: 'x' top: 'label' top: 'H'
                input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } shape { dim: 3 dim: 3 } } }
        layer { name: 'prob' type: 'Softmax' bottom: 'x' top: 'p' }
        layer { name: 'loss' type: 'InfogainLoss' bottom: 'p' bottom: 'label' bottom: 'H' top: 'loss' }";
    let net = net(definition, Phase::Train, &[]).unwrap();
    assert_eq!(net.warnings().len(), 1);
    assert!(
        net.warnings()[0].contains("double softmax"),
        "{}",
        net.warnings()[0]
    );
    let direct = definition.replace("bottom: 'p' bottom: 'label'", "bottom: 'x' bottom: 'label'");
    assert!(self::net(&direct, Phase::Train, &[])
        .unwrap()
        .warnings()
        .is_empty());
}

#[test]
fn a_layer_cannot_share_a_param_with_itself() {
    let err = net(
        "layer { name: 'd' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } } \
         layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y' param { name: 'w' } param { name: 'w' } \
                 inner_product_param { num_output: 3 } }",
        Phase::Train,
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("names param \"w\" twice"), "{err}");
}

#[test]
fn layers_after_a_filter_follow_the_number_of_items_it_keeps() {
    // The selector keeps items 0 and 2 of 4 this pass; the Split and InnerProduct after the Filter reshape to
    // 2 items before they run, as Caffe reshapes every layer before every forward.
    let mut net = net(
        r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "keep" type: "Input" top: "keep" input_param { shape { dim: 4 } } }
layer { name: "f" type: "Filter" bottom: "x" bottom: "keep" top: "kept" }
layer { name: "ip" type: "InnerProduct" bottom: "kept" top: "y"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "also" type: "Power" bottom: "kept" top: "z" }
"#,
        Phase::Test,
        &[],
    )
    .unwrap();
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    net.blob_mut("x").unwrap().data_mut().copy_from_slice(&x);
    net.blob_mut("keep")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[1.0, 0.0, 1.0, 0.0]);
    net.forward().unwrap();
    assert_eq!(net.blob("y").unwrap().shape(), [2, 2]);
    // Rows 0 (0+1+2) and 2 (6+7+8) summed by all-ones weights.
    assert_eq!(net.blob("y").unwrap().data(), [3.0, 3.0, 21.0, 21.0]);
    assert_eq!(net.blob("z").unwrap().shape(), [2, 3]);
    net.blob_mut("keep")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[1.0, 1.0, 1.0, 0.0]);
    net.forward().unwrap();
    assert_eq!(net.blob("y").unwrap().shape(), [3, 2]);
}

#[test]
fn two_layers_of_one_name_with_weights_are_refused() {
    let err = net(
        r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "s" inner_product_param { num_output: 3 } }
layer { name: "act" type: "Sigmoid" bottom: "s" top: "t" }
layer { name: "act" type: "TanH" bottom: "t" top: "u" }
layer { name: "ip" type: "InnerProduct" bottom: "u" top: "y" inner_product_param { num_output: 2 } }
"#,
        Phase::Train,
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(
            "layer \"ip\" (InnerProduct): the name is also that of an earlier InnerProduct layer and both have learnable blobs"
        ),
        "{err}"
    );
}

#[test]
fn an_input_without_a_shape_is_empty_until_given_data() {
    let mut net = net(
        r#"
layer { name: "x" type: "Input" top: "x" }
layer { name: "d" type: "Dropout" bottom: "x" top: "y" }
"#,
        Phase::Test,
        &[],
    )
    .unwrap();
    assert_eq!(net.blob("x").unwrap().shape(), [0]);
    assert_eq!(net.blob("x").unwrap().count(), 0);
    net.forward().unwrap();
    net.blob_mut("x").unwrap().reshape(&[2]).unwrap();
    net.blob_mut("x")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[1.0, 2.0]);
    net.forward().unwrap();
    assert_eq!(net.blob("y").unwrap().data(), [1.0, 2.0]);
}

/// A loss layer that names no top gets an anonymous one, as in Caffe (the PASCAL fine-tuning example relies on
/// it): it weighs 1 in the loss, no layer can read it, and it is not an output; two such layers do not clash.
#[test]
fn a_loss_layer_without_a_top_still_counts_in_the_loss() {
    let definition = "
        layer { name: 'd' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: 2 dim: 3 } } }
        layer { name: 'l1' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' }
        layer { name: 'l2' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' loss_weight: 3 }
        layer { name: 'named' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'named' }";
    let mut built = net(definition, Phase::Train, &[]).unwrap();
    assert_eq!(built.output_names(), ["named"]);
    built.blob_mut("a").unwrap().data_mut().fill(1.0);
    built.blob_mut("b").unwrap().data_mut().fill(0.0);
    // Each EuclideanLoss is sum((a - b)²) / (2·num) = 6 / 4 = 1.5; weights 1, 3 and 1.
    let loss = built.forward().unwrap();
    assert!((loss - 1.5 * 5.0).abs() < 1e-5, "{loss}");
    assert_eq!(
        built
            .blob_names()
            .iter()
            .filter(|n| *n == super::graph::AUTOMATIC_TOP)
            .count(),
        2
    );
    let err = net(
        "layer { name: 'd' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: 2 dim: 3 } } }
         layer { name: 'l1' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' }
         layer { name: 'p' type: 'Power' bottom: '(automatic)' top: 'p' }",
        Phase::Train,
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("bottom[0] \"(automatic)\" is not produced"),
        "{err}"
    );
}
