//! A GraphQL response as JSON: the same text serde_json writes for it, in
//! fewer instructions and with fewer copies.
//!
//! Going through serde, every string of the response — each field name and
//! each value — is escaped byte by byte through a table, and every map entry
//! is a few trait calls deep: on a dashboard page that stood out in the
//! server's instruction profile (callgrind, docs/benchmarks.md). Here
//! a string that needs no escaping (almost all of them) is checked eight bytes
//! at a time and copied whole; one that does, and everything
//! rare (numbers, bytes, errors, extensions), is still written by serde_json,
//! so the text stays exactly serde_json's.

use async_graphql::{Response, Value};

use crate::error::AppError;

/// Why a response was not written.
#[derive(Debug)]
pub enum WriteError {
    /// It would be longer than the limit it was written under.
    TooLarge {
        limit: usize,
    },
    Json(serde_json::Error),
}

impl From<serde_json::Error> for WriteError {
    fn from(error: serde_json::Error) -> WriteError {
        WriteError::Json(error)
    }
}

impl WriteError {
    /// What the client is told instead of the response.
    pub fn into_app_error(self) -> AppError {
        match self {
            WriteError::TooLarge { limit } => AppError::BadUserInput(format!(
                "The response would be larger than {limit} bytes, the server's limit (--max-response-bytes); ask for less at once (smaller pages, fewer nested lists or aliases)"
            )),
            WriteError::Json(error) => {
                AppError::internal_from("cannot write a GraphQL response as JSON", error)
            }
        }
    }
}

/// The JSON of `response`, as `serde_json::to_vec(&response)` writes it;
/// without its `data` when `with_data` is false (a request error under
/// `application/graphql-response+json`). Stops with
/// [`WriteError::TooLarge`] as soon as it is longer than `limit` bytes, so
/// no response is buffered past it, whatever fields it has.
pub fn response_json(
    response: &Response,
    with_data: bool,
    limit: usize,
) -> Result<Vec<u8>, WriteError> {
    // Most responses fit; a page of fifty plans needs one or two doublings.
    let mut out = Vec::with_capacity(8 * 1024);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, name)?;
        out.push(b':');
        serde_json::Result::Ok(())
    };
    if with_data {
        member(&mut out, "data")?;
        write_value(&mut out, &response.data, limit)?;
    }
    if !response.extensions.is_empty() {
        member(&mut out, "extensions")?;
        serde_json::to_writer(&mut out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        member(&mut out, "errors")?;
        serde_json::to_writer(&mut out, &response.errors)?;
    }
    out.push(b'}');
    if out.len() > limit {
        return Err(WriteError::TooLarge { limit });
    }
    Ok(out)
}

/// The same as text, for a WebSocket frame (it is UTF-8 by construction;
/// checking costs a pass over bytes already in cache).
pub fn response_text(response: &Response, limit: usize) -> Result<String, WriteError> {
    String::from_utf8(response_json(response, true, limit)?)
        .map_err(|error| WriteError::Json(serde::ser::Error::custom(error)))
}

