//! Black-box harness: starts the real `plangraph` binary on an ephemeral port
//! against a fresh database and talks to it like any client, over GraphQL on
//! HTTP and WebSocket. One module per concern; tests import them all at once
//! with `use crate::helpers::*`.

mod client;
mod gcs;
mod operations;
mod proxy;
mod receiver;
mod s3;
mod server;
mod stores;
mod team;
mod ws;

use std::time::Duration;

pub use client::*;
pub use gcs::*;
pub use operations::*;
pub use proxy::*;
pub use receiver::*;
pub use s3::*;
pub use server::*;
pub use stores::*;
pub use team::*;
pub use ws::*;

/// Generates one test per backend for each scenario function `name(Backend)`:
/// `sqlite::name` and `postgres::name` in the module that calls it.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::helpers::Backend::postgres().await {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_databases;

/// reqwest (0.13, shared with the server's GCS and webhook clients) is built
/// without a TLS crypto provider of its own; every test installs ring, as the
/// server does, before its first HTTP client. Later calls change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Under `CI=true` a missing PostgreSQL or emulator fails the test instead of
/// skipping it.
fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Under `CI=true` a missing emulator fails the test loudly; locally the test
/// is skipped with a notice (as for PostgreSQL).
fn emulator_missing<T>(what: &str) -> Option<T> {
    if running_in_ci() {
        panic!("{what} is required when CI=true; run the suite with `bash scripts/test.sh`");
    }
    eprintln!("SKIPPED: {what} (run `bash scripts/test.sh`, or set CI=true to make this fatal)");
    None
}

/// Polls `check` until it returns Some, for at most `limit`: how a test waits
/// for state it cannot be told about.
pub async fn eventually<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until this machine's clock, which the server shares, is at least a
/// microsecond (the server's precision) past `timestamp`: whatever the server
/// stamps next is then strictly later.
pub async fn clock_moves_past(timestamp: &str) {
    let timestamp = chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
    let next = timestamp + chrono::Duration::microseconds(1);
    eventually(Duration::from_secs(5), async || {
        (chrono::Utc::now() >= next).then_some(())
    })
    .await;
}

/// Asks `{ __typename }` ten times at once, as another (authenticated)
/// client, while `attack` runs, and returns the attack's reply once every
/// bystander was answered.
pub async fn with_bystanders(server: &Server, attack: impl Future<Output = Reply>) -> Reply {
    let bystander = server.admin();
    let bystanders = futures::future::join_all(
        (0..10).map(|_| bystander.send("{ __typename }", serde_json::json!({}))),
    );
    let (reply, answered) = tokio::join!(attack, bystanders);
    for answer in answered {
        assert_eq!(
            answer.data["__typename"], "Query",
            "another client is served meanwhile: {answer:?}"
        );
    }
    reply
}

/// `reply` refuses the whole operation, naming `limit`, with nothing executed.
pub fn assert_refused_naming(reply: &Reply, limit: &str) {
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    assert!(
        reply.message().contains(limit),
        "the refusal names {limit}: {}",
        reply.message()
    );
    assert!(reply.data.is_null(), "nothing was executed: {reply:?}");
}
