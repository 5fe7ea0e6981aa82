//! Bringing old nets and solvers to today's form on load, in the order Caffe applies its upgrades:
//!
//! 1. V0 layers (`layers { layer { type: "conv" ... } }`) to V1 (`v0.rs`), folding V0 padding layers into the
//!    convolution or pooling that reads them;
//! 2. V1 data layers' `scale`/`mean_file`/`crop_size`/`mirror` into `transform_param`;
//! 3. V1 layers (`layers { type: INFOGAIN_LOSS blobs_lr: 1 }`) to `layer { type: "InfogainLoss" param { lr_mult } }`
//!    (`v1.rs`);
//! 4. the net-level `input`/`input_dim`/`input_shape` fields to an `Input` layer;
//! 5. old BatchNorm layers that list three `param`s get lr_mult and decay_mult 0.
//!
//! Solvers: the deprecated `solver_type` enum becomes the `type` string.

mod v0;
mod v1;

use crate::caffe::{
    solver_parameter::SolverType, v1_layer_parameter::LayerType, InputParameter, LayerParameter,
    NetParameter, SolverParameter, TransformationParameter,
};
use crate::error::{ProtoError, Result};

/// What an upgrade did: one line per step taken, and warnings for what it could not carry over.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpgradeReport {
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

impl UpgradeReport {
    /// Whether anything was changed.
    pub fn upgraded(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Whether `net` uses any deprecated form that [`upgrade_net`] rewrites.
pub fn net_needs_upgrade(net: &NetParameter) -> bool {
    !net.layers.is_empty() || !net.input.is_empty() || needs_batch_norm_upgrade(net)
}

/// Upgrades `net` in place to the current format; `origin` names the file in errors.
///
/// ```
/// use crema_proto::{text, upgrade, NetParameter};
/// let mut net: NetParameter = text::parse(
///     "layers { name: 'loss' type: INFOGAIN_LOSS bottom: 'fc' bottom: 'label' blobs_lr: 2
///               infogain_loss_param { source: 'H.binaryproto' } }", "<doc>")?;
/// upgrade::upgrade_net(&mut net, "<doc>")?;
/// assert_eq!(net.layer[0].r#type(), "InfogainLoss");
/// assert_eq!(net.layer[0].param[0].lr_mult(), 2.0);
/// assert_eq!(net.layer[0].infogain_loss_param.as_ref().unwrap().source(), "H.binaryproto");
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn upgrade_net(net: &mut NetParameter, origin: &str) -> Result<UpgradeReport> {
    let mut report = UpgradeReport::default();
    if net.layers.iter().any(|layer| layer.layer.is_some()) {
        v0::upgrade_v0_net(net, origin, &mut report)?;
        report
            .steps
            .push("V0 layer definitions upgraded to V1".into());
    }
    if upgrade_data_transformation(net) {
        report.steps.push(
            "data layers' scale/mean_file/crop_size/mirror moved into transform_param".into(),
        );
    }
    if !net.layers.is_empty() {
        if !net.layer.is_empty() {
            return Err(ProtoError::invalid(
                origin,
                "layers",
                "the net has both 'layer' and 'layers' (V1) definitions; write every layer in one form",
            ));
        }
        v1::upgrade_v1_net(net, origin, &mut report)?;
        report
            .steps
            .push("V1 'layers' definitions upgraded to 'layer'".into());
    }
    if !net.input.is_empty() {
        upgrade_input_fields(net, origin)?;
        report
            .steps
            .push("net-level input fields replaced by an Input layer".into());
    }
    if needs_batch_norm_upgrade(net) {
        upgrade_batch_norm(net);
        report
            .steps
            .push("BatchNorm layers with three params set to lr_mult 0, decay_mult 0".into());
    }
    Ok(report)
}

/// Upgrades the deprecated `solver_type` enum to the `type` string.
///
/// ```
/// use crema_proto::{text, upgrade, SolverParameter};
/// let mut solver: SolverParameter = text::parse("solver_type: NESTEROV base_lr: 0.1", "<doc>")?;
/// upgrade::upgrade_solver(&mut solver, "<doc>")?;
/// assert_eq!(solver.r#type(), "Nesterov");
/// assert!(solver.solver_type.is_none());
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn upgrade_solver(solver: &mut SolverParameter, origin: &str) -> Result<UpgradeReport> {
    let mut report = UpgradeReport::default();
    // Nets written inside the solver are upgraded like nets read from their own files.
    let inline_nets = solver
        .net_param
        .iter_mut()
        .map(|net| ("net_param".to_owned(), net))
        .chain(
            solver
                .train_net_param
                .iter_mut()
                .map(|net| ("train_net_param".to_owned(), net)),
        )
        .chain(
            solver
                .test_net_param
                .iter_mut()
                .enumerate()
                .map(|(i, net)| (format!("test_net_param[{i}]"), net)),
        );
    for (field, net) in inline_nets {
        let net_report = upgrade_net(net, &format!("{origin}: {field}"))?;
        report.steps.extend(
            net_report
                .steps
                .into_iter()
                .map(|step| format!("{field}: {step}")),
        );
        report.warnings.extend(
            net_report
                .warnings
                .into_iter()
                .map(|w| format!("{field}: {w}")),
        );
    }
    let Some(old) = solver.solver_type else {
        return Ok(report);
    };
    if solver.r#type.is_some() {
        return Err(ProtoError::invalid(
            origin,
            "solver_type",
            "both the deprecated 'solver_type' enum and 'type' are set; keep only 'type'",
        ));
    }
    let name = match SolverType::try_from(old) {
        Ok(SolverType::Sgd) => "SGD",
        Ok(SolverType::Nesterov) => "Nesterov",
        Ok(SolverType::Adagrad) => "AdaGrad",
        Ok(SolverType::Rmsprop) => "RMSProp",
        Ok(SolverType::Adadelta) => "AdaDelta",
        Ok(SolverType::Adam) => "Adam",
        Err(_) => {
            return Err(ProtoError::invalid(
                origin,
                "solver_type",
                format!("unknown solver_type value {old}"),
            ))
        }
    };
    solver.r#type = Some(name.to_owned());
    solver.solver_type = None;
    report
        .steps
        .push(format!("solver_type enum upgraded to type: \"{name}\""));
    Ok(report)
}

/// Moves V1 data layers' transformation fields into `transform_param`; returns whether anything moved.
fn upgrade_data_transformation(net: &mut NetParameter) -> bool {
    let mut changed = false;
    for layer in &mut net.layers {
        let (scale, mean_file, crop_size, mirror) = match layer.r#type() {
            LayerType::Data => match layer.data_param.as_mut() {
                Some(p) => (
                    p.scale.take(),
                    p.mean_file.take(),
                    p.crop_size.take(),
                    p.mirror.take(),
                ),
                None => continue,
            },
            LayerType::ImageData => match layer.image_data_param.as_mut() {
                Some(p) => (
                    p.scale.take(),
                    p.mean_file.take(),
                    p.crop_size.take(),
                    p.mirror.take(),
                ),
                None => continue,
            },
            LayerType::WindowData => match layer.window_data_param.as_mut() {
                Some(p) => (
                    p.scale.take(),
                    p.mean_file.take(),
                    p.crop_size.take(),
                    p.mirror.take(),
                ),
                None => continue,
            },
            _ => continue,
        };
        if scale.is_none() && mean_file.is_none() && crop_size.is_none() && mirror.is_none() {
            continue;
        }
        changed = true;
        let transform = layer
            .transform_param
            .get_or_insert_with(TransformationParameter::default);
        transform.scale = scale.or(transform.scale);
        transform.mean_file = mean_file.or(transform.mean_file.take());
        transform.crop_size = crop_size.or(transform.crop_size);
        transform.mirror = mirror.or(transform.mirror);
    }
    changed
}

