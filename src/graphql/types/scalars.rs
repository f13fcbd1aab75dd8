//! Scalars of the schema.

use async_graphql::{InputValueError, Scalar, ScalarType, Value};
use chrono::Utc;

use crate::service::{parse_rfc3339, rfc3339};

#[derive(Clone, Copy, Debug)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A point in time: an RFC 3339 string in UTC with microseconds,
/// e.g. `2026-11-25T18:21:07.123456Z`.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_rfc3339(text)
                .map(DateTime)
                .ok_or_else(|| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(rfc3339(self.0))
    }
}

pub(super) fn at(value: chrono::DateTime<Utc>) -> DateTime {
    DateTime(value)
}
