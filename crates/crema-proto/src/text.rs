//! Protobuf text format (prototxt): parsing with positions and context in errors, and printing as Caffe does.
//!
//! Parsing goes through reflection ([`prost_reflect`]), then into the generated type, so every field of the
//! schema is accepted by name, enums by name, `field: { }` and `field { }` alike, and `#` comments.

use miette::Diagnostic;
use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

use crate::descriptor::CaffeMessage;
use crate::error::{ProtoError, Result};

/// Parses `text` as the message `M`. `origin` names the text in errors (a file path, or `<string>`).
///
/// ```
/// use crema_proto::{text, SolverParameter};
/// let solver: SolverParameter = text::parse("base_lr: 0.01 # comment\nlr_policy: \"fixed\"", "solver.prototxt")?;
/// assert_eq!(solver.base_lr(), 0.01);
/// let err = text::parse::<SolverParameter>("base_lr: 0.01\nbase_rate: 2", "solver.prototxt").unwrap_err();
/// assert!(err.to_string().starts_with("solver.prototxt:2:1: field 'base_rate' not found"));
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn parse<M: CaffeMessage>(text: &str, origin: &str) -> Result<M> {
    let dynamic = DynamicMessage::parse_text_format(M::descriptor(), text).map_err(|error| {
        let offset = error
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| label.offset())
            .unwrap_or(text.len());
        text_error(text, origin, offset, error.to_string())
    })?;
    check_complete(&dynamic, "").map_err(|(field, reason)| ProtoError::Invalid {
        origin: origin.to_owned(),
        field,
        reason,
    })?;
    Ok(M::from_dynamic(&dynamic))
}

