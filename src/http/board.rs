//! The live board page at `/board`: static assets compiled into the binary,
//! talking to the public GraphQL API and `planEvents` like any other client.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("board/index.html");
const SCRIPT: &str = include_str!("board/app.js");
const GRAPHQL_SCRIPT: &str = include_str!("board/graphql.js");
const LIVE_SCRIPT: &str = include_str!("board/live.js");
const STYLE: &str = include_str!("board/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/board", get(|| async { super::html_page(INDEX, None) }))
        .route(
            "/board/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/board/graphql.js",
            get(|| async { asset("text/javascript; charset=utf-8", GRAPHQL_SCRIPT) }),
        )
        .route(
            "/board/live.js",
            get(|| async { asset("text/javascript; charset=utf-8", LIVE_SCRIPT) }),
        )
        .route(
            "/board/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