/// Replaces `input` + `input_shape`/`input_dim` with an `Input` layer placed first. Inputs without shapes (as in
/// old caffemodels) are simply dropped, as Caffe does.
fn upgrade_input_fields(net: &mut NetParameter, origin: &str) -> Result<()> {
    let inputs = std::mem::take(&mut net.input);
    let shapes = std::mem::take(&mut net.input_shape);
    let dims = std::mem::take(&mut net.input_dim);
    if shapes.is_empty() && dims.is_empty() {
        return Ok(());
    }
    let shapes = if !shapes.is_empty() {
        if shapes.len() != inputs.len() {
            return Err(ProtoError::invalid(
                origin,
                "input_shape",
                format!(
                    "{} input_shape entries for {} inputs; give one per input",
                    shapes.len(),
                    inputs.len()
                ),
            ));
        }
        shapes
    } else {
        if dims.len() != 4 * inputs.len() {
            return Err(ProtoError::invalid(
                origin,
                "input_dim",
                format!(
                    "{} input_dim values for {} inputs; give four per input",
                    dims.len(),
                    inputs.len()
                ),
            ));
        }
        dims.chunks(4)
            .map(|d| crate::caffe::BlobShape {
                dim: d.iter().map(|&v| i64::from(v)).collect(),
            })
            .collect()
    };
    let layer = LayerParameter {
        name: Some("input".into()),
        r#type: Some("Input".into()),
        top: inputs,
        input_param: Some(InputParameter { shape: shapes }),
        ..Default::default()
    };
    net.layer.insert(0, layer);
    Ok(())
}

