//! Data sources for data layers: where a data layer's rows come from, and the reading position a solverstate
//! keeps so that a resumed run reads on from the same row.
//!
//! - [`hdf5`]: `.h5` files named in a text list, read one file at a time (Caffe's HDF5Data layer).
//! - [`lmdb`]: LMDBs of Caffe `Datum` records ([`datum`]), read in key order (the Data layer) and written.
//! - [`image_list`]: `path label` lists of image files (the ImageData layer); [`pixels`]: decoding them.
//! - [`labels`]: every label of any of these sources at once (what `crema infogain` counts).
//! - [`transform`]: `transform_param` (crop, mirror, mean, scale); [`prefetch`]: batches made on a thread.

pub mod datum;
pub mod hdf5;
pub mod image_list;
pub mod labels;
pub mod lmdb;
pub mod pixels;
pub mod prefetch;
pub mod sampling;
pub mod transform;
