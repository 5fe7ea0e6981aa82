//! numpy .npy files: reading versions 1.0, 2.0 and 3.0 (C order) and writing exactly what `np.save` writes.
//!
//! What is read:
//! - `'<f4'` and `'<f8'` (and big-endian `'>f4'`, `'>f8'`) as f32 and f64 arrays;
//! - integers (`|i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8` and their big-endian forms) and `'|b1'` bool as **f32**
//!   arrays, since labels are float blobs in Caffe. The conversion rule: every integer value must be exactly
//!   representable in f32, which crema takes as `|v| <= 2^24` (16777216); any other value is an error naming
//!   the file, the index and the value. Bools read as 0.0 and 1.0 (any non-zero byte is true, as in numpy).
//! - shapes of any rank, including 0-d arrays (shape `()`, one element) and empty arrays.
//!
//! What is refused, with an error saying why: Fortran-ordered arrays with more than one dimension longer than 1
//! (save them with `np.ascontiguousarray`), float16, complex, strings, Python objects, structured dtypes and any
//! other dtype, and damaged or hostile files. Reading never panics and never allocates from a number read in the
//! file before checking it against the bytes actually there: the header length is checked against the file
//! size, the element count against overflow, and the data bytes the shape needs against the data bytes present
//! (missing and trailing extra bytes are both errors). Files are limited to 4 GiB.
//!
//! Writing gives f32 arrays as `'<f4'` and f64 arrays as `'<f8'`, byte for byte what numpy (2.x, and 1.x
//! since 1.24) writes with `np.save`: format 1.0 (2.0 only if the header outgrows 65535 bytes), the header
//! dict with its keys sorted, numpy's spare space for growing the first axis (21 digits), and space padding
//! ending in `'\n'` so that the data starts at a multiple of 64 bytes.
//!
//! The format is written by hand (about 300 lines) rather than with a crate: npyz 0.9, the maintained choice,
//! pads headers to 16 bytes without numpy's growth-axis space, so its files differ from `np.save`'s, and it
//! allocates the header length it reads before checking it against the file.

use std::io::Read;
use std::path::Path;

use super::array::{Array, ArrayData};
use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The largest .npy file crema reads.
const MAX_FILE_BYTES: u64 = 4 << 30;
/// numpy's `ARRAY_ALIGN`: the data starts at a multiple of this many bytes.
const ALIGN: usize = 64;
/// numpy's `GROWTH_AXIS_MAX_DIGITS`: spare header space so that the first axis can grow in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// The deepest nesting of tuples, lists and dicts the header parser follows.
const MAX_DEPTH: usize = 32;
/// Integers read as f32 must lie in `-2^24..=2^24`.
const MAX_EXACT_INT: u64 = 1 << 24;

fn npy_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Npy {
        origin: origin.into(),
        reason: reason.into(),
    }
}

