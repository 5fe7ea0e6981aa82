//! HDF5Output: writes its two bottoms to an HDF5 file, as the datasets `data` and `label`.
//!
//! Parameters: `hdf5_output_param { file_name }` (required), a path taken from the working directory, as in
//! Caffe. Bottoms: the data and the labels, with the same first axis (`num`); no tops, no gradient.
//!
//! What Caffe does: its setup creates the file empty (truncating an existing one), and its forward writes the
//! bottoms as float datasets of Caffe's 4-D shape `num × channels × height × width` (missing axes are 1; a
//! bottom of more than 4 axes is refused). That works once: a second forward fails in Caffe, the datasets
//! existing already. crema writes the same file for the first forward, and appends every later forward's rows
//! to the same two datasets (`rows × channels × height × width`), so that a test run of many iterations leaves
//! every batch in the file, in order. Every write is of the whole file, atomically (a temporary file renamed
//! over it), so the file is always complete: after setup, empty; after each forward, every row so far.
//!
//! The rows so far are kept in memory to write the whole file each time (memory from [`crate::memory`], and
//! at most [`MAX_BLOB_COUNT`] values per dataset, the largest blob); each forward's write grows with the rows
//! written so far. The per-item shape must stay the same from one forward to the next.

use std::path::PathBuf;

use hdf5_writer::{DatasetBuilder, Hdf5Builder, WriteOptions};

use crate::blob::{Blob, MAX_BLOB_COUNT};
use crate::layer::{required_text, Arity, Layer, LayerContext, LayerError, LayerResult};

/// The HDF5Output layer.
pub struct Hdf5Output {
    path: PathBuf,
    /// The rows written so far: `data`, then `label`.
    datasets: [Rows; 2],
}

/// The rows of one dataset written so far.
struct Rows {
    name: &'static str,
    /// `channels × height × width` of one row, once a forward has run.
    row_shape: Option<[usize; 3]>,
    rows: usize,
    values: Vec<f32>,
}

/// Makes an HDF5Output layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.hdf5_output_param.clone().unwrap_or_default();
    let file_name = required_text(
        param.file_name.as_deref(),
        "hdf5_output_param.file_name",
        "the HDF5 file to write",
    )?;
    let rows = |name| Rows {
        name,
        row_shape: None,
        rows: 0,
        values: Vec::new(),
    };
    Ok(Box::new(Hdf5Output {
        path: PathBuf::from(file_name),
        datasets: [rows("data"), rows("label")],
    }))
}

/// Caffe's 4-D view of `blob` (bottom `index`): `[num, channels, height, width]`.
fn legacy_shape(blob: &Blob, index: usize, name: &str) -> LayerResult<[usize; 4]> {
    if blob.num_axes() > 4 {
        return Err(LayerError::new(format!(
            "bottom {index} (written as \"{name}\") has {} axes ({}); HDF5Output writes Caffe's 4-D num × channels \
             × height × width, as Caffe does",
            blob.num_axes(),
            blob.shape_string()
        )));
    }
    Ok([0, 1, 2, 3].map(|a| blob.legacy_dim(a)))
}

impl Hdf5Output {
    /// The file with every row so far, written atomically.
    fn write(&self) -> LayerResult {
        let mut builder = Hdf5Builder::new();
        for rows in &self.datasets {
            if let Some([c, h, w]) = rows.row_shape {
                let shape = [rows.rows, c, h, w].map(|d| d as u64);
                let dataset =
                    DatasetBuilder::typed_data::<f32>(rows.name, shape.to_vec(), &rows.values)
                        .map_err(|e| self.error(e))?;
                builder = builder.dataset(dataset);
            }
        }
        let bytes = builder
            .into_plan()
            .and_then(|plan| plan.encode(WriteOptions::default()))
            .map_err(|e| self.error(e))?;
        crema_proto::files::write_atomic(&self.path, &bytes).map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> LayerError {
        LayerError::new(format!(
            "hdf5_output_param.file_name: cannot write {}: {e}",
            self.path.display()
        ))
    }
}

impl Layer for Hdf5Output {
    fn type_name(&self) -> &'static str {
        "HDF5Output"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn allow_force_backward(&self, _index: usize) -> bool {
        false
    }

    /// Creates the file empty, as Caffe's setup does.
    fn setup(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        self.write()
    }

