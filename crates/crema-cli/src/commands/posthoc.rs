//! `--logit-adjust TAU` with `--prior-source SRC` or `--prior FILE`, shared by `crema test` and `crema predict`:
//! post-hoc logit adjustment of a net trained with plain softmax (see `crema::net::posthoc`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use crema::net::posthoc::{adjust_logits, PriorFrom};
use crema::proto::NetParameter;

/// The post-hoc correction options.
#[derive(Debug, Clone, clap::Args)]
pub struct LogitAdjustArgs {
    /// Post-hoc logit adjustment: subtract TAU · log(prior) from the scores (from the logits, when a Softmax makes
    /// them) before any metric or prediction, for a net trained with plain softmax (Menon et al. 2021; TAU 1 is
    /// the usual choice). The weights are not changed. Needs --prior-source or --prior.
    #[arg(long, value_name = "TAU", allow_negative_numbers = true)]
    pub logit_adjust: Option<f32>,
    /// The class prior's data source, whose labels are counted: a .npy of labels, an .h5 file, an HDF5 source
    /// list, an LMDB or an image list (as `crema infogain --source`); usually the training set.
    #[arg(long, value_name = "SRC", conflicts_with = "prior")]
    pub prior_source: Option<PathBuf>,
    /// The class prior as counts, one per class in class order: .npy, .binaryproto or text numbers.
    #[arg(long, value_name = "FILE")]
    pub prior: Option<PathBuf>,
}

impl LogitAdjustArgs {
    /// The adjustment asked for, if any; an error when half of it is given.
    pub fn requested(&self) -> Result<Option<(f32, PriorFrom)>> {
        let prior = match (&self.prior_source, &self.prior) {
            (Some(source), _) => Some(PriorFrom::Source(source.display().to_string())),
            (None, Some(file)) => Some(PriorFrom::CountsFile(file.display().to_string())),
            (None, None) => None,
        };
        match (self.logit_adjust, prior) {
            (None, None) => Ok(None),
            (Some(tau), Some(prior)) => {
                if !tau.is_finite() {
                    bail!("--logit-adjust {tau}: give a finite number");
                }
                Ok(Some((tau, prior)))
            }
            (Some(_), None) => {
                bail!("--logit-adjust needs the class prior: give --prior-source SRC (labels to count) or --prior FILE (counts)")
            }
            (None, Some(_)) => bail!("--prior-source and --prior go with --logit-adjust TAU"),
        }
    }

    /// Puts the adjustment on each of `scores` in `param`; returns what was adjusted, for a note.
    pub fn apply(&self, param: &mut NetParameter, scores: &[String]) -> Result<Vec<String>> {
        let Some((tau, prior)) = self.requested()? else {
            return Ok(Vec::new());
        };
        let mut adjusted = Vec::new();
        for blob in scores {
            let target = adjust_logits(param, blob, tau, &prior)?;
            if !adjusted.contains(&target) {
                adjusted.push(target);
            }
        }
        Ok(adjusted)
    }
}
