//! The [`Layer`] trait every layer implements, and what a layer is given when it is made.
//!
//! A layer reads its bottom blobs and writes its top blobs. Its life: [`Layer::setup`] once (checks that only
//! need doing once; creating learnable blobs), then [`Layer::reshape`] whenever bottom shapes may have changed
//! (every shape check and every top shape here), then [`Layer::forward`] and [`Layer::backward`] each iteration.
//! Forward and backward allocate nothing.
//!
//! The net gives every layer distinct bottom and top blobs: a prototxt's in-place layers (`bottom: "x"
//! top: "x"`) get a fresh top blob, and a blob read by several layers is split, so a layer never sees the same
//! blob twice.

use std::path::PathBuf;

use crema_proto::caffe::Phase;
use crema_proto::LayerParameter;

use crate::blob::Blob;
use crate::math::Rng;

/// An error inside one layer; the net adds the layer's name, type and file. When one value of a bottom is to
/// blame (a label that is not a class index), the second field says which, and the net adds where the data
/// layer that made it read that value (a file and row, an LMDB key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(pub String, pub Option<BottomItem>);

/// One value of one bottom: `index` counts the bottom's values in C order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BottomItem {
    pub bottom: usize,
    pub index: usize,
}

impl LayerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        LayerError(message.into(), None)
    }

    /// An error about value `index` of bottom `bottom`.
    pub fn at_item(message: impl Into<String>, bottom: usize, index: usize) -> Self {
        LayerError(message.into(), Some(BottomItem { bottom, index }))
    }
}

impl From<String> for LayerError {
    fn from(message: String) -> Self {
        LayerError(message, None)
    }
}

impl From<crate::Error> for LayerError {
    fn from(error: crate::Error) -> Self {
        LayerError(error.to_string(), None)
    }
}

impl From<crate::memory::AllocError> for LayerError {
    fn from(error: crate::memory::AllocError) -> Self {
        LayerError(error.to_string(), None)
    }
}

/// Result of layer methods.
pub type LayerResult<T = ()> = std::result::Result<T, LayerError>;

/// What a layer is given when it is made: its parameters and where it runs.
pub struct LayerContext<'a> {
    /// The layer's definition from the prototxt (after upgrades).
    pub param: &'a LayerParameter,
    /// TRAIN or TEST.
    pub phase: Phase,
    /// Folders to resolve relative paths in parameters against, in order (the working directory first, as
    /// Caffe does, then the prototxt's folder).
    pub search_dirs: &'a [PathBuf],
    /// This layer's own random generator, derived from the net's seed and the layer's position.
    pub rng: Rng,
}

impl LayerContext<'_> {
    /// Resolves `path` from a parameter: as given when it exists, else in each search folder in turn; the
    /// path as given when found nowhere (so the error names what the user wrote).
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(path, self.search_dirs)
    }
}

/// Resolves a path read from a prototxt as Caffe does, against the working directory, then (crema's addition)
/// against each folder of `search_dirs` in turn; the path as given when it is found nowhere, so that the error
/// names what the user wrote.
pub fn resolve_path(path: &str, search_dirs: &[PathBuf]) -> PathBuf {
    let given = PathBuf::from(path);
    if given.is_absolute() || given.exists() {
        return given;
    }
    search_dirs
        .iter()
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.exists())
        .unwrap_or(given)
}

/// A text parameter that must be given and not empty (a `source`), or an error `"{field}: missing; give {what}"`.
pub fn required_text<'a>(value: Option<&'a str>, field: &str, what: &str) -> LayerResult<&'a str> {
    match value {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(LayerError::new(format!("{field}: missing; give {what}"))),
    }
}

/// A count parameter that must be at least 1 (a `batch_size`), or an error
/// `"{field}: missing or 0; give {what}"`.
pub fn required_count(value: u32, field: &str, what: &str) -> LayerResult<usize> {
    if value == 0 {
        return Err(LayerError::new(format!(
            "{field}: missing or 0; give {what}"
        )));
    }
    Ok(value as usize)
}

/// How many bottoms or tops a layer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arity {
    pub min: usize,
    pub max: usize,
}

impl Arity {
    /// Exactly `n`.
    pub const fn exactly(n: usize) -> Arity {
        Arity { min: n, max: n }
    }

