//! Mutations of real files: raw bytes, protobuf wire structure, and prototxt tokens.
//!
//! Every function draws only from the generator it is given, so a case is a pure function of (seed, target,
//! case index) and can be generated again.

use rand::seq::IndexedRandom;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

pub type Rng = ChaCha8Rng;

/// Integers that tend to break size arithmetic: zero, one, powers of two and their neighbours, the limits of
/// i32/u32/i64/u64, and `usize` values past what any allocation can hold.
pub const INTERESTING_U64: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    63,
    64,
    100,
    127,
    128,
    255,
    256,
    1000,
    1023,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    1 << 20,
    1 << 24,
    (1 << 24) + 1,
    0x3fff_ffff,
    0x4000_0000,
    0x7fff_fffe,
    0x7fff_ffff,
    0x8000_0000,
    0x8000_0001,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    1 << 40,
    1 << 48,
    1 << 53,
    (1 << 53) + 1,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_ffff_fffe,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_8000_0000, // i32::MIN sign-extended (a negative int32 varint)
    0xffff_ffff_ffff_ff00,
];

/// f32 bit patterns worth trying: non-finite values, limits, subnormals, negative zero.
pub const INTERESTING_F32: &[f32] = &[
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    1e-45,
    -0.0,
    0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    1e10,
    -1e10,
    1e30,
    16777217.0,
    4294967296.0,
    0.999999,
    1.000001,
];

/// Number tokens spliced into prototxt: huge, negative, overflowing, non-finite and oddly written values.
pub const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "255",
    "256",
    "65535",
    "65536",
    "1000000",
    "100000000",
    "1000000000",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e39",
    "-1e39",
    "1e38",
    "3.4028235e38",
    "3.4028236e38",
    "1e308",
    "1e309",
    "1e-45",
    "1e-50",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "NaN",
    "Infinity",
    "-Infinity",
    "infinity",
    "0x7fffffff",
    "0xffffffff",
    "0x100000000",
    "0xffffffffffffffff",
    "-0x80000000",
    "0777",
    "0.5",
    "-0.5",
    "1e10",
    "1e-10",
    "0.000001",
    "0.999999",
    "1.0000001",
    "100000",
    "4096",
    "16777217",
    "1.5f",
    "1e",
    ".",
    "-",
    "0x",
];

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("a non-empty list")
}

/// A count of stacked mutations: mostly 1 or 2, sometimes up to 8.
pub fn stack_depth(rng: &mut Rng) -> usize {
    match rng.random_range(0..16) {
        0..=6 => 1,
        7..=10 => 2,
        11..=13 => 3,
        14 => 5,
        _ => 8,
    }
}

fn interesting_u64(rng: &mut Rng) -> u64 {
    let v = *pick(rng, INTERESTING_U64);
    match rng.random_range(0..8) {
        0 => v.wrapping_add(1),
        1 => v.wrapping_sub(1),
        _ => v,
    }
}

/// Appends `value` as a protobuf varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------------
// Raw bytes
// ---------------------------------------------------------------------------------------------------------

