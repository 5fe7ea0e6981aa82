//! The whole update on nets: accumulated gradients, decay, clipping, multipliers, sharing, the factory, and one
//! SGD step on a real InnerProduct net. Expected values are worked out by hand, in plain arithmetic.

use crema_proto::{text, NetParameter, NetState, SolverParameter};

use super::*;
use crate::net::NetOptions;

/// Runs `rule` on one learnable blob for the given gradients (one per iteration, from 0); returns each step.
pub(super) fn steps(
    rule: &mut dyn UpdateRule,
    gradients: &[&[f32]],
    local_rate: f32,
) -> Vec<Vec<f32>> {
    rule.presolve(&[&[gradients[0].len()]]).unwrap();
    gradients
        .iter()
        .enumerate()
        .map(|(iter, g)| {
            let mut diff = g.to_vec();
            rule.compute_update(0, 0, &mut diff, local_rate, iter as u32);
            diff
        })
        .collect()
}

/// `actual` equals `expected` to f32 precision (relative 2e-6, or 1e-12 absolute near zero).
pub(super) fn assert_close(actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (&a, &e) in actual.iter().zip(expected) {
        let tolerance = 2e-6 * e.abs() + 1e-12;
        assert!(
            (f64::from(a) - e).abs() <= tolerance,
            "{actual:?} vs {expected:?}"
        );
    }
}

fn solver(definition: &str) -> SolverParameter {
    text::parse(definition, "solver.prototxt").unwrap()
}

fn build(definition: &str) -> Net {
    let param: NetParameter = text::parse(definition, "test.prototxt").unwrap();
    let state = NetState {
        phase: Some(crema_proto::caffe::Phase::Train as i32),
        ..Default::default()
    };
    Net::new(&param, &state, &NetOptions::default()).unwrap()
}

/// A Parameter layer `name` holding one learnable blob of `dims`, with its ParamSpec `spec`.
fn parameter(name: &str, dims: &[usize], spec: &str) -> String {
    let dims: String = dims.iter().map(|d| format!("dim: {d} ")).collect();
    format!(
        "layer {{ name: \"{name}\" type: \"Parameter\" top: \"{name}\" param {{ {spec} }} \
         parameter_param {{ shape {{ {dims}}} }} }}\n"
    )
}

/// Sets the values and gradient of layer `name`'s learnable blob.
fn set(net: &mut Net, name: &str, data: &[f32], diff: &[f32]) {
    let layer = net.layer_index(name).unwrap();
    let blob = &mut net.layer_params_mut(layer)[0];
    blob.data_mut().copy_from_slice(data);
    blob.diff_mut().copy_from_slice(diff);
}

fn data(net: &Net, name: &str) -> Vec<f32> {
    net.layer_params(net.layer_index(name).unwrap())[0]
        .data()
        .to_vec()
}

fn update(net: &mut Net, param: &SolverParameter, iter: u32) -> (Box<dyn UpdateRule>, f32) {
    let mut rule = create_rule(param).unwrap();
    let rate = apply_update(net, rule.as_mut(), param, iter).unwrap();
    (rule, rate)
}

