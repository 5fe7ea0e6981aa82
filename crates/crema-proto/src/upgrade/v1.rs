//! V1 layers (`layers { type: SOFTMAX_LOSS blobs_lr: 1 weight_decay: 0 }`) to current ones.
//!
//! Every field that V1 and current layers share by name and kind (bottom, top, include, every `*_param`, ...)
//! moves as it is, through reflection, so that no parameter message is forgotten. The rest is mapped here:
//! the type enum to its string, and `blobs_lr`/`weight_decay`/`param`/`blob_share_mode` into `param` specs.

use prost_reflect::DynamicMessage;

use super::UpgradeReport;
use crate::caffe::{
    param_spec::DimCheckMode, v1_layer_parameter::LayerType, LayerParameter, ParamSpec,
};
use crate::caffe::{NetParameter, V1LayerParameter};
use crate::descriptor::CaffeMessage;
use crate::error::{ProtoError, Result};

/// The current type string of a V1 layer type.
pub fn v1_type_name(layer_type: LayerType) -> &'static str {
    use LayerType::*;
    match layer_type {
        None => "",
        Absval => "AbsVal",
        Accuracy => "Accuracy",
        Argmax => "ArgMax",
        Bnll => "BNLL",
        Concat => "Concat",
        ContrastiveLoss => "ContrastiveLoss",
        Convolution => "Convolution",
        Deconvolution => "Deconvolution",
        Data => "Data",
        Dropout => "Dropout",
        DummyData => "DummyData",
        EuclideanLoss => "EuclideanLoss",
        Eltwise => "Eltwise",
        Exp => "Exp",
        Flatten => "Flatten",
        Hdf5Data => "HDF5Data",
        Hdf5Output => "HDF5Output",
        HingeLoss => "HingeLoss",
        Im2col => "Im2col",
        ImageData => "ImageData",
        InfogainLoss => "InfogainLoss",
        InnerProduct => "InnerProduct",
        Lrn => "LRN",
        MemoryData => "MemoryData",
        MultinomialLogisticLoss => "MultinomialLogisticLoss",
        Mvn => "MVN",
        Pooling => "Pooling",
        Power => "Power",
        Relu => "ReLU",
        Sigmoid => "Sigmoid",
        SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        Silence => "Silence",
        Softmax => "Softmax",
        SoftmaxLoss => "SoftmaxWithLoss",
        Split => "Split",
        Slice => "Slice",
        Tanh => "TanH",
        WindowData => "WindowData",
        Threshold => "Threshold",
    }
}

/// Fields of V1 layers that are not moved by name.
const MAPPED_HERE: &[&str] = &[
    "layer",
    "type",
    "blobs_lr",
    "weight_decay",
    "param",
    "blob_share_mode",
];

pub(super) fn upgrade_v1_net(
    net: &mut NetParameter,
    origin: &str,
    report: &mut UpgradeReport,
) -> Result<()> {
    let old = std::mem::take(&mut net.layers);
    net.layer = old
        .iter()
        .enumerate()
        .map(|(index, layer)| upgrade_v1_layer(layer, index, origin, report))
        .collect::<Result<_>>()?;
    Ok(())
}

