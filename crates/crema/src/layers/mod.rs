//! Every layer crema has, one file each, and the registry from type name to constructor.
//!
//! To add a layer: write `layers/my_layer.rs` with a type implementing [`Layer`] and a
//! `pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>>`, then add one line to [`REGISTRY`].
//! An elementwise layer only implements [`neuron::NeuronOp`], its per-value math; [`loss`] holds what the loss
//! layers share.

pub mod absval;
pub mod accuracy;
pub mod argmax;
pub mod batch_norm;
pub mod batch_reindex;
pub mod bias;
pub mod bnll;
pub mod class_weights;
pub mod clip;
pub mod concat;
pub mod constant;
pub mod contrastive_loss;
pub mod convolution;
pub mod crop;
pub mod data;
pub mod deconvolution;
pub mod dropout;
pub mod dummy_data;
pub mod eltwise;
pub mod elu;
pub mod embed;
pub mod euclidean_loss;
pub mod exp;
pub mod filter;
pub mod flatten;
pub mod focal_loss;
pub mod hdf5_data;
pub mod hdf5_output;
pub mod hinge_loss;
pub mod im2col;
pub mod image_data;
pub mod infogain_loss;
pub mod inner_product;
pub mod input;
pub mod log;
pub mod logit_adjust;
pub mod loss;
pub mod lrn;
pub mod multinomial_logistic_loss;
pub mod mvn;
pub mod neuron;
pub mod parameter;
pub mod pooling;
pub mod power;
pub mod prelu;
pub mod reduction;
pub mod relu;
pub mod reshape;
pub mod scale;
pub mod sigmoid;
pub mod sigmoid_cross_entropy_loss;
pub mod silence;
pub mod slice;
pub mod softmax;
pub mod softmax_with_loss;
pub mod split;
pub mod spp;
pub mod swish;
pub mod tanh;
pub mod threshold;
pub mod tile;

use crate::layer::{Layer, LayerContext, LayerResult};

/// A layer constructor: reads the layer's parameters and returns the layer, or an error naming the field.
pub type Constructor = fn(&mut LayerContext) -> LayerResult<Box<dyn Layer>>;

/// Type name → constructor, for every layer type crema has.
pub const REGISTRY: &[(&str, Constructor)] = &[
    ("AbsVal", absval::create),
    ("Accuracy", accuracy::create),
    ("ArgMax", argmax::create),
    ("BNLL", bnll::create),
    ("BatchNorm", batch_norm::create),
    ("BatchReindex", batch_reindex::create),
    ("Bias", bias::create),
    ("ClassWeights", class_weights::create),
    ("Clip", clip::create),
    ("Concat", concat::create),
    ("Constant", constant::create),
    ("ContrastiveLoss", contrastive_loss::create),
    ("Convolution", convolution::create),
    ("Crop", crop::create),
    ("Data", data::create),
    ("Deconvolution", deconvolution::create),
    ("Dropout", dropout::create),
    ("DummyData", dummy_data::create),
    ("ELU", elu::create),
    ("Eltwise", eltwise::create),
    ("Embed", embed::create),
    ("EuclideanLoss", euclidean_loss::create),
    ("Exp", exp::create),
    ("Filter", filter::create),
    ("Flatten", flatten::create),
    ("FocalLoss", focal_loss::create),
    ("HDF5Data", hdf5_data::create),
    ("HDF5Output", hdf5_output::create),
    ("HingeLoss", hinge_loss::create),
    ("Im2col", im2col::create),
    ("ImageData", image_data::create),
    ("InfogainLoss", infogain_loss::create),
    ("InnerProduct", inner_product::create),
    ("Input", input::create),
    ("LRN", lrn::create),
    ("Log", log::create),
    ("LogitAdjust", logit_adjust::create),
    ("MVN", mvn::create),
    ("MultinomialLogisticLoss", multinomial_logistic_loss::create),
    ("PReLU", prelu::create),
    ("Parameter", parameter::create),
    ("Pooling", pooling::create),
    ("Power", power::create),
    ("ReLU", relu::create),
    ("Reduction", reduction::create),
    ("Reshape", reshape::create),
    ("SPP", spp::create),
    ("Scale", scale::create),
    ("Sigmoid", sigmoid::create),
    (
        "SigmoidCrossEntropyLoss",
        sigmoid_cross_entropy_loss::create,
    ),
    ("Silence", silence::create),
    ("Slice", slice::create),
    ("Softmax", softmax::create),
    ("SoftmaxWithLoss", softmax_with_loss::create),
    ("Split", split::create),
    ("Swish", swish::create),
    ("TanH", tanh::create),
    ("Threshold", threshold::create),
    ("Tile", tile::create),
];

/// Layer types a front end adds at run time: the Python package registers `"Python"`, whose layers run the
/// user's Python classes and so exist only where crema runs inside a Python interpreter.
static FRONT_END_LAYERS: std::sync::RwLock<Vec<(&'static str, Constructor)>> =
    std::sync::RwLock::new(Vec::new());

/// Adds (or replaces) a layer type that is not in [`REGISTRY`]; front ends call it once, before building nets.
pub fn register(type_name: &'static str, create: Constructor) {
    let mut added = FRONT_END_LAYERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    added.retain(|(name, _)| *name != type_name);
    added.push((type_name, create));
}

/// The constructor for `type_name`, if crema has that layer (built in or registered by a front end).
pub fn constructor(type_name: &str) -> Option<Constructor> {
    REGISTRY
        .iter()
        .find(|(name, _)| *name == type_name)
        .map(|(_, create)| *create)
        .or_else(|| {
            FRONT_END_LAYERS
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .find(|(name, _)| *name == type_name)
                .map(|(_, create)| *create)
        })
}

/// The names of every layer type crema has, sorted.
pub fn type_names() -> Vec<&'static str> {
    let mut names: Vec<_> = REGISTRY.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names
}

/// Helpers for the layers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crema_proto::caffe::Phase;
    use crema_proto::LayerParameter;

    use crate::layer::LayerContext;

    /// A TRAIN-phase context for `param`, resolving paths against the working directory only.
    pub fn context(param: &LayerParameter) -> LayerContext<'_> {
        context_in(param, Phase::Train)
    }

    /// A layer made by `create` from prototxt text (a TRAIN-phase context); panics on a bad definition.
    pub fn layer_from_text(create: super::Constructor, text: &str) -> Box<dyn crate::layer::Layer> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    /// Sets `layer` up on `bottoms`, reshapes it and runs it forward once; returns its `tops` tops.
    pub fn forward_once(
        layer: &mut dyn crate::layer::Layer,
        bottoms: &[&crate::blob::Blob],
        tops: usize,
    ) -> crate::layer::LayerResult<Vec<crate::blob::Blob>> {
        let mut out: Vec<crate::blob::Blob> = (0..tops).map(|_| Default::default()).collect();
        let mut refs: Vec<&mut crate::blob::Blob> = out.iter_mut().collect();
        layer.setup(bottoms, &mut refs)?;
        layer.reshape(bottoms, &mut refs)?;
        layer.forward(bottoms, &mut refs)?;
        Ok(out)
    }

    /// A context for `param` in `phase`.
    pub fn context_in(param: &LayerParameter, phase: Phase) -> LayerContext<'_> {
        LayerContext {
            param,
            phase,
            search_dirs: &[],
            rng: crate::math::rng(42, 0),
        }
    }
}
