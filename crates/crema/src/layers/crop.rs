//! Crop: the first bottom cut to the second's shape on the axes from `axis` on,
//! `y[i₀, …] = x[i₀ + o₀, …]` with `oₐ` the offset of axis `a` (0 before `axis`).
//!
//! Bottoms: the data `x` and a reference whose shape gives the top's size on every axis from `axis` on (its
//! values are not read; it needs at least as many axes as `x`). The axes before `axis` keep `x`'s sizes.
//!
//! Parameters: `crop_param { axis (2) offset }`: no offset crops from 0, one offset applies to every cropped
//! axis, or one per cropped axis (as many as the axes from `axis` on). A crop must fit: offset + size at most
//! `x`'s size on each axis, else an error naming the axis.
//!
//! Gradient: the top's diff goes back to the cropped window of `x`'s, 0 elsewhere. The reference gets none:
//! the layer refuses `force_backward` for it, and writes 0 if a net asks for it anyway.

use smallvec::SmallVec;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Crop layer.
pub struct Crop {
    axis: i32,
    offsets: Vec<u32>,
    /// Resolved at reshape: the offset on every axis, and the strides of the bottom and of the top.
    offset: SmallVec<[usize; 6]>,
    bottom_strides: SmallVec<[usize; 6]>,
    top_shape: SmallVec<[usize; 6]>,
}

/// Makes a Crop layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.crop_param.clone().unwrap_or_default();
    Ok(Box::new(Crop {
        axis: p.axis(),
        offsets: p.offset,
        offset: SmallVec::new(),
        bottom_strides: SmallVec::new(),
        top_shape: SmallVec::new(),
    }))
}

impl Crop {
    /// Calls `copy(top_start, bottom_start, len)` for each innermost row of the crop.
    fn for_each_row(&self, mut copy: impl FnMut(usize, usize, usize)) {
        let axes = self.top_shape.len();
        let count: usize = self.top_shape.iter().product();
        if count == 0 {
            return;
        }
        if axes == 0 {
            copy(0, 0, 1);
            return;
        }
        let row = self.top_shape[axes - 1];
        // The index of the current row on every axis but the last, counted like an odometer.
        let mut index: SmallVec<[usize; 6]> = SmallVec::from_elem(0, axes - 1);
        for top_start in (0..count).step_by(row) {
            let bottom_start: usize = (0..axes)
                .map(|a| {
                    (index.get(a).copied().unwrap_or(0) + self.offset[a]) * self.bottom_strides[a]
                })
                .sum();
            copy(top_start, bottom_start, row);
            for a in (0..axes - 1).rev() {
                index[a] += 1;
                if index[a] < self.top_shape[a] {
                    break;
                }
                index[a] = 0;
            }
        }
    }
}