/// One raw mutation of `data`; `others` are the other seeds of the same family, for splices.
pub fn mutate_bytes_once(rng: &mut Rng, data: &mut Vec<u8>, others: &[&[u8]]) {
    if data.is_empty() {
        let n = rng.random_range(1..16);
        data.extend((0..n).map(|_| rng.random::<u8>()));
        return;
    }
    let len = data.len();
    match rng.random_range(0..16) {
        // Bit flip.
        0 | 1 => {
            let at = rng.random_range(0..len);
            data[at] ^= 1 << rng.random_range(0..8);
        }
        // Byte overwrite.
        2 => {
            let at = rng.random_range(0..len);
            data[at] = *pick(
                rng,
                &[0u8, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20, b'0', b'9'],
            );
        }
        3 => {
            let at = rng.random_range(0..len);
            data[at] = rng.random();
        }
        // A 1/2/4/8-byte interesting integer, little or big endian.
        4 | 5 => {
            let width = *pick(rng, &[1usize, 2, 4, 4, 8, 8]);
            if len >= width {
                let at = rng.random_range(0..=len - width);
                let v = interesting_u64(rng);
                let bytes = if rng.random_bool(0.75) {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let slice = if rng.random_bool(0.75) || width == 8 {
                    &bytes[..width]
                } else {
                    &bytes[8 - width..]
                };
                data[at..at + width].copy_from_slice(slice);
            }
        }
        // Small add/subtract on a little-endian u32 or a byte.
        6 => {
            let at = rng.random_range(0..len);
            let delta = rng.random_range(1..=35u8);
            data[at] = if rng.random() {
                data[at].wrapping_add(delta)
            } else {
                data[at].wrapping_sub(delta)
            };
        }
        // Insert random bytes.
        7 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
        // Delete a range.
        8 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(64));
            data.drain(at..at + n);
        }
        // Duplicate a range elsewhere.
        9 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(128));
            let chunk = data[at..at + n].to_vec();
            let to = rng.random_range(0..=len);
            data.splice(to..to, chunk);
        }
        // Truncate.
        10 => {
            let at = rng.random_range(0..len);
            data.truncate(at);
        }
        // Splice with another seed: our prefix, its suffix.
        11 => {
            if let Some(other) = others.choose(rng) {
                if !other.is_empty() {
                    let cut = rng.random_range(0..=len);
                    let from = rng.random_range(0..other.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
        // Insert a chunk of another seed.
        12 => {
            if let Some(other) = others.choose(rng) {
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let n = rng.random_range(1..=(other.len() - from).min(256));
                    let at = rng.random_range(0..=len);
                    data.splice(at..at, other[from..from + n].iter().copied());
                }
            }
        }
        // A huge varint, alone or as a length-delimited field's length (protobuf).
        13 => {
            let at = rng.random_range(0..=len);
            let mut bytes = Vec::new();
            if rng.random() {
                let field = *pick(rng, &[1u64, 2, 3, 4, 5, 6, 7, 8, 9, 100, 70000]);
                put_varint(&mut bytes, (field << 3) | 2);
            }
            put_varint(&mut bytes, interesting_u64(rng));
            data.splice(at..at, bytes);
        }
        // Overwrite bytes at a random place with the same-length window of another seed.
        14 => {
            if let Some(other) = others.choose(rng) {
                if !other.is_empty() {
                    let at = rng.random_range(0..len);
                    let from = rng.random_range(0..other.len());
                    let n = (len - at).min(other.len() - from).min(32);
                    data[at..at + n].copy_from_slice(&other[from..from + n]);
                }
            }
        }
        // Fill a range with one byte value.
        _ => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(32));
            let value = *pick(rng, &[0u8, 0xff, 0x80, 0x7f]);
            data[at..at + n].fill(value);
        }
    }
}

