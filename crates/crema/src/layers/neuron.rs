//! What the elementwise ("neuron") layers share: one bottom, one top of its shape, `y = f(x)` value by value,
//! and a gradient computed value by value from `x`, `y` and `dy`.
//!
//! A neuron layer's file holds its parameters and per-value math as a type implementing [`NeuronOp`], and a
//! `create` that reads the parameters and hands the op to [`neuron`]. [`Neuron`] implements [`Layer`] for
//! every op with plain slice loops: the op is a type parameter, so each loop is compiled for its op, whose
//! functions inline (no call through a pointer per value) and vectorize where the math allows. Conditions on
//! the op's parameters are the same for every value, and the compiler takes them out of the loops.

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerResult};

/// The per-value math of a neuron layer.
pub trait NeuronOp: Send + 'static {
    /// The type name, as in the prototxt (`"ReLU"`).
    const TYPE_NAME: &'static str;

    /// The top's value `y` for the bottom's value `x`.
    fn value(&self, x: f32) -> f32;

    /// The bottom's gradient for the bottom's value `x`, the top's value `y` and the top's gradient `dy`.
    fn gradient(&self, x: f32, y: f32, dy: f32) -> f32;

    /// Whether Caffe's backward gets the right gradient from the top alone when the top overwrote the bottom
    /// (in place); when it needs `x` itself the layer runs in place only where no gradient flows.
    fn backward_in_place(&self) -> bool {
        false
    }
}

/// The layer of a [`NeuronOp`].
pub struct Neuron<Op>(pub Op);

/// The layer of `op`, boxed for the registry.
pub fn neuron<Op: NeuronOp>(op: Op) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Neuron(op)))
}

impl<Op: NeuronOp> Layer for Neuron<Op> {
    fn type_name(&self) -> &'static str {
        Op::TYPE_NAME
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn in_place(&self) -> InPlace {
        if self.0.backward_in_place() {
            InPlace::Yes
        } else {
            InPlace::ForwardOnly
        }
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let op = &self.0;
        for (y, &x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = op.value(x);
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] {
            return Ok(());
        }
        let op = &self.0;
        let (x, dx) = bottom[0].data_and_diff_mut();
        for (((dx, &x), &y), &dy) in dx.iter_mut().zip(x).zip(top[0].data()).zip(top[0].diff()) {
            *dx = op.gradient(x, y, dy);
        }
        Ok(())
    }
}

/// Helpers for the neuron layers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crema_proto::LayerParameter;

    use crate::blob::Blob;
    use crate::layer::Layer;
    use crate::layers::test_support::context;
    use crate::layers::Constructor;
    use crate::testing::{uniform_blob, GradientChecker};

    /// Runs `layer` forward on `values` (shape `[len]`) and backward with top gradient `dy`, the bottom's
    /// gradient starting as NaN so that every value must be written; returns the top's values and the bottom's
    /// gradient.
    pub fn run(layer: &mut dyn Layer, values: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut bottom = Blob::from_data(&[values.len()], values.to_vec()).unwrap();
        let mut top = Blob::default();
        layer.reshape(&[&bottom], &mut [&mut top]).unwrap();
        layer.forward(&[&bottom], &mut [&mut top]).unwrap();
        top.diff_mut().copy_from_slice(dy);
        bottom.diff_mut().fill(f32::NAN);
        layer
            .backward(&[&top], &[true], &mut [&mut bottom])
            .unwrap();
        (top.data().to_vec(), bottom.diff().to_vec())
    }

    /// Asserts `actual` is `expected` within 1e-5, relative to the expected value where that exceeds 1.
    pub fn assert_close(actual: &[f32], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (&a, &e) in actual.iter().zip(expected) {
            assert!(
                (f64::from(a) - e).abs() <= 1e-5 * e.abs().max(1.0),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    /// Values drawn from `[low, high)` and moved 0.1 further from 0, away from a kink there (where the finite
    /// difference would straddle two slopes).
    pub fn away_from_zero(shape: &[usize], low: f32, high: f32, seed: u64) -> Blob {
        let mut blob = uniform_blob(shape, low, high, seed);
        for v in blob.data_mut() {
            *v += 0.1 * v.signum();
        }
        blob
    }

    /// Checks by finite differences the gradient of the layer that `create` makes with default parameters, at
    /// inputs drawn from `[-range, range)` with `seed`, of `shape`, for each `(seed, shape, range)`.
    pub fn check_default_gradient(create: Constructor, cases: &[(u64, &[usize], f32)]) {
        let param = LayerParameter::default();
        for &(seed, shape, range) in cases {
            let mut layer = create(&mut context(&param)).unwrap();
            GradientChecker::default()
                .check(
                    layer.as_mut(),
                    &mut [uniform_blob(shape, -range, range, seed)],
                    1,
                    &[0],
                )
                .unwrap();
        }
    }
}