fn needs_batch_norm_upgrade(net: &NetParameter) -> bool {
    net.layer
        .iter()
        .any(|layer| layer.r#type() == "BatchNorm" && layer.param.len() == 3)
}

fn upgrade_batch_norm(net: &mut NetParameter) {
    for layer in &mut net.layer {
        if layer.r#type() == "BatchNorm" && layer.param.len() == 3 {
            for param in &mut layer.param {
                param.lr_mult = Some(0.0);
                param.decay_mult = Some(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    #[test]
    fn input_dim_becomes_an_input_layer_first() {
        let mut net: NetParameter = text::parse(
            "input: 'data' input_dim: 10 input_dim: 3 input_dim: 4 input_dim: 5 \
             layer { name: 'r' type: 'ReLU' bottom: 'data' top: 'data' }",
            "t",
        )
        .unwrap();
        let report = upgrade_net(&mut net, "t").unwrap();
        assert!(report.upgraded());
        assert_eq!(net.layer[0].r#type(), "Input");
        assert_eq!(net.layer[0].top, vec!["data".to_string()]);
        assert_eq!(
            net.layer[0].input_param.as_ref().unwrap().shape[0].dim,
            vec![10, 3, 4, 5]
        );
        assert!(net.input.is_empty() && net.input_dim.is_empty());
        assert_eq!(net.layer[1].name(), "r");
    }

    #[test]
    fn input_dim_count_must_be_four_per_input() {
        let mut net: NetParameter =
            text::parse("input: 'a' input_dim: 1 input_dim: 2", "t").unwrap();
        let err = upgrade_net(&mut net, "net.prototxt")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input_dim") && err.contains("four per input"),
            "{err}"
        );
    }

    #[test]
    fn shapeless_inputs_are_dropped() {
        let mut net: NetParameter = text::parse("input: 'a'", "t").unwrap();
        upgrade_net(&mut net, "t").unwrap();
        assert!(net.layer.is_empty() && net.input.is_empty());
    }

    #[test]
    fn batch_norm_with_three_params_is_frozen() {
        let mut net: NetParameter = text::parse(
            "layer { type: 'BatchNorm' param {} param {} param { lr_mult: 1 } }",
            "t",
        )
        .unwrap();
        upgrade_net(&mut net, "t").unwrap();
        assert!(net.layer[0]
            .param
            .iter()
            .all(|p| p.lr_mult() == 0.0 && p.decay_mult() == 0.0));
    }

    #[test]
    fn layer_and_layers_together_are_refused() {
        let mut net: NetParameter =
            text::parse("layer { type: 'ReLU' } layers { type: RELU }", "t").unwrap();
        assert!(upgrade_net(&mut net, "t")
            .unwrap_err()
            .to_string()
            .contains("both 'layer' and 'layers'"));
    }

    #[test]
    fn inline_nets_in_a_solver_are_upgraded() {
        let mut solver: SolverParameter = text::parse(
            "net_param { layers { name: 'r' type: RELU } } test_net_param { input: 'x' }",
            "t",
        )
        .unwrap();
        let report = upgrade_solver(&mut solver, "t").unwrap();
        assert_eq!(solver.net_param.as_ref().unwrap().layer[0].r#type(), "ReLU");
        assert!(
            report.steps[0].starts_with("net_param: V1"),
            "{:?}",
            report.steps
        );
    }

    #[test]
    fn solver_type_and_type_together_are_refused() {
        let mut solver: SolverParameter =
            text::parse("solver_type: ADAM type: 'Adam'", "t").unwrap();
        assert!(upgrade_solver(&mut solver, "t").is_err());
    }

    #[test]
    fn v1_data_layer_transform_fields_move() {
        let mut net: NetParameter = text::parse(
            "layers { name: 'd' type: DATA top: 'data' data_param { source: 'db' scale: 0.5 mirror: true batch_size: 4 } }",
            "t",
        )
        .unwrap();
        upgrade_net(&mut net, "t").unwrap();
        let layer = &net.layer[0];
        assert_eq!(layer.r#type(), "Data");
        let transform = layer.transform_param.as_ref().unwrap();
        assert_eq!((transform.scale(), transform.mirror()), (0.5, true));
        let data = layer.data_param.as_ref().unwrap();
        assert!(data.scale.is_none() && data.mirror.is_none());
        assert_eq!(data.batch_size(), 4);
    }
}
