//! HDF5Data: tops filled with rows of `.h5` files, with no bottoms (`top i = the next batch of dataset i`).
//!
//! Parameters: `hdf5_data_param { source batch_size shuffle }`. `source` is a text file naming the `.h5` files,
//! one a line; each top names a dataset of those files (see [`crate::data::hdf5`] for how files are found, read
//! and shuffled). A top's shape is `[batch_size]` followed by the dataset's shape past its first axis, so a 1-D
//! `label` dataset gives a top of shape `[batch_size]`, as in Caffe. Forward fills the tops with the next
//! `batch_size` rows, moving to the next file and wrapping around as needed. `shuffle` (default false) shuffles
//! the files and their rows with the layer's generator, derived from the net's seed. No gradient, and no
//! `transform_param` (HDF5 data is used as stored).
//!
//! The reading position is the source's ([`Hdf5Data::source`]); a solverstate saves and restores it.
//!
//! `sampling_param { mode: CLASS_BALANCED | SQRT label }` draws each batch's rows by class instead
//! ([`crate::data::sampling`]): the classes are the values of the dataset `label` (default "label", one of the
//! tops), every listed file is read into memory at setup, and the solverstate keeps the sampler's generator.

use smallvec::SmallVec;

use crate::blob::Blob;
use crate::data::hdf5::{Hdf5Position, Hdf5Source};
use crate::data::sampling::{sampler_for, sampling_rng, ClassSampler};
use crate::layer::{
    required_count, required_text, Arity, Layer, LayerContext, LayerError, LayerResult,
};

/// The HDF5Data layer.
pub struct Hdf5Data {
    source: Hdf5Source,
    batch_size: usize,
    /// With `sampling_param` other than INSTANCE: draws the rows of each batch (every file is then in memory).
    sampler: Option<ClassSampler>,
    /// The rows of the batch being filled (kept to allocate nothing per batch).
    drawn: Vec<usize>,
}

/// Marks a saved state as a sampler's rather than a reading position.
const SAMPLER_STATE: &[u8] = b"crema-sampler\0";

/// Makes an HDF5Data layer: reads the source list and checks its files' datasets, reading the first file.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.hdf5_data_param.clone().unwrap_or_default();
    let source = required_text(
        param.source.as_deref(),
        "hdf5_data_param.source",
        "the text file that lists the .h5 files",
    )?;
    let batch_size = required_count(
        param.batch_size(),
        "hdf5_data_param.batch_size",
        "the number of rows of a batch",
    )?;
    if ctx.param.transform_param.is_some() {
        return Err(LayerError::new(
            "transform_param: HDF5Data does not transform data",
        ));
    }
    if ctx.param.top.is_empty() {
        return Err(LayerError::new(
            "HDF5Data needs at least one top; each top names a dataset of the .h5 files",
        ));
    }
    let list = ctx.resolve(source);
    let mut source = Hdf5Source::open(&list, &ctx.param.top, param.shuffle(), ctx.rng.clone())
        .map_err(|e| LayerError::new(format!("hdf5_data_param.source: {e}")))?;
    let sampling = ctx.param.sampling_param.clone().unwrap_or_default();
    let sampler = sampler_for(
        sampling.mode(),
        || {
            let name = sampling.label.as_deref().unwrap_or("label");
            let label = ctx.param.top.iter().position(|t| t == name).ok_or_else(|| {
                format!(
                    "no top names the dataset \"{name}\" of the classes to sample by; give it in sampling_param.label"
                )
            })?;
            source.load_all(label).map_err(|e| e.to_string())
        },
        sampling_rng(&ctx.rng),
    )
    .map_err(|e| LayerError::new(format!("sampling_param: {e}")))?;
    Ok(Box::new(Hdf5Data {
        source,
        batch_size,
        sampler,
        drawn: Vec::new(),
    }))
}

impl Hdf5Data {
    /// The source the rows come from, with its reading position.
    pub fn source(&self) -> &Hdf5Source {
        &self.source
    }

