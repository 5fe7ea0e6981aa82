//! In-place layers (`bottom: "x" top: "x"`) that Caffe would run wrong are refused when the net is built.
//!
//! crema gives an in-place top storage of its own (see [`super::graph`]), so it would compute the right values
//! anyway; but in Caffe the top *is* the bottom's storage, and a layer that changes the shape, or that reads its
//! input again in backward, silently computes something else there. Refusing such nets keeps a prototxt meaning
//! the same in both, and names the layer where Caffe would have given garbage (see [`crate::layer::InPlace`]).

use super::Net;
use crate::error::Result;
use crate::layer::{InPlace, LayerError};

impl Net {
    /// Checks every layer whose top has the name of one of its bottoms; see the module documentation.
    pub(super) fn check_in_place(&self) -> Result<()> {
        for (index, slot) in self.slots.iter().enumerate() {
            for (t, name) in slot.param.top.iter().enumerate() {
                let Some(b) = slot.param.bottom.iter().position(|n| n == name) else {
                    continue;
                };
                let (bottom, top) = (
                    &self.blobs[slot.bottoms[b]],
                    &self.blobs[slot.first_top + t],
                );
                let problem = if top.shape() != bottom.shape() {
                    Some(format!(
                        "makes a top of shape {} from a bottom of shape {}",
                        top.shape_string(),
                        bottom.shape_string()
                    ))
                } else {
                    match slot.layer.in_place() {
                        InPlace::No => Some("computes its top from the whole bottom at once".to_owned()),
                        InPlace::ForwardOnly if slot.need_backward => Some(
                            "reads its input again in backward, which the top has overwritten (Caffe's \
                             gradient would be wrong)"
                                .to_owned(),
                        ),
                        InPlace::ForwardOnly | InPlace::Yes => None,
                    }
                };
                if let Some(problem) = problem {
                    return Err(self.slot_error(
                        index,
                        LayerError::new(format!(
                            "top \"{name}\" is also its bottom (in place), but this layer cannot run in place: it \
                             {problem}; give the top a name of its own"
                        )),
                    ));
                }
            }
        }
        Ok(())
    }
}
