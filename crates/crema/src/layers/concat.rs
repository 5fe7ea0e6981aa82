//! Concat: `y = [x₀, x₁, …]` joined along one axis.
//!
//! Parameters: `concat_param { axis (1) }`, or the deprecated `concat_dim` (non-negative; not both). Every
//! bottom must have the same number of axes and the same dims except along the concatenation axis. Backward
//! copies each bottom's part of the top's diff back to it.
//!
//! The axis parameter (`JoinAxis`) and the layout of the parts in the joined blob (`Joined`) are shared with
//! the Slice layer, which copies the other way.

use std::ops::Range;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The axis parameter of a layer that joins or splits blobs along an axis (Concat, Slice): `axis`, or the
/// deprecated non-negative `<legacy_field>` (not both), resolved against a blob's axes. Shared with the Slice
/// layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinAxis {
    /// `axis`, or the legacy field's value when that is the one given.
    axis: i32,
    from_legacy_field: bool,
    /// The parameter message (`concat_param`) and its legacy field (`concat_dim`), for errors.
    param: &'static str,
    legacy_field: &'static str,
}

impl JoinAxis {
    /// Reads `param { axis <legacy_field> }`: `axis` as given (`None` when unset) and with its default
    /// (`default_axis`), and the legacy field's value.
    pub fn new(
        param: &'static str,
        legacy_field: &'static str,
        axis: Option<i32>,
        default_axis: i32,
        legacy: Option<u32>,
    ) -> LayerResult<JoinAxis> {
        if axis.is_some() && legacy.is_some() {
            return Err(LayerError::new(format!(
                "{param}: give axis or {legacy_field}, not both"
            )));
        }
        let (axis, from_legacy_field) = match legacy {
            Some(dim) => (
                i32::try_from(dim).map_err(|_| {
                    LayerError::new(format!("{param}.{legacy_field}: {dim} is out of range"))
                })?,
                true,
            ),
            None => (default_axis, false),
        };
        Ok(JoinAxis {
            axis,
            from_legacy_field,
            param,
            legacy_field,
        })
    }

    /// The axis of `blob` this names (a legacy value counts from the front only).
    pub fn resolve(&self, blob: &Blob) -> LayerResult<usize> {
        let num_axes = blob.num_axes();
        if self.from_legacy_field {
            let axis = self.axis as usize;
            if axis >= num_axes {
                return Err(LayerError::new(format!(
                    "{}.{}: {axis} is out of range for a {num_axes}-axis bottom",
                    self.param, self.legacy_field
                )));
            }
            Ok(axis)
        } else {
            blob.canonical_axis(self.axis)
                .map_err(|e| LayerError::new(format!("{}.axis: {e}", self.param)))
        }
    }
}

/// How blobs joined along an axis lie in the joined blob: `outer` runs (the product of the axes before the axis),
/// each holding one run of every part in turn, a part's run being its length along the axis × `inner` (the
/// product of the axes after it). Shared with the Slice layer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Joined {
    axis: usize,
    outer: usize,
    inner: usize,
}

impl Joined {
    /// The layout around `axis` of `blob` (the joined blob or any part: they agree off the axis).
    pub fn along(blob: &Blob, axis: usize) -> Joined {
        Joined {
            axis,
            outer: blob.count_range(0, axis),
            inner: blob.count_from(axis + 1),
        }
    }

    /// A walk over the parts of the joined blob `whole`, in order.
    pub fn parts(&self, whole: &Blob) -> Parts {
        Parts {
            joined: *self,
            whole_run: self.run(whole),
            offset: 0,
        }
    }

    fn run(&self, blob: &Blob) -> usize {
        blob.shape()[self.axis] * self.inner
    }
}

/// A walk over the parts of a joined blob, from [`Joined::parts`].
pub(crate) struct Parts {
    joined: Joined,
    /// The length of one run of the joined blob.
    whole_run: usize,
    /// Where the next part starts in each run of the joined blob.
    offset: usize,
}

impl Parts {
    /// The runs of the next part, `part`: for each, its range in the part and its range in the joined blob.
    pub fn next_part(&mut self, part: &Blob) -> impl Iterator<Item = (Range<usize>, Range<usize>)> {
        let (run, offset, whole_run) = (self.joined.run(part), self.offset, self.whole_run);
        self.offset += run;
        (0..self.joined.outer).map(move |n| {
            let start = n * whole_run + offset;
            (n * run..(n + 1) * run, start..start + run)
        })
    }
}

/// The Concat layer.
pub struct Concat {
    axis: JoinAxis,
    /// Resolved at reshape.
    joined: Joined,
}

