//! Data sources for data layers: where a data layer's rows come from, and the reading position a solverstate
//! keeps so that a resumed run reads on from the same row.
//!
//! - [`hdf5`]: `.h5` files named in a text list, read one file at a time (Caffe's HDF5Data layer).

pub mod hdf5;