/// Reads a .npy file (see the [module docs](self) for what is read and how integers convert).
///
/// ```no_run
/// let labels = crema::io::read_npy("labels.npy".as_ref())?;
/// println!("{:?} {}", labels.shape(), labels.dtype());
/// # Ok::<(), crema::Error>(())
/// ```
pub fn read_npy(path: &Path) -> Result<Array> {
    let origin = path.display().to_string();
    let size = crate::error::regular_file_size(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let too_big = |size: u64| {
        npy_error(
            &origin,
            format!("file is {size} bytes; crema reads .npy files up to 4 GiB"),
        )
    };
    if size > MAX_FILE_BYTES {
        return Err(too_big(size));
    }
    let mut bytes = Vec::new();
    crate::memory::reserve(
        &mut bytes,
        usize::try_from(size).unwrap_or(usize::MAX),
        || format!("the bytes of {origin}"),
    )?;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    read_npy_bytes(&bytes, &origin)
}

/// Writes an array to a .npy file, atomically, with the bytes of [`npy_bytes`].
pub fn write_npy(path: &Path, array: &Array) -> Result<()> {
    Ok(crema_proto::files::write_atomic(path, &npy_bytes(array))?)
}

/// Reads the bytes of a .npy file; `origin` names them in errors.
///
/// ```
/// use crema::io::{npy, Array};
/// let array = Array::from_f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])?;
/// let bytes = npy::npy_bytes(&array);
/// assert_eq!(npy::read_npy_bytes(&bytes, "in memory")?, array);
/// assert!(npy::read_npy_bytes(&bytes[..bytes.len() - 1], "in memory").is_err());
/// # Ok::<(), crema::Error>(())
/// ```
pub fn read_npy_bytes(bytes: &[u8], origin: &str) -> Result<Array> {
    let preamble = MAGIC.len() + 2;
    if bytes.len() < preamble || !bytes.starts_with(MAGIC) {
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] == MAGIC[..n] {
            return Err(npy_error(
                origin,
                format!(
                    "truncated .npy file: {} bytes, too short to hold the preamble",
                    bytes.len()
                ),
            ));
        }
        return Err(npy_error(
            origin,
            "not a .npy file: it does not start with \\x93NUMPY",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(npy_error(
                origin,
                format!(
                    "unsupported .npy format version {major}.{minor}: crema reads 1.0, 2.0 and 3.0"
                ),
            ))
        }
    };
    let header_start = preamble + len_bytes;
    if bytes.len() < header_start {
        return Err(npy_error(
            origin,
            format!(
                "truncated .npy file: {} bytes, too short to hold the header length",
                bytes.len()
            ),
        ));
    }
    let header_len = bytes[preamble..header_start]
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let available = bytes.len() - header_start;
    if header_len > available as u64 {
        return Err(npy_error(
            origin,
            format!(
                "truncated or damaged .npy file: the header is said to be {header_len} bytes, but only {available} \
                 bytes follow the preamble"
            ),
        ));
    }
    // Fits: header_len <= available, a usize.
    let header_end = header_start + header_len as usize;
    let header_bytes = &bytes[header_start..header_end];
    let header: String = if major == 3 {
        std::str::from_utf8(header_bytes)
            .map_err(|_| {
                npy_error(
                    origin,
                    "the header of this version 3.0 file is not valid UTF-8",
                )
            })?
            .to_owned()
    } else {
        // Versions 1.0 and 2.0 headers are latin-1, whose bytes are the first 256 code points.
        header_bytes.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&header).map_err(|reason| npy_error(origin, reason))?;
    decode(&header, &bytes[header_end..], origin)
}

/// The bytes of a .npy file holding `array`: exactly what `np.save` writes for the same float32 or float64
/// array (see the [module docs](self)).
///
/// ```
/// use crema::io::{npy, Array};
/// let array = Array::from_f64(vec![], vec![2.5])?; // a 0-d array
/// let bytes = npy::npy_bytes(&array);
/// assert!(bytes.starts_with(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (), }"));
/// assert_eq!(bytes.len(), 128 + 8);
/// assert_eq!(npy::read_npy_bytes(&bytes, "in memory")?, array);
/// # Ok::<(), crema::Error>(())
/// ```
pub fn npy_bytes(array: &Array) -> Vec<u8> {
    let descr = match array.data() {
        ArrayData::F32(_) => "<f4",
        ArrayData::F64(_) => "<f8",
    };
    let shape = array.shape();
    let shape_repr = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_repr}, }}");
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // numpy's _wrap_header_guess_version: version 1.0 when the padded header length fits in 16 bits, else 2.0.
    let text_len = dict.len() + 1; // with the final '\n'
    let pad_for = |prefix: usize| ALIGN - (prefix + text_len) % ALIGN;
    let v1_len = text_len + pad_for(MAGIC.len() + 4);
    let (version, header_len) = if v1_len <= usize::from(u16::MAX) {
        (1u8, v1_len)
    } else {
        (2u8, text_len + pad_for(MAGIC.len() + 6))
    };
    let values = array.len();
    let item = if matches!(array.data(), ArrayData::F32(_)) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(MAGIC.len() + 6 + header_len + values * item);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header_len)
            .expect("an .npy header over 4 GiB needs over 400 million dimensions");
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + header_len - text_len, b' ');
    out.push(b'\n');
    match array.data() {
        ArrayData::F32(values) => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::F64(values) => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

/// The element types crema reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Uint,
    Bool,
}

