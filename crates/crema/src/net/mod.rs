//! [`Net`]: a graph of layers built from a NetParameter for a NetState, run forward and backward.
//!
//! Building (in [`Net::new`]): filter layers by the state ([`filter`]), make each layer from the registry, work
//! out loss weights, wire blobs with in-place versions and Splits ([`graph`]), set every layer up in order,
//! gather learnable blobs with their ParamSpecs (shared by name), and infer which layers need backward as
//! Caffe does (propagate_down, force_backward, layers that feed no loss skipped).

pub mod filter;
pub mod graph;
mod in_place;
pub mod posthoc;
mod weights;

use std::collections::HashMap;
use std::path::PathBuf;

use crema_proto::caffe::{param_spec::DimCheckMode, Phase};
use crema_proto::{LayerParameter, NetParameter, NetState};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::layer::{Layer, LayerContext, LayerError};
use crate::layers;

/// How a net is built beyond its definition: where it came from and how its random numbers are seeded.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Names the net's file in errors.
    pub origin: String,
    /// Folders to resolve relative paths in layer parameters against, after the working directory.
    pub search_dirs: Vec<PathBuf>,
    /// Seed of every random draw (fillers, dropout).
    pub seed: u64,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            origin: "<net>".into(),
            search_dirs: Vec::new(),
            seed: 1701,
        }
    }
}

/// A learnable blob's place in the net and its solver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Index of the layer in [`Net::layer_names`] and of the blob among the layer's params.
    pub layer: usize,
    pub index: usize,
    /// The layer and index of the blob this one shares its values with, if it is shared and not the owner.
    pub owner: Option<(usize, usize)>,
    pub lr_mult: f32,
    pub decay_mult: f32,
    /// The ParamSpec name ("" when unnamed).
    pub name: String,
}

struct LayerSlot {
    name: String,
    layer: Box<dyn Layer>,
    param: LayerParameter,
    bottoms: Vec<usize>,
    first_top: usize,
    top_count: usize,
    loss_weights: Vec<f32>,
    need_backward: bool,
    bottom_need_backward: Vec<bool>,
    /// The bottoms' shapes when the layer was last reshaped: a bottom whose shape has changed since (after a
    /// Filter, whose top follows its selector, or an Input given new data) reshapes the layer before it runs,
    /// as Caffe reshapes every layer before every forward.
    reshaped_for: Vec<Vec<usize>>,
}

/// A net of layers ready to run.
pub struct Net {
    name: String,
    origin: String,
    phase: Phase,
    slots: Vec<LayerSlot>,
    blobs: Vec<Blob>,
    blob_names: Vec<String>,
    /// Whether each blob is an output of an inserted Split (internal wiring, not a blob of the prototxt).
    blob_is_split: Vec<bool>,
    /// Whether each blob is the anonymous top of a loss layer that named none (never a net output).
    blob_is_automatic: Vec<bool>,
    params: Vec<ParamInfo>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    warnings: Vec<String>,
}

/// The owner's slot and a sharer's slot at once; a param is always owned by an earlier layer.
fn owner_and_sharer(
    slots: &mut [LayerSlot],
    owner: usize,
    sharer: usize,
) -> (&mut LayerSlot, &mut LayerSlot) {
    let (before, after) = slots.split_at_mut(sharer);
    (&mut before[owner], &mut after[0])
}