#[test]
fn sgd_with_accumulated_gradients_decay_multipliers_and_momentum() {
    let definition = parameter("a", &[2], "lr_mult: 1 decay_mult: 1")
        + &parameter("b", &[1], "lr_mult: 2 decay_mult: 0");
    let mut net = build(&definition);
    let param = solver(
        "type: \"SGD\" base_lr: 0.1 lr_policy: \"fixed\" momentum: 0.5 weight_decay: 0.01 iter_size: 2",
    );
    let mut rule = create_rule(&param).unwrap();

    // Iteration 0: gradients summed over 2 passes.
    set(&mut net, "a", &[1.0, -2.0], &[0.4, 0.6]);
    set(&mut net, "b", &[3.0], &[1.0]);
    assert_eq!(
        apply_update(&mut net, rule.as_mut(), &param, 0).unwrap(),
        0.1
    );
    // a: g = [0.4/2 + 0.01·1, 0.6/2 + 0.01·(−2)] = [0.21, 0.28]; h = 0.1·g; data −= h.
    let ha1 = [0.1 * 0.21, 0.1 * 0.28];
    let a1 = [1.0 - ha1[0], -2.0 - ha1[1]];
    // b: no decay (decay_mult 0); g = 1/2; local rate 0.1·2; h = 0.2·0.5.
    let hb1 = 0.2 * 0.5;
    let b1 = 3.0 - hb1;
    assert_close(&data(&net, "a"), &a1);
    assert_close(&data(&net, "b"), &[b1]);
    assert_close(rule.history()[0].data(), &ha1);
    assert_close(rule.history()[1].data(), &[hb1]);
    // The diff holds the step afterwards, as in Caffe.
    assert_close(net.layer_params(0)[0].diff(), &ha1);

    // Iteration 1.
    let (a1f, b1f) = (data(&net, "a"), data(&net, "b"));
    set(&mut net, "a", &a1f, &[0.2, -0.2]);
    set(&mut net, "b", &b1f, &[0.0]);
    apply_update(&mut net, rule.as_mut(), &param, 1).unwrap();
    let ga2 = [0.2 / 2.0 + 0.01 * a1[0], -0.2 / 2.0 + 0.01 * a1[1]];
    let ha2 = [0.1 * ga2[0] + 0.5 * ha1[0], 0.1 * ga2[1] + 0.5 * ha1[1]];
    let hb2 = 0.2 * 0.0 + 0.5 * hb1;
    assert_close(&data(&net, "a"), &[a1[0] - ha2[0], a1[1] - ha2[1]]);
    assert_close(&data(&net, "b"), &[b1 - hb2]);
}

#[test]
fn l1_decay_adds_the_sign_of_the_weights() {
    let mut net = build(&parameter("a", &[3], "decay_mult: 2"));
    set(&mut net, "a", &[2.0, -3.0, 0.0], &[0.5, 0.5, 0.5]);
    let param =
        solver("base_lr: 1 lr_policy: \"fixed\" weight_decay: 0.1 regularization_type: \"L1\"");
    update(&mut net, &param, 0);
    // local decay 0.1·2; g = diff + 0.2·sign(w)
    assert_close(
        &data(&net, "a"),
        &[2.0 - (0.5 + 0.2), -3.0 - (0.5 - 0.2), 0.0 - 0.5],
    );
}

#[test]
fn l2_decay_is_weight_decay_times_decay_mult() {
    let mut net = build(&parameter("a", &[2], "decay_mult: 3"));
    set(&mut net, "a", &[2.0, -1.0], &[0.0, 0.0]);
    let param = solver("base_lr: 0.5 lr_policy: \"fixed\" weight_decay: 0.1");
    update(&mut net, &param, 0);
    // g = 0.1·3·w; data −= 0.5·g
    assert_close(
        &data(&net, "a"),
        &[2.0 - 0.5 * (0.3 * 2.0), -1.0 + 0.5 * (0.3 * 1.0)],
    );
}

#[test]
fn clipping_uses_the_global_norm_of_the_summed_gradients_before_normalization_and_decay() {
    let definition = parameter("a", &[1], "") + &parameter("b", &[1], "");
    let mut net = build(&definition);
    set(&mut net, "a", &[1.0], &[6.0]);
    set(&mut net, "b", &[1.0], &[8.0]);
    let param =
        solver("base_lr: 1 lr_policy: \"fixed\" clip_gradients: 1 iter_size: 2 weight_decay: 0.5");
    update(&mut net, &param, 0);
    // ‖(6, 8)‖ = 10 > 1: factor 1/10 → (0.6, 0.8); then /2 → (0.3, 0.4); then + 0.5·w (unclipped).
    assert_close(&data(&net, "a"), &[1.0 - (0.6 / 2.0 + 0.5)]);
    assert_close(&data(&net, "b"), &[1.0 - (0.8 / 2.0 + 0.5)]);

    // Under the threshold nothing is scaled.
    set(&mut net, "a", &[1.0], &[0.3]);
    set(&mut net, "b", &[1.0], &[0.4]);
    let param = solver("base_lr: 1 lr_policy: \"fixed\" clip_gradients: 1");
    update(&mut net, &param, 0);
    assert_close(&data(&net, "a"), &[0.7]);
    assert_close(&data(&net, "b"), &[0.6]);
}