    fn reshape(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        let data = legacy_shape(bottom[0], 0, "data")?;
        let label = legacy_shape(bottom[1], 1, "label")?;
        if data[0] != label[0] {
            return Err(LayerError::new(format!(
                "the data (bottom 0, {}) and the labels (bottom 1, {}) must have the same first dimension",
                bottom[0].shape_string(),
                bottom[1].shape_string()
            )));
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        self.reshape(bottom, top)?;
        let mut shapes = [[0; 4]; 2];
        for (i, (rows, b)) in self.datasets.iter_mut().zip(bottom).enumerate() {
            let [num, c, h, w] = legacy_shape(b, i, rows.name)?;
            if rows.row_shape.is_some_and(|shape| shape != [c, h, w]) {
                return Err(LayerError::new(format!(
                    "bottom {i} (written as \"{}\") has items of {c} × {h} × {w} now, but {:?} in the rows already in \
                     {}; every forward must give items of one shape",
                    rows.name,
                    rows.row_shape.unwrap_or_default(),
                    self.path.display()
                )));
            }
            if rows.values.len() + b.count() > MAX_BLOB_COUNT {
                return Err(LayerError::new(format!(
                    "hdf5_output_param.file_name: dataset \"{}\" of {} would pass {MAX_BLOB_COUNT} values, the most \
                     crema writes ({} rows written so far, {num} more)",
                    rows.name,
                    self.path.display(),
                    rows.rows
                )));
            }
            crate::memory::reserve(&mut rows.values, b.count(), || {
                format!("the rows of dataset \"{}\" to write", rows.name)
            })?;
            shapes[i] = [num, c, h, w];
        }
        for ((rows, b), [num, c, h, w]) in self.datasets.iter_mut().zip(bottom).zip(shapes) {
            rows.row_shape = Some([c, h, w]);
            rows.rows += num;
            rows.values.extend_from_slice(b.data());
        }
        self.write()
    }

    fn backward(
        &mut self,
        _top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        for (b, &down) in bottom.iter_mut().zip(propagate_down) {
            if down {
                b.diff_mut().fill(0.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::hdf5::read_dataset;
    use crate::data::hdf5::test_files::temp_dir;
    use crate::layers::test_support::context;
    use crate::testing::net_from_text;
    use crema_proto::caffe::Phase;

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn counting(shape: &[usize], from: f32) -> Blob {
        let count = shape.iter().product::<usize>();
        Blob::from_data(shape, (0..count).map(|v| from + v as f32).collect()).unwrap()
    }

    #[test]
    fn writes_caffes_4d_datasets_and_appends_each_forward() {
        let dir = temp_dir("hdf5-output-append");
        let path = dir.join("out.h5");
        std::fs::write(&path, b"old contents").unwrap();
        let text = format!("hdf5_output_param {{ file_name: \"{}\" }}", path.display());
        let mut l = layer(&text).unwrap();
        let (data, label) = (counting(&[2, 3], 0.0), counting(&[2], 100.0));
        l.setup(&[&data, &label], &mut []).unwrap();
        l.reshape(&[&data, &label], &mut []).unwrap();
        // Setup truncates the file: an HDF5 file without datasets.
        assert!(read_dataset(&path, "data").is_err());
        l.forward(&[&data, &label], &mut []).unwrap();
        assert_eq!(
            read_dataset(&path, "data").unwrap(),
            (vec![2, 3, 1, 1], data.data().to_vec())
        );
        assert_eq!(
            read_dataset(&path, "label").unwrap(),
            (vec![2, 1, 1, 1], vec![100.0, 101.0])
        );

        let (data2, label2) = (counting(&[2, 3], 50.0), counting(&[2], 200.0));
        l.forward(&[&data2, &label2], &mut []).unwrap();
        let (shape, values) = read_dataset(&path, "data").unwrap();
        assert_eq!(shape, [4, 3, 1, 1]);
        assert_eq!(values[..6], *data.data());
        assert_eq!(values[6..], *data2.data());
        assert_eq!(
            read_dataset(&path, "label").unwrap().1,
            [100.0, 101.0, 200.0, 201.0]
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // Items of another shape cannot join the rows already written.
        let err = l
            .forward(&[&counting(&[2, 4], 0.0), &label], &mut [])
            .unwrap_err();
        assert!(err.0.contains("has items of 4 × 1 × 1 now"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = layer("name: \"out\"").err().unwrap();
        assert!(
            err.0.starts_with("hdf5_output_param.file_name: missing"),
            "{err}"
        );
        let dir = temp_dir("hdf5-output-errors");
        let text = format!(
            "hdf5_output_param {{ file_name: \"{}\" }}",
            dir.join("no-such-folder/out.h5").display()
        );
        let mut l = layer(&text).unwrap();
        let err = l.setup(&[], &mut []).unwrap_err();
        assert!(
            err.0
                .starts_with("hdf5_output_param.file_name: cannot write "),
            "{err}"
        );

        let text = format!(
            "hdf5_output_param {{ file_name: \"{}\" }}",
            dir.join("o.h5").display()
        );
        let mut l = layer(&text).unwrap();
        let err = l
            .reshape(
                &[&Blob::new(&[2, 3]).unwrap(), &Blob::new(&[3]).unwrap()],
                &mut [],
            )
            .unwrap_err();
        assert!(
            err.0.contains("must have the same first dimension"),
            "{err}"
        );
        let err = l
            .reshape(
                &[
                    &Blob::new(&[2, 1, 1, 1, 1]).unwrap(),
                    &Blob::new(&[2]).unwrap(),
                ],
                &mut [],
            )
            .unwrap_err();
        assert!(
            err.0
                .starts_with("bottom 0 (written as \"data\") has 5 axes"),
            "{err}"
        );
    }

    #[test]
    fn in_a_net_each_forward_adds_a_batch() {
        let dir = temp_dir("hdf5-output-net");
        let path = dir.join("features.h5");
        let text = format!(
            r#"
            layer {{ name: "in" type: "Input" top: "x" top: "y" input_param {{ shape {{ dim: 3 dim: 2 dim: 2 }} shape {{ dim: 3 }} }} }}
            layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y" hdf5_output_param {{ file_name: "{}" }} }}
            "#,
            path.display()
        );
        let mut net = net_from_text(&text, Phase::Test, &[]).unwrap();
        for batch in 0..3 {
            net.blob_mut("y").unwrap().data_mut().fill(batch as f32);
            net.forward().unwrap();
        }
        let (shape, values) = read_dataset(&path, "data").unwrap();
        assert_eq!((shape, values.len()), (vec![9, 2, 2, 1], 36));
        let labels = read_dataset(&path, "label").unwrap().1;
        assert_eq!(labels, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }
}