/// A stack of raw mutations.
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, others: &[&[u8]]) {
    for _ in 0..stack_depth(rng) {
        mutate_bytes_once(rng, data, others);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Protobuf wire structure
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(Vec<u8>),
    Message(Vec<Field>),
}

#[derive(Clone, Debug)]
struct Field {
    number: u64,
    value: Value,
}

fn parse_message(bytes: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let tag = get_varint(bytes, &mut at)?;
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) {
            return None;
        }
        let value = match tag & 7 {
            0 => Value::Varint(get_varint(bytes, &mut at)?),
            1 => {
                let v = bytes.get(at..at + 8)?;
                at += 8;
                Value::Fixed64(u64::from_le_bytes(v.try_into().ok()?))
            }
            2 => {
                let n = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(n)?;
                let payload = bytes.get(at..end)?;
                at = end;
                match (depth < 12 && !payload.is_empty())
                    .then(|| parse_message(payload, depth + 1))
                    .flatten()
                {
                    // Text that happens to parse as a message stays bytes when it is printable.
                    Some(inner) if !payload.iter().all(|b| b.is_ascii_graphic() || *b == b' ') => {
                        Value::Message(inner)
                    }
                    _ => Value::Bytes(payload.to_vec()),
                }
            }
            5 => {
                let v = bytes.get(at..at + 4)?;
                at += 4;
                Value::Fixed32(u32::from_le_bytes(v.try_into().ok()?))
            }
            _ => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

fn encode_message(fields: &[Field], out: &mut Vec<u8>) {
    for field in fields {
        let wire = match field.value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) | Value::Message(_) => 2,
            Value::Fixed32(_) => 5,
        };
        put_varint(out, (field.number << 3) | wire);
        match &field.value {
            Value::Varint(v) => put_varint(out, *v),
            Value::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bytes(b) => {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Message(inner) => {
                let mut body = Vec::new();
                encode_message(inner, &mut body);
                put_varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            }
        }
    }
}

/// Paths (indices from the top message down) to every field of the tree.
fn field_paths(fields: &[Field], prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    for (i, field) in fields.iter().enumerate() {
        prefix.push(i);
        out.push(prefix.clone());
        if let Value::Message(inner) = &field.value {
            field_paths(inner, prefix, out);
        }
        prefix.pop();
    }
}

/// The message holding the field at `path` and the field's index in it.
fn parent_of<'a>(fields: &'a mut Vec<Field>, path: &[usize]) -> (&'a mut Vec<Field>, usize) {
    let (last, init) = path.split_last().expect("a path is never empty");
    let mut current = fields;
    for &i in init {
        current = match &mut current[i].value {
            Value::Message(inner) => inner,
            _ => unreachable!("paths only go through messages"),
        };
    }
    (current, *last)
}

