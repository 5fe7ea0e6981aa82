//! Solvers: learning-rate policies, regularization, gradient clipping and the update rules.
//!
//! One update, [`apply_update`], does what Caffe's `SGDSolver::ApplyUpdate` does, in the same order:
//!
//! 1. the learning rate of the iteration ([`learning_rate`], by `lr_policy`);
//! 2. clipping: when `clip_gradients ≥ 0` and the L2 norm of all gradients together passes it, every gradient is
//!    scaled by `clip_gradients / norm` ([`clip_gradients`]). As in Caffe this sees the gradients still summed
//!    over `iter_size` passes (clipping comes before normalization);
//! 3. for each learnable blob: division by `iter_size` ([`normalize`]); weight decay `weight_decay · decay_mult`,
//!    L2 or L1 by `regularization_type` ([`regularize`]); the update rule's step at the local rate
//!    `rate · lr_mult`, written into the diff (Caffe's `ComputeUpdateValue`);
//! 4. `data −= diff`.
//!
//! The learnable blobs are the params a net owns: a blob shared by name is updated through its owner only.
//!
//! The update rules, one file each: [`Sgd`] (momentum), [`Nesterov`], [`AdaGrad`], [`RmsProp`], [`AdaDelta`],
//! [`Adam`]; [`create_rule`] makes the one `type` names. Each keeps Caffe's `history_` blobs ([`Histories`]) in
//! Caffe's order, which is the order of a solverstate's `history`.

mod adadelta;
mod adagrad;
mod adam;
mod gradient;
mod lr_policy;
mod nesterov;
mod rmsprop;
mod sgd;
mod solve;

use crema_proto::caffe::solver_parameter::SolverType;
use crema_proto::SolverParameter;

use crate::blob::Blob;
use crate::net::Net;

pub use adadelta::AdaDelta;
pub use adagrad::AdaGrad;
pub use adam::Adam;
pub use gradient::{clip_factor, clip_gradients, iter_size, normalize, regularize, Regularization};
pub use lr_policy::{current_step, learning_rate, LR_POLICIES};
pub use nesterov::Nesterov;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;
pub use solve::{Solver, SolverLog, SolverOptions, StderrLog, TestScores};

/// A solver setting that is missing or that crema cannot use; each names the SolverParameter field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolverError {
    /// A field of the SolverParameter that is missing or has a value crema cannot use.
    #[error("solver field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    /// Histories that do not fit the net's learnable blobs (made for another net, or restored wrongly).
    #[error("solver history: {0}")]
    History(String),
}

impl SolverError {
    fn field(field: &'static str, reason: impl Into<String>) -> SolverError {
        SolverError::Field {
            field,
            reason: reason.into(),
        }
    }
}

/// The solver types Caffe registers, as `type` spells them.
pub const SOLVER_TYPES: [&str; 6] = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"];

/// An update rule's history blobs, in Caffe's order: for `n` learnable blobs, the first history of each
/// (blobs `0..n`), then, for rules with two, the second of each (blobs `n..2n`).
#[derive(Debug, Clone, Default)]
pub struct Histories {
    per_param: usize,
    params: usize,
    prepared: bool,
    blobs: Vec<Blob>,
}

impl Histories {
    /// Empty histories for a rule that keeps `per_param` blobs per learnable blob.
    pub fn new(per_param: usize) -> Histories {
        Histories {
            per_param,
            ..Default::default()
        }
    }

    /// Zeroed histories for learnable blobs of these shapes (Caffe's `PreSolve`); replaces any there were.
    pub fn prepare(&mut self, shapes: &[&[usize]]) -> Result<(), SolverError> {
        let mut blobs = Vec::with_capacity(self.per_param * shapes.len());
        for _ in 0..self.per_param {
            for shape in shapes {
                blobs.push(Blob::new(shape).map_err(|e| SolverError::History(e.to_string()))?);
            }
        }
        self.blobs = blobs;
        self.params = shapes.len();
        self.prepared = true;
        Ok(())
    }

    /// Whether [`Histories::prepare`] has run.
    pub fn is_prepared(&self) -> bool {
        self.prepared
    }

    /// The number of learnable blobs the histories were prepared for.
    pub fn param_count(&self) -> usize {
        self.params
    }

    /// How many history blobs each learnable blob has (1, or 2 for AdaDelta and Adam).
    pub fn per_param(&self) -> usize {
        self.per_param
    }

    /// All history blobs, in Caffe's order.
    pub fn blobs(&self) -> &[Blob] {
        &self.blobs
    }

