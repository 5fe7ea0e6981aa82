//! Compiles `proto/caffe.proto` with protox (pure Rust, no protoc) and generates prost types.
//! The encoded descriptor set is also written out so that the text format can use reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["caffe.proto"], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("caffe_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&files))?;
    prost_build::Config::new()
        .enable_type_names()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(&["proto/caffe.proto"], &["proto"])?;
    Ok(())
}
