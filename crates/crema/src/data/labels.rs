//! Every label of a data source, read at once: what `crema infogain` counts to make H.
//!
//! A source is told apart by what it is, in this order:
//! - a `.npy` file: an array of labels (any shape; every value is one label);
//! - a `.h5` / `.hdf5` file: its label dataset;
//! - a folder holding `data.mdb`, or a `data.mdb` file: an LMDB of Caffe `Datum` records (each record's label;
//!   images are not decoded);
//! - any other file is a text list: an image list (`path label` lines, as ImageData reads) when its first line
//!   ends in an integer, else an HDF5 source list (one `.h5` file a line, as HDF5Data reads), whose files' label
//!   datasets are read in list order.

use std::path::Path;

use crate::data::{hdf5, image_list, lmdb};
use crate::error::{Error, Result};
use crate::io;

/// What kind of source labels were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Npy,
    Hdf5File,
    Hdf5List,
    Lmdb,
    ImageList,
}

impl SourceKind {
    /// A short description for messages ("HDF5 source list").
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::Npy => ".npy array",
            SourceKind::Hdf5File => "HDF5 file",
            SourceKind::Hdf5List => "HDF5 source list",
            SourceKind::Lmdb => "LMDB of Datum records",
            SourceKind::ImageList => "image list",
        }
    }
}

/// The labels of a source, in the source's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub kind: SourceKind,
    pub values: Vec<f64>,
}

/// Reads every label of `source`; `dataset` names the label dataset of HDF5 sources (Caffe nets call it
/// `label`). See the module documentation for how the kind of source is decided.
pub fn read_labels(source: &Path, dataset: &str) -> Result<Labels> {
    let hdf5_error = Error::Hdf5;
    let extension = source
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if source.is_dir() || source.file_name().is_some_and(|n| n == "data.mdb") {
        let folder = if source.is_dir() {
            source
        } else {
            // `data.mdb` alone has the parent "", which names no folder.
            source
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        };
        let labels = lmdb::read_labels(folder)?;
        return Ok(Labels {
            kind: SourceKind::Lmdb,
            values: labels.into_iter().map(f64::from).collect(),
        });
    }
    match extension.as_deref() {
        Some("npy") => Ok(Labels {
            kind: SourceKind::Npy,
            values: io::read_npy(source)?.to_f64_vec(),
        }),
        Some("h5" | "hdf5") => {
            let (_, values) = hdf5::read_dataset(source, dataset).map_err(hdf5_error)?;
            Ok(Labels {
                kind: SourceKind::Hdf5File,
                values: values.into_iter().map(f64::from).collect(),
            })
        }
        _ => {
            let text = crema_proto::files::read_text_file(source, "list")?;
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            let is_image_list = first.is_some_and(|line| {
                line.rsplit_once(char::is_whitespace)
                    .is_some_and(|(_, label)| label.parse::<i64>().is_ok())
            });
            if is_image_list {
                let list = image_list::read_list(source)?;
                return Ok(Labels {
                    kind: SourceKind::ImageList,
                    values: list.into_iter().map(|(_, l)| f64::from(l)).collect(),
                });
            }
            let mut values = Vec::new();
            for file in hdf5::list_files(source).map_err(hdf5_error)? {
                let (_, part) = hdf5::read_dataset(&file, dataset).map_err(hdf5_error)?;
                values.extend(part.into_iter().map(f64::from));
            }
            Ok(Labels {
                kind: SourceKind::Hdf5List,
                values,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("crema-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn npy_and_image_lists() {
        let npy = scratch("labels.npy");
        io::write_npy(
            &npy,
            &io::Array::from_f32(vec![2, 2], vec![0.0, 1.0, 1.0, 3.0]).unwrap(),
        )
        .unwrap();
        let labels = read_labels(&npy, "label").unwrap();
        assert_eq!(labels.kind, SourceKind::Npy);
        assert_eq!(labels.values, [0.0, 1.0, 1.0, 3.0]);

        let list = scratch("images.txt");
        std::fs::write(&list, "cats/a b.png 2\ndogs/c.png 0\n\n").unwrap();
        let labels = read_labels(&list, "label").unwrap();
        assert_eq!(labels.kind, SourceKind::ImageList);
        assert_eq!(labels.values, [2.0, 0.0]);
    }

    #[test]
    fn a_missing_source_is_named() {
        let err = read_labels(Path::new("/nonexistent/train.txt"), "label")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/train.txt: "), "{err}");
    }
}
