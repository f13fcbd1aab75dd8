//! The axum router: `/graphql` (POST, GET, GraphiQL), `/graphql/ws`,
//! `/mcp` (MCP tools for assistants), `/healthz`, `/readyz`, `/board`; and
//! the accept loop that serves it (`serve.rs`). Each area below hands this
//! module its routes and takes the shared state and page helpers from it.

pub mod anonymous;
mod board;
mod graphql_over_http;
mod page;
mod playground;
mod serve;
pub mod websocket;

pub use page::{StyleNonce, html_page};
pub use serve::{ConnectionLimits, OpenConnections, serve};

use std::sync::Arc;

use std::net::SocketAddr;

use async_graphql::parser::types::ExecutableDocument;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sha2::{Digest, Sha256};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use subtle::ConstantTimeEq;

use crate::auth::bearer_token;
use crate::config::MetricsToken;
use crate::error::{AppError, AppResult};
use crate::graphql::GuardedSchema;
use crate::graphql::guard::Parsed;
use crate::http::anonymous::AnonymousRequest;
use crate::http::graphql_over_http::{MediaType, get_request, require_json_body};
use crate::observability::{operation_label, record_operation};
use crate::service::{Services, Viewer};
use crate::shutdown::Shutdown;
use crate::storage::StoreError;

/// What every route shares. axum clones it for each request, about three
/// dozen times on the way through the router and its layers, so it is one
/// pointer: cloning the whole struct (a dozen reference counts and the CORS
/// origins' `Vec`) each time showed in a dashboard request's profile.
#[derive(Clone)]
pub struct HttpState(Arc<SharedState>);

impl HttpState {
    pub fn new(shared: SharedState) -> HttpState {
        HttpState(Arc::new(shared))
    }
}

impl std::ops::Deref for HttpState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

pub struct SharedState {
    pub schema: GuardedSchema,
    pub services: Services,
    pub max_body_bytes: usize,
    /// Most operations one batched request may hold.
    pub max_batch_operations: usize,
    pub shutdown: Shutdown,
    /// Period of keep-alive pings on idle WebSocket connections.
    pub ws_keepalive: std::time::Duration,
    /// WebSocket connections open per API key.
    pub connections_per_key: websocket::ConnectionsPerKey,
    /// Groups of identical `planEvents` subscriptions, resolved once each.
    pub fanout: websocket::Fanout,
    /// The runtime requests run on; WebSocket queries and mutations are
    /// sent there from the fan-out thread.
    pub requests: tokio::runtime::Handle,
    /// How `/metrics` is served.
    pub metrics: MetricsEndpoint,
    /// Which operation names get metric series of their own.
    pub operation_series: Arc<crate::observability::OperationSeries>,
    /// Serve GraphiQL to browsers.
    pub playground: bool,
    /// Browser origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Requests without an API key open per client address.
    pub anonymous: anonymous::AnonymousRequests,
}

/// `/metrics`: the Prometheus recorder (when this process installed one) and
/// how the endpoint is guarded.
#[derive(Clone)]
pub struct MetricsEndpoint {
    pub handle: Option<PrometheusHandle>,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<MetricsToken>,
    /// Served on its own address (`--metrics-listen`), not beside the API.
    pub separate: bool,
    /// Beside an API that listens on a network (not loopback) with no token:
    /// refused, so a server reachable by anyone does not show everyone its
    /// traffic, tenants' operation names and pool usage.
    pub refused: bool,
}

impl MetricsEndpoint {
    /// `/metrics` answers without a token only on an address of its own or
    /// beside an API that listens on loopback.
    pub fn new(handle: Option<PrometheusHandle>, config: &crate::config::Config) -> Self {
        let separate = config.metrics_listen.is_some();
        let token = config.metrics_token.clone();
        let refused = token.is_none() && !separate && !config.listen.ip().is_loopback();
        MetricsEndpoint {
            handle,
            token,
            separate,
            refused,
        }
    }
}

#[derive(Clone)]
struct MetricsState {
    services: Services,
    endpoint: MetricsEndpoint,
}

/// A router with only `/metrics`.
pub fn metrics_router<S: Clone + Send + Sync + 'static>(
    services: Services,
    endpoint: MetricsEndpoint,
) -> Router<S> {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState { services, endpoint })
}

/// The `x-request-id` header, which the server sets on every request and response.
const REQUEST_ID: &str = "x-request-id";