/// Writes `value`, checking the length against `limit` after every list
/// item and object member (a comparison each: the bound costs nothing
/// measurable, and a value over it stops within one member of the limit).
fn write_value(out: &mut Vec<u8>, value: &Value, limit: usize) -> Result<(), WriteError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(text) => write_str(out, text)?,
        Value::Enum(name) => write_str(out, name)?,
        Value::List(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item, limit)?;
                if out.len() > limit {
                    return Err(WriteError::TooLarge { limit });
                }
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (index, (name, field)) in fields.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(out, name)?;
                out.push(b':');
                write_value(out, field, limit)?;
                if out.len() > limit {
                    return Err(WriteError::TooLarge { limit });
                }
            }
            out.push(b'}');
        }
        Value::Number(_) | Value::Binary(_) => serde_json::to_writer(&mut *out, value)?,
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if needs_escaping(text) {
        return serde_json::to_writer(&mut *out, text);
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Whether serde_json would escape any byte of `text`: a quote, a
/// backslash or a control character. Eight bytes at a time, with the
/// bit tricks of "Bit Twiddling Hacks" (a zero byte, a byte below n).
fn needs_escaping(text: &str) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH_BITS: u64 = ONES * 0x80;
    let any_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH_BITS != 0;
    let mut words = text.as_bytes().chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS != 0;
        if control
            || any_zero(word ^ (ONES * u64::from(b'"')))
            || any_zero(word ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{Name, Pos, ServerError};

    use super::*;

    fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (Name::new(name), value))
                .collect::<IndexMap<_, _>>(),
        )
    }

    /// Every kind of value, and strings with every byte serde_json escapes.
    fn every_kind() -> Value {
        let mut awkward: String = (0u8..0x20).map(char::from).collect();
        awkward.push_str("\"quoted\" back\\slash é ✓ \u{7f} </script>");
        object(vec![
            ("null", Value::Null),
            ("yes", Value::Boolean(true)),
            ("no", Value::Boolean(false)),
            ("int", Value::from(-42)),
            ("big", Value::from(u64::MAX)),
            ("float", Value::from(0.1_f64)),
            ("plain", Value::from("a plain title")),
            ("empty", Value::from("")),
            ("awkward", Value::from(awkward)),
            ("status", Value::Enum(Name::new("IN_PROGRESS"))),
            ("bytes", Value::Binary(vec![0, 1, 255].into())),
            (
                "list",
                Value::List(vec![Value::Null, Value::from("x\ny"), object(vec![])]),
            ),
            ("nested", object(vec![("empty list", Value::List(vec![]))])),
        ])
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let mut response = Response::new(every_kind());
        assert_eq!(
            response_json(&response, true, usize::MAX).unwrap(),
            serde_json::to_vec(&response).unwrap()
        );
        response.errors.push(ServerError::new(
            "a \"bad\" thing",
            Some(Pos { line: 1, column: 2 }),
        ));
        response
            .extensions
            .insert("cost".into(), Value::from("over\tbudget"));
        assert_eq!(
            response_json(&response, true, usize::MAX).unwrap(),
            serde_json::to_vec(&response).unwrap()
        );
    }

    #[test]
    fn leaves_out_data_when_asked() {
        let mut response = Response::new(Value::Null);
        response.errors.push(ServerError::new("refused", None));
        let json: serde_json::Value =
            serde_json::from_slice(&response_json(&response, false, usize::MAX).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "errors": [{ "message": "refused" }] })
        );
        let empty = Response::new(Value::Null);
        assert_eq!(response_json(&empty, false, usize::MAX).unwrap(), b"{}");
    }

    #[test]
    fn stops_at_the_limit_and_not_before() {
        let response = Response::new(every_kind());
        let whole = response_json(&response, true, usize::MAX).unwrap();
        assert_eq!(response_json(&response, true, whole.len()).unwrap(), whole);
        for limit in [0, 10, whole.len() / 2, whole.len() - 1] {
            assert!(matches!(
                response_json(&response, true, limit),
                Err(WriteError::TooLarge { limit: refused }) if refused == limit
            ));
        }
    }

    #[test]
    fn finds_every_byte_that_needs_escaping() {
        // Every position within and after the eight-byte words, next to
        // bytes that must not be mistaken for it (high bytes of UTF-8 too).
        for byte in 0u8..0x80 {
            for at in 0..19 {
                let mut text: Vec<char> = "aé ~!#[]{}z\u{7f}ü12345678".chars().take(18).collect();
                text.insert(at, char::from(byte));
                let text: String = text.into_iter().collect();
                let escaped = serde_json::to_string(&text).unwrap() != format!("\"{text}\"");
                assert_eq!(needs_escaping(&text), escaped, "byte {byte:#x} at {at}");
            }
        }
    }
}