    /// All history blobs, for writing (a restored solverstate), in Caffe's order.
    pub fn blobs_mut(&mut self) -> &mut [Blob] {
        &mut self.blobs
    }

    /// The first history of learnable blob `id`.
    fn first(&mut self, id: usize, offset: usize, len: usize) -> &mut [f32] {
        &mut self.blobs[id].data_mut()[offset..offset + len]
    }

    /// The first and second histories of learnable blob `id`.
    fn pair(&mut self, id: usize, offset: usize, len: usize) -> (&mut [f32], &mut [f32]) {
        let (first, second) = self.blobs.split_at_mut(self.params);
        (
            &mut first[id].data_mut()[offset..offset + len],
            &mut second[id].data_mut()[offset..offset + len],
        )
    }
}

/// A rule that turns a learnable blob's (regularized) gradient into the step to subtract from it.
pub trait UpdateRule: Send {
    /// The `type` name, as Caffe spells it.
    fn type_name(&self) -> &'static str;

    /// The rule's history blobs.
    fn histories(&self) -> &Histories;

    /// The rule's history blobs, for writing.
    fn histories_mut(&mut self) -> &mut Histories;

    /// Replaces `diff`, the gradient of learnable blob `id`, by the step to subtract from its data, updating the
    /// histories; `local_rate` is `rate · lr_mult`, `iter` the number of updates made before this one. The
    /// histories must have been prepared ([`UpdateRule::presolve`]) and `id` be below their param count.
    ///
    /// `diff` may be a part of the blob's gradient starting at element `offset` (the solver works in
    /// cache-sized pieces); the rule updates the same part of its histories.
    fn compute_update(
        &mut self,
        id: usize,
        offset: usize,
        diff: &mut [f32],
        local_rate: f32,
        iter: u32,
    );

    /// Zeroed histories for learnable blobs of these shapes, in order.
    fn presolve(&mut self, shapes: &[&[usize]]) -> Result<(), SolverError> {
        self.histories_mut().prepare(shapes)
    }

    /// The history blobs in Caffe's order (a solverstate's `history`).
    fn history(&self) -> &[Blob] {
        self.histories().blobs()
    }

    /// The history blobs in Caffe's order, for writing.
    fn history_mut(&mut self) -> &mut [Blob] {
        self.histories_mut().blobs_mut()
    }
}

/// The solver type a SolverParameter asks for: `type`, or the deprecated `solver_type` enum, or SGD.
pub fn solver_type(param: &SolverParameter) -> Result<&'static str, SolverError> {
    let name = match (param.r#type.as_deref(), param.solver_type.is_some()) {
        (Some(_), true) => {
            return Err(SolverError::field(
                "solver_type",
                "is set together with `type`; keep only `type` (solver_type is deprecated)",
            ))
        }
        (Some(name), false) => name,
        (None, true) => match param.solver_type() {
            SolverType::Sgd => "SGD",
            SolverType::Nesterov => "Nesterov",
            SolverType::Adagrad => "AdaGrad",
            SolverType::Rmsprop => "RMSProp",
            SolverType::Adadelta => "AdaDelta",
            SolverType::Adam => "Adam",
        },
        (None, false) => "SGD",
    };
    SOLVER_TYPES
        .iter()
        .copied()
        .find(|&known| known == name)
        .ok_or_else(|| {
            SolverError::field(
                "type",
                format!(
                    "\"{name}\" is not a solver type (valid: {})",
                    SOLVER_TYPES.join(", ")
                ),
            )
        })
}

/// The update rule the SolverParameter's `type` names, with its settings checked as Caffe checks them.
pub fn create_rule(param: &SolverParameter) -> Result<Box<dyn UpdateRule>, SolverError> {
    Ok(match solver_type(param)? {
        "SGD" => Box::new(Sgd::from_param(param)?),
        "Nesterov" => Box::new(Nesterov::from_param(param)?),
        "AdaGrad" => Box::new(AdaGrad::from_param(param)?),
        "RMSProp" => Box::new(RmsProp::from_param(param)?),
        "AdaDelta" => Box::new(AdaDelta::from_param(param)?),
        "Adam" => Box::new(Adam::from_param(param)?),
        _ => unreachable!("solver_type returns one of SOLVER_TYPES"),
    })
}

/// The layer, index, lr_mult and decay_mult of the net's `k`-th param, when the net owns it.
fn owned(net: &Net, k: usize) -> Option<(usize, usize, f32, f32)> {
    let info = &net.params()[k];
    info.owner
        .is_none()
        .then_some((info.layer, info.index, info.lr_mult, info.decay_mult))
}

