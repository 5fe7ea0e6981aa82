//! DummyData: tops filled by fillers, with no bottoms (`y ~ data_filler`).
//!
//! Parameters: `dummy_data_param { shape data_filler num channels height width }`. Shapes come from `shape`,
//! or from the legacy 4-D lists `num`, `channels`, `height`, `width` (each given once for every top or once
//! per top; not both forms). `data_filler` is given once for every top, once per top, or not at all (constant
//! 0). As in Caffe, a top whose filler is `constant` is filled once (setup and reshape); every other top is
//! refilled on each forward, drawing from the layer's generator. No gradient.

use crema_proto::caffe::{DummyDataParameter, FillerParameter};

use crate::blob::{shape_count, Blob};
use crate::filler::fill;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::input::shape_from_proto;
use crate::math::Rng;

/// The DummyData layer.
pub struct DummyData {
    param: DummyDataParameter,
    /// One per top, set up in `setup`.
    shapes: Vec<Vec<usize>>,
    /// One per top (the single filler repeated when there is one for all).
    fillers: Vec<FillerParameter>,
    rng: Rng,
}

/// Makes a DummyData layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(DummyData {
        param: ctx.param.dummy_data_param.clone().unwrap_or_default(),
        shapes: Vec::new(),
        fillers: Vec::new(),
        rng: ctx.rng.clone(),
    }))
}

/// The entry of a list given once for all tops or once per top.
fn pick<T>(list: &[T], i: usize) -> &T {
    if list.len() == 1 {
        &list[0]
    } else {
        &list[i]
    }
}

fn check_count(field: &str, given: usize, tops: usize, allow_none: bool) -> LayerResult {
    if given == 1 || given == tops || (allow_none && given == 0) {
        return Ok(());
    }
    let none = if allow_none { ", none" } else { "" };
    Err(LayerError::new(format!(
        "dummy_data_param.{field}: give it once{none} or once per top ({tops}); got {given}"
    )))
}

impl DummyData {
    fn shapes_for(&self, tops: usize) -> LayerResult<Vec<Vec<usize>>> {
        let p = &self.param;
        let legacy = [
            ("num", &p.num),
            ("channels", &p.channels),
            ("height", &p.height),
            ("width", &p.width),
        ];
        if legacy.iter().any(|(_, list)| !list.is_empty()) {
            if !p.shape.is_empty() {
                return Err(LayerError::new(
                    "dummy_data_param.shape: give either shape or the legacy num/channels/height/width, not both",
                ));
            }
            for (field, list) in legacy {
                check_count(field, list.len(), tops, false)?;
            }
            (0..tops)
                .map(|i| {
                    let dims: Vec<usize> = legacy
                        .iter()
                        .map(|(_, list)| *pick(list, i) as usize)
                        .collect();
                    shape_count(&dims)
                        .map_err(|e| LayerError::new(format!("dummy_data_param.num: {e}")))?;
                    Ok(dims)
                })
                .collect()
        } else {
            check_count("shape", p.shape.len(), tops, false)?;
            (0..tops)
                .map(|i| {
                    let index = if p.shape.len() == 1 { 0 } else { i };
                    shape_from_proto(&p.shape[index], &format!("dummy_data_param.shape[{index}]"))
                })
                .collect()
        }
    }

    fn fill_tops(&mut self, top: &mut [&mut Blob], constant: bool) -> LayerResult {
        for (i, t) in top.iter_mut().enumerate() {
            let filler = &self.fillers[i];
            if (filler.r#type() == "constant") == constant {
                // The field is named in errors only; they show at setup, the first fill of every top.
                fill(t, filler, &mut self.rng, "dummy_data_param.data_filler").map_err(|e| {
                    LayerError::new(e.0.replacen("data_filler", &format!("data_filler[{i}]"), 1))
                })?;
            }
        }
        Ok(())
    }
}