impl Layer for Crop {
    fn type_name(&self) -> &'static str {
        "Crop"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn allow_force_backward(&self, index: usize) -> bool {
        index == 0
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (x, reference) = (bottom[0], bottom[1]);
        let axes = x.num_axes();
        let start = x
            .canonical_axis(self.axis)
            .map_err(|e| LayerError::new(format!("crop_param.axis: {e}")))?;
        let cropped = axes - start;
        if self.offsets.len() > 1 && self.offsets.len() != cropped {
            return Err(LayerError::new(format!(
                "crop_param.offset: {} offsets given, but axis {start} on of bottom 0 ({}) is {cropped} axes; \
                 give one offset for all or one per cropped axis",
                self.offsets.len(),
                x.shape_string()
            )));
        }
        if reference.num_axes() < axes {
            return Err(LayerError::new(format!(
                "bottom 1 (the reference, {}) needs at least the {axes} axes of bottom 0 ({})",
                reference.shape_string(),
                x.shape_string()
            )));
        }
        self.offset.clear();
        self.top_shape.clear();
        for a in 0..axes {
            let (size, offset) = if a < start {
                (x.shape()[a], 0)
            } else {
                let offset = match self.offsets.len() {
                    0 => 0,
                    1 => self.offsets[0],
                    _ => self.offsets[a - start],
                } as usize;
                let size = reference.shape()[a];
                let have = x.shape()[a];
                if size > have {
                    return Err(LayerError::new(format!(
                        "the crop of axis {a} (size {size} from bottom 1) is larger than bottom 0's size {have} there \
                         (bottom 0 {}, bottom 1 {})",
                        x.shape_string(),
                        reference.shape_string()
                    )));
                }
                if offset > have - size {
                    return Err(LayerError::new(format!(
                        "crop_param.offset: the crop of axis {a} (size {size} from bottom 1, offset {offset}) does not \
                         fit bottom 0's size {have} there (bottom 0 {}, bottom 1 {})",
                        x.shape_string(),
                        reference.shape_string()
                    )));
                }
                (size, offset)
            };
            self.top_shape.push(size);
            self.offset.push(offset);
        }
        self.bottom_strides.clear();
        self.bottom_strides
            .extend((0..axes).map(|a| x.count_from(a + 1)));
        Ok(top[0].reshape(&self.top_shape)?)
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0].data();
        let y = top[0].data_mut();
        self.for_each_row(|t, b, len| y[t..t + len].copy_from_slice(&x[b..b + len]));
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if propagate_down[0] {
            let dy = top[0].diff();
            let dx = bottom[0].diff_mut();
            dx.fill(0.0);
            self.for_each_row(|t, b, len| dx[b..b + len].copy_from_slice(&dy[t..t + len]));
        }
        if propagate_down[1] {
            bottom[1].diff_mut().fill(0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    fn layer(text: &str) -> Box<dyn Layer> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param)).unwrap()
    }

    fn forward(text: &str, x: &Blob, reference: &[usize]) -> LayerResult<Blob> {
        let mut l = layer(text);
        let reference = Blob::new(reference).unwrap();
        let mut top = Blob::default();
        l.reshape(&[x, &reference], &mut [&mut top])?;
        l.forward(&[x, &reference], &mut [&mut top])?;
        Ok(top)
    }

    /// A blob of `shape` holding 0, 1, 2, ….
    fn counting(shape: &[usize]) -> Blob {
        let count = shape.iter().product::<usize>();
        Blob::from_data(shape, (0..count).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn forward_by_hand() {
        // 1 × 1 × 4 × 4 holding 0..16, cropped to 2 × 3 at offset (1, 1) on the spatial axes.
        let x = counting(&[1, 1, 4, 4]);
        let top = forward("crop_param { offset: 1 }", &x, &[5, 7, 2, 3]).unwrap();
        assert_eq!(top.shape(), [1, 1, 2, 3]);
        assert_eq!(top.data(), [5.0, 6.0, 7.0, 9.0, 10.0, 11.0]);
        // One offset per axis: rows from 2, columns from 0.
        let top = forward("crop_param { offset: 2 offset: 0 }", &x, &[1, 1, 2, 2]).unwrap();
        assert_eq!(top.data(), [8.0, 9.0, 12.0, 13.0]);
        // No offset: from the corner. axis 1 crops the channels too.
        let x = counting(&[2, 3, 2]);
        let top = forward("crop_param { axis: 1 }", &x, &[9, 2, 1]).unwrap();
        assert_eq!(top.shape(), [2, 2, 1]);
        assert_eq!(top.data(), [0.0, 2.0, 6.0, 8.0]);
        let top = forward(
            "crop_param { axis: 0 offset: 1 offset: 1 offset: 1 }",
            &x,
            &[1, 2, 1],
        )
        .unwrap();
        assert_eq!(
            (top.shape(), top.data()),
            (&[1, 2, 1][..], &[9.0, 11.0][..])
        );
        let top = forward("crop_param { axis: -1 offset: 1 }", &x, &[7, 7, 1]).unwrap();
        assert_eq!(top.data(), [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
        // A reference with more axes: only the first ones count.
        let top = forward("crop_param { axis: 2 }", &x, &[1, 1, 1, 5]).unwrap();
        assert_eq!(top.shape(), [2, 3, 1]);
    }

    #[test]
    fn backward_by_hand() {
        let mut x = counting(&[1, 1, 3, 3]);
        let mut reference = Blob::new(&[1, 1, 2, 2]).unwrap();
        let mut l = layer("crop_param { offset: 1 }");
        assert!(l.allow_force_backward(0) && !l.allow_force_backward(1));
        let mut top = Blob::default();
        l.reshape(&[&x, &reference], &mut [&mut top]).unwrap();
        l.forward(&[&x, &reference], &mut [&mut top]).unwrap();
        top.diff_mut().copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        x.diff_mut().fill(f32::NAN);
        reference.diff_mut().fill(f32::NAN);
        l.backward(&[&top], &[true, true], &mut [&mut x, &mut reference])
            .unwrap();
        assert_eq!(x.diff(), [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
        assert_eq!(reference.diff(), [0.0; 4]);
    }

    #[test]
    fn errors_name_the_field() {
        let x = Blob::new(&[1, 2, 4, 4]).unwrap();
        let cases = [
            (
                "crop_param { offset: 1 }",
                &[1, 2, 4, 4][..],
                "crop_param.offset: the crop of axis 2 (size 4 from bottom 1, offset 1)",
            ),
            (
                "crop_param { offset: 0 offset: 3 }",
                &[1, 2, 2, 2],
                "crop_param.offset: the crop of axis 3 (size 2 from bottom 1, offset 3)",
            ),
            (
                "name: \"c\"",
                &[1, 2, 5, 4],
                "the crop of axis 2 (size 5 from bottom 1) is larger than bottom 0's size 4",
            ),
            (
                "crop_param { offset: 0 offset: 0 offset: 0 }",
                &[1, 2, 2, 2],
                "crop_param.offset: 3 offsets given",
            ),
            ("crop_param { axis: 4 }", &[1, 2, 2, 2], "crop_param.axis: "),
            (
                "name: \"c\"",
                &[1, 2, 2],
                "bottom 1 (the reference, 1 2 2 (4)) needs at least the 4 axes",
            ),
            (
                "crop_param { offset: 4294967295 }",
                &[1, 2, 2, 2],
                "crop_param.offset: the crop of axis 2",
            ),
        ];
        for (text, reference, expected) in cases {
            let err = forward(text, &x, reference).unwrap_err();
            assert!(err.0.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn gradient() {
        for (text, shape, reference) in [
            (
                "crop_param { offset: 1 }",
                &[2, 2, 4, 5][..],
                &[1, 1, 2, 3][..],
            ),
            (
                "crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }",
                &[2, 3, 3, 4],
                &[2, 2, 2, 2],
            ),
            ("crop_param { axis: 0 }", &[5], &[3]),
        ] {
            let mut bottoms = [
                uniform_blob(shape, -1.0, 1.0, 3),
                Blob::new(reference).unwrap(),
            ];
            GradientChecker::default()
                .check(layer(text).as_mut(), &mut bottoms, 1, &[0])
                .unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}