fn upgrade_v1_layer(
    old: &V1LayerParameter,
    index: usize,
    origin: &str,
    report: &mut UpgradeReport,
) -> Result<LayerParameter> {
    let what = format!("layers[{index}] \"{}\"", old.name());
    let source = old.to_dynamic();
    let mut moved = DynamicMessage::new(LayerParameter::descriptor());
    let target = LayerParameter::descriptor();
    for (field, value) in source.fields() {
        if MAPPED_HERE.contains(&field.name()) {
            continue;
        }
        match target.get_field_by_name(field.name()) {
            Some(to) if to.kind() == field.kind() && to.cardinality() == field.cardinality() => {
                moved.set_field(&to, value.clone());
            }
            _ => {
                return Err(ProtoError::invalid(
                    origin,
                    format!("{what}.{}", field.name()),
                    "has no counterpart in the current layer format",
                ))
            }
        }
    }
    let mut layer = LayerParameter::from_dynamic(&moved);

    if old.layer.is_some() {
        report.warnings.push(format!(
            "{what}: a V0 'layer' block beside V1 fields was ignored"
        ));
    }
    if let Some(raw) = old.r#type {
        let layer_type = LayerType::try_from(raw).map_err(|_| {
            ProtoError::invalid(
                origin,
                format!("{what}.type"),
                format!("unknown V1 layer type {raw}"),
            )
        })?;
        layer.r#type = Some(v1_type_name(layer_type).to_owned());
    }

    let specs = old
        .param
        .len()
        .max(old.blob_share_mode.len())
        .max(old.blobs_lr.len())
        .max(old.weight_decay.len());
    layer.param = vec![ParamSpec::default(); specs];
    for (spec, name) in layer.param.iter_mut().zip(&old.param) {
        spec.name = Some(name.clone());
    }
    for (spec, &mode) in layer.param.iter_mut().zip(&old.blob_share_mode) {
        let mode = match crate::caffe::v1_layer_parameter::DimCheckMode::try_from(mode) {
            Ok(crate::caffe::v1_layer_parameter::DimCheckMode::Strict) => DimCheckMode::Strict,
            Ok(crate::caffe::v1_layer_parameter::DimCheckMode::Permissive) => {
                DimCheckMode::Permissive
            }
            Err(_) => {
                return Err(ProtoError::invalid(
                    origin,
                    format!("{what}.blob_share_mode"),
                    format!("unknown mode {mode}"),
                ))
            }
        };
        spec.share_mode = Some(mode as i32);
    }
    for (spec, &lr) in layer.param.iter_mut().zip(&old.blobs_lr) {
        spec.lr_mult = Some(lr);
    }
    for (spec, &decay) in layer.param.iter_mut().zip(&old.weight_decay) {
        spec.decay_mult = Some(decay);
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    fn upgraded(text_net: &str) -> NetParameter {
        let mut net: NetParameter = text::parse(text_net, "t").unwrap();
        super::super::upgrade_net(&mut net, "t").unwrap();
        net
    }

    #[test]
    fn infogain_layer_keeps_params_and_multipliers() {
        let net = upgraded(
            "name: 'old'
             layers { name: 'loss' type: INFOGAIN_LOSS bottom: 'ip' bottom: 'label' top: 'loss'
                      blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                      infogain_loss_param { source: 'H.binaryproto' axis: 1 }
                      loss_param { ignore_label: 3 normalization: FULL }
                      include { phase: TRAIN } loss_weight: 0.5 }",
        );
        assert_eq!(net.name(), "old");
        let layer = &net.layer[0];
        assert_eq!(layer.r#type(), "InfogainLoss");
        assert_eq!(layer.bottom, ["ip", "label"]);
        assert_eq!(layer.top, ["loss"]);
        assert_eq!(layer.loss_weight, [0.5]);
        assert_eq!(layer.include[0].phase(), crate::caffe::Phase::Train);
        let multipliers: Vec<_> = layer
            .param
            .iter()
            .map(|p| (p.lr_mult(), p.decay_mult()))
            .collect();
        assert_eq!(multipliers, [(1.0, 1.0), (2.0, 0.0)]);
        let infogain = layer.infogain_loss_param.as_ref().unwrap();
        assert_eq!((infogain.source(), infogain.axis()), ("H.binaryproto", 1));
        assert_eq!(layer.loss_param.as_ref().unwrap().ignore_label(), 3);
    }

    #[test]
    fn every_v1_type_maps_to_a_distinct_name() {
        let mut names = std::collections::HashSet::new();
        for value in V1LayerParameter::descriptor()
            .get_field_by_name("type")
            .unwrap()
            .kind()
            .as_enum()
            .unwrap()
            .values()
        {
            let layer_type = LayerType::try_from(value.number()).unwrap();
            assert!(names.insert(v1_type_name(layer_type)), "{}", value.name());
        }
    }

    #[test]
    fn shared_param_names_and_modes() {
        let net = upgraded(
            "layers { type: INNER_PRODUCT param: 'w' param: 'b' blob_share_mode: PERMISSIVE }",
        );
        let param = &net.layer[0].param;
        assert_eq!((param[0].name(), param[1].name()), ("w", "b"));
        assert_eq!(param[0].share_mode(), DimCheckMode::Permissive);
        assert!(param[1].share_mode.is_none());
    }
}
