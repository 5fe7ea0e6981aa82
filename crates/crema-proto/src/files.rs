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

/// The size of the regular file at `path` (links followed), or an error when it is missing, unreadable, or not
/// a regular file: a directory, a FIFO (reading one blocks until some other process writes), a device (such as
/// `/dev/zero`, which never ends) or a socket. Every reader of a path from input checks this before opening.
pub fn regular_file_size(path: &Path) -> Result<u64> {
    use std::os::unix::fs::FileTypeExt as _;
    let metadata = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(metadata.len());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(ProtoError::NotAFile {
        path: path.to_owned(),
        kind: what,
    })
}

/// Reads a whole regular file (see [`regular_file_size`]) of at most `limit` bytes; `what` names what it should
/// hold in the error for a larger one. The buffer is reserved fallibly, and reading stops past `limit` even if
/// the file grows meanwhile.
pub fn read_bytes(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let too_large = |size: u64| ProtoError::TooLarge {
        origin: path.display().to_string(),
        message: what,
        size,
        limit,
    };
    let size = regular_file_size(path)?;
    if size > limit {
        return Err(too_large(size));
    }
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(size as usize).map_err(|_| {
        io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("not enough memory to read its {size} bytes"),
            ),
        )
    })?;
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The largest list or other plain-text file crema reads (an HDF5 source list, an image list, counts).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// Reads a whole regular text file as [`read_bytes`] does, at most [`MAX_TEXT_BYTES`]; it must be UTF-8.
pub fn read_text_file(path: &Path, what: &'static str) -> Result<String> {
    let bytes = read_bytes(path, MAX_TEXT_BYTES, what)?;
    String::from_utf8(bytes).map_err(|e| {
        io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            ),
        )
    })
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