/// Gives `rule` zeroed histories for the learnable blobs `net` owns (Caffe's `PreSolve`).
pub fn presolve(net: &Net, rule: &mut dyn UpdateRule) -> Result<(), SolverError> {
    let shapes: Vec<&[usize]> = (0..net.params().len())
        .filter_map(|k| owned(net, k))
        .map(|(layer, index, _, _)| net.layer_params(layer)[index].shape())
        .collect();
    rule.presolve(&shapes)
}

/// Checks that the rule's histories fit the net's learnable blobs, one for one.
fn check_histories(net: &Net, rule: &dyn UpdateRule) -> Result<(), SolverError> {
    let histories = rule.histories();
    let owned_count = (0..net.params().len())
        .filter(|&k| owned(net, k).is_some())
        .count();
    if histories.param_count() != owned_count
        || histories.blobs().len() != histories.per_param() * owned_count
    {
        return Err(SolverError::History(format!(
            "the {} rule holds {} history blobs for {} learnable blobs; the net has {owned_count} learnable blobs",
            rule.type_name(),
            histories.blobs().len(),
            histories.param_count(),
        )));
    }
    let mut id = 0;
    for k in 0..net.params().len() {
        let Some((layer, index, _, _)) = owned(net, k) else {
            continue;
        };
        let count = net.layer_params(layer)[index].count();
        for copy in 0..histories.per_param() {
            let history = &histories.blobs()[copy * owned_count + id];
            if history.count() != count {
                return Err(SolverError::History(format!(
                    "history blob {} holds {} values but learnable blob {id} (param {index} of layer \"{}\") has {count}",
                    copy * owned_count + id,
                    history.count(),
                    net.layer_names().nth(layer).unwrap_or("?"),
                )));
            }
        }
        id += 1;
    }
    Ok(())
}

/// Elements of a learnable blob updated together (16 KiB of values: with gradient and histories, within L1).
const UPDATE_PIECE: usize = 4096;

/// One solver update of every learnable blob `net` owns, from the gradients its backward passes left in the
/// diffs (summed over `iter_size` passes): clip, normalize, regularize, step, `data −= diff` (see the module
/// documentation). `iter` is the number of updates made before this one. Prepares the rule's histories on the
/// first call. Returns the learning rate used.
pub fn apply_update(
    net: &mut Net,
    rule: &mut dyn UpdateRule,
    param: &SolverParameter,
    iter: u32,
) -> Result<f32, SolverError> {
    let rate = learning_rate(param, iter)?;
    let iter_size = iter_size(param)?;
    let regularization = Regularization::from_param(param)?;
    let weight_decay = param.weight_decay();
    if !rule.histories().is_prepared() {
        presolve(net, rule)?;
    }
    check_histories(net, rule)?;

    let clip = param.clip_gradients();
    if clip >= 0.0 {
        let mut sum_of_squares = 0.0;
        for k in 0..net.params().len() {
            if let Some((layer, index, _, _)) = owned(net, k) {
                let diff = net.layer_params(layer)[index].diff();
                sum_of_squares += crate::math::dot(diff, diff);
            }
        }
        if let Some(factor) = clip_factor(sum_of_squares, clip) {
            for k in 0..net.params().len() {
                if let Some((layer, index, _, _)) = owned(net, k) {
                    gradient::scale(net.layer_params_mut(layer)[index].diff_mut(), factor);
                }
            }
        }
    }

    let mut id = 0;
    for k in 0..net.params().len() {
        let Some((layer, index, lr_mult, decay_mult)) = owned(net, k) else {
            continue;
        };
        let (data, diff) = net.layer_params_mut(layer)[index].data_and_diff_both_mut();
        // Piece by piece, so that normalization, decay, the rule's step and `data −= diff` all happen while a
        // piece is in cache: one pass over memory instead of four.
        for (piece, (data, diff)) in data
            .chunks_mut(UPDATE_PIECE)
            .zip(diff.chunks_mut(UPDATE_PIECE))
            .enumerate()
        {
            normalize(diff, iter_size);
            regularize(regularization, weight_decay * decay_mult, data, diff);
            rule.compute_update(id, piece * UPDATE_PIECE, diff, rate * lr_mult, iter);
            crate::math::axpy(-1.0, diff, data);
        }
        id += 1;
    }
    Ok(rate)
}

#[cfg(test)]
mod tests;
