//! GraphiQL at `/graphql`, served from the binary so it works offline and
//! behind a strict Content-Security-Policy: no script comes from another
//! origin, which matters because the board keeps its API key in this
//! origin's local storage. The vendored files (see `playground/README.md`)
//! carry their version in the URL, so browsers may cache them for good.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{StyleNonce, html_page};

const PAGE: &str = include_str!("playground/index.html");

/// A file under `/graphql/assets/`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Versioned vendor files never change under their URL; our own small
    /// files change with the binary, so browsers revalidate them.
    immutable: bool,
}

impl Asset {
    const fn vendored(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            path,
            content_type,
            body,
            immutable: true,
        }
    }

    const fn own(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            path,
            content_type,
            body,
            immutable: false,
        }
    }
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset::vendored(
        "graphiql-4.1.2/graphiql.min.js",
        JAVASCRIPT,
        include_bytes!("playground/vendor/graphiql.min.js"),
    ),
    Asset::vendored(
        "graphiql-4.1.2/graphiql.min.css",
        CSS,
        include_bytes!("playground/vendor/graphiql.min.css"),
    ),
    Asset::vendored(
        "react-18.3.1/react.production.min.js",
        JAVASCRIPT,
        include_bytes!("playground/vendor/react.production.min.js"),
    ),
    Asset::vendored(
        "react-18.3.1/react-dom.production.min.js",
        JAVASCRIPT,
        include_bytes!("playground/vendor/react-dom.production.min.js"),
    ),
    Asset::own(
        "playground.js",
        JAVASCRIPT,
        include_bytes!("playground/playground.js"),
    ),
    Asset::own(
        "playground.css",
        CSS,
        include_bytes!("playground/playground.css"),
    ),
];

/// The GraphiQL page, for a browser that opens `/graphql`. Its dialogs add
/// a `<style>` element to lock scrolling; `playground.js` hands them the
/// page's style nonce.
pub fn page() -> Response {
    let nonce = StyleNonce::generate();
    let page = PAGE.replace(
        "{style-nonce}",
        nonce.as_ref().map_or("", StyleNonce::as_str),
    );
    html_page(page, nonce.as_ref())
}

/// The page's assets; none when the playground is turned off.
pub fn routes<S: Clone + Send + Sync + 'static>(enabled: bool) -> Router<S> {
    if !enabled {
        return Router::new();
    }
    Router::new().route("/graphql/assets/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an update of the vendored versions, the page and the route table
    /// must name the same files, or GraphiQL never starts.
    #[test]
    fn every_file_the_page_loads_is_served() {
        let referenced: Vec<&str> = PAGE
            .split(['"', '\''])
            .filter_map(|text| text.strip_prefix("/graphql/assets/"))
            .collect();
        assert_eq!(referenced.len(), ASSETS.len(), "{referenced:?}");
        for path in referenced {
            assert!(
                ASSETS.iter().any(|asset| asset.path == path),
                "{path} is not served"
            );
        }
    }
}
