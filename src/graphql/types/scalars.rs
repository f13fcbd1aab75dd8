//! Scalars of the schema.

use async_graphql::{InputValueError, Scalar, ScalarType, Value};
use chrono::{SecondsFormat, Utc};

#[derive(Clone, Copy, Debug)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A point in time: an RFC 3339 string in UTC with microseconds,
/// e.g. `2026-11-25T18:21:07.123456Z`.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|parsed| DateTime(parsed.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

pub(super) fn at(value: chrono::DateTime<Utc>) -> DateTime {
    DateTime(value)
}
