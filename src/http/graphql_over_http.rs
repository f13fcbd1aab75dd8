//! The parts of the GraphQL-over-HTTP spec that async-graphql leaves to the
//! server: which media type a response uses (by `Accept`), what status and
//! body a failed request gets under it, the standard GET parameters, and
//! which POST bodies count as GraphQL requests.
//!
//! `application/json` answers stay as they always were (200 with `data: null`
//! for a document that does not parse or validate), so existing clients see
//! no change; a client that asks for `application/graphql-response+json`
//! gets 400 and no `data` for such request errors, as the spec says.

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::AppError;
use crate::graphql::json::{WriteError, response_json};

/// The media type of a GraphQL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`: the default, and what `*/*` or no `Accept` gets.
    Json,
    /// `application/graphql-response+json`: status codes tell request errors
    /// (no `data`, 4xx) apart from results (2xx).
    GraphqlResponseJson,
}

impl MediaType {
    /// The type the client prefers by `Accept` quality. The most specific
    /// range decides a type's quality (RFC 9110 §12.5.1). On a tie
    /// `application/graphql-response+json` wins only where the client named it
    /// (`*/*` means "anything", and the spec gives that `application/json`).
    /// An `Accept` matching neither gets `application/json`, which the spec
    /// allows instead of 406 and keeps older clients working.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let ranges: Vec<mime::Mime> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|range| range.trim().parse().ok())
            .collect();
        if ranges.is_empty() {
            return Self::Json;
        }
        let json = preference(&ranges, "application/json");
        let graphql = preference(&ranges, "application/graphql-response+json");
        match (json, graphql) {
            (_, None) => Self::Json,
            (None, Some(_)) => Self::GraphqlResponseJson,
            (Some(json), Some(graphql)) => {
                if graphql.quality > json.quality
                    || (graphql.quality == json.quality && graphql.named)
                {
                    Self::GraphqlResponseJson
                } else {
                    Self::Json
                }
            }
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Self::Json => HeaderValue::from_static("application/json"),
            Self::GraphqlResponseJson => {
                HeaderValue::from_static("application/graphql-response+json; charset=utf-8")
            }
        }
    }

    /// An executed (or refused) GraphQL request. Under
    /// `application/graphql-response+json` a request error — the document did
    /// not parse or validate, or its variables did not coerce, so nothing ran
    /// — is a 400 without `data`.
    /// `result` as this media type, in at most `max_bytes` of JSON: a
    /// longer one is refused whole, like a request over any other limit.
    pub fn result(self, result: async_graphql::Response, max_bytes: usize) -> Response {
        let status = if self == Self::GraphqlResponseJson && is_request_error(&result) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        match response_json(&result, status == StatusCode::OK, max_bytes) {
            Ok(body) => self.bytes(status, body),
            Err(error @ WriteError::TooLarge { .. }) => {
                let status = match self {
                    Self::Json => StatusCode::OK,
                    Self::GraphqlResponseJson => StatusCode::BAD_REQUEST,
                };
                self.error(status, &error.into_app_error())
            }
            Err(error) => {
                let error = error.into_app_error();
                error.log_if_internal("response");
                self.error(StatusCode::INTERNAL_SERVER_ERROR, &error)
            }
        }
    }

    /// The results of a batch, in its order, as one JSON array (200 even
    /// for request errors: each result stands on its own). A result that
    /// would take the array past `max_bytes` is replaced by its refusal.
    pub fn batch(self, results: &[async_graphql::Response], max_bytes: usize) -> Response {
        let mut body = vec![b'['];
        for (index, result) in results.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            let with_data = !(self == Self::GraphqlResponseJson && is_request_error(result));
            let left = max_bytes.saturating_sub(body.len());
            let json = match response_json(result, with_data, left) {
                Ok(json) => json,
                Err(error) => {
                    let error = error.into_app_error();
                    error.log_if_internal("batch response");
                    self.error_json(&error).to_string().into_bytes()
                }
            };
            body.extend_from_slice(&json);
        }
        body.push(b']');
        self.bytes(StatusCode::OK, body)
    }

    /// A request that never reached GraphQL (unreadable body, bad key, …),
    /// still shaped like a GraphQL response so clients parse every failure
    /// the same way.
    pub fn error(self, status: StatusCode, error: &AppError) -> Response {
        self.body(status, &self.error_json(error))
    }

    fn error_json(self, error: &AppError) -> serde_json::Value {
        let errors =
            json!([{ "message": error.message(), "extensions": { "code": error.code() } }]);
        match self {
            Self::Json => json!({ "data": null, "errors": errors }),
            Self::GraphqlResponseJson => json!({ "errors": errors }),
        }
    }

    fn body(self, status: StatusCode, body: &serde_json::Value) -> Response {
        self.bytes(status, body.to_string().into_bytes())
    }

    fn bytes(self, status: StatusCode, body: Vec<u8>) -> Response {
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, self.content_type());
        response
    }
}

/// How much a client wants one media type.
#[derive(Debug, Clone, Copy)]
struct Preference {
    /// `q` in thousandths.
    quality: u16,
    /// The type itself was listed, not only a wildcard covering it.
    named: bool,
}

