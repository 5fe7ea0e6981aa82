//! Telling Caffe's files apart by their content, for tools such as `crema inspect` that take any of them.

use prost_reflect::DynamicMessage;

use crate::caffe::{BlobProto, NetParameter, SolverParameter, SolverState};
use crate::descriptor::CaffeMessage;

/// What a file holds, judged by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A numpy array (`\x93NUMPY` magic).
    Npy,
    /// A text-format NetParameter (net prototxt).
    NetText,
    /// A text-format SolverParameter (solver prototxt).
    SolverText,
    /// A binary BlobProto (.binaryproto).
    BlobProto,
    /// A binary NetParameter (.caffemodel).
    NetBinary,
    /// A binary SolverState (.solverstate).
    SolverState,
    /// Text that parses as neither a net nor a solver.
    UnknownText,
    /// Bytes that decode as none of the binary messages.
    UnknownBinary,
}

/// Whether `bytes` look like prototxt: UTF-8 with no control characters but whitespace.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| {
        text.chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t')
    })
}

/// Decodes `bytes` as `M` and says whether every field was one `M` knows.
fn decodes_cleanly<M: CaffeMessage>(bytes: &[u8]) -> Option<M> {
    let dynamic = DynamicMessage::decode(M::descriptor(), bytes).ok()?;
    if dynamic.unknown_fields().next().is_some() {
        return None;
    }
    Some(M::from_dynamic(&dynamic))
}

/// Judges what `bytes` hold. `hint` is the file's extension, tried first when the content allows several kinds.
///
/// ```
/// use crema_proto::kind::{sniff, FileKind};
/// assert_eq!(sniff(b"layer { name: 'a' type: 'ReLU' }", None), FileKind::NetText);
/// assert_eq!(sniff(b"base_lr: 0.1\nmax_iter: 10\n", None), FileKind::SolverText);
/// assert_eq!(sniff(&[0x93, b'N', b'U', b'M', b'P', b'Y'], None), FileKind::Npy);
/// ```
pub fn sniff(bytes: &[u8], hint: Option<&str>) -> FileKind {
    if bytes.starts_with(b"\x93NUMPY") {
        return FileKind::Npy;
    }
    if looks_like_text(bytes) && !bytes.is_empty() {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        if crate::text::parse::<NetParameter>(text, "").is_ok() {
            return FileKind::NetText;
        }
        if crate::text::parse::<SolverParameter>(text, "").is_ok() {
            return FileKind::SolverText;
        }
        return FileKind::UnknownText;
    }
    let is_blob = |b: &[u8]| {
        decodes_cleanly::<BlobProto>(b).is_some_and(|blob| {
            blob.shape.is_some()
                || crate::blob::is_legacy_shape(&blob)
                || !blob.data.is_empty()
                || !blob.double_data.is_empty()
        })
    };
    let is_net = |b: &[u8]| {
        decodes_cleanly::<NetParameter>(b)
            .is_some_and(|net| !net.layer.is_empty() || !net.layers.is_empty())
    };
    let is_state = |b: &[u8]| {
        decodes_cleanly::<SolverState>(b)
            .is_some_and(|state| state.iter.is_some() || !state.history.is_empty())
    };
    let mut order = [
        (FileKind::BlobProto, &is_blob as &dyn Fn(&[u8]) -> bool),
        (FileKind::NetBinary, &is_net),
        (FileKind::SolverState, &is_state),
    ];
    let preferred = match hint.map(str::to_ascii_lowercase).as_deref() {
        Some("caffemodel") => Some(FileKind::NetBinary),
        Some("solverstate") => Some(FileKind::SolverState),
        Some("binaryproto") => Some(FileKind::BlobProto),
        _ => None,
    };
    if let Some(preferred) = preferred {
        order.sort_by_key(|(kind, _)| *kind != preferred);
    }
    order
        .iter()
        .find(|(_, matches)| matches(bytes))
        .map_or(FileKind::UnknownBinary, |(kind, _)| *kind)
}