    /// From `min` to `max`, inclusive.
    pub const fn between(min: usize, max: usize) -> Arity {
        Arity { min, max }
    }

    /// `min` or more.
    pub const fn at_least(min: usize) -> Arity {
        Arity {
            min,
            max: usize::MAX,
        }
    }

    /// Whether `n` is allowed.
    pub fn allows(&self, n: usize) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

/// Whether a layer may be written in place (`bottom: "x" top: "x"`), as Caffe would run it: there the top *is*
/// the bottom's storage, so only a layer whose top has its bottom's shape, and whose backward does not read the
/// input it overwrote, computes what it should. (crema gives an in-place top storage of its own, but refuses
/// what Caffe would get wrong, so that a net means the same in both.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlace {
    /// Never in place (a top of another shape, or values computed from the whole input at once).
    No,
    /// In place when no gradient flows through the layer: elementwise, but its backward reads its input.
    ForwardOnly,
    /// In place always (its backward reads only the top, or it keeps its own copy of the input).
    Yes,
}

/// A layer of a net. See the module documentation for its life cycle.
pub trait Layer: Send {
    /// The type name, as in the prototxt (`"InnerProduct"`).
    fn type_name(&self) -> &'static str;

    /// How many bottoms the layer takes.
    fn bottom_arity(&self) -> Arity;

    /// How many tops the layer makes.
    fn top_arity(&self) -> Arity;

    /// Whether this is a loss layer: its first top then gets loss_weight 1 unless the prototxt says otherwise.
    fn is_loss(&self) -> bool {
        false
    }

    /// Where value `index` of top `top` came from in the last forward, for data layers (`train.h5, dataset
    /// "label", row 1031`); None for layers that compute their tops.
    fn top_item_origin(&self, _top: usize, _index: usize) -> Option<String> {
        None
    }

    /// For a layer that passes values through unchanged (Split, Reshape, Flatten): which bottom value value
    /// `index` of top `top` is. Errors about a value are traced back through such layers to its data layer.
    fn top_item_source(&self, _top: usize, _index: usize) -> Option<BottomItem> {
        None
    }

    /// Whether the layer may run in place; see [`InPlace`].
    fn in_place(&self) -> InPlace {
        InPlace::No
    }

    /// Whether `force_backward` may ask for a gradient to bottom `index` (losses refuse their labels).
    fn allow_force_backward(&self, _index: usize) -> bool {
        true
    }

    /// One-time setup with the first bottoms: checks, and learnable blobs created and filled.
    fn setup(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }

    /// Checks bottom shapes and shapes the tops. Called before the first forward and when inputs change shape.
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult;

    /// Computes the tops from the bottoms.
    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult;

    /// Computes bottom gradients (where `propagate_down[i]`) from top gradients, and adds parameter gradients
    /// to the learnable blobs' diffs. Bottom diffs are overwritten, parameter diffs accumulated.
    fn backward(
        &mut self,
        _top: &[&Blob],
        _propagate_down: &[bool],
        _bottom: &mut [&mut Blob],
    ) -> LayerResult {
        Ok(())
    }

    /// What a resumed run needs to continue exactly where this layer stood (a data reader's position, a random
    /// generator's state), in the layer's own encoding; None for layers whose output depends only on inputs.
    fn state(&self) -> Option<Vec<u8>> {
        None
    }

    /// Puts back a state returned by [`Layer::state`].
    fn set_state(&mut self, _state: &[u8]) -> LayerResult {
        Err(LayerError::new("this layer keeps no state to restore"))
    }

    /// The learnable blobs (weights, biases), in Caffe's order.
    fn params(&self) -> &[Blob] {
        &[]
    }

    /// The learnable blobs, for the solver and for loading weights.
    fn params_mut(&mut self) -> &mut [Blob] {
        &mut []
    }

    /// Whether the solver may change blob `index` of [`Layer::params`]: false for a blob the layer keeps up to
    /// date itself (BatchNorm's running statistics). The net gives such a blob lr_mult 0, adding the ParamSpec
    /// where the prototxt gives none (as Caffe's BatchNorm does), and refuses a ParamSpec with another lr_mult
    /// (as Caffe does). Such blobs are still saved, loaded and copied to test nets like any other.
    fn param_is_learned(&self, _index: usize) -> bool {
        true
    }
}