impl Layer for DummyData {
    fn type_name(&self) -> &'static str {
        "DummyData"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn setup(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let tops = top.len();
        let given = &self.param.data_filler;
        check_count("data_filler", given.len(), tops, true)?;
        self.fillers = (0..tops)
            .map(|i| {
                if given.is_empty() {
                    FillerParameter::default()
                } else {
                    pick(given, i).clone()
                }
            })
            .collect();
        self.shapes = self.shapes_for(tops)?;
        for (t, shape) in top.iter_mut().zip(&self.shapes) {
            t.reshape(shape)?;
        }
        // Fill every top once, so that a filler's errors show here rather than in the first forward.
        self.fill_tops(top, true)?;
        self.fill_tops(top, false)
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.shapes.len() != top.len() {
            return Err(LayerError::new("DummyData: reshape before setup"));
        }
        let mut changed = false;
        for (t, shape) in top.iter_mut().zip(&self.shapes) {
            if t.shape() != shape.as_slice() {
                t.reshape(shape)?;
                changed = true;
            }
        }
        if changed {
            self.fill_tops(top, true)?;
        }
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        self.fill_tops(top, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;

    fn run(text: &str, tops: usize) -> LayerResult<(Box<dyn Layer>, Vec<Blob>)> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        let mut layer = create(&mut context(&param))?;
        let mut blobs: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        {
            let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
            layer.setup(&[], &mut refs)?;
            layer.reshape(&[], &mut refs)?;
            layer.forward(&[], &mut refs)?;
        }
        Ok((layer, blobs))
    }

    #[test]
    fn shapes_from_shape_or_legacy_fields() {
        let (_, tops) = run("dummy_data_param { shape { dim: 2 dim: 3 } }", 2).unwrap();
        assert_eq!(tops[0].shape(), [2, 3]);
        assert_eq!(tops[1].shape(), [2, 3]);
        assert!(tops[0].data().iter().all(|&v| v == 0.0));

        let text = "dummy_data_param { num: 2 num: 5 channels: 3 height: 1 width: 4 width: 6 }";
        let (_, tops) = run(text, 2).unwrap();
        assert_eq!(tops[0].shape(), [2, 3, 1, 4]);
        assert_eq!(tops[1].shape(), [5, 3, 1, 6]);
    }

    #[test]
    fn constant_fillers_fill_once_others_refill_every_forward() {
        let text = "dummy_data_param { shape { dim: 3 } shape { dim: 2 dim: 2 }
            data_filler { type: \"constant\" value: 1.5 } data_filler { type: \"uniform\" min: -1 max: 1 } }";
        let (mut layer, mut tops) = run(text, 2).unwrap();
        assert_eq!(tops[0].data(), [1.5, 1.5, 1.5]);
        let first = tops[1].data().to_vec();
        assert!(first.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Overwrite both tops: forward restores the random one only.
        tops[0].data_mut().fill(9.0);
        let (a, b) = tops.split_at_mut(1);
        layer.forward(&[], &mut [&mut a[0], &mut b[0]]).unwrap();
        assert_eq!(tops[0].data(), [9.0, 9.0, 9.0]);
        assert_ne!(tops[1].data(), first.as_slice());
        assert!(tops[1].data().iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "dummy_data_param { shape { dim: 2 } shape { dim: 2 } }",
                3,
                "dummy_data_param.shape: ",
            ),
            ("dummy_data_param { }", 1, "dummy_data_param.shape: "),
            (
                "dummy_data_param { num: 1 channels: 1 height: 1 }",
                1,
                "dummy_data_param.width: ",
            ),
            (
                "dummy_data_param { num: 1 channels: 1 height: 1 width: 1 shape { dim: 1 } }",
                1,
                "dummy_data_param.shape: ",
            ),
            (
                "dummy_data_param { shape { dim: 1 } data_filler { } data_filler { } }",
                3,
                "dummy_data_param.data_filler: ",
            ),
            (
                "dummy_data_param { shape { dim: 1 } data_filler { type: \"nope\" } }",
                1,
                "dummy_data_param.data_filler[0]: ",
            ),
            (
                "dummy_data_param { shape { dim: -3 } }",
                1,
                "dummy_data_param.shape[0]: ",
            ),
        ];
        for (text, tops, prefix) in cases {
            let err = run(text, tops).err().unwrap();
            assert!(err.0.starts_with(prefix), "{text}: {err}");
        }
    }
}