#[test]
fn lr_mult_zero_freezes_a_blob_and_decay_mult_zero_skips_decay() {
    let definition =
        parameter("frozen", &[2], "lr_mult: 0") + &parameter("free", &[1], "decay_mult: 0");
    let mut net = build(&definition);
    set(&mut net, "frozen", &[1.0, 2.0], &[5.0, -5.0]);
    set(&mut net, "free", &[4.0], &[1.0]);
    for rule_type in SOLVER_TYPES {
        let param = solver(&format!(
            "type: \"{rule_type}\" base_lr: 0.1 lr_policy: \"fixed\" weight_decay: 1"
        ));
        let mut rule = create_rule(&param).unwrap();
        let (frozen, free) = (data(&net, "frozen"), data(&net, "free"));
        set(&mut net, "frozen", &frozen, &[5.0, -5.0]);
        set(&mut net, "free", &free, &[1.0]);
        apply_update(&mut net, rule.as_mut(), &param, 0).unwrap();
        assert_eq!(data(&net, "frozen"), [1.0, 2.0], "{rule_type}");
        assert_ne!(data(&net, "free"), free, "{rule_type}");
    }
    // With SGD and no momentum, the free blob moved by exactly 0.1·g with no decay.
    set(&mut net, "free", &[4.0], &[1.0]);
    update(
        &mut net,
        &solver("base_lr: 0.1 lr_policy: \"fixed\" weight_decay: 1"),
        0,
    );
    assert_close(&data(&net, "free"), &[4.0 - 0.1]);
}

#[test]
fn shared_blobs_are_updated_through_their_owner_only() {
    let definition = parameter("a", &[2], "name: \"w\"") + &parameter("b", &[2], "name: \"w\"");
    let mut net = build(&definition);
    assert_eq!(net.params()[1].owner, Some((0, 0)));
    set(&mut net, "a", &[1.0, 1.0], &[1.0, 2.0]);
    set(&mut net, "b", &[1.0, 1.0], &[100.0, 100.0]);
    let (rule, _) = update(&mut net, &solver("base_lr: 0.5 lr_policy: \"fixed\""), 0);
    assert_eq!(rule.history().len(), 1);
    assert_close(&data(&net, "a"), &[0.5, 0.0]);
    assert_eq!(data(&net, "b"), [1.0, 1.0]);
}

#[test]
fn apply_update_returns_the_policy_rate() {
    let mut net = build(&parameter("a", &[1], ""));
    let param = solver("base_lr: 1 lr_policy: \"step\" gamma: 0.5 stepsize: 2");
    let mut rule = create_rule(&param).unwrap();
    let rates: Vec<f32> = (0..5)
        .map(|iter| apply_update(&mut net, rule.as_mut(), &param, iter).unwrap())
        .collect();
    assert_eq!(rates, [1.0, 1.0, 0.5, 0.5, 0.25]);
}