pub fn router(state: HttpState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let metrics = (!state.metrics.separate)
        .then(|| metrics_router(state.services.clone(), state.metrics.clone()));
    let routes = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(websocket::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(metrics.unwrap_or_default())
        .merge(board::routes())
        .merge(playground::routes(state.playground))
        .nest_service(
            "/mcp",
            crate::mcp::service(state.services.clone(), max_body_bytes),
        );
    with_layers(routes, max_body_bytes, &state.cors_origins).with_state(state)
}

/// What every route passes through, outermost last.
fn with_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    max_body_bytes: usize,
    cors_origins: &[String],
) -> Router<S> {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let tracing = TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
    });
    routes
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A bug that panics answers its request with INTERNAL and is logged;
        // the connection and the server carry on.
        .layer(CatchPanicLayer::custom(answer_panic))
        // Dashboard pages of JSON compress several-fold.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(cors(cors_origins))
        // No response is ever read as a type other than the one it declares.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Outermost: every request gets an id (kept if the client sent one),
        // a span carrying it, and the id echoed back.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(tracing)
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Before an id is kept, logged and echoed, it must be harmless.
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
}

/// The response to a request whose handler panicked: GraphQL-shaped, like
/// every other refusal, with the panic's message in the log only.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    let error = AppError::internal(format!("handler panicked: {detail}"));
    error_response(MediaType::Json, StatusCode::INTERNAL_SERVER_ERROR, &error)
}

/// A client's request id is logged and echoed, so one that could forge log
/// lines or break a header (control characters, quotes, great length) is
/// dropped; the server then makes its own.
async fn drop_unsafe_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let safe = |id: &[u8]| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(byte))
    };
    if let Some(id) = request.headers().get(REQUEST_ID)
        && !safe(id.as_bytes())
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Dashboards on other origins must be named with `--cors-origin`; none are
/// allowed by default.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
        ])
        .expose_headers([header::ETAG])
        .max_age(std::time::Duration::from_secs(600))
}

/// A GraphQL-shaped error for requests that never reached execution, so
/// clients parse every failure the same way.
fn error_response(media: MediaType, status: StatusCode, error: &AppError) -> Response {
    error.log_if_internal("http request");
    let mut response = media.error(status, error);
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `None` without an Authorization header (public parts such as
/// introspection still work); an error for a header that does not authenticate.
async fn authenticate(
    services: &Services,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        AppError::Unauthenticated("The Authorization header must be `Bearer <API key>`".into())
    })?;
    services.authenticate(token).await.map(Some)
}

/// The caller of a request: its API key's user, or nobody (public parts
/// such as introspection still work); or the HTTP refusal of its key.
async fn caller(state: &HttpState, headers: &HeaderMap) -> Result<Option<Viewer>, Response> {
    let media = MediaType::negotiate(headers);
    match authenticate(&state.services, headers).await {
        Ok(viewer) => Ok(viewer),
        Err(error @ AppError::Unauthenticated(_)) => {
            Err(error_response(media, StatusCode::UNAUTHORIZED, &error))
        }
        Err(error) => Err(error_response(
            media,
            StatusCode::SERVICE_UNAVAILABLE,
            &error,
        )),
    }
}

/// Runs one operation for `viewer` and counts it; `document` is its parse
/// from `GuardedSchema::document`.
async fn run(
    state: &HttpState,
    viewer: Option<&Viewer>,
    mut request: async_graphql::Request,
    document: AppResult<Parsed>,
) -> async_graphql::Response {
    if let Some(viewer) = viewer {
        request = request.data(viewer.clone());
    }
    let started = std::time::Instant::now();
    let (kind, name) = operation_of(
        &request,
        document.as_ref().ok().map(|parsed| &*parsed.document),
    );
    let result = state
        .schema
        .execute(request, document, viewer.is_none())
        .await;
    let codes: Vec<String> = result
        .errors
        .iter()
        .filter_map(|error| {
            error
                .extensions
                .as_ref()?
                .get("code")
                .map(ToString::to_string)
        })
        .map(|code| code.trim_matches('"').to_owned())
        .collect();
    let metrics = state.operation_series.metrics(kind, &name);
    record_operation(&name, &metrics, started.elapsed(), &codes);
    result
}

/// Authenticates and runs one operation, as the HTTP response.
async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    document: AppResult<Parsed>,
) -> Response {
    let viewer = match caller(state, headers).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let result = run(state, viewer.as_ref(), request, document).await;
    MediaType::negotiate(headers).result(result, state.schema.limits().max_response_bytes)
}

