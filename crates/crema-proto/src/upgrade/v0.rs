//! V0 layers (`layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 } bottom: "data" }`)
//! to V1 layers.
//!
//! V0 kept every setting flat in one message; V1 puts them in per-type parameter messages. [`RULES`] says where
//! each V0 field goes for each V0 type, as data; a field set on a type with no rule is reported and dropped, as
//! Caffe does. V0 "padding" layers are folded into the convolution or pooling layer that reads them first.

use std::collections::HashMap;

use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

use super::UpgradeReport;
use crate::caffe::{
    v1_layer_parameter::LayerType, NetParameter, V0LayerParameter, V1LayerParameter,
};
use crate::descriptor::CaffeMessage;
use crate::error::{ProtoError, Result};

/// Any V0 type.
const ANY: &str = "*";

/// For each V0 field: (V0 type, dotted path of the V1 field that receives it).
const RULES: &[(&str, &[(&str, &str)])] = &[
    ("name", &[(ANY, "name")]),
    ("blobs", &[(ANY, "blobs")]),
    ("blobs_lr", &[(ANY, "blobs_lr")]),
    ("weight_decay", &[(ANY, "weight_decay")]),
    (
        "num_output",
        &[
            ("conv", "convolution_param.num_output"),
            ("innerproduct", "inner_product_param.num_output"),
        ],
    ),
    (
        "biasterm",
        &[
            ("conv", "convolution_param.bias_term"),
            ("innerproduct", "inner_product_param.bias_term"),
        ],
    ),
    (
        "weight_filler",
        &[
            ("conv", "convolution_param.weight_filler"),
            ("innerproduct", "inner_product_param.weight_filler"),
        ],
    ),
    (
        "bias_filler",
        &[
            ("conv", "convolution_param.bias_filler"),
            ("innerproduct", "inner_product_param.bias_filler"),
        ],
    ),
    (
        "pad",
        &[
            ("conv", "convolution_param.pad"),
            ("pool", "pooling_param.pad"),
        ],
    ),
    (
        "kernelsize",
        &[
            ("conv", "convolution_param.kernel_size"),
            ("pool", "pooling_param.kernel_size"),
        ],
    ),
    ("group", &[("conv", "convolution_param.group")]),
    (
        "stride",
        &[
            ("conv", "convolution_param.stride"),
            ("pool", "pooling_param.stride"),
        ],
    ),
    ("pool", &[("pool", "pooling_param.pool")]),
    (
        "dropout_ratio",
        &[("dropout", "dropout_param.dropout_ratio")],
    ),
    ("local_size", &[("lrn", "lrn_param.local_size")]),
    ("alpha", &[("lrn", "lrn_param.alpha")]),
    ("beta", &[("lrn", "lrn_param.beta")]),
    ("k", &[("lrn", "lrn_param.k")]),
    (
        "source",
        &[
            ("data", "data_param.source"),
            ("hdf5_data", "hdf5_data_param.source"),
            ("images", "image_data_param.source"),
            ("window_data", "window_data_param.source"),
            ("infogain_loss", "infogain_loss_param.source"),
        ],
    ),
    ("scale", &[(ANY, "transform_param.scale")]),
    ("meanfile", &[(ANY, "transform_param.mean_file")]),
    ("cropsize", &[(ANY, "transform_param.crop_size")]),
    ("mirror", &[(ANY, "transform_param.mirror")]),
    (
        "batchsize",
        &[
            ("data", "data_param.batch_size"),
            ("hdf5_data", "hdf5_data_param.batch_size"),
            ("images", "image_data_param.batch_size"),
            ("window_data", "window_data_param.batch_size"),
        ],
    ),
    (
        "rand_skip",
        &[
            ("data", "data_param.rand_skip"),
            ("images", "image_data_param.rand_skip"),
        ],
    ),
    ("shuffle_images", &[("images", "image_data_param.shuffle")]),
    ("new_height", &[("images", "image_data_param.new_height")]),
    ("new_width", &[("images", "image_data_param.new_width")]),
    ("concat_dim", &[("concat", "concat_param.concat_dim")]),
    (
        "det_fg_threshold",
        &[("window_data", "window_data_param.fg_threshold")],
    ),
    (
        "det_bg_threshold",
        &[("window_data", "window_data_param.bg_threshold")],
    ),
    (
        "det_fg_fraction",
        &[("window_data", "window_data_param.fg_fraction")],
    ),
    (
        "det_context_pad",
        &[("window_data", "window_data_param.context_pad")],
    ),
    (
        "det_crop_mode",
        &[("window_data", "window_data_param.crop_mode")],
    ),
    ("hdf5_output_param", &[("hdf5_output", "hdf5_output_param")]),
];