#[test]
fn bad_settings_fail_before_anything_changes() {
    let mut net = build(&parameter("a", &[1], ""));
    set(&mut net, "a", &[1.0], &[1.0]);
    for (definition, field) in [
        ("base_lr: 1 lr_policy: \"warmup\"", "lr_policy"),
        ("base_lr: 1 lr_policy: \"fixed\" iter_size: 0", "iter_size"),
        (
            "base_lr: 1 lr_policy: \"fixed\" regularization_type: \"L0\"",
            "regularization_type",
        ),
    ] {
        let param = solver(definition);
        let mut rule = Sgd::new(0.0);
        let error = apply_update(&mut net, &mut rule, &param, 0).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
        assert_eq!(data(&net, "a"), [1.0]);
    }
}

#[test]
fn histories_that_do_not_fit_the_net_are_refused() {
    let two = build(&(parameter("a", &[2], "") + &parameter("b", &[3], "")));
    let mut one = build(&parameter("a", &[2], ""));
    let param = solver("type: \"Adam\" base_lr: 1 lr_policy: \"fixed\"");
    let mut rule = create_rule(&param).unwrap();
    presolve(&two, rule.as_mut()).unwrap();
    assert_eq!(rule.history().len(), 4);
    let error = apply_update(&mut one, rule.as_mut(), &param, 0).unwrap_err();
    assert!(matches!(error, SolverError::History(_)), "{error}");

    let mut rule = create_rule(&param).unwrap();
    presolve(&one, rule.as_mut()).unwrap();
    rule.history_mut()[1] = Blob::new(&[5]).unwrap();
    let error = apply_update(&mut one, rule.as_mut(), &param, 0).unwrap_err();
    assert!(error.to_string().contains("history blob 1"), "{error}");
}