/// A dtype crema reads: its kind, size in bytes and byte order.
#[derive(Debug, Clone, Copy)]
struct Elem {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

/// What the header says.
#[derive(Debug)]
struct Header {
    descr: String,
    elem: Elem,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse_descr(descr: &str) -> std::result::Result<Elem, String> {
    let unsupported = |why: &str| format!("dtype '{descr}' is not supported{why}");
    let mut chars = descr.chars();
    let order = chars.next();
    let rest = chars.as_str();
    let big_endian = match order {
        Some('<') => false,
        Some('>') => true,
        // '|' (not applicable) and '=' (native) are taken as numpy takes them: in this machine's byte order.
        Some('|') | Some('=') => cfg!(target_endian = "big"),
        _ => {
            return Err(unsupported(
                ": crema reads float32, float64, integer and bool arrays",
            ))
        }
    };
    let (kind, size) = match rest {
        "f4" => (Kind::Float, 4),
        "f8" => (Kind::Float, 8),
        "i1" => (Kind::Int, 1),
        "i2" => (Kind::Int, 2),
        "i4" => (Kind::Int, 4),
        "i8" => (Kind::Int, 8),
        "u1" => (Kind::Uint, 1),
        "u2" => (Kind::Uint, 2),
        "u4" => (Kind::Uint, 4),
        "u8" => (Kind::Uint, 8),
        "b1" => (Kind::Bool, 1),
        "f2" => {
            return Err(unsupported(
                " (float16): convert it with arr.astype(np.float32) before saving",
            ))
        }
        "O" => {
            return Err(unsupported(
                " (Python objects): crema reads numeric arrays only",
            ))
        }
        r if r.starts_with('c') => {
            return Err(unsupported(
                " (complex numbers): crema reads real arrays only",
            ))
        }
        r if r.starts_with('U') || r.starts_with('S') => {
            return Err(unsupported(" (strings): crema reads numeric arrays only"))
        }
        _ => {
            return Err(unsupported(
                ": crema reads float32, float64, integer and bool arrays",
            ))
        }
    };
    Ok(Elem {
        kind,
        size,
        big_endian,
    })
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let snippet = || {
        let mut s: String = text.trim_end().chars().take(200).collect();
        if s.len() < text.trim_end().len() {
            s.push_str("...");
        }
        s
    };
    let mut parser = Parser { text, pos: 0 };
    parser.skip_space();
    let parsed = parser.value(0).and_then(|value| {
        parser.skip_space();
        if parser.pos < text.len() {
            Err(format!(
                "unexpected text after the header dict at byte {}",
                parser.pos
            ))
        } else {
            Ok(value)
        }
    });
    let Value::Dict(entries) =
        parsed.map_err(|e| format!("cannot parse the .npy header {:?}: {e}", snippet()))?
    else {
        return Err(format!("the .npy header is not a dict: {:?}", snippet()));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value, span) in entries {
        let Value::Str(key) = key else {
            return Err(format!(
                "the .npy header has a key that is not a string: {:?}",
                snippet()
            ));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(format!(
                    "the .npy header has an unknown key '{key}': {:?}",
                    snippet()
                ))
            }
        };
        if slot.is_some() {
            return Err(format!(
                "the .npy header has the key '{key}' twice: {:?}",
                snippet()
            ));
        }
        *slot = Some((value, &text[span.0..span.1]));
    }
    let missing = |key: &str| format!("the .npy header has no '{key}': {:?}", snippet());
    let (descr, descr_text) = descr.ok_or_else(|| missing("descr"))?;
    let (fortran, fortran_text) = fortran.ok_or_else(|| missing("fortran_order"))?;
    let (shape, shape_text) = shape.ok_or_else(|| missing("shape"))?;

