//! Headers of our HTML pages (the board, GraphiQL). The board keeps its API
//! key in this origin's local storage, so its pages run only scripts and
//! styles from this origin, talk only to it, and cannot be framed.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// `'self'` in `connect-src` covers same-origin `ws:`/`wss:` in current
/// browsers (CSP 3), which the board's and GraphiQL's live updates use.
/// `data:` is for the fonts and icons GraphiQL's stylesheet embeds.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A random token, new for every response, that admits the `<style>`
/// elements a page's own scripts add at run time (markup injected into the
/// page cannot know it).
pub struct StyleNonce(String);

impl StyleNonce {
    /// `None` if the system has no randomness to give; the page then works
    /// without its run-time styles.
    pub fn generate() -> Option<Self> {
        let mut bytes = [0_u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        Some(Self(STANDARD.encode(bytes)))
    }

    /// The value for a `nonce` attribute and the policy's `'nonce-…'` source.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An HTML page of ours, revalidated on every load since it changes with
/// the binary.
pub fn html_page(body: impl Into<Body>, style_nonce: Option<&StyleNonce>) -> Response {
    let policy = style_nonce
        .map(|nonce| {
            CONTENT_SECURITY_POLICY.replacen(
                "style-src 'self'",
                &format!("style-src 'self' 'nonce-{}'", nonce.as_str()),
                1,
            )
        })
        .and_then(|policy| HeaderValue::try_from(policy).ok())
        .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body.into(),
    )
        .into_response()
}