#[test]
fn the_factory_knows_caffes_six_types() {
    for (name, per_param) in [
        ("SGD", 1),
        ("Nesterov", 1),
        ("AdaGrad", 1),
        ("RMSProp", 1),
        ("AdaDelta", 2),
        ("Adam", 2),
    ] {
        let rule = create_rule(&solver(&format!("type: \"{name}\""))).unwrap();
        assert_eq!(rule.type_name(), name);
        assert_eq!(rule.histories().per_param(), per_param);
    }
    assert_eq!(
        create_rule(&SolverParameter::default())
            .unwrap()
            .type_name(),
        "SGD"
    );
    // The deprecated enum still names a type, but not together with `type`.
    let old = solver("solver_type: ADAGRAD");
    assert_eq!(create_rule(&old).unwrap().type_name(), "AdaGrad");
    let both = solver("solver_type: ADAM type: \"Adam\"");
    assert!(create_rule(&both)
        .err()
        .unwrap()
        .to_string()
        .contains("solver_type"));

    let message = create_rule(&solver("type: \"sgd\""))
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("`type`") && message.contains("\"sgd\""),
        "{message}"
    );
    for name in SOLVER_TYPES {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn the_factory_checks_settings_as_caffe_does() {
    for (definition, field) in [
        ("type: \"AdaGrad\" momentum: 0.9", "momentum"),
        ("type: \"RMSProp\" momentum: 0.9", "momentum"),
        ("type: \"RMSProp\" rms_decay: 1", "rms_decay"),
        ("type: \"RMSProp\" rms_decay: -0.1", "rms_decay"),
        ("type: \"Adam\" momentum: 1", "momentum"),
        ("type: \"Adam\" momentum2: 1.5", "momentum2"),
    ] {
        match create_rule(&solver(definition)) {
            Err(SolverError::Field { field: named, .. }) => {
                assert_eq!(named, field, "{definition}")
            }
            Err(other) => panic!("{definition}: {other}"),
            Ok(_) => panic!("{definition} was accepted"),
        }
    }
    // Momentum is fine where Caffe uses it.
    for name in ["SGD", "Nesterov", "AdaDelta", "Adam"] {
        assert!(create_rule(&solver(&format!("type: \"{name}\" momentum: 0.9"))).is_ok());
    }
}

const REGRESSION: &str = r#"
name: "regression"
layer { name: "input" type: "Input" top: "data" top: "target"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "out"
        param { lr_mult: 1 } param { lr_mult: 2 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "target" top: "loss" }
"#;

#[test]
fn one_sgd_step_on_a_real_net_moves_weights_by_minus_lr_times_gradient() {
    let mut net = build(REGRESSION);
    net.blob_mut("data")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[0.5, -1.0, 2.0, 1.5, 0.25, -0.75]);
    net.blob_mut("target")
        .unwrap()
        .data_mut()
        .copy_from_slice(&[1.0, -1.0, 0.0, 2.0]);
    net.clear_param_diffs();
    let loss_before = net.forward().unwrap();
    net.backward().unwrap();
    let ip = net.layer_index("ip").unwrap();
    let weights = net.layer_params(ip)[0].data().to_vec();
    let weight_grad = net.layer_params(ip)[0].diff().to_vec();
    let bias = net.layer_params(ip)[1].data().to_vec();
    let bias_grad = net.layer_params(ip)[1].diff().to_vec();
    assert!(weight_grad.iter().any(|&g| g != 0.0));

    let param = solver("type: \"SGD\" base_lr: 0.05 lr_policy: \"fixed\" momentum: 0.9");
    let (_, rate) = update(&mut net, &param, 0);
    assert_eq!(rate, 0.05);
    let expected_weights: Vec<f32> = weights
        .iter()
        .zip(&weight_grad)
        .map(|(&w, &g)| w - 0.05 * g)
        .collect();
    let expected_bias: Vec<f32> = bias
        .iter()
        .zip(&bias_grad)
        .map(|(&b, &g)| b - (0.05 * 2.0) * g)
        .collect();
    assert_eq!(net.layer_params(ip)[0].data(), expected_weights);
    assert_eq!(net.layer_params(ip)[1].data(), expected_bias);

    let loss_after = net.forward().unwrap();
    assert!(loss_after < loss_before, "{loss_after} ≥ {loss_before}");
}

#[test]
fn blobs_larger_than_one_piece_are_updated_whole() {
    // 10 000 values span three pieces of the fused update; every element must follow the same formula.
    let definition =
        "layer { name: 'p' type: 'Parameter' top: 'p' parameter_param { shape { dim: 10000 } } }";
    let param: NetParameter = text::parse(definition, "net.prototxt").unwrap();
    let mut net = Net::new(&param, &NetState::default(), &NetOptions::default()).unwrap();
    let settings =
        solver("base_lr: 0.5 lr_policy: 'fixed' momentum: 0.9 weight_decay: 0.1 type: 'Adam'");
    let mut rule = create_rule(&settings).unwrap();
    let start: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.37).sin()).collect();
    let gradient: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.11).cos()).collect();
    net.layer_params_mut(0)[0]
        .data_mut()
        .copy_from_slice(&start);
    let mut expected = Vec::new();
    for iter in 0..2u32 {
        net.layer_params_mut(0)[0]
            .diff_mut()
            .copy_from_slice(&gradient);
        apply_update(&mut net, rule.as_mut(), &settings, iter).unwrap();
        expected.push(net.layer_params(0)[0].data().to_vec());
    }
    // The same two steps element by element, as Adam with decay defines them (β1 0.9, β2 0.999, ε 1e-8).
    for i in [0, 4095, 4096, 8191, 8192, 9999] {
        let (mut w, mut m, mut v) = (f64::from(start[i]), 0.0f64, 0.0f64);
        for (iter, after) in expected.iter().enumerate() {
            let g = f64::from(gradient[i]) + 0.1 * w;
            m = 0.1 * g + 0.9 * m;
            v = 0.001 * g * g + 0.999 * v;
            let t = iter as i32 + 1;
            let rate = 0.5 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            w -= rate * m / (v.sqrt() + 1e-8);
            assert!(
                (f64::from(after[i]) - w).abs() < 1e-5,
                "element {i}, step {iter}: {} vs {w}",
                after[i]
            );
        }
    }
}