    let descr = match descr {
        Value::Str(descr) => descr,
        Value::List => {
            return Err(format!(
                "structured dtype {descr_text} is not supported: crema reads plain numeric arrays"
            ))
        }
        _ => return Err(format!("'descr' is not a dtype string: {descr_text}")),
    };
    let elem = parse_descr(&descr)?;
    let Value::Bool(fortran_order) = fortran else {
        return Err(format!(
            "'fortran_order' is not True or False: {fortran_text}"
        ));
    };
    let Value::Tuple(dims) = shape else {
        return Err(format!("'shape' is not a tuple: {shape_text}"));
    };
    let shape = dims
        .iter()
        .map(|dim| match dim {
            Value::Int(digits) if !digits.starts_with('-') => digits.parse::<usize>().ok(),
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            format!(
                "'shape' {shape_text} is not a tuple of non-negative integers that fit in memory"
            )
        })?;
    Ok(Header {
        descr,
        elem,
        fortran_order,
        shape,
    })
}

/// The values of the Python literals in a header.
#[derive(Debug)]
enum Value {
    Str(String),
    /// The digits, with a leading '-' when negative.
    Int(String),
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    /// A list (only a structured dtype's descr is one; its items are not kept).
    List,
    /// Keys, values and the byte span of each value.
    Dict(Vec<(Value, Value, (usize, usize))>),
}

/// A parser for the Python literals `ast.literal_eval` reads in .npy headers: dicts, tuples, lists, strings,
/// integers, True, False and None.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

type ParseResult<T> = std::result::Result<T, String>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> ParseResult<()> {
        self.skip_space();
        if self.peek() != Some(byte) {
            return Err(self.unexpected(&format!("'{}'", char::from(byte))));
        }
        self.pos += 1;
        Ok(())
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.text[self.pos..].chars().next() {
            Some(c) => format!("expected {wanted} at byte {}, found {c:?}", self.pos),
            None => format!(
                "expected {wanted} at byte {}, found the end of the header",
                self.pos
            ),
        }
    }

    fn value(&mut self, depth: usize) -> ParseResult<Value> {
        if depth > MAX_DEPTH {
            return Err(format!("values nest more than {MAX_DEPTH} deep"));
        }
        self.skip_space();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                while !self.closes(b'}')? {
                    let key = self.value(depth + 1)?;
                    self.expect(b':')?;
                    self.skip_space();
                    let start = self.pos;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value, (start, self.pos)));
                    self.separator(b'}')?;
                }
                Ok(Value::Dict(entries))
            }
            Some(b'[') => {
                self.pos += 1;
                while !self.closes(b']')? {
                    self.value(depth + 1)?;
                    self.separator(b']')?;
                }
                Ok(Value::List)
            }
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                let mut comma = false;
                while !self.closes(b')')? {
                    items.push(self.value(depth + 1)?);
                    comma = self.separator(b')')?;
                }
                // As in Python, `(x)` is x and only `(x,)` is a one-element tuple.
                if items.len() == 1 && !comma {
                    return Ok(items.pop().unwrap_or(Value::None));
                }
                Ok(Value::Tuple(items))
            }
            Some(quote @ (b'\'' | b'"')) => self.string(quote),
            Some(b'-' | b'0'..=b'9') => self.int(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'_') => {
                let start = self.pos;
                while matches!(
                    self.peek(),
                    Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_')
                ) {
                    self.pos += 1;
                }
                match &self.text[start..self.pos] {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::None),
                    name => Err(format!("unexpected name '{name}' at byte {start}")),
                }
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Skips space and, if the next byte is `close`, consumes it and says so.
    fn closes(&mut self, close: u8) -> ParseResult<bool> {
        self.skip_space();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After an item: a comma (returns true) or, left for `closes`, the closing bracket (returns false).
    fn separator(&mut self, close: u8) -> ParseResult<bool> {
        self.skip_space();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => Ok(false),
            _ => Err(self.unexpected(&format!("',' or '{}'", char::from(close)))),
        }
    }

    fn string(&mut self, quote: u8) -> ParseResult<Value> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(format!("the string starting at byte {start} does not end"));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == char::from(quote) => return Ok(Value::Str(out)),
                '\n' => {
                    return Err(format!(
                        "the string starting at byte {start} does not end on its line"
                    ))
                }
                '\\' => {
                    let Some(escaped) = self.text[self.pos..].chars().next() else {
                        return Err(format!("the string starting at byte {start} does not end"));
                    };
                    self.pos += escaped.len_utf8();
                    if !matches!(escaped, '\\' | '\'' | '"') {
                        out.push('\\');
                    }
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
    }

    fn int(&mut self) -> ParseResult<Value> {
        let start = self.pos;
        let mut digits = String::new();
        if self.peek() == Some(b'-') {
            self.pos += 1;
            self.skip_space();
            digits.push('-');
        }
        let first = self.pos;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            digits.push(char::from(d));
            self.pos += 1;
        }
        if self.pos == first {
            return Err(self.unexpected("a digit"));
        }
        // Python 2 wrote long integers with an 'L' suffix.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        if matches!(
            self.peek(),
            Some(b'.' | b'A'..=b'Z' | b'a'..=b'z' | b'_' | b'0'..=b'9')
        ) {
            return Err(format!("the number at byte {start} is not an integer"));
        }
        Ok(Value::Int(digits))
    }
}

