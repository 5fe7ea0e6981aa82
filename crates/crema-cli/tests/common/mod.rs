//! What the command-line tests share: running `crema` in a folder, reading its output, scratch folders, and
//! reading an HDF5 source list as crema's HDF5Data layer reads it.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `crema ARGS` with `dir` as the working directory.
pub fn crema(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("crema runs")
}

/// What a run printed on standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a run printed on standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh scratch folder for one test (per process, so parallel test binaries do not meet).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crema-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file under the repository's tests/fixtures.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(relative)
}

/// Every row of an HDF5 source list, in file order, through crema's HDF5Data layer: the data's shape and
/// values, and the labels.
pub fn read_hdf5_list(list: &Path, rows: usize) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
    use crema::proto::{text, NetParameter, NetState};
    use crema::{Net, NetOptions};
    let net = format!(
        r#"layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
             hdf5_data_param {{ source: "{}" batch_size: {rows} }} }}"#,
        list.display()
    );
    let param: NetParameter = text::parse(&net, "read_hdf5_list").unwrap();
    let state = NetState {
        phase: Some(0),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    net.forward().unwrap();
    let data = net.blob("data").unwrap();
    let labels = net.blob("label").unwrap().data().to_vec();
    (data.shape().to_vec(), data.data().to_vec(), labels)
}
