//! Softmax: `y_c = exp(x_c) / Σ_k exp(x_k)` along one axis, for every position of the other axes.
//!
//! Parameters: `softmax_param { axis }` (default 1; negative counts from the end). The maximum along the axis
//! is subtracted first, so no score overflows. Gradient: `dx = y ⊙ (dy − Σ_c dy_c · y_c)` along the axis.

use crate::blob::Blob;
use crate::layer::{Arity, InPlace, Layer, LayerContext, LayerError, LayerResult};
use crate::math::softmax::softmax;

/// The Softmax layer.
pub struct Softmax {
    axis: i32,
    outer: usize,
    channels: usize,
    inner: usize,
    /// `Σ_c dy_c · y_c` for each of the `inner` positions of one outer block (backward scratch).
    dots: Vec<f32>,
}

/// Makes a Softmax layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let axis = ctx.param.softmax_param.as_ref().map_or(1, |p| p.axis());
    Ok(Box::new(Softmax {
        axis,
        outer: 0,
        channels: 0,
        inner: 0,
        dots: Vec::new(),
    }))
}

/// The canonical `axis` of `bottom` and the `(outer, channels, inner)` view around it; `field` names the axis
/// parameter in errors (`softmax_param.axis`). Shared with the layers that read classes along an axis.
pub(crate) fn axis_view(
    bottom: &Blob,
    axis: i32,
    field: &str,
) -> LayerResult<(usize, usize, usize, usize)> {
    let axis = bottom
        .canonical_axis(axis)
        .map_err(|e| LayerError::new(format!("{field}: {e}")))?;
    Ok((
        axis,
        bottom.count_range(0, axis),
        bottom.shape()[axis],
        bottom.count_from(axis + 1),
    ))
}

impl Layer for Softmax {
    fn type_name(&self) -> &'static str {
        "Softmax"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn in_place(&self) -> InPlace {
        InPlace::Yes
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (_, outer, channels, inner) = axis_view(bottom[0], self.axis, "softmax_param.axis")?;
        self.outer = outer;
        self.channels = channels;
        self.inner = inner;
        crate::memory::resize(&mut self.dots, inner, 0.0, || "the softmax buffer".into())?;
        Ok(top[0].reshape_like(bottom[0])?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if bottom[0].count() == 0 {
            return Ok(());
        }
        softmax(
            bottom[0].data(),
            top[0].data_mut(),
            self.outer,
            self.channels,
            self.inner,
        );
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] || self.channels == 0 || self.inner == 0 {
            return Ok(());
        }
        let (channels, inner) = (self.channels, self.inner);
        let block = channels * inner;
        let (y, dy) = (top[0].data(), top[0].diff());
        let dx = bottom[0].diff_mut();
        let blocks = y
            .chunks_exact(block)
            .zip(dy.chunks_exact(block))
            .zip(dx.chunks_exact_mut(block));
        for ((y, dy), dx) in blocks {
            // Σ_c dy_c · y_c for every inner position, reading rows contiguously.
            self.dots.fill(0.0);
            for (y_row, dy_row) in y.chunks_exact(inner).zip(dy.chunks_exact(inner)) {
                for ((dot, &y), &dy) in self.dots.iter_mut().zip(y_row).zip(dy_row) {
                    *dot += y * dy;
                }
            }
            for ((dx_row, y_row), dy_row) in dx
                .chunks_exact_mut(inner)
                .zip(y.chunks_exact(inner))
                .zip(dy.chunks_exact(inner))
            {
                for (((dx, &y), &dy), &dot) in
                    dx_row.iter_mut().zip(y_row).zip(dy_row).zip(&self.dots)
                {
                    *dx = y * (dy - dot);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(axis: Option<i32>) -> Box<dyn Layer> {
        let text = axis.map_or(String::new(), |a| format!("softmax_param {{ axis: {a} }}"));
        let param = crema_proto::text::parse(&text, "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    fn run(layer: &mut dyn Layer, bottom: &Blob) -> LayerResult<Blob> {
        let mut top = Blob::default();
        layer.reshape(&[bottom], &mut [&mut top])?;
        layer.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        // Rows [0, ln 2, ln 5] → [1, 2, 5] / 8, and [1000, 0, -1000] → [1, 0, 0] without overflow.
        let bottom = Blob::from_data(
            &[2, 3],
            vec![0.0, 2f32.ln(), 5f32.ln(), 1000.0, 0.0, -1000.0],
        )
        .unwrap();
        let top = run(layer(None).as_mut(), &bottom).unwrap();
        let expected = [0.125, 0.25, 0.625, 1.0, 0.0, 0.0];
        for (y, e) in top.data().iter().zip(expected) {
            assert!((y - e).abs() < 1e-6, "{:?}", top.data());
        }
    }

    #[test]
    fn middle_and_negative_axes_normalize_along_that_axis() {
        let bottom = uniform_blob(&[2, 3, 4, 5], -3.0, 3.0, 7);
        for (axis, canonical) in [(1, 1usize), (2, 2), (-1, 3), (-4, 0)] {
            let top = run(layer(Some(axis)).as_mut(), &bottom).unwrap();
            let shape = bottom.shape();
            let inner: usize = shape[canonical + 1..].iter().product();
            let channels = shape[canonical];
            let outer: usize = shape[..canonical].iter().product();
            for o in 0..outer {
                for i in 0..inner {
                    let at = |c: usize| o * channels * inner + c * inner + i;
                    let sum: f32 = (0..channels).map(|c| top.data()[at(c)]).sum();
                    assert!((sum - 1.0).abs() < 1e-5, "axis {axis}: sum {sum}");
                    // Each value is exp(x_c) / Σ exp(x_k), checked against a direct f64 computation.
                    let z: f64 = (0..channels)
                        .map(|c| f64::from(bottom.data()[at(c)]).exp())
                        .sum();
                    for c in 0..channels {
                        let expected = f64::from(bottom.data()[at(c)]).exp() / z;
                        assert!((f64::from(top.data()[at(c)]) - expected).abs() < 1e-6);
                    }
                }
            }
        }
    }

    #[test]
    fn empty_blobs_are_fine() {
        for shape in [&[0, 3][..], &[2, 0, 3], &[2, 3, 0]] {
            let mut layer = layer(None);
            let bottom = Blob::new(shape).unwrap();
            let mut top = run(layer.as_mut(), &bottom).unwrap();
            assert_eq!(top.shape(), shape);
            let mut bottom = bottom;
            top.diff_mut().fill(1.0);
            layer
                .backward(&[&top], &[true], &mut [&mut bottom])
                .unwrap();
        }
    }

    #[test]
    fn bad_axis_is_an_error() {
        let bottom = Blob::new(&[2, 3]).unwrap();
        let err = run(layer(Some(2)).as_mut(), &bottom).unwrap_err();
        assert!(err.0.contains("softmax_param.axis"), "{err}");
    }

    #[test]
    fn gradient() {
        for (axis, shape) in [
            (None, &[2, 5][..]),
            (None, &[2, 3, 4]),
            (Some(2), &[2, 3, 4, 2]),
            (Some(-1), &[3, 2, 4]),
            (Some(0), &[4, 3]),
        ] {
            let mut layer = layer(axis);
            GradientChecker::default()
                .check(
                    layer.as_mut(),
                    &mut [uniform_blob(shape, -2.0, 2.0, 5)],
                    1,
                    &[0],
                )
                .unwrap_or_else(|e| panic!("axis {axis:?} shape {shape:?}: {e}"));
        }
    }
}