/// The quality of an `application/…` type under the most specific range that
/// matches it; `None` when no range matches or that range has q=0.
fn preference(ranges: &[mime::Mime], media_type: &str) -> Option<Preference> {
    let (specificity, quality) = ranges
        .iter()
        .filter_map(|range| {
            let specificity = if range.essence_str().eq_ignore_ascii_case(media_type) {
                2
            } else if range.type_() == mime::APPLICATION && range.subtype() == mime::STAR {
                1
            } else if range.type_() == mime::STAR && range.subtype() == mime::STAR {
                0
            } else {
                return None;
            };
            Some((specificity, quality(range)))
        })
        .max_by_key(|(specificity, _)| *specificity)?;
    (quality > 0).then_some(Preference {
        quality,
        named: specificity == 2,
    })
}

/// `q` in thousandths (RFC 9110 allows three decimals); 1000 without one,
/// 0 for an unreadable one.
fn quality(range: &mime::Mime) -> u16 {
    let Some(q) = range.get_param("q") else {
        return 1000;
    };
    q.as_str()
        .parse::<f32>()
        .ok()
        .filter(|q| (0.0..=1.0).contains(q))
        .map_or(0, |q| (q * 1000.0).round() as u16)
}

/// Nothing ran: a field error always carries a `path`, while an error in
/// parsing, validation or variable coercion never does, and leaves no data.
fn is_request_error(result: &async_graphql::Response) -> bool {
    result.data == async_graphql::Value::Null
        && !result.errors.is_empty()
        && result.errors.iter().all(|error| error.path.is_empty())
}

/// A POST body is a GraphQL request only as `application/json`; the spec
/// asks servers to refuse anything else (a text/plain POST is also what a
/// cross-site form can send without asking the browser first).
pub fn require_json_body(headers: &HeaderMap) -> Result<(), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let is_json = content_type
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|found| found.essence_str() == mime::APPLICATION_JSON.essence_str());
    if is_json {
        return Ok(());
    }
    let found = content_type.map_or_else(|| "none".to_owned(), |value| format!("`{value}`"));
    Err(AppError::BadUserInput(format!(
        "Send the request body as JSON with the header `Content-Type: application/json` (got {found})"
    )))
}

/// A GET request's parameters: the spec's `operationName`, and the
/// `operation_name` plangraph read before, for clients written against it.
#[derive(Deserialize)]
struct GetParameters {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName", alias = "operation_name")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// The GraphQL request in a GET query string; the error says what is wrong.
pub fn get_request(uri: &Uri) -> Result<async_graphql::Request, String> {
    let Query(parameters) =
        Query::<GetParameters>::try_from_uri(uri).map_err(|error| error.body_text())?;
    let mut request = async_graphql::Request::new(parameters.query);
    request.operation_name = parameters.operation_name;
    if let Some(variables) = parameters.variables {
        request.variables = serde_json::from_str(&variables)
            .map_err(|error| format!("`variables` is not a JSON object: {error}"))?;
    }
    if let Some(extensions) = parameters.extensions {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|error| format!("`extensions` is not a JSON object: {error}"))?;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(accept: &[&str]) -> MediaType {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        MediaType::negotiate(&headers)
    }

    #[test]
    fn clients_that_do_not_ask_for_the_new_type_get_json() {
        assert_eq!(negotiate(&[]), MediaType::Json);
        assert_eq!(negotiate(&["*/*"]), MediaType::Json);
        assert_eq!(negotiate(&["application/*"]), MediaType::Json);
        assert_eq!(negotiate(&["application/json"]), MediaType::Json);
        assert_eq!(negotiate(&["text/html"]), MediaType::Json);
        assert_eq!(negotiate(&["not a media type"]), MediaType::Json);
    }

    #[test]
    fn clients_that_ask_for_the_new_type_get_it_unless_they_prefer_json() {
        let new = MediaType::GraphqlResponseJson;
        assert_eq!(negotiate(&["application/graphql-response+json"]), new);
        assert_eq!(
            negotiate(&["application/graphql-response+json, application/json;q=0.9"]),
            new
        );
        assert_eq!(
            negotiate(&["application/json", "application/graphql-response+json"]),
            new
        );
        assert_eq!(negotiate(&["application/graphql-response+json, */*"]), new);
        assert_eq!(
            negotiate(&["application/graphql-response+json;q=0.5, application/json"]),
            MediaType::Json
        );
        assert_eq!(
            negotiate(&["application/graphql-response+json;q=0, */*"]),
            MediaType::Json
        );
        assert_eq!(negotiate(&["application/json;q=0, */*"]), new);
    }

    #[test]
    fn a_get_query_string_takes_the_standard_operation_name_and_the_old_one() {
        for name in ["operationName", "operation_name"] {
            let uri: Uri =
                format!("/graphql?query=query%20A%7Ba%7D&{name}=A&variables=%7B%22x%22%3A1%7D")
                    .parse()
                    .unwrap();
            let request = get_request(&uri).unwrap();
            assert_eq!(request.query, "query A{a}");
            assert_eq!(request.operation_name.as_deref(), Some("A"));
            assert_eq!(
                serde_json::to_value(&request.variables).unwrap(),
                json!({ "x": 1 })
            );
        }
        let broken: Uri = "/graphql?query=%7Ba%7D&variables=%7B".parse().unwrap();
        assert!(get_request(&broken).unwrap_err().contains("variables"));
    }

    #[test]
    fn only_json_bodies_are_graphql_requests() {
        let mut headers = HeaderMap::new();
        assert!(require_json_body(&headers).is_err());
        for (value, accepted) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("text/plain;charset=UTF-8", false),
            ("application/graphql", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(require_json_body(&headers).is_ok(), accepted, "{value}");
        }
    }
}