/// Lends `ids` (distinct, each below `slice.len()`) out of `slice` mutably, in the order given.
fn disjoint_mut<'a>(slice: &'a mut [Blob], ids: &[usize]) -> SmallVec<[&'a mut Blob; 4]> {
    let mut order: SmallVec<[usize; 4]> = (0..ids.len()).collect();
    order.sort_unstable_by_key(|&k| ids[k]);
    let mut lent: SmallVec<[Option<&'a mut Blob>; 4]> = (0..ids.len()).map(|_| None).collect();
    let mut rest = slice;
    let mut offset = 0;
    for k in order {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(ids[k] - offset);
        let (blob, tail) = tail
            .split_first_mut()
            .expect("ids are distinct and in range");
        lent[k] = Some(blob);
        rest = tail;
        offset = ids[k] + 1;
    }
    lent.into_iter()
        .map(|b| b.expect("every id was lent"))
        .collect()
}

impl Net {
    /// Builds the net that `param` defines in `state`.
    pub fn new(param: &NetParameter, state: &NetState, options: &NetOptions) -> Result<Net> {
        let origin = options.origin.clone();
        let net_error = |reason: String| Error::Net {
            origin: origin.clone(),
            reason,
        };
        let layer_error = |param: &LayerParameter, reason: String| Error::Layer {
            origin: origin.clone(),
            layer: param.name().to_owned(),
            layer_type: param.r#type().to_owned(),
            reason,
        };
        if !param.layers.is_empty() || !param.input.is_empty() {
            return Err(net_error(
                "the net uses the old V0/V1 or input-field format; load it with crema_proto::files (which upgrades \
                 it) or run `crema upgrade`"
                    .into(),
            ));
        }
        let phase = state.phase();
        let mut kept = Vec::new();
        for layer in &param.layer {
            if filter::layer_included(layer, state).map_err(|reason| layer_error(layer, reason))? {
                let mut layer = layer.clone();
                if layer.phase.is_none() {
                    layer.phase = Some(phase as i32);
                }
                kept.push(layer);
            }
        }

        // Make every layer, and settle loss weights (a loss layer's first top weighs 1 unless told otherwise).
        let mut made: Vec<Option<Box<dyn Layer>>> = Vec::with_capacity(kept.len());
        let mut loss_weights = Vec::with_capacity(kept.len());
        let mut automatic = vec![0; kept.len()];
        for (index, layer_param) in kept.iter_mut().enumerate() {
            let layer = Self::make_layer(layer_param, phase, options, index as u64)
                .map_err(|reason| layer_error(layer_param, reason))?;
            // As Caffe's AutoTopBlobs: a loss layer short of tops gets anonymous ones.
            if layer.is_loss() {
                while layer_param.top.len() < layer.top_arity().min {
                    layer_param.top.push(graph::AUTOMATIC_TOP.to_owned());
                    automatic[index] += 1;
                }
            }
            let layer_param = &*layer_param;
            let tops = layer_param.top.len();
            let weights = if layer_param.loss_weight.is_empty() {
                let mut weights = vec![0.0; tops];
                if layer.is_loss() && tops > 0 {
                    weights[0] = 1.0;
                }
                weights
            } else if layer_param.loss_weight.len() == tops {
                layer_param.loss_weight.clone()
            } else {
                return Err(layer_error(
                    layer_param,
                    format!(
                        "has {tops} tops but {} loss_weight values; give none or one per top",
                        layer_param.loss_weight.len()
                    ),
                ));
            };
            if !layer_param.propagate_down.is_empty()
                && layer_param.propagate_down.len() != layer_param.bottom.len()
            {
                return Err(layer_error(
                    layer_param,
                    format!(
                        "has {} propagate_down values for {} bottoms; give none or one per bottom",
                        layer_param.propagate_down.len(),
                        layer_param.bottom.len()
                    ),
                ));
            }
            for (count, arity, what) in [
                (layer_param.bottom.len(), layer.bottom_arity(), "bottoms"),
                (tops, layer.top_arity(), "tops"),
            ] {
                if !arity.allows(count) {
                    let wanted = match (arity.min, arity.max) {
                        (min, max) if min == max => format!("{min}"),
                        (min, usize::MAX) => format!("at least {min}"),
                        (min, max) => format!("{min} to {max}"),
                    };
                    return Err(layer_error(
                        layer_param,
                        format!("takes {wanted} {what}, not {count}"),
                    ));
                }
            }
            made.push(Some(layer));
            loss_weights.push(weights);
        }

        let wired = graph::wire(&kept, &loss_weights, &automatic).map_err(net_error)?;
        let mut net = Net {
            name: param.name().to_owned(),
            origin: origin.clone(),
            phase,
            slots: Vec::with_capacity(wired.nodes.len()),
            blobs: (0..wired.blob_names.len())
                .map(|_| Blob::default())
                .collect(),
            blob_is_split: vec![false; wired.blob_names.len()],
            blob_is_automatic: wired.automatic,
            blob_names: wired.blob_names,
            params: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            warnings: Vec::new(),
        };
        for (slot_index, node) in wired.nodes.into_iter().enumerate() {
            let (layer, layer_param) = match node.source {
                Some(source) => (
                    made[source].take().expect("each layer is placed once"),
                    kept[source].clone(),
                ),
                None => {
                    let split = node.split_param.expect("inserted nodes are splits");
                    let layer = Self::make_layer(&split, phase, options, slot_index as u64)
                        .map_err(|reason| layer_error(&split, reason))?;
                    (layer, split)
                }
            };
            if node.source.is_none() {
                net.blob_is_split[node.first_top..node.first_top + node.top_count].fill(true);
            }
            if layer_param.r#type() == "Input" {
                net.inputs
                    .extend(node.first_top..node.first_top + node.top_count);
            }
            net.slots.push(LayerSlot {
                name: layer_param.name().to_owned(),
                layer,
                bottom_need_backward: vec![false; node.bottoms.len()],
                param: layer_param,
                bottoms: node.bottoms,
                first_top: node.first_top,
                top_count: node.top_count,
                loss_weights: node.loss_weights,
                need_backward: false,
                reshaped_for: Vec::new(),
            });
        }

        // Set every layer up in order, then put in blobs written in the prototxt.
        for index in 0..net.slots.len() {
            net.setup_layer(index)?;
        }
        net.check_names()?;
        net.gather_params()?;
        net.set_loss_diffs();
        net.infer_backward(param.force_backward());
        net.check_in_place()?;
        net.find_outputs();
        net.warn_softmax_before_infogain();
        Ok(net)
    }

    /// Weights, snapshots and saved states find layers by name: two layers of one name that both hold learnable
    /// blobs, or both keep a state, would take each other's (Caffe copies the weights of both into the first).
    /// Other duplicates (Caffe's MNIST autoencoder names two losses "loss") are fine, as in Caffe.
    fn check_names(&self) -> Result<()> {
        let mut holders: HashMap<(&str, bool), usize> = HashMap::new();
        for (index, slot) in self.slots.iter().enumerate() {
            for (kind, holds) in [
                (true, !slot.layer.params().is_empty()),
                (false, slot.layer.state().is_some()),
            ] {
                if !holds {
                    continue;
                }
                if let Some(&first) = holders.get(&(slot.name.as_str(), kind)) {
                    let what = if kind {
                        "learnable blobs"
                    } else {
                        "a saved state"
                    };
                    let error = LayerError::new(format!(
                        "the name is also that of an earlier {} layer and both have {what}; weights and \
                         snapshots find layers by name, so such layers need names of their own",
                        self.slots[first].param.r#type()
                    ));
                    return Err(self.slot_error(index, error));
                }
                holders.insert((slot.name.as_str(), kind), index);
            }
        }
        Ok(())
    }

    fn make_layer(
        param: &LayerParameter,
        phase: Phase,
        options: &NetOptions,
        stream: u64,
    ) -> std::result::Result<Box<dyn Layer>, String> {
        let type_name = param.r#type();
        let create = layers::constructor(type_name).ok_or_else(|| match left_out(type_name) {
            Some(reason) => reason.to_owned(),
            None => format!(
                "crema has no layer of type \"{type_name}\" (it has: {})",
                layers::type_names().join(", ")
            ),
        })?;
        let mut context = LayerContext {
            param,
            phase,
            search_dirs: &options.search_dirs,
            rng: crate::math::rng(options.seed, stream),
        };
        create(&mut context).map_err(|e| e.0)
    }

    fn slot_error(&self, index: usize, error: LayerError) -> Error {
        let slot = &self.slots[index];
        let mut reason = error.0;
        if let Some(origin) = error.1.and_then(|item| self.item_origin(index, item)) {
            reason = format!("{reason} ({origin})");
        }
        Error::Layer {
            origin: self.origin.clone(),
            layer: slot.name.clone(),
            layer_type: slot.param.r#type().to_owned(),
            reason,
        }
    }

    /// Where the data layer that made a bottom value of layer `index` read it (`from layer "data": train.h5,
    /// dataset "label", row 1031`), following the value back through Splits.
    fn item_origin(&self, index: usize, item: crate::layer::BottomItem) -> Option<String> {
        let (mut id, mut value) = (*self.slots[index].bottoms.get(item.bottom)?, item.index);
        loop {
            let slot = &self.slots[self.producer_slot(id)?];
            let top = id - slot.first_top;
            if let Some(source) = slot.layer.top_item_source(top, value) {
                (id, value) = (*slot.bottoms.get(source.bottom)?, source.index);
                continue;
            }
            let origin = slot.layer.top_item_origin(top, value)?;
            return Some(format!("from layer \"{}\": {origin}", slot.name));
        }
    }

    fn setup_layer(&mut self, index: usize) -> Result<()> {
        let result = {
            let slot = &mut self.slots[index];
            let (before, after) = self.blobs.split_at_mut(slot.first_top);
            let bottoms: SmallVec<[&Blob; 4]> = slot.bottoms.iter().map(|&b| &before[b]).collect();
            let mut tops: SmallVec<[&mut Blob; 4]> = after[..slot.top_count].iter_mut().collect();
            slot.layer.setup(&bottoms, &mut tops)
        };
        result.map_err(|e| self.slot_error(index, e))?;
        self.reshape_layer(index)?;
        let given = &self.slots[index].param.blobs;
        if given.is_empty() {
            return Ok(());
        }
        let learnable = self.slots[index].layer.params().len();
        if learnable != given.len() {
            let error = LayerError::new(format!(
                "the prototxt gives {} blobs but the layer has {learnable} learnable blobs",
                given.len()
            ));
            return Err(self.slot_error(index, error));
        }
        let origin = format!("{}: layer \"{}\"", self.origin, self.slots[index].name);
        for i in 0..given.len() {
            let slot = &mut self.slots[index];
            let result = slot.layer.params_mut()[i].copy_data_from_proto(
                &slot.param.blobs[i],
                &format!("{origin} blobs[{i}]"),
                "the prototxt",
            );
            match result {
                Err(Error::Shape { reason, .. }) => {
                    let error = LayerError::new(format!("blobs[{i}]: {reason}"));
                    return Err(self.slot_error(index, error));
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Gives every blob a layer keeps up to date itself ([`Layer::param_is_learned`] false, BatchNorm's
    /// statistics) lr_mult 0, as Caffe's BatchNorm does: a ParamSpec with lr_mult 0 is added where the prototxt
    /// gives none (so the saved layer has it too, as in Caffe), and one asking for another lr_mult is an error.
    fn freeze_unlearned_params(&mut self) -> Result<()> {
        for slot in &mut self.slots {
            let count = slot.layer.params().len();
            if slot.param.param.len() > count {
                continue; // gather_params says there are too many
            }
            for index in 0..count {
                if slot.layer.param_is_learned(index) {
                    continue;
                }
                match slot.param.param.get(index) {
                    Some(spec) if spec.lr_mult() != 0.0 => {
                        return Err(Error::Layer {
                            origin: self.origin.clone(),
                            layer: slot.name.clone(),
                            layer_type: slot.param.r#type().to_owned(),
                            reason: format!(
                                "param {index} has lr_mult {}, but blobs[{index}] is kept up to date by the layer \
                                 itself and cannot be learned; give lr_mult: 0 or leave its param out",
                                spec.lr_mult()
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        slot.param
                            .param
                            .resize_with(index, crema_proto::caffe::ParamSpec::default);
                        slot.param.param.push(crema_proto::caffe::ParamSpec {
                            lr_mult: Some(0.0),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn gather_params(&mut self) -> Result<()> {
        self.freeze_unlearned_params()?;
        let mut owners: HashMap<String, (usize, usize)> = HashMap::new();
        for (layer_index, slot) in self.slots.iter().enumerate() {
            let count = slot.layer.params().len();
            if slot.param.param.len() > count {
                return Err(Error::Layer {
                    origin: self.origin.clone(),
                    layer: slot.name.clone(),
                    layer_type: slot.param.r#type().to_owned(),
                    reason: format!(
                        "has {} param specs but only {count} learnable blobs",
                        slot.param.param.len()
                    ),
                });
            }
            for index in 0..count {
                let spec = slot.param.param.get(index).cloned().unwrap_or_default();
                let name = spec.name().to_owned();
                let mut owner = None;
                if !name.is_empty() {
                    match owners.get(&name) {
                        Some(&(owner_layer, _)) if owner_layer == layer_index => {
                            return Err(Error::Layer {
                                origin: self.origin.clone(),
                                layer: slot.name.clone(),
                                layer_type: slot.param.r#type().to_owned(),
                                reason: format!("names param \"{name}\" twice; a layer cannot share a blob with itself"),
                            });
                        }
                        Some(&(owner_layer, owner_index)) => {
                            let mine = &slot.layer.params()[index];
                            let theirs = &self.slots[owner_layer].layer.params()[owner_index];
                            let fits = match spec.share_mode() {
                                DimCheckMode::Strict => mine.shape() == theirs.shape(),
                                DimCheckMode::Permissive => mine.count() == theirs.count(),
                            };
                            if !fits {
                                return Err(Error::Layer {
                                    origin: self.origin.clone(),
                                    layer: slot.name.clone(),
                                    layer_type: slot.param.r#type().to_owned(),
                                    reason: format!(
                                        "shared param \"{name}\" has shape {:?} here but {:?} in layer \"{}\"",
                                        mine.shape(),
                                        theirs.shape(),
                                        self.slots[owner_layer].name
                                    ),
                                });
                            }
                            owner = Some((owner_layer, owner_index));
                        }
                        None => {
                            owners.insert(name.clone(), (layer_index, index));
                        }
                    }
                }
                self.params.push(ParamInfo {
                    layer: layer_index,
                    index,
                    owner,
                    lr_mult: spec.lr_mult(),
                    decay_mult: spec.decay_mult(),
                    name,
                });
            }
        }
        self.sync_shared_params();
        Ok(())
    }

    /// Which layers and bottoms need backward: Caffe's rules, on blob versions rather than names.
    fn infer_backward(&mut self, force_backward: bool) {
        let mut blob_needs = vec![false; self.blobs.len()];
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let mut need = false;
            for (j, &bottom) in slot.bottoms.iter().enumerate() {
                let wanted = slot.param.propagate_down.get(j).copied().unwrap_or(true);
                slot.bottom_need_backward[j] = blob_needs[bottom] && wanted;
                need |= blob_needs[bottom];
            }
            need |= self
                .params
                .iter()
                .any(|p| p.layer == index && p.lr_mult != 0.0);
            slot.need_backward = need;
            if need {
                blob_needs[slot.first_top..slot.first_top + slot.top_count].fill(true);
            }
        }
        // Backwards: layers whose tops feed no loss, or whose bottoms all skip backward, need no backward.
        let mut under_loss = vec![false; self.blobs.len()];
        let mut skip = vec![false; self.blobs.len()];
        for slot in self.slots.iter_mut().rev() {
            let tops = slot.first_top..slot.first_top + slot.top_count;
            let contributes = tops
                .clone()
                .any(|t| under_loss[t] || slot.loss_weights[t - slot.first_top] != 0.0);
            let all_skipped = tops.clone().all(|t| skip[t]);
            if slot.need_backward && all_skipped {
                slot.need_backward = false;
                slot.bottom_need_backward.fill(false);
            }
            if !contributes {
                slot.need_backward = false;
            }
            for (j, &bottom) in slot.bottoms.iter().enumerate() {
                if contributes {
                    under_loss[bottom] = true;
                } else {
                    slot.bottom_need_backward[j] = false;
                }
                if !slot.bottom_need_backward[j] {
                    skip[bottom] = true;
                }
            }
        }
        if force_backward {
            for slot in &mut self.slots {
                slot.need_backward = true;
                for j in 0..slot.bottoms.len() {
                    slot.bottom_need_backward[j] |= slot.layer.allow_force_backward(j);
                }
            }
        }
    }

    fn find_outputs(&mut self) {
        let mut read = vec![false; self.blobs.len()];
        for slot in &self.slots {
            for &b in &slot.bottoms {
                read[b] = true;
            }
        }
        // Sorted by name, as Caffe lists its outputs (it gathers them in a std::set), so logs line up.
        self.outputs = (0..self.blobs.len())
            .filter(|&b| !read[b] && !self.blob_is_automatic[b])
            .collect();
        self.outputs
            .sort_by(|&a, &b| self.blob_names[a].cmp(&self.blob_names[b]));
    }

    fn warn_softmax_before_infogain(&mut self) {
        for slot in &self.slots {
            if slot.param.r#type() != "InfogainLoss" {
                continue;
            }
            let Some(&scores) = slot.bottoms.first() else {
                continue;
            };
            let producer = self.producer_slot(scores).map(|i| &self.slots[i]);
            let producer = match producer {
                Some(p) if p.param.r#type() == "Split" => {
                    let source = p.bottoms[0];
                    self.producer_slot(source).map(|i| &self.slots[i])
                }
                other => other,
            };
            if let Some(producer) = producer.filter(|p| p.param.r#type() == "Softmax") {
                self.warnings.push(format!(
                    "layer \"{}\" (InfogainLoss) reads the output of Softmax layer \"{}\": since 2017 InfogainLoss \
                     applies softmax itself, so this computes a double softmax. Feed it the scores before the \
                     Softmax (nets written before then wired Softmax → INFOGAIN_LOSS)",
                    slot.name, producer.name
                ));
            }
        }
    }

    /// Copies each shared param's owner values into it, so every sharer computes with the owner's values.
    fn sync_shared_params(&mut self) {
        for info in &self.params {
            if let Some((owner_layer, owner_index)) = info.owner {
                let (owner, sharer) = owner_and_sharer(&mut self.slots, owner_layer, info.layer);
                let source = &owner.layer.params()[owner_index];
                sharer.layer.params_mut()[info.index].copy_data_from(source);
            }
        }
    }

    /// Shapes every layer's tops again, after input blobs changed shape.
    pub fn reshape(&mut self) -> Result<()> {
        for index in 0..self.slots.len() {
            self.reshape_layer(index)?;
        }
        Ok(())
    }

    /// Reshapes layer `index` for its bottoms as they are now.
    fn reshape_layer(&mut self, index: usize) -> Result<()> {
        let result = {
            let slot = &mut self.slots[index];
            let (before, after) = self.blobs.split_at_mut(slot.first_top);
            let bottoms: SmallVec<[&Blob; 4]> = slot.bottoms.iter().map(|&b| &before[b]).collect();
            let mut tops: SmallVec<[&mut Blob; 4]> = after[..slot.top_count].iter_mut().collect();
            slot.reshaped_for = bottoms.iter().map(|b| b.shape().to_vec()).collect();
            slot.layer.reshape(&bottoms, &mut tops)
        };
        result.map_err(|e| self.slot_error(index, e))
    }

    /// Runs every layer forward; returns the total loss, Σ loss_weight · Σ top values.
    pub fn forward(&mut self) -> Result<f32> {
        self.refresh_shared_params();
        let mut loss = 0.0f64;
        for index in 0..self.slots.len() {
            loss += f64::from(self.forward_layer(index)?);
        }
        Ok(loss as f32)
    }

    /// Copies owners' values into shared params, when the net has any.
    fn refresh_shared_params(&mut self) {
        if self.params.iter().any(|p| p.owner.is_some()) {
            self.sync_shared_params();
        }
    }

    /// Sets each loss top's diff to its loss weight, where loss layers read it (as in Caffe), in forward
    /// already when they compute their gradient with the loss.
    fn set_loss_diffs(&mut self) {
        for slot in &self.slots {
            for (j, &weight) in slot.loss_weights.iter().enumerate() {
                if weight != 0.0 {
                    self.blobs[slot.first_top + j].diff_mut().fill(weight);
                }
            }
        }
    }

    /// Runs backward from the losses: each loss top's diff is set to its weight, then layers run in reverse.
    /// Parameter gradients are added to the params' diffs ([`Net::clear_param_diffs`] zeroes them).
    pub fn backward(&mut self) -> Result<()> {
        self.backward_from(&[])
    }

    /// [`Net::backward`] with the gradients of some outputs given, as pycaffe's `net.backward(**{blob: G})`:
    /// each named blob must be an output of the net (no layer reads it) and `G` must hold its count of values.
    /// A loss top's gradient is its loss weight and cannot be given.
    pub fn backward_from(&mut self, top_diffs: &[(&str, &[f32])]) -> Result<()> {
        match self.slots.len() {
            0 => Ok(()),
            count => self.backward_range(top_diffs, count - 1, 0),
        }
    }

    /// [`Net::backward_from`] over layers `start` down to `end` only (Caffe's `BackwardFromTo`, pycaffe's
    /// `net.backward(start=, end=)`); the layers after `start` must have run backward.
    pub fn backward_range(
        &mut self,
        top_diffs: &[(&str, &[f32])],
        start: usize,
        end: usize,
    ) -> Result<()> {
        self.check_range(end, start)?;
        self.set_loss_diffs();
        for &(name, values) in top_diffs {
            let error = |reason: String| Error::Net {
                origin: self.origin.clone(),
                reason: format!("the gradient given for blob \"{name}\": {reason}"),
            };
            let id = self
                .blob_id(name)
                .ok_or_else(|| error("the net has no such blob".into()))?;
            if !self.outputs.contains(&id) {
                return Err(error(format!(
                    "it is not an output of the net (a later layer reads it); outputs: {}",
                    self.output_names().join(", ")
                )));
            }
            let weighted = self.slots.iter().any(|slot| {
                (slot.first_top..slot.first_top + slot.top_count).contains(&id)
                    && slot.loss_weights[id - slot.first_top] != 0.0
            });
            if weighted {
                return Err(error(
                    "it is a loss top: its gradient is its loss_weight".into(),
                ));
            }
            let blob = &mut self.blobs[id];
            if values.len() != blob.count() {
                let shape = blob.shape_string();
                return Err(error(format!(
                    "{} values for a blob of shape {shape}",
                    values.len()
                )));
            }
            blob.diff_mut().copy_from_slice(values);
        }
        for index in (end..=start).rev() {
            self.backward_layer(index)?;
        }
        self.give_shared_gradients_to_owners();
        Ok(())
    }

    /// [`Net::forward`] over layers `start..=end` only (Caffe's `ForwardFromTo`, pycaffe's
    /// `net.forward(start=, end=)`); the layers before `start` must have run. Returns their weighted loss.
    pub fn forward_range(&mut self, start: usize, end: usize) -> Result<f32> {
        self.check_range(start, end)?;
        self.refresh_shared_params();
        let mut loss = 0.0f64;
        for index in start..=end {
            loss += f64::from(self.forward_layer(index)?);
        }
        Ok(loss as f32)
    }

    /// An error unless `first..=last` are layers of the net, in running order.
    fn check_range(&self, first: usize, last: usize) -> Result<()> {
        if first > last || last >= self.slots.len() {
            return Err(Error::Net {
                origin: self.origin.clone(),
                reason: format!(
                    "layers {first} to {last} are not a range of this net's {} layers",
                    self.slots.len()
                ),
            });
        }
        Ok(())
    }

    /// Adds each shared param's gradient to its owner's and zeroes it.
    fn give_shared_gradients_to_owners(&mut self) {
        for info in &self.params {
            if let Some((owner_layer, owner_index)) = info.owner {
                let (owner, sharer) = owner_and_sharer(&mut self.slots, owner_layer, info.layer);
                let shared = &mut sharer.layer.params_mut()[info.index];
                let target = &mut owner.layer.params_mut()[owner_index];
                crate::math::axpy(1.0, shared.diff(), target.diff_mut());
                shared.zero_diff();
            }
        }
    }

    /// Zeroes every learnable blob's gradient.
    pub fn clear_param_diffs(&mut self) {
        for slot in &mut self.slots {
            for param in slot.layer.params_mut() {
                param.zero_diff();
            }
        }
    }

    /// The net's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The phase the net was built for.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Things worth telling the user about the definition (such as a Softmax before InfogainLoss).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Layer names in running order (inserted Splits included).
    pub fn layer_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// Type name of each layer, in running order.
    pub fn layer_types(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.param.r#type())
    }

    /// Whether layer `index` runs backward.
    pub fn layer_needs_backward(&self, index: usize) -> bool {
        self.slots[index].need_backward
    }

    /// Whether layer `index` propagates a gradient to each of its bottoms.
    pub fn bottom_needs_backward(&self, index: usize) -> &[bool] {
        &self.slots[index].bottom_need_backward
    }

    /// Names of the blobs (one per version: an in-place layer's output has the same name as its input).
    pub fn blob_names(&self) -> &[String] {
        &self.blob_names
    }

    /// The blob a name refers to after forward: its newest version.
    pub fn blob(&self, name: &str) -> Option<&Blob> {
        self.blob_id(name).map(|id| &self.blobs[id])
    }

    /// The blob a name refers to, for writing (an input before forward).
    pub fn blob_mut(&mut self, name: &str) -> Option<&mut Blob> {
        self.blob_id(name).map(|id| &mut self.blobs[id])
    }

    /// The gradient Caffe would show for a blob name after backward: that of its first version (an in-place
    /// layer's backward writes the gradient of its input last).
    pub fn blob_diff(&self, name: &str) -> Option<&[f32]> {
        self.blob_names
            .iter()
            .position(|n| n == name)
            .map(|id| self.blobs[id].diff())
    }

    /// The names of the prototxt's own blobs, each once, in the order they are first made (Split outputs that
    /// crema inserts are left out).
    pub fn visible_blob_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (name, &split) in self.blob_names.iter().zip(&self.blob_is_split) {
            if !split && !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// The index of the layer called `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    /// The index of the layer that makes blob `name` (its newest version).
    pub fn producer_of(&self, name: &str) -> Option<usize> {
        self.producer_slot(self.blob_id(name)?)
    }

    /// The index of the layer whose tops include blob `id`.
    fn producer_slot(&self, id: usize) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| (s.first_top..s.first_top + s.top_count).contains(&id))
    }

    /// The ids of every version of blob `name`, oldest first (one unless in-place layers write it): for front
    /// ends that show one blob per name, as Caffe has, reading values from the newest and gradients from the
    /// oldest.
    pub fn blob_version_ids(&self, name: &str) -> Vec<usize> {
        (0..self.blob_names.len())
            .filter(|&id| self.blob_names[id] == name)
            .collect()
    }

    /// The index of the layer that makes version `id` of a blob (None for a blob no layer makes).
    pub fn blob_producer(&self, id: usize) -> Option<usize> {
        self.producer_slot(id)
    }

    /// The blob with id `id` (from [`Net::blob_version_ids`]).
    pub fn blob_by_id_mut(&mut self, id: usize) -> &mut Blob {
        &mut self.blobs[id]
    }

    fn blob_id(&self, name: &str) -> Option<usize> {
        self.blob_names.iter().rposition(|n| n == name)
    }

    /// Blob names filled from outside (the tops of Input layers).
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&b| self.blob_names[b].as_str())
            .collect()
    }

    /// The net's outputs after forward: each output blob's name, values and loss weight (0 when it is no loss).
    pub fn output_values(&self) -> Vec<(String, Vec<f32>, f32)> {
        self.outputs
            .iter()
            .map(|&blob| {
                let weight = self.producer_slot(blob).map_or(0.0, |i| {
                    let slot = &self.slots[i];
                    slot.loss_weights[blob - slot.first_top]
                });
                (
                    self.blob_names[blob].clone(),
                    self.blobs[blob].data().to_vec(),
                    weight,
                )
            })
            .collect()
    }

    /// Blob names no layer reads: the net's outputs.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .map(|&b| self.blob_names[b].as_str())
            .collect()
    }

    /// Every learnable blob with its solver settings, in Caffe's order (layer by layer).
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// The learnable blobs of layer `index`.
    pub fn layer_params(&self, index: usize) -> &[Blob] {
        self.slots[index].layer.params()
    }

    /// The learnable blobs of layer `index`, for writing.
    pub fn layer_params_mut(&mut self, index: usize) -> &mut [Blob] {
        self.slots[index].layer.params_mut()
    }
}

/// Read-only views of single layers, and running layers one at a time (for `crema test` and `crema time`).
impl Net {
    /// The definition of layer `index` as the net uses it (after filtering; an inserted Split's own).
    pub fn layer_param(&self, index: usize) -> &LayerParameter {
        &self.slots[index].param
    }

    /// The blob names layer `index` reads, as wired: a blob read by several layers is read through the outputs
    /// of an inserted Split, whose names differ from the prototxt's (see [`Net::layer_param`] for those).
    pub fn layer_bottom_names(&self, index: usize) -> Vec<&str> {
        self.slots[index]
            .bottoms
            .iter()
            .map(|&b| self.blob_names[b].as_str())
            .collect()
    }

    /// The blob names layer `index` writes.
    pub fn layer_top_names(&self, index: usize) -> Vec<&str> {
        let slot = &self.slots[index];
        self.blob_names[slot.first_top..slot.first_top + slot.top_count]
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// The blobs layer `index` reads, in bottom order: exactly the versions it reads, whatever in-place layers
    /// later do to blobs of the same name.
    pub fn layer_bottoms(&self, index: usize) -> Vec<&Blob> {
        self.slots[index]
            .bottoms
            .iter()
            .map(|&b| &self.blobs[b])
            .collect()
    }

    /// The blobs layer `index` writes, in top order.
    pub fn layer_tops(&self, index: usize) -> &[Blob] {
        let slot = &self.slots[index];
        &self.blobs[slot.first_top..slot.first_top + slot.top_count]
    }

    /// The loss weight of each of layer `index`'s tops (0 for a top that is not a loss).
    pub fn layer_loss_weights(&self, index: usize) -> &[f32] {
        &self.slots[index].loss_weights
    }

    /// Runs layer `index` forward alone, on whatever its bottoms hold; returns its weighted loss. The layers
    /// before it must have run. Unlike [`Net::forward`] it does not refresh shared params first.
    pub fn forward_layer(&mut self, index: usize) -> Result<f32> {
        let slot = &self.slots[index];
        let changed = slot
            .bottoms
            .iter()
            .zip(&slot.reshaped_for)
            .any(|(&b, shape)| self.blobs[b].shape() != &shape[..]);
        if changed {
            self.reshape_layer(index)?;
        }
        let result = {
            let slot = &mut self.slots[index];
            let (before, after) = self.blobs.split_at_mut(slot.first_top);
            let bottoms: SmallVec<[&Blob; 4]> = slot.bottoms.iter().map(|&b| &before[b]).collect();
            let mut tops: SmallVec<[&mut Blob; 4]> = after[..slot.top_count].iter_mut().collect();
            slot.layer.forward(&bottoms, &mut tops)
        };
        result.map_err(|e| self.slot_error(index, e))?;
        let slot = &self.slots[index];
        let mut loss = 0.0f64;
        for (j, &weight) in slot.loss_weights.iter().enumerate() {
            if weight != 0.0 {
                let sum: f64 = self.blobs[slot.first_top + j]
                    .data()
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum();
                loss += f64::from(weight) * sum;
            }
        }
        Ok(loss as f32)
    }

    /// Runs layer `index` backward alone if it needs backward (does nothing otherwise); the layers after it
    /// must have run backward. Unlike [`Net::backward`] it neither sets the loss tops' diffs nor hands shared
    /// params' gradients to their owners.
    pub fn backward_layer(&mut self, index: usize) -> Result<()> {
        if !self.slots[index].need_backward {
            return Ok(());
        }
        let result = {
            let slot = &mut self.slots[index];
            let (before, after) = self.blobs.split_at_mut(slot.first_top);
            let tops: SmallVec<[&Blob; 4]> = after[..slot.top_count].iter().collect();
            let mut bottoms = disjoint_mut(before, &slot.bottoms);
            slot.layer
                .backward(&tops, &slot.bottom_need_backward, &mut bottoms)
        };
        result.map_err(|e| self.slot_error(index, e))
    }

    /// [`Net::forward`], timing each layer: returns the total loss and each layer's forward time, in running
    /// order.
    pub fn forward_timed(&mut self) -> Result<(f32, Vec<std::time::Duration>)> {
        self.refresh_shared_params();
        let mut loss = 0.0f64;
        let mut times = Vec::with_capacity(self.slots.len());
        for index in 0..self.slots.len() {
            let start = std::time::Instant::now();
            loss += f64::from(self.forward_layer(index)?);
            times.push(start.elapsed());
        }
        Ok((loss as f32, times))
    }

    /// [`Net::backward`], timing each layer: returns each layer's backward time, in running order (near zero
    /// for layers that need no backward).
    pub fn backward_timed(&mut self) -> Result<Vec<std::time::Duration>> {
        self.set_loss_diffs();
        let mut times = vec![std::time::Duration::ZERO; self.slots.len()];
        for index in (0..self.slots.len()).rev() {
            let start = std::time::Instant::now();
            self.backward_layer(index)?;
            times[index] = start.elapsed();
        }
        self.give_shared_gradients_to_owners();
        Ok(times)
    }
}

/// Why crema refuses a BVLC Caffe layer type it leaves out on purpose, for a clearer error than "no layer of
/// type": the recurrent layers and R-CNN's window data layer.
fn left_out(type_name: &str) -> Option<&'static str> {
    match type_name {
        "LSTM" | "RNN" => Some("crema does not implement the recurrent layers LSTM and RNN"),
        "Python" => Some(
            "Python layers run where crema runs inside Python: install the Python package (`pip install .` at \
             crema's repository root) and use caffe.Net or caffe.get_solver from Python, or the `crema` \
             command of that environment (`python -m crema train ...`)",
        ),
        "WindowData" => Some(
            "crema does not implement WindowData (R-CNN's window-file data layer); give the crops through \
             ImageData, Data (LMDB) or HDF5Data instead",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
