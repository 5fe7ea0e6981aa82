//! Weights in and out of a net: copying from a .caffemodel by layer name, and the NetParameter Caffe would save.

use crema_proto::NetParameter;

use super::Net;
use crate::error::{Error, Result};

impl Net {
    /// Copies learnable blobs from `trained` into the layers of the same name, as Caffe's `CopyTrainedLayersFrom`:
    /// layers the net does not have are skipped; a layer with another number of blobs or a blob of another shape
    /// is an error. Returns the names of the layers copied.
    pub fn copy_trained_from(
        &mut self,
        trained: &NetParameter,
        origin: &str,
    ) -> Result<Vec<String>> {
        let mut copied = Vec::new();
        for source in &trained.layer {
            if source.blobs.is_empty() {
                continue;
            }
            // The layer of that name with learnable blobs (names may repeat among layers without them).
            let named = |s: &&super::LayerSlot| s.name == source.name();
            let index = self
                .slots
                .iter()
                .position(|s| named(&s) && !s.layer.params().is_empty())
                .or_else(|| self.slots.iter().position(|s| named(&s)));
            let Some(index) = index else {
                continue;
            };
            let slot = &mut self.slots[index];
            let params = slot.layer.params_mut();
            let layer_error = |reason: String| Error::Layer {
                origin: origin.to_owned(),
                layer: source.name().to_owned(),
                layer_type: source.r#type().to_owned(),
                reason,
            };
            if params.len() != source.blobs.len() {
                return Err(layer_error(format!(
                    "has {} blobs in the weights file but {} learnable blobs in the net",
                    source.blobs.len(),
                    params.len()
                )));
            }
            for (i, proto) in source.blobs.iter().enumerate() {
                let blob_origin = format!("{origin}: layer \"{}\" blobs[{i}]", source.name());
                params[i]
                    .copy_data_from_proto(proto, &blob_origin, "the weights file")
                    .map_err(|e| match e {
                        Error::Shape { reason, .. } => {
                            layer_error(format!("cannot copy blobs[{i}]: {reason}"))
                        }
                        other => other,
                    })?;
            }
            copied.push(source.name().to_owned());
        }
        self.sync_shared_params();
        Ok(copied)
    }

    /// Copies every learnable blob from the layer of the same name in `other`, as Caffe's test nets share the
    /// train net's weights. Layers `other` does not have keep their values.
    pub fn copy_params_from(&mut self, other: &Net) -> Result<()> {
        for slot in &mut self.slots {
            let Some(source) = other.slots.iter().find(|s| s.name == slot.name) else {
                continue;
            };
            let (mine, theirs) = (slot.layer.params_mut(), source.layer.params());
            if mine.len() != theirs.len()
                || mine.iter().zip(theirs).any(|(a, b)| a.shape() != b.shape())
            {
                return Err(Error::Layer {
                    origin: self.origin.clone(),
                    layer: slot.name.clone(),
                    layer_type: slot.param.r#type().to_owned(),
                    reason: format!(
                        "its learnable blobs differ from those of the layer of the same name in net \"{}\"",
                        other.name
                    ),
                });
            }
            for (target, value) in mine.iter_mut().zip(theirs) {
                target.copy_data_from(value);
            }
        }
        Ok(())
    }

    /// The state of every layer that keeps one (data readers, random generators), by layer name.
    pub fn layer_states(&self) -> Vec<(String, Vec<u8>)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.layer.state().map(|state| (slot.name.clone(), state)))
            .collect()
    }

    /// Puts back the state of layer `name` saved by [`Net::layer_states`].
    pub fn set_layer_state(&mut self, name: &str, state: &[u8]) -> Result<()> {
        let index = self
            .slots
            .iter()
            .position(|s| s.name == name && s.layer.state().is_some())
            .or_else(|| self.layer_index(name));
        let index = index.ok_or_else(|| Error::Net {
            origin: self.origin.clone(),
            reason: format!("a saved state names layer \"{name}\", which the net does not have"),
        })?;
        let result = self.slots[index].layer.set_state(state);
        result.map_err(|e| self.slot_error(index, e))
    }

    /// The net as Caffe's `Net::ToProto` writes it into a .caffemodel: every layer (inserted Splits included)
    /// with its parameters and phase, and its learnable blobs (with gradients when `write_diff`).
    pub fn to_proto(&self, write_diff: bool) -> NetParameter {
        let layer = self
            .slots
            .iter()
            .map(|slot| {
                let mut param = slot.param.clone();
                param.blobs = slot
                    .layer
                    .params()
                    .iter()
                    .map(|b| b.to_proto(write_diff))
                    .collect();
                param
            })
            .collect();
        NetParameter {
            name: Some(self.name.clone()),
            layer,
            ..Default::default()
        }
    }
}