fn mutate_packed(rng: &mut Rng, bytes: &mut Vec<u8>) {
    // Packed varints (BlobShape.dim) when the payload reads as such, else packed floats, else raw.
    let mut at = 0;
    let mut varints = Vec::new();
    while at < bytes.len() {
        match get_varint(bytes, &mut at) {
            Some(v) => varints.push(v),
            None => {
                varints.clear();
                break;
            }
        }
    }
    if !varints.is_empty() && rng.random_bool(0.5) {
        match rng.random_range(0..4) {
            0 => varints.push(interesting_u64(rng)),
            1 => {
                varints.pop();
            }
            _ => {
                let i = rng.random_range(0..varints.len());
                varints[i] = interesting_u64(rng);
            }
        }
        bytes.clear();
        for v in varints {
            put_varint(bytes, v);
        }
        return;
    }
    if bytes.len() >= 4 && bytes.len().is_multiple_of(4) && rng.random_bool(0.6) {
        let n = bytes.len() / 4;
        match rng.random_range(0..4) {
            0 => bytes.truncate(4 * rng.random_range(0..n)),
            1 => {
                let v = *pick(rng, INTERESTING_F32);
                for _ in 0..rng.random_range(1..=4) {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            _ => {
                let i = rng.random_range(0..n);
                let v = *pick(rng, INTERESTING_F32);
                bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        return;
    }
    mutate_bytes_once(rng, bytes, &[]);
}

/// One structure-aware mutation of a protobuf message; None when `data` does not parse as one.
pub fn mutate_proto_once(rng: &mut Rng, data: &[u8], strings: &[String]) -> Option<Vec<u8>> {
    let mut fields = parse_message(data, 0)?;
    let mut paths = Vec::new();
    field_paths(&fields, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        return None;
    }
    let path = pick(rng, &paths).clone();
    let numbers: Vec<u64> = {
        let (parent, _) = parent_of(&mut fields, &path);
        parent.iter().map(|f| f.number).collect()
    };
    let (parent, index) = parent_of(&mut fields, &path);
    match rng.random_range(0..10) {
        // Change the value in place.
        0..=4 => match &mut parent[index].value {
            Value::Varint(v) => *v = interesting_u64(rng),
            Value::Fixed32(v) => *v = pick(rng, INTERESTING_F32).to_bits(),
            Value::Fixed64(v) => {
                *v = *pick(
                    rng,
                    &[
                        f64::NAN.to_bits(),
                        f64::INFINITY.to_bits(),
                        f64::NEG_INFINITY.to_bits(),
                        f64::MAX.to_bits(),
                        1e300f64.to_bits(),
                        (-1.0f64).to_bits(),
                        0,
                        u64::MAX,
                    ],
                )
            }
            Value::Bytes(b) => {
                if !strings.is_empty() && rng.random_bool(0.3) {
                    *b = pick(rng, strings).as_bytes().to_vec();
                } else {
                    mutate_packed(rng, b);
                }
            }
            Value::Message(inner) => {
                if rng.random() {
                    inner.clear();
                } else if !inner.is_empty() {
                    let i = rng.random_range(0..inner.len());
                    let copy = inner[i].clone();
                    for _ in 0..rng.random_range(1..=3) {
                        inner.push(copy.clone());
                    }
                }
            }
        },
        // Repeat the field (a non-repeated field given twice, more history blobs, more layers).
        5 => {
            let copy = parent[index].clone();
            let times = *pick(rng, &[1usize, 1, 2, 7]);
            for _ in 0..times {
                parent.insert(index, copy.clone());
            }
        }
        // Delete it.
        6 => {
            parent.remove(index);
        }
        // Renumber it as a sibling's number (a value of the wrong type for that field).
        7 => {
            parent[index].number = *pick(rng, &numbers);
        }
        // Change its wire type.
        8 => {
            let value = std::mem::replace(&mut parent[index].value, Value::Varint(0));
            parent[index].value = match value {
                Value::Varint(v) => {
                    let mut b = Vec::new();
                    put_varint(&mut b, v);
                    Value::Bytes(b)
                }
                Value::Bytes(_) | Value::Message(_) if rng.random() => {
                    Value::Varint(interesting_u64(rng))
                }
                Value::Bytes(_) | Value::Message(_) => Value::Fixed32(rng.random()),
                Value::Fixed32(v) => Value::Varint(u64::from(v)),
                Value::Fixed64(v) => Value::Fixed32(v as u32),
            };
        }
        // A new field with a sibling's number or a fresh one, holding an interesting varint or a long bytes.
        _ => {
            let number = if rng.random_bool(0.7) {
                *pick(rng, &numbers)
            } else {
                rng.random_range(1..=40)
            };
            let value = if rng.random() {
                Value::Varint(interesting_u64(rng))
            } else {
                let mut b = Vec::new();
                for _ in 0..rng.random_range(1..=6) {
                    put_varint(&mut b, interesting_u64(rng));
                }
                Value::Bytes(b)
            };
            let at = rng.random_range(0..=parent.len());
            parent.insert(at, Field { number, value });
        }
    }
    let mut out = Vec::with_capacity(data.len() + 16);
    encode_message(&fields, &mut out);
    Some(out)
}

/// A stack of mutations for a protobuf file: mostly structure-aware, sometimes raw bytes.
pub fn mutate_proto(rng: &mut Rng, data: &mut Vec<u8>, others: &[&[u8]], strings: &[String]) {
    for _ in 0..stack_depth(rng) {
        if rng.random_bool(0.7) {
            if let Some(out) = mutate_proto_once(rng, data, strings) {
                *data = out;
                continue;
            }
        }
        mutate_bytes_once(rng, data, others);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Prototxt tokens
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ident,
    Number,
    Str,
    Punct,
    Space,
    Comment,
}

#[derive(Clone, Copy, Debug)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Splits prototxt into tokens (loosely: anything the parser would see as one piece stays one piece).
pub fn tokenize(text: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let start = i;
        let c = text[i];
        let kind = if c.is_ascii_whitespace() {
            while i < text.len() && text[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c == b'#' {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
            Kind::Comment
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < text.len() && text[i] != c && text[i] != b'\n' {
                if text[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(text.len());
            Kind::Str
        } else if c.is_ascii_digit()
            || ((c == b'-' || c == b'+' || c == b'.')
                && text
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == b'.'))
        {
            i += 1;
            while i < text.len()
                && (text[i].is_ascii_alphanumeric()
                    || text[i] == b'.'
                    || ((text[i] == b'-' || text[i] == b'+') && matches!(text[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            Kind::Number
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'-' {
            i += 1;
            while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
                i += 1;
            }
            // `-inf`, `-nan` are numbers.
            let word = &text[start..i];
            if matches!(
                word.to_ascii_lowercase().as_slice(),
                b"inf" | b"-inf" | b"nan" | b"-nan" | b"infinity" | b"-infinity"
            ) {
                Kind::Number
            } else {
                Kind::Ident
            }
        } else {
            i += 1;
            Kind::Punct
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens
}

/// A `name: value` field of prototxt: the block it sits in, and its tokens.
#[derive(Clone, Debug)]
struct FieldAt {
    context: String,
    /// Where the enclosing block starts (`usize::MAX` at the top level).
    owner: usize,
    name: Token,
    value: Token,
}

/// A `name { ... }` (or `name: { ... }`, `name < ... >`) block: the block it sits in, its name, and its span
/// from the name to the closing brace; `inside` is just after the opening brace.
#[derive(Clone, Debug)]
struct BlockAt {
    context: String,
    name: String,
    start: usize,
    inside: usize,
    end: usize,
}

/// Fields and blocks of a prototxt text, each with the name of the block holding it ("" at the top).
fn scan(text: &[u8], tokens: &[Token]) -> (Vec<FieldAt>, Vec<BlockAt>) {
    let sig: Vec<Token> = tokens
        .iter()
        .copied()
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
        .collect();
    let punct = |k: usize, c: u8| {
        sig.get(k)
            .is_some_and(|t| t.kind == Kind::Punct && text[t.start] == c)
    };
    let word = |t: &Token| String::from_utf8_lossy(&text[t.start..t.end]).into_owned();
    let mut fields = Vec::new();
    let mut blocks = Vec::new();
    // (name, start, inside, closing byte, context)
    let mut stack: Vec<(String, usize, usize, u8)> = Vec::new();
    let mut k = 0;
    while k < sig.len() {
        let t = sig[k];
        let context = stack.last().map_or(String::new(), |b| b.0.clone());
        if t.kind == Kind::Ident {
            let colon = punct(k + 1, b':');
            let open_at = if colon { k + 2 } else { k + 1 };
            if punct(open_at, b'{') || punct(open_at, b'<') {
                let close = if punct(open_at, b'{') { b'}' } else { b'>' };
                stack.push((word(&t), t.start, sig[open_at].end, close));
                k = open_at + 1;
                continue;
            }
            if colon {
                if let Some(v) = sig.get(k + 2) {
                    if matches!(v.kind, Kind::Number | Kind::Str | Kind::Ident) {
                        fields.push(FieldAt {
                            context,
                            owner: stack.last().map_or(usize::MAX, |b| b.1),
                            name: t,
                            value: *v,
                        });
                        k += 3;
                        continue;
                    }
                }
            }
        } else if t.kind == Kind::Punct && (text[t.start] == b'}' || text[t.start] == b'>') {
            if let Some(pos) = stack.iter().rposition(|b| b.3 == text[t.start]) {
                let (name, start, inside, _) = stack[pos].clone();
                stack.truncate(pos);
                blocks.push(BlockAt {
                    context: stack.last().map_or(String::new(), |b| b.0.clone()),
                    name,
                    start,
                    inside,
                    end: t.end,
                });
            }
        }
        k += 1;
    }
    (fields, blocks)
}

/// Pieces of every text seed, by where they sit, spliced into other seeds where they fit.
#[derive(Default, Clone)]
pub struct TextDictionary {
    pub idents: Vec<String>,
    pub strings: Vec<String>,
    /// Values seen for each field name.
    pub values: std::collections::BTreeMap<String, Vec<String>>,
    /// `name: value` fields seen inside each kind of block ("" = the top level).
    pub fields: std::collections::BTreeMap<String, Vec<String>>,
    /// Whole blocks seen inside each kind of block.
    pub blocks: std::collections::BTreeMap<String, Vec<String>>,
}

impl TextDictionary {
    pub fn add_text(&mut self, text: &[u8]) {
        let tokens = tokenize(text);
        let piece = |s: usize, e: usize| String::from_utf8_lossy(&text[s..e]).into_owned();
        for t in &tokens {
            match t.kind {
                Kind::Ident => self.idents.push(piece(t.start, t.end)),
                Kind::Str => self.strings.push(piece(t.start, t.end)),
                _ => {}
            }
        }
        let (fields, blocks) = scan(text, &tokens);
        for f in fields {
            let name = piece(f.name.start, f.name.end);
            let value = piece(f.value.start, f.value.end);
            self.values
                .entry(name.clone())
                .or_default()
                .push(value.clone());
            self.fields
                .entry(f.context)
                .or_default()
                .push(format!("{name}: {value}"));
        }
        for b in blocks {
            if b.end - b.start < 3000 {
                self.blocks
                    .entry(b.context)
                    .or_default()
                    .push(piece(b.start, b.end));
            }
        }
    }

    /// Adds a value a field may take (a layer type, a file name).
    pub fn add_value(&mut self, field: &str, value: &str) {
        self.values
            .entry(field.to_owned())
            .or_default()
            .push(value.to_owned());
    }

    /// Adds what `other` holds, except its top-level fields and blocks.
    pub fn merge_nested(&mut self, other: &TextDictionary) {
        self.idents.extend(other.idents.iter().cloned());
        self.strings.extend(other.strings.iter().cloned());
        for (name, values) in &other.values {
            self.values
                .entry(name.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
        for (mine, theirs) in [
            (&mut self.fields, &other.fields),
            (&mut self.blocks, &other.blocks),
        ] {
            for (context, list) in theirs {
                if !context.is_empty() {
                    mine.entry(context.clone())
                        .or_default()
                        .extend(list.iter().cloned());
                }
            }
        }
    }

    pub fn finish(&mut self) {
        for list in [&mut self.idents, &mut self.strings] {
            list.sort();
            list.dedup();
        }
        for map in [&mut self.values, &mut self.fields, &mut self.blocks] {
            for list in map.values_mut() {
                list.sort();
                list.dedup();
            }
        }
    }
}

fn is_integer_token(token: &[u8]) -> bool {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    !digits.is_empty()
        && (digits.iter().all(u8::is_ascii_digit)
            || (digits.starts_with(b"0x")
                && digits.len() > 2
                && digits[2..].iter().all(u8::is_ascii_hexdigit)))
}

fn integer_like(number: &str) -> bool {
    is_integer_token(number.as_bytes())
}

/// One structure-aware mutation of prototxt text.
pub fn mutate_text_once(rng: &mut Rng, text: &mut Vec<u8>, dict: &TextDictionary) {
    let tokens = tokenize(text);
    let (fields, blocks) = scan(text, &tokens);
    let name_of =
        |text: &[u8], t: &Token| String::from_utf8_lossy(&text[t.start..t.end]).into_owned();
    let splice = |text: &mut Vec<u8>, s: usize, e: usize, with: &[u8]| {
        text.splice(s..e, with.iter().copied());
    };
    match rng.random_range(0..24) {
        // A number becomes an interesting one (an integer for an integer field, mostly).
        0..=5 => {
            let numbers: Vec<&FieldAt> = fields
                .iter()
                .filter(|f| f.value.kind == Kind::Number)
                .collect();
            if let Some(f) = numbers.choose(rng) {
                let old = &text[f.value.start..f.value.end];
                let with = if is_integer_token(old) && rng.random_bool(0.85) {
                    let ints: Vec<&str> = INTERESTING_NUMBERS
                        .iter()
                        .copied()
                        .filter(|n| integer_like(n))
                        .collect();
                    pick(rng, &ints).to_string()
                } else if rng.random_bool(0.8) {
                    pick(rng, INTERESTING_NUMBERS).to_string()
                } else {
                    rng.random_range(0..40).to_string()
                };
                splice(text, f.value.start, f.value.end, with.as_bytes());
            }
        }
        // A field takes a value the same field has somewhere in the corpus (a layer type, a blob name, an
        // enum value, a file name).
        6..=9 => {
            if let Some(f) = fields.choose(rng) {
                if let Some(values) = dict.values.get(&name_of(text, &f.name)) {
                    let with = pick(rng, values).clone();
                    splice(text, f.value.start, f.value.end, with.as_bytes());
                }
            }
        }
        // A field seen in this kind of block elsewhere is added to one of these blocks (or the top level).
        10..=12 => {
            let mut places: Vec<(String, usize, usize)> = blocks
                .iter()
                .map(|b| (b.name.clone(), b.inside, b.start))
                .collect();
            places.push((String::new(), 0, usize::MAX));
            let (context, at, owner) = pick(rng, &places).clone();
            if let Some(list) = dict.fields.get(&context) {
                // Mostly a field the block does not set yet (a second value of a non-repeated field is only a
                // parse error).
                let present: Vec<String> = fields
                    .iter()
                    .filter(|f| f.owner == owner)
                    .map(|f| name_of(text, &f.name))
                    .collect();
                let fresh: Vec<&String> = list
                    .iter()
                    .filter(|f| {
                        !present
                            .iter()
                            .any(|p| f.split(':').next() == Some(p.as_str()))
                    })
                    .collect();
                let field = match fresh.choose(rng) {
                    Some(f) if rng.random_bool(0.85) => (*f).clone(),
                    _ => pick(rng, list).clone(),
                };
                splice(text, at, at, format!(" {field} ").as_bytes());
            }
        }
        // A block seen in this kind of block elsewhere is added (a layer, a param, a filler, a shape).
        13 | 14 => {
            let mut places: Vec<(String, usize)> =
                blocks.iter().map(|b| (b.name.clone(), b.inside)).collect();
            places.push((String::new(), text.len()));
            let (context, at) = pick(rng, &places).clone();
            if let Some(list) = dict.blocks.get(&context) {
                let block = pick(rng, list).clone();
                splice(text, at, at, format!("\n{block}\n").as_bytes());
            }
        }
        // Delete or repeat a field.
        15 | 16 => {
            if let Some(f) = fields.choose(rng) {
                if rng.random() {
                    splice(text, f.name.start, f.value.end, b"");
                } else {
                    let copy = text[f.name.start..f.value.end].to_vec();
                    splice(
                        text,
                        f.value.end,
                        f.value.end,
                        &[b" ".as_slice(), &copy].concat(),
                    );
                }
            }
        }
        // Delete or repeat a block.
        17 | 18 => {
            if let Some(b) = blocks.choose(rng) {
                if rng.random() {
                    splice(text, b.start, b.end, b"");
                } else {
                    let copy = text[b.start..b.end].to_vec();
                    splice(text, b.end, b.end, &[b"\n".as_slice(), &copy].concat());
                }
            }
        }
        // A field's value is swapped with another field's.
        19 => {
            if fields.len() >= 2 {
                let a = pick(rng, &fields).value;
                let b = pick(rng, &fields).value;
                let (first, second) = if a.start < b.start { (a, b) } else { (b, a) };
                if first.end <= second.start {
                    let sa = text[first.start..first.end].to_vec();
                    let sb = text[second.start..second.end].to_vec();
                    text.splice(second.start..second.end, sa);
                    text.splice(first.start..first.end, sb);
                }
            }
        }
        // Any identifier or string becomes another one of the corpus (misspelled fields, wrong enums).
        20 => {
            let kind = if rng.random() { Kind::Ident } else { Kind::Str };
            let list = if kind == Kind::Ident {
                &dict.idents
            } else {
                &dict.strings
            };
            let candidates: Vec<&Token> = tokens.iter().filter(|t| t.kind == kind).collect();
            if let (Some(t), false) = (candidates.choose(rng), list.is_empty()) {
                let with = pick(rng, list).clone();
                splice(text, t.start, t.end, with.as_bytes());
            }
        }
        // Delete or repeat any token.
        21 => {
            let significant: Vec<&Token> = tokens
                .iter()
                .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
                .collect();
            if let Some(t) = significant.choose(rng) {
                if rng.random() {
                    splice(text, t.start, t.end, b"");
                } else {
                    let copy = text[t.start..t.end].to_vec();
                    splice(text, t.end, t.end, &[b" ".as_slice(), &copy].concat());
                }
            }
        }
        // Raw bytes now and then (the parser's own robustness: odd bytes, cut strings, bad UTF-8).
        _ => mutate_bytes_once(rng, text, &[]),
    }
}

/// One token-level mutation for small texts without `name: value` fields (a .npy header): numbers, strings and
/// identifiers replaced, tokens deleted or repeated.
pub fn mutate_tokens_once(
    rng: &mut Rng,
    text: &mut Vec<u8>,
    idents: &[String],
    strings: &[String],
) {
    let tokens = tokenize(text);
    let of =
        |kind: Kind| -> Vec<Token> { tokens.iter().copied().filter(|t| t.kind == kind).collect() };
    match rng.random_range(0..6) {
        0 | 1 => {
            if let Some(t) = of(Kind::Number).choose(rng) {
                let with = if rng.random_bool(0.8) {
                    pick(rng, INTERESTING_NUMBERS).to_string()
                } else {
                    rng.random_range(0..10).to_string()
                };
                text.splice(t.start..t.end, with.bytes());
            }
        }
        2 => {
            if let (Some(t), false) = (of(Kind::Str).choose(rng), strings.is_empty()) {
                text.splice(t.start..t.end, pick(rng, strings).clone().into_bytes());
            }
        }
        3 => {
            if let (Some(t), false) = (of(Kind::Ident).choose(rng), idents.is_empty()) {
                text.splice(t.start..t.end, pick(rng, idents).clone().into_bytes());
            }
        }
        4 => {
            let all: Vec<Token> = tokens
                .iter()
                .copied()
                .filter(|t| t.kind != Kind::Space)
                .collect();
            if let Some(t) = all.choose(rng) {
                if rng.random() {
                    text.drain(t.start..t.end);
                } else {
                    let copy = text[t.start..t.end].to_vec();
                    text.splice(t.end..t.end, copy);
                }
            }
        }
        _ => mutate_bytes_once(rng, text, &[]),
    }
}

/// A stack of prototxt mutations.
pub fn mutate_text(rng: &mut Rng, text: &mut Vec<u8>, dict: &TextDictionary) {
    for _ in 0..stack_depth(rng) {
        mutate_text_once(rng, text, dict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn proto_tree_round_trips() {
        let bytes = [
            0x0a, 0x02, 0x08, 0x04, 0x2a, 0x08, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40,
        ];
        let fields = parse_message(&bytes, 0).unwrap();
        let mut out = Vec::new();
        encode_message(&fields, &mut out);
        assert_eq!(out, bytes);
        let mut rng = Rng::seed_from_u64(1);
        assert!(mutate_proto_once(&mut rng, &bytes, &[]).is_some());
    }

    #[test]
    fn tokens_cover_the_text() {
        let text = b"layer { name: \"a\" top: 'b' dim: -3 x: 1e-5 y: -inf } # c\n";
        let tokens = tokenize(text);
        assert_eq!(tokens.first().unwrap().start, 0);
        assert_eq!(tokens.last().unwrap().end, text.len());
        let numbers: Vec<&[u8]> = tokens
            .iter()
            .filter(|t| t.kind == Kind::Number)
            .map(|t| &text[t.start..t.end])
            .collect();
        assert_eq!(numbers, [&b"-3"[..], b"1e-5", b"-inf"]);
        let (fields, blocks) = scan(text, &tokens);
        assert_eq!(fields.len(), 5);
        assert_eq!((blocks[0].start, blocks[0].end), (0, text.len() - 5));
    }
}