/// Makes a Concat layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.concat_param.unwrap_or_default();
    let axis = JoinAxis::new("concat_param", "concat_dim", p.axis, p.axis(), p.concat_dim)?;
    Ok(Box::new(Concat {
        axis,
        joined: Joined::default(),
    }))
}

impl Layer for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let first = bottom[0];
        let num_axes = first.num_axes();
        let axis = self.axis.resolve(first)?;
        let mut shape = first.shape().to_vec();
        for (i, b) in bottom.iter().enumerate().skip(1) {
            let same_elsewhere = b.num_axes() == num_axes
                && (0..num_axes).all(|j| j == axis || b.shape()[j] == first.shape()[j]);
            if !same_elsewhere {
                return Err(LayerError::new(format!(
                    "Concat: bottom {i} has shape {}, but bottom 0 has {}; they may differ only along axis {axis}",
                    b.shape_string(),
                    first.shape_string()
                )));
            }
            shape[axis] += b.shape()[axis];
        }
        top[0].reshape(&shape)?;
        self.joined = Joined::along(first, axis);
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut parts = self.joined.parts(top[0]);
        let y = top[0].data_mut();
        for b in bottom {
            for (part, whole) in parts.next_part(b) {
                y[whole].copy_from_slice(&b.data()[part]);
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
        let mut parts = self.joined.parts(top[0]);
        let dy = top[0].diff();
        for (b, &down) in bottom.iter_mut().zip(propagate_down) {
            let runs = parts.next_part(b);
            if down {
                let dx = b.diff_mut();
                for (part, whole) in runs {
                    dx[part].copy_from_slice(&dy[whole]);
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

    fn forward(text: &str, bottoms: &[Blob]) -> LayerResult<Blob> {
        let mut l = layer(text)?;
        let refs: Vec<&Blob> = bottoms.iter().collect();
        let mut top = Blob::default();
        l.reshape(&refs, &mut [&mut top])?;
        l.forward(&refs, &mut [&mut top])?;
        Ok(top)
    }

    #[test]
    fn forward_by_hand() {
        let a = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Blob::from_data(&[2, 1], vec![5.0, 6.0]).unwrap();
        let top = forward("name: \"c\"", &[a.clone(), b]).unwrap();
        assert_eq!(top.shape(), [2, 3]);
        assert_eq!(top.data(), [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);

        let c = Blob::from_data(&[1, 2], vec![7.0, 8.0]).unwrap();
        for text in [
            "concat_param { axis: 0 }",
            "concat_param { concat_dim: 0 }",
            "concat_param { axis: -2 }",
        ] {
            let top = forward(text, &[a.clone(), c.clone()]).unwrap();
            assert_eq!(top.shape(), [3, 2]);
            assert_eq!(top.data(), [1.0, 2.0, 3.0, 4.0, 7.0, 8.0]);
        }
        // One bottom: a copy.
        let top = forward("name: \"c\"", std::slice::from_ref(&a)).unwrap();
        assert_eq!(top.data(), a.data());
    }

    #[test]
    fn errors_name_the_field() {
        let a = Blob::new(&[2, 3]).unwrap();
        let err = layer("concat_param { axis: 1 concat_dim: 1 }")
            .err()
            .unwrap();
        assert!(err.0.starts_with("concat_param: "), "{err}");
        let err = forward("concat_param { concat_dim: 2 }", &[a.clone(), a.clone()]).unwrap_err();
        assert!(err.0.starts_with("concat_param.concat_dim: "), "{err}");
        let err = forward("concat_param { axis: -3 }", &[a.clone(), a.clone()]).unwrap_err();
        assert!(err.0.starts_with("concat_param.axis: "), "{err}");
        let err = forward("name: \"c\"", &[a.clone(), Blob::new(&[3, 3]).unwrap()]).unwrap_err();
        assert!(err.0.starts_with("Concat: bottom 1"), "{err}");
        let err = forward("name: \"c\"", &[a, Blob::new(&[2, 3, 1]).unwrap()]).unwrap_err();
        assert!(err.0.starts_with("Concat: bottom 1"), "{err}");
    }

    #[test]
    fn gradient() {
        for (text, shapes) in [
            ("name: \"c\"", [&[2, 3, 2][..], &[2, 1, 2], &[2, 2, 2]]),
            ("concat_param { axis: 0 }", [&[1, 3][..], &[2, 3], &[3, 3]]),
            (
                "concat_param { axis: -1 }",
                [&[2, 2, 1][..], &[2, 2, 3], &[2, 2, 2]],
            ),
        ] {
            let mut l = layer(text).unwrap();
            let mut bottoms: Vec<Blob> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| uniform_blob(s, -1.0, 1.0, i as u64))
                .collect();
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[0, 2])
                .unwrap();
            let mut l = layer(text).unwrap();
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 1, &[1])
                .unwrap();
        }
    }
}