/// The V1 type of a V0 type string.
fn v0_layer_type(name: &str) -> Option<LayerType> {
    use LayerType::*;
    Some(match name {
        "accuracy" => Accuracy,
        "bnll" => Bnll,
        "concat" => Concat,
        "conv" => Convolution,
        "data" => Data,
        "dropout" => Dropout,
        "euclidean_loss" => EuclideanLoss,
        "flatten" => Flatten,
        "hdf5_data" => Hdf5Data,
        "hdf5_output" => Hdf5Output,
        "im2col" => Im2col,
        "images" => ImageData,
        "infogain_loss" => InfogainLoss,
        "innerproduct" => InnerProduct,
        "lrn" => Lrn,
        "multinomial_logistic_loss" => MultinomialLogisticLoss,
        "pool" => Pooling,
        "relu" => Relu,
        "sigmoid" => Sigmoid,
        "softmax" => Softmax,
        "softmax_loss" => SoftmaxLoss,
        "split" => Split,
        "tanh" => Tanh,
        "window_data" => WindowData,
        _ => return Option::None,
    })
}

pub(super) fn upgrade_v0_net(
    net: &mut NetParameter,
    origin: &str,
    report: &mut UpgradeReport,
) -> Result<()> {
    let layers = fold_padding_layers(net, origin)?;
    net.layers = layers
        .iter()
        .enumerate()
        .map(|(index, layer)| upgrade_v0_layer(layer, index, origin, report))
        .collect::<Result<_>>()?;
    Ok(())
}

/// Removes V0 "padding" layers, giving their `pad` to the conv or pool layer that reads their output.
fn fold_padding_layers(net: &NetParameter, origin: &str) -> Result<Vec<V1LayerParameter>> {
    let is_padding = |layer: &V1LayerParameter| {
        layer
            .layer
            .as_ref()
            .is_some_and(|l| l.r#type() == "padding")
    };
    // The most recent layer (index into net.layers) that wrote each blob; None for net inputs.
    let mut last_writer: HashMap<&str, Option<usize>> =
        net.input.iter().map(|name| (name.as_str(), None)).collect();
    let mut kept = Vec::new();
    for (index, connection) in net.layers.iter().enumerate() {
        let v0 = connection.layer.clone().unwrap_or_default();
        let mut upgraded = connection.clone();
        for (slot, bottom) in connection.bottom.iter().enumerate() {
            let writer = *last_writer.get(bottom.as_str()).ok_or_else(|| {
                ProtoError::invalid(
                    origin,
                    format!("layers[{index}] \"{}\".bottom", v0.name()),
                    format!("blob \"{bottom}\" is not produced by any earlier layer or input"),
                )
            })?;
            let Some(source) = writer.map(|w| &net.layers[w]).filter(|w| is_padding(w)) else {
                continue;
            };
            let field = format!("layers[{index}] \"{}\"", v0.name());
            if v0.r#type() != "conv" && v0.r#type() != "pool" {
                return Err(ProtoError::invalid(
                    origin,
                    field,
                    format!(
                        "a V0 padding layer feeds a '{}' layer; only conv and pool can absorb it",
                        v0.r#type()
                    ),
                ));
            }
            if connection.bottom.len() != 1 || source.bottom.len() != 1 || source.top.len() != 1 {
                return Err(ProtoError::invalid(
                    origin,
                    field,
                    "a V0 padding layer and the layer it feeds must each have exactly one input",
                ));
            }
            let pad = source.layer.as_ref().map_or(0, |l| l.pad());
            upgraded
                .layer
                .get_or_insert_with(V0LayerParameter::default)
                .pad = Some(pad);
            upgraded.bottom[slot] = source.bottom[0].clone();
        }
        for top in &connection.top {
            last_writer.insert(top.as_str(), Some(index));
        }
        if !is_padding(connection) {
            kept.push(upgraded);
        }
    }
    Ok(kept)
}

fn upgrade_v0_layer(
    connection: &V1LayerParameter,
    index: usize,
    origin: &str,
    report: &mut UpgradeReport,
) -> Result<V1LayerParameter> {
    let mut upgraded = V1LayerParameter {
        bottom: connection.bottom.clone(),
        top: connection.top.clone(),
        ..Default::default()
    };
    let Some(v0) = &connection.layer else {
        return Ok(upgraded);
    };
    let what = format!("layers[{index}] \"{}\"", v0.name());
    let v0_type = v0.r#type().to_owned();
    if v0.r#type.is_some() {
        let layer_type = v0_layer_type(&v0_type).ok_or_else(|| {
            ProtoError::invalid(
                origin,
                format!("{what}.layer.type"),
                format!("unknown V0 layer type \"{v0_type}\""),
            )
        })?;
        upgraded.r#type = Some(layer_type as i32);
    }
    let mut target = upgraded.to_dynamic();
    for (field, value) in v0.to_dynamic().fields() {
        match field.name() {
            "type" => continue,
            "new_num" | "new_channels" => {
                report.warnings.push(format!(
                    "{what}: V0 field '{}' has no V1 counterpart and was dropped",
                    field.name()
                ));
                continue;
            }
            _ => {}
        }
        let destination = RULES
            .iter()
            .find(|(name, _)| *name == field.name())
            .and_then(|(_, targets)| targets.iter().find(|(ty, _)| *ty == ANY || *ty == v0_type))
            .map(|(_, path)| *path);
        match destination {
            Some(path) => set_path(&mut target, path, value, origin, &what)?,
            None => report.warnings.push(format!(
                "{what}: V0 field '{}' does not apply to type \"{v0_type}\" and was dropped",
                field.name()
            )),
        }
    }
    Ok(V1LayerParameter::from_dynamic(&target))
}

