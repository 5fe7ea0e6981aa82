//! Tile: the bottom repeated `tiles` times along an axis, `y[…, t·d + i, …] = x[…, i, …]` for `t < tiles`.
//!
//! Parameters: `tile_param { axis (1) tiles }`; `tiles` is required and positive. The top has the bottom's
//! shape with the axis' dim multiplied by `tiles`: every block of the axis and the axes after it is copied
//! `tiles` times in a row, as in Caffe (`[a, b]` tiled twice along axis 1 of a `1 × 2` blob is `[a, b, a, b]`).
//!
//! Gradient: each bottom value gets the sum of its copies' gradients.

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Tile layer.
pub struct Tile {
    axis: i32,
    tiles: usize,
    /// Resolved at reshape: the product of `axis` and the axes after it.
    inner: usize,
}

/// Makes a Tile layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.tile_param.unwrap_or_default();
    let tiles = match p.tiles {
        None => {
            return Err(LayerError::new(
                "tile_param.tiles: missing; give the number of copies (positive)",
            ))
        }
        Some(t) if t <= 0 => {
            return Err(LayerError::new(format!(
                "tile_param.tiles: must be positive, got {t}"
            )))
        }
        Some(t) => t as usize,
    };
    Ok(Box::new(Tile {
        axis: p.axis(),
        tiles,
        inner: 0,
    }))
}

impl Layer for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        let axis = x
            .canonical_axis(self.axis)
            .map_err(|e| LayerError::new(format!("tile_param.axis: {e}")))?;
        let mut shape = x.shape().to_vec();
        shape[axis] = shape[axis].checked_mul(self.tiles).ok_or_else(|| {
            LayerError::new(format!(
                "tile_param.tiles: {} copies of axis {axis} of bottom {} are too many",
                self.tiles,
                x.shape_string()
            ))
        })?;
        top[0]
            .reshape(&shape)
            .map_err(|e| LayerError::new(format!("tile_param.tiles: {e}")))?;
        self.inner = x.count_from(axis);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.inner == 0 {
            return Ok(());
        }
        let x = bottom[0].data();
        let y = top[0].data_mut();
        for (block, out) in x
            .chunks_exact(self.inner)
            .zip(y.chunks_exact_mut(self.inner * self.tiles))
        {
            for copy in out.chunks_exact_mut(self.inner) {
                copy.copy_from_slice(block);
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] || self.inner == 0 {
            return Ok(());
        }
        let dy = top[0].diff();
        let dx = bottom[0].diff_mut();
        for (block, copies) in dx
            .chunks_exact_mut(self.inner)
            .zip(dy.chunks_exact(self.inner * self.tiles))
        {
            let mut copies = copies.chunks_exact(self.inner);
            block.copy_from_slice(copies.next().expect("tiles is positive"));
            for copy in copies {
                for (d, &g) in block.iter_mut().zip(copy) {
                    *d += g;
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

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn forward(text: &str, bottom: &Blob) -> LayerResult<Blob> {
        let mut l = layer(text)?;
        let mut top = Blob::default();
        l.reshape(&[bottom], &mut [&mut top])?;
        l.forward(&[bottom], &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        let x = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let top = forward("tile_param { tiles: 3 }", &x).unwrap();
        assert_eq!(top.shape(), [2, 6]);
        assert_eq!(
            top.data(),
            [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]
        );
        for text in [
            "tile_param { axis: 0 tiles: 2 }",
            "tile_param { axis: -2 tiles: 2 }",
        ] {
            let top = forward(text, &x).unwrap();
            assert_eq!(top.shape(), [4, 2]);
            assert_eq!(top.data(), [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        }
        let top = forward("tile_param { tiles: 1 }", &x).unwrap();
        assert_eq!(top.data(), x.data());
    }

    #[test]
    fn backward_sums_the_copies() {
        let mut l = layer("tile_param { tiles: 2 }").unwrap();
        let mut x = Blob::from_data(&[2, 1], vec![1.0, 2.0]).unwrap();
        let mut top = Blob::default();
        l.reshape(&[&x], &mut [&mut top]).unwrap();
        top.diff_mut().copy_from_slice(&[1.0, 10.0, 100.0, 1000.0]);
        l.backward(&[&top], &[true], &mut [&mut x]).unwrap();
        assert_eq!(x.diff(), [11.0, 1100.0]);
    }

    #[test]
    fn errors_name_the_field() {
        for (text, expected) in [
            ("name: \"t\"", "tile_param.tiles: missing"),
            (
                "tile_param { tiles: 0 }",
                "tile_param.tiles: must be positive",
            ),
            (
                "tile_param { tiles: -2 }",
                "tile_param.tiles: must be positive",
            ),
        ] {
            let err = layer(text).err().unwrap();
            assert!(err.0.starts_with(expected), "{text}: {err}");
        }
        let x = Blob::new(&[2, 3]).unwrap();
        let err = forward("tile_param { axis: 2 tiles: 2 }", &x).unwrap_err();
        assert!(err.0.starts_with("tile_param.axis: "), "{err}");
        // A top past the largest blob is an error, not an allocation.
        let err = forward("tile_param { tiles: 2000000000 }", &x).unwrap_err();
        assert!(err.0.starts_with("tile_param.tiles: "), "{err}");
    }

    #[test]
    fn gradient() {
        for (text, shape) in [
            ("tile_param { tiles: 3 }", &[2, 3][..]),
            ("tile_param { axis: 0 tiles: 2 }", &[2, 3, 2]),
            ("tile_param { axis: -1 tiles: 4 }", &[2, 2, 3]),
        ] {
            let mut l = layer(text).unwrap();
            GradientChecker::default()
                .check(
                    l.as_mut(),
                    &mut [uniform_blob(shape, -1.0, 1.0, 7)],
                    1,
                    &[0],
                )
                .unwrap();
        }
    }
}