/// Authenticates once and runs a batch's operations one after another, each
/// under every limit of its own, as one JSON array.
async fn execute_batch(
    state: &HttpState,
    headers: &HeaderMap,
    requests: Vec<async_graphql::Request>,
) -> Response {
    let media = MediaType::negotiate(headers);
    let most = state.max_batch_operations;
    if requests.is_empty() || requests.len() > most {
        let error = AppError::BadUserInput(format!(
            "A batch holds 1 to {most} operations (--max-batch-operations); this one holds {}",
            requests.len()
        ));
        return error_response(media, StatusCode::BAD_REQUEST, &error);
    }
    let viewer = match caller(state, headers).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal,
    };
    let mut results = Vec::with_capacity(requests.len());
    for mut request in requests {
        let document = state.schema.document(&mut request).await;
        results.push(run(state, viewer.as_ref(), request, document).await);
    }
    media.batch(&results, state.schema.limits().max_response_bytes)
}

/// The client's address, where the server was started with it (tests that
/// call the router directly have none).
type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

/// A request without an Authorization header counted against its address
/// (see `anonymous.rs`), or its refusal; `None` for requests with a key.
fn admit_anonymous(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Option<AnonymousRequest>, AppError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let Some(axum::Extension(ConnectInfo(address))) = peer else {
        return Ok(None);
    };
    state.anonymous.admit(address.ip()).map(Some)
}

/// HTTP 429 for a refused anonymous request, with when to retry.
fn too_many_requests(headers: &HeaderMap, error: &AppError) -> Response {
    let media = MediaType::negotiate(headers);
    let mut response = error_response(media, StatusCode::TOO_MANY_REQUESTS, error);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn graphql_post(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let _admitted = match admit_anonymous(&state, &headers, peer) {
        Ok(admitted) => admitted,
        Err(error) => return too_many_requests(&headers, &error),
    };
    let media = MediaType::negotiate(&headers);
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let error = AppError::BadUserInput(format!(
                "The request body is too large; the limit is {} bytes",
                state.max_body_bytes
            ));
            return error_response(media, StatusCode::PAYLOAD_TOO_LARGE, &error);
        }
        Err(rejection) => {
            let error =
                AppError::BadUserInput(format!("Could not read the request body: {rejection}"));
            return error_response(media, StatusCode::BAD_REQUEST, &error);
        }
    };
    if let Err(error) = require_json_body(&headers) {
        return error_response(media, StatusCode::BAD_REQUEST, &error);
    }
    // Checked by hand: a `[]` would otherwise read as one empty request.
    let batched = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if batched {
        serde_json::from_slice(&body).map(async_graphql::BatchRequest::Batch)
    } else {
        serde_json::from_slice(&body).map(async_graphql::BatchRequest::Single)
    };
    let batch = match parsed {
        Ok(batch) => batch,
        Err(error) => {
            let error = AppError::BadUserInput(format!(
                "The body is not a GraphQL request: {error}. Send JSON like {{\"query\": \"{{ viewer {{ email }} }}\"}}, or an array of such requests"
            ));
            return error_response(media, StatusCode::BAD_REQUEST, &error);
        }
    };
    let mut response = match batch {
        async_graphql::BatchRequest::Single(mut request) => {
            let document = state.schema.document(&mut request).await;
            execute(&state, &headers, request, document).await
        }
        async_graphql::BatchRequest::Batch(requests) => {
            execute_batch(&state, &headers, requests).await
        }
    };
    no_store(&mut response);
    response
}

async fn graphql_get(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query_string = uri.query().unwrap_or_default();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !query_string.contains("query=") && state.playground {
        return playground::page();
    }
    let _admitted = match admit_anonymous(&state, &headers, peer) {
        Ok(admitted) => admitted,
        Err(error) => return too_many_requests(&headers, &error),
    };
    let media = MediaType::negotiate(&headers);
    let request = match get_request(&uri) {
        Ok(request) => request,
        Err(error) => {
            let error = AppError::BadUserInput(format!(
                "Could not read the query string: {error}. Use /graphql?query=…&variables=…"
            ));
            return error_response(media, StatusCode::BAD_REQUEST, &error);
        }
    };
    let mut request = request;
    let document = state.schema.document(&mut request).await;
    if operation_of(
        &request,
        document.as_ref().ok().map(|parsed| &*parsed.document),
    )
    .0 == "mutation"
    {
        let error = AppError::BadUserInput("Mutations must be sent with POST, not GET".into());
        let mut response = error_response(media, StatusCode::METHOD_NOT_ALLOWED, &error);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let response = execute(&state, &headers, request, document).await;
    revalidated(response, &headers).await
}

/// A query's answer over GET, which dashboards poll: it carries a validator
/// (`ETag`, a hash of the answer), and a client that sends it back in
/// `If-None-Match` gets `304 Not Modified` without the body when the
/// answer is the same. The query runs every time, so a 304 is never stale;
/// what it saves is the bytes. `private`: answers depend on the API key.
async fn revalidated(response: Response, headers: &HeaderMap) -> Response {
    let mut response = response;
    if response.status() != StatusCode::OK {
        no_store(&mut response);
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            let error = AppError::internal_from("cannot read a response body", error);
            return error_response(
                MediaType::negotiate(headers),
                StatusCode::INTERNAL_SERVER_ERROR,
                &error,
            );
        }
    };
    let digest = Sha256::digest(&body);
    // Weak: the same answer may be sent gzipped or not.
    let tag = format!("W/\"{}\"", hex::encode(&digest[..16]));
    let Ok(tag_value) = HeaderValue::from_str(&tag) else {
        return Response::from_parts(parts, Body::from(body));
    };
    parts.headers.insert(header::ETAG, tag_value);
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    parts.headers.insert(
        header::VARY,
        HeaderValue::from_static("authorization, accept"),
    );
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == "*" || candidate == tag.trim_start_matches("W/"));
    if unchanged {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(body))
}