    /// The source, to restore its reading position.
    pub fn source_mut(&mut self) -> &mut Hdf5Source {
        &mut self.source
    }

    /// The rows of one batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

impl Layer for Hdf5Data {
    fn type_name(&self) -> &'static str {
        "HDF5Data"
    }

    fn top_item_origin(&self, top: usize, index: usize) -> Option<String> {
        self.source.batch_value_origin(top, index)
    }

    fn state(&self) -> Option<Vec<u8>> {
        Some(match &self.sampler {
            Some(sampler) => [SAMPLER_STATE, &sampler.state()].concat(),
            None => self.source.position().to_bytes(),
        })
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        if let Some(sampler) = &mut self.sampler {
            let restored = state
                .strip_prefix(SAMPLER_STATE)
                .is_some_and(|bytes| sampler.set_state(bytes));
            if !restored {
                return Err(LayerError::new(
                    "the saved state is not a sampler's (was the snapshot made without sampling_param?)",
                ));
            }
            return Ok(());
        }
        let position = Hdf5Position::from_bytes(state)
            .ok_or_else(|| LayerError::new("the saved reading position is damaged"))?;
        self.source
            .set_position(position)
            .map_err(|e| LayerError::new(e.to_string()))
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if top.len() != self.source.names().len() {
            return Err(LayerError::new(format!(
                "{} tops given for the {} datasets named by the layer's tops",
                top.len(),
                self.source.names().len()
            )));
        }
        let mut shape: SmallVec<[usize; 5]> = SmallVec::new();
        for (i, t) in top.iter_mut().enumerate() {
            shape.clear();
            shape.push(self.batch_size);
            shape.extend_from_slice(self.source.row_shape(i));
            t.reshape(&shape)
                .map_err(|e| LayerError::new(format!("top \"{}\": {e}", self.source.names()[i])))?;
        }
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let mut outputs: SmallVec<[&mut [f32]; 4]> = top.iter_mut().map(|t| t.data_mut()).collect();
        let read = match &mut self.sampler {
            Some(sampler) => {
                self.drawn.clear();
                self.drawn
                    .extend((0..self.batch_size).map(|_| sampler.draw()));
                self.source.fill_rows(&self.drawn, &mut outputs)
            }
            None => self.source.next_batch(self.batch_size, &mut outputs),
        };
        read.map_err(|e| LayerError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::hdf5::test_files::{f32s, list, numbered, temp_dir, write};
    use crate::layers::test_support::context;

    /// The Caffe reference data set: `data` f32 N×64 and `label` f32 N, written by h5py.
    const REFERENCE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/caffe-reference/train"
    );

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn error(text: &str) -> String {
        layer(text).err().expect("the layer was made").0
    }

    /// Sets `layer` up with `n` tops and runs `batches` forward passes, returning the tops after each.
    fn run(layer: &mut dyn Layer, n: usize, batches: usize) -> Vec<Vec<Blob>> {
        let mut tops = vec![Blob::default(); n];
        let mut refs: Vec<&mut Blob> = tops.iter_mut().collect();
        layer.setup(&[], &mut refs).unwrap();
        layer.reshape(&[], &mut refs).unwrap();
        (0..batches)
            .map(|_| {
                let mut refs: Vec<&mut Blob> = tops.iter_mut().collect();
                layer.forward(&[], &mut refs).unwrap();
                tops.clone()
            })
            .collect()
    }

    #[test]
    fn reads_the_caffe_reference_data_set() {
        // The list names "train.h5" relative to its own folder.
        let text = format!(
            r#"type: "HDF5Data" top: "data" top: "label"
               hdf5_data_param {{ source: "{REFERENCE}/train_h5.txt" batch_size: 1000 }}"#
        );
        let mut l = layer(&text).unwrap();
        let batches = run(l.as_mut(), 2, 3);
        let (data, label) = (&batches[0][0], &batches[0][1]);
        assert_eq!(
            (data.shape(), label.shape()),
            (&[1000, 64][..], &[1000][..])
        );
        // Values from the script that wrote the file (make_data.py, numpy's generator).
        let first_row = [-0.571_444_8_f32, -0.560_832_9, -0.764_947_7, 0.134_785_06];
        assert_eq!(data.data()[..4], first_row);
        assert_eq!(label.data()[..8], [0.0, 2.0, 1.0, 0.0, 0.0, 7.0, 0.0, 0.0]);
        // 2480 rows: the third batch holds the last 480 rows, then wraps around to the first.
        let (data, label) = (batches[2][0].data(), batches[2][1].data());
        assert_eq!(
            label[477..488],
            [0.0, 4.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 7.0, 0.0, 0.0]
        );
        assert_eq!(data[479 * 64 + 62..480 * 64], [-0.944_251_7, 1.090_361_5]);
        assert_eq!(data[480 * 64..480 * 64 + 4], first_row);
        assert_eq!(batches[0][0].data()[..520 * 64], data[480 * 64..]);

        // One batch of a whole pass: the sums of every value.
        for (name, rows, data_sum, label_sum) in [
            ("train", 2480, -1_177.208_330_968_232, 3561.0),
            ("test", 2000, -853.700_240_482_568_9, 9000.0),
        ] {
            let text = format!(
                r#"top: "data" top: "label"
                   hdf5_data_param {{ source: "{REFERENCE}/{name}_h5.txt" batch_size: {rows} }}"#
            );
            let mut l = layer(&text).unwrap();
            let tops = run(l.as_mut(), 2, 1).pop().unwrap();
            let sum = |b: &Blob| b.data().iter().map(|&v| f64::from(v)).sum::<f64>();
            assert!((sum(&tops[0]) - data_sum).abs() < 1e-6, "{name}");
            assert_eq!(sum(&tops[1]), label_sum, "{name}");
        }
    }

    #[test]
    fn top_shapes_are_the_batch_then_the_row_shape() {
        let dir = temp_dir("layer-shapes");
        let values: Vec<f32> = (0..3 * 24).map(|i| i as f32).collect();
        write(
            &dir.join("x.h5"),
            vec![
                f32s("image", &[3, 2, 3, 4], &values),
                f32s("target", &[3, 5], &[0.5; 15]),
                f32s("label", &[3], &[7.0, 8.0, 9.0]),
            ],
        );
        let list = list(&dir, "list.txt", &["x.h5"]);
        let text = format!(
            r#"top: "image" top: "target" top: "label"
               hdf5_data_param {{ source: "{}" batch_size: 2 }}"#,
            list.display()
        );
        let mut l = layer(&text).unwrap();
        assert_eq!(l.type_name(), "HDF5Data");
        let batches = run(l.as_mut(), 3, 2);
        let shapes: Vec<&[usize]> = batches[0].iter().map(|b| b.shape()).collect();
        assert_eq!(shapes, [&[2, 2, 3, 4][..], &[2, 5], &[2]]);
        assert_eq!(batches[0][2].data(), [7.0, 8.0]);
        assert_eq!(batches[1][2].data(), [9.0, 7.0]);
        assert_eq!(batches[1][0].data()[..24], values[48..]);
    }

    #[test]
    fn shuffle_uses_the_layer_generator() {
        let dir = temp_dir("layer-shuffle");
        numbered(&dir, "a.h5", 0, 30);
        let list = list(&dir, "list.txt", &["a.h5"]);
        let text = format!(
            r#"top: "data" top: "label"
               hdf5_data_param {{ source: "{}" batch_size: 30 shuffle: true }}"#,
            list.display()
        );
        let labels = |seed: u64| {
            let param = crema_proto::text::parse(&text, "t").unwrap();
            let mut ctx = context(&param);
            ctx.rng = crate::math::rng(seed, 4);
            let mut l = create(&mut ctx).unwrap();
            run(l.as_mut(), 2, 1)[0][1].data().to_vec()
        };
        assert_eq!(labels(1), labels(1));
        assert_ne!(labels(1), labels(2));
        let mut sorted = labels(1);
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, (0..30).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn errors_name_the_field() {
        let dir = temp_dir("layer-errors");
        numbered(&dir, "a.h5", 0, 3);
        let list = list(&dir, "list.txt", &["a.h5"]);
        let list = list.display();
        let err = error(r#"top: "data" hdf5_data_param { batch_size: 2 }"#);
        assert!(err.starts_with("hdf5_data_param.source: "), "{err}");
        let err = error(&format!(
            r#"top: "data" hdf5_data_param {{ source: "{list}" }}"#
        ));
        assert!(err.starts_with("hdf5_data_param.batch_size: "), "{err}");
        let err = error(&format!(
            r#"top: "data" hdf5_data_param {{ source: "{list}" batch_size: 0 }}"#
        ));
        assert!(err.starts_with("hdf5_data_param.batch_size: "), "{err}");
        let err = error(r#"top: "data""#);
        assert!(err.starts_with("hdf5_data_param.source: "), "{err}");
        let err = error(&format!(
            r#"top: "data" transform_param {{ scale: 2 }}
               hdf5_data_param {{ source: "{list}" batch_size: 2 }}"#
        ));
        assert!(err.starts_with("transform_param: "), "{err}");
        let err = error(&format!(
            r#"top: "data" top: "weights" hdf5_data_param {{ source: "{list}" batch_size: 2 }}"#
        ));
        assert!(
            err.starts_with("hdf5_data_param.source: ") && err.contains("no dataset \"weights\""),
            "{err}"
        );
        let err =
            error(r#"top: "data" hdf5_data_param { source: "/nonexistent/l.txt" batch_size: 2 }"#);
        assert!(err.contains("/nonexistent/l.txt"), "{err}");
    }

    #[test]
    fn forward_errors_name_the_file() {
        let dir = temp_dir("layer-forward-error");
        numbered(&dir, "a.h5", 0, 3);
        numbered(&dir, "b.h5", 100, 3);
        let list = list(&dir, "list.txt", &["a.h5", "b.h5"]);
        let text = format!(
            r#"top: "data" top: "label" hdf5_data_param {{ source: "{}" batch_size: 2 }}"#,
            list.display()
        );
        let mut l = layer(&text).unwrap();
        let (mut data, mut label) = (Blob::default(), Blob::default());
        l.setup(&[], &mut [&mut data, &mut label]).unwrap();
        l.reshape(&[], &mut [&mut data, &mut label]).unwrap();
        l.forward(&[], &mut [&mut data, &mut label]).unwrap();
        std::fs::write(dir.join("b.h5"), "gone").unwrap();
        let err = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
        assert!(err.contains("b.h5") && err.contains("HDF5"), "{err}");
    }

    /// Two files, 100 rows in all: classes 0 (80 rows, in a.h5), 1 (15: 5 in a.h5, 10 in b.h5) and 3 (5, in
    /// b.h5); `data` [rows, 2] holds (row number over both files, class).
    fn long_tail_files(dir: &std::path::Path) -> std::path::PathBuf {
        let classes: Vec<f32> = [vec![0.0; 80], vec![1.0; 15], vec![3.0; 5]].concat();
        let (a, b) = classes.split_at(85);
        for (name, labels, base) in [("a.h5", a, 0), ("b.h5", b, 85)] {
            let data: Vec<f32> = labels
                .iter()
                .enumerate()
                .flat_map(|(i, &c)| [(base + i) as f32, c])
                .collect();
            let rows = labels.len() as u64;
            write(
                &dir.join(name),
                vec![f32s("data", &[rows, 2], &data), f32s("y", &[rows], labels)],
            );
        }
        list(dir, "list.txt", &["a.h5", "b.h5"])
    }

    fn sampled(list: &std::path::Path, mode: &str, seed: u64) -> Box<dyn Layer> {
        let text = format!(
            r#"top: "data" top: "y" hdf5_data_param {{ source: "{}" batch_size: 50 }}
               sampling_param {{ mode: {mode} label: "y" }}"#,
            list.display()
        );
        let param = crema_proto::text::parse(&text, "t").unwrap();
        let mut ctx = context(&param);
        ctx.rng = crate::math::rng(seed, 2);
        create(&mut ctx).unwrap()
    }

    #[test]
    fn sampling_draws_classes_as_the_mode_says_across_files() {
        let dir = temp_dir("layer-sampling");
        let list = long_tail_files(&dir);
        let sqrt = [80f64.sqrt(), 15f64.sqrt(), 0.0, 5f64.sqrt()];
        let total: f64 = sqrt.iter().sum();
        for (mode, expected) in [
            ("CLASS_BALANCED", [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0]),
            ("SQRT", sqrt.map(|v| v / total)),
        ] {
            let mut layer = sampled(&list, mode, 1);
            let mut counts = [0u64; 4];
            for batch in run(layer.as_mut(), 2, 400) {
                for (row, &class) in batch[0].data().chunks_exact(2).zip(batch[1].data()) {
                    // Each row's data and label come from the same row of the files.
                    assert_eq!(row[1], class);
                    counts[class as usize] += 1;
                }
            }
            // Pearson's chi-squared over the 3 classes present (2 degrees of freedom; P(> 13.8) = 0.001).
            let statistic = crate::data::sampling::chi_squared(&counts, &expected);
            assert!(statistic < 13.8, "{mode}: {counts:?}, chi² {statistic}");
        }
    }

    #[test]
    fn a_resumed_sampler_draws_the_same_batches() {
        let dir = temp_dir("layer-sampling-resume");
        let list = long_tail_files(&dir);
        let mut whole = sampled(&list, "CLASS_BALANCED", 5);
        let all: Vec<Vec<f32>> = run(whole.as_mut(), 2, 6)
            .iter()
            .map(|t| t[0].data().to_vec())
            .collect();
        let mut first = sampled(&list, "CLASS_BALANCED", 5);
        let head: Vec<Vec<f32>> = run(first.as_mut(), 2, 2)
            .iter()
            .map(|t| t[0].data().to_vec())
            .collect();
        assert_eq!(head, all[..2]);
        let state = first.state().unwrap();
        let mut resumed = sampled(&list, "CLASS_BALANCED", 99);
        resumed.set_state(&state).unwrap();
        let tail: Vec<Vec<f32>> = run(resumed.as_mut(), 2, 4)
            .iter()
            .map(|t| t[0].data().to_vec())
            .collect();
        assert_eq!(tail, all[2..]);
        // A reading position is not a sampler's state, nor the other way round.
        let plain_text = format!(
            r#"top: "data" top: "y" hdf5_data_param {{ source: "{}" batch_size: 50 }}"#,
            list.display()
        );
        let mut plain = layer(&plain_text).unwrap();
        assert!(plain.set_state(&state).is_err());
        assert!(resumed.set_state(&plain.state().unwrap()).is_err());
    }

    #[test]
    fn sampling_errors_name_the_field() {
        let dir = temp_dir("layer-sampling-errors");
        let list = long_tail_files(&dir);
        let text = format!(
            r#"top: "data" top: "y" hdf5_data_param {{ source: "{}" batch_size: 5 }}
               sampling_param {{ mode: SQRT }}"#,
            list.display()
        );
        assert!(
            error(&text).contains("sampling_param: no top names the dataset \"label\""),
            "{}",
            error(&text)
        );
        let text = text.replace("mode: SQRT", "mode: SQRT label: \"data\"");
        assert!(
            error(&text).contains("holds 2 values a row"),
            "{}",
            error(&text)
        );
    }
}