/// What protobuf's own text parser checks after parsing: every `required` field is set, and every enum number
/// names a value of its enum. Returns the path of the first offending field and what is wrong.
fn check_complete(
    message: &DynamicMessage,
    path: &str,
) -> std::result::Result<(), (String, String)> {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    for field in message.descriptor().fields() {
        if field.cardinality() == prost_reflect::Cardinality::Required && !message.has_field(&field)
        {
            return Err((join(field.name()), "is required but not set".into()));
        }
    }
    for (field, value) in message.fields() {
        let values: Vec<(String, &Value)> = match value {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{}[{i}]", join(field.name())), v))
                .collect(),
            single => vec![(join(field.name()), single)],
        };
        for (at, value) in values {
            match (value, field.kind()) {
                (Value::Message(inner), _) => check_complete(inner, &at)?,
                (Value::EnumNumber(number), Kind::Enum(kind))
                    if kind.get_value(*number).is_none() =>
                {
                    let names: Vec<_> = kind.values().map(|v| v.name().to_owned()).collect();
                    return Err((
                        at,
                        format!(
                            "{number} is not a value of {} ({})",
                            kind.name(),
                            names.join(", ")
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Prints `message` in text format as Caffe's tools do: fields in number order, one value to a line (a repeated
/// field is written once per value), nested blocks as `name {` ... `}` indented by two spaces, enums by name.
///
/// ```
/// use crema_proto::{text, NetParameter};
/// let net: NetParameter = text::parse("name:'n' layer{name:'a' type:'ReLU' bottom:'x' top:'x'}", "<doc>")?;
/// let printed = text::print(&net);
/// assert_eq!(printed, "name: \"n\"\nlayer {\n  name: \"a\"\n  type: \"ReLU\"\n  bottom: \"x\"\n  top: \"x\"\n}\n");
/// assert_eq!(text::parse::<NetParameter>(&printed, "<printed>")?, net);
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn print<M: CaffeMessage>(message: &M) -> String {
    let mut out = String::new();
    print_message(&message.to_dynamic(), 0, &mut out);
    out
}

fn print_message(message: &DynamicMessage, depth: usize, out: &mut String) {
    let mut fields: Vec<_> = message.fields().collect();
    fields.sort_by_key(|(field, _)| field.number());
    for (field, value) in fields {
        match value {
            Value::List(values) => {
                for value in values {
                    print_field(field.name(), value, &field.kind(), depth, out);
                }
            }
            value => print_field(field.name(), value, &field.kind(), depth, out),
        }
    }
}

fn print_field(name: &str, value: &Value, kind: &Kind, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    if let Value::Message(inner) = value {
        out.push_str(&format!("{indent}{name} {{\n"));
        print_message(inner, depth + 1, out);
        out.push_str(&format!("{indent}}}\n"));
        return;
    }
    out.push_str(&format!("{indent}{name}: {}\n", format_scalar(value, kind)));
}

/// A scalar value as text format writes it (enums by name when `kind` is their enum).
fn format_scalar(value: &Value, kind: &Kind) -> String {
    match value {
        Value::Bool(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => format_float(f64::from(*v), v.to_string()),
        Value::F64(v) => format_float(*v, v.to_string()),
        Value::String(v) => quote_str(v),
        Value::Bytes(v) => quote_bytes(v),
        Value::EnumNumber(number) => match kind.as_enum().and_then(|e| e.get_value(*number)) {
            Some(value) => value.name().to_owned(),
            None => number.to_string(),
        },
        Value::List(_) | Value::Map(_) | Value::Message(_) => {
            unreachable!(
                "only scalars reach format_scalar: print_field prints messages, lists are split"
            )
        }
    }
}

/// A field's value on one line, for tables: scalars as text format writes them, lists joined by `, `, messages
/// as `{ field: value ... }`.
pub fn print_inline(value: &Value, kind: &Kind) -> String {
    match value {
        Value::List(values) => values
            .iter()
            .map(|v| print_inline(v, kind))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Message(message) => {
            let mut block = String::new();
            print_message(message, 0, &mut block);
            format!(
                "{{ {} }}",
                block.lines().map(str::trim).collect::<Vec<_>>().join(" ")
            )
        }
        Value::Map(_) => String::new(),
        scalar => format_scalar(scalar, kind),
    }
}

/// A float as the shortest text that reads back to the same value; exponent form for very large or small values.
fn format_float(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else if value != 0.0 && (value.abs() >= 1e15 || value.abs() < 1e-4) {
        format!("{:e}", shortest.parse::<f64>().unwrap_or(value))
    } else {
        shortest
    }
}

/// A quoted string: `\"` `\\` `\n` `\r` `\t` escaped, other control characters as octal, the rest as is.
fn quote_str(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_ascii_control() => quoted.push_str(&format!("\\{:03o}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Quoted bytes: printable ASCII as is (quotes and backslashes escaped), every other byte as octal.
fn quote_bytes(bytes: &[u8]) -> String {
    let mut quoted = String::from("\"");
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                quoted.push('\\');
                quoted.push(byte as char);
            }
            0x20..=0x7e => quoted.push(byte as char),
            _ => quoted.push_str(&format!("\\{byte:03o}")),
        }
    }
    quoted.push('"');
    quoted
}

/// Builds a [`ProtoError::TextParse`] for byte `offset` of `text`, with the line, a caret, and the enclosing
/// blocks (`layer "loss" > loss_param`) so that the user sees where in the net the problem is.
pub(crate) fn text_error(text: &str, origin: &str, offset: usize, message: String) -> ProtoError {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let enclosing = enclosing_blocks(before);
    let mut context = format!("  {line_text}\n  {}^", " ".repeat(column - 1));
    if !enclosing.is_empty() {
        context.push_str(&format!("\n  in {enclosing}"));
    }
    ProtoError::TextParse {
        origin: origin.to_owned(),
        line,
        column,
        message,
        context,
    }
}

/// The chain of blocks open at the end of `text`, each with its `name:` when it has one seen so far.
fn enclosing_blocks(text: &str) -> String {
    struct Block {
        field: String,
        name: Option<String>,
    }
    let mut stack: Vec<Block> = Vec::new();
    let mut last_ident = String::new();
    let mut expect_name = false;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut value = String::new();
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                        continue;
                    } else if d == c {
                        break;
                    }
                    value.push(d);
                }
                if expect_name {
                    if let Some(block) = stack.last_mut() {
                        block.name = Some(value);
                    }
                }
                expect_name = false;
            }
            '{' | '<' => {
                stack.push(Block {
                    field: std::mem::take(&mut last_ident),
                    name: None,
                });
                expect_name = false;
            }
            '}' | '>' => {
                stack.pop();
                expect_name = false;
            }
            ':' => expect_name = last_ident == "name",
            c if c.is_alphanumeric() || c == '_' => {
                let mut ident = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == '.' {
                        ident.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                last_ident = ident;
            }
            _ => {}
        }
    }
    stack
        .iter()
        .map(|block| match &block.name {
            Some(name) => format!("{} \"{name}\"", block.field),
            None => block.field.clone(),
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NetParameter, SolverParameter};

    #[test]
    fn error_names_line_column_and_enclosing_layer() {
        let text = "name: \"n\"\nlayer {\n  name: \"loss\"\n  type: \"InfogainLoss\"\n  loss_param {\n    normalisation: VALID\n  }\n}\n";
        let err = parse::<NetParameter>(text, "net.prototxt").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("net.prototxt:6:5: field 'normalisation' not found"),
            "{shown}"
        );
        assert!(shown.contains("in layer \"loss\" > loss_param"), "{shown}");
    }

    #[test]
    fn error_at_end_of_input_points_past_the_last_line() {
        let err = parse::<NetParameter>("layer {\n  name: \"a\"\n", "x.prototxt").unwrap_err();
        match err {
            ProtoError::TextParse { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_required_fields_and_unknown_enum_numbers_are_refused() {
        let err = parse::<NetParameter>("layer { name: 'c' clip_param { min: -1 } }", "n.prototxt")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "n.prototxt: layer[0].clip_param.max: is required but not set"
        );
        let err =
            parse::<NetParameter>("layer { pooling_param { pool: 7 } }", "n.prototxt").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "n.prototxt: layer[0].pooling_param.pool: 7 is not a value of PoolMethod"
            ),
            "{err}"
        );
        assert!(parse::<NetParameter>("layer { pooling_param { pool: 1 } }", "n").is_ok());
    }

    #[test]
    fn bad_enum_name_is_reported() {
        let err = parse::<SolverParameter>("solver_mode: TPU", "s.prototxt").unwrap_err();
        assert!(err.to_string().contains("TPU"), "{err}");
    }

    #[test]
    fn printed_values_read_back_exactly() {
        let text = "base_lr: 1e-05 momentum: 0.9 gamma: 3e+20 delta: 1 weight_decay: inf clip_gradients: -inf \
                    power: nan snapshot_prefix: \"a\\\"b\\\\c\\n\u{e9}\\001\" random_seed: -9000000000 type: 'Adam'";
        let solver: SolverParameter = parse(text, "s").unwrap();
        let printed = print(&solver);
        assert!(printed.contains("base_lr: 1e-5\n"), "{printed}");
        assert!(printed.contains("delta: 1\n"), "{printed}");
        assert!(printed.contains("momentum: 0.9\n"), "{printed}");
        assert!(
            printed.contains("snapshot_prefix: \"a\\\"b\\\\c\\n\u{e9}\\001\"\n"),
            "{printed}"
        );
        let back: SolverParameter = parse(&printed, "printed").unwrap();
        assert!(back.power().is_nan());
        let (mut a, mut b) = (solver.clone(), back.clone());
        a.power = None;
        b.power = None;
        assert_eq!(a, b);
    }

    #[test]
    fn enclosing_blocks_skip_strings_and_comments() {
        let chain = enclosing_blocks("layer { name: \"a{b\" # } comment {\n param {");
        assert_eq!(chain, "layer \"a{b\" > param");
    }
}