/// Sets `path` (like `convolution_param.kernel_size`) in `message`, converting the V0 value to the target kind
/// and appending when the target is repeated.
fn set_path(
    message: &mut DynamicMessage,
    path: &str,
    value: &Value,
    origin: &str,
    what: &str,
) -> Result<()> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let field = message
        .descriptor()
        .get_field_by_name(head)
        .expect("upgrade rules name fields of V1LayerParameter");
    if let Some(rest) = rest {
        let Value::Message(inner) = message.get_field_mut(&field) else {
            unreachable!("upgrade rules only descend into message fields")
        };
        return set_path(inner, rest, value, origin, what);
    }
    let converted = convert(value, &field.kind()).ok_or_else(|| {
        ProtoError::invalid(
            origin,
            format!("{what}.{head}"),
            format!("value {value:?} does not fit the V1 field"),
        )
    })?;
    if field.is_list() {
        match (message.get_field_mut(&field), converted) {
            (Value::List(list), Value::List(values)) => list.extend(values),
            (Value::List(list), single) => list.push(single),
            _ => unreachable!("a list field holds a list"),
        }
    } else {
        message.set_field(&field, converted);
    }
    Ok(())
}

/// Converts a V0 scalar to the kind of its V1 field: same kind, signed to unsigned, or an enum by value name.
fn convert(value: &Value, kind: &Kind) -> Option<Value> {
    Some(match (value, kind) {
        (Value::I32(v), Kind::Uint32) => Value::U32(u32::try_from(*v).ok()?),
        (Value::EnumNumber(number), Kind::Enum(target)) => {
            // V0 and V1 pooling enums share value names (MAX, AVE, STOCHASTIC).
            let name = crate::caffe::v0_layer_parameter::PoolMethod::try_from(*number)
                .ok()?
                .as_str_name();
            Value::EnumNumber(target.get_value_by_name(name)?.number())
        }
        (value, _) => value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::caffe::pooling_parameter::PoolMethod;
    use crate::{text, NetParameter};

    #[test]
    fn v0_net_with_padding_layer_upgrades_to_current() {
        let mut net: NetParameter = text::parse(
            r#"name: "v0net"
               input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
               input: "label" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
               layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
               layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2
                                blobs_lr: 1 blobs_lr: 2 weight_filler { type: "gaussian" std: 0.01 } }
                        bottom: "pad1" top: "conv1" }
               layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 } bottom: "conv1" top: "pool1" }
               layers { layer { name: "fc" type: "innerproduct" num_output: 10 biasterm: false } bottom: "pool1" top: "fc" }
               layers { layer { name: "loss" type: "infogain_loss" source: "H.binaryproto" } bottom: "fc" bottom: "label" }"#,
            "v0",
        )
        .unwrap();
        let report = crate::upgrade::upgrade_net(&mut net, "v0").unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let types: Vec<_> = net.layer.iter().map(|l| l.r#type()).collect();
        assert_eq!(
            types,
            [
                "Input",
                "Convolution",
                "Pooling",
                "InnerProduct",
                "InfogainLoss"
            ]
        );
        let conv = &net.layer[1];
        assert_eq!(conv.bottom, ["data"]);
        let conv_param = conv.convolution_param.as_ref().unwrap();
        assert_eq!(
            (
                conv_param.num_output(),
                &conv_param.kernel_size[..],
                &conv_param.stride[..]
            ),
            (4, &[3][..], &[2][..])
        );
        assert_eq!(conv_param.pad, [2]);
        assert_eq!(conv_param.weight_filler.as_ref().unwrap().std(), 0.01);
        assert_eq!(
            conv.param.iter().map(|p| p.lr_mult()).collect::<Vec<_>>(),
            [1.0, 2.0]
        );
        assert_eq!(
            net.layer[2].pooling_param.as_ref().unwrap().pool(),
            PoolMethod::Ave
        );
        assert!(!net.layer[3]
            .inner_product_param
            .as_ref()
            .unwrap()
            .bias_term());
        assert_eq!(
            net.layer[4].infogain_loss_param.as_ref().unwrap().source(),
            "H.binaryproto"
        );
    }

    #[test]
    fn unknown_v0_type_is_an_error() {
        let mut net: NetParameter =
            text::parse(r#"layers { layer { name: "x" type: "warp" } }"#, "v0").unwrap();
        let err = crate::upgrade::upgrade_net(&mut net, "old.prototxt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown V0 layer type \"warp\""), "{err}");
    }

    #[test]
    fn misplaced_v0_field_is_reported() {
        let mut net: NetParameter = text::parse(
            r#"layers { layer { name: "r" type: "relu" num_output: 3 } }"#,
            "v0",
        )
        .unwrap();
        let report = crate::upgrade::upgrade_net(&mut net, "v0").unwrap();
        assert!(
            report.warnings[0].contains("num_output"),
            "{:?}",
            report.warnings
        );
    }
}
