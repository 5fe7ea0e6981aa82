//! Caffe's files on disk: prototxt in, prototxt out, binary protobuf in and out.
//!
//! Writes are atomic: the bytes go to a temporary file beside the target, which is then renamed over it, so that a
//! crash or a kill mid-write leaves the previous file whole.

use std::io::Write;
use std::path::Path;

use crate::binary::{self, MAX_BINARY_BYTES};
use crate::descriptor::CaffeMessage;
use crate::error::{ProtoError, Result};
use crate::text;
use crate::upgrade::{self, UpgradeReport};
use crate::{NetParameter, SolverParameter};

fn io_error(path: &Path, source: std::io::Error) -> ProtoError {
    ProtoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a whole file after checking its size against `limit`.
pub fn read_bytes(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .map_err(|e| io_error(path, e))?
        .len();
    if size > limit {
        return Err(ProtoError::TooLarge {
            origin: path.display().to_string(),
            message: what,
            size,
            limit,
        });
    }
    std::fs::read(path).map_err(|e| io_error(path, e))
}

/// Reads a text-format file as the message `M`, with no upgrade.
pub fn read_text<M: CaffeMessage>(path: &Path) -> Result<M> {
    let bytes = read_bytes(path, MAX_BINARY_BYTES, M::NAME)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        text::text_error(
            &text,
            &path.display().to_string(),
            offset,
            "the file is not valid UTF-8".into(),
        )
    })?;
    text::parse(&text, &path.display().to_string())
}

/// Reads a binary protobuf file as the message `M`, with no upgrade.
pub fn read_binary<M: CaffeMessage>(path: &Path) -> Result<M> {
    let bytes = read_bytes(path, MAX_BINARY_BYTES, M::NAME)?;
    binary::decode(&bytes, &path.display().to_string())
}

/// Reads a net prototxt and upgrades it to the current format (V0/V1 layers, input fields, ...).
///
/// ```no_run
/// let (net, report) = crema_proto::files::read_net_text("lenet_train_test.prototxt".as_ref())?;
/// for step in &report.steps { eprintln!("upgraded: {step}"); }
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn read_net_text(path: &Path) -> Result<(NetParameter, UpgradeReport)> {
    let mut net: NetParameter = read_text(path)?;
    let report = upgrade::upgrade_net(&mut net, &path.display().to_string())?;
    Ok((net, report))
}

/// Reads a binary net (.caffemodel) and upgrades it to the current format.
pub fn read_net_binary(path: &Path) -> Result<(NetParameter, UpgradeReport)> {
    let mut net: NetParameter = read_binary(path)?;
    let report = upgrade::upgrade_net(&mut net, &path.display().to_string())?;
    Ok((net, report))
}

/// Reads a solver prototxt and upgrades the deprecated `solver_type` enum to `type`.
pub fn read_solver_text(path: &Path) -> Result<(SolverParameter, UpgradeReport)> {
    let mut solver: SolverParameter = read_text(path)?;
    let report = upgrade::upgrade_solver(&mut solver, &path.display().to_string())?;
    Ok((solver, report))
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, flushed, then renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp_path = folder.join(temp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temp_path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp_path, path)
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temp_path);
        return Err(io_error(path, error));
    }
    Ok(())
}

/// Writes `message` to `path` in text format, atomically.
pub fn write_text<M: CaffeMessage>(path: &Path, message: &M) -> Result<()> {
    write_atomic(path, text::print(message).as_bytes())
}

/// Writes `message` to `path` as binary protobuf, atomically.
pub fn write_binary<M: CaffeMessage>(path: &Path, message: &M) -> Result<()> {
    write_atomic(path, &binary::encode(message))
}