/// The kind and (bounded) name of the operation a request would run, from
/// its parsed `document` (the schema's cache keeps it for execution). A
/// document that does not parse counts as a query; execution reports the error.
fn operation_of(
    request: &async_graphql::Request,
    document: Option<&ExecutableDocument>,
) -> (&'static str, String) {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let wanted = request.operation_name.clone();
    let name = operation_label(wanted.as_deref());
    let Some(document) = document else {
        return ("query", name);
    };
    let (operation_type, name) = match (&document.operations, wanted.as_deref()) {
        (DocumentOperations::Single(operation), _) => (Some(operation.node.ty), name),
        (DocumentOperations::Multiple(operations), Some(wanted)) => (
            operations.get(wanted).map(|operation| operation.node.ty),
            name,
        ),
        (DocumentOperations::Multiple(operations), None) => {
            let first = operations.iter().next();
            (
                first.map(|(_, operation)| operation.node.ty),
                operation_label(first.map(|(found, _)| found.as_str())),
            )
        }
    };
    let kind = match operation_type {
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        _ => "query",
    };
    (kind, name)
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let database = state.services.db.ping().await;
    let specs = state.services.check_spec_store().await;
    let ready = database.is_ok() && specs.is_ok();
    let spec_store = match &specs {
        Ok(()) => "ok",
        // Not where it should be: a misconfiguration, not an outage.
        Err(StoreError::Missing(_)) => "missing objects",
        Err(StoreError::Unavailable(_)) => "unavailable",
    };
    if let Err(error) = &specs {
        tracing::warn!(reason = %error.reason(), "not ready: spec store");
    }
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": if database.is_ok() { "ok" } else { "unavailable" },
        "specStore": spec_store,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition. The spec store counters live with the store's
/// cache, so every backend (gcs, fs, memory) is measured alike.
async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if state.endpoint.refused {
        return (
            StatusCode::FORBIDDEN,
            "metrics beside an API on a network address need --metrics-token, \
             or --metrics-listen for an address of their own\n",
        )
            .into_response();
    }
    if let Some(token) = &state.endpoint.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or_default();
        let matches: bool = presented.as_bytes().ct_eq(token.0.as_bytes()).into();
        if !matches {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "metrics need Authorization: Bearer <the --metrics-token>\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let services = &state.services;
    let mut body = services
        .specs
        .metrics()
        .map(|metrics| metrics.prometheus_text())
        .unwrap_or_default();
    body.push_str(&services.database_metrics.prometheus_text());
    record_pool_usage(&services.db);
    if let Some(handle) = &state.endpoint.handle {
        body.push_str(&handle.render());
    }
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Pool gauges are sampled when scraped rather than tracked on every acquire.
fn record_pool_usage(db: &sea_orm::DatabaseConnection) {
    let (size, idle) = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return,
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!("plangraph_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("plangraph_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn panics() -> &'static str {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_internal_and_the_server_carries_on() {
        let routes: Router = Router::new()
            .route("/boom", get(panics))
            .route("/fine", get(|| async { "ok" }));
        let app = with_layers(routes, 1024, &[]);
        let request = |path: &str| {
            axum::http::Request::get(path)
                .body(Body::empty())
                .expect("request")
        };
        let response = app.clone().oneshot(request("/boom")).await.expect("answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(REQUEST_ID));
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert!(!body.to_string().contains("a bug"), "no internals: {body}");
        let fine = app.oneshot(request("/fine")).await.expect("answer");
        assert_eq!(fine.status(), StatusCode::OK);
    }
}