/// The flat index `index` as an index into `shape`, e.g. `[1, 2]`.
fn unravel(mut index: usize, shape: &[usize]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for (slot, &dim) in out.iter_mut().zip(shape).rev() {
        if dim > 0 {
            *slot = index % dim;
            index /= dim;
        }
    }
    out
}

/// The element in `chunk` as an integer (sign-extended when `signed`).
fn int_value(chunk: &[u8], signed: bool, big_endian: bool) -> i128 {
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    let raw = if big_endian {
        chunk.iter().fold(0, fold)
    } else {
        chunk.iter().rev().fold(0, fold)
    };
    let bits = 8 * chunk.len() as u32;
    if signed && bits < 64 && raw >> (bits - 1) & 1 == 1 {
        i128::from(raw) - (1i128 << bits)
    } else if signed {
        i128::from(raw as i64)
    } else {
        i128::from(raw)
    }
}

fn decode(header: &Header, data: &[u8], origin: &str) -> Result<Array> {
    let Header {
        descr,
        elem,
        fortran_order,
        shape,
    } = header;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            npy_error(
                origin,
                format!("shape {shape:?} has more elements than fit in memory"),
            )
        })?;
    let needed = count.checked_mul(elem.size).ok_or_else(|| {
        npy_error(
            origin,
            format!("shape {shape:?} of '{descr}' needs more bytes than fit in memory"),
        )
    })?;
    if needed != data.len() {
        let what = if needed > data.len() {
            "truncated or damaged file"
        } else {
            "extra bytes after the data"
        };
        return Err(npy_error(
            origin,
            format!(
                "shape {shape:?} of '{descr}' needs {needed} data bytes, but the file has {} ({what})",
                data.len()
            ),
        ));
    }
    // A Fortran-ordered array with at most one dimension longer than 1 is laid out as in C order.
    if *fortran_order && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(npy_error(
            origin,
            format!(
                "the array of shape {shape:?} is in Fortran order ('fortran_order': True); crema reads C-order \
                 arrays only: save it with np.save(path, np.ascontiguousarray(arr))"
            ),
        ));
    }
    let shape = shape.clone();
    let chunks = data.chunks_exact(elem.size);
    let what = || format!("the values of {origin}");
    match (elem.kind, elem.size) {
        (Kind::Float, 4) => {
            let values = chunks.map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if elem.big_endian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            });
            Array::from_f32(shape, crate::memory::collect(values, count, what)?)
        }
        (Kind::Float, _) => {
            let values = chunks.map(|c| {
                let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                if elem.big_endian {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }
            });
            Array::from_f64(shape, crate::memory::collect(values, count, what)?)
        }
        (Kind::Bool, _) => {
            let values = data.iter().map(|&b| if b == 0 { 0.0 } else { 1.0 });
            Array::from_f32(shape, crate::memory::collect(values, count, what)?)
        }
        (Kind::Int | Kind::Uint, _) => {
            let mut values = Vec::new();
            crate::memory::reserve(&mut values, count, what)?;
            for (index, chunk) in chunks.enumerate() {
                let value = int_value(chunk, elem.kind == Kind::Int, elem.big_endian);
                if value.unsigned_abs() > u128::from(MAX_EXACT_INT) {
                    return Err(npy_error(
                        origin,
                        format!(
                            "integer value {value} at index {index} (element {:?}) of this '{descr}' array is not \
                             exactly representable as float32: crema reads integer arrays as float32 and needs \
                             |value| <= 16777216 (2^24)",
                            unravel(index, &shape)
                        ),
                    ));
                }
                values.push(value as f32);
            }
            Array::from_f32(shape, values)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_file(dict: &str, version: u8, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn reason(result: Result<Array>) -> String {
        match result {
            Err(Error::Npy { reason, .. }) => reason,
            other => panic!("expected an Npy error, got {other:?}"),
        }
    }

    #[test]
    fn header_keys_in_any_order_with_odd_spacing() {
        let dict = "{ \"shape\" :(2 ,3L,),'fortran_order':False ,\n'descr':'<f4' }\n";
        let array = read_npy_bytes(&header_file(dict, 1, &[0; 24]), "x").unwrap();
        assert_eq!(array.shape(), &[2, 3]);
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}";
        assert_eq!(
            read_npy_bytes(&header_file(dict, 2, &[0; 8]), "x")
                .unwrap()
                .shape(),
            &[1]
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                "unknown key",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1)}",
                "not a tuple",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                "non-negative",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1.0,)}",
                "not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
                "True or False",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
                "fit in memory",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",
                "after the header",
            ),
            (
                "{'descr': '<f4 , 'fortran_order': False, 'shape': (1,)}",
                "cannot parse",
            ),
            ("['descr', '<f4']", "not a dict"),
            (
                "{'descr': 'float32', 'fortran_order': False, 'shape': (1,)}",
                "'float32' is not supported",
            ),
            (
                "{'descr': '<f16', 'fortran_order': False, 'shape': (1,)}",
                "'<f16' is not supported",
            ),
        ];
        for (dict, wanted) in cases {
            let got = reason(read_npy_bytes(&header_file(dict, 1, &[0; 4]), "x"));
            assert!(got.contains(wanted), "{dict}: {got}");
        }
        let deep = format!("{{'descr': {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(reason(read_npy_bytes(&header_file(&deep, 1, &[]), "x")).contains("nest"));
    }

    #[test]
    fn bad_preambles_are_errors() {
        assert!(reason(read_npy_bytes(b"PK\x03\x04 a zip file", "x")).contains("not a .npy file"));
        assert!(reason(read_npy_bytes(b"\x93NUM", "x")).contains("truncated"));
        let mut file = header_file(
            "{'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            1,
            &[0; 4],
        );
        file[6] = 4;
        assert!(reason(read_npy_bytes(&file, "x")).contains("version 4.0"));
        file[6] = 1;
        file[8] = 0xff;
        file[9] = 0xff;
        assert!(reason(read_npy_bytes(&file, "x")).contains("65535 bytes"));
    }

    #[test]
    fn integers_convert_exactly_or_fail() {
        assert_eq!(int_value(&[0xff], true, false), -1);
        assert_eq!(int_value(&[0xff], false, false), 255);
        assert_eq!(
            int_value(&[0x80, 0, 0, 0, 0, 0, 0, 0], true, true),
            i128::from(i64::MIN)
        );
        assert_eq!(int_value(&[0xff; 8], false, true), i128::from(u64::MAX));
        assert_eq!(int_value(&[0xfe, 0xff], true, false), -2);
        let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2)}";
        let data: Vec<u8> = [1i32, -16777216, 3, -16777217]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let got = reason(read_npy_bytes(&header_file(dict, 1, &data), "x"));
        assert!(
            got.contains("-16777217 at index 3 (element [1, 1])"),
            "{got}"
        );
    }

    #[test]
    fn fortran_order_is_read_when_it_is_c_order_too() {
        for (shape, ok) in [
            ("(3,)", true),
            ("(1, 3, 1)", true),
            ("()", true),
            ("(2, 3)", false),
        ] {
            let dict = format!("{{'descr': '|u1', 'fortran_order': True, 'shape': {shape}, }}");
            let count = if shape == "(2, 3)" {
                6
            } else if shape == "()" {
                1
            } else {
                3
            };
            let result = read_npy_bytes(&header_file(&dict, 1, &vec![1; count]), "x");
            assert_eq!(result.is_ok(), ok, "{shape}: {result:?}");
        }
    }

    #[test]
    fn unravel_gives_c_order_indices() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
    }

    #[test]
    fn written_headers_are_aligned_and_read_back() {
        for shape in [
            vec![],
            vec![5],
            vec![4, 4],
            vec![1; 40],
            vec![123_456_789, 0],
        ] {
            let count = shape.iter().product();
            let array = Array::from_f32(shape, vec![0.5; count]).unwrap();
            let bytes = npy_bytes(&array);
            let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            assert_eq!((10 + header_len) % ALIGN, 0);
            assert_eq!(bytes[10 + header_len - 1], b'\n');
            assert_eq!(read_npy_bytes(&bytes, "x").unwrap(), array);
        }
    }

    #[test]
    fn huge_headers_are_written_as_version_2() {
        let array = Array::from_f64(vec![1; 30_000], vec![1.0]).unwrap();
        let bytes = npy_bytes(&array);
        assert_eq!(&bytes[6..8], &[2, 0]);
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!((12 + header_len) % ALIGN, 0);
        assert_eq!(read_npy_bytes(&bytes, "x").unwrap(), array);
    }
}
