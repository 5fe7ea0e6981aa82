//! DummyData (STUB: being written; must not be committed as is).

use crate::layer::{Layer, LayerContext, LayerError, LayerResult};

/// Makes a DummyData layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Err(LayerError::new("STUB"))
}
